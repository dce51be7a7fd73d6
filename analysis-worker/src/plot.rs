//! The report image: the eight event keyframes with the skeleton drawn, and the
//! hand height and hand speed curves with the events marked, in one PNG.
//! Each event has one colour, shared by its keyframe border and its curve marker.

use tiny_skia::{
    Color, IntSize, LineCap, Paint, PathBuilder, Pixmap, PixmapPaint, Stroke, Transform,
};

use crate::Error;
use crate::frame::Frame;
use crate::pose::{Joint, Pose};
use crate::swing::PoseSample;
use golftracker_results_db::Report;

/// Longest side of a stored keyframe thumbnail.
pub const THUMB_SIDE: u32 = 256;

/// A small copy of an analysed frame, kept for the keyframes.
pub struct Thumbnail {
    pub frame: u64,
    pub width: u32,
    pub height: u32,
    /// Ratio thumbnail pixels / analysed frame pixels.
    pub scale: f32,
    pub rgb: Vec<u8>,
}

impl Thumbnail {
    /// Nearest-neighbour downscale of `frame` to at most [`THUMB_SIDE`].
    pub fn of(frame: &Frame) -> Self {
        let scale = (THUMB_SIDE as f32 / frame.width.max(frame.height) as f32).min(1.0);
        let (w, h) = (
            ((frame.width as f32 * scale) as u32).max(1),
            ((frame.height as f32 * scale) as u32).max(1),
        );
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            let sy = ((y as f32 + 0.5) / scale) as usize;
            let row = sy.min(frame.height as usize - 1) * frame.width as usize;
            for x in 0..w {
                let sx = (((x as f32 + 0.5) / scale) as usize).min(frame.width as usize - 1);
                rgb.extend_from_slice(&frame.rgb[3 * (row + sx)..3 * (row + sx) + 3]);
            }
        }
        Thumbnail {
            frame: frame.index as u64,
            width: w,
            height: h,
            scale,
            rgb,
        }
    }
}

const EVENT_COLOURS: [(u8, u8, u8); 8] = [
    (230, 25, 75),
    (245, 130, 48),
    (255, 225, 25),
    (60, 180, 75),
    (70, 240, 240),
    (0, 130, 200),
    (145, 30, 180),
    (240, 50, 230),
];

/// COCO skeleton edges.
const BONES: [(Joint, Joint); 14] = [
    (Joint::LeftShoulder, Joint::RightShoulder),
    (Joint::LeftShoulder, Joint::LeftElbow),
    (Joint::LeftElbow, Joint::LeftWrist),
    (Joint::RightShoulder, Joint::RightElbow),
    (Joint::RightElbow, Joint::RightWrist),
    (Joint::LeftShoulder, Joint::LeftHip),
    (Joint::RightShoulder, Joint::RightHip),
    (Joint::LeftHip, Joint::RightHip),
    (Joint::LeftHip, Joint::LeftKnee),
    (Joint::LeftKnee, Joint::LeftAnkle),
    (Joint::RightHip, Joint::RightKnee),
    (Joint::RightKnee, Joint::RightAnkle),
    (Joint::Nose, Joint::LeftShoulder),
    (Joint::Nose, Joint::RightShoulder),
];

fn colour(c: (u8, u8, u8)) -> Color {
    Color::from_rgba8(c.0, c.1, c.2, 255)
}

fn line(pixmap: &mut Pixmap, points: &[(f32, f32)], width: f32, c: Color) {
    let mut pb = PathBuilder::new();
    pb.move_to(points[0].0, points[0].1);
    for p in &points[1..] {
        pb.line_to(p.0, p.1);
    }
    let Some(path) = pb.finish() else { return };
    let mut paint = Paint::default();
    paint.set_color(c);
    paint.anti_alias = true;
    let stroke = Stroke {
        width,
        line_cap: LineCap::Round,
        ..Stroke::default()
    };
    pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
}

fn rect(pixmap: &mut Pixmap, x: f32, y: f32, w: f32, h: f32, c: Color) {
    if let Some(r) = tiny_skia::Rect::from_xywh(x, y, w, h) {
        let mut paint = Paint::default();
        paint.set_color(c);
        pixmap.fill_rect(r, &paint, Transform::identity(), None);
    }
}

fn thumbnail_pixmap(thumb: &Thumbnail) -> Option<Pixmap> {
    let rgba: Vec<u8> = thumb
        .rgb
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    Pixmap::from_vec(rgba, IntSize::from_wh(thumb.width, thumb.height)?)
}

fn draw_skeleton(pixmap: &mut Pixmap, pose: &Pose, scale: f32, dx: f32, dy: f32, c: Color) {
    let at = |j: Joint| {
        let k = pose.joint(j);
        (k.x * scale + dx, k.y * scale + dy)
    };
    for (a, b) in BONES {
        if pose.joint(a).confidence > 0.2 && pose.joint(b).confidence > 0.2 {
            line(pixmap, &[at(a), at(b)], 2.0, c);
        }
    }
}

/// Renders the report PNG.
pub fn render(
    report: &Report,
    samples: &[PoseSample],
    thumbs: &[Thumbnail],
) -> Result<Vec<u8>, Error> {
    let cell = THUMB_SIDE + 8;
    let (width, chart_h) = (4 * cell, 260);
    let height = 2 * cell + chart_h;
    let mut pixmap =
        Pixmap::new(width, height).ok_or_else(|| Error::Render("image size".into()))?;
    pixmap.fill(Color::from_rgba8(250, 250, 250, 255));

    for (k, (_, mark)) in report.events.iter().enumerate() {
        let (cx, cy) = ((k as u32 % 4) * cell, (k as u32 / 4) * cell);
        let event_colour = colour(EVENT_COLOURS[k]);
        rect(
            &mut pixmap,
            cx as f32,
            cy as f32,
            cell as f32,
            cell as f32,
            event_colour,
        );
        let Some(thumb) = thumbs.iter().find(|t| t.frame == mark.frame) else {
            continue;
        };
        let (dx, dy) = (
            cx + 4 + (THUMB_SIDE - thumb.width) / 2,
            cy + 4 + (THUMB_SIDE - thumb.height) / 2,
        );
        if let Some(image) = thumbnail_pixmap(thumb) {
            pixmap.draw_pixmap(
                dx as i32,
                dy as i32,
                image.as_ref(),
                &PixmapPaint::default(),
                Transform::identity(),
                None,
            );
        }
        if let Some(pose) = samples
            .iter()
            .find(|s| s.frame == mark.frame)
            .and_then(|s| s.pose.as_ref())
        {
            draw_skeleton(
                &mut pixmap,
                pose,
                thumb.scale,
                dx as f32,
                dy as f32,
                Color::from_rgba8(255, 255, 255, 255),
            );
        }
    }

    // Curves: hand height (up = higher) and hand speed over the analysed window.
    let top = (2 * cell) as f32;
    let (x0, x1) = (16.0, width as f32 - 16.0);
    let (y0, y1) = (top + 16.0, top + chart_h as f32 - 16.0);
    let hands: Vec<(f64, f32, f32)> = samples
        .iter()
        .filter_map(|s| {
            let p = s.pose.as_ref()?;
            let (l, r) = (p.joint(Joint::LeftWrist), p.joint(Joint::RightWrist));
            Some((s.time_s, (l.x + r.x) / 2.0, (l.y + r.y) / 2.0))
        })
        .collect();
    if hands.len() >= 2 {
        let (t_min, t_max) = (hands[0].0, hands[hands.len() - 1].0);
        let tx = |t: f64| x0 + (x1 - x0) * ((t - t_min) / (t_max - t_min).max(1e-6)) as f32;
        let speed: Vec<f32> = hands
            .windows(2)
            .map(|w| {
                ((w[1].1 - w[0].1).hypot(w[1].2 - w[0].2)) / (w[1].0 - w[0].0).max(1e-6) as f32
            })
            .collect();
        let (y_lo, y_hi) = hands.iter().fold((f32::MAX, f32::MIN), |(lo, hi), h| {
            (lo.min(h.2), hi.max(h.2))
        });
        let s_max = speed.iter().copied().fold(1e-6, f32::max);
        let height_points: Vec<(f32, f32)> = hands
            .iter()
            .map(|h| {
                (
                    tx(h.0),
                    y0 + (y1 - y0) * (h.2 - y_lo) / (y_hi - y_lo).max(1e-6),
                )
            })
            .collect();
        let speed_points: Vec<(f32, f32)> = hands[1..]
            .iter()
            .zip(&speed)
            .map(|(h, s)| (tx(h.0), y1 - (y1 - y0) * s / s_max))
            .collect();
        line(
            &mut pixmap,
            &[(x0, y1), (x1, y1)],
            1.0,
            Color::from_rgba8(120, 120, 120, 255),
        );
        for (k, (_, mark)) in report.events.iter().enumerate() {
            let x = tx(mark.time_s);
            line(
                &mut pixmap,
                &[(x, y0), (x, y1)],
                3.0,
                colour(EVENT_COLOURS[k]),
            );
        }
        line(
            &mut pixmap,
            &height_points,
            2.5,
            Color::from_rgba8(20, 20, 20, 255),
        );
        line(
            &mut pixmap,
            &speed_points,
            1.5,
            Color::from_rgba8(200, 30, 30, 255),
        );
    }
    pixmap
        .encode_png()
        .map_err(|e| Error::Render(e.to_string()))
}
