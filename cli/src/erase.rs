//! `erase`: deletes an analysis. What happens to its data is the analysis'
//! `retention`: Erase deletes the video, report and database rows (the operator's
//! finalizer does it); Retain keeps them, unless `--erase-data` switches it to Erase first.

use std::time::Duration;

use golftracker_crds::analysis::Retention;
use golftracker_operator::analysis::FINALIZER;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

use crate::cluster::Target;
use crate::error::{Error, Result, kube_error};

pub async fn run(target: &Target, name: &str, erase_data: bool, timeout: Duration) -> Result<()> {
    let analysis = target.analysis(name).await?;
    let api = target.analyses();
    let mut retention = analysis.spec.retention;
    if erase_data && retention == Retention::Retain {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"retention": "Erase"}})),
        )
        .await
        .map_err(kube_error("patch", "swinganalyses", &target.namespace))?;
        retention = Retention::Erase;
    }
    if retention == Retention::Erase {
        // Deleted before the operator added its finalizer, the object would go at once
        // and its data would stay.
        wait_for_erase_finalizer(target, name, timeout).await?;
    }
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(kube_error("delete", "swinganalyses", &target.namespace))?;
    crate::follow::until_deleted(target, name, timeout).await?;
    match retention {
        Retention::Erase => {
            println!("swinganalysis/{name} erased: its video, report and database rows are deleted")
        }
        Retention::Retain => println!(
            "swinganalysis/{name} deleted; its data is kept (retention Retain; \
             `--erase-data` deletes the video, report and database rows too)"
        ),
    }
    Ok(())
}

async fn wait_for_erase_finalizer(target: &Target, name: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let analysis = target.analysis(name).await?;
        if analysis.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                seconds: timeout.as_secs(),
                waiting_for: format!(
                    "the operator has not taken on {name} (no {FINALIZER} finalizer); is it running?"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
