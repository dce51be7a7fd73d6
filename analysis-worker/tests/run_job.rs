//! `golftracker-worker run` against real servers: MinIO and PostgreSQL from
//! the local cluster, the env contract of `golftracker_crds::worker_env`.

use std::process::Command;

use golftracker_crds::worker_env as env;
use golftracker_local_cluster::{LocalCluster, LocalClusterBuilder};
use golftracker_results_db::{Outcome, fetch_outcome, fetch_report};

struct Job<'a> {
    cluster: &'a LocalCluster,
    uid: &'a str,
    video_key: &'a str,
    model: String,
}

impl Job<'_> {
    fn run(&self) -> std::process::Output {
        let s3 = self.cluster.s3().unwrap();
        let pg = self.cluster.postgres().unwrap();
        Command::new(env!("CARGO_BIN_EXE_golftracker-worker"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env(env::ANALYSIS_NAME, format!("swing-{}", self.uid))
            .env(env::ANALYSIS_NAMESPACE, "golfers")
            .env(env::ANALYSIS_UID, self.uid)
            .env(env::USER_ID, "user-1")
            .env(env::VIDEO_URI, format!("s3://videos/{}", self.video_key))
            .env(
                env::REPORT_PREFIX_URI,
                format!("s3://videos/reports/{}/", self.uid),
            )
            .env(env::S3_ENDPOINT, &s3.endpoint)
            .env(env::S3_REGION, &s3.region)
            .env(env::S3_PATH_STYLE, "true")
            .env(env::AWS_ACCESS_KEY_ID, &s3.access_key)
            .env(env::AWS_SECRET_ACCESS_KEY, &s3.secret_key)
            .env(env::MODEL_URI, &self.model)
            .env(env::CAMERA_VIEW, "unknown")
            .env(env::HANDEDNESS, "right")
            .env(env::PG_HOST, &pg.host)
            .env(env::PG_PORT, pg.port.to_string())
            .env(env::PG_USER, &pg.user)
            .env(env::PG_PASSWORD, &pg.password)
            .env(env::PG_DATABASE, &pg.database)
            .env(env::PG_SSLMODE, "disable")
            .output()
            .expect("worker runs")
    }
}

async fn report_keys(cluster: &LocalCluster, uid: &str) -> Vec<String> {
    let listing = cluster
        .s3()
        .unwrap()
        .client()
        .list_objects_v2()
        .bucket("videos")
        .prefix(format!("reports/{uid}/"))
        .send()
        .await
        .unwrap();
    listing
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_bad_video_gives_a_failure_row_and_no_report() {
    let cluster = LocalClusterBuilder::none()
        .with_s3()
        .with_postgres()
        .start()
        .await
        .unwrap();
    let s3 = cluster.s3().unwrap().client();
    s3.create_bucket().bucket("videos").send().await.unwrap();
    s3.put_object()
        .bucket("videos")
        .key("uploads/bad.mp4")
        .body(b"definitely not a video".to_vec().into())
        .send()
        .await
        .unwrap();
    let job = Job {
        cluster: &cluster,
        uid: "uid-bad",
        video_key: "uploads/bad.mp4",
        model: "/nonexistent".into(),
    };
    let output = job.run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("InvalidVideo"), "{stderr}");

    let pool = cluster.postgres().unwrap().pool().await.unwrap();
    match fetch_outcome(&pool, "uid-bad").await.unwrap() {
        Some(Outcome::Failed(failure)) => {
            assert_eq!(failure.code, "InvalidVideo");
            assert!(
                failure.message.contains("not a readable media file"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected a failure row, got {other:?}"),
    }
    assert!(report_keys(&cluster, "uid-bad").await.is_empty());

    // A missing video is a storage failure, also recorded.
    let job = Job {
        cluster: &cluster,
        uid: "uid-missing",
        video_key: "uploads/none.mp4",
        model: "/nonexistent".into(),
    };
    assert!(!job.run().status.success());
    match fetch_outcome(&pool, "uid-missing").await.unwrap() {
        Some(Outcome::Failed(failure)) => assert_eq!(failure.code, "StorageError"),
        other => panic!("expected a failure row, got {other:?}"),
    }
}

#[tokio::test]
async fn a_synthetic_swing_is_analysed_end_to_end() {
    let model = std::env::var("GOLFTRACKER_TEST_MODEL").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/golftracker/models/blazepose-0.5.1675469404-v1/blazepose_full.safetensors")
    });
    assert!(
        std::path::Path::new(&model).exists(),
        "pose model missing: run `cargo xtask models` first"
    );
    let dir = tempfile::tempdir().unwrap();
    let synth = Command::new(env!("CARGO_BIN_EXE_golftracker-worker"))
        .args([
            "synth",
            "--out",
            dir.path().to_str().unwrap(),
            "--seed",
            "7",
            "--width",
            "640",
            "--height",
            "480",
            "--seconds",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );

    let cluster = LocalClusterBuilder::none()
        .with_s3()
        .with_postgres()
        .start()
        .await
        .unwrap();
    let s3 = cluster.s3().unwrap().client();
    s3.create_bucket().bucket("videos").send().await.unwrap();
    let clip = std::fs::read(dir.path().join("swing-7-0.mp4")).unwrap();
    s3.put_object()
        .bucket("videos")
        .key("uploads/swing.mp4")
        .body(clip.into())
        .send()
        .await
        .unwrap();

    let job = Job {
        cluster: &cluster,
        uid: "uid-ok",
        video_key: "uploads/swing.mp4",
        model,
    };
    let output = job.run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let pool = cluster.postgres().unwrap().pool().await.unwrap();
    match fetch_outcome(&pool, "uid-ok").await.unwrap() {
        Some(Outcome::Succeeded(success)) => {
            assert_eq!(success.report_uri, "s3://videos/reports/uid-ok/");
            assert!(
                success.tempo_ratio.is_some_and(|t| t > 1.0 && t < 6.0),
                "{success:?}"
            );
        }
        other => panic!("expected a success, got {other:?}"),
    }
    let report = fetch_report(&pool, "uid-ok").await.unwrap().unwrap();
    assert_eq!((report.width, report.height), (640, 480));
    let mut keys = report_keys(&cluster, "uid-ok").await;
    keys.sort();
    assert_eq!(
        keys,
        ["reports/uid-ok/report.json", "reports/uid-ok/report.png"]
    );
}
