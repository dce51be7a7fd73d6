//! `--wait`: follows an analysis with a watch, printing each phase change as it
//! happens and a spinner while the worker runs, until it finishes.

use std::time::Duration;

use futures::StreamExt;
use golftracker_crds::analysis::{Phase, SwingAnalysis, condition};
use golftracker_crds::conditions;
use indicatif::{ProgressBar, ProgressStyle};
use kube::runtime::{WatchStreamExt, watcher};

use crate::cluster::Target;
use crate::error::{Error, Result, kube_error};
use crate::show;

/// One line per distinct state: the phase and what it waits for.
fn state_line(a: &SwingAnalysis) -> String {
    let status = a.status.clone().unwrap_or_default();
    let detail = match status.phase {
        Phase::Pending => status
            .conditions
            .iter()
            .find(|c| c.status != conditions::TRUE)
            .map(|c| format!(": {}", c.message)),
        Phase::Queued => status
            .queue_position
            .map(|p| format!(": position {p} in the stack's queue")),
        Phase::Running => status
            .job_name
            .map(|job| format!(": Job {job}, attempt {}", status.attempts.max(1))),
        Phase::Succeeded | Phase::Failed => None,
    };
    format!("{}{}", status.phase.as_str(), detail.unwrap_or_default())
}

fn spinner(message: String) -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_message(message);
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

fn watch_error(error: watcher::Error, namespace: &str) -> Error {
    let source = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => kube::Error::Api(status),
        watcher::Error::NoResourceVersion => kube::Error::Service(error.into()),
    };
    kube_error("watch", "swinganalyses", namespace)(source)
}

/// Waits until the analysis is Succeeded (returned) or Failed (an error with the reason).
pub async fn until_finished(
    target: &Target,
    name: &str,
    timeout: Duration,
) -> Result<SwingAnalysis> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(target.analyses(), config).default_backoff());
    let mut last = String::new();
    let mut running: Option<ProgressBar> = None;
    let follow = async {
        while let Some(event) = stream.next().await {
            let analysis = match event {
                Ok(watcher::Event::Apply(analysis) | watcher::Event::InitApply(analysis)) => {
                    analysis
                }
                Ok(watcher::Event::Delete(_)) => {
                    return Err(Error::AnalysisDeleted {
                        name: name.to_owned(),
                    });
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                Err(error) => match watch_error(error, &target.namespace) {
                    // Lasting: no permission. Anything else the watcher retries with backoff.
                    forbidden @ Error::Forbidden { .. } => return Err(forbidden),
                    _ => continue,
                },
            };
            let line = state_line(&analysis);
            if line != last {
                if let Some(spinner) = running.take() {
                    spinner.finish_and_clear();
                }
                println!("{name}: {line}");
                if analysis
                    .status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Running)
                {
                    running = Some(spinner(format!("{name} running")));
                }
                last = line;
            }
            let status = analysis.status.clone().unwrap_or_default();
            match status.phase {
                Phase::Succeeded => return Ok(analysis),
                Phase::Failed => {
                    let message = conditions::find(&status.conditions, condition::FAILED)
                        .map_or_else(|| "no reason given".into(), show::condition_text);
                    return Err(Error::AnalysisFailed {
                        name: name.to_owned(),
                        message,
                    });
                }
                _ => {}
            }
        }
        unreachable!("a watcher stream never ends")
    };
    let outcome = tokio::time::timeout(timeout, follow).await;
    if let Some(spinner) = running {
        spinner.finish_and_clear();
    }
    match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            // Say where it stands rather than only that time ran out.
            let now = target.analysis(name).await?;
            Err(Error::Timeout {
                seconds: timeout.as_secs(),
                waiting_for: format!("{name} is still {}", state_line(&now)),
            })
        }
    }
}

/// Waits until the analysis object is gone (its finalizer has run).
pub async fn until_deleted(target: &Target, name: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = target.analyses().get_opt(name).await.map_err(kube_error(
            "get",
            "swinganalyses",
            &target.namespace,
        ))?;
        let Some(analysis) = found else {
            return Ok(());
        };
        if tokio::time::Instant::now() > deadline {
            let waiting = analysis
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, condition::ERASED))
                .map_or_else(|| "its finalizer".into(), show::condition_text);
            return Err(Error::Timeout {
                seconds: timeout.as_secs(),
                waiting_for: format!("{name} is still being deleted ({waiting})"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
