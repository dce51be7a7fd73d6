//! Decoding and the motion pass on real H.264 files written by `synth`
//! (and re-muxed by the ffmpeg CLI for rotation and variable frame rate).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use golftracker_results_db::SwingEvents;
use golftracker_worker::analyze::{Options, analyze_video};
use golftracker_worker::decode::{Limits, VideoReader, rotate_rgb};
use golftracker_worker::frame::Frame;
use golftracker_worker::motion::MotionPass;
use golftracker_worker::swing::correct_events;
use golftracker_worker::synth::{ClipFormat, write_clips};
use golftracker_worker::{Error, pose};

fn clip(dir: &Path, seed: u64) -> PathBuf {
    let format = ClipFormat {
        width: 320,
        height: 240,
        fps: 30,
        seconds: 4.0,
    };
    write_clips(dir, seed, 1, format).unwrap().remove(0)
}

fn frames(path: &Path, width: u32, height: u32) -> Vec<Frame> {
    let mut frames = Vec::new();
    VideoReader::open(path, Limits::default())
        .unwrap()
        .decode(
            width,
            height,
            |_| true,
            |f| {
                frames.push(f);
                Ok(ControlFlow::Continue(()))
            },
        )
        .unwrap();
    frames
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}");
}

#[test]
fn synthetic_clip_decodes_and_the_motion_pass_finds_the_swing() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), 3);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    let reader = VideoReader::open(&path, Limits::default()).unwrap();
    let info = reader.info().clone();
    assert_eq!((info.width, info.height, info.rotation), (320, 240, 0));
    // The container's average (MP4 edit lists skew it a little); frame times come from timestamps.
    assert!((info.fps - 30.0).abs() < 1.0, "{}", info.fps);
    assert_eq!(info.codec, "h264");

    let mut motion = MotionPass::new(80, 60);
    let mut times = Vec::new();
    let count = reader
        .decode(
            80,
            60,
            |_| true,
            |frame| {
                assert_eq!(
                    (frame.width, frame.height, frame.rgb.len()),
                    (80, 60, 80 * 60 * 3)
                );
                times.push(frame.time_s);
                motion.push(&frame)?;
                Ok(ControlFlow::Continue(()))
            },
        )
        .unwrap();
    assert_eq!(count, 120);
    for (i, t) in times.iter().enumerate() {
        assert!((t - i as f64 / 30.0).abs() < 1e-3, "frame {i} at {t}");
    }
    let summary = motion.finish().unwrap();
    let (start, end) = summary.swing_window().expect("the swing is found");
    let event_time = |e: &str| truth["events"][e]["time_s"].as_f64().unwrap();
    assert!(
        start <= event_time("address") - 0.2,
        "window starts at {start} s: {truth}"
    );
    assert!(
        end >= event_time("finish").min(3.9) - 0.05,
        "window ends at {end} s: {truth}"
    );
    let region = summary.region((start, end), 320, 240).unwrap();
    assert!(region.width > 40.0 && region.height > 60.0, "{region:?}");
}

#[test]
fn rotation_metadata_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), 4);
    let rotated = dir.path().join("rotated.mp4");
    // FFmpeg 5.1 writes the `rotate=90` tag as a display matrix that ffprobe
    // reports as "rotation=90" (counter-clockwise), and its own autorotate turns
    // such a video with transpose=cclock: 270° clockwise. (An upright iPhone
    // clip carries the opposite matrix: 90° clockwise.)
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let info = VideoReader::open(&rotated, Limits::default())
        .unwrap()
        .info()
        .clone();
    assert_eq!((info.width, info.height, info.rotation), (240, 320, 270));
    let upright = frames(&rotated, 120, 160);
    let plain = frames(&path, 160, 120);
    assert_eq!(upright.len(), plain.len());
    let (turned, w, h) = rotate_rgb(&plain[50].rgb, 160, 120, 270);
    assert_eq!((upright[50].width, upright[50].height), (w, h));
    assert_eq!(upright[50].rgb, turned);
}

#[test]
fn variable_frame_rate_uses_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), 5);
    let vfr = dir.path().join("vfr.mp4");
    // First second at 30 fps, the rest at 15 fps (each later frame shown twice as long).
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-vf",
        "setpts='if(lt(N,30),N,30+(N-30)*2)/30/TB'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        vfr.to_str().unwrap(),
    ]);
    let times: Vec<f64> = frames(&vfr, 32, 24).iter().map(|f| f.time_s).collect();
    assert_eq!(times.len(), 120);
    assert!((times[10] - 10.0 / 30.0).abs() < 0.01, "{:?}", &times[..12]);
    assert!(
        (times[60] - (30.0 + 60.0) / 30.0).abs() < 0.01,
        "{}",
        times[60]
    );
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), 6);
    let too_wide = VideoReader::open(
        &path,
        Limits {
            max_side: 200,
            ..Limits::default()
        },
    );
    assert!(
        matches!(&too_wide, Err(Error::Limit(m)) if m.contains("320x240")),
        "{:?}",
        too_wide.err()
    );
    let too_long = VideoReader::open(
        &path,
        Limits {
            max_duration_s: 2.0,
            ..Limits::default()
        },
    );
    assert!(
        matches!(&too_long, Err(Error::Limit(m)) if m.contains("duration")),
        "{:?}",
        too_long.err()
    );
    let too_big = VideoReader::open(
        &path,
        Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        },
    );
    assert!(
        matches!(&too_big, Err(Error::Limit(m)) if m.contains("bytes")),
        "{:?}",
        too_big.err()
    );
}

/// Clips that once ended in NoSwingFound: a golfer small in a frame whose
/// shaking background the motion region took in whole (the detector then saw
/// the golfer too small), and a wrist the model misplaced on the way down
/// that stopped the search for impact. The whole pipeline with the real pose
/// model must find the swing, and impact where it is.
#[test]
fn synthetic_clips_through_the_pose_model_find_the_swing() {
    let weights = pose::default_weights().expect("HOME is set");
    let dir = tempfile::tempdir().unwrap();
    let format = ClipFormat {
        width: 640,
        height: 360,
        fps: 30,
        seconds: 4.0,
    };
    let mut correct = 0;
    for seed in [1, 5, 7, 8] {
        let path = write_clips(dir.path(), seed, 1, format).unwrap().remove(0);
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let truth: SwingEvents = serde_json::from_value(truth["events"].clone()).unwrap();
        let load = || Ok(pose::load_estimator(&weights)?);
        let found = analyze_video(&path, load, Options::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
            .report
            .events;
        let ok = correct_events(&found, &truth);
        assert!(ok[5], "seed {seed}: impact off: {found:?} vs {truth:?}");
        correct += ok.iter().filter(|ok| **ok).count();
    }
    // Events within GolfDB's one-frame tolerance (the slow starts and ends of
    // address and finish are the hardest to place on real pose output).
    assert!(correct >= 4 * 8 / 2, "{correct} of 32 events correct");
}
