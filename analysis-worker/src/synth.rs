//! Deterministic synthetic swing clips: the articulated golfer of `golfer`,
//! drawn with filled, shaded limbs over a random outdoor background, with sensor
//! noise and camera shake, encoded as H.264 MP4 through FFmpeg, next to a
//! ground-truth JSON with the true events.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use rand::rngs::{ChaCha8Rng, SmallRng};
use rand::{Rng, RngExt, SeedableRng};
use serde::Serialize;
use tiny_skia::{
    Color, FillRule, GradientStop, LinearGradient, Paint, PathBuilder, Pixmap, Point, SpreadMode,
    Transform,
};

use crate::Error;
use crate::golfer::{Skeleton, SwingParams};
use crate::pose::Joint;
use crate::swing::CameraView;
use golftracker_results_db::SwingEvents;

/// The clip format asked for on the command line.
#[derive(Debug, Clone, Copy)]
pub struct ClipFormat {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f64,
}

/// The ground truth written next to each clip.
#[derive(Debug, Serialize)]
pub struct GroundTruth {
    pub seed: u64,
    pub fps: f64,
    pub frames: u64,
    pub width: u32,
    pub height: u32,
    pub view: &'static str,
    pub left_handed: bool,
    pub tempo_ratio: f64,
    pub events: SwingEvents,
}

/// Colours and camera behaviour of one clip.
struct Look {
    sky: [Color; 2],
    grass: [Color; 2],
    horizon: f32,
    trees: Vec<(f32, f32, f32, Color)>,
    skin: Color,
    shirt: Color,
    trousers: Color,
    hair: Color,
    shoes: Color,
    noise: f32,
    shake_px: f32,
    shake_phase: f32,
}

fn rgb(r: u8, g: u8, b: u8) -> Color {
    Color::from_rgba8(r, g, b, 255)
}

fn random_colour(rng: &mut impl Rng, lo: u8, hi: u8) -> Color {
    rgb(
        rng.random_range(lo..hi),
        rng.random_range(lo..hi),
        rng.random_range(lo..hi),
    )
}

/// Least RGB distance (0..=441) of the clothes from the background colours.
const MIN_CLOTHES_CONTRAST: f32 = 90.0;

/// Euclidean distance of two colours in 8-bit RGB units.
fn colour_distance(a: Color, b: Color) -> f32 {
    255.0
        * ((a.red() - b.red()).powi(2)
            + (a.green() - b.green()).powi(2)
            + (a.blue() - b.blue()).powi(2))
        .sqrt()
}

fn shade(c: Color, k: f32) -> Color {
    Color::from_rgba(
        (c.red() * k).clamp(0.0, 1.0),
        (c.green() * k).clamp(0.0, 1.0),
        (c.blue() * k).clamp(0.0, 1.0),
        1.0,
    )
    .expect("valid colour")
}

impl Look {
    fn random(rng: &mut impl Rng, width: u32) -> Self {
        const SKINS: [(u8, u8, u8); 6] = [
            (255, 219, 172),
            (241, 194, 125),
            (224, 172, 105),
            (198, 134, 66),
            (141, 85, 36),
            (92, 58, 33),
        ];
        let skin = SKINS[rng.random_range(0..SKINS.len())];
        let trees = (0..rng.random_range(0..6))
            .map(|_| {
                (
                    rng.random_range(0.0..width as f32),
                    rng.random_range(20.0..0.12 * width as f32),
                    rng.random_range(0.3..0.9),
                    rgb(
                        rng.random_range(20..60),
                        rng.random_range(70..120),
                        rng.random_range(20..60),
                    ),
                )
            })
            .collect();
        let sky = [
            rgb(rng.random_range(90..160), rng.random_range(150..200), 235),
            random_colour(rng, 200, 250),
        ];
        let grass = [
            rgb(
                rng.random_range(40..90),
                rng.random_range(110..170),
                rng.random_range(30..70),
            ),
            rgb(
                rng.random_range(30..70),
                rng.random_range(90..140),
                rng.random_range(20..50),
            ),
        ];
        // Clothes stand out from the grass and sky, as on a real course: a
        // golfer in grass-green trousers is invisible to a pose model too.
        let background: Vec<Color> = sky.iter().chain(&grass).copied().collect();
        let mut clothes = |lo: u8, hi: u8| loop {
            let colour = random_colour(rng, lo, hi);
            if background
                .iter()
                .all(|b| colour_distance(colour, *b) >= MIN_CLOTHES_CONTRAST)
            {
                break colour;
            }
        };
        let (shirt, trousers) = (clothes(20, 240), clothes(20, 160));
        Look {
            sky,
            grass,
            horizon: rng.random_range(0.35..0.6),
            trees,
            skin: rgb(skin.0, skin.1, skin.2),
            shirt,
            trousers,
            hair: rgb(
                rng.random_range(10..90),
                rng.random_range(10..60),
                rng.random_range(5..40),
            ),
            shoes: random_colour(rng, 10, 250),
            noise: rng.random_range(0.0..6.0),
            shake_px: rng.random_range(0.0..3.0),
            shake_phase: rng.random_range(0.0..std::f32::consts::TAU),
        }
    }
}

fn paint(colour: Color) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(colour);
    paint.anti_alias = true;
    paint
}

/// A point or offset in image pixels.
type Px = (f64, f64);

fn add(a: Px, b: Px) -> Px {
    (a.0 + b.0, a.1 + b.1)
}

fn sub(a: Px, b: Px) -> Px {
    (a.0 - b.0, a.1 - b.1)
}

fn mul(a: Px, k: f64) -> Px {
    (a.0 * k, a.1 * k)
}

fn mid(a: Px, b: Px) -> Px {
    mul(add(a, b), 0.5)
}

/// `a` scaled to unit length, or `fallback` where it has none.
fn unit(a: Px, fallback: Px) -> Px {
    let norm = a.0.hypot(a.1);
    if norm < 1e-9 {
        fallback
    } else {
        mul(a, 1.0 / norm)
    }
}

/// `a` turned a quarter turn.
fn perp(a: Px) -> Px {
    (-a.1, a.0)
}

/// The convex hull (Andrew's monotone chain) of discs `(centre, radius)`: the
/// outline of a limb tapering from one joint to the next, or of a torso
/// around its shoulders and hips.
fn hull_of_discs(discs: &[(Px, f64)]) -> Vec<Px> {
    const STEPS: usize = 24;
    let mut points: Vec<Px> = discs
        .iter()
        .flat_map(|&(centre, radius)| {
            (0..STEPS).map(move |k| {
                let a = std::f64::consts::TAU * k as f64 / STEPS as f64;
                add(centre, (radius * a.cos(), radius * a.sin()))
            })
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let cross = |o: Px, a: Px, b: Px| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<Px> = Vec::with_capacity(points.len());
    for pass in [
        &points[..],
        &points.iter().rev().copied().collect::<Vec<_>>()[..],
    ] {
        let floor = hull.len();
        for &p in pass {
            while hull.len() >= floor + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        // The last point of each chain starts the other.
        hull.pop();
    }
    hull
}

fn fill_hull(pixmap: &mut Pixmap, discs: &[(Px, f64)], paint: &Paint, t: Transform) {
    let outline = hull_of_discs(discs);
    let mut pb = PathBuilder::new();
    pb.move_to(outline[0].0 as f32, outline[0].1 as f32);
    for p in &outline[1..] {
        pb.line_to(p.0 as f32, p.1 as f32);
    }
    pb.close();
    if let Some(path) = pb.finish() {
        pixmap.fill_path(&path, paint, FillRule::Winding, t, None);
    }
}

/// Paint for a rounded body part along `from`→`to`, `width` across, lit from
/// the upper left: lighter on that side of its axis, in shadow on the other.
fn lit(colour: Color, from: Px, to: Px, width: f64) -> Paint<'static> {
    let mut across = perp(unit(sub(to, from), (0.0, 1.0)));
    if across.0 + across.1 > 0.0 {
        across = mul(across, -1.0);
    }
    let centre = mid(from, to);
    let (light, dark) = (
        add(centre, mul(across, width / 2.0)),
        sub(centre, mul(across, width / 2.0)),
    );
    let shader = LinearGradient::new(
        Point::from_xy(light.0 as f32, light.1 as f32),
        Point::from_xy(dark.0 as f32, dark.1 as f32),
        vec![
            GradientStop::new(0.0, shade(colour, 1.15)),
            GradientStop::new(0.4, colour),
            GradientStop::new(1.0, shade(colour, 0.65)),
        ],
        SpreadMode::Pad,
        Transform::identity(),
    );
    match shader {
        Some(shader) => Paint {
            shader,
            anti_alias: true,
            ..Paint::default()
        },
        None => paint(colour),
    }
}

/// A limb from `a` to `b`, tapering from `wa` to `wb` wide, shaded round.
fn limb(pixmap: &mut Pixmap, (a, wa): (Px, f64), (b, wb): (Px, f64), colour: Color, t: Transform) {
    let paint = lit(colour, a, b, wa.max(wb));
    fill_hull(pixmap, &[(a, wa / 2.0), (b, wb / 2.0)], &paint, t);
}

fn disc(pixmap: &mut Pixmap, centre: Px, radius: f64, colour: Color, t: Transform) {
    if let Some(path) = PathBuilder::from_circle(centre.0 as f32, centre.1 as f32, radius as f32) {
        pixmap.fill_path(&path, &paint(colour), FillRule::Winding, t, None);
    }
}

fn draw_background(pixmap: &mut Pixmap, look: &Look, t: Transform) {
    let (w, h) = (pixmap.width() as f32, pixmap.height() as f32);
    let horizon = look.horizon * h;
    let gradient = |top: f32, bottom: f32, colours: [Color; 2]| {
        LinearGradient::new(
            Point::from_xy(0.0, top),
            Point::from_xy(0.0, bottom),
            vec![
                GradientStop::new(0.0, colours[0]),
                GradientStop::new(1.0, colours[1]),
            ],
            SpreadMode::Pad,
            Transform::identity(),
        )
    };
    // Oversized so camera shake never shows an edge.
    let margin = 20.0;
    for (top, bottom, colours) in [
        (-margin, horizon, look.sky),
        (horizon, h + margin, look.grass),
    ] {
        let Some(shader) = gradient(top, bottom, colours) else {
            continue;
        };
        let Some(rect) = tiny_skia::Rect::from_ltrb(-margin, top, w + margin, bottom) else {
            continue;
        };
        let paint = Paint {
            shader,
            anti_alias: false,
            ..Paint::default()
        };
        pixmap.fill_rect(rect, &paint, t, None);
    }
    for &(x, radius, height, colour) in &look.trees {
        let base = horizon + 2.0;
        let crown = (f64::from(x), f64::from(base - radius * (1.0 + height)));
        let trunk = f64::from(radius) * 0.3;
        limb(
            pixmap,
            ((f64::from(x), f64::from(base)), trunk),
            (crown, trunk),
            rgb(90, 60, 30),
            t,
        );
        disc(pixmap, crown, f64::from(radius), colour, t);
    }
}

/// The joints of one side of the body.
struct Side {
    shoulder: Joint,
    elbow: Joint,
    wrist: Joint,
    hip: Joint,
    knee: Joint,
    ankle: Joint,
}

const LEFT: Side = Side {
    shoulder: Joint::LeftShoulder,
    elbow: Joint::LeftElbow,
    wrist: Joint::LeftWrist,
    hip: Joint::LeftHip,
    knee: Joint::LeftKnee,
    ankle: Joint::LeftAnkle,
};

const RIGHT: Side = Side {
    shoulder: Joint::RightShoulder,
    elbow: Joint::RightElbow,
    wrist: Joint::RightWrist,
    hip: Joint::RightHip,
    knee: Joint::RightKnee,
    ankle: Joint::RightAnkle,
};

/// One pose of the golfer, ready to draw: the skeleton with the sizes of a
/// real adult (metres times the clip's pixels per metre).
struct Figure<'a> {
    s: &'a Skeleton,
    look: &'a Look,
    /// Pixels per metre.
    m: f64,
    /// Where the golfer faces along the image's x axis: ±1 down the line, 0 face-on.
    facing: f64,
    t: Transform,
}

impl Figure<'_> {
    fn j(&self, joint: Joint) -> Px {
        self.s.joint(joint)
    }

    fn leg(&self, pixmap: &mut Pixmap, side: &Side, k: f32) {
        let (hip, knee, ankle) = (self.j(side.hip), self.j(side.knee), self.j(side.ankle));
        let trousers = shade(self.look.trousers, k);
        limb(
            pixmap,
            (hip, 0.19 * self.m),
            (knee, 0.13 * self.m),
            trousers,
            self.t,
        );
        limb(
            pixmap,
            (knee, 0.13 * self.m),
            (ankle, 0.11 * self.m),
            trousers,
            self.t,
        );
        // A shoe: heel under the ankle, toe ahead of it, splayed out a little face-on.
        let outward = (ankle.0 - mid(self.j(LEFT.hip), self.j(RIGHT.hip)).0).signum();
        let toe_x = 0.17 * self.facing + 0.04 * (1.0 - self.facing.abs()) * outward;
        let heel = add(ankle, (-0.04 * self.facing * self.m, 0.035 * self.m));
        let toe = add(ankle, (toe_x * self.m, 0.045 * self.m));
        limb(
            pixmap,
            (heel, 0.09 * self.m),
            (toe, 0.075 * self.m),
            shade(self.look.shoes, k),
            self.t,
        );
    }

    fn torso(&self, pixmap: &mut Pixmap) {
        use Joint::*;
        let m = self.m;
        let shoulders = mid(self.j(LeftShoulder), self.j(RightShoulder));
        let hips = mid(self.j(LeftHip), self.j(RightHip));
        let (lh, rh) = (self.j(LeftHip), self.j(RightHip));
        let up = unit(sub(shoulders, hips), (0.0, -1.0));
        let across = perp(up);
        // The shirt: a chest and a waist (as deep as a real torso seen from
        // the side) between the shoulders and hips (as wide as one seen from
        // the front), tucked into the trousers' waistband.
        let chest = add(shoulders, mul(sub(hips, shoulders), 0.3));
        let waist = add(shoulders, mul(sub(hips, shoulders), 0.8));
        let shirt = lit(self.look.shirt, shoulders, hips, 0.42 * m);
        fill_hull(
            pixmap,
            &[
                (self.j(LeftShoulder), 0.075 * m),
                (self.j(RightShoulder), 0.075 * m),
                (chest, 0.13 * m),
                (waist, 0.12 * m),
                (lh, 0.09 * m),
                (rh, 0.09 * m),
            ],
            &shirt,
            self.t,
        );
        let pelvis = lit(self.look.trousers, hips, add(hips, (0.0, 1.0)), 0.36 * m);
        let raised = |p: Px, k: f64| add(p, mul(up, k * m));
        fill_hull(
            pixmap,
            &[
                (raised(lh, 0.02), 0.1 * m),
                (raised(rh, 0.02), 0.1 * m),
                (raised(hips, -0.04), 0.12 * m),
            ],
            &pelvis,
            self.t,
        );
        let belt = |p: Px| (raised(p, 0.09), 0.025 * m);
        fill_hull(
            pixmap,
            &[
                belt(lh),
                belt(rh),
                belt(add(hips, mul(across, 0.08 * m))),
                belt(sub(hips, mul(across, 0.08 * m))),
            ],
            &paint(shade(self.look.trousers, 0.45)),
            self.t,
        );
    }

    /// Neck and head with a face: skull in hair, face and jaw in skin, ears,
    /// eyes, brows, nose and mouth at the model's face keypoints.
    fn head(&self, pixmap: &mut Pixmap) {
        use Joint::*;
        let (m, r, t) = (self.m, self.s.head_radius, self.t);
        let (head, nose) = (self.s.head, self.j(Nose));
        let shoulders = mid(self.j(LeftShoulder), self.j(RightShoulder));
        let up = unit(sub(head, shoulders), (0.0, -1.0));
        let face = sub(nose, head);
        let at = |k_up: f64, k_face: f64| add(head, add(mul(up, k_up * r), mul(face, k_face)));
        let skin = self.look.skin;
        limb(
            pixmap,
            (add(shoulders, mul(up, 0.02 * m)), 0.13 * m),
            (at(-0.5, 0.2), 0.11 * m),
            shade(skin, 0.9),
            t,
        );
        // Collar.
        limb(
            pixmap,
            (sub(shoulders, mul(up, 0.01 * m)), 0.16 * m),
            (add(shoulders, mul(up, 0.03 * m)), 0.14 * m),
            shade(self.look.shirt, 1.1),
            t,
        );
        // Hair on the skull behind the face only: with a hairline over the
        // forehead BlazePose took a face-on golfer for one seen from behind.
        disc(pixmap, at(0.1, -0.3), 0.97 * r, self.look.hair, t);
        let face_paint = lit(skin, at(0.3, 0.3), at(-0.5, 0.5), 1.6 * r);
        fill_hull(
            pixmap,
            &[(at(0.15, 0.25), 0.8 * r), (at(-0.45, 0.45), 0.55 * r)],
            &face_paint,
            t,
        );
        for ear in [LeftEar, RightEar] {
            disc(pixmap, self.j(ear), 0.022 * m, shade(skin, 0.85), t);
        }
        let eyes = mid(self.j(LeftEye), self.j(RightEye));
        let dir = unit(face, (0.0, 1.0));
        limb(
            pixmap,
            (sub(eyes, mul(up, 0.005 * m)), 0.02 * m),
            (add(nose, mul(dir, 0.012 * m)), 0.024 * m),
            shade(skin, 0.9),
            t,
        );
        let sideways = mul(perp(up), 1.0 - 0.6 * self.facing.abs());
        let mouth = add(nose, mul(sub(nose, eyes), 0.8));
        limb(
            pixmap,
            (add(mouth, mul(sideways, 0.02 * m)), 0.012 * m),
            (sub(mouth, mul(sideways, 0.02 * m)), 0.012 * m),
            rgb(140, 60, 60),
            t,
        );
        for eye in [LeftEye, RightEye] {
            let eye = self.j(eye);
            disc(pixmap, eye, 0.014 * m, rgb(240, 240, 235), t);
            disc(
                pixmap,
                add(eye, mul(dir, 0.004 * m)),
                0.008 * m,
                rgb(50, 35, 25),
                t,
            );
            let brow = add(eye, mul(up, 0.022 * m));
            limb(
                pixmap,
                (add(brow, mul(sideways, 0.013 * m)), 0.008 * m),
                (sub(brow, mul(sideways, 0.013 * m)), 0.008 * m),
                self.look.hair,
                t,
            );
        }
    }

    /// Upper arm in a short sleeve, forearm and hand round the grip.
    fn arm(&self, pixmap: &mut Pixmap, side: &Side, k: f32) {
        let m = self.m;
        let (shoulder, elbow, wrist) = (
            self.j(side.shoulder),
            self.j(side.elbow),
            self.j(side.wrist),
        );
        let skin = shade(self.look.skin, k);
        limb(pixmap, (shoulder, 0.1 * m), (elbow, 0.08 * m), skin, self.t);
        limb(pixmap, (elbow, 0.08 * m), (wrist, 0.06 * m), skin, self.t);
        let sleeve_end = add(shoulder, mul(sub(elbow, shoulder), 0.55));
        limb(
            pixmap,
            (shoulder, 0.13 * m),
            (sleeve_end, 0.11 * m),
            shade(self.look.shirt, k),
            self.t,
        );
        let down_club = unit(sub(self.s.club_head, self.s.grip), (0.0, 1.0));
        limb(
            pixmap,
            (wrist, 0.065 * m),
            (add(wrist, mul(down_club, 0.06 * m)), 0.075 * m),
            skin,
            self.t,
        );
    }

    fn club(&self, pixmap: &mut Pixmap) {
        let m = self.m;
        let (grip, head) = (self.s.grip, self.s.club_head);
        let down_club = unit(sub(head, grip), (0.0, 1.0));
        let butt = sub(grip, mul(down_club, 0.12 * m));
        limb(
            pixmap,
            (butt, 0.018 * m),
            (head, 0.012 * m),
            rgb(170, 170, 175),
            self.t,
        );
        limb(
            pixmap,
            (butt, 0.028 * m),
            (add(grip, mul(down_club, 0.12 * m)), 0.022 * m),
            rgb(30, 30, 30),
            self.t,
        );
        disc(pixmap, head, 0.045 * m, rgb(40, 40, 45), self.t);
    }

    /// Far side first, shaded darker, so the body reads as 3D: down the line
    /// the lead side is the far one, face-on the trail arm folds behind.
    fn draw(&self, pixmap: &mut Pixmap, lead: &Side, trail: &Side) {
        let (far, near) = if self.facing == 0.0 {
            (trail, lead)
        } else {
            (lead, trail)
        };
        let far_shade = if self.facing == 0.0 { 0.9 } else { 0.75 };
        self.leg(pixmap, far, far_shade);
        self.leg(pixmap, near, 1.0);
        self.torso(pixmap);
        self.head(pixmap);
        self.arm(pixmap, far, far_shade);
        self.club(pixmap);
        self.arm(pixmap, near, 1.0);
    }
}

/// Draws the golfer of `params` at the pose `s`.
fn draw_golfer(pixmap: &mut Pixmap, params: &SwingParams, s: &Skeleton, look: &Look, t: Transform) {
    let (lead, trail) = if params.left_handed {
        (&RIGHT, &LEFT)
    } else {
        (&LEFT, &RIGHT)
    };
    // Down the line a right-hander faces image right (see `SwingParams::project`).
    let facing = match (params.view, params.left_handed) {
        (CameraView::FaceOn, _) => 0.0,
        (CameraView::DownTheLine, false) => 1.0,
        (CameraView::DownTheLine, true) => -1.0,
    };
    let figure = Figure {
        s,
        look,
        m: params.scale_px,
        facing,
        t,
    };
    figure.draw(pixmap, lead, trail);
}

/// Renders frame `i` of a clip into `pixmap`.
fn render(
    pixmap: &mut Pixmap,
    params: &SwingParams,
    look: &Look,
    fps: f64,
    i: u64,
    noise: &mut SmallRng,
) {
    let time = i as f64 / fps;
    let wobble = |f: f32| (look.shake_phase + f * time as f32).sin() * look.shake_px;
    let t = Transform::from_translate(wobble(7.0) + wobble(13.0) * 0.5, wobble(9.0));
    pixmap.fill(Color::BLACK);
    draw_background(pixmap, look, t);
    draw_golfer(pixmap, params, &params.skeleton_at(time), look, t);
    if look.noise > 0.0 {
        for px in pixmap.data_mut().chunks_exact_mut(4) {
            let n = (noise.random::<f32>() - 0.5) * 2.0 * look.noise;
            for c in &mut px[..3] {
                *c = (f32::from(*c) + n).clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// The swing and look of the clip of `clip_seed`.
fn clip(clip_seed: u64, format: ClipFormat) -> (SwingParams, Look) {
    let mut rng = ChaCha8Rng::seed_from_u64(clip_seed);
    let params = SwingParams::random(&mut rng, format.width, format.height, format.seconds);
    let look = Look::random(&mut rng, format.width);
    (params, look)
}

/// The swing drawn in the clip of `clip_seed` (its ground truth's `seed`):
/// where the pose model should find the golfer's joints.
pub fn drawn_swing(clip_seed: u64, format: ClipFormat) -> SwingParams {
    clip(clip_seed, format).0
}

/// Writes `count` clips and their ground truth under `out`; returns the clip paths.
pub fn write_clips(
    out: &Path,
    seed: u64,
    count: u32,
    format: ClipFormat,
) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for k in 0..u64::from(count) {
        let clip_seed = seed.wrapping_mul(1_000_003).wrapping_add(k);
        let (params, look) = clip(clip_seed, format);
        let path = out.join(format!("swing-{seed}-{k}.mp4"));
        let fps = f64::from(format.fps);
        let frames = (format.seconds * fps).round() as u64;
        let mut noise = SmallRng::seed_from_u64(clip_seed);
        let mut pixmap = Pixmap::new(format.width, format.height)
            .ok_or_else(|| Error::Render("invalid frame size".into()))?;
        encode_h264(&path, format, frames, |i, rgba| {
            render(&mut pixmap, &params, &look, fps, i, &mut noise);
            rgba.copy_from_slice(pixmap.data());
        })?;
        let truth = GroundTruth {
            seed: clip_seed,
            fps,
            frames,
            width: format.width,
            height: format.height,
            view: params.view.as_str(),
            left_handed: params.left_handed,
            tempo_ratio: (params.key_times[3] - params.key_times[0])
                / (params.key_times[5] - params.key_times[3]),
            events: params.ground_truth(fps),
        };
        std::fs::write(
            path.with_extension("json"),
            serde_json::to_vec_pretty(&truth)?,
        )?;
        eprintln!("synth: wrote {}", path.display());
        written.push(path);
    }
    Ok(written)
}

fn encode_error(e: ffmpeg::Error) -> Error {
    Error::Encode(e.to_string())
}

/// Encodes `frames` RGBA frames produced by `draw(index, buffer)` as H.264 (libx264) in MP4.
pub fn encode_h264(
    path: &Path,
    format: ClipFormat,
    frames: u64,
    mut draw: impl FnMut(u64, &mut [u8]),
) -> Result<(), Error> {
    ffmpeg::init().map_err(encode_error)?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    let (w, h) = (format.width, format.height);
    if w % 2 != 0 || h % 2 != 0 {
        return Err(Error::Encode(format!(
            "{w}x{h}: H.264 4:2:0 needs even sizes"
        )));
    }
    let mut octx = ffmpeg::format::output(path).map_err(encode_error)?;
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::H264)
        .ok_or_else(|| Error::Encode("no H.264 encoder in this FFmpeg (libx264)".into()))?;
    let global_header = octx
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    let time_base = ffmpeg::Rational(1, format.fps as i32);
    let mut encoder = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(encode_error)?;
    encoder.set_width(w);
    encoder.set_height(h);
    encoder.set_format(Pixel::YUV420P);
    encoder.set_time_base(time_base);
    encoder.set_frame_rate(Some(ffmpeg::Rational(format.fps as i32, 1)));
    if global_header {
        encoder.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
    }
    let mut options = ffmpeg::Dictionary::new();
    options.set("preset", "veryfast");
    options.set("crf", "20");
    let mut encoder = encoder.open_with(options).map_err(encode_error)?;
    octx.add_stream(codec)
        .map_err(encode_error)?
        .set_parameters(&encoder);
    octx.write_header().map_err(encode_error)?;
    let stream_time_base = octx.stream(0).expect("added above").time_base();

    let mut scaler = scaling::Context::get(
        Pixel::RGBA,
        w,
        h,
        Pixel::YUV420P,
        w,
        h,
        scaling::Flags::BILINEAR,
    )
    .map_err(encode_error)?;
    let mut rgba = ffmpeg::frame::Video::new(Pixel::RGBA, w, h);
    let mut yuv = ffmpeg::frame::Video::empty();
    let mut buffer = vec![0u8; (w * h * 4) as usize];
    let mut packet = ffmpeg::Packet::empty();
    let mut write_packets = |encoder: &mut ffmpeg::encoder::Video,
                             octx: &mut ffmpeg::format::context::Output|
     -> Result<(), Error> {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(time_base, stream_time_base);
            packet.write_interleaved(octx).map_err(encode_error)?;
        }
        Ok(())
    };
    for i in 0..frames {
        draw(i, &mut buffer);
        let stride = rgba.stride(0);
        let row = (w * 4) as usize;
        let data = rgba.data_mut(0);
        for y in 0..h as usize {
            data[y * stride..y * stride + row].copy_from_slice(&buffer[y * row..(y + 1) * row]);
        }
        scaler.run(&rgba, &mut yuv).map_err(encode_error)?;
        yuv.set_pts(Some(i as i64));
        encoder.send_frame(&yuv).map_err(encode_error)?;
        write_packets(&mut encoder, &mut octx)?;
    }
    encoder.send_eof().map_err(encode_error)?;
    write_packets(&mut encoder, &mut octx)?;
    octx.write_trailer().map_err(encode_error)?;
    Ok(())
}
