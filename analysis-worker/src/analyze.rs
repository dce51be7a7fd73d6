//! The analysis pipeline of one video: motion pass over every frame, pose model
//! over the whole clip (a phone clip) or the swing window of a long one,
//! events and metrics, report JSON and PNG.
//!
//! The video is decoded twice rather than buffered: the first pass needs only
//! tiny frames (decoded without deblocking), the second decodes up to the end
//! of the swing window and scales only its frames, so memory stays bounded
//! whatever the clip's length and resolution. Each pass decodes on a thread
//! of its own, a few frames ahead of the motion pass or the pose model.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use golftracker_results_db::{Report, SlowMotion};

use crate::Error;
use crate::decode::{Limits, VideoReader, fit_within};
use crate::frame::Frame;
use crate::motion::{MotionPass, WHOLE_CLIP_S};
use crate::plot::{self, Thumbnail};
use crate::pose::{Keypoint, Pose, PoseEstimator};
use crate::swing::{self, CameraView, PoseSample, SwingError};

/// Frames decoded ahead of their consumer (bounds the frames held in memory).
const DECODE_AHEAD: usize = 4;
/// Longest side of the frames of the motion pass.
const MOTION_SIDE: u32 = 160;
/// Longest side of the frames given to the pose model: its crops are 256 px, so
/// more resolution would only cost scaling time.
const POSE_SIDE: u32 = 960;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Camera view from the spec; `None` infers it from the pose.
    pub view: Option<CameraView>,
    pub left_handed: bool,
    pub limits: Limits,
    /// Where to write the pose of every analysed frame (JSON), before the swing
    /// logic runs, so that a refused clip can be looked into too.
    pub poses_out: Option<PathBuf>,
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
    let mut motion = MotionPass::new(mw, mh)?;
    let motion_device = motion.device_name();
    let frames = decode_ahead(reader.draft(), (mw, mh), (0.0, f64::INFINITY), |frame| {
        motion.push(&frame)
    })?;
    let summary = motion.finish()?;
    // The frame rate the timestamps show, not the container's estimate.
    let fps = match (summary.times.first(), summary.times.last()) {
        (Some(first), Some(last)) if last > first => {
            (summary.times.len() - 1) as f64 / (last - first)
        }
        _ => info.fps,
    };
    let burst = summary.swing_window().ok_or(SwingError::NoSwing(
        "no motion that could be a swing in the video",
    ))?;
    let clip_s = summary.times.last().copied().unwrap_or(0.0);
    let window = if clip_s <= WHOLE_CLIP_S {
        (0.0, f64::INFINITY)
    } else {
        burst
    };
    eprintln!(
        "analyze: motion pass ({motion_device}) over {frames} frames in {:.2} s; motion {:.2}-{:.2} s, pose over {:.2}-{:.2} s",
        started.elapsed().as_secs_f64(),
        burst.0,
        burst.1,
        window.0,
        window.1.min(clip_s)
    );

    let unusual_motion = summary.unusual_motion();
    let mut estimator = load_estimator()?;
    let (pw, ph) = fit_within(info.width, info.height, POSE_SIDE);
    let region = summary.burst().and_then(|b| summary.region(b, pw, ph));
    let pose_started = Instant::now();
    let mut samples = Vec::new();
    let mut thumbs = Vec::new();
    let reader = VideoReader::open(path, options.limits)?;
    decode_ahead(reader, (pw, ph), window, |frame| {
        let pose = estimator.estimate(&frame, region)?;
        thumbs.push(Thumbnail::of(&frame));
        samples.push(PoseSample {
            frame: frame.index as u64,
            time_s: frame.time_s,
            pose,
            motion: unusual_motion.get(frame.index).copied(),
        });
        Ok(())
    })?;
    let found = samples.iter().filter(|s| s.pose.is_some()).count();
    eprintln!(
        "analyze: pose model on {} frames ({found} with a person) in {:.2} s",
        samples.len(),
        pose_started.elapsed().as_secs_f64()
    );

    if let Some(path) = &options.poses_out {
        write_poses(path, &samples)?;
    }
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
        slow_motion: swing.slow_motion_factor.map(|factor| SlowMotion {
            factor,
            confidence: 0.6,
            source: "downswing_duration".to_string(),
        }),
        swings_seen: Some(swing.swings_seen as u32),
    };
    let png = plot::render(&report, &samples, &thumbs)?;
    eprintln!("analyze: done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(Analysis { report, png })
}

/// The pose track as JSON: `[{"frame", "time_s", "pose": null | {"score",
/// "keypoints": [[x, y, confidence]; 17]}}]`.
fn write_poses(path: &Path, samples: &[PoseSample]) -> Result<(), Error> {
    let frames: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            let pose = s.pose.as_ref().map(|p| {
                let points: Vec<[f32; 3]> =
                    p.keypoints.iter().map(|k| [k.x, k.y, k.confidence]).collect();
                serde_json::json!({"score": p.score, "keypoints": points})
            });
            serde_json::json!({"frame": s.frame, "time_s": s.time_s, "pose": pose, "motion": s.motion})
        })
        .collect();
    std::fs::write(path, serde_json::to_vec(&frames)?)?;
    Ok(())
}

/// Reads a pose track written by [`write_poses`].
pub fn read_poses(path: &Path) -> Result<Vec<PoseSample>, Error> {
    #[derive(serde::Deserialize)]
    struct Sample {
        frame: u64,
        time_s: f64,
        pose: Option<Found>,
        #[serde(default)]
        motion: Option<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Found {
        score: f32,
        keypoints: [[f32; 3]; 17],
    }
    let samples: Vec<Sample> = serde_json::from_slice(&std::fs::read(path)?)?;
    Ok(samples
        .into_iter()
        .map(|s| PoseSample {
            frame: s.frame,
            time_s: s.time_s,
            pose: s.pose.map(|p| Pose {
                score: p.score,
                keypoints: p
                    .keypoints
                    .map(|[x, y, confidence]| Keypoint { x, y, confidence }),
            }),
            motion: s.motion,
        })
        .collect())
}

/// Decodes `reader` on a thread of its own, scaled to `size`, and hands the
/// frames from `span.0` to `span.1` seconds to `consume` in order: decoding
/// and scaling the next frames overlaps the work on this one (the pose
/// model's late layers leave cores idle). Returns the number of frames decoded.
fn decode_ahead(
    reader: VideoReader,
    (width, height): (u32, u32),
    (from_s, until_s): (f64, f64),
    consume: impl FnMut(Frame) -> Result<(), Error>,
) -> Result<usize, Error> {
    let (frames, queue) = mpsc::sync_channel::<Frame>(DECODE_AHEAD);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            reader.decode(
                width,
                height,
                |t| t >= from_s,
                |frame| {
                    // Past the span, or the consumer failed (and says why below).
                    if frame.time_s > until_s || frames.send(frame).is_err() {
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok(ControlFlow::Continue(()))
                },
            )
        });
        let consumed = consume_all(queue, consume);
        let decoded = decoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed.and(decoded)
    })
}

/// Takes `queue` by value so that it is dropped, and the decoder stopped, on an error.
fn consume_all(
    queue: mpsc::Receiver<Frame>,
    consume: impl FnMut(Frame) -> Result<(), Error>,
) -> Result<(), Error> {
    queue.into_iter().try_for_each(consume)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{ClipFormat, write_clips};

    #[test]
    fn decode_ahead_hands_over_the_span_in_order_and_stops_at_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let format = ClipFormat {
            width: 320,
            height: 240,
            fps: 30,
            seconds: 1.0,
        };
        let path = write_clips(dir.path(), 1, 1, format).unwrap().remove(0);
        let open = || VideoReader::open(&path, Limits::default()).unwrap();

        let mut seen = Vec::new();
        decode_ahead(open(), (32, 24), (0.18, 0.52), |frame| {
            assert_eq!((frame.width, frame.height), (32, 24));
            seen.push(frame.index);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (6..=15).collect::<Vec<_>>());

        let mut consumed = 0;
        let stopped = decode_ahead(open(), (32, 24), (0.0, f64::INFINITY), |_| {
            consumed += 1;
            if consumed == 3 {
                return Err(Error::Config("consumer failed".into()));
            }
            Ok(())
        });
        assert!(
            matches!(&stopped, Err(Error::Config(m)) if m == "consumer failed"),
            "{stopped:?}"
        );
        assert_eq!(consumed, 3);
    }
}
