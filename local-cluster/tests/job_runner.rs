//! The local Job runner against the real kube-apiserver: Jobs run to Complete
//! or Failed with the status the Job controller would write.

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use golftracker_local_cluster::{
    LocalCluster,
    job_runner::{JobRunner, JobRunnerConfig, LOCAL_RUNNER_LABEL, pod_logs},
};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Namespace, Secret},
};
use kube::{
    Api,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};

const NAMESPACE: &str = "jobs";
/// Stands for a shell image: `sh` in `command` resolves on the host PATH.
const SHELL_IMAGE: &str = "docker.io/library/busybox";

fn job(name: &str, image: &str, script: &str, backoff_limit: i32, deadline: Option<i64>) -> Job {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { LOCAL_RUNNER_LABEL: "true" } },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": { "labels": { "app": "probe" } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "main",
                        "image": image,
                        "command": ["sh", "-c", script],
                        "env": [
                            { "name": "GREETING", "value": "hello" },
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                            // Only variables defined earlier expand, as in Kubernetes.
                            { "name": "MESSAGE", "value": "$(GREETING) from $(POD_NAME) $(LATER)" },
                            { "name": "LATER", "value": "x" },
                            { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                            { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                        ],
                        "envFrom": [{ "prefix": "CREDS_", "secretRef": { "name": "creds" } }],
                    }],
                },
            },
        },
    }))
    .unwrap()
}

/// Waits until the Job has a true Complete or Failed condition.
async fn finished(jobs: &Api<Job>, name: &str) -> Job {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(jobs.clone(), config).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(job) = stream.next().await {
            let job = job.unwrap();
            if final_condition(&job).is_some() {
                return job;
            }
        }
        panic!("watch ended");
    };
    tokio::time::timeout(Duration::from_secs(90), wait)
        .await
        .unwrap_or_else(|_| panic!("Job {name} did not finish"))
}

fn final_condition(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.clone())
}

fn condition_reason(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?
        .reason
        .clone()
}

#[tokio::test]
async fn jobs_run_to_complete_and_failed() {
    let cluster = LocalCluster::builder()
        .without_s3()
        .without_vault()
        .without_postgres()
        .start()
        .await
        .expect("kube-apiserver starts");
    let client = cluster.kube_client().unwrap();
    let mut config = JobRunnerConfig::new(cluster.work_dir());
    config.images = BTreeMap::from([(SHELL_IMAGE.to_owned(), "/bin/sh".into())]);
    config.retry_delay = Duration::from_millis(200);
    let _runner = JobRunner::spawn(client.clone(), config);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({ "metadata": { "name": NAMESPACE } }))
                .unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": "creds" },
                "stringData": { "password": "s3cret" },
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let env_script = r#"echo "$MESSAGE app=$APP password=$PASSWORD from-env-from=$CREDS_password tmp=$TMPDIR"; exit 0"#;
    for job in [
        job(
            "succeeds",
            &format!("{SHELL_IMAGE}:1.36"),
            env_script,
            0,
            None,
        ),
        job("fails", SHELL_IMAGE, "echo attempt; exit 3", 2, None),
        job("too-slow", SHELL_IMAGE, "sleep 60", 0, Some(2)),
        job(
            "unknown-image",
            "example.org/not-mapped:1",
            "exit 0",
            3,
            None,
        ),
    ] {
        jobs.create(&PostParams::default(), &job).await.unwrap();
    }

    let succeeded = finished(&jobs, "succeeds").await;
    assert_eq!(final_condition(&succeeded).as_deref(), Some("Complete"));
    assert_eq!(
        condition_reason(&succeeded, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    let status = succeeded.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(status.active.unwrap_or(0), 0, "no pod left active");
    assert!(status.start_time.is_some());
    assert!(status.completion_time.unwrap().0 >= status.start_time.unwrap().0);
    let logs = pod_logs(cluster.work_dir(), NAMESPACE, "succeeds");
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    let pod_name = logs[0].file_stem().unwrap().to_str().unwrap();
    assert!(pod_name.starts_with("succeeds-"), "{pod_name}");
    assert!(
        log.contains(&format!(
            "hello from {pod_name} $(LATER) app=probe password=s3cret from-env-from=s3cret tmp="
        )),
        "{log}"
    );

    let failed = finished(&jobs, "fails").await;
    assert_eq!(final_condition(&failed).as_deref(), Some("Failed"));
    assert_eq!(
        condition_reason(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        condition_reason(&failed, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let status = failed.status.unwrap();
    assert_eq!(
        status.failed,
        Some(3),
        "backoffLimit 2 allows three attempts"
    );
    assert_eq!(status.succeeded, None);
    assert!(status.completion_time.is_none());
    assert_eq!(pod_logs(cluster.work_dir(), NAMESPACE, "fails").len(), 3);

    let too_slow = finished(&jobs, "too-slow").await;
    assert_eq!(
        condition_reason(&too_slow, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );

    let unknown = finished(&jobs, "unknown-image").await;
    let failed_condition = unknown.status.unwrap().conditions.unwrap().pop().unwrap();
    assert_eq!(failed_condition.type_, "Failed");
    assert!(
        failed_condition
            .message
            .unwrap()
            .contains("example.org/not-mapped:1"),
        "the reason names the image"
    );
}
