//! `submit`: checks the video and the stack, uploads the video to the stack's
//! bucket and creates the SwingAnalysis for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use golftracker_crds::analysis::{
    CameraView, Golfer, Retention, StackRef, SwingAnalysis, SwingAnalysisSpec,
};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_operator::analysis::FINALIZER;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;

use crate::cluster::Target;
use crate::error::{Result, kube_error};
use crate::show;
use crate::upload::{self, Destination};
use crate::video::{self, Container};

/// What `submit` was asked to do.
pub struct Request {
    pub video: PathBuf,
    pub stack: String,
    pub name: Option<String>,
    pub golfer: Golfer,
    pub camera_view: CameraView,
    pub retention: Retention,
    pub priority: i32,
    /// Follow the analysis until it finishes, at most this long.
    pub wait: Option<Duration>,
}

/// A valid object name from the video's file name and the submission time:
/// `Swing 1.MOV` at 10:04:05 → `swing-1-20261126-100405`.
pub fn analysis_name(video: &Path, now: Timestamp) -> String {
    let stem = video
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(40);
    let name = name
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let stamp = now.strftime("%Y%m%d-%H%M%S");
    if name.is_empty() {
        format!("swing-{stamp}")
    } else {
        format!("{name}-{stamp}")
    }
}

/// The object key of the video: under the stack's video prefix (where its lifecycle
/// rules apply), one folder per golfer.
pub fn video_key(
    stack: &GolfTrackerStack,
    user_id: &str,
    name: &str,
    container: Container,
) -> String {
    let prefix = &stack.spec.storage.lifecycle.video_prefix;
    format!("{prefix}{user_id}/{name}.{}", container.extension())
}

/// The SwingAnalysis the operator will run.
pub fn analysis(request: &Request, name: &str, namespace: &str, key: &str) -> SwingAnalysis {
    let mut analysis = SwingAnalysis::new(
        name,
        SwingAnalysisSpec {
            stack_ref: StackRef {
                name: request.stack.clone(),
                namespace: None,
            },
            video: key.to_owned(),
            golfer: request.golfer.clone(),
            camera_view: request.camera_view,
            priority: request.priority,
            retention: request.retention,
        },
    );
    analysis.metadata.namespace = Some(namespace.to_owned());
    if request.retention == Retention::Erase {
        // Born with the erase finalizer: deleted before the operator first sees it,
        // it still waits for its video to be erased.
        analysis.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    }
    analysis.metadata.labels.get_or_insert_default().insert(
        "app.kubernetes.io/created-by".into(),
        "golftracker-cli".into(),
    );
    analysis
}

pub async fn run(target: &Target, request: Request) -> Result<()> {
    let container = video::container_of(&request.video)?;
    let stack = target.ready_stack(&request.stack).await?;
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| analysis_name(&request.video, Timestamp::now()));
    let key = video_key(&stack, &request.golfer.user_id, &name, container);
    let bucket = &stack.spec.storage.bucket;
    let s3 = target.s3(&stack).await?;
    let size = std::fs::metadata(&request.video).map_or(0, |m| m.len());
    let progress = upload::progress_bar(size);
    upload::upload(
        &s3,
        &request.video,
        &Destination {
            bucket,
            key: &key,
            content_type: container.content_type(),
        },
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    println!(
        "uploaded {} to s3://{bucket}/{key}",
        request.video.display()
    );
    target
        .analyses()
        .create(
            &PostParams::default(),
            &analysis(&request, &name, &target.namespace, &key),
        )
        .await
        .map_err(kube_error("create", "swinganalyses", &target.namespace))?;
    println!("swinganalysis/{name} created");
    if let Some(timeout) = request.wait {
        let finished = crate::follow::until_finished(target, &name, timeout).await?;
        print!("{}", show::describe(&finished));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use golftracker_crds::analysis::Handedness;

    fn request() -> Request {
        Request {
            video: "clips/Swing 1.MOV".into(),
            stack: "quickstart".into(),
            name: None,
            golfer: Golfer {
                user_id: "user-42".into(),
                handedness: Handedness::Left,
                club: Some("driver".into()),
            },
            camera_view: CameraView::DownTheLine,
            retention: Retention::Erase,
            priority: 5,
            wait: None,
        }
    }

    #[test]
    fn names_come_from_the_file_and_the_time() {
        let now: Timestamp = "2026-11-26T10:04:05Z".parse().unwrap();
        assert_eq!(
            analysis_name(Path::new("clips/Swing 1.MOV"), now),
            "swing-1-20261126-100405"
        );
        assert_eq!(
            analysis_name(Path::new("__.mp4"), now),
            "swing-20261126-100405"
        );
        let long = analysis_name(Path::new(&"a".repeat(300)), now);
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn analysis_object() {
        let analysis = analysis(
            &request(),
            "swing-1",
            "golfers",
            "videos/user-42/swing-1.mov",
        );
        insta::assert_yaml_snapshot!(analysis);
    }
}
