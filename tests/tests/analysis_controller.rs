//! The SwingAnalysis controller end to end on the local control plane: real
//! kube-apiserver, MinIO, PostgreSQL, the local job runner and the real worker.

use std::collections::BTreeMap;
use std::time::Duration;

use golftracker_crds::analysis::Phase;
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{BUCKET, Harness, NAMESPACE, STACK, phase, synthetic_clip, temp_dir};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};

fn active(jobs: &BTreeMap<String, Vec<Job>>) -> usize {
    jobs.values()
        .flatten()
        .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        .count()
}

async fn object_keys(h: &Harness, prefix: &str) -> Vec<String> {
    let listing =
        h.s3.list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
    listing
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

/// maxConcurrentJobs 3 with 20 analyses: never more than 3 Jobs active, queue
/// positions reported, all finish; then erase/retain on delete, and an erase while S3
/// is down keeps the finalizer with a condition until S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_analyses_share_three_slots_and_erase_on_delete() {
    let dir = temp_dir("queue");
    let clip = synthetic_clip(&dir, 7).unwrap();
    let mut h = Harness::start(3).await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("swing-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let retention = if i == 0 || i == 2 { "Erase" } else { "Retain" };
        h.submit(name, &clip, 0, retention).await.unwrap();
    }

    // While they run: never more than 3 Jobs active, the waiting ones say where they
    // stand, and the stack's columns count them.
    let stacks: Api<GolfTrackerStack> = Api::namespaced(h.client.clone(), NAMESPACE);
    let stack_counts = || async {
        let status = stacks.get_status(STACK).await.unwrap().status.unwrap();
        (
            status.queued_analyses.unwrap_or(0),
            status.running_analyses.unwrap_or(0),
        )
    };
    let (mut most_queued, mut most_running) = (0, 0);
    let mut positions = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    loop {
        let jobs = h.jobs_by_analysis().await.unwrap();
        assert!(
            active(&jobs) <= 3,
            "more Jobs active than maxConcurrentJobs: {}",
            active(&jobs)
        );
        let list = h.analyses().list(&ListParams::default()).await.unwrap();
        positions.extend(
            list.items
                .iter()
                .filter_map(|a| a.status.as_ref().and_then(|s| s.queue_position)),
        );
        // Phases, not Jobs: a finished Job frees its slot before its analysis is
        // Succeeded, so the Running count may briefly exceed the limit.
        let (queued, running) = stack_counts().await;
        most_queued = most_queued.max(queued);
        most_running = most_running.max(running);
        if list.items.iter().all(|a| phase(a).is_finished()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "analyses did not finish: {:?}",
            list.items.iter().map(phase).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        positions.len() > 1,
        "20 analyses with 3 slots: several must have been Queued with positions, saw {positions:?}"
    );
    assert!(
        most_queued > 1,
        "the stack never counted its queued analyses"
    );
    // The counts follow the cache within a few seconds: nothing is queued or running now.
    let mut counts = stack_counts().await;
    for _ in 0..50 {
        if counts == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        counts = stack_counts().await;
    }
    assert_eq!(counts, (0, 0), "stack counts after all analyses finished");

    let finished = h
        .wait_succeeded_with_one_job_each(&names, Duration::from_secs(5))
        .await
        .unwrap();
    for a in &finished {
        let status = a.status.as_ref().unwrap();
        let result = status.result.as_ref().expect("result copied into status");
        assert!(
            result.tempo_ratio.is_some_and(|t| t > 0.5 && t < 10.0),
            "{result:?}"
        );
        assert!(result.events.address.is_some() && result.events.impact.is_some());
        assert!(
            result
                .report_uri
                .as_deref()
                .is_some_and(|u| u.ends_with("/report.json"))
        );
        assert!(status.start_time.is_some() && status.completion_time.is_some());
    }

    // Erase: the video, the report objects and the rows go before the object does.
    let erased = h.analyses().get("swing-0").await.unwrap();
    let uid = erased.uid().unwrap();
    assert!(
        !object_keys(&h, &format!("reports/{NAMESPACE}/swing-0/{uid}/"))
            .await
            .is_empty()
    );
    h.analyses()
        .delete("swing-0", &DeleteParams::default())
        .await
        .unwrap();
    let retained = h.analyses().get("swing-1").await.unwrap();
    // Only Erase needs the operator at deletion: Retain carries no finalizer.
    assert_eq!(erased.finalizers(), ["golftracker.io/erase"]);
    assert!(
        retained.finalizers().is_empty(),
        "{:?}",
        retained.finalizers()
    );
    h.analyses()
        .delete("swing-1", &DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if h.analyses().get_opt("swing-0").await.unwrap().is_none()
            && h.analyses().get_opt("swing-1").await.unwrap().is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        h.analyses().get_opt("swing-0").await.unwrap().is_none(),
        "finalizer did not finish"
    );
    assert!(
        object_keys(&h, "videos/swing-0.mp4").await.is_empty(),
        "video not erased"
    );
    assert!(
        object_keys(&h, &format!("reports/{NAMESPACE}/swing-0/"))
            .await
            .is_empty(),
        "report not erased"
    );
    assert!(
        golftracker_results_db::fetch_outcome(&h.db, &uid)
            .await
            .unwrap()
            .is_none(),
        "rows not erased"
    );
    // Retain keeps everything.
    assert!(!object_keys(&h, "videos/swing-1.mp4").await.is_empty());
    assert!(
        golftracker_results_db::fetch_outcome(&h.db, &retained.uid().unwrap())
            .await
            .unwrap()
            .is_some()
    );

    // S3 down during erase: the object stays, with a condition saying why.
    let uid = h.analyses().get("swing-2").await.unwrap().uid().unwrap();
    h.cluster.stop_server("minio").unwrap();
    h.analyses()
        .delete("swing-2", &DeleteParams::default())
        .await
        .unwrap();
    let mut erase_failed = None;
    for _ in 0..150 {
        let a = h.analyses().get("swing-2").await.unwrap();
        assert!(a.meta().deletion_timestamp.is_some());
        erase_failed = a
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Erased"))
            .filter(|c| c.status == "False")
            .cloned();
        if erase_failed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let erase_failed = erase_failed.expect("an Erased=False condition while S3 is down");
    assert_eq!(erase_failed.reason, "EraseFailed");
    assert!(
        erase_failed.message.contains("S3") || erase_failed.message.contains("s3://"),
        "the condition names what failed: {}",
        erase_failed.message
    );
    assert!(
        golftracker_results_db::fetch_outcome(&h.db, &uid)
            .await
            .unwrap()
            .is_some(),
        "nothing is erased halfway while S3 is down"
    );
    // S3 back: the retry erases everything and the object goes.
    h.cluster.restart_server("minio").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while h.analyses().get_opt("swing-2").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "erase did not complete after S3 came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(object_keys(&h, "videos/swing-2.mp4").await.is_empty());
    assert!(
        golftracker_results_db::fetch_outcome(&h.db, &uid)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stack_or_video_ends_in_a_condition() {
    let h = Harness::start(3).await.unwrap();
    let analyses = h.analyses();
    // Video never uploaded: Pending with InputValid=False, no Job.
    let missing: golftracker_crds::SwingAnalysis = serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
        "metadata": {"name": "no-video", "namespace": NAMESPACE},
        "spec": {"stackRef": {"name": golftracker_e2e::STACK}, "video": "videos/never-uploaded.mp4", "golfer": {"userId": "u"}},
    }))
    .unwrap();
    analyses
        .create(&Default::default(), &missing)
        .await
        .unwrap();
    // Stack in another namespace: refused with a clear condition.
    let cross: golftracker_crds::SwingAnalysis = serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
        "metadata": {"name": "cross-ns", "namespace": NAMESPACE},
        "spec": {"stackRef": {"name": "e2e", "namespace": "other"}, "video": "videos/x.mp4", "golfer": {"userId": "u"}},
    }))
    .unwrap();
    analyses.create(&Default::default(), &cross).await.unwrap();
    let condition = |name: &'static str, type_: &'static str| {
        let analyses = analyses.clone();
        async move {
            for _ in 0..150 {
                let a = analyses.get(name).await.unwrap();
                if let Some(c) = a
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
                {
                    return (phase(&a), c);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("{name} never got condition {type_}");
        }
    };
    let (p, c) = condition("no-video", "InputValid").await;
    assert_eq!(
        (p, c.status.as_str(), c.reason.as_str()),
        (Phase::Pending, "False", "VideoNotFound"),
        "{c:?}"
    );
    assert!(c.message.contains("never-uploaded.mp4"));
    let (p, c) = condition("cross-ns", "Failed").await;
    assert_eq!((p, c.reason.as_str()), (Phase::Failed, "InvalidStackRef"));
    assert!(
        h.jobs_by_analysis().await.unwrap().is_empty(),
        "no Job for invalid input"
    );
}
