//! The operator's one error type.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the stack's {what} Secret: {message}")]
    Secret { what: &'static str, message: String },
    #[error("S3 {operation} on {target}: {message}")]
    S3 {
        operation: &'static str,
        target: String,
        message: String,
    },
    /// `reason` is the VaultReady condition reason (`VaultUnreachable`, `VaultRefused`,
    /// `VaultMisconfigured`, `VaultLoginFailed`).
    #[error("Vault {operation}: {message}")]
    Vault {
        operation: &'static str,
        reason: &'static str,
        message: String,
    },
    #[error("results database: {0}")]
    Database(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// A short kind for metrics labels and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Secret { .. } => "secret",
            Self::S3 { .. } => "s3",
            Self::Vault { .. } => "vault",
            Self::Database(_) => "database",
            Self::Finalizer(_) => "finalizer",
            Self::MissingField(_) => "invalid-object",
        }
    }

    /// How long to wait before retrying after this error: external systems get a
    /// slower retry than API conflicts.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Kube(_) => Duration::from_secs(5),
            _ => Duration::from_secs(15),
        }
    }
}

impl From<golftracker_results_db::Error> for Error {
    fn from(e: golftracker_results_db::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as Finalizer;
        match e {
            Finalizer::ApplyFailed(e) | Finalizer::CleanupFailed(e) => e,
            other => Self::Finalizer(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
