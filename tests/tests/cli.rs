//! The `golftracker` CLI binary end to end, run as a process with a kubeconfig
//! against the local control plane, the in-process operator and the real worker.

use std::path::Path;
use std::process::{Command, Output};

use golftracker_crds::analysis::Phase;
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{
    BUCKET, Harness, NAMESPACE, STACK, cli_binary, phase, service_account_kubeconfig,
    synthetic_clip, temp_dir,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

/// Runs `golftracker ARGS` with the admin kubeconfig.
fn golftracker(h: &Harness, args: &[&str]) -> Output {
    golftracker_as(&h.cluster.kube().unwrap().kubeconfig, args)
}

fn golftracker_as(kubeconfig: &Path, args: &[&str]) -> Output {
    let out = Command::new(cli_binary().unwrap())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    eprintln!(
        "$ golftracker {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "exit {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got success");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn object_exists(h: &Harness, key: &str) -> bool {
    h.s3.head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .is_ok()
}

async fn object_count(h: &Harness, prefix: &str) -> usize {
    h.s3.list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_list_get_report_and_erase() {
    let dir = temp_dir("cli");
    // The seed the analysis controller's test shows to give a clean swing.
    synthetic_clip(&dir, 7).unwrap();
    let clip = dir.join("swing-7-0.mp4");
    let h = Harness::start(2).await.unwrap();

    let out = golftracker(
        &h,
        &[
            "submit",
            clip.to_str().unwrap(),
            "--stack",
            STACK,
            "--wait",
            "--name",
            "cli-swing",
            "--user",
            "golfer-7",
            "--club",
            "driver",
        ],
    );
    let printed = stdout(&out);
    let video_key = "videos/golfer-7/cli-swing.mp4";
    assert!(
        printed.contains(&format!("to s3://{BUCKET}/{video_key}")),
        "{printed}"
    );
    assert!(printed.contains("swinganalysis/cli-swing created"));
    // Phase changes as they happened, then the result as `get` prints it.
    assert!(printed.contains("cli-swing: Running"), "{printed}");
    assert!(printed.contains("cli-swing: Succeeded"), "{printed}");
    for field in [
        "Golfer:         golfer-7 (right, driver)",
        "impact",
        "Tempo:",
        "Report:",
    ] {
        assert!(printed.contains(field), "{field} missing:\n{printed}");
    }
    let analysis = h.analyses().get("cli-swing").await.unwrap();
    assert_eq!(phase(&analysis), Phase::Succeeded);
    assert_eq!(analysis.spec.video, video_key);
    let result = analysis.status.unwrap().result.unwrap();
    let tempo = format!("{:.2}", result.tempo_ratio.unwrap());
    assert!(
        printed.contains(&format!("Tempo:          {tempo}")),
        "{printed}"
    );

    // Larger than one part: a multipart upload, whole and with the video's content type.
    let big = dir.join("big.mp4");
    let mut bytes = std::fs::read(&clip).unwrap();
    bytes.resize(17 * 1024 * 1024 + 3, 0);
    std::fs::write(&big, &bytes).unwrap();
    stdout(&golftracker(
        &h,
        &[
            "submit",
            big.to_str().unwrap(),
            "--stack",
            STACK,
            "--name",
            "big-upload",
            "--user",
            "golfer-7",
        ],
    ));
    let head =
        h.s3.head_object()
            .bucket(BUCKET)
            .key("videos/golfer-7/big-upload.mp4")
            .send()
            .await
            .unwrap();
    assert_eq!(head.content_length(), Some(bytes.len() as i64));
    assert_eq!(head.content_type(), Some("video/mp4"));

    let table = stdout(&golftracker(&h, &["list"]));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("NAME"), "{table}");
    for column in ["STACK", "PHASE", "TEMPO", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("cli-swing "))
        .unwrap_or_else(|| panic!("no row for cli-swing:\n{table}"));
    assert!(
        row.contains(STACK) && row.contains("Succeeded") && row.contains(&tempo),
        "{row}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("big-upload ")),
        "{table}"
    );

    let described = stdout(&golftracker(&h, &["get", "cli-swing"]));
    for field in ["Phase:          Succeeded", "Events:", "address", "Plot:"] {
        assert!(described.contains(field), "{field} missing:\n{described}");
    }

    let report_dir = dir.join("report");
    let written = stdout(&golftracker(
        &h,
        &["report", "cli-swing", "--out", report_dir.to_str().unwrap()],
    ));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert!(report.is_object());
    let plot_name = result
        .plot_uri
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let plot = std::fs::read(report_dir.join(&plot_name)).unwrap();
    assert!(plot.starts_with(b"\x89PNG"), "the plot is a PNG");
    assert_eq!(written.lines().count(), 2, "{written}");

    // Retain (the default): the object goes, the data stays.
    let kept = stdout(&golftracker(&h, &["erase", "big-upload"]));
    assert!(kept.contains("data is kept"), "{kept}");
    assert!(h.analyses().get_opt("big-upload").await.unwrap().is_none());
    assert!(object_exists(&h, "videos/golfer-7/big-upload.mp4").await);

    // Erased right after submit, before the operator got to it: the data goes all the same.
    stdout(&golftracker(
        &h,
        &[
            "submit",
            clip.to_str().unwrap(),
            "--stack",
            STACK,
            "--name",
            "at-once",
            "--user",
            "golfer-7",
            "--retention",
            "Erase",
        ],
    ));
    let erased = stdout(&golftracker(&h, &["erase", "at-once"]));
    assert!(erased.contains("erased"), "{erased}");
    assert!(!object_exists(&h, "videos/golfer-7/at-once.mp4").await);

    // --erase-data: video and report objects are gone when the command returns.
    let report_prefix = result
        .report_uri
        .unwrap()
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    assert_eq!(object_count(&h, &report_prefix).await, 2);
    let erased = stdout(&golftracker(&h, &["erase", "cli-swing", "--erase-data"]));
    assert!(erased.contains("erased"), "{erased}");
    assert!(h.analyses().get_opt("cli-swing").await.unwrap().is_none());
    assert!(!object_exists(&h, video_key).await);
    assert_eq!(object_count(&h, &report_prefix).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_missing_stack_non_video_and_no_permission() {
    let dir = temp_dir("cli-errors");
    synthetic_clip(&dir, 12).unwrap();
    let clip = dir.join("swing-12-0.mp4");
    let h = Harness::start(1).await.unwrap();

    let missing = failure(&golftracker(
        &h,
        &["submit", clip.to_str().unwrap(), "--stack", "nope"],
    ));
    assert!(
        missing.contains(&format!(
            "stack \"nope\" not found in namespace \"{NAMESPACE}\""
        )),
        "{missing}"
    );

    // A stack whose S3 credentials Secret does not exist never becomes Ready.
    let stacks: Api<GolfTrackerStack> = Api::namespaced(h.client.clone(), NAMESPACE);
    let mut broken = stacks.get(STACK).await.unwrap();
    broken.metadata = ObjectMeta {
        name: Some("broken".into()),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    };
    broken.status = None;
    broken.spec.storage.bucket = "golftracker-broken".into();
    broken.spec.storage.credentials_secret = Some("no-such-secret".into());
    stacks
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    // Submit once the operator has said what is wrong with it.
    for _ in 0..120 {
        let status = stacks.get("broken").await.unwrap().status;
        if status.is_some_and(|s| !s.conditions.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let not_ready = failure(&golftracker(
        &h,
        &["submit", clip.to_str().unwrap(), "--stack", "broken"],
    ));
    assert!(
        not_ready.contains("stack \"broken\" is not Ready: StorageReady")
            && not_ready.contains("no-such-secret"),
        "{not_ready}"
    );

    let text = dir.join("notes.mp4");
    std::fs::write(&text, "these are my swing notes, not a video").unwrap();
    let not_video = failure(&golftracker(
        &h,
        &["submit", text.to_str().unwrap(), "--stack", STACK],
    ));
    assert!(not_video.contains("notes.mp4: not a video"), "{not_video}");
    // Refused before anything was uploaded or created.
    assert_eq!(object_count(&h, "videos/").await, 0);
    assert!(
        h.analyses()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A container header but no video in it: the worker fails, and `--wait` says why.
    let empty = dir.join("empty.mp4");
    let mut header = std::fs::read(&clip).unwrap();
    header.truncate(64);
    std::fs::write(&empty, header).unwrap();
    let failed = failure(&golftracker(
        &h,
        &[
            "submit",
            empty.to_str().unwrap(),
            "--stack",
            STACK,
            "--wait",
            "--name",
            "empty",
        ],
    ));
    assert!(failed.contains("analysis \"empty\" failed: "), "{failed}");
    let described = stdout(&golftracker(&h, &["get", "empty"]));
    assert!(described.contains("Phase:          Failed"), "{described}");
    assert!(described.contains("Failure:"), "{described}");

    let unknown = failure(&golftracker(&h, &["get", "ghost"]));
    assert!(
        unknown.contains("analysis \"ghost\" not found"),
        "{unknown}"
    );

    // A ServiceAccount without any RBAC: the 403 says which permission is missing.
    let nobody = service_account_kubeconfig(&h.cluster, "nobody")
        .await
        .unwrap();
    let forbidden = failure(&golftracker_as(&nobody, &["list"]));
    assert!(
        forbidden.contains(&format!(
            "forbidden: you may not list swinganalyses in namespace \"{NAMESPACE}\""
        )),
        "{forbidden}"
    );
    let forbidden = failure(&golftracker_as(
        &nobody,
        &["submit", clip.to_str().unwrap(), "--stack", STACK],
    ));
    assert!(
        forbidden.contains("forbidden: you may not get golftrackerstacks"),
        "{forbidden}"
    );
}
