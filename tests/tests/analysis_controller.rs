//! The SwingAnalysis controller end to end on the local control plane: real
//! kube-apiserver, MinIO, PostgreSQL, the local job runner and the real worker.

use std::collections::BTreeMap;
use std::time::Duration;

use golftracker_crds::analysis::Phase;
use golftracker_e2e::{BUCKET, Harness, NAMESPACE, phase, synthetic_clip};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

/// Jobs the operator created, by analysis.
async fn jobs_by_analysis(h: &Harness) -> BTreeMap<String, Vec<Job>> {
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), NAMESPACE);
    let mut by = BTreeMap::<String, Vec<Job>>::new();
    for job in jobs
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=golftracker-operator"))
        .await
        .unwrap()
    {
        by.entry(job.labels()["golftracker.io/analysis"].clone())
            .or_default()
            .push(job);
    }
    by
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_run_queued_within_the_limit_and_erase_on_delete() {
    let dir = tempfile_dir();
    let clip = synthetic_clip(&dir, 7).unwrap();
    let h = Harness::start(2).await.unwrap();
    let names: Vec<String> = (0..4).map(|i| format!("swing-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let retention = if i == 0 { "Erase" } else { "Retain" };
        h.submit(name, &clip, 0, retention).await.unwrap();
    }

    // While they run: never more than 2 Jobs active, and the waiting ones say where they stand.
    let mut saw_queue_position = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let jobs = jobs_by_analysis(&h).await;
        assert!(
            active(&jobs) <= 2,
            "more Jobs active than maxConcurrentJobs: {}",
            active(&jobs)
        );
        let list = h.analyses().list(&ListParams::default()).await.unwrap();
        saw_queue_position |= list
            .items
            .iter()
            .any(|a| a.status.as_ref().and_then(|s| s.queue_position).is_some());
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
        saw_queue_position,
        "4 analyses with 2 slots: some must have been Queued with a position"
    );

    let finished = h
        .wait_finished(&names, Duration::from_secs(5))
        .await
        .unwrap();
    for a in &finished {
        let status = a.status.as_ref().unwrap();
        assert_eq!(
            status.phase,
            Phase::Succeeded,
            "{}: {:?}",
            a.name_any(),
            status.conditions
        );
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
    let jobs = jobs_by_analysis(&h).await;
    for name in &names {
        assert_eq!(
            jobs.get(name).map(Vec::len),
            Some(1),
            "exactly one Job for {name}"
        );
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
        jobs_by_analysis(&h).await.is_empty(),
        "no Job for invalid input"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("golftracker-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The operator is stopped abruptly (its task aborted mid-reconcile, losing all
/// in-memory state, as a SIGKILL would) ten times while analyses run, and started
/// again each time: every analysis still succeeds, with exactly one Job ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restarts_never_duplicate_jobs() {
    let dir = tempfile_dir();
    let clip = synthetic_clip(&dir, 7).unwrap();
    let mut h = Harness::start(3).await.unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("restart-{i}")).collect();
    for name in &names {
        h.submit(name, &clip, 0, "Retain").await.unwrap();
    }
    // Irregular moments, fixed so a failure can be replayed.
    for delay_ms in [150, 900, 400, 1300, 250, 700, 1100, 300, 800, 500] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        h.kill_operator();
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.start_operator();
    }
    let finished = h
        .wait_finished(&names, Duration::from_secs(900))
        .await
        .unwrap();
    for a in &finished {
        let status = a.status.as_ref().unwrap();
        assert_eq!(
            status.phase,
            Phase::Succeeded,
            "{}: {:?}",
            a.name_any(),
            status.conditions
        );
    }
    let jobs = jobs_by_analysis(&h).await;
    for name in &names {
        assert_eq!(
            jobs.get(name).map(Vec::len),
            Some(1),
            "exactly one Job for {name}"
        );
    }
}
