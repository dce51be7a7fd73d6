//! `SwingAnalysis`: one uploaded swing video, analysed by one worker Job.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Condition types of an analysis.
pub mod condition {
    /// The referenced stack exists, is in this namespace and is Ready.
    pub const STACK_READY: &str = "StackReady";
    /// The spec could be turned into a Job (video location valid, video present).
    pub const INPUT_VALID: &str = "InputValid";
    /// The worker Job finished successfully and the result was read.
    pub const COMPLETE: &str = "Complete";
    /// The analysis failed for good; `reason` and `message` say why.
    pub const FAILED: &str = "Failed";
    /// With retention Erase: whether the analysis' data was erased (false while it cannot be).
    pub const ERASED: &str = "Erased";
}

/// A request to analyse one uploaded golf-swing video. The operator runs one worker Job
/// for it and copies the result into its status.
// kube's `printcolumn(...)` and `shortname` attributes repeat by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "golftracker.io",
    version = "v1alpha1",
    kind = "SwingAnalysis",
    plural = "swinganalyses",
    singular = "swinganalysis",
    shortname = "swing",
    shortname = "swings",
    category = "golftracker",
    namespaced,
    status = "SwingAnalysisStatus",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Stack", type_ = "string", json_path = ".spec.stackRef.name"),
    printcolumn(
        name = "Tempo",
        type_ = "number",
        json_path = ".status.result.tempoRatio"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SwingAnalysisSpec {
    /// The GolfTrackerStack whose bucket, database and worker template this analysis uses.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.stackRef is immutable"))]
    pub stack_ref: StackRef,
    /// The video: an object key in the stack's bucket (`videos/u1/swing.mp4`) or a full
    /// `s3://bucket/key` URI.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.video is immutable"))]
    #[x_kube(validation = Rule::new("!self.startsWith('s3://') || self.matches('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$')").message("spec.video must be an object key or s3://bucket/key"))]
    pub video: String,
    /// Who swung.
    pub golfer: Golfer,
    /// Where the camera stood.
    #[serde(default)]
    pub camera_view: CameraView,
    /// Higher runs first when the stack's worker slots are full.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,
    /// What deleting this object does to the golfer's data.
    #[serde(default)]
    pub retention: Retention,
}

/// Reference to a GolfTrackerStack.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StackRef {
    /// Name of the stack.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the stack; only the analysis' own namespace is allowed (the operator
    /// says so in a condition otherwise). Unset means the analysis' namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The golfer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Golfer {
    /// The app's opaque user id (results are indexed by it; no personal data here).
    #[schemars(length(min = 1, max = 128))]
    pub user_id: String,
    /// Which side the golfer swings from.
    #[serde(default)]
    pub handedness: Handedness,
    /// Club used, e.g. `driver`, `7-iron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub club: Option<String>,
}

/// Handedness of the golfer.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Handedness {
    #[default]
    Right,
    Left,
}

impl Handedness {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Left => "left",
        }
    }
}

/// Camera position relative to the golfer.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum CameraView {
    /// Behind the golfer, looking at the target.
    DownTheLine,
    /// Facing the golfer.
    FaceOn,
    #[default]
    Unknown,
}

impl CameraView {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DownTheLine => "down-the-line",
            Self::FaceOn => "face-on",
            Self::Unknown => "unknown",
        }
    }
}

/// What deleting the analysis does to its data.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Retention {
    /// Keep the video, report and database rows.
    #[default]
    Retain,
    /// Delete the video, report and database rows before the object goes.
    Erase,
}

/// Lifecycle phase of an analysis.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Phase {
    /// Waiting for its stack (missing or not Ready) or for valid input.
    #[default]
    Pending,
    /// Waiting for a free worker slot of its stack.
    Queued,
    /// Its Job runs.
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    /// Succeeded and Failed are final: nothing runs for the analysis any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Observed state of an analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SwingAnalysisStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: Phase,
    /// Position in the stack's queue while Queued (1 runs next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i32>,
    /// Name of the worker Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Worker pods started so far (1 + retries).
    #[serde(default)]
    pub attempts: i32,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the analysis finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// StackReady, InputValid, Complete, Failed, Erased.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The result, once Succeeded.
    // Boxed: the operator caches every analysis, and inline it would take ~400
    // bytes in each one, finished or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<AnalysisResult>>,
}

/// Summary of the worker's report.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// The eight swing events of GolfDB.
    pub events: SwingEvents,
    /// Backswing time over downswing time (tour average about 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo_ratio: Option<f64>,
    /// Address to top, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backswing_ms: Option<f64>,
    /// Top to impact, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downswing_ms: Option<f64>,
    /// A few plain recommendations with the numbers behind them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// `s3://` URI of the full report JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_uri: Option<String>,
    /// `s3://` URI of the report plot (PNG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot_uri: Option<String>,
    /// Pose model that produced the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The eight swing events (GolfDB's definition).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SwingEvents {
    pub address: Option<SwingEvent>,
    pub toe_up: Option<SwingEvent>,
    pub mid_backswing: Option<SwingEvent>,
    pub top: Option<SwingEvent>,
    pub mid_downswing: Option<SwingEvent>,
    pub impact: Option<SwingEvent>,
    pub mid_follow_through: Option<SwingEvent>,
    pub finish: Option<SwingEvent>,
}

/// Where in the video an event happens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SwingEvent {
    /// Frame index (0-based, decode order).
    pub frame: i64,
    /// Presentation time in seconds.
    pub time_s: f64,
    /// 0..1.
    pub confidence: f64,
}

/// One recommendation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// Stable machine-readable code, e.g. `tempo-fast`.
    pub code: String,
    pub message: String,
    /// The measured value behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}
