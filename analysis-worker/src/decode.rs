//! Video decoding with the FFmpeg libraries: one stream of frames, scaled by
//! swscale to the size the caller needs and turned upright, so memory stays
//! bounded by one frame at a time (per decoder thread, of which there are a
//! few) whatever the input resolution.

use std::ops::ControlFlow;
use std::path::Path;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use crate::Error;
use crate::frame::Frame;

/// Most frame threads of the decoder. Each holds a picture and a decoder
/// context of its own (about 7.5 MiB more per thread at 1080p, measured with
/// FFmpeg's CLI: 89 MiB on 2 threads, 193 on 16), so on a node without a
/// CPU limit memory would grow with its cores; decoding is a small part of an
/// analysis, which the pose model's threads share the cores with.
const MAX_DECODER_THREADS: usize = 4;

/// What the worker accepts; a phone swing clip is far inside these.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_duration_s: f64,
    /// Longest side of the coded picture.
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 30,
            max_duration_s: 120.0,
            max_side: 4096,
        }
    }
}

/// The stream as it is displayed (after rotation).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation applied to the coded picture, from the display matrix.
    pub rotation: u32,
    /// Average frame rate (frame times come from timestamps, so VFR is fine).
    pub fps: f64,
    pub duration_s: f64,
    pub codec: String,
}

/// An opened video stream.
pub struct VideoReader {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    time_base: f64,
    start_pts: i64,
    info: VideoInfo,
    limits: Limits,
    scaling: scaling::Flags,
}

/// Clockwise display rotation (0, 90, 180, 270) from an FFmpeg display matrix
/// (3×3 int32, 16.16 fixed point, as in `av_display_rotation_get`).
pub fn rotation_from_display_matrix(matrix: &[u8]) -> u32 {
    if matrix.len() < 36 {
        return 0;
    }
    let m = |i: usize| {
        f64::from(i32::from_le_bytes(
            matrix[4 * i..4 * i + 4].try_into().expect("4 bytes"),
        ))
    };
    // av_display_rotation_get returns −atan2(m1, m0), the counter-clockwise angle.
    let clockwise = m(1).atan2(m(0)).to_degrees().rem_euclid(360.0);
    ((clockwise / 90.0).round() as u32 % 4) * 90
}

/// Turns a packed RGB24 image clockwise by `rotation` degrees.
pub fn rotate_rgb(rgb: &[u8], width: u32, height: u32, rotation: u32) -> (Vec<u8>, u32, u32) {
    let (w, h) = (width as usize, height as usize);
    if rotation == 0 {
        return (rgb.to_vec(), width, height);
    }
    let (ow, oh) = if rotation == 180 { (w, h) } else { (h, w) };
    let mut out = vec![0u8; rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = match rotation {
                90 => (h - 1 - y, x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let src = 3 * (y * w + x);
            let dst = 3 * (ny * ow + nx);
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    (out, ow as u32, oh as u32)
}

impl VideoReader {
    pub fn open(path: &Path, limits: Limits) -> Result<Self, Error> {
        ffmpeg::init().map_err(Error::Decode)?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        let size = std::fs::metadata(path)
            .map_err(|e| Error::InvalidVideo(format!("cannot read {}: {e}", path.display())))?
            .len();
        if size == 0 {
            return Err(Error::InvalidVideo("the file is empty".into()));
        }
        if size > limits.max_file_bytes {
            return Err(Error::Limit(format!(
                "file is {size} bytes, more than the {} allowed",
                limits.max_file_bytes
            )));
        }
        let input = ffmpeg::format::input(path)
            .map_err(|e| Error::InvalidVideo(format!("not a readable media file ({e})")))?;
        let stream = input
            .streams()
            .best(Type::Video)
            .ok_or_else(|| Error::InvalidVideo("the file has no video stream".into()))?;
        let stream_index = stream.index();
        let time_base = f64::from(stream.time_base());
        let start_pts = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
            0
        } else {
            stream.start_time()
        };
        let rotation = stream
            .side_data()
            .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
            .map(|sd| rotation_from_display_matrix(sd.data()))
            .unwrap_or(0);
        let rate = stream.avg_frame_rate();
        let fps = if rate.denominator() != 0 && rate.numerator() > 0 {
            f64::from(rate)
        } else {
            f64::from(stream.rate())
        };
        let duration_s = if stream.duration() > 0 {
            stream.duration() as f64 * time_base
        } else {
            input.duration().max(0) as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
        };
        let mut context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| Error::InvalidVideo(format!("unsupported video stream ({e})")))?;
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_DECODER_THREADS);
        context.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: threads,
            ..Default::default()
        });
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| Error::InvalidVideo(format!("no decoder for this video codec ({e})")))?;
        let codec = decoder
            .codec()
            .map_or_else(|| "unknown".into(), |c| c.name().to_string());
        let (coded_w, coded_h) = (decoder.width(), decoder.height());
        if coded_w == 0 || coded_h == 0 {
            return Err(Error::InvalidVideo(
                "the video stream has no picture size".into(),
            ));
        }
        if coded_w.max(coded_h) > limits.max_side {
            return Err(Error::Limit(format!(
                "resolution {coded_w}x{coded_h} is above the {} pixel limit",
                limits.max_side
            )));
        }
        if duration_s > limits.max_duration_s {
            return Err(Error::Limit(format!(
                "duration {duration_s:.1} s is above the {} s limit",
                limits.max_duration_s
            )));
        }
        let (width, height) = if rotation % 180 == 90 {
            (coded_h, coded_w)
        } else {
            (coded_w, coded_h)
        };
        let info = VideoInfo {
            width,
            height,
            rotation,
            fps,
            duration_s,
            codec,
        };
        Ok(VideoReader {
            input,
            decoder,
            stream_index,
            time_base,
            start_pts,
            info,
            limits,
            scaling: scaling::Flags::BILINEAR,
        })
    }

    /// Decodes for a rough look at a fraction of the resolution (the motion
    /// pass): no deblocking filter and the cheapest scaling, about a third
    /// less decoding work; the blocking it leaves is gone at that size.
    pub fn draft(mut self) -> Self {
        self.decoder.skip_loop_filter(ffmpeg::Discard::All);
        self.scaling = scaling::Flags::FAST_BILINEAR;
        self
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decodes every frame; frames for which `wanted(time_s)` is true are scaled
    /// to `width`×`height` (display orientation), made upright and passed to
    /// `visit`. Returns the number of frames decoded.
    pub fn decode(
        mut self,
        width: u32,
        height: u32,
        mut wanted: impl FnMut(f64) -> bool,
        mut visit: impl FnMut(Frame) -> Result<ControlFlow<()>, Error>,
    ) -> Result<usize, Error> {
        let rotation = self.info.rotation;
        let (scaled_w, scaled_h) = if rotation % 180 == 90 {
            (height, width)
        } else {
            (width, height)
        };
        let mut scaler = scaling::Context::get(
            self.decoder.format(),
            self.decoder.width(),
            self.decoder.height(),
            Pixel::RGB24,
            scaled_w,
            scaled_h,
            self.scaling,
        )
        .map_err(Error::Decode)?;
        let mut index = 0usize;
        let mut last_time = f64::NEG_INFINITY;
        let mut decoded = ffmpeg::frame::Video::empty();
        let mut rgb = ffmpeg::frame::Video::empty();
        // Receives what the decoder has ready; `Ok(true)` once `visit` asks to stop.
        let mut drain = |decoder: &mut ffmpeg::decoder::Video| -> Result<bool, Error> {
            while decoder.receive_frame(&mut decoded).is_ok() {
                let time_s = match decoded.timestamp() {
                    Some(pts) => (pts - self.start_pts) as f64 * self.time_base,
                    None => index as f64 / self.info.fps.max(1.0),
                };
                // Keep time monotonic even with broken timestamps.
                let time_s = if time_s > last_time {
                    time_s
                } else {
                    last_time + 1e-3
                };
                last_time = time_s;
                if time_s > self.limits.max_duration_s {
                    return Err(Error::Limit(format!(
                        "the video runs past the {} s limit",
                        self.limits.max_duration_s
                    )));
                }
                let frame_index = index;
                index += 1;
                if wanted(time_s) {
                    scaler.run(&decoded, &mut rgb).map_err(Error::Decode)?;
                    let packed = packed_rgb(&rgb);
                    let (upright, w, h) = rotate_rgb(&packed, scaled_w, scaled_h, rotation);
                    let frame = Frame {
                        index: frame_index,
                        time_s,
                        width: w,
                        height: h,
                        rgb: upright,
                    };
                    if visit(frame)?.is_break() {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        let mut stopped = false;
        for (stream, packet) in self.input.packets() {
            if stream.index() != self.stream_index {
                continue;
            }
            // A corrupt packet is skipped; a video with no decodable frame fails below.
            if self.decoder.send_packet(&packet).is_ok() && drain(&mut self.decoder)? {
                stopped = true;
                break;
            }
        }
        if !stopped {
            let _ = self.decoder.send_eof();
            drain(&mut self.decoder)?;
        }
        if index == 0 {
            return Err(Error::InvalidVideo("no decodable video frames".into()));
        }
        Ok(index)
    }
}

/// Copies the RGB24 plane without swscale's row padding.
fn packed_rgb(frame: &ffmpeg::frame::Video) -> Vec<u8> {
    let (w, h, stride) = (
        frame.width() as usize,
        frame.height() as usize,
        frame.stride(0),
    );
    let data = frame.data(0);
    let mut out = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        out.extend_from_slice(&data[row * stride..row * stride + w * 3]);
    }
    out
}

/// Output size with the display aspect ratio and the longest side at most `max_side`
/// (even dimensions, as swscale and encoders prefer).
pub fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let scale = (f64::from(max_side) / f64::from(width.max(height))).min(1.0);
    let even = |v: u32| ((f64::from(v) * scale / 2.0).round() as u32 * 2).max(2);
    (even(width), even(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(degrees_ccw: f64) -> Vec<u8> {
        let (s, c) = degrees_ccw.to_radians().sin_cos();
        let fixed = |v: f64| ((v * 65536.0).round() as i32).to_le_bytes();
        [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 0.0]
            .iter()
            .flat_map(|v| fixed(*v))
            .collect()
    }

    #[test]
    fn display_matrix_rotation() {
        // Phones in portrait write a 90° clockwise display rotation: matrix angle −90.
        assert_eq!(rotation_from_display_matrix(&matrix(-90.0)), 90);
        assert_eq!(rotation_from_display_matrix(&matrix(90.0)), 270);
        assert_eq!(rotation_from_display_matrix(&matrix(180.0)), 180);
        assert_eq!(rotation_from_display_matrix(&matrix(0.0)), 0);
        assert_eq!(rotation_from_display_matrix(&[]), 0);
    }

    #[test]
    fn rotation_turns_clockwise() {
        // 2×1 image: red, green.
        let rgb = [255, 0, 0, 0, 255, 0];
        let (out, w, h) = rotate_rgb(&rgb, 2, 1, 90);
        assert_eq!((w, h), (1, 2));
        assert_eq!(out, vec![255, 0, 0, 0, 255, 0]);
        let (out, _, _) = rotate_rgb(&rgb, 2, 1, 180);
        assert_eq!(out, vec![0, 255, 0, 255, 0, 0]);
        let (out, w, h) = rotate_rgb(&rgb, 2, 1, 270);
        assert_eq!((w, h), (1, 2));
        assert_eq!(out, vec![0, 255, 0, 255, 0, 0]);
    }

    #[test]
    fn fit_keeps_aspect_and_even_sizes() {
        assert_eq!(fit_within(1920, 1080, 960), (960, 540));
        assert_eq!(fit_within(1080, 1920, 160), (90, 160));
        assert_eq!(fit_within(640, 480, 960), (640, 480));
    }
}
