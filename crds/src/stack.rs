//! `GolfTrackerStack`: the infrastructure of one environment of the app.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::SecretKeySelector;

/// Condition types of a stack. `Ready` holds when the three parts hold.
pub mod condition {
    pub const STORAGE_READY: &str = "StorageReady";
    pub const DATABASE_READY: &str = "DatabaseReady";
    pub const VAULT_READY: &str = "VaultReady";
    pub const READY: &str = "Ready";
}

/// The infrastructure of one environment of the golf-swing analysis app: the video
/// bucket, the results database, Vault wiring and the analysis worker's Job template.
// kube's `printcolumn(...)` and `shortname` attributes repeat by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "golftracker.io",
    version = "v1alpha1",
    kind = "GolfTrackerStack",
    plural = "golftrackerstacks",
    singular = "golftrackerstack",
    shortname = "gts",
    category = "golftracker",
    namespaced,
    status = "GolfTrackerStackStatus",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.storage.bucket"),
    printcolumn(
        name = "Running",
        type_ = "integer",
        json_path = ".status.runningAnalyses"
    ),
    printcolumn(
        name = "Queued",
        type_ = "integer",
        json_path = ".status.queuedAnalyses"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.database.credentials.vault) || has(self.vault)").message("database.credentials.vault needs spec.vault"))]
pub struct GolfTrackerStackSpec {
    /// The S3 bucket that holds uploaded videos and analysis reports.
    pub storage: StorageSpec,
    /// The PostgreSQL (or RDS) database that holds analysis results.
    pub database: DatabaseSpec,
    /// HashiCorp Vault wiring. Without it, credentials come from Kubernetes Secrets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultSpec>,
    /// The analysis worker's Job template.
    pub worker: WorkerSpec,
}

/// S3 bucket settings. The operator creates the bucket and keeps these settings true.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.endpoint) || self.endpoint.startsWith('http://') || self.endpoint.startsWith('https://')").message("storage.endpoint must be an http:// or https:// URL"))]
pub struct StorageSpec {
    /// Bucket name (S3 naming rules: 3-63 lowercase letters, digits, dots and hyphens,
    /// starting and ending with a letter or digit, no `..`, not an IP address).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    #[x_kube(validation = Rule::new("!self.contains('..') && !self.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$') && !self.startsWith('xn--') && !self.endsWith('-s3alias')").message("bucket must follow the S3 naming rules: no '..', not an IP address, no 'xn--' prefix or '-s3alias' suffix"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.bucket is immutable"))]
    pub bucket: String,
    /// AWS region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint URL of an S3-compatible store (MinIO, Ceph). Unset for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint` (most S3-compatible stores need it).
    #[serde(default)]
    pub force_path_style: bool,
    /// Static S3 credentials (keys `accessKeyId` and `secretAccessKey` in this Secret), for
    /// S3-compatible stores. Unset on AWS: the operator and workers use their IAM role (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Default server-side encryption of the bucket.
    #[serde(default)]
    pub encryption: EncryptionSpec,
    /// Keep object versions, so an overwritten or deleted video can be recovered.
    #[serde(default = "default_true")]
    pub versioning: bool,
    /// Lifecycle rules of uploaded videos.
    #[serde(default)]
    pub lifecycle: LifecycleSpec,
    /// Origins allowed to upload directly from the app (CORS). Empty: no CORS rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,
    /// What happens to the bucket when the stack is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Default bucket encryption.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'SSE-KMS' || has(self.kmsKeyId)").message("encryption.kmsKeyId is required with mode SSE-KMS"))]
pub struct EncryptionSpec {
    /// `SSE-S3` (keys managed by S3) or `SSE-KMS` (a KMS key you control).
    #[serde(default)]
    pub mode: EncryptionMode,
    /// KMS key id or ARN, for `SSE-KMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// Server-side encryption mode.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum EncryptionMode {
    #[default]
    #[serde(rename = "SSE-S3")]
    SseS3,
    #[serde(rename = "SSE-KMS")]
    SseKms,
}

/// Lifecycle of uploaded videos (objects under `videoPrefix`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.daysToExpire) || !has(self.daysToIntelligentTiering) || self.daysToExpire > self.daysToIntelligentTiering").message("lifecycle.daysToExpire must be greater than daysToIntelligentTiering"))]
pub struct LifecycleSpec {
    /// Key prefix of raw videos.
    #[serde(default = "default_video_prefix")]
    pub video_prefix: String,
    /// Move raw videos to S3 Intelligent-Tiering after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub days_to_intelligent_tiering: Option<i32>,
    /// Delete raw videos after this many days (reports and results are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub days_to_expire: Option<i32>,
    /// Abort incomplete multipart uploads after this many days.
    #[serde(default = "default_abort_days")]
    #[schemars(range(min = 1))]
    pub days_to_abort_incomplete_multipart_upload: i32,
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        Self {
            video_prefix: default_video_prefix(),
            days_to_intelligent_tiering: None,
            days_to_expire: None,
            days_to_abort_incomplete_multipart_upload: default_abort_days(),
        }
    }
}

/// What deleting the stack does to the bucket.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DeletionPolicy {
    /// Leave the bucket and its objects.
    #[default]
    Retain,
    /// Delete the bucket, only when it is empty (the operator says so when it is not).
    Delete,
}

/// The results database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Hostname of the PostgreSQL server (RDS endpoint).
    #[schemars(length(min = 1))]
    pub host: String,
    /// TCP port.
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Database name.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// TLS mode, as libpq names it.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// Where the credentials come from.
    pub credentials: DatabaseCredentials,
}

/// libpq `sslmode`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    #[default]
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`PGSSLMODE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Database credentials: exactly one of `secretRef` or `vault`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.vault)").message("database.credentials needs exactly one of secretRef or vault"))]
pub struct DatabaseCredentials {
    /// A Secret with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Short-lived users created by Vault's database secrets engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultDatabaseCredentials>,
}

/// Vault dynamic database credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultDatabaseCredentials {
    /// Name of the database secrets engine role the operator creates.
    #[schemars(length(min = 1))]
    pub role: String,
    /// Lease TTL of issued credentials (Go duration, e.g. `1h`).
    #[serde(default = "default_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub ttl: String,
    /// Maximum lease TTL of issued credentials.
    #[serde(default = "default_max_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub max_ttl: String,
    /// Secret (keys `username`, `password`) with the account Vault uses to create users.
    /// Vault keeps it; it never reaches workers.
    pub admin_secret_ref: String,
}

/// How the stack talks to Vault.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultSpec {
    /// Vault address, e.g. `https://vault.vault.svc:8200`.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("vault.address must be an http:// or https:// URL"))]
    pub address: String,
    /// PEM CA bundle that signs Vault's certificate, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
    /// How the operator logs in to Vault.
    #[serde(default)]
    pub auth: VaultAuthSpec,
    /// KV v2 engine holding the app's static secrets.
    #[serde(default)]
    pub kv: VaultKvSpec,
    /// Mount of the database secrets engine (for dynamic credentials).
    #[serde(default = "default_database_mount")]
    pub database_mount: String,
    /// Who delivers secrets to worker Jobs.
    #[serde(default)]
    pub secret_delivery: SecretDelivery,
}

/// The operator's Vault login.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultAuthSpec {
    /// Mount path of the Kubernetes auth method.
    #[serde(default = "default_kubernetes_mount")]
    pub mount: String,
    /// Role of the operator's own ServiceAccount in that auth method.
    #[serde(default = "default_operator_role")]
    pub role: String,
    /// Bootstrap only: a Secret key holding a Vault token, used instead of Kubernetes auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
}

impl Default for VaultAuthSpec {
    fn default() -> Self {
        Self {
            mount: default_kubernetes_mount(),
            role: default_operator_role(),
            token_secret_ref: None,
        }
    }
}

/// KV v2 engine and the stack's path in it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultKvSpec {
    /// Mount of the KV v2 engine.
    #[serde(default = "default_kv_mount")]
    pub mount: String,
    /// Path prefix of this stack's secrets (`<namespace>/<stack>` is appended).
    #[serde(default = "default_kv_prefix")]
    pub path_prefix: String,
}

impl Default for VaultKvSpec {
    fn default() -> Self {
        Self {
            mount: default_kv_mount(),
            path_prefix: default_kv_prefix(),
        }
    }
}

/// Who turns Vault secrets into the Kubernetes Secret worker Jobs mount.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SecretDelivery {
    /// The operator reads Vault and writes the Secret, renewing it before the TTL runs out.
    #[default]
    Operator,
    /// The operator emits Vault Secrets Operator resources (VaultAuth, VaultStaticSecret,
    /// VaultDynamicSecret) and VSO writes the Secret.
    VaultSecretsOperator,
}

/// The analysis worker's Job template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image of `golftracker-worker`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU/memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// NVIDIA GPUs per worker (`nvidia.com/gpu`); 0 runs on CPU. Only an image built with
    /// the worker's `cuda` feature uses it, and only for the motion pass: measured
    /// slower than the CPU so far (see the README's GPU section), so keep 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub gpu: i32,
    /// Run workers on spot capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot: Option<SpotSpec>,
    /// Node selector of worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Analyses of this stack that may run at once; the rest wait in phase Queued.
    #[serde(default = "default_max_concurrent_jobs")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_jobs: i32,
    /// Retries of a failed worker pod before the analysis fails.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// Wall-clock limit of one analysis Job, in seconds.
    #[serde(default = "default_active_deadline_seconds")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: i64,
    /// Seconds a finished Job is kept before Kubernetes deletes it (results stay in status).
    #[serde(default = "default_ttl_seconds_after_finished")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: i32,
    /// Pose model weights.
    pub model: ModelSpec,
}

/// Container image pull policy.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Spot scheduling of worker pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpotSpec {
    /// `Required`: only spot nodes. `Preferred`: spot nodes when there are any.
    #[serde(default)]
    pub mode: SpotMode,
    /// Node label marking spot capacity (EKS managed node groups: `eks.amazonaws.com/capacityType`,
    /// Karpenter: `karpenter.sh/capacity-type`).
    #[serde(default = "default_spot_label_key")]
    pub node_label_key: String,
    /// Value of that label on spot nodes (`SPOT` on EKS, `spot` with Karpenter).
    #[serde(default = "default_spot_label_value")]
    pub node_label_value: String,
    /// Tolerations for the spot node group's taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// How strictly worker pods go to spot nodes.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SpotMode {
    Required,
    #[default]
    Preferred,
}

/// Where the worker loads its pose model from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Path inside the worker image, or `s3://bucket/key` of the safetensors weights.
    #[schemars(length(min = 1))]
    pub uri: String,
    /// Expected sha256 of the weights (64 hex digits); the worker refuses others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// Observed state of a stack.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GolfTrackerStackStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// StorageReady, DatabaseReady, VaultReady and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// URL of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_endpoint: Option<String>,
    /// PostgreSQL server version, as the server reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_version: Option<String>,
    /// Name of the Secret worker Jobs take their credentials from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_secret_name: Option<String>,
    /// Analyses of this stack waiting for a free slot. Kept up to date by the
    /// SwingAnalysis controller (its own field manager), from its cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_analyses: Option<i32>,
    /// Analyses of this stack whose Job is running (same writer as `queuedAnalyses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_analyses: Option<i32>,
}

fn default_true() -> bool {
    true
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_video_prefix() -> String {
    "videos/".into()
}
fn default_abort_days() -> i32 {
    7
}
fn default_pg_port() -> i32 {
    5432
}
fn default_ttl() -> String {
    "1h".into()
}
fn default_max_ttl() -> String {
    "24h".into()
}
fn default_database_mount() -> String {
    "database".into()
}
fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}
fn default_operator_role() -> String {
    "golftracker-operator".into()
}
fn default_kv_mount() -> String {
    "secret".into()
}
fn default_kv_prefix() -> String {
    "golftracker".into()
}
fn default_max_concurrent_jobs() -> i32 {
    10
}
fn default_backoff_limit() -> i32 {
    2
}
fn default_active_deadline_seconds() -> i64 {
    900
}
fn default_ttl_seconds_after_finished() -> i32 {
    3600
}
fn default_spot_label_key() -> String {
    "eks.amazonaws.com/capacityType".into()
}
fn default_spot_label_value() -> String {
    "SPOT".into()
}
