//! The worker's one error type. Each variant has a stable `code` that goes into
//! the failure row, so the operator and the user see why an analysis failed.

use crate::pose::PoseError;
use crate::swing::SwingError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid video: {0}")]
    InvalidVideo(String),
    #[error("video over the limits: {0}")]
    Limit(String),
    #[error("video decoding: {0}")]
    Decode(ffmpeg_next::Error),
    #[error("video encoding: {0}")]
    Encode(String),
    #[error("tensor op: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Swing(#[from] SwingError),
    #[error(transparent)]
    Pose(#[from] PoseError),
    #[error("pose model: {0}")]
    Model(String),
    #[error("rendering the report image: {0}")]
    Render(String),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("object storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Database(#[from] golftracker_results_db::Error),
}

impl Error {
    /// Machine-readable reason for the failure row and the SwingAnalysis status.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidVideo(_) | Error::Decode(_) => "InvalidVideo",
            Error::Limit(_) => "VideoOverLimits",
            Error::Swing(SwingError::NoPerson { .. }) => "NoPersonFound",
            Error::Swing(SwingError::NoSwing(_)) => "NoSwingFound",
            Error::Pose(_) | Error::Model(_) => "PoseModelError",
            Error::Config(_) => "ConfigurationError",
            Error::Storage(_) => "StorageError",
            Error::Database(_) => "DatabaseError",
            Error::Encode(_)
            | Error::Tensor(_)
            | Error::Render(_)
            | Error::Io(_)
            | Error::Json(_) => "InternalError",
        }
    }
}
