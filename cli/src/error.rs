//! The CLI's one error type: each variant is a message a person can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(
        "forbidden: you may not {verb} {resource} in namespace {namespace:?} \
         (ask for RBAC that grants it; the API server said: {message})"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        message: String,
    },
    #[error("Kubernetes API ({verb} {resource}): {source}")]
    Kube {
        verb: &'static str,
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "stack {name:?} not found in namespace {namespace:?} (`kubectl get gts -n {namespace}` lists the stacks)"
    )]
    StackNotFound { name: String, namespace: String },
    #[error("stack {name:?} is not Ready: {reason}")]
    StackNotReady { name: String, reason: String },
    #[error("analysis {name:?} not found in namespace {namespace:?}")]
    AnalysisNotFound { name: String, namespace: String },
    #[error("{}: not a video (expected an MP4/MOV or Matroska/WebM container; {found})", path.display())]
    NotAVideo { path: PathBuf, found: String },
    #[error("{action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 {operation} s3://{bucket}/{key}: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Operator(#[from] golftracker_operator::error::Error),
    #[error("analysis {name:?} failed: {message}")]
    AnalysisFailed { name: String, message: String },
    #[error("analysis {name:?} has no result yet (phase {phase})")]
    NoResult { name: String, phase: &'static str },
    #[error("analysis {name:?} was deleted while waiting for it")]
    AnalysisDeleted { name: String },
    #[error("gave up after {seconds}s: {waiting_for}")]
    Timeout { seconds: u64, waiting_for: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a Kubernetes API error to [`Error`], naming what was attempted so that a 403
/// says which permission is missing.
pub fn kube_error(
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
) -> impl FnOnce(kube::Error) -> Error {
    move |source| match source {
        kube::Error::Api(status) if status.is_forbidden() => Error::Forbidden {
            verb,
            resource,
            namespace: namespace.to_owned(),
            message: status.message,
        },
        source => Error::Kube {
            verb,
            resource,
            source,
        },
    }
}

/// Maps an S3 SDK error to [`Error`] without its raw response (which may echo headers).
pub fn s3_error<E, R>(
    operation: &'static str,
    bucket: &str,
    key: &str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| Error::S3 {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: golftracker_operator::external::s3_error_message(&e),
    }
}
