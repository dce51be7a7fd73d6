//! The environment contract between the operator (which builds worker Jobs) and
//! `golftracker-worker run` (which reads them). Both sides use these names, so a
//! rename cannot drift apart silently.
//!
//! Secrets never travel as literal values: the operator points `AWS_*` and `PG*`
//! at Secret keys (`valueFrom.secretKeyRef`), and the kubelet (or the local job
//! runner) resolves them.

/// `metadata.name` of the SwingAnalysis.
pub const ANALYSIS_NAME: &str = "GOLFTRACKER_ANALYSIS_NAME";
/// `metadata.namespace` of the SwingAnalysis.
pub const ANALYSIS_NAMESPACE: &str = "GOLFTRACKER_ANALYSIS_NAMESPACE";
/// `metadata.uid` of the SwingAnalysis: the primary key of its result rows.
pub const ANALYSIS_UID: &str = "GOLFTRACKER_ANALYSIS_UID";
/// `s3://bucket/key` of the uploaded video.
pub const VIDEO_URI: &str = "GOLFTRACKER_VIDEO_URI";
/// `s3://bucket/prefix/` under which the worker writes `report.json` and `report.png`.
pub const REPORT_PREFIX_URI: &str = "GOLFTRACKER_REPORT_PREFIX_URI";
/// S3 endpoint URL for S3-compatible stores (unset for AWS).
pub const S3_ENDPOINT: &str = "GOLFTRACKER_S3_ENDPOINT";
/// S3 region.
pub const S3_REGION: &str = "GOLFTRACKER_S3_REGION";
/// `true` to address buckets path-style (`endpoint/bucket/key`).
pub const S3_PATH_STYLE: &str = "GOLFTRACKER_S3_PATH_STYLE";
/// Path or `s3://` URI of the pose model weights (safetensors).
pub const MODEL_URI: &str = "GOLFTRACKER_MODEL_URI";
/// Expected sha256 (hex) of the model weights; the worker refuses others.
pub const MODEL_SHA256: &str = "GOLFTRACKER_MODEL_SHA256";
/// Camera view from the spec: `down-the-line`, `face-on` or `unknown`.
pub const CAMERA_VIEW: &str = "GOLFTRACKER_CAMERA_VIEW";
/// Golfer handedness from the spec: `right` or `left`.
pub const HANDEDNESS: &str = "GOLFTRACKER_HANDEDNESS";
/// Opaque golfer id from the spec (stored with the result, indexed).
pub const USER_ID: &str = "GOLFTRACKER_USER_ID";
/// Club from the spec (e.g. `driver`, `7-iron`), informational.
pub const CLUB: &str = "GOLFTRACKER_CLUB";

/// Standard AWS SDK variables, set from a Secret when the stack uses static keys
/// (on EKS, IRSA provides credentials instead and these stay unset).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// libpq's standard variables; sqlx's `PgConnectOptions::new()` reads them.
pub const PG_HOST: &str = "PGHOST";
pub const PG_PORT: &str = "PGPORT";
pub const PG_DATABASE: &str = "PGDATABASE";
pub const PG_USER: &str = "PGUSER";
pub const PG_PASSWORD: &str = "PGPASSWORD";
pub const PG_SSLMODE: &str = "PGSSLMODE";
