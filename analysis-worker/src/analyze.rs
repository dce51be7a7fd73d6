//! The analysis pipeline of one video: motion pass over every frame, pose model
//! over the swing window only, events and metrics, report JSON and PNG.
//!
//! The video is decoded twice rather than buffered: the first pass needs only
//! tiny frames, the second scales only the frames of the swing window, so
//! memory stays bounded whatever the clip's length and resolution.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use golftracker_results_db::Report;

use crate::Error;
use crate::decode::{Limits, VideoReader, fit_within};
use crate::motion::MotionPass;
use crate::plot::{self, Thumbnail};
use crate::pose::PoseEstimator;
use crate::swing::{self, CameraView, PoseSample, SwingError};

/// Longest side of the frames of the motion pass.
const MOTION_SIDE: u32 = 160;
/// Longest side of the frames given to the pose model: its crops are 256 px, so
/// more resolution would only cost scaling time.
const POSE_SIDE: u32 = 960;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Camera view from the spec; `None` infers it from the pose.
    pub view: Option<CameraView>,
    pub left_handed: bool,
    pub limits: Limits,
}

pub struct Analysis {
    pub report: Report,
    pub png: Vec<u8>,
}

/// Analyses the video at `path`; `load_estimator` is called only once the video
/// has proven decodable and to contain motion, so bad input fails fast.
pub fn analyze_video(
    path: &Path,
    load_estimator: impl FnOnce() -> Result<Box<dyn PoseEstimator>, Error>,
    options: Options,
) -> Result<Analysis, Error> {
    let started = Instant::now();
    let reader = VideoReader::open(path, options.limits)?;
    let info = reader.info().clone();
    eprintln!(
        "analyze: {}x{} {} {:.2} fps, {:.1} s, rotation {}°",
        info.width, info.height, info.codec, info.fps, info.duration_s, info.rotation
    );
    let (mw, mh) = fit_within(info.width, info.height, MOTION_SIDE);
    let mut motion = MotionPass::new(mw, mh);
    let frames = reader.decode(
        mw,
        mh,
        |_| true,
        |frame| {
            motion.push(&frame)?;
            Ok(ControlFlow::Continue(()))
        },
    )?;
    let summary = motion.finish()?;
    // The frame rate the timestamps show, not the container's estimate.
    let fps = match (summary.times.first(), summary.times.last()) {
        (Some(first), Some(last)) if last > first => {
            (summary.times.len() - 1) as f64 / (last - first)
        }
        _ => info.fps,
    };
    let window = summary.swing_window().ok_or(SwingError::NoSwing(
        "no motion that could be a swing in the video",
    ))?;
    eprintln!(
        "analyze: motion pass over {frames} frames in {:.2} s; swing window {:.2}-{:.2} s",
        started.elapsed().as_secs_f64(),
        window.0,
        window.1
    );

    let mut estimator = load_estimator()?;
    let (pw, ph) = fit_within(info.width, info.height, POSE_SIDE);
    let region = summary.region(window, pw, ph);
    let pose_started = Instant::now();
    let mut samples = Vec::new();
    let mut thumbs = Vec::new();
    VideoReader::open(path, options.limits)?.decode(
        pw,
        ph,
        |t| t >= window.0 && t <= window.1,
        |frame| {
            let pose = estimator.estimate(&frame, region)?;
            thumbs.push(Thumbnail::of(&frame));
            samples.push(PoseSample {
                frame: frame.index as u64,
                time_s: frame.time_s,
                pose,
            });
            Ok(ControlFlow::Continue(()))
        },
    )?;
    let found = samples.iter().filter(|s| s.pose.is_some()).count();
    eprintln!(
        "analyze: pose model on {} frames ({found} with a person) in {:.2} s",
        samples.len(),
        pose_started.elapsed().as_secs_f64()
    );

    let swing = swing::analyze(&samples, options.view, options.left_handed)?;
    let report = Report {
        fps,
        frames: frames as u64,
        width: info.width,
        height: info.height,
        view: swing.view.as_str().to_string(),
        model: estimator.model_id().to_string(),
        events: swing.events,
        tempo_ratio: Some(swing.tempo_ratio),
        backswing_ms: Some(swing.backswing_ms),
        downswing_ms: Some(swing.downswing_ms),
        metrics: swing.metrics,
        recommendations: swing.recommendations,
    };
    let png = plot::render(&report, &samples, &thumbs)?;
    eprintln!("analyze: done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(Analysis { report, png })
}
