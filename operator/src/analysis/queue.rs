//! Per-stack admission: at most `maxConcurrentJobs` analyses of a stack have an
//! unfinished Job; the rest wait, served by priority (higher first), then creation
//! time, then name (a total order, so every replica computes the same queue).

use std::cmp::Ordering;

use k8s_openapi::jiff::Timestamp;

/// An analysis that wants a Job and has none yet (borrowed from the cache: admission
/// lists every waiting analysis of the stack each time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting<'a> {
    pub name: &'a str,
    pub priority: i32,
    pub created: Option<Timestamp>,
}

/// Where one waiting analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free for it: create its Job.
    Admit,
    /// It waits; 1 means it is next.
    Queued { position: i32 },
}

impl Waiting<'_> {
    /// Service order: higher priority first, then older, then by name.
    fn service_cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then_with(|| self.created.cmp(&other.created))
            .then_with(|| self.name.cmp(other.name))
    }
}

/// Sorts waiting analyses into service order.
pub fn service_order(waiting: &mut [Waiting<'_>]) {
    waiting.sort_by(Waiting::service_cmp);
}

/// Decides for `name` given the stack's limit, its unfinished Jobs and all waiting
/// analyses (any order). `None` when `name` is not among the waiting.
///
/// Counts who is ahead instead of sorting: admission runs once per analysis over
/// the whole queue, and a sort each time made a burst of n analyses cost
/// O(n² log n).
pub fn admission(
    name: &str,
    limit: i32,
    active_jobs: usize,
    waiting: &[Waiting<'_>],
) -> Option<Admission> {
    let me = waiting.iter().find(|w| w.name == name)?;
    let ahead = waiting
        .iter()
        .filter(|w| w.service_cmp(me) == Ordering::Less)
        .count();
    let free = (limit.max(0) as usize).saturating_sub(active_jobs);
    Some(if ahead < free {
        Admission::Admit
    } else {
        Admission::Queued {
            position: (ahead - free + 1) as i32,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, priority: i32, created_s: i64) -> Waiting<'_> {
        Waiting {
            name,
            priority,
            created: Some(Timestamp::from_second(created_s).unwrap()),
        }
    }

    #[test]
    fn priority_then_age_then_name() {
        let mut waiting = vec![
            w("old-low", 0, 1),
            w("new-high", 10, 5),
            w("b", 0, 3),
            w("a", 0, 3),
        ];
        service_order(&mut waiting);
        let names: Vec<_> = waiting.iter().map(|w| w.name).collect();
        assert_eq!(names, ["new-high", "old-low", "a", "b"]);
    }

    #[test]
    fn admits_only_into_free_slots() {
        // Not in service order: admission must not depend on the order it is given.
        let waiting = vec![w("d", 0, 4), w("b", 0, 2), w("a", 0, 1), w("c", 0, 3)];
        assert_eq!(admission("a", 3, 1, &waiting), Some(Admission::Admit));
        assert_eq!(admission("b", 3, 1, &waiting), Some(Admission::Admit));
        assert_eq!(
            admission("c", 3, 1, &waiting),
            Some(Admission::Queued { position: 1 })
        );
        assert_eq!(
            admission("d", 3, 1, &waiting),
            Some(Admission::Queued { position: 2 })
        );
        assert_eq!(
            admission("d", 3, 5, &waiting),
            Some(Admission::Queued { position: 4 })
        );
        assert_eq!(admission("zzz", 3, 0, &waiting), None);
    }
}
