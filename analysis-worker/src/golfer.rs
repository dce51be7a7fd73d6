//! An articulated golfer and club: a small 3D stick model swung through the eight
//! GolfDB key poses and projected orthographically for a face-on or down-the-line
//! camera. `synth` renders it into videos; the event tests use its keypoints.
//!
//! The key poses follow GolfDB's definitions, so the ground truth is exact by
//! construction: toe-up is the club shaft horizontal in the backswing, mid-backswing
//! and mid-downswing the lead arm horizontal, impact the hands back at address,
//! mid-follow-through the shaft horizontal again.

use golftracker_results_db::{EventMark, SwingEvents};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};

use crate::pose::{Joint, Keypoint, Pose};
use crate::swing::{CameraView, PoseSample};

/// Everything that varies between synthetic swings.
#[derive(Debug, Clone)]
pub struct SwingParams {
    pub view: CameraView,
    pub left_handed: bool,
    /// Times (s) of the eight key poses, in swing order.
    pub key_times: [f64; 8],
    /// Arm swing angle (deg) at each key pose: 0 hanging at address, positive up the backswing.
    pub key_arm: [f64; 8],
    /// Wrist cock (deg) at each key pose: the club's angle relative to the arms.
    pub key_cock: [f64; 8],
    /// Shoulder and hip turn at the top (deg).
    pub shoulder_turn_deg: f64,
    pub hip_turn_deg: f64,
    /// Lateral head movement at the top (m, away from the target).
    pub head_sway_m: f64,
    /// Lead elbow bend at the top (deg).
    pub lead_arm_bend_deg: f64,
    /// Pixels per metre and where the feet stand in the image.
    pub scale_px: f64,
    pub feet_x: f64,
    pub feet_y: f64,
}

/// 2D positions of the model at one instant, in image pixels.
#[derive(Debug, Clone)]
pub struct Skeleton {
    /// The 17 COCO keypoints.
    pub joints: [(f64, f64); 17],
    /// Middle of the grip and the club head.
    pub grip: (f64, f64),
    pub club_head: (f64, f64),
    /// Head centre and radius.
    pub head: (f64, f64),
    pub head_radius: f64,
}

#[derive(Debug, Clone, Copy)]
struct V3(f64, f64, f64);

impl V3 {
    fn add(self, o: V3) -> V3 {
        V3(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
    fn scale(self, k: f64) -> V3 {
        V3(self.0 * k, self.1 * k, self.2 * k)
    }
    fn lerp(self, o: V3, k: f64) -> V3 {
        self.add(o.add(self.scale(-1.0)).scale(k))
    }
    fn unit(self) -> V3 {
        self.scale(1.0 / (self.0 * self.0 + self.1 * self.1 + self.2 * self.2).sqrt())
    }
}

pub const ARM_M: f64 = 0.62;
const CLUB_M: f64 = 0.85;
const SPINE_TILT_DEG: f64 = 35.0;

impl SwingParams {
    /// A random swing that fits a `width`×`height` frame and a clip of `seconds`.
    pub fn random(rng: &mut impl Rng, width: u32, height: u32, seconds: f64) -> Self {
        let view = if rng.random_bool(0.5) {
            CameraView::FaceOn
        } else {
            CameraView::DownTheLine
        };
        let backswing = rng.random_range(0.7..1.1);
        let tempo = rng.random_range(2.2..3.8);
        let downswing = backswing / tempo;
        let follow = rng.random_range(0.6..0.9);
        let swing_len = backswing + downswing + follow;
        let latest_start = (seconds - swing_len - 0.5).max(0.35);
        let address = rng
            .random_range(0.3..latest_start.max(0.31))
            .min(latest_start);
        let top = address + backswing;
        let impact = top + downswing;
        let key_times = [
            address,
            address + backswing * rng.random_range(0.3..0.4),
            address + backswing * rng.random_range(0.55..0.65),
            top,
            top + downswing * rng.random_range(0.45..0.6),
            impact,
            impact + rng.random_range(0.1..0.16),
            impact + follow,
        ];
        let toe_up = rng.random_range(52.0..58.0);
        let follow_through: f64 = rng.random_range(-62.0..-58.0);
        let key_arm = [
            0.0,
            toe_up,
            90.0,
            rng.random_range(115.0..135.0),
            90.0,
            0.0,
            follow_through,
            rng.random_range(-150.0..-130.0),
        ];
        let key_cock = [
            0.0,
            90.0 - toe_up,
            rng.random_range(70.0..90.0),
            rng.random_range(90.0..110.0),
            rng.random_range(80.0..100.0),
            0.0,
            -90.0 - follow_through,
            rng.random_range(-70.0..-40.0),
        ];
        // The golfer (about 1.9 m with the club up) fills 45-85 % of the frame height.
        let scale_px = f64::from(height) * rng.random_range(0.45..0.85) / 1.9;
        let feet_y = f64::from(height) * rng.random_range(0.88..0.95);
        let margin = 0.9 * scale_px;
        let feet_x = rng.random_range(margin..(f64::from(width) - margin).max(margin + 1.0));
        SwingParams {
            view,
            left_handed: rng.random_bool(0.2),
            key_times,
            key_arm,
            key_cock,
            shoulder_turn_deg: rng.random_range(70.0..100.0),
            hip_turn_deg: rng.random_range(30.0..55.0),
            head_sway_m: rng.random_range(0.0..0.08),
            lead_arm_bend_deg: rng.random_range(0.0..30.0),
            scale_px,
            feet_x,
            feet_y,
        }
    }

    /// The true events, as frames of a clip at `fps` whose frame `i` is shown at `i / fps`.
    pub fn ground_truth(&self, fps: f64) -> SwingEvents {
        SwingEvents::from_ordered(self.key_times.map(|t| {
            let frame = (t * fps).round();
            EventMark {
                frame: frame as u64,
                time_s: frame / fps,
                confidence: 1.0,
            }
        }))
    }

    /// The model's pose at time `t` (s).
    pub fn skeleton_at(&self, t: f64) -> Skeleton {
        let arm = pchip(&self.key_times, &self.key_arm, t);
        let cock = pchip(&self.key_times, &self.key_cock, t);
        let top_arm = self.key_arm[3];
        // Body turn follows the arms: full turn at the top, turned through after impact.
        let progress = (arm / top_arm).clamp(-1.2, 1.0);
        let backswing_progress = progress.max(0.0);
        let shoulder_turn = (self.shoulder_turn_deg * progress).to_radians();
        let hip_turn = (self.hip_turn_deg * progress).to_radians();

        let tilt = SPINE_TILT_DEG.to_radians();
        let spine = V3(0.0, tilt.cos(), tilt.sin());
        let hips_centre = V3(-self.head_sway_m * 0.3 * backswing_progress, 0.95, -0.05);
        let shoulders_centre = hips_centre.add(spine.scale(0.5));
        let head_shift = V3(-self.head_sway_m * backswing_progress, 0.0, 0.0);
        // Offsets of the lead side: turning moves the lead shoulder down and toward the ball.
        let turned = |angle: f64, half_width: f64| {
            V3(
                angle.cos(),
                -angle.sin() * tilt.sin(),
                angle.sin() * tilt.cos(),
            )
            .scale(half_width)
        };
        let shoulder_offset = turned(shoulder_turn, 0.2);
        let hip_offset = turned(hip_turn, 0.16);
        let lead_shoulder = shoulders_centre.add(shoulder_offset);
        let trail_shoulder = shoulders_centre.add(shoulder_offset.scale(-1.0));
        let lead_hip = hips_centre.add(hip_offset);
        let trail_hip = hips_centre.add(hip_offset.scale(-1.0));

        // The swing plane holds the target line and the line from the shoulders to the ball.
        let ball = V3(0.0, 0.0, 0.75);
        let down_plane = ball.add(shoulders_centre.scale(-1.0)).unit();
        let along = |angle_deg: f64| {
            let a = angle_deg.to_radians();
            V3(-a.sin(), 0.0, 0.0).add(down_plane.scale(a.cos()))
        };
        let grip = shoulders_centre.add(along(arm).scale(ARM_M));
        let club_dir = along(arm + cock);
        let club_head = grip.add(club_dir.scale(CLUB_M));
        let lead_wrist = grip.add(club_dir.scale(-0.03));
        let trail_wrist = grip.add(club_dir.scale(0.04));
        let bend = self.lead_arm_bend_deg.to_radians() * backswing_progress;
        let lead_elbow = lead_shoulder
            .lerp(lead_wrist, 0.5)
            .add(V3(0.0, -0.12 * bend.sin(), 0.0));
        let trail_elbow = trail_shoulder
            .lerp(trail_wrist, 0.5)
            .add(V3(0.0, -0.06, 0.05));

        let lead_knee = V3(0.2, 0.5, 0.08);
        let trail_knee = V3(-0.2, 0.5, 0.08);
        let lead_ankle = V3(0.22, 0.07, 0.0);
        let trail_ankle = V3(-0.22, 0.07, 0.0);
        let head = shoulders_centre.add(spine.scale(0.26)).add(head_shift);
        let face = V3(0.0, -tilt.sin(), tilt.cos()).scale(0.1);
        let nose = head.add(face);
        let lead_eye = head.add(face.scale(0.8)).add(V3(0.035, 0.03, 0.0));
        let trail_eye = head.add(face.scale(0.8)).add(V3(-0.035, 0.03, 0.0));
        let lead_ear = head.add(V3(0.08, 0.0, -0.02));
        let trail_ear = head.add(V3(-0.08, 0.0, -0.02));

        // COCO order with left/right = lead/trail for a right-handed golfer.
        let pair = |lead: V3, trail: V3| {
            if self.left_handed {
                [trail, lead]
            } else {
                [lead, trail]
            }
        };
        let [left_eye, right_eye] = pair(lead_eye, trail_eye);
        let [left_ear, right_ear] = pair(lead_ear, trail_ear);
        let [left_shoulder, right_shoulder] = pair(lead_shoulder, trail_shoulder);
        let [left_elbow, right_elbow] = pair(lead_elbow, trail_elbow);
        let [left_wrist, right_wrist] = pair(lead_wrist, trail_wrist);
        let [left_hip, right_hip] = pair(lead_hip, trail_hip);
        let [left_knee, right_knee] = pair(lead_knee, trail_knee);
        let [left_ankle, right_ankle] = pair(lead_ankle, trail_ankle);
        let joints3 = [
            nose,
            left_eye,
            right_eye,
            left_ear,
            right_ear,
            left_shoulder,
            right_shoulder,
            left_elbow,
            right_elbow,
            left_wrist,
            right_wrist,
            left_hip,
            right_hip,
            left_knee,
            right_knee,
            left_ankle,
            right_ankle,
        ];
        Skeleton {
            joints: joints3.map(|p| self.project(p)),
            grip: self.project(grip),
            club_head: self.project(club_head),
            head: self.project(head),
            head_radius: 0.11 * self.scale_px,
        }
    }

    /// Orthographic projection; a left-handed golfer is the mirror image along the target line.
    fn project(&self, p: V3) -> (f64, f64) {
        let x = if self.left_handed { -p.0 } else { p.0 };
        let horizontal = match self.view {
            CameraView::FaceOn => x,
            // From behind, the golfer faces image right (left for a left-hander).
            CameraView::DownTheLine => {
                if self.left_handed {
                    -(p.2 - 0.3)
                } else {
                    p.2 - 0.3
                }
            }
        };
        (
            self.feet_x + self.scale_px * horizontal,
            self.feet_y - self.scale_px * p.1,
        )
    }
}

impl Skeleton {
    /// The keypoints as a pose with full confidence (the model's ground truth).
    pub fn pose(&self) -> Pose {
        Pose {
            keypoints: self.joints.map(|(x, y)| Keypoint {
                x: x as f32,
                y: y as f32,
                confidence: 1.0,
            }),
            score: 1.0,
        }
    }

    pub fn joint(&self, joint: Joint) -> (f64, f64) {
        self.joints[joint as usize]
    }
}

/// A noisy keypoint track (as a pose model would report it) of random swing
/// `seed`, with its true events: 30 or 60 fps, keypoint jitter, confidences
/// below 1, a few misplaced wrists and a few frames where the person is missed.
pub fn synthetic_track(seed: u64) -> (Vec<PoseSample>, SwingEvents, SwingParams) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fps = if rng.random_bool(0.5) { 30.0 } else { 60.0 };
    let seconds = 4.0;
    let params = SwingParams::random(&mut rng, 1280, 720, seconds);
    let jitter = (0.005 * params.scale_px) as f32;
    let frames = (seconds * fps) as u64;
    let samples = (0..frames)
        .map(|frame| {
            let time_s = frame as f64 / fps;
            let mut pose = params.skeleton_at(time_s).pose();
            for k in &mut pose.keypoints {
                k.x += gaussian(&mut rng) * jitter;
                k.y += gaussian(&mut rng) * jitter;
                k.confidence = rng.random_range(0.7..1.0);
            }
            // Now and then a wrist the model cannot see, misplaced with a low confidence.
            if rng.random_bool(0.05) {
                let wrist = if rng.random_bool(0.5) {
                    Joint::LeftWrist
                } else {
                    Joint::RightWrist
                };
                let k = &mut pose.keypoints[wrist as usize];
                let reach = (ARM_M * params.scale_px) as f32;
                k.x += rng.random_range(-0.5..0.5) * reach;
                k.y += rng.random_range(-0.5..0.5) * reach;
                k.confidence = rng.random_range(0.05..0.3);
            }
            let pose = (!rng.random_bool(0.03)).then_some(pose);
            PoseSample {
                frame,
                time_s,
                pose,
                motion: None,
            }
        })
        .collect();
    (samples, params.ground_truth(fps), params)
}

/// Standard normal sample (Box–Muller).
fn gaussian(rng: &mut impl Rng) -> f32 {
    let (u, v): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// Monotone piecewise-cubic (Fritsch–Carlson) interpolation with zero slope at both
/// ends, held constant outside the knots: motion starts and ends at rest, and the
/// curve never overshoots a key pose.
fn pchip(knots: &[f64; 8], values: &[f64; 8], t: f64) -> f64 {
    if t <= knots[0] {
        return values[0];
    }
    if t >= knots[7] {
        return values[7];
    }
    let secant = |i: usize| (values[i + 1] - values[i]) / (knots[i + 1] - knots[i]);
    let slope = |i: usize| {
        if i == 0 || i == 7 {
            return 0.0;
        }
        let (a, b) = (secant(i - 1), secant(i));
        if a * b <= 0.0 {
            0.0
        } else {
            let (ha, hb) = (knots[i] - knots[i - 1], knots[i + 1] - knots[i]);
            let (wa, wb) = (2.0 * hb + ha, hb + 2.0 * ha);
            (wa + wb) / (wa / a + wb / b)
        }
    };
    let i = knots.windows(2).position(|w| t < w[1]).unwrap_or(6);
    let h = knots[i + 1] - knots[i];
    let s = (t - knots[i]) / h;
    let (h00, h10) = (
        2.0 * s.powi(3) - 3.0 * s * s + 1.0,
        s.powi(3) - 2.0 * s * s + s,
    );
    let (h01, h11) = (-2.0 * s.powi(3) + 3.0 * s * s, s.powi(3) - s * s);
    h00 * values[i] + h10 * h * slope(i) + h01 * values[i + 1] + h11 * h * slope(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pchip_hits_the_key_poses_and_holds_outside() {
        let knots = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let values = [0.0, 50.0, 90.0, 120.0, 90.0, 0.0, -60.0, -140.0];
        for (k, v) in knots.iter().zip(values) {
            assert!((pchip(&knots, &values, *k) - v).abs() < 1e-9);
        }
        assert_eq!(pchip(&knots, &values, -1.0), 0.0);
        assert_eq!(pchip(&knots, &values, 9.0), -140.0);
        // No overshoot past the top.
        assert!((0..700).all(|i| pchip(&knots, &values, f64::from(i) / 100.0) <= 120.0 + 1e-9));
    }

    #[test]
    fn key_poses_match_the_golfdb_definitions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let params = SwingParams::random(&mut rng, 1280, 720, 5.0);
        let at = |i: usize| params.skeleton_at(params.key_times[i]);
        let address = at(0);
        let impact = at(5);
        let dist =
            |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
        // Impact: the hands are back where they were at address.
        assert!(dist(address.grip, impact.grip) < 1e-6);
        // Top: the hands are highest.
        let top = at(3);
        assert!(top.grip.1 < at(2).grip.1 && top.grip.1 < at(4).grip.1);
        // Toe-up and mid-follow-through: the shaft is horizontal in 3D, so its
        // image height is the same at both ends (both views are orthographic side views).
        for i in [1, 6] {
            let s = at(i);
            assert!(
                (s.grip.1 - s.club_head.1).abs() < 1e-6,
                "event {i}: shaft not horizontal"
            );
        }
    }
}
