//! Pure translations: a Job's status into what the analysis should say, and a stored
//! report into the status summary.

use golftracker_crds::analysis::{AnalysisResult, Recommendation, SwingEvent, SwingEvents};
use golftracker_results_db::{EventMark, Report};
use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cache::CachedJob;

/// What a worker Job is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Created, pod not started or running.
    Running {
        start_time: Option<Time>,
        attempts: i32,
    },
    Complete {
        start_time: Option<Time>,
        completion_time: Option<Time>,
        attempts: i32,
    },
    /// `reason` is the Job controller's (`BackoffLimitExceeded`, `DeadlineExceeded`, ...).
    Failed {
        start_time: Option<Time>,
        reason: String,
        message: String,
        attempts: i32,
    },
}

impl JobState {
    pub fn is_finished(&self) -> bool {
        !matches!(self, Self::Running { .. })
    }
}

pub fn job_state(job: &CachedJob) -> JobState {
    let none = JobStatus::default();
    let status = job.status.as_ref().unwrap_or(&none);
    let attempts =
        status.active.unwrap_or(0) + status.succeeded.unwrap_or(0) + status.failed.unwrap_or(0);
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if holds("Complete").is_some() {
        return JobState::Complete {
            start_time: status.start_time.clone(),
            completion_time: status.completion_time.clone(),
            attempts,
        };
    }
    if let Some(failed) = holds("Failed") {
        return JobState::Failed {
            start_time: status.start_time.clone(),
            reason: failed.reason.clone().unwrap_or_else(|| "JobFailed".into()),
            message: failed.message.clone().unwrap_or_default(),
            attempts,
        };
    }
    JobState::Running {
        start_time: status.start_time.clone(),
        attempts,
    }
}

fn event(mark: &EventMark) -> Option<SwingEvent> {
    Some(SwingEvent {
        frame: mark.frame as i64,
        time_s: mark.time_s,
        confidence: f64::from(mark.confidence),
    })
}

/// The status summary of a stored report.
pub fn result_from_report(
    report: &Report,
    report_uri: &str,
    plot_uri: Option<String>,
) -> AnalysisResult {
    let e = &report.events;
    AnalysisResult {
        events: SwingEvents {
            address: event(&e.address),
            toe_up: event(&e.toe_up),
            mid_backswing: event(&e.mid_backswing),
            top: event(&e.top),
            mid_downswing: event(&e.mid_downswing),
            impact: event(&e.impact),
            mid_follow_through: event(&e.mid_follow_through),
            finish: event(&e.finish),
        },
        tempo_ratio: report.tempo_ratio,
        backswing_ms: report.backswing_ms,
        downswing_ms: report.downswing_ms,
        recommendations: report
            .recommendations
            .iter()
            .map(|r| Recommendation {
                code: r.code.clone(),
                message: r.message.clone(),
                value: Some(r.value),
            })
            .collect(),
        report_uri: Some(report_uri.to_string()),
        plot_uri,
        model: Some(report.model.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobCondition;

    fn job(conditions: &[(&str, &str, &str)], active: i32, failed: i32) -> CachedJob {
        CachedJob {
            status: Some(JobStatus {
                active: Some(active),
                failed: Some(failed),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn job_conditions_map_to_states() {
        assert_eq!(
            job_state(&job(&[], 1, 1)),
            JobState::Running {
                start_time: None,
                attempts: 2
            }
        );
        assert!(matches!(
            job_state(&job(&[("Complete", "True", "")], 0, 0)),
            JobState::Complete { .. }
        ));
        assert!(matches!(
            job_state(&job(&[("Complete", "False", "")], 1, 0)),
            JobState::Running { .. }
        ));
        match job_state(&job(
            &[
                ("FailureTarget", "True", "DeadlineExceeded"),
                ("Failed", "True", "DeadlineExceeded"),
            ],
            0,
            1,
        )) {
            JobState::Failed {
                reason, attempts, ..
            } => {
                assert_eq!(reason, "DeadlineExceeded");
                assert_eq!(attempts, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
