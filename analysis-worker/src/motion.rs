//! The cheap motion pass: frame differences on small grey frames with candle
//! tensor ops, giving the motion energy of every frame and where in the picture
//! the motion is. From those, the swing window (when to run the pose model) and
//! the golfer's region (where to look first).

use candle_core::{DType, Device, Tensor};

use crate::Error;
use crate::frame::Frame;
use crate::pose::Region;

/// Frames are differenced in batches of this many (one tensor op per batch).
const BATCH: usize = 16;
/// Side (pixels of the small frames) of the cells whose motion is compared
/// with their own usual level.
const CELL: usize = 8;

/// The first CUDA GPU when the worker is built with the `cuda` feature and
/// one is present, else the CPU (`cuda_if_available` is always the CPU
/// without the feature).
fn compute_device() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}

/// Accumulates motion over a stream of equally sized small frames.
pub struct MotionPass {
    device: Device,
    width: usize,
    height: usize,
    /// Pixels in each cell (fewer in the last row and column when the frame
    /// size is not a multiple of [`CELL`]), shape (cells_y, cells_x).
    cell_pixels: Tensor,
    pending: Vec<u8>,
    pending_times: Vec<f64>,
    previous: Option<Tensor>,
    times: Vec<f64>,
    energy: Vec<f32>,
    cell_energy: Vec<f32>,
    /// Per batch: index of its first frame and the summed |difference| map.
    batch_maps: Vec<(usize, Vec<f32>)>,
}

/// What the motion pass measured.
#[derive(Debug, Clone)]
pub struct MotionSummary {
    pub times: Vec<f64>,
    /// Mean absolute grey-level change from the previous frame (0..255).
    pub energy: Vec<f32>,
    /// Mean absolute change per cell of [`CELL`]² pixels, frame after frame.
    cell_energy: Vec<f32>,
    width: usize,
    height: usize,
    batch_maps: Vec<(usize, Vec<f32>)>,
}

impl MotionPass {
    pub fn new(width: u32, height: u32) -> Result<Self, Error> {
        let device = compute_device();
        let (w, h) = (width as usize, height as usize);
        let (cells_x, cells_y) = (w.div_ceil(CELL), h.div_ceil(CELL));
        let pixels: Vec<f32> = (0..cells_y * cells_x)
            .map(|c| {
                let (y, x) = (c / cells_x * CELL, c % cells_x * CELL);
                (CELL.min(h - y) * CELL.min(w - x)) as f32
            })
            .collect();
        let cell_pixels = Tensor::from_vec(pixels, (cells_y, cells_x), &device)?;
        Ok(MotionPass {
            device,
            width: w,
            height: h,
            cell_pixels,
            pending: Vec::new(),
            pending_times: Vec::new(),
            previous: None,
            times: Vec::new(),
            energy: Vec::new(),
            cell_energy: Vec::new(),
            batch_maps: Vec::new(),
        })
    }

    /// Where the tensor ops run, for progress lines: `cpu` or `cuda:N`.
    pub fn device_name(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    pub fn push(&mut self, frame: &Frame) -> Result<(), Error> {
        self.pending.extend_from_slice(&frame.rgb);
        self.pending_times.push(frame.time_s);
        if self.pending_times.len() == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let n = self.pending_times.len();
        if n == 0 {
            return Ok(());
        }
        let (h, w) = (self.height, self.width);
        let rgb = Tensor::from_vec(
            std::mem::take(&mut self.pending),
            (n, h, w, 3),
            &self.device,
        )?
        .to_dtype(DType::F32)?;
        // ITU-R BT.601 luma.
        let weights = Tensor::new(&[0.299f32, 0.587, 0.114], &self.device)?;
        let grey = rgb.broadcast_mul(&weights)?.sum(3)?;
        let first = match &self.previous {
            Some(previous) => previous.clone(),
            None => grey.narrow(0, 0, 1)?,
        };
        let sequence = Tensor::cat(&[&first, &grey], 0)?;
        let diff = (sequence.narrow(0, 1, n)? - sequence.narrow(0, 0, n)?)?.abs()?;
        self.energy.extend(diff.mean((1, 2))?.to_vec1::<f32>()?);
        // Mean |difference| per cell, on the compute device: zero-pad to whole
        // cells, sum each, divide by the pixels the cell really holds.
        let (cells_x, cells_y) = (w.div_ceil(CELL), h.div_ceil(CELL));
        let cell_sums = diff
            .pad_with_zeros(1, 0, cells_y * CELL - h)?
            .pad_with_zeros(2, 0, cells_x * CELL - w)?
            .reshape((n, cells_y, CELL, cells_x, CELL))?
            .sum(4)?
            .sum(2)?;
        let cell_means = cell_sums.broadcast_div(&self.cell_pixels)?;
        self.cell_energy
            .extend(cell_means.flatten_all()?.to_vec1::<f32>()?);
        let map = diff.sum(0)?.flatten_all()?.to_vec1::<f32>()?;
        self.batch_maps.push((self.times.len(), map));
        self.times.append(&mut self.pending_times);
        self.previous = Some(grey.narrow(0, n - 1, 1)?);
        Ok(())
    }

    pub fn finish(mut self) -> Result<MotionSummary, Error> {
        self.flush()?;
        Ok(MotionSummary {
            times: self.times,
            energy: self.energy,
            cell_energy: self.cell_energy,
            width: self.width,
            height: self.height,
            batch_maps: self.batch_maps,
        })
    }
}

/// Seconds of still frames kept on both sides of the motion burst: the event
/// logic needs the golfer at rest before the takeaway and after the finish.
/// Before the burst more than after it: a slow takeaway (and any takeaway in
/// slow motion) moves too little to count as burst, yet holds the address.
const WINDOW_PAD_BEFORE_S: f64 = 3.0;
const WINDOW_PAD_AFTER_S: f64 = 1.5;
/// Longest window around the peak of motion (the downswing).
/// (A 6x slow-motion swing spends 8 s from address to impact.)
const MAX_BEFORE_PEAK_S: f64 = 12.0;
const MAX_AFTER_PEAK_S: f64 = 8.0;
/// Clips up to this long are analysed whole: the pose of every frame costs
/// little on a phone clip, and no motion threshold can then cut off a
/// slow takeaway or a held finish.
pub const WHOLE_CLIP_S: f64 = 30.0;
/// Least smoothed unusual motion (grey levels per pixel) a swing reaches.
/// Sensor noise and encoder pulsing on still H.264 clips reach 0.05-0.08; the
/// swings of the synthetic clips (640x360 and 1280x720) 0.21-1.1.
const MIN_SWING_MOTION: f32 = 0.14;
/// How far a swing's peak stands above the spread of the quietest frames.
const NOISE_FACTOR: f32 = 3.0;

impl MotionSummary {
    /// Motion of each frame beyond what each part of the picture usually
    /// shows: camera shake and noise move the background's edges all clip
    /// long, a swing moves its part of the picture for a second.
    pub fn unusual_motion(&self) -> Vec<f32> {
        let n = self.energy.len();
        let cells = self.cell_energy.len() / n.max(1);
        let usual: Vec<f32> = (0..cells)
            .map(|c| {
                let mut values: Vec<f32> =
                    (0..n).map(|t| self.cell_energy[t * cells + c]).collect();
                values.sort_by(f32::total_cmp);
                values[n / 2]
            })
            .collect();
        (0..n)
            .map(|t| {
                let frame = &self.cell_energy[t * cells..(t + 1) * cells];
                frame
                    .iter()
                    .zip(&usual)
                    .map(|(e, u)| (e - u).max(0.0))
                    .sum::<f32>()
                    / cells as f32
            })
            .collect()
    }

    /// The time span of the swing: the largest burst of unusual motion above
    /// the background (noise, camera shake), padded with still frames.
    pub fn swing_window(&self) -> Option<(f64, f64)> {
        let (start, end, peak_i) = self.burst_frames()?;
        let n = self.times.len();
        // A swing lasts seconds: a longer burst (people walking by) is cut
        // around its peak, which bounds the pose work and the keyframes kept.
        let peak_t = self.times[peak_i];
        Some((
            (self.times[start] - WINDOW_PAD_BEFORE_S)
                .max(self.times[0])
                .max(peak_t - MAX_BEFORE_PEAK_S),
            (self.times[end] + WINDOW_PAD_AFTER_S)
                .min(self.times[n - 1])
                .min(peak_t + MAX_AFTER_PEAK_S),
        ))
    }

    /// The burst of motion itself, unpadded: where the golfer's region is
    /// measured, so still frames add no background flicker to it.
    pub fn burst(&self) -> Option<(f64, f64)> {
        let (start, end, _) = self.burst_frames()?;
        Some((self.times[start], self.times[end]))
    }

    /// First frame, last frame and peak frame of the largest burst.
    fn burst_frames(&self) -> Option<(usize, usize, usize)> {
        let n = self.energy.len();
        if n < 3 {
            return None;
        }
        let energy = self.unusual_motion();
        let mut sorted: Vec<f32> = energy.clone();
        sorted.sort_by(f32::total_cmp);
        let quantile = |q: f64| sorted[((n - 1) as f64 * q) as usize];
        // The background (noise, shake) and its spread come from the quietest
        // frames only: a swing may fill most of the clip, and a spread that
        // reaches up to the median measures the swing itself.
        let background = quantile(0.1);
        let noise = background - quantile(0.02);
        // Smooth over ~0.1 s so one noisy frame neither starts nor breaks a burst.
        let duration = self.times[n - 1] - self.times[0];
        let fps = (n - 1) as f64 / duration.max(1e-3);
        let half = ((fps * 0.05).round() as usize).max(1);
        let smooth: Vec<f32> = (0..n)
            .map(|i| {
                let (a, b) = (i.saturating_sub(half), (i + half + 1).min(n));
                energy[a..b]
                    .iter()
                    .map(|e| (e - background).max(0.0))
                    .sum::<f32>()
                    / (b - a) as f32
            })
            .collect();
        let peak_i = (0..n).max_by(|&a, &b| smooth[a].total_cmp(&smooth[b]))?;
        let peak = smooth[peak_i];
        // A swing must stand out from sensor noise and encoder quality
        // pulsing at key frames. (A shaking camera moves the picture as much
        // as a swing does: telling the two apart is left to the pose.)
        if peak < MIN_SWING_MOTION.max(NOISE_FACTOR * noise) {
            return None;
        }
        let active = |i: usize| smooth[i] > 0.15 * peak;
        let max_gap = (fps * 0.3) as usize;
        // Bursts of activity (gaps up to 0.3 s bridged); the swing is the one
        // with the most motion in total, not merely the sharpest spike (a
        // camera bump at the end of a clip is short).
        let mut bursts: Vec<(usize, usize)> = Vec::new();
        for i in (0..n).filter(|&i| active(i)) {
            match bursts.last_mut() {
                Some(last) if i - last.1 <= max_gap + 1 => last.1 = i,
                _ => bursts.push((i, i)),
            }
        }
        let total = |&(a, b): &(usize, usize)| smooth[a..=b].iter().sum::<f32>();
        let &(start, end) = bursts.iter().max_by(|x, y| total(x).total_cmp(&total(y)))?;
        let peak_i = (start..=end).max_by(|&a, &b| smooth[a].total_cmp(&smooth[b]))?;
        Some((start, end, peak_i))
    }

    /// Where the motion of the window was, as a region in a `width`×`height`
    /// frame, widened so that the still parts of the body fit too.
    ///
    /// The region holds the central 90 % of the motion mass on each axis
    /// rather than every pixel above a threshold: camera shake moves every
    /// strong edge of the background (horizon, trees) a little, and a bounding
    /// box of those would be the whole frame, too large for the detector.
    pub fn region(&self, window: (f64, f64), width: u32, height: u32) -> Option<Region> {
        let (w, h) = (self.width, self.height);
        let mut map = vec![0f32; w * h];
        for (first, batch) in &self.batch_maps {
            let t = self.times[*first];
            if t >= window.0 && t <= window.1 {
                map.iter_mut().zip(batch).for_each(|(m, b)| *m += b);
            }
        }
        // The background level (sensor and encoder noise) is no motion.
        let mut sorted = map.clone();
        sorted.sort_by(f32::total_cmp);
        let background = sorted[sorted.len() / 2];
        let mut columns = vec![0f64; w];
        let mut rows = vec![0f64; h];
        for (i, m) in map.iter().enumerate() {
            let excess = f64::from((m - background).max(0.0));
            columns[i % w] += excess;
            rows[i / w] += excess;
        }
        let (x0, x1) = central_span(&columns, MOTION_MASS)?;
        let (y0, y1) = central_span(&rows, MOTION_MASS)?;
        let (sx, sy) = (f64::from(width) / w as f64, f64::from(height) / h as f64);
        let (bw, bh) = ((x1 + 1 - x0) as f64 * sx, (y1 + 1 - y0) as f64 * sy);
        let left = (x0 as f64 * sx - 0.25 * bw).max(0.0);
        let top = (y0 as f64 * sy - 0.15 * bh).max(0.0);
        let right = ((x1 + 1) as f64 * sx + 0.25 * bw).min(f64::from(width));
        let bottom = ((y1 + 1) as f64 * sy + 0.25 * bh).min(f64::from(height));
        Some(Region {
            x: left as f32,
            y: top as f32,
            width: (right - left) as f32,
            height: (bottom - top) as f32,
        })
    }
}

/// Share of the motion mass the golfer's region holds on each axis.
const MOTION_MASS: f64 = 0.9;

/// The first and last index of the central `share` of `mass`; `None` without mass.
fn central_span(mass: &[f64], share: f64) -> Option<(usize, usize)> {
    let total: f64 = mass.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let tail = total * (1.0 - share) / 2.0;
    let mut seen = 0.0;
    let mut first = None;
    let mut last = 0;
    for (i, m) in mass.iter().enumerate() {
        seen += m;
        if first.is_none() && seen > tail {
            first = Some(i);
        }
        if seen - m < total - tail {
            last = i;
        }
    }
    first.map(|first| (first, last.max(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(index: usize, width: u32, height: u32, square_x: Option<u32>) -> Frame {
        let mut rgb = vec![40u8; (width * height * 3) as usize];
        if let Some(sx) = square_x {
            for y in 10..20 {
                for x in sx..sx + 10 {
                    let i = 3 * (y * width + x) as usize;
                    rgb[i..i + 3].copy_from_slice(&[250, 250, 250]);
                }
            }
        }
        Frame {
            index,
            time_s: index as f64 / 30.0,
            width,
            height,
            rgb,
        }
    }

    /// 2 s still, 1 s of a square moving right at x 20..50, 2 s still.
    fn square_x(i: usize) -> u32 {
        match i {
            0..60 => 20,
            60..90 => 20 + (i as u32 - 60),
            _ => 50,
        }
    }

    #[test]
    fn finds_the_moving_burst_and_where_it_is() {
        let (w, h) = (80, 40);
        let mut pass = MotionPass::new(w, h).unwrap();
        // Shown with --nocapture: which device a cuda build's tests ran on.
        eprintln!("motion pass on {}", pass.device_name());
        for i in 0..150usize {
            pass.push(&frame(i, w, h, Some(square_x(i)))).unwrap();
        }
        let summary = pass.finish().unwrap();
        assert_eq!(summary.energy.len(), 150);
        assert_eq!(summary.energy[0], 0.0);
        let (start, end) = summary.swing_window().expect("a burst of motion");
        assert!(
            (start - (2.0 - WINDOW_PAD_BEFORE_S).max(0.0)).abs() < 0.1,
            "start {start}"
        );
        assert!(
            (end - (3.0 + WINDOW_PAD_AFTER_S).min(149.0 / 30.0)).abs() < 0.1,
            "end {end}"
        );
        let region = summary.region((start, end), 160, 80).unwrap();
        // Motion spans x 20..60 in the 80-wide frame: 40..120 at twice the size.
        assert!(
            region.x < 40.0 && region.x + region.width > 118.0,
            "{region:?}"
        );
        assert!(
            region.y < 20.0 && region.y + region.height > 40.0,
            "{region:?}"
        );
    }

    #[test]
    fn the_region_ignores_shaking_background_edges() {
        let (w, h) = (80, 40);
        let mut pass = MotionPass::new(w, h).unwrap();
        for i in 0..150usize {
            let mut f = frame(i, w, h, Some(square_x(i)));
            // A horizon across the whole frame, its edge flickering with camera shake.
            let shade = if i % 2 == 0 { 45 } else { 50 };
            for px in 0..w {
                let k = 3 * (30 * w + px) as usize;
                f.rgb[k..k + 3].copy_from_slice(&[shade; 3]);
            }
            pass.push(&f).unwrap();
        }
        let summary = pass.finish().unwrap();
        let burst = summary.burst().expect("a burst of motion");
        let region = summary.region(burst, w, h).unwrap();
        assert!(
            region.x > 5.0 && region.x + region.width < 75.0,
            "the region follows the square, not the horizon: {region:?}"
        );
    }

    #[test]
    fn cells_cut_by_the_frame_edge_are_means_over_their_own_pixels() {
        // 20x12 frames: cells of 8x8, 8x4 (last column), 4x8 (last row) and 4x4.
        let (w, h) = (20, 12);
        let mut pass = MotionPass::new(w, h).unwrap();
        for (i, grey) in [40u8, 50].into_iter().enumerate() {
            let mut f = frame(i, w, h, None);
            f.rgb.fill(grey);
            pass.push(&f).unwrap();
        }
        let summary = pass.finish().unwrap();
        assert_eq!(summary.cell_energy.len(), 2 * 3 * 2);
        let (first, second) = summary.cell_energy.split_at(6);
        assert!(first.iter().all(|&e| e == 0.0), "{first:?}");
        assert!(
            second.iter().all(|&e| (e - 10.0).abs() < 1e-3),
            "every cell changed by 10 grey levels: {second:?}"
        );
    }

    #[test]
    fn central_span_drops_the_thin_tails() {
        let mass = [1.0, 0.0, 10.0, 30.0, 40.0, 10.0, 0.0, 1.0];
        assert_eq!(central_span(&mass, 0.9), Some((2, 5)));
        assert_eq!(central_span(&[0.0; 4], 0.9), None);
    }

    #[test]
    fn a_still_video_has_no_swing_window() {
        let mut pass = MotionPass::new(32, 32).unwrap();
        for i in 0..40 {
            pass.push(&frame(i, 32, 32, Some(5))).unwrap();
        }
        assert_eq!(pass.finish().unwrap().swing_window(), None);
    }
}
