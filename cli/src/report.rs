//! `report`: downloads an analysis' report JSON and plot from the stack's bucket.

use std::path::{Path, PathBuf};

use golftracker_operator::analysis::job::split_s3_uri;

use crate::cluster::Target;
use crate::error::{Error, Result, s3_error};
use crate::show;

/// Downloads every report object of the analysis into `out`; returns the files written.
pub async fn run(target: &Target, name: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let analysis = target.analysis(name).await?;
    let result = analysis
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .ok_or_else(|| Error::NoResult {
            name: name.to_owned(),
            phase: show::phase(&analysis),
        })?;
    let stack = target.stack(&analysis.spec.stack_ref.name).await?;
    let s3 = target.s3(&stack).await?;
    std::fs::create_dir_all(out).map_err(|source| Error::File {
        action: "create",
        path: out.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for uri in [&result.report_uri, &result.plot_uri].into_iter().flatten() {
        let Some((bucket, key)) = split_s3_uri(uri) else {
            continue;
        };
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("GetObject", bucket, key))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| Error::S3 {
                operation: "GetObject",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: e.to_string(),
            })?
            .into_bytes();
        let file_name = key.rsplit('/').next().unwrap_or(key);
        let path = out.join(file_name);
        std::fs::write(&path, &bytes).map_err(|source| Error::File {
            action: "write",
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
