//! `golftracker-worker run`: one SwingAnalysis in a Job. Inputs come from the
//! environment the operator sets (`golftracker_crds::worker_env`), the video and
//! the model from S3 (or a local model path), the report goes back to S3 and the
//! rows (or a failure row) to PostgreSQL.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use golftracker_crds::worker_env as env;
use golftracker_results_db::{self as results_db, AnalysisKey};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::analyze::{self, Options};
use crate::decode::Limits;
use crate::pose::PoseEstimator;
use crate::swing::CameraView;

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Config(format!("not an s3:// URI: {uri}")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!("no bucket in {uri}")));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The object `name` under this location taken as a prefix.
    pub fn child(&self, name: &str) -> S3Location {
        let key = if self.key.is_empty() || self.key.ends_with('/') {
            format!("{}{name}", self.key)
        } else {
            format!("{}/{name}", self.key)
        };
        S3Location {
            bucket: self.bucket.clone(),
            key,
        }
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

fn required(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| Error::Config(format!("{name} is not set")))
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The job's inputs, read once from the environment.
struct JobInputs {
    key: AnalysisKey,
    video: S3Location,
    report_prefix: S3Location,
    model_uri: String,
    model_sha256: Option<String>,
    options: Options,
}

impl JobInputs {
    fn from_env() -> Result<Self, Error> {
        let handedness = optional(env::HANDEDNESS).unwrap_or_else(|| "right".into());
        Ok(JobInputs {
            key: AnalysisKey {
                uid: required(env::ANALYSIS_UID)?,
                namespace: required(env::ANALYSIS_NAMESPACE)?,
                name: required(env::ANALYSIS_NAME)?,
                user_id: optional(env::USER_ID).unwrap_or_default(),
            },
            video: S3Location::parse(&required(env::VIDEO_URI)?)?,
            report_prefix: S3Location::parse(&required(env::REPORT_PREFIX_URI)?)?,
            model_uri: required(env::MODEL_URI)?,
            model_sha256: optional(env::MODEL_SHA256),
            options: Options {
                view: optional(env::CAMERA_VIEW)
                    .as_deref()
                    .and_then(CameraView::from_spec),
                left_handed: handedness == "left",
                limits: Limits::default(),
                poses_out: None,
            },
        })
    }
}

async fn s3_client() -> aws_sdk_s3::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = optional(env::S3_REGION) {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(endpoint) = optional(env::S3_ENDPOINT) {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let path_style = optional(env::S3_PATH_STYLE).is_some_and(|v| v == "true");
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Streams an object into `target` (never the whole video in memory).
async fn download(
    client: &aws_sdk_s3::Client,
    from: &S3Location,
    target: &Path,
    max_bytes: u64,
) -> Result<(), Error> {
    let storage = |e: String| Error::Storage(format!("downloading {}: {e}", from.uri()));
    let object = client
        .get_object()
        .bucket(&from.bucket)
        .key(&from.key)
        .send()
        .await
        .map_err(|e| storage(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    if object
        .content_length()
        .is_some_and(|n| n as u64 > max_bytes)
    {
        return Err(Error::Limit(format!(
            "{} is larger than {max_bytes} bytes",
            from.uri()
        )));
    }
    let mut body = object.body;
    let mut file = tokio::fs::File::create(target).await?;
    let mut written = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| storage(e.to_string()))? {
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(Error::Limit(format!(
                "{} is larger than {max_bytes} bytes",
                from.uri()
            )));
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(())
}

async fn upload(
    client: &aws_sdk_s3::Client,
    to: &S3Location,
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<(), Error> {
    client
        .put_object()
        .bucket(&to.bucket)
        .key(&to.key)
        .content_type(content_type)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|e| {
            Error::Storage(format!(
                "uploading {}: {}",
                to.uri(),
                aws_sdk_s3::error::DisplayErrorContext(e)
            ))
        })?;
    Ok(())
}

/// Checks a file against the expected sha256 (hex) before it is trusted.
pub fn verify_sha256(path: &Path, expected_hex: &str) -> Result<(), Error> {
    let actual = crate::pose::sha256_of(path)?;
    if actual.eq_ignore_ascii_case(expected_hex.trim()) {
        Ok(())
    } else {
        Err(Error::Model(format!(
            "{} has sha256 {actual}, expected {expected_hex}",
            path.display()
        )))
    }
}

/// Runs the job. Success rows or a failure row are written here; the caller
/// only maps the result to the exit status.
pub async fn run(
    load_model: fn(&Path) -> Result<Box<dyn PoseEstimator>, Error>,
) -> Result<(), Error> {
    let inputs = JobInputs::from_env()?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(PgConnectOptions::new())
        .await
        .map_err(|e| Error::Database(e.into()))?;
    results_db::migrate(&pool).await?;
    eprintln!(
        "run: analysing {}/{} ({})",
        inputs.key.namespace,
        inputs.key.name,
        inputs.video.uri()
    );
    let outcome = match analyse_and_upload(&inputs, load_model).await {
        Ok((report, report_uri)) => {
            results_db::record_success(&pool, &inputs.key, &report, &report_uri).await?;
            eprintln!("run: report at {report_uri}");
            Ok(())
        }
        Err(error) => {
            eprintln!("run: failed ({}): {error}", error.code());
            results_db::record_failure(&pool, &inputs.key, error.code(), &error.to_string())
                .await?;
            Err(error)
        }
    };
    pool.close().await;
    outcome
}

/// Downloads the inputs, analyses the video and uploads the report; returns the
/// report and the URI of its prefix.
async fn analyse_and_upload(
    inputs: &JobInputs,
    load_model: fn(&Path) -> Result<Box<dyn PoseEstimator>, Error>,
) -> Result<(golftracker_results_db::Report, String), Error> {
    let client = s3_client().await;
    let workdir = tempfile::tempdir()?;
    let video = workdir.path().join("video");
    download(
        &client,
        &inputs.video,
        &video,
        inputs.options.limits.max_file_bytes,
    )
    .await?;
    let model: PathBuf = if inputs.model_uri.starts_with("s3://") {
        let target = workdir.path().join("model.safetensors");
        download(
            &client,
            &S3Location::parse(&inputs.model_uri)?,
            &target,
            1 << 30,
        )
        .await?;
        target
    } else {
        PathBuf::from(&inputs.model_uri)
    };
    if let Some(expected) = &inputs.model_sha256 {
        verify_sha256(&model, expected)?;
    }
    let options = inputs.options.clone();
    let analysis = tokio::task::spawn_blocking(move || {
        analyze::analyze_video(&video, || load_model(&model), options)
    })
    .await
    .map_err(|e| Error::Config(format!("analysis task: {e}")))??;
    let json = serde_json::to_vec_pretty(&analysis.report)?;
    upload(
        &client,
        &inputs.report_prefix.child("report.json"),
        json,
        "application/json",
    )
    .await?;
    upload(
        &client,
        &inputs.report_prefix.child("report.png"),
        analysis.png,
        "image/png",
    )
    .await?;
    Ok((analysis.report, inputs.report_prefix.uri()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_parse_and_nest() {
        let prefix = S3Location::parse("s3://videos/reports/abc/").unwrap();
        assert_eq!(prefix.bucket, "videos");
        assert_eq!(
            prefix.child("report.json").uri(),
            "s3://videos/reports/abc/report.json"
        );
        let bare = S3Location::parse("s3://videos/reports/abc").unwrap();
        assert_eq!(bare.child("report.png").key, "reports/abc/report.png");
        assert!(S3Location::parse("https://x/y").is_err());
        assert!(S3Location::parse("s3:///key").is_err());
    }

    #[test]
    fn model_checksum_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&path, abc).unwrap();
        assert!(matches!(
            verify_sha256(&path, &abc.replace('b', "c")),
            Err(Error::Model(_))
        ));
    }
}
