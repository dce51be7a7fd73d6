//! The GolfTracker analysis worker: decode a swing video, find the swing with a
//! motion pass, run the pose model over it, and turn the keypoints into events,
//! metrics and a report. The binary (`main.rs`) is a thin CLI over this library;
//! the benchmarks use it directly.

pub mod analyze;
pub mod decode;
mod error;
pub mod frame;
pub mod golfer;
pub mod job;
pub mod motion;
pub mod plot;
pub mod pose;
pub mod swing;
pub mod synth;

pub use error::Error;
