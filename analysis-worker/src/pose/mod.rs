//! Pose estimation: the interface the swing logic uses, and the model(s) behind it.
//!
//! The event logic works on the 17 COCO keypoints, which every supported model
//! (BlazePose's 33 landmarks, MoveNet's 17) can provide.

pub mod blazepose;
#[cfg(test)]
mod golden_tests;
mod graph;
mod kernels;

use std::path::{Path, PathBuf};

use crate::frame::Frame;

/// The 17 COCO keypoints, in COCO order (the index is the discriminant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Joint {
    Nose = 0,
    LeftEye,
    RightEye,
    LeftEar,
    RightEar,
    LeftShoulder,
    RightShoulder,
    LeftElbow,
    RightElbow,
    LeftWrist,
    RightWrist,
    LeftHip,
    RightHip,
    LeftKnee,
    RightKnee,
    LeftAnkle,
    RightAnkle,
}

/// One keypoint in pixel coordinates of the frame it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    /// Visibility/presence confidence in 0..=1.
    pub confidence: f32,
}

/// A person's pose in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    pub keypoints: [Keypoint; 17],
    /// Overall confidence that a person is present (0..=1).
    pub score: f32,
}

impl Pose {
    pub fn joint(&self, joint: Joint) -> Keypoint {
        self.keypoints[joint as usize]
    }
}

/// Axis-aligned region of interest in pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// A pose model. Implementations keep their own tracking state between frames
/// (e.g. BlazePose's region from the previous frame's landmarks).
pub trait PoseEstimator {
    /// Finds the golfer's pose in `frame`; `hint` is the region the motion pass
    /// found the golfer in, if any. `Ok(None)` means no person was found.
    fn estimate(&mut self, frame: &Frame, hint: Option<Region>) -> Result<Option<Pose>, PoseError>;
    /// A short model identifier for the report, e.g. `blazepose-full@0.5.1675469404`.
    fn model_id(&self) -> &str;
}

#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    #[error("pose model weights: {0}")]
    Weights(String),
    #[error("pose model inference: {0}")]
    Inference(String),
}

/// Where `cargo xtask models` puts the model set: `GOLFTRACKER_MODELS_DIR`,
/// else its cache under `$HOME`.
pub fn default_models_dir() -> Option<PathBuf> {
    std::env::var_os("GOLFTRACKER_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            Some(home.join(".cache/golftracker/models/blazepose-0.5.1675469404-v1"))
        })
}

/// The converted weights in [`default_models_dir`].
pub fn default_weights() -> Option<PathBuf> {
    default_models_dir().map(|dir| dir.join("blazepose_full.safetensors"))
}

/// Loads the pose model from the safetensors file made by `cargo xtask models`
/// (BlazePose full: detector + landmark model). A `<file>.sha256` sidecar, if
/// present, must match.
pub fn load_estimator(weights: &Path) -> Result<Box<dyn PoseEstimator>, PoseError> {
    let bytes = std::fs::read(weights)
        .map_err(|e| PoseError::Weights(format!("{}: {e}", weights.display())))?;
    let mut sidecar = weights.as_os_str().to_owned();
    sidecar.push(".sha256");
    let sidecar = std::path::PathBuf::from(sidecar);
    if let Ok(expected) = std::fs::read_to_string(&sidecar) {
        let actual = sha256_hex(&bytes);
        if actual != expected.trim() {
            return Err(PoseError::Weights(format!(
                "{}: sha256 {actual} does not match {}",
                weights.display(),
                sidecar.display()
            )));
        }
    }
    Ok(Box::new(blazepose::BlazePose::from_safetensors(&bytes)?))
}

/// Lower-case hex sha256 of a file, to check downloaded weights against the expected hash.
pub fn sha256_of(path: &Path) -> Result<String, PoseError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| PoseError::Weights(format!("{}: {e}", path.display())))?;
    let mut hasher = sha2::Sha256::default();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| PoseError::Weights(format!("{}: {e}", path.display())))?;
    Ok(hex(&sha2::Digest::finalize(hasher)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_with_a_wrong_sidecar_hash_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let weights = dir.path().join("model.safetensors");
        std::fs::write(&weights, b"not the weights").expect("write");
        std::fs::write(dir.path().join("model.safetensors.sha256"), "00ff\n").expect("write");
        let Err(PoseError::Weights(message)) = load_estimator(&weights) else {
            panic!("a hash mismatch must be refused");
        };
        assert!(message.contains("sha256"), "{message}");
        assert_eq!(
            sha256_of(&weights).expect("hash"),
            sha256_hex(b"not the weights")
        );
    }
}
