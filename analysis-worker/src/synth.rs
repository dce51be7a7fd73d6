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
    Color, FillRule, GradientStop, LineCap, LineJoin, LinearGradient, Paint, PathBuilder, Pixmap,
    Point, SpreadMode, Stroke, Transform,
};

use crate::Error;
use crate::golfer::{Skeleton, SwingParams};
use crate::pose::Joint;
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

/// A thick line with round ends: a limb segment.
fn limb(pixmap: &mut Pixmap, points: &[(f64, f64)], width: f64, colour: Color, t: Transform) {
    let mut pb = PathBuilder::new();
    pb.move_to(points[0].0 as f32, points[0].1 as f32);
    for p in &points[1..] {
        pb.line_to(p.0 as f32, p.1 as f32);
    }
    let Some(path) = pb.finish() else { return };
    let stroke = Stroke {
        width: width as f32,
        line_cap: LineCap::Round,
        line_join: LineJoin::Round,
        ..Stroke::default()
    };
    pixmap.stroke_path(&path, &paint(colour), &stroke, t, None);
}

fn disc(pixmap: &mut Pixmap, centre: (f64, f64), radius: f64, colour: Color, t: Transform) {
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
        let crown = (x as f64, (base - radius * (1.0 + height)) as f64);
        limb(
            pixmap,
            &[(x as f64, base as f64), crown],
            f64::from(radius) * 0.3,
            rgb(90, 60, 30),
            t,
        );
        disc(pixmap, crown, f64::from(radius), colour, t);
    }
}

/// Draws the golfer: far-side limbs first, shaded darker, so the body reads as 3D.
fn draw_golfer(pixmap: &mut Pixmap, s: &Skeleton, look: &Look, scale: f64, t: Transform) {
    use Joint::*;
    let j = |joint: Joint| s.joint(joint);
    let leg_w = 0.15 * scale;
    let far = 0.8;
    for (hip, knee, ankle, k) in [
        (RightHip, RightKnee, RightAnkle, far),
        (LeftHip, LeftKnee, LeftAnkle, 1.0),
    ] {
        limb(
            pixmap,
            &[j(hip), j(knee), j(ankle)],
            leg_w,
            shade(look.trousers, k),
            t,
        );
        let (ax, ay) = j(ankle);
        limb(
            pixmap,
            &[
                (ax - 0.05 * scale, ay),
                (ax + 0.08 * scale, ay + 0.02 * scale),
            ],
            0.08 * scale,
            shade(look.shoes, k),
            t,
        );
    }
    // Torso: a filled quad between shoulders and hips, rounded by a thick outline.
    let mut pb = PathBuilder::new();
    for (i, joint) in [LeftShoulder, RightShoulder, RightHip, LeftHip]
        .into_iter()
        .enumerate()
    {
        let (x, y) = j(joint);
        if i == 0 {
            pb.move_to(x as f32, y as f32);
        } else {
            pb.line_to(x as f32, y as f32);
        }
    }
    pb.close();
    if let Some(path) = pb.finish() {
        pixmap.fill_path(&path, &paint(look.shirt), FillRule::Winding, t, None);
        let stroke = Stroke {
            width: (0.14 * scale) as f32,
            line_join: LineJoin::Round,
            ..Stroke::default()
        };
        pixmap.stroke_path(&path, &paint(look.shirt), &stroke, t, None);
    }
    // Neck and head.
    let shoulders = (
        (j(LeftShoulder).0 + j(RightShoulder).0) / 2.0,
        (j(LeftShoulder).1 + j(RightShoulder).1) / 2.0,
    );
    limb(
        pixmap,
        &[shoulders, s.head],
        0.09 * scale,
        shade(look.skin, 0.9),
        t,
    );
    disc(pixmap, s.head, s.head_radius, look.skin, t);
    // Hair: a darker cap on the back/top of the head, away from the face.
    let face = j(Nose);
    let away = (s.head.0 - face.0, s.head.1 - face.1);
    let norm = (away.0.hypot(away.1)).max(1e-6);
    let hair_centre = (
        s.head.0 + 0.35 * s.head_radius * away.0 / norm,
        s.head.1 + 0.35 * s.head_radius * away.1 / norm - 0.3 * s.head_radius,
    );
    disc(pixmap, hair_centre, 0.8 * s.head_radius, look.hair, t);
    for eye in [LeftEye, RightEye] {
        disc(pixmap, j(eye), 0.012 * scale, rgb(30, 30, 30), t);
    }
    disc(pixmap, face, 0.02 * scale, shade(look.skin, 0.85), t);
    // Club under the arms.
    limb(
        pixmap,
        &[s.grip, s.club_head],
        0.018 * scale,
        rgb(170, 170, 175),
        t,
    );
    disc(pixmap, s.club_head, 0.045 * scale, rgb(40, 40, 45), t);
    for (shoulder, elbow, wrist, k) in [
        (RightShoulder, RightElbow, RightWrist, far),
        (LeftShoulder, LeftElbow, LeftWrist, 1.0),
    ] {
        limb(
            pixmap,
            &[j(shoulder), j(elbow)],
            0.1 * scale,
            shade(look.shirt, k),
            t,
        );
        limb(
            pixmap,
            &[j(elbow), j(wrist)],
            0.075 * scale,
            shade(look.skin, k),
            t,
        );
        disc(pixmap, j(wrist), 0.045 * scale, shade(look.skin, k), t);
    }
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
    draw_golfer(pixmap, &params.skeleton_at(time), look, params.scale_px, t);
    if look.noise > 0.0 {
        for px in pixmap.data_mut().chunks_exact_mut(4) {
            let n = (noise.random::<f32>() - 0.5) * 2.0 * look.noise;
            for c in &mut px[..3] {
                *c = (f32::from(*c) + n).clamp(0.0, 255.0) as u8;
            }
        }
    }
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
        let mut rng = ChaCha8Rng::seed_from_u64(clip_seed);
        let params = SwingParams::random(&mut rng, format.width, format.height, format.seconds);
        let look = Look::random(&mut rng, format.width);
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
