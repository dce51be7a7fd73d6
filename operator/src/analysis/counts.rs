//! The `queuedAnalyses` / `runningAnalyses` columns of each GolfTrackerStack, counted
//! from this controller's SwingAnalysis cache and written at most once per interval
//! per stack: the counts change with every phase change, and writing them each time
//! would add a stack status write to every analysis (and, before, a LIST of all
//! analyses to every stack reconcile).

use std::sync::Arc;
use std::time::Duration;

use golftracker_crds::analysis::{Phase, SwingAnalysis};
use golftracker_crds::stack::GolfTrackerStack;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use super::CachesListed;

/// Field manager of the two count fields only; the stack controller owns the rest
/// of the stack's status.
pub const FIELD_MANAGER: &str = "golftracker-operator-analysis-counts";
/// How stale the counts may get.
const INTERVAL: Duration = Duration::from_secs(2);

/// Queued and running analyses of the stack `namespace/stack`.
pub fn counts_of_stack(
    analyses: &[Arc<SwingAnalysis>],
    namespace: &str,
    stack: &str,
) -> (i32, i32) {
    let (mut queued, mut running) = (0, 0);
    for analysis in analyses.iter().filter(|a| {
        a.meta().namespace.as_deref() == Some(namespace) && a.spec.stack_ref.name == stack
    }) {
        match analysis.status.as_ref().map(|s| s.phase) {
            Some(Phase::Queued) => queued += 1,
            Some(Phase::Running) => running += 1,
            _ => {}
        }
    }
    (queued, running)
}

/// Writes each stack's counts when they differ from its status; runs until dropped.
pub async fn keep_stack_counts(
    client: Client,
    analyses: Store<SwingAnalysis>,
    stacks: Store<GolfTrackerStack>,
    listed: CachesListed,
) {
    // Counting a cache that is still filling would publish zeros.
    listed.wait().await;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let all = analyses.state();
        for stack in stacks.state() {
            if stack.meta().deletion_timestamp.is_some() {
                continue;
            }
            let namespace = stack.namespace().unwrap_or_default();
            let (queued, running) = counts_of_stack(&all, &namespace, &stack.name_any());
            let published = stack
                .status
                .as_ref()
                .map(|s| (s.queued_analyses, s.running_analyses));
            if published == Some((Some(queued), Some(running))) {
                continue;
            }
            let patch = serde_json::json!({
                "apiVersion": "golftracker.io/v1alpha1",
                "kind": "GolfTrackerStack",
                "status": {"queuedAnalyses": queued, "runningAnalyses": running},
            });
            let api: Api<GolfTrackerStack> = Api::namespaced(client.clone(), &namespace);
            if let Err(e) = api
                .patch_status(
                    &stack.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                warn!(stack = %stack.name_any(), error = %e, "could not write the analysis counts");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(namespace: &str, stack: &str, phase: Option<Phase>) -> Arc<SwingAnalysis> {
        let mut analysis: SwingAnalysis = serde_json::from_value(serde_json::json!({
            "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
            "metadata": {"name": "a", "namespace": namespace},
            "spec": {"stackRef": {"name": stack}, "video": "v.mp4", "golfer": {"userId": "u"}},
        }))
        .unwrap();
        analysis.status = phase.map(|phase| golftracker_crds::analysis::SwingAnalysisStatus {
            phase,
            ..Default::default()
        });
        Arc::new(analysis)
    }

    #[test]
    fn counts_only_the_stacks_own_queued_and_running_analyses() {
        let analyses = [
            analysis("ns", "prod", Some(Phase::Queued)),
            analysis("ns", "prod", Some(Phase::Queued)),
            analysis("ns", "prod", Some(Phase::Running)),
            analysis("ns", "prod", Some(Phase::Succeeded)),
            analysis("ns", "prod", None),
            analysis("ns", "dev", Some(Phase::Running)),
            analysis("other", "prod", Some(Phase::Running)),
        ];
        assert_eq!(counts_of_stack(&analyses, "ns", "prod"), (2, 1));
        assert_eq!(counts_of_stack(&analyses, "ns", "dev"), (0, 1));
        assert_eq!(counts_of_stack(&analyses, "ns", "none"), (0, 0));
    }
}
