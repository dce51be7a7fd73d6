//! What each watch wakes a controller for. Without these filters every status write,
//! the controller's own included, would run the reconcile again.

use std::hash::{Hash, Hasher};

use kube::Resource;

/// The key a watcher's `predicate_filter` compares: a hash of the part of an object
/// a controller reacts to (each controller reacts to a different part).
pub fn change_key(what: impl Hash) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    what.hash(&mut hasher);
    Some(hasher.finish())
}

/// An object's spec (generation), finalizers and deletion: what its own controller
/// acts on. Its status is the controller's own output; a stack's reconcile also has
/// its resync for drift, an analysis' the watches of its Job and stack.
pub fn spec_or_lifecycle_change<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    change_key((
        meta.generation,
        &meta.finalizers,
        meta.deletion_timestamp.is_some(),
    ))
}
