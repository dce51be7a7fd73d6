//! Privacy erasure: with `retention: Erase`, deleting a SwingAnalysis first deletes
//! its video (every version), its report objects and its database rows. A failure
//! keeps the finalizer and says why in the `Erased` condition; it is retried.

use aws_sdk_s3::Client as S3;
use golftracker_crds::analysis::{Retention, SwingAnalysis, condition};
use golftracker_crds::conditions::{self, NewCondition};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Context, stack_ref, update_status, with_condition};
use crate::error::{Error, Result};

/// Deletes every version (and delete marker) of the objects under `prefix`; with
/// `exact`, only the object named `prefix` itself. Returns how many were deleted.
async fn delete_all_versions(s3: &S3, bucket: &str, prefix: &str, exact: bool) -> Result<usize> {
    let fail = |operation, e: String| Error::S3 {
        operation,
        target: format!("s3://{bucket}/{prefix}"),
        message: e,
    };
    let mut deleted = 0;
    let mut key_marker = None;
    let mut version_marker = None;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| fail("ListObjectVersions", crate::external::s3_error_message(&e)))?;
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        for (key, version) in versions.chain(markers) {
            let Some(key) = key.filter(|k| !exact || *k == prefix) else {
                continue;
            };
            s3.delete_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .map_err(|e| fail("DeleteObject", crate::external::s3_error_message(&e)))?;
            deleted += 1;
        }
        if page.is_truncated() != Some(true) {
            return Ok(deleted);
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

async fn erase(analysis: &SwingAnalysis, ctx: &Context) -> Result<String> {
    let Ok((namespace, stack_name)) = stack_ref(analysis) else {
        return Ok("nothing to erase: the analysis never ran (invalid stackRef)".into());
    };
    let stack = ctx.stacks.get(&ObjectRef::new(&stack_name).within(&namespace)).ok_or_else(|| Error::Finalizer(format!(
        "cannot erase: GolfTrackerStack {namespace}/{stack_name} (which knows the bucket and database) does not exist"
    )))?;
    let s3 = ctx.s3.get(&ctx.client, &stack).await?;
    let video = super::job::video_uri(analysis, &stack);
    let reports = super::job::report_prefix_uri(analysis, &stack)?;
    let mut objects = 0;
    for (uri, exact) in [(video.as_str(), true), (reports.as_str(), false)] {
        if let Some((bucket, key)) = super::job::split_s3_uri(uri) {
            objects += delete_all_versions(&s3, bucket, key, exact).await?;
        }
    }
    let pool = ctx.databases.pool(&ctx.client, &stack).await?;
    let rows = golftracker_results_db::erase_analysis(
        &pool,
        &analysis.meta().uid.clone().unwrap_or_default(),
    )
    .await?;
    Ok(format!(
        "erased {objects} object versions and {} database rows",
        rows.total()
    ))
}

/// The finalizer's cleanup step.
pub async fn cleanup(analysis: &SwingAnalysis, ctx: &Context) -> Result<Action> {
    if analysis.spec.retention != Retention::Erase {
        return Ok(Action::await_change());
    }
    let status = analysis.status.clone().unwrap_or_default();
    match erase(analysis, ctx).await {
        Ok(summary) => {
            info!(analysis = %analysis.name_any(), "{summary}");
            Ok(Action::await_change())
        }
        Err(e) => {
            let status = with_condition(
                analysis,
                status,
                NewCondition {
                    type_: condition::ERASED,
                    status: conditions::FALSE,
                    reason: "EraseFailed",
                    message: format!("{e}; the object stays until its data is erased (retrying)"),
                },
            );
            update_status(ctx, analysis, status).await?;
            Err(e)
        }
    }
}
