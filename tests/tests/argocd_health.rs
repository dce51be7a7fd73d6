//! The Argo CD health checks of examples/argocd (Lua, run here by Lua 5.1 as Argo CD's
//! gopher-lua would) against the status objects the controllers write on the local
//! control plane: a Ready stack, a stack whose storage fails, and analyses that are
//! pending, queued, succeeded and failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use golftracker_crds::analysis::{Phase, SwingAnalysis};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{Harness, NAMESPACE, STACK, phase, synthetic_clip, temp_dir};
use kube::Api;
use kube::api::PostParams;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt};
use serde_json::Value;

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/argocd")
}

fn script(kind: &str) -> String {
    let path = argocd_dir().join(format!("health/{}.lua", kind.to_lowercase()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Argo CD's verdict on `object`: (status, message).
fn health(kind: &str, object: &impl serde::Serialize) -> anyhow::Result<(String, String)> {
    let lua = Lua::new();
    // Absent fields are nil in Argo CD's Lua, never a null sentinel.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let object = serde_json::to_value(object)?;
    lua.globals()
        .set("obj", lua.to_value_with(&object, options)?)?;
    let verdict: mlua::Table = lua.load(script(kind)).set_name(kind).eval()?;
    let status: String = verdict.get("status")?;
    let message: Option<String> = verdict.get("message")?;
    Ok((status, message.unwrap_or_default()))
}

#[test]
fn argocd_cm_carries_the_health_scripts_unchanged() -> anyhow::Result<()> {
    let cm: Value = serde_saphyr::from_str(&std::fs::read_to_string(
        argocd_dir().join("argocd-cm.yaml"),
    )?)?;
    for kind in ["GolfTrackerStack", "SwingAnalysis"] {
        let key = format!("resource.customizations.health.golftracker.io_{kind}");
        assert_eq!(
            cm["data"][&key].as_str(),
            Some(script(kind).as_str()),
            "argocd-cm.yaml's {key} differs from health/{}.lua",
            kind.to_lowercase()
        );
    }
    Ok(())
}

/// Polls an analysis until `done` holds for it.
async fn wait_for(
    analyses: &Api<SwingAnalysis>,
    name: &str,
    done: impl Fn(&SwingAnalysis) -> bool,
) -> anyhow::Result<SwingAnalysis> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let analysis = analyses.get(name).await?;
        if done(&analysis) {
            return Ok(analysis);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name} stayed at {:?}", analysis.status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_read_what_the_controllers_write() -> anyhow::Result<()> {
    let harness = Harness::start(1).await?;
    let stacks: Api<GolfTrackerStack> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let analyses = harness.analyses();

    // A Ready stack is Healthy.
    let ready = stacks.get(STACK).await?;
    let (status, message) = health("GolfTrackerStack", &ready)?;
    assert_eq!(status, "Healthy", "{message}");

    // A stack whose S3 credentials are missing is Degraded, and says why.
    let mut broken = ready.clone();
    broken.metadata = kube::api::ObjectMeta {
        name: Some("no-credentials".into()),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    };
    broken.status = None;
    broken.spec.storage.bucket = "golftracker-no-credentials".into();
    broken.spec.storage.credentials_secret = Some("does-not-exist".into());
    let (status, _) = health("GolfTrackerStack", &broken)?;
    assert_eq!(status, "Progressing", "a stack without status yet");
    stacks.create(&PostParams::default(), &broken).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let broken = loop {
        let stack = stacks.get("no-credentials").await?;
        if stack
            .status
            .as_ref()
            .is_some_and(|s| !s.conditions.is_empty())
        {
            break stack;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no status on the broken stack");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, message) = health("GolfTrackerStack", &broken)?;
    assert_eq!(status, "Degraded", "{message}");
    assert!(
        message.contains("StorageReady") && message.contains("does-not-exist"),
        "{message}"
    );

    // An analysis of a stack that does not exist waits (Pending): Progressing.
    let orphan: SwingAnalysis = serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
        "metadata": {"name": "orphan", "namespace": NAMESPACE},
        "spec": {"stackRef": {"name": "absent"}, "video": "videos/none.mp4",
                 "golfer": {"userId": "golfer-1"}},
    }))?;
    analyses.create(&PostParams::default(), &orphan).await?;
    let orphan = wait_for(&analyses, "orphan", |a| {
        phase(a) == Phase::Pending && a.status.as_ref().is_some_and(|s| !s.conditions.is_empty())
    })
    .await?;
    let (status, message) = health("SwingAnalysis", &orphan)?;
    assert_eq!(status, "Progressing");
    assert!(message.contains("does not exist"), "{message}");

    // One slot: the first analysis runs, the second is Queued; both Progressing until done.
    let dir = temp_dir("argocd-health");
    let clip = synthetic_clip(&dir, 3)?;
    harness.submit("first", &clip, 0, "Retain").await?;
    harness.submit("second", &clip, 0, "Retain").await?;
    let queued = wait_for(&analyses, "second", |a| phase(a) == Phase::Queued).await?;
    let (status, message) = health("SwingAnalysis", &queued)?;
    assert_eq!(status, "Progressing");
    assert!(message.contains("Queued"), "{message}");
    let done = harness
        .wait_finished(&["first".into(), "second".into()], Duration::from_secs(300))
        .await?;
    for analysis in &done {
        assert_eq!(phase(analysis), Phase::Succeeded, "{:?}", analysis.status);
        let (status, message) = health("SwingAnalysis", analysis)?;
        assert_eq!(status, "Healthy", "{message}");
    }

    // A video the worker cannot decode fails the analysis: Degraded, with the reason.
    harness
        .submit("not-a-video", b"these bytes are no video", 0, "Retain")
        .await?;
    let failed = harness
        .wait_finished(&["not-a-video".into()], Duration::from_secs(300))
        .await?
        .pop()
        .context("no analysis")?;
    assert_eq!(phase(&failed), Phase::Failed, "{:?}", failed.status);
    let (status, message) = health("SwingAnalysis", &failed)?;
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("Failed: "), "{message}");
    Ok(())
}
