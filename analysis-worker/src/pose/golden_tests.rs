//! Golden test: the candle BlazePose against the official TFLite runtime
//! (LiteRT, `tests/reference/litert_reference.py`) on the same input tensors,
//! cut by our pipeline from a real photo (`samples.jpg`, `cargo xtask models`).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Tensor;

use super::blazepose::{BlazePose, Network, RotatedRect, crop};
use super::{Joint, Keypoint, PoseEstimator};
use crate::frame::Frame;

fn models_dir() -> PathBuf {
    super::default_models_dir().expect("GOLFTRACKER_MODELS_DIR or HOME is set")
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// The LiteRT venv's python, created by `setup.sh` if missing.
fn litert_python() -> String {
    let out = Command::new("bash")
        .arg(reference_dir().join("setup.sh"))
        .output()
        .expect("run setup.sh");
    assert!(
        out.status.success(),
        "LiteRT setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 path")
        .trim()
        .to_string()
}

/// Runs the official runtime on `input`; returns its outputs by TFLite name.
fn litert(model: &Path, input: &Tensor, scratch: &Path) -> Vec<(String, Tensor)> {
    let (input_path, output_path) = (scratch.join("input.npy"), scratch.join("output.npz"));
    input.write_npy(&input_path).expect("write input");
    let out = Command::new(litert_python())
        .arg(reference_dir().join("litert_reference.py"))
        .args([model, &input_path, &output_path])
        .output()
        .expect("run litert_reference.py");
    assert!(
        out.status.success(),
        "LiteRT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Tensor::read_npz(&output_path).expect("read LiteRT outputs")
}

fn output(outputs: &[(String, Tensor)], name: &str) -> Vec<f32> {
    let (_, t) = outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no LiteRT output {name}"));
    t.flatten_all()
        .and_then(|t| t.to_vec1())
        .expect("f32 output")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The standing woman in the fifth tile of the top row of samples.jpg.
fn golden_frame(dir: &Path) -> Frame {
    let path = dir.join("golden/samples.jpg");
    let image = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()));
    let tile = image.crop_imm(642, 0, 146, 158).to_rgb8();
    Frame {
        index: 0,
        time_s: 0.0,
        width: tile.width(),
        height: tile.height(),
        rgb: tile.into_raw(),
    }
}

/// The models directory, the model from it and the golden frame.
fn model_and_frame() -> (PathBuf, BlazePose, Frame) {
    let dir = models_dir();
    let weights = std::fs::read(dir.join("blazepose_full.safetensors"))
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", dir.display()));
    let model = BlazePose::from_safetensors(&weights).expect("load weights");
    let frame = golden_frame(&dir);
    (dir, model, frame)
}

/// The detector's input: the whole frame, letterboxed to 224×224.
fn detector_input(frame: &Frame) -> Tensor {
    let side = frame.width.max(frame.height) as f32;
    let window = RotatedRect {
        cx: frame.width as f32 / 2.0,
        cy: frame.height as f32 / 2.0,
        width: side,
        height: side,
        rotation: 0.0,
    };
    crop(frame, window, 224, (-1.0, 1.0)).expect("detector input")
}

#[test]
fn blazepose_matches_litert_on_a_real_photo() {
    let (dir, model, frame) = model_and_frame();
    let scratch = tempfile::tempdir().expect("temp dir");

    let input = detector_input(&frame);
    let (boxes, scores) = model.run_detector(input.clone()).expect("candle detector");
    let reference = litert(&dir.join("detector.tflite"), &input, scratch.path());
    let box_error = max_abs_diff(&boxes, &output(&reference, "Identity"));
    let score_error = max_abs_diff(&scores, &output(&reference, "Identity_1"));
    eprintln!("detector: max |Δ| boxes {box_error:.2e} px, score logits {score_error:.2e}");
    assert!(box_error < 1e-2 && score_error < 1e-2);
    // `pose-bench --layers` profiles the same graph: one time per op, the
    // first the 3×3 stem on the 224×224 input.
    let ops = model
        .profile(Network::Detector, input.clone())
        .expect("profile");
    assert!(ops.len() > 50, "{} ops", ops.len());
    assert!(
        ops[0].layer.starts_with("conv 3x3/2 [1, 224, 224, 3]"),
        "{}",
        ops[0].layer
    );

    // Landmark model, on the crop the detector's person gives.
    let rect = model
        .detect(&frame, None)
        .expect("detect")
        .expect("the detector finds the person");
    let input = crop(&frame, rect, 256, (0.0, 1.0)).expect("landmark input");
    let (landmarks, presence) = model
        .run_landmarks(input.clone())
        .expect("candle landmarks");
    let reference = litert(&dir.join("landmark.tflite"), &input, scratch.path());
    let expected = output(&reference, "Identity");
    let xy = |v: &[f32]| -> Vec<f32> { v.chunks_exact(5).flat_map(|l| [l[0], l[1]]).collect() };
    let xy_error = max_abs_diff(&xy(&landmarks), &xy(&expected));
    let all_error = max_abs_diff(&landmarks, &expected);
    let presence_error = (presence - output(&reference, "Identity_1")[0]).abs();
    eprintln!(
        "landmarks: max |Δ| x/y {xy_error:.2e} px, all 195 values {all_error:.2e}, presence {presence_error:.2e}"
    );
    assert!(
        xy_error < 1e-2,
        "landmarks differ from LiteRT by {xy_error} px"
    );
    assert!(all_error < 1e-2 && presence_error < 1e-3);

    // And the pose is the person's: present, nose above the hips, inside the tile.
    assert!(presence > 0.5, "presence {presence}");
    let mut estimator = model;
    let first = estimator
        .estimate(&frame, None)
        .expect("estimate")
        .expect("a pose");
    let (nose, hip) = (first.joint(Joint::Nose), first.joint(Joint::LeftHip));
    assert!(nose.y < hip.y, "nose {nose:?} above hip {hip:?}");
    let inside = |k: Keypoint| {
        (0.0..frame.width as f32).contains(&k.x) && (0.0..frame.height as f32).contains(&k.y)
    };
    assert!(inside(nose) && inside(hip));

    // The second call tracks the crop from the first call's landmarks instead of
    // detecting: on the same frame it must find the same pose.
    let second = estimator
        .estimate(&frame, None)
        .expect("estimate")
        .expect("a tracked pose");
    for (a, b) in first.keypoints.iter().zip(&second.keypoints) {
        let moved = (a.x - b.x).hypot(a.y - b.y);
        assert!(
            moved < 0.05 * frame.height as f32,
            "tracked keypoint moved {moved} px"
        );
    }
}

/// The same input gives the same output bits whatever the thread count: a
/// report must not change with the node a worker lands on (the tracked crop
/// feeds each frame's landmarks into the next frame's input, so any
/// difference grows over a clip).
#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    let (_, model, frame) = model_and_frame();
    let detector_input = detector_input(&frame);
    let rect = model
        .detect(&frame, None)
        .expect("detect")
        .expect("the detector finds the person");
    let landmark_input = crop(&frame, rect, 256, (0.0, 1.0)).expect("landmark input");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            let (boxes, scores) = model
                .run_detector(detector_input.clone())
                .expect("detector");
            let (landmarks, presence) = model
                .run_landmarks(landmark_input.clone())
                .expect("landmarks");
            (boxes, scores, landmarks, presence)
        })
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let one = run(1);
    // 16: more threads than a 7x7 projection has blocks of output channels.
    for threads in [2, 3, 4, 16] {
        let many = run(threads);
        assert_eq!(
            bits(&one.0),
            bits(&many.0),
            "detector boxes, {threads} threads"
        );
        assert_eq!(
            bits(&one.1),
            bits(&many.1),
            "detector scores, {threads} threads"
        );
        assert_eq!(
            bits(&one.2),
            bits(&many.2),
            "landmarks, {threads} threads: max |Δ| {:.2e}",
            max_abs_diff(&one.2, &many.2)
        );
        assert_eq!(
            one.3.to_bits(),
            many.3.to_bits(),
            "presence, {threads} threads"
        );
    }
}
