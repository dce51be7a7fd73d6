//! BlazePose GHUM full, as MediaPipe's pose pipeline runs it: the person
//! detector finds the body (first frame, or after tracking is lost), then the
//! landmark model runs on a rotated square crop, and the next frame's crop
//! comes from this frame's alignment landmarks (hip centre + body-size point).

use candle_core::{Device, Tensor};

pub use super::graph::LayerTime;
use super::graph::{Graph, ModelFile};
use super::{Keypoint, Pose, PoseError, PoseEstimator, Region};
use crate::frame::Frame;

const DETECTOR_SIZE: usize = 224;
const LANDMARK_SIZE: usize = 256;
/// MediaPipe's `min_score_thresh` of the detector and of the pose presence flag.
const MIN_SCORE: f32 = 0.5;
/// Weighted NMS merges detections overlapping the best one by more than this IoU.
const NMS_IOU: f32 = 0.3;
/// The crop around the alignment points is 1.25× their box (MediaPipe's RectTransformation).
const ROI_SCALE: f32 = 1.25;
/// Landmark model output: 39 landmarks (33 body + 6 auxiliary) × (x, y, z, visibility, presence).
const LANDMARK_VALUES: usize = 5;
const BODY_LANDMARKS: usize = 33;
/// Auxiliary landmarks that track the next frame's region, like the detector's keypoints 0 and 1.
const ALIGNMENT_LANDMARKS: [usize; 2] = [33, 34];

/// BlazePose landmark index of each COCO keypoint, in [`Joint`] order.
const COCO_FROM_BLAZEPOSE: [usize; 17] = [
    0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28,
];

/// A rotated rectangle in pixel coordinates: the model's input crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedRect {
    pub cx: f32,
    pub cy: f32,
    pub width: f32,
    pub height: f32,
    /// Radians, clockwise in image coordinates (y down).
    pub rotation: f32,
}

impl RotatedRect {
    /// Image point of a crop point given as offsets in -0.5..0.5 of the rect's size.
    fn to_image(self, u: f32, v: f32) -> (f32, f32) {
        let (sin, cos) = self.rotation.sin_cos();
        let (x, y) = (u * self.width, v * self.height);
        (self.cx + cos * x - sin * y, self.cy + sin * x + cos * y)
    }

    /// MediaPipe's AlignmentPointsRects + RectTransformation: a square around
    /// `center`, rotated so that `scale_point` is straight above it.
    fn from_alignment(center: (f32, f32), scale_point: (f32, f32)) -> Self {
        let (dx, dy) = (scale_point.0 - center.0, scale_point.1 - center.1);
        let size = 2.0 * dx.hypot(dy) * ROI_SCALE;
        let rotation = normalize_angle(std::f32::consts::FRAC_PI_2 - (-dy).atan2(dx));
        Self {
            cx: center.0,
            cy: center.1,
            width: size,
            height: size,
            rotation,
        }
    }
}

fn normalize_angle(angle: f32) -> f32 {
    use std::f32::consts::PI;
    angle - 2.0 * PI * ((angle + PI) / (2.0 * PI)).floor()
}

/// Bilinear resampling of `rect` from an RGB24 frame into a `size`×`size` NHWC
/// tensor with values mapped from 0..=255 to `range`; outside the frame is black.
pub fn crop(
    frame: &Frame,
    rect: RotatedRect,
    size: usize,
    range: (f32, f32),
) -> Result<Tensor, PoseError> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let scale = (range.1 - range.0) / 255.0;
    let pixel = |x: isize, y: isize| -> [f32; 3] {
        if x < 0 || y < 0 || x as usize >= w || y as usize >= h {
            return [0.0; 3];
        }
        let i = (y as usize * w + x as usize) * 3;
        [
            frame.rgb[i] as f32,
            frame.rgb[i + 1] as f32,
            frame.rgb[i + 2] as f32,
        ]
    };
    let mut out = Vec::with_capacity(size * size * 3);
    for row in 0..size {
        for col in 0..size {
            let u = (col as f32 + 0.5) / size as f32 - 0.5;
            let v = (row as f32 + 0.5) / size as f32 - 0.5;
            let (x, y) = rect.to_image(u, v);
            // Pixel centres are at +0.5.
            let (x, y) = (x - 0.5, y - 0.5);
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let (a, b, c, d) = (
                pixel(x0, y0),
                pixel(x0 + 1, y0),
                pixel(x0, y0 + 1),
                pixel(x0 + 1, y0 + 1),
            );
            for k in 0..3 {
                let value = a[k] * (1.0 - fx) * (1.0 - fy)
                    + b[k] * fx * (1.0 - fy)
                    + c[k] * (1.0 - fx) * fy
                    + d[k] * fx * fy;
                out.push(range.0 + value * scale);
            }
        }
    }
    Tensor::from_vec(out, (1, size, size, 3), &Device::Cpu)
        .map_err(|e| PoseError::Inference(e.to_string()))
}

/// One landmark in image pixels; `visibility` is already a probability.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Landmark {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub visibility: f32,
}

/// All 39 landmarks BlazePose returns (33 body, incl. heels and foot tips, + 6 auxiliary).
#[derive(Debug, Clone, PartialEq)]
pub struct BlazePoseLandmarks {
    pub landmarks: Vec<Landmark>,
    pub presence: f32,
    pub rect: RotatedRect,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn to_vec(tensor: &Tensor) -> Result<Vec<f32>, PoseError> {
    tensor
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(|e| PoseError::Inference(e.to_string()))
}

/// SSD anchor centres of the detector (MediaPipe's SsdAnchorsCalculator for
/// pose_detection: strides 8, 16, 32, 32, 32, two fixed-size anchors per layer,
/// layers of equal stride sharing one grid).
fn detector_anchors() -> Vec<(f32, f32)> {
    let mut anchors = Vec::new();
    for (stride, per_cell) in [(8, 2), (16, 2), (32, 6)] {
        let cells = DETECTOR_SIZE.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                let centre = (
                    (x as f32 + 0.5) / cells as f32,
                    (y as f32 + 0.5) / cells as f32,
                );
                anchors.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    anchors
}

/// A decoded detection in the detector crop's normalized coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Detection {
    score: f32,
    /// xmin, ymin, xmax, ymax.
    bbox: [f32; 4],
    /// Keypoint 0 (hip centre) and 1 (body size and rotation).
    alignment: [(f32, f32); 2],
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Decodes raw detector outputs (12 values per anchor: box centre and size,
/// then 4 keypoints, in input pixels relative to the anchor) and merges the
/// best person with weighted NMS, as MediaPipe's pose_detection graph does.
fn best_detection(boxes: &[f32], scores: &[f32], anchors: &[(f32, f32)]) -> Option<Detection> {
    let size = DETECTOR_SIZE as f32;
    let candidates: Vec<Detection> = anchors
        .iter()
        .enumerate()
        .filter_map(|(i, &(ax, ay))| {
            let score = sigmoid(scores[i].clamp(-100.0, 100.0));
            if score < MIN_SCORE {
                return None;
            }
            let raw = &boxes[i * 12..(i + 1) * 12];
            let (cx, cy) = (raw[0] / size + ax, raw[1] / size + ay);
            let (w, h) = (raw[2] / size, raw[3] / size);
            let point = |k: usize| (raw[4 + 2 * k] / size + ax, raw[5 + 2 * k] / size + ay);
            Some(Detection {
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                alignment: [point(0), point(1)],
            })
        })
        .collect();
    let best = candidates
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))?;
    let cluster: Vec<&Detection> = candidates
        .iter()
        .filter(|d| iou(&d.bbox, &best.bbox) > NMS_IOU)
        .collect();
    let total: f32 = cluster.iter().map(|d| d.score).sum();
    let mean =
        |f: &dyn Fn(&Detection) -> f32| cluster.iter().map(|d| f(d) * d.score).sum::<f32>() / total;
    Some(Detection {
        score: best.score,
        bbox: std::array::from_fn(|k| mean(&|d| d.bbox[k])),
        alignment: std::array::from_fn(|k| {
            (mean(&|d| d.alignment[k].0), mean(&|d| d.alignment[k].1))
        }),
    })
}

/// Maps the 17 COCO keypoints out of BlazePose's 33 body landmarks.
fn coco_pose(landmarks: &BlazePoseLandmarks) -> Pose {
    let keypoints = std::array::from_fn(|joint| {
        let l = landmarks.landmarks[COCO_FROM_BLAZEPOSE[joint]];
        Keypoint {
            x: l.x,
            y: l.y,
            confidence: l.visibility,
        }
    });
    Pose {
        keypoints,
        score: landmarks.presence,
    }
}

/// The two networks of [`BlazePose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Detector,
    Landmark,
}

pub struct BlazePose {
    detector: Graph,
    landmark: Graph,
    anchors: Vec<(f32, f32)>,
    model_id: String,
    /// Crop for the next frame, from this frame's landmarks; `None` runs the detector.
    tracked: Option<RotatedRect>,
}

impl BlazePose {
    /// Builds both models from the combined safetensors made by `cargo xtask models`.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, PoseError> {
        let file = ModelFile::read(bytes)?;
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| PoseError::Weights(e.to_string()))?;
        let outputs = ["Identity", "Identity_1"];
        Ok(Self {
            detector: Graph::load(&file, &tensors, "detector", &outputs)?,
            landmark: Graph::load(&file, &tensors, "landmark", &outputs)?,
            anchors: detector_anchors(),
            model_id: file.id,
            tracked: None,
        })
    }

    /// Each op's time in one run of `network` on `input` (224×224 for the
    /// detector, 256×256 for the landmark model).
    pub fn profile(&self, network: Network, input: Tensor) -> Result<Vec<LayerTime>, PoseError> {
        let mut times = Vec::new();
        match network {
            Network::Detector => &self.detector,
            Network::Landmark => &self.landmark,
        }
        .run_profiled(input, &mut times)?;
        Ok(times)
    }

    /// Raw detector outputs (`[2254 × 12]` boxes, `[2254]` score logits) for a 224×224 input in -1..1.
    pub fn run_detector(&self, input: Tensor) -> Result<(Vec<f32>, Vec<f32>), PoseError> {
        let outputs = self.detector.run(input)?;
        Ok((to_vec(&outputs[0])?, to_vec(&outputs[1])?))
    }

    /// Raw landmark outputs (195 values in crop pixels, presence) for a 256×256 input in 0..1.
    pub fn run_landmarks(&self, input: Tensor) -> Result<(Vec<f32>, f32), PoseError> {
        let outputs = self.landmark.run(input)?;
        Ok((
            to_vec(&outputs[0])?,
            to_vec(&outputs[1])?.first().copied().unwrap_or(0.0),
        ))
    }

    /// Finds the person in `frame` with the detector: within `hint` if given
    /// (a person small in the frame is too small for the detector's 224 px
    /// input), then in the whole frame.
    pub fn detect(
        &self,
        frame: &Frame,
        hint: Option<Region>,
    ) -> Result<Option<RotatedRect>, PoseError> {
        let (w, h) = (frame.width as f32, frame.height as f32);
        // A square around the whole frame, letterboxed like MediaPipe's detector input.
        let whole = RotatedRect {
            cx: w / 2.0,
            cy: h / 2.0,
            width: w.max(h),
            height: w.max(h),
            rotation: 0.0,
        };
        // A square around the region, never larger than the whole frame's.
        let around_hint = hint.map(|r| {
            let side = (r.width.max(r.height) * 1.5).min(whole.width);
            RotatedRect {
                cx: r.x + r.width / 2.0,
                cy: r.y + r.height / 2.0,
                width: side,
                height: side,
                ..whole
            }
        });
        for window in around_hint.into_iter().chain([whole]) {
            let (boxes, scores) =
                self.run_detector(crop(frame, window, DETECTOR_SIZE, (-1.0, 1.0))?)?;
            if let Some(d) = best_detection(&boxes, &scores, &self.anchors) {
                let to_image = |(x, y): (f32, f32)| window.to_image(x - 0.5, y - 0.5);
                return Ok(Some(RotatedRect::from_alignment(
                    to_image(d.alignment[0]),
                    to_image(d.alignment[1]),
                )));
            }
        }
        Ok(None)
    }

    /// Runs the landmark model on `rect` and projects the landmarks into the frame.
    pub fn landmarks(
        &self,
        frame: &Frame,
        rect: RotatedRect,
    ) -> Result<BlazePoseLandmarks, PoseError> {
        let (raw, presence) = self.run_landmarks(crop(frame, rect, LANDMARK_SIZE, (0.0, 1.0))?)?;
        let size = LANDMARK_SIZE as f32;
        let landmarks = raw
            .chunks_exact(LANDMARK_VALUES)
            .map(|v| {
                let (x, y) = rect.to_image(v[0] / size - 0.5, v[1] / size - 0.5);
                Landmark {
                    x,
                    y,
                    z: v[2] / size * rect.width,
                    visibility: sigmoid(v[3]),
                }
            })
            .collect();
        Ok(BlazePoseLandmarks {
            landmarks,
            presence,
            rect,
        })
    }
}

impl PoseEstimator for BlazePose {
    fn estimate(&mut self, frame: &Frame, hint: Option<Region>) -> Result<Option<Pose>, PoseError> {
        let rect = match self.tracked.take() {
            Some(rect) => rect,
            None => match self.detect(frame, hint)? {
                Some(rect) => rect,
                None => return Ok(None),
            },
        };
        let result = self.landmarks(frame, rect)?;
        if result.presence < MIN_SCORE || result.landmarks.len() < BODY_LANDMARKS + 2 {
            return Ok(None);
        }
        let [center, scale] =
            ALIGNMENT_LANDMARKS.map(|i| (result.landmarks[i].x, result.landmarks[i].y));
        self.tracked = Some(RotatedRect::from_alignment(center, scale));
        Ok(Some(coco_pose(&result)))
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}

#[cfg(test)]
mod tests {
    use super::super::Joint;
    use super::*;

    #[test]
    fn anchors_match_the_detector_output_count() {
        assert_eq!(detector_anchors().len(), 2254);
    }

    #[test]
    fn upright_alignment_gives_no_rotation_and_scaled_square() {
        let rect = RotatedRect::from_alignment((100.0, 200.0), (100.0, 100.0));
        assert!(rect.rotation.abs() < 1e-6);
        assert!((rect.width - 250.0).abs() < 1e-4 && rect.width == rect.height);
        // The top centre of the crop is straight above the centre.
        let (x, y) = rect.to_image(0.0, -0.5);
        assert!((x - 100.0).abs() < 1e-3 && (y - 75.0).abs() < 1e-3);
    }

    #[test]
    fn rotated_alignment_puts_the_scale_point_at_the_crop_top() {
        // The scale point is 50 px from the centre of a 2 × 50 × 1.25 = 125 px crop.
        let rect = RotatedRect::from_alignment((0.0, 0.0), (30.0, -40.0));
        let (x, y) = rect.to_image(0.0, -0.4);
        assert!(
            (x - 30.0).abs() < 1e-3 && (y + 40.0).abs() < 1e-3,
            "({x}, {y})"
        );
    }

    #[test]
    fn weighted_nms_averages_overlapping_detections() {
        let anchors = [(0.5, 0.5), (0.5, 0.5), (0.1, 0.1)];
        let mut boxes = vec![0.0; 36];
        for (i, dx) in [(0, 0.0), (1, 22.4), (2, 0.0)] {
            boxes[i * 12..i * 12 + 4].copy_from_slice(&[dx, 0.0, 44.8, 44.8]);
            boxes[i * 12 + 4] = dx;
        }
        // Equal scores: the merged box is halfway between the first two; the third is too weak.
        let scores = [3.0, 3.0, -3.0];
        let d = best_detection(&boxes, &scores, &anchors).expect("a detection");
        assert!((d.alignment[0].0 - 0.55).abs() < 1e-5, "{:?}", d.alignment);
    }

    #[test]
    fn coco_mapping_picks_wrists_and_ankles() {
        assert_eq!(COCO_FROM_BLAZEPOSE[Joint::LeftWrist as usize], 15);
        assert_eq!(COCO_FROM_BLAZEPOSE[Joint::RightAnkle as usize], 28);
    }
}
