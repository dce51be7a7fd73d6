//! Per-stack admission: at most `maxConcurrentJobs` analyses of a stack have an
//! unfinished Job; the rest wait, served by priority (higher first), then creation
//! time, then name (a total order, so every replica computes the same queue).

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

/// Sorts waiting analyses into service order.
pub fn service_order(waiting: &mut [Waiting<'_>]) {
    waiting.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.created.cmp(&b.created))
            .then_with(|| a.name.cmp(b.name))
    });
}

/// Decides for `name` given the stack's limit, its unfinished Jobs and all waiting
/// analyses (any order). `None` when `name` is not among the waiting.
pub fn admission(
    name: &str,
    limit: i32,
    active_jobs: usize,
    waiting: &mut [Waiting<'_>],
) -> Option<Admission> {
    service_order(waiting);
    let index = waiting.iter().position(|w| w.name == name)?;
    let free = (limit.max(0) as usize).saturating_sub(active_jobs);
    Some(if index < free {
        Admission::Admit
    } else {
        Admission::Queued {
            position: (index - free + 1) as i32,
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
        let mut waiting = vec![w("a", 0, 1), w("b", 0, 2), w("c", 0, 3), w("d", 0, 4)];
        assert_eq!(admission("a", 3, 1, &mut waiting), Some(Admission::Admit));
        assert_eq!(admission("b", 3, 1, &mut waiting), Some(Admission::Admit));
        assert_eq!(
            admission("c", 3, 1, &mut waiting),
            Some(Admission::Queued { position: 1 })
        );
        assert_eq!(
            admission("d", 3, 1, &mut waiting),
            Some(Admission::Queued { position: 2 })
        );
        assert_eq!(
            admission("d", 3, 5, &mut waiting),
            Some(Admission::Queued { position: 4 })
        );
        assert_eq!(admission("zzz", 3, 0, &mut waiting), None);
    }
}
