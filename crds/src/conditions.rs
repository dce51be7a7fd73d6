//! Status conditions in the shape of the Kubernetes API conventions
//! (`metav1.Condition`, with `observedGeneration` on each condition).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition `status` values.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// A condition to set; `lastTransitionTime` is filled in by [`set_condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCondition<'a> {
    pub type_: &'a str,
    pub status: &'a str,
    /// CamelCase machine-readable reason.
    pub reason: &'a str,
    /// Human-readable message; never put secrets here.
    pub message: String,
}

/// Sets (adds or replaces) a condition. `lastTransitionTime` only moves when the
/// status changes, so watchers can tell how long a condition has held.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    new: NewCondition<'_>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let existing = conditions.iter_mut().find(|c| c.type_ == new.type_);
    let last_transition_time = match &existing {
        Some(old) if old.status == new.status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: new.type_.to_string(),
        status: new.status.to_string(),
        reason: new.reason.to_string(),
        message: new.message,
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(old) => *old = condition,
        None => conditions.push(condition),
    }
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str) -> NewCondition<'_> {
        NewCondition {
            type_: "Ready",
            status,
            reason: "Test",
            message: "m".into(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t1: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let t3: Timestamp = "2026-01-01T00:02:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(FALSE), Some(1), t1);
        set_condition(&mut conditions, ready(FALSE), Some(2), t2);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time.0, t1);
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(&mut conditions, ready(TRUE), Some(2), t3);
        assert_eq!(conditions[0].last_transition_time.0, t3);
        assert!(is_true(&conditions, "Ready"));
        assert!(!is_true(&conditions, "Other"));
    }
}
