//! Decoding and the motion pass on real H.264 files written by `synth`
//! (and re-muxed or re-encoded by the ffmpeg CLI for rotation, variable
//! frame rate and HEVC).

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use golftracker_results_db::SwingEvents;
use golftracker_worker::analyze::{Options, analyze_video};
use golftracker_worker::decode::{Limits, VideoReader, rotate_rgb};
use golftracker_worker::frame::Frame;
use golftracker_worker::golfer::SwingParams;
use golftracker_worker::motion::MotionPass;
use golftracker_worker::pose::{Joint, Pose, PoseError, PoseEstimator, Region};
use golftracker_worker::swing::correct_events;
use golftracker_worker::synth::{ClipFormat, drawn_swing, write_clips};
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

/// A 640x360 30 fps clip of `seconds`, the shape of a phone video at the
/// motion pass's 16:9 size.
fn wide_clip(dir: &Path, seed: u64, seconds: f64) -> PathBuf {
    let format = ClipFormat {
        width: 640,
        height: 360,
        fps: 30,
        seconds,
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

    let mut motion = MotionPass::new(80, 60).unwrap();
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

/// The swing window of the clip at `path`, from its frames at the size the
/// worker's motion pass uses for a 16:9 clip.
fn swing_window(path: &Path) -> Option<(f64, f64)> {
    swing_window_of(&frames(path, 160, 90))
}

/// The swing window of frames decoded at 160x90.
fn swing_window_of(frames: &[Frame]) -> Option<(f64, f64)> {
    let mut motion = MotionPass::new(160, 90).unwrap();
    for frame in frames {
        motion.push(frame).unwrap();
    }
    motion.finish().unwrap().swing_window()
}

/// Where the swing fills half of a 4 s clip (seeds 2 and 6) or most of a
/// 2.5 s one, the motion pass still finds it: its noise estimate comes from
/// the quietest frames, not from a median inside the swing (which rejected
/// seeds 2 and 6 at 640x360).
#[test]
fn the_motion_pass_finds_a_swing_that_fills_most_of_the_clip() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, seconds) in [(2, 4.0), (6, 4.0), (12, 2.5)] {
        let path = wide_clip(dir.path(), seed, seconds);
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let (start, end) = swing_window(&path)
            .unwrap_or_else(|| panic!("seed {seed}, {seconds} s: no swing found"));
        let event_time = |e: &str| truth["events"][e]["time_s"].as_f64().unwrap();
        assert!(
            start <= event_time("address") && end >= event_time("impact"),
            "seed {seed}, {seconds} s: window {start}-{end} s: {truth}"
        );
    }
}

/// A still picture with sensor noise, encoded as a phone would, is no swing.
#[test]
fn a_still_noisy_clip_has_no_swing() {
    let dir = tempfile::tempdir().unwrap();
    let path = wide_clip(dir.path(), 3, 1.0);
    let still = dir.path().join("still.mp4");
    // The first frame held for 4 s, with fresh noise in every frame.
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-vf",
        "trim=end_frame=1,loop=119:1:0,setpts=N/30/TB,noise=alls=8:allf=t",
        "-frames:v",
        "120",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        still.to_str().unwrap(),
    ]);
    assert_eq!(swing_window(&still), None);
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

/// HEVC as iPhones record it (Main 10, 10-bit 4:2:0, tagged `hvc1` in MP4)
/// decodes to the same pictures and frame times as the H.264 clip it was
/// made from, and the motion pass finds the same swing.
#[test]
fn hevc_main10_decodes_like_the_h264_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = wide_clip(dir.path(), 7, 3.0);
    let hevc = dir.path().join("hevc.mp4");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p10le",
        "-tag:v",
        "hvc1",
        hevc.to_str().unwrap(),
    ]);
    let info = VideoReader::open(&hevc, Limits::default())
        .unwrap()
        .info()
        .clone();
    assert_eq!(
        (info.codec.as_str(), info.width, info.height),
        ("hevc", 640, 360)
    );
    let (source, decoded) = (frames(&path, 160, 90), frames(&hevc, 160, 90));
    assert_eq!(decoded.len(), source.len());
    for (a, b) in source.iter().zip(&decoded) {
        assert!(
            (a.time_s - b.time_s).abs() < 1e-3,
            "{} vs {}",
            a.time_s,
            b.time_s
        );
        // Mean absolute difference per 8-bit value: re-encoding noise, not a
        // misread bit depth or colour layout (those differ by tens).
        let diff: u64 = a
            .rgb
            .iter()
            .zip(&b.rgb)
            .map(|(x, y)| x.abs_diff(*y) as u64)
            .sum();
        let mean = diff as f64 / a.rgb.len() as f64;
        assert!(mean < 4.0, "frame at {} s differs by {mean:.1}", a.time_s);
    }
    let (start, end) = swing_window_of(&source).expect("swing in the H.264 clip");
    let (hevc_start, hevc_end) = swing_window_of(&decoded).expect("swing in the HEVC clip");
    assert!(
        (start - hevc_start).abs() <= 0.1 && (end - hevc_end).abs() <= 0.1,
        "H.264 {start}-{end} s, HEVC {hevc_start}-{hevc_end} s"
    );
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

/// What the pose model found at each frame time.
type Found = Vec<(f64, Option<Pose>)>;

/// The pose model as `analyze_video` runs it, keeping what it found in each
/// frame so that the test can hold it against the drawn golfer.
struct Recorded {
    model: Box<dyn PoseEstimator>,
    found: Rc<RefCell<Found>>,
}

impl PoseEstimator for Recorded {
    fn estimate(&mut self, frame: &Frame, hint: Option<Region>) -> Result<Option<Pose>, PoseError> {
        let pose = self.model.estimate(frame, hint)?;
        self.found.borrow_mut().push((frame.time_s, pose.clone()));
        Ok(pose)
    }

    fn model_id(&self) -> &str {
        self.model.model_id()
    }
}

/// What the pose model made of one synthetic clip.
#[derive(Debug)]
struct PoseQuality {
    /// Fraction of the analysed frames with a person.
    person: f64,
    /// Median distance (m) of the found hands (the wrists' midpoint, whichever
    /// way round the model labelled them) from the drawn ones.
    hands_m: f64,
}

fn pose_quality(found: &Found, swing: &SwingParams) -> PoseQuality {
    let mut errors: Vec<f64> = found
        .iter()
        .filter_map(|(time_s, pose)| {
            let pose = pose.as_ref()?;
            let drawn = swing.skeleton_at(*time_s);
            let midpoint = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            let wrist = |j: Joint| {
                let k = pose.joint(j);
                (f64::from(k.x), f64::from(k.y))
            };
            let found = midpoint(wrist(Joint::LeftWrist), wrist(Joint::RightWrist));
            let drawn = midpoint(
                drawn.joint(Joint::LeftWrist),
                drawn.joint(Joint::RightWrist),
            );
            Some((found.0 - drawn.0).hypot(found.1 - drawn.1) / swing.scale_px)
        })
        .collect();
    let person = errors.len() as f64 / found.len().max(1) as f64;
    errors.sort_by(f64::total_cmp);
    PoseQuality {
        person,
        hands_m: errors
            .get(errors.len() / 2)
            .copied()
            .unwrap_or(f64::INFINITY),
    }
}

/// The whole pipeline with the real pose model on synthetic clips, face-on
/// and down the line: the model finds the golfer in nearly every frame and
/// the hands where they are drawn, and the swing logic the events. (Seeds 5
/// and 7 once had a person in only 63 % of the frames, a hair above the
/// swing logic's 60 %, when the golfer was drawn as a stick figure.)
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
    let seeds = [1, 5, 7, 8, 9];
    let mut correct = 0;
    let mut seen = Vec::new();
    for seed in seeds {
        let path = write_clips(dir.path(), seed, 1, format).unwrap().remove(0);
        let truth: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let swing = drawn_swing(truth["seed"].as_u64().unwrap(), format);
        let truth: SwingEvents = serde_json::from_value(truth["events"].clone()).unwrap();
        let found = Rc::new(RefCell::new(Vec::new()));
        let load = || -> Result<Box<dyn PoseEstimator>, Error> {
            Ok(Box::new(Recorded {
                model: pose::load_estimator(&weights)?,
                found: found.clone(),
            }))
        };
        let events = analyze_video(&path, load, Options::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
            .report
            .events;
        let quality = pose_quality(&found.borrow(), &swing);
        let ok = correct_events(&events, &truth);
        correct += ok.iter().filter(|ok| **ok).count();
        let ok = ok.map(u8::from);
        assert!(
            quality.person >= 0.9 && quality.hands_m <= 0.15 && ok[5] == 1,
            "seed {seed}: {quality:?}, events correct {ok:?} (impact found at {:?}, \
             drawn at {:?}); earlier seeds: {seen:?}",
            events.impact,
            truth.impact
        );
        seen.push((seed, quality, ok));
    }
    // Events within GolfDB's one-frame tolerance: 32 of 40 at the time of
    // writing (address and finish, slow starts and ends, are the hardest to
    // place on real pose output, and flip with the last bits of the kernels).
    assert!(
        correct >= seeds.len() * 8 * 2 / 3,
        "{correct} of {} events correct: {seen:?}",
        seeds.len() * 8
    );
}
