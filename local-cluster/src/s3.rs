//! MinIO as the S3 server.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    process::{ServerCommand, ServerProcess, free_port},
    random_secret,
};

/// The region MinIO answers for by default.
pub const REGION: &str = "us-east-1";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach the S3 server. Not `Debug`: it holds the secret key.
#[derive(Clone, Serialize, Deserialize)]
pub struct S3Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Endpoint {
    /// An S3 client for this server: static credentials, path-style addressing.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(self.region.clone()))
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "golftracker-local-cluster",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Succeeds once the server answers S3 requests.
    pub async fn ping(&self) -> Result<(), impl std::fmt::Display + use<>> {
        self.client().list_buckets().send().await.map(drop)
    }
}

pub(crate) async fn start(
    dir: &Path,
    binaries: &BTreeMap<String, PathBuf>,
    die_with_parent: bool,
) -> Result<(ServerProcess, S3Endpoint), Error> {
    let port = free_port()?;
    let console_port = free_port()?;
    let endpoint = S3Endpoint {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key: format!("golftracker-{}", random_secret(8).to_lowercase()),
        secret_key: random_secret(32),
        region: REGION.to_owned(),
    };
    let binary = binaries
        .get("minio")
        .ok_or_else(|| Error::BuildServers("build-servers.sh does not list minio".into()))?;
    let mut minio = ServerCommand::new("minio", binary, dir.join("minio.log"));
    minio.die_with_parent = die_with_parent;
    minio
        .command
        .arg("server")
        .arg(dir.join("minio-data"))
        .args(["--address", &format!("127.0.0.1:{port}")])
        .args(["--console-address", &format!("127.0.0.1:{console_port}")])
        .arg("--certs-dir")
        .arg(dir.join("minio-certs"))
        .arg("--quiet")
        .env("MINIO_ROOT_USER", &endpoint.access_key)
        .env("MINIO_ROOT_PASSWORD", &endpoint.secret_key)
        .env("MINIO_BROWSER", "off")
        // A static KMS key, so SSE-S3 default bucket encryption works as on AWS.
        .env(
            "MINIO_KMS_SECRET_KEY",
            format!("golftracker-local:{}", kms_key()),
        )
        // A single drive on the root disk is refused outside CI/CD mode.
        .env("MINIO_CI_CD", "1")
        .env("MINIO_UPDATE", "off")
        .env("HOME", dir);
    let mut minio = minio.spawn()?;
    minio.wait_ready(READY_TIMEOUT, || endpoint.ping()).await?;
    Ok((minio, endpoint))
}

/// A random 256-bit key, base64 (MinIO's `MINIO_KMS_SECRET_KEY` format).
fn kms_key() -> String {
    use base64::Engine;
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}
