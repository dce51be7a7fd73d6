//! A decoded video frame, as the decoder hands it to the motion pass and the pose model.

/// One decoded frame, scaled and converted to packed RGB24 by swscale.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Index of the frame in decode order (0-based).
    pub index: usize,
    /// Presentation time in seconds from the stream start (from timestamps, so VFR is handled).
    pub time_s: f64,
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, `width * height * 3` bytes, rows top to bottom, rotation already applied.
    pub rgb: Vec<u8>,
}
