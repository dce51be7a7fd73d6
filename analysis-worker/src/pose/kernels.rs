//! CPU kernels on NHWC (batch 1) slices for the ops candle 0.11 runs slowly or
//! lacks: depthwise convolution (candle runs grouped convolutions one group at a
//! time), convolution as a matmul with the bias fused (the microkernels of
//! candle's own backend crate, gemm, on weights packed once at load, without
//! candle's per-op thread-count lookup and output pass; or over only the
//! nonzero weights of a pruned layer, as the detector's are), im2col for the
//! few k×k convolutions, max pooling, TFLite-exact bilinear resize and
//! depth-to-space. Each is a pure function (the larger ones run rows in
//! parallel); the ops' outputs start on a cache line ([`Aligned`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

// The kernels that read [`MatmulWeights::Panels`]: gemm's AVX2 + FMA ones,
// 8 or 16 channels (one or two vectors) by 1 to 6 pixels, indexed
// `[vectors - 1][pixels - 1]`.
#[cfg(target_arch = "x86_64")]
use gemm_f32::microkernel::fma::f32::{
    MR_DIV_N as PANEL_VECTORS, NR as PANEL_PIXELS, UKR as PANEL_KERNELS,
};

#[cfg(target_arch = "x86_64")]
const _: () = assert!(PANEL_VECTORS * 8 == LANES, "a panel is one kernel wide");

/// Height, width and channels of an NHWC tensor with batch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hwc {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Hwc {
    pub fn elements(self) -> usize {
        self.h * self.w * self.c
    }
}

/// Spatial window of a convolution or pooling: kernel, stride and the zero
/// padding before the first row/column (TFLite SAME, or an explicit PAD folded in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Window {
    /// The kernel taps `0..k` of output coordinate `o` that fall inside `size`.
    fn taps(&self, o: usize, pad: usize, size: usize, k: usize) -> std::ops::Range<usize> {
        let first = pad.saturating_sub(o * self.stride);
        let last = (size + pad).saturating_sub(o * self.stride).min(k);
        first..last.max(first)
    }

    /// Input coordinate of kernel tap `k` for output coordinate `o`, if inside `size`.
    fn source(&self, o: usize, k: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + k).checked_sub(pad).filter(|&i| i < size)
    }
}

/// Fused activation of TFLite ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

impl Activation {
    /// The range the activation clamps to.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }

    pub fn apply(self, values: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        }
    }
}

/// Bytes of a cache line, where [`Aligned`] values start.
const CACHE_LINE: usize = 64;

/// An op's output, its first value on a cache line: glibc aligns large
/// blocks to 16 bytes only, and a kernel's 64-byte vector loads of an input
/// that starts mid-line straddle two lines (up to 1.7× slower depthwise
/// layers). The values sit at an offset in a plain `Vec<f32>`, so a candle
/// tensor can own them without a copy ([`Self::into_parts`]).
pub struct Aligned {
    values: Vec<f32>,
    offset: usize,
}

impl Aligned {
    /// `len` values, which `write` must all initialise.
    ///
    /// # Safety
    /// `write` writes every value of the slice it is given.
    unsafe fn written_by(len: usize, write: impl FnOnce(&mut [MaybeUninit<f32>])) -> Self {
        let floats_per_line = CACHE_LINE / std::mem::size_of::<f32>();
        let mut values: Vec<f32> = Vec::with_capacity(len + floats_per_line - 1);
        // A `Vec<f32>` is 4-byte aligned, so an offset below a line's floats exists.
        let offset = values
            .as_ptr()
            .align_offset(CACHE_LINE)
            .min(floats_per_line - 1);
        let spare = values.spare_capacity_mut();
        spare[..offset].fill(MaybeUninit::new(0.0));
        write(&mut spare[offset..offset + len]);
        // SAFETY: the padding is zeroed above and the caller's `write` initialised the rest.
        unsafe { values.set_len(offset + len) };
        Self { values, offset }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: f32) -> Self {
        // SAFETY: `fill` writes every value.
        unsafe { Self::written_by(len, |out| out.fill(MaybeUninit::new(value))) }
    }

    /// The buffer and where the values start in it.
    pub fn into_parts(self) -> (Vec<f32>, usize) {
        (self.values, self.offset)
    }
}

impl std::ops::Deref for Aligned {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.values[self.offset..]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.values[self.offset..]
    }
}

/// f32 values in one AVX-512 register (two AVX2 ones): the channels a
/// kernel's vector covers, and those of a block of a split matmul.
const LANES: usize = 16;

/// Below this many multiply-adds a matmul runs on one thread: splitting the
/// small late layers costs more in synchronisation than it saves.
const PARALLEL_MATMUL_MACS: usize = 1 << 19;

/// On fewer threads than this, a parallel matmul over panels is split into
/// this many parts (each of at least [`MIN_PART_MACS`]) rather than one per
/// thread: when the host slows one thread down (another tenant, the
/// decoder), it holds up one small part while the others take the rest,
/// instead of holding up half the op. Measured on 2 threads, against one
/// part per thread, alternated per inference: detector 0.93–0.99 of the
/// time, landmark 0.97–0.99. The sparse kernel's parts are split the same
/// way. One part per thread on gemm's path, where each band of pixels would
/// pack the weights again.
const MIN_PANEL_PARTS: usize = 8;

/// The least work, in multiply-adds, of one of those parts.
const MIN_PART_MACS: usize = 1 << 18;

/// Longest stretch of K one gemm call sums. gemm cuts K into blocks whose
/// size depends on the call's whole shape (512 for blocks of at most 64×64,
/// balanced blocks of 512 or more otherwise), and each block's sum is added
/// to the output in turn: with a longer K the rounding, and so the output,
/// would depend on how the thread count splits the matmul. Slices of K at
/// fixed places, each short enough for gemm to sum in one block, keep the
/// output the same bits on any number of threads.
const MAX_GEMM_K: usize = 512;

/// Below this many pixels a large matmul is split by output channels
/// instead of pixels: a band of pixels would read (and gemm pack) the whole
/// weight matrix for a few rows, the main cost of the small late layers with
/// up to 1152 channels; a block of channels reads only its share of it.
/// Such a split has at most one part per [`LANES`] channels: with more
/// threads than that (a 1152 -> 192 projection on 16), the parts left idle
/// cost less than bands of 3 pixels that each pack all the weights. A
/// sparse matmul with more inputs than outputs keeps its tiles of pixels
/// while there is one per thread (see [`matmul_bias`]).
const MIN_PARALLEL_PIXELS: usize = 128;

/// Row-parallel kernels give each task at least this much work (taps, or
/// values copied): waking another thread and joining it costs more than
/// smaller tasks take, as in the late layers' few small rows.
const MIN_TASK_WORK: usize = 1 << 17;

/// Rows per task for `rows` rows of `work` each: as many equal tasks as
/// the work allows, at least one.
fn rows_per_task(rows: usize, work: usize) -> usize {
    let tasks = (rows * work / MIN_TASK_WORK).clamp(1, rows.max(1));
    rows.div_ceil(tasks).max(1)
}

/// The weights of a matmul, `[k × n]` (`[kh*kw*cin][cout]` for a
/// convolution), in the layout the CPU's kernel reads: only the nonzeros
/// where most are zero, else dense.
pub enum MatmulWeights {
    /// Packed once, at load time, per block of [`LANES`] output channels:
    /// the panel that gemm's AVX2 microkernel reads, 16 channels × 6 pixels
    /// at a time. `gemm::gemm` packs its right-hand side again on every call
    /// with more than 32 rows, all of a 7x7 layer's 884 KB on each of the
    /// detector's eight.
    #[cfg(target_arch = "x86_64")]
    Panels(ChannelBlocks),
    /// Row-major, for `gemm::gemm`: CPUs without AVX2 and FMA, and those with
    /// AVX-512, where gemm's own 16-lane kernels (with their packing) are
    /// kept, as the panels' speed there is not measured.
    Matrix(Vec<f32>),
    /// Mostly zeros (see [`SparseWeights`]).
    Sparse(SparseWeights),
}

impl MatmulWeights {
    /// `weights` (`[k][n]`, `n` = `bias.len()`) in the layout this CPU's
    /// kernel reads.
    pub fn new(weights: Vec<f32>, bias: &[f32]) -> Self {
        let sparse = fma_vectors().then(|| SparseWeights::new(&weights, bias.len()));
        match sparse.flatten() {
            Some(sparse) => Self::Sparse(sparse),
            None => Self::dense(weights, bias),
        }
    }

    /// `weights` in the layout of this CPU's dense kernel.
    fn dense(weights: Vec<f32>, bias: &[f32]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if panels_kernel_available() {
            return Self::Panels(ChannelBlocks::new(&weights, bias));
        }
        let _ = bias;
        Self::Matrix(weights)
    }

    /// Rows (`k`) of weights with `n` columns, which they must have.
    fn rows(&self, n: usize) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Panels(panels) => {
                assert_eq!(panels.c, n, "weights shape");
                panels.rows
            }
            Self::Matrix(weights) => {
                assert_eq!(weights.len() % n.max(1), 0, "weights shape");
                weights.len() / n
            }
            Self::Sparse(sparse) => {
                assert_eq!(sparse.columns, n, "weights shape");
                sparse.rows
            }
        }
    }

    /// Multiply-adds per output row (pixel): what splitting the matmul pays for.
    fn work_per_row(&self, k: usize, n: usize) -> usize {
        match self {
            Self::Sparse(sparse) => sparse.values.len(),
            _ => k * n,
        }
    }
}

/// Pixels of a [`SparseWeights`] tile: the inputs of one input channel for
/// them are four AVX2 vectors, loaded for each weight broadcast (16 loads
/// per 8 multiply-adds with 16 pixels, 12 with 32: 0.81–0.89 of the time).
const SPARSE_PIXELS: usize = 32;

/// Output channels a [`SparseWeights`] kernel sums at once: with four
/// vectors of pixels each, eight independent sums hide the multiply-add's
/// latency.
const SPARSE_CHANNELS: usize = 2;

/// Input channels whose part of a tile ([`SPARSE_PIXELS`] values each, 16
/// KB) all output channels read before the next part: it stays in the L1
/// cache, where all of a 1152-channel tile (147 KB) would not.
const SPARSE_K_BLOCK: usize = 128;

/// The weights of a matmul most of whose weights are zero (the BlazePose
/// detector's 1×1 convolutions are pruned to a quarter), as each output
/// channel's nonzero weights and their input channels, in order. A zero
/// weight adds nothing to a sum (`fma(x, 0, s) == s` for finite `x`, up to
/// the sign of a zero), so summing only the nonzeros in the same order gives
/// the same values with a quarter of the multiply-adds: how LiteRT
/// (XNNPACK's sparse inference) runs that model.
pub struct SparseWeights {
    /// The entries of block `b` of [`SPARSE_K_BLOCK`] input channels for
    /// group `g` of [`SPARSE_CHANNELS`] output channels are
    /// `starts[b * groups + g]..starts[b * groups + g + 1]`, a step per
    /// [`SPARSE_CHANNELS`] entries: each channel's next nonzero in the
    /// block, or a zero weight where it has no more.
    starts: Vec<usize>,
    /// Each entry's input channel, times [`SPARSE_PIXELS`]: where its
    /// inputs lie in a transposed tile.
    offsets: Vec<u32>,
    values: Vec<f32>,
    /// `k`, the input channels.
    rows: usize,
    /// `n`, the output channels.
    columns: usize,
}

impl SparseWeights {
    /// Most nonzeros, as a fraction of all weights, for which the sparse
    /// kernel is used: it does one multiply-add per load pair where the
    /// dense one does two, so it must skip well over half of them.
    const MAX_DENSITY: f64 = 1.0 / 3.0;

    /// Fewest weights (`k × n`, zeros included) for which the sparse kernel
    /// is used: it transposes `k` values of each pixel in and `n` out,
    /// which below this costs about what the skipped multiply-adds save
    /// (on 2 threads, against the dense kernel: 16 -> 64 the same time,
    /// 24 -> 16 1.7 times it; 24 -> 144 and 64 -> 24 0.8).
    const MIN_WEIGHTS: usize = 1536;

    /// `weights` (`[k][n]`) if few enough of them are nonzero.
    fn new(weights: &[f32], n: usize) -> Option<Self> {
        assert_eq!(weights.len() % n.max(1), 0, "weights shape");
        let k = weights.len() / n.max(1);
        let nonzeros = weights.iter().filter(|w| **w != 0.0).count();
        if weights.len() < Self::MIN_WEIGHTS
            || nonzeros as f64 > Self::MAX_DENSITY * weights.len() as f64
        {
            return None;
        }
        u32::try_from(k * SPARSE_PIXELS).ok()?;
        let (mut starts, mut offsets, mut values) = (vec![0], vec![], vec![]);
        for block in (0..k).step_by(SPARSE_K_BLOCK) {
            let inputs = block..k.min(block + SPARSE_K_BLOCK);
            for group in (0..n).step_by(SPARSE_CHANNELS) {
                let channels: Vec<Vec<(usize, f32)>> = (group..group + SPARSE_CHANNELS)
                    .map(|o| {
                        inputs
                            .clone()
                            .filter(|_| o < n)
                            .map(|i| (i, weights[i * n + o]))
                            .filter(|(_, w)| *w != 0.0)
                            .collect()
                    })
                    .collect();
                let steps = channels.iter().map(Vec::len).max().unwrap_or(0);
                for step in 0..steps {
                    for channel in &channels {
                        let (i, w) = channel.get(step).copied().unwrap_or((block, 0.0));
                        offsets.push((i * SPARSE_PIXELS) as u32);
                        values.push(w);
                    }
                }
                starts.push(values.len());
            }
        }
        Some(Self {
            starts,
            offsets,
            values,
            rows: k,
            columns: n,
        })
    }

    fn groups(&self) -> usize {
        self.columns.div_ceil(SPARSE_CHANNELS)
    }
}

/// Whether multiply-adds are vector instructions here: the sparse kernel's
/// `mul_add`s would otherwise be calls to a software fma, and gemm's AVX2
/// microkernel needs them.
fn fma_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    true
}

/// Whether gemm's AVX2 + FMA microkernel runs here and the CPU lacks
/// AVX-512 (see [`MatmulWeights::Matrix`]).
#[cfg(target_arch = "x86_64")]
fn panels_kernel_available() -> bool {
    fma_vectors() && !std::arch::is_x86_feature_detected!("avx512f")
}

/// `lhs [m × k] · weights [k × n] + bias (+ residual [m × n])`, then the
/// activation: a 1×1 convolution over `m` pixels (or a k×k one over im2col
/// patches), with the residual ADD that follows a projection fused in. The
/// output is split into one block per thread (or [`MIN_PANEL_PARTS`]), of
/// pixels or, for layers with few pixels (see [`MIN_PARALLEL_PIXELS`]), of
/// output channels, each computed single-threaded (by gemm's microkernels
/// on the weights' panels, one gemm call, or the sparse kernel over its
/// nonzero weights), then one pass that adds the
/// bias (and the residual) and activates it (gemm's own splitting costs
/// more on these shapes).
pub fn matmul_bias(
    lhs: &[f32],
    weights: &MatmulWeights,
    bias: &[f32],
    residual: Option<&[f32]>,
    activation: Activation,
) -> Aligned {
    let n = bias.len();
    let k = weights.rows(n);
    let m = lhs.len() / k;
    assert_eq!(m * k, lhs.len(), "matmul shapes");
    assert!(residual.is_none_or(|r| r.len() == m * n), "residual shape");
    let (threads, macs) = (rayon::current_num_threads(), m * weights.work_per_row(k, n));
    let parts = match weights {
        _ if macs < PARALLEL_MATMUL_MACS || threads == 1 => 1,
        MatmulWeights::Matrix(_) => threads,
        // Panels and sparse weights: parts cost no repacking.
        _ => threads.max(MIN_PANEL_PARTS.min(macs / MIN_PART_MACS)),
    };
    let sparse = matches!(weights, MatmulWeights::Sparse(_));
    // A sparse kernel's parts over channels each read all the pixels' inputs,
    // transposed first, in one pass: worth it where the inputs are the smaller
    // side (192 -> 1152 on 7x7 pixels), not where they are the larger
    // (1152 -> 192 on 2 threads: 1.25 times the time of parts over tiles of
    // pixels), unless there are fewer tiles than threads.
    let tile_per_thread = m.div_ceil(SPARSE_PIXELS) >= threads;
    let by_channels =
        m < MIN_PARALLEL_PIXELS && n >= 2 * LANES && !(sparse && k > n && tile_per_thread);
    let parts = if by_channels {
        parts.min(n / LANES)
    } else {
        parts
    };
    // Parts over channels all read every pixel: transposed once, for all.
    let tiles = (sparse && by_channels && parts > 1).then(|| sparse_tiles(lhs, k));
    // Rows split at multiples of this: whole tiles for the sparse kernel.
    let row_step = if sparse { SPARSE_PIXELS } else { 1 };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let dst = SharedOut(out.as_mut_ptr().cast::<f32>());
        let dst = &dst;
        (0..parts).into_par_iter().for_each(|part| {
            // Part `part` of `0..len`, cut at multiples of `step`.
            let share = |len: usize, step: usize| {
                let edge = |part: usize| (len.div_ceil(step) * part / parts * step).min(len);
                edge(part)..edge(part + 1)
            };
            let (rows, columns) = if by_channels {
                (0..m, share(n, LANES))
            } else {
                (share(m, row_step), 0..n)
            };
            let block = Block { rows, columns, n };
            // SAFETY: `block` lies inside the m × n output, which the parts
            // split without overlap, and inside `lhs` and `weights`.
            unsafe {
                match weights {
                    #[cfg(target_arch = "x86_64")]
                    MatmulWeights::Panels(panels) => block.panels(dst.0, lhs, panels),
                    MatmulWeights::Matrix(weights) => block.gemm(dst.0, lhs, k, weights),
                    MatmulWeights::Sparse(sparse) => {
                        block.sparse(dst.0, lhs, tiles.as_deref(), sparse)
                    }
                }
            };
            // SAFETY: the kernel wrote every value of the block; no other part touches it.
            unsafe { block.epilogue(dst.0, bias, residual, activation) };
        });
    };
    // SAFETY: the parts cover all m×n values, each written by a kernel.
    unsafe { Aligned::written_by(m * n, fill) }
}

/// The output of [`matmul_bias`], which its parts write through at disjoint blocks.
struct SharedOut(*mut f32);

// SAFETY: each part writes only its own block of the buffer.
unsafe impl Sync for SharedOut {}

/// Rows × columns of an `n`-column row-major output.
struct Block {
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
    n: usize,
}

impl Block {
    /// Writes `lhs [rows] · weights [.., columns]` to the block of `out`,
    /// panel by panel, each panel's tiles of pixels in turn: a panel is read
    /// from memory once and stays in cache over the tiles. Each output sums
    /// its `k` products in order, so the block's split changes no bits.
    ///
    /// # Safety
    /// `out` holds the whole output; `lhs` has `panels.rows` values per row;
    /// the block's columns start on a panel; no other thread accesses the
    /// block; [`panels_kernel_available`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn panels(&self, out: *mut f32, lhs: &[f32], panels: &ChannelBlocks) {
        let (k, n) = (panels.rows, self.n);
        assert!(
            self.rows.end * k <= lhs.len() && self.columns.end <= panels.c && n == panels.c,
            "block outside the matmul"
        );
        debug_assert_eq!(self.columns.start % LANES, 0, "block starts mid-panel");
        for first in self.columns.clone().step_by(LANES) {
            let channels = LANES.min(self.columns.end - first);
            // The panel's weights follow its bias line.
            let panel = panels
                .blocks
                .as_ptr()
                .cast::<f32>()
                .wrapping_add((first / LANES) * (k + 1) * LANES + LANES);
            let kernels = &PANEL_KERNELS[channels.div_ceil(LANES / PANEL_VECTORS) - 1];
            for row in self.rows.clone().step_by(PANEL_PIXELS) {
                let pixels = PANEL_PIXELS.min(self.rows.end - row);
                // SAFETY: the kernel writes `channels` × `pixels` values at
                // `out[row][first..]` (inside the block, checked above), reads
                // `k` lines of the panel and `k` values of each of the pixels'
                // rows of `lhs`; the caller's contract gives the CPU features.
                unsafe {
                    kernels[pixels - 1](
                        channels,
                        pixels,
                        k,
                        out.add(row * n + first),
                        panel,
                        lhs.as_ptr().add(row * k),
                        n as isize,     // dst_cs: the next pixel
                        1,              // dst_rs: the next channel
                        LANES as isize, // lhs_cs: the panel's next line
                        1,              // rhs_rs: the next input channel
                        k as isize,     // rhs_cs: the next pixel
                        0.0,            // alpha: the output is not read
                        1.0,            // beta: the product as it is
                        0,              // alpha_status 0: overwrite
                        false,          // conjugate dst, lhs, rhs: not for reals
                        false,
                        false,
                        panel, // next_lhs: a prefetch hint the AVX2 kernel ignores
                    )
                };
            }
        }
    }

    /// Writes `lhs [rows] · weights [.., columns]` to the block of `out`,
    /// a tile of [`SPARSE_PIXELS`] pixels at a time ([`transpose_tile`], or
    /// taken from `tiles`, all of them): each group of output channels sums
    /// its nonzero weights times their input channels' values of the tile's
    /// pixels, in order.
    ///
    /// # Safety
    /// `out` holds the whole output; `lhs` has `weights.rows` values per
    /// row; `tiles`, if any, are [`sparse_tiles`] of `lhs`; the block
    /// starts on a tile; no other thread accesses the block.
    unsafe fn sparse(
        &self,
        out: *mut f32,
        lhs: &[f32],
        tiles: Option<&[f32]>,
        weights: &SparseWeights,
    ) {
        let (k, n) = (weights.rows, self.n);
        let tile_len = k * SPARSE_PIXELS;
        assert!(
            self.rows.end * k <= lhs.len()
                && tiles.is_none_or(|t| t.len() == lhs.len().div_ceil(tile_len) * tile_len)
                && self.rows.start.is_multiple_of(SPARSE_PIXELS)
                && self.columns.end <= weights.columns
                && self.columns.start.is_multiple_of(SPARSE_CHANNELS),
            "block outside the matmul"
        );
        let groups =
            self.columns.start / SPARSE_CHANNELS..self.columns.end.div_ceil(SPARSE_CHANNELS);
        let first_channel = groups.start * SPARSE_CHANNELS;
        let mut sums = Aligned::filled(groups.len() * SPARSE_CHANNELS * SPARSE_PIXELS, 0.0);
        let mut scratch = Aligned::filled(if tiles.is_some() { 0 } else { tile_len }, 0.0);
        vectorized(
            #[inline(always)]
            |_| {
                for first in self.rows.clone().step_by(SPARSE_PIXELS) {
                    let pixels = SPARSE_PIXELS.min(self.rows.end - first);
                    let tile = match tiles {
                        Some(tiles) => &tiles[first / SPARSE_PIXELS * tile_len..][..tile_len],
                        None => {
                            // SAFETY: the scratch holds a tile.
                            unsafe { transpose_tile(lhs, k, first, scratch.as_mut_ptr()) };
                            &scratch[..]
                        }
                    };
                    sums.fill(0.0);
                    for block in 0..k.div_ceil(SPARSE_K_BLOCK) {
                        let group_sums = sums.chunks_exact_mut(SPARSE_CHANNELS * SPARSE_PIXELS);
                        for (group, sums) in groups.clone().zip(group_sums) {
                            let at = block * weights.groups() + group;
                            let entries = weights.starts[at]..weights.starts[at + 1];
                            let sums: &mut [f32; SPARSE_CHANNELS * SPARSE_PIXELS] =
                                sums.try_into().expect("a group's sums");
                            match pixels.div_ceil(8) {
                                1 => sparse_steps::<1>(sums, tile, weights, entries),
                                2 => sparse_steps::<2>(sums, tile, weights, entries),
                                3 => sparse_steps::<3>(sums, tile, weights, entries),
                                _ => sparse_steps::<4>(sums, tile, weights, entries),
                            }
                        }
                    }
                    // Back to pixel-major, in blocks of 8 channels × 8 pixels.
                    for o in self.columns.clone().step_by(8) {
                        for p in (0..pixels).step_by(8) {
                            // SAFETY: the sums hold SPARSE_PIXELS values per
                            // channel of the block; pixels `first + p..` and
                            // channels `o..` are in the block.
                            unsafe {
                                transpose_block(
                                    sums.as_ptr().add((o - first_channel) * SPARSE_PIXELS + p),
                                    SPARSE_PIXELS,
                                    out.add((first + p) * n + o),
                                    n,
                                    [8.min(self.columns.end - o), 8.min(pixels - p)],
                                )
                            };
                        }
                    }
                }
            },
        )
    }

    /// Writes `lhs [rows] · weights [.., columns]` to the block of `out`.
    ///
    /// # Safety
    /// `out` holds the whole output; `lhs` has `k` values per row, `weights`
    /// `n` per row and `k` rows; no other thread accesses the block.
    unsafe fn gemm(&self, out: *mut f32, lhs: &[f32], k: usize, weights: &[f32]) {
        let (rows, columns, n) = (self.rows.len(), self.columns.len(), self.n);
        if rows == 0 || columns == 0 {
            return;
        }
        // Slices of K at places that depend on `k` alone; see [`MAX_GEMM_K`].
        let slices = k.div_ceil(MAX_GEMM_K).max(1);
        for slice in 0..slices {
            let (from, to) = (k * slice / slices, k * (slice + 1) / slices);
            // SAFETY: the caller's contract; the first slice only writes `out`
            // (the block, at row stride `n`), the others add to what it wrote.
            unsafe {
                gemm::gemm(
                    rows,
                    columns,
                    to - from,
                    out.add(self.rows.start * n + self.columns.start),
                    1,
                    n as isize,
                    slice > 0,
                    lhs[self.rows.start * k + from..].as_ptr(),
                    1,
                    k as isize,
                    weights[from * n + self.columns.start..].as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }

    /// Adds `bias` (and `skip`, shaped like the output) to the block, then
    /// activates it: one pass, in vector registers.
    ///
    /// # Safety
    /// As [`Self::gemm`], which wrote the block.
    unsafe fn epilogue(
        &self,
        out: *mut f32,
        bias: &[f32],
        skip: Option<&[f32]>,
        activation: Activation,
    ) {
        let (low, high) = activation.bounds();
        // Comparisons rather than `max`/`min`, which also order NaNs and do not vectorise as well.
        let clamp = move |v: f32| {
            let v = if v > low { v } else { low };
            if v < high { v } else { high }
        };
        let bias = &bias[self.columns.clone()];
        vectorized(
            #[inline(always)]
            move |_| {
                for row in self.rows.clone() {
                    let at = row * self.n + self.columns.start;
                    // SAFETY: the block's part of the row, written by the kernel, ours alone.
                    let out = unsafe { std::slice::from_raw_parts_mut(out.add(at), bias.len()) };
                    match skip {
                        Some(skip) => {
                            for ((o, s), b) in out.iter_mut().zip(&skip[at..]).zip(bias) {
                                *o = clamp(*o + (s + b));
                            }
                        }
                        None => {
                            for (o, b) in out.iter_mut().zip(bias) {
                                *o = clamp(*o + b);
                            }
                        }
                    }
                }
            },
        )
    }
}

/// `lhs` (`[m][k]`) as tiles of [`SPARSE_PIXELS`] pixels (see
/// [`transpose_tile`]), for the sparse kernel's parts that each take some
/// output channels of all pixels: transposed once, not by each part.
fn sparse_tiles(lhs: &[f32], k: usize) -> Aligned {
    let (tile_len, m) = (k * SPARSE_PIXELS, lhs.len() / k.max(1));
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(tile_len.max(1))
            .enumerate()
            .with_min_len(MIN_TASK_WORK.div_ceil(tile_len.max(1)))
            .for_each(|(t, tile)| {
                // Only the last tile can have fewer pixels: zeros past them.
                if (t + 1) * SPARSE_PIXELS > m {
                    tile.fill(MaybeUninit::new(0.0));
                }
                // SAFETY: the tile holds `tile_len` values.
                unsafe { transpose_tile(lhs, k, t * SPARSE_PIXELS, tile.as_mut_ptr().cast()) }
            });
    };
    // SAFETY: each tile's pixels are written, and the last one's padding zeroed.
    unsafe { Aligned::written_by(m.div_ceil(SPARSE_PIXELS) * tile_len, fill) }
}

/// Writes the tile of the [`SPARSE_PIXELS`] pixels (rows) of `lhs` from
/// `first` (those of them that exist) to `tile`, as `k` rows (one per input
/// channel) of the pixels' values, in blocks of 8 × 8.
///
/// # Safety
/// `tile` holds `k` × [`SPARSE_PIXELS`] values.
unsafe fn transpose_tile(lhs: &[f32], k: usize, first: usize, tile: *mut f32) {
    let pixels = SPARSE_PIXELS.min(lhs.len() / k - first);
    vectorized(
        #[inline(always)]
        |_| {
            for i in (0..k).step_by(8) {
                for p in (0..pixels).step_by(8) {
                    // SAFETY: the block is inside the pixels' rows of `lhs`,
                    // and inside the tile (the caller's).
                    unsafe {
                        transpose_block(
                            lhs.as_ptr().add((first + p) * k + i),
                            k,
                            tile.add(i * SPARSE_PIXELS + p),
                            SPARSE_PIXELS,
                            [8.min(pixels - p), 8.min(k - i)],
                        )
                    };
                }
            }
        },
    )
}

/// Writes the transpose of the `rows × columns` block at `src` (at most 8×8,
/// rows `src_stride` apart) to `dst`: `dst[c * dst_stride + r] = src[r * src_stride + c]`.
///
/// # Safety
/// Both blocks lie inside their buffers; with AVX2 where the CPU has it.
#[inline(always)]
unsafe fn transpose_block(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
    [rows, columns]: [usize; 2],
) {
    #[cfg(target_arch = "x86_64")]
    if rows == 8 && columns == 8 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the caller's; the CPU has AVX2.
        return unsafe { transpose_8x8(src, src_stride, dst, dst_stride) };
    }
    for r in 0..rows {
        for c in 0..columns {
            // SAFETY: the caller's.
            unsafe { *dst.add(c * dst_stride + r) = *src.add(r * src_stride + c) };
        }
    }
}

/// [`transpose_block`] of a whole 8×8 block, in AVX2 registers.
///
/// # Safety
/// As [`transpose_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's: 8 rows of 8 values at `src`, 8 at `dst`.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_stride)));
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for c in 0..4 {
            _mm256_storeu_ps(
                dst.add(c * dst_stride),
                _mm256_permute2f128_ps::<0x20>(u[c], u[c + 4]),
            );
            _mm256_storeu_ps(
                dst.add((c + 4) * dst_stride),
                _mm256_permute2f128_ps::<0x31>(u[c], u[c + 4]),
            );
        }
    }
}

/// Adds `entries` of a group of [`SparseWeights`] times the tile's inputs
/// to the group's sums of the first `V` vectors of 8 pixels.
#[inline(always)]
fn sparse_steps<const V: usize>(
    sums: &mut [f32; SPARSE_CHANNELS * SPARSE_PIXELS],
    tile: &[f32],
    weights: &SparseWeights,
    entries: std::ops::Range<usize>,
) {
    assert!(entries.end <= weights.values.len() && entries.end <= weights.offsets.len());
    assert_eq!(tile.len(), weights.rows * SPARSE_PIXELS, "tile size");
    let mut acc = [[[0.0f32; 8]; V]; SPARSE_CHANNELS];
    for (acc, sum) in acc.iter_mut().zip(sums.chunks_exact(SPARSE_PIXELS)) {
        for (v, acc) in acc.iter_mut().enumerate() {
            acc.copy_from_slice(&sum[8 * v..8 * v + 8]);
        }
    }
    let tile = tile.as_ptr();
    for entry in entries.step_by(SPARSE_CHANNELS) {
        for (c, acc) in acc.iter_mut().enumerate() {
            // SAFETY: entries come in whole steps, inside both vectors
            // (asserted); each offset is a row of the tile, of SPARSE_PIXELS values.
            let (w, at) = unsafe {
                (
                    *weights.values.get_unchecked(entry + c),
                    *weights.offsets.get_unchecked(entry + c) as usize,
                )
            };
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = unsafe { load::<8>(tile.add(at + 8 * v)) };
                for l in 0..8 {
                    acc[l] = x[l].mul_add(w, acc[l]);
                }
            }
        }
    }
    for (acc, sum) in acc.iter().zip(sums.chunks_exact_mut(SPARSE_PIXELS)) {
        for (v, acc) in acc.iter().enumerate() {
            sum[8 * v..8 * v + 8].copy_from_slice(acc);
        }
    }
}

/// Runs `f` compiled for AVX-512 (or AVX2 + FMA) where the CPU has it: the
/// crate is built without `-C target-cpu`, so loops only get wide vectors in
/// such copies, chosen at run time. `f` and what it calls must be inlined.
/// `f` is told whether it runs the AVX-512 copy, whose registers hold
/// [`LANES`] values: a constant in each copy.
#[inline(always)]
fn vectorized<R>(f: impl FnOnce(bool) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce(bool) -> R) -> R {
            f(true)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce(bool) -> R) -> R {
            f(false)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the feature the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f(false)
}

/// Element-wise sum of two same-shaped tensors, then the activation.
pub fn add(a: &[f32], b: &[f32], activation: Activation) -> Aligned {
    assert_eq!(a.len(), b.len(), "add shapes");
    let (low, high) = activation.bounds();
    let sum = |out: &mut [MaybeUninit<f32>]| {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            o.write((x + y).clamp(low, high));
        }
    };
    // SAFETY: `out` has `a.len()` values, each written.
    unsafe { Aligned::written_by(a.len(), sum) }
}

/// [`LANES`] values on one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LANES]);

/// The weights `[rows][c]` and bias of a convolution computed directly
/// (depthwise, `rows` its taps; or k×k, its taps × input channels), packed
/// once at load time per block of [`LANES`] output channels: the block's
/// bias, then each row's weights, one cache line each (zero past the last
/// channel). A chunk of channels reads its weights from consecutive lines
/// instead of one line every `c` values; a block's rows are also the panel
/// that gemm's AVX2 microkernel reads for a matmul ([`MatmulWeights::Panels`]).
pub struct ChannelBlocks {
    blocks: Vec<Line>,
    rows: usize,
    c: usize,
}

impl ChannelBlocks {
    /// Packs row-major `[rows][c]` `weights` with `bias` (`c` values).
    pub fn new(weights: &[f32], bias: &[f32]) -> Self {
        let c = bias.len();
        let rows = weights.len() / c.max(1);
        assert_eq!(rows * c, weights.len(), "weights shape");
        let line = |values: &[f32], first: usize| {
            Line(std::array::from_fn(|l| {
                values.get(first + l).copied().unwrap_or(0.0)
            }))
        };
        let blocks = (0..c.div_ceil(LANES))
            .flat_map(|block| {
                let first = block * LANES;
                std::iter::once(line(bias, first))
                    .chain((0..rows).map(move |row| line(&weights[row * c..(row + 1) * c], first)))
            })
            .collect();
        Self { blocks, rows, c }
    }

    /// The weights of the chunk of `W` channels from `first`, which must
    /// not cross a block (a line).
    fn chunk<const W: usize>(&self, first: usize) -> ChunkWeights<W> {
        let (block, lane) = (first / LANES, first % LANES);
        assert!(
            lane + W <= LANES && first + W <= self.c,
            "chunk of {W} from channel {first} of {}",
            self.c
        );
        // Derived from the whole buffer: the rows' lines follow the bias's.
        ChunkWeights(
            self.blocks
                .as_ptr()
                .cast::<f32>()
                .wrapping_add(block * (self.rows + 1) * LANES + lane),
        )
    }
}

/// The bias and rows of weights of a chunk of `W` channels of
/// [`ChannelBlocks`]: channel `first` of its block's bias line.
#[derive(Clone, Copy)]
struct ChunkWeights<const W: usize>(*const f32);

impl<const W: usize> ChunkWeights<W> {
    #[inline(always)]
    fn bias(self) -> [f32; W] {
        // SAFETY: `ChannelBlocks::chunk` checked that the chunk's `W`
        // values lie inside the bias line.
        unsafe { load::<W>(self.0) }
    }

    /// Row `row`'s weights.
    ///
    /// # Safety
    /// `row` is below the blocks' rows.
    #[inline(always)]
    unsafe fn row(self, row: usize) -> [f32; W] {
        // SAFETY: row `row`'s line follows the bias line at this step, and
        // the chunk stays inside a line.
        unsafe { load::<W>(self.0.wrapping_add((1 + row) * LANES)) }
    }
}

/// Depthwise convolution (multiplier 1), `weights` packed from TFLite's `[kh][kw][c]`.
pub fn depthwise(
    input: &[f32],
    shape: Hwc,
    weights: &ChannelBlocks,
    window: Window,
    out_shape: Hwc,
    activation: Activation,
) -> Aligned {
    assert_eq!(
        (weights.rows, weights.c),
        (window.kh * window.kw, shape.c),
        "depthwise weights"
    );
    let depthwise = Depthwise {
        weights,
        kw: window.kw,
        activation,
    };
    sliding_window(input, shape, window, out_shape, &depthwise)
}

/// A k×k convolution of an input with few channels (an image), computed
/// directly: no im2col buffer, and a gemm would get too short a `k`.
/// `weights` are packed from `[kh][kw][cin][cout]`, the matmul layout of [`matmul_bias`].
pub fn conv_direct(
    input: &[f32],
    shape: Hwc,
    weights: &ChannelBlocks,
    window: Window,
    out_shape: Hwc,
    activation: Activation,
) -> Aligned {
    assert_eq!(
        (weights.rows, weights.c),
        (window.kh * window.kw * shape.c, out_shape.c),
        "convolution weights"
    );
    let conv = ConvDirect {
        cin: shape.c,
        weights,
        kw: window.kw,
        activation,
    };
    sliding_window(input, shape, window, out_shape, &conv)
}

/// Output pixels of a row computed together: independent FMA chains that
/// share each weight load.
const PIXELS: usize = 8;

/// A convolution that computes all output channels of a group of
/// [`PIXELS`] pixels of a row at a time.
trait PixelGroups: Sync {
    /// Channels of each output pixel.
    fn out_channels(&self) -> usize;

    /// Output channels `first..first + W` of a group of pixels; returns `W`.
    fn chunk<const W: usize>(
        &self,
        rows: &std::ops::Range<usize>,
        source: &impl Fn(usize, usize, usize) -> *const f32,
        first: usize,
        out: *mut f32,
        count: usize,
    ) -> usize;

    /// Writes the first `count` pixels of the group to `out` (pixel-major);
    /// `source(g, ky, kx)` points at channel 0 of the input pixel under tap
    /// (ky, kx) of pixel g, for the kernel rows `rows` (those inside the input).
    /// Channels go in vectors of `LANES` if `wide`, then 8, then one at a time.
    #[inline(always)]
    fn group(
        &self,
        rows: &std::ops::Range<usize>,
        source: impl Fn(usize, usize, usize) -> *const f32,
        out: *mut f32,
        count: usize,
        wide: bool,
    ) {
        lane_chunks(
            self.out_channels(),
            #[inline(always)]
            |first, left| match left {
                w if w >= LANES && wide => self.chunk::<LANES>(rows, &source, first, out, count),
                w if w >= 8 => self.chunk::<8>(rows, &source, first, out, count),
                _ => self.chunk::<1>(rows, &source, first, out, count),
            },
        );
    }
}

/// Runs `kernel` over every output row in parallel.
fn sliding_window(
    input: &[f32],
    shape: Hwc,
    window: Window,
    out_shape: Hwc,
    kernel: &impl PixelGroups,
) -> Aligned {
    assert_eq!(input.len(), shape.elements(), "input shape");
    // Each chunk writes its channels of a pixel at a stride of the
    // kernel's output channels: the output's, or values go unwritten or
    // out of the row.
    assert_eq!(kernel.out_channels(), out_shape.c, "output channels");
    let zeros = vec![0.0; shape.c];
    let taps = out_shape.w * out_shape.c * window.kh * window.kw;
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(out_shape.w * out_shape.c)
            .enumerate()
            .with_min_len(rows_per_task(out_shape.h, taps))
            .for_each_init(Vec::new, |sources, (oy, row)| {
                vectorized(
                    #[inline(always)]
                    |wide| {
                        let row = row.as_mut_ptr().cast::<f32>();
                        let input = InputRow {
                            input,
                            shape,
                            window,
                            zeros: &zeros,
                            oy,
                        };
                        input.groups(kernel, row, out_shape, sources, wide);
                    },
                );
            });
    };
    // SAFETY: every row writes all its values.
    unsafe { Aligned::written_by(out_shape.elements(), fill) }
}

/// The input under output row `oy` of a sliding window.
struct InputRow<'a> {
    input: &'a [f32],
    shape: Hwc,
    window: Window,
    /// `c` zeros: the source of the taps that fall in the padding.
    zeros: &'a [f32],
    oy: usize,
}

impl InputRow<'_> {
    /// Output row `oy` (`out`, `out_shape.w` pixels), [`PIXELS`] pixels at
    /// a time. Where all their taps are inside the input, each tap's source is
    /// a fixed offset from the pixel; elsewhere (borders, and the last group,
    /// which repeats its last pixel) they come from a table, with the padding
    /// read from `zeros`.
    ///
    /// `wide`: a chunk of [`LANES`] channels is one register (AVX-512). With
    /// AVX2 it takes two, and the [`PIXELS`] accumulators of such a chunk fill
    /// all 16 registers, spilled around every weight load: groups inside the
    /// input then go in chunks of 8 channels, which keep accumulators, weights
    /// and inputs in registers (the detector's rows of 28 to 112 pixels: 15 to
    /// 35 % faster).
    #[inline(always)]
    fn groups(
        &self,
        kernel: &impl PixelGroups,
        out: *mut f32,
        out_shape: Hwc,
        sources: &mut Vec<*const f32>,
        wide: bool,
    ) {
        let (shape, window, oy) = (self.shape, self.window, self.oy);
        let c = shape.c;
        let rows = window.taps(oy, window.pad_top, shape.h, window.kh);
        let kw = window.kw;
        let mut ox = 0;
        while ox < out_shape.w {
            let count = PIXELS.min(out_shape.w - ox);
            // Inside the row: `ox < out_shape.w`.
            let out = out.wrapping_add(ox * out_shape.c);
            let inside = count == PIXELS
                && window.taps(ox, window.pad_left, shape.w, kw) == (0..kw)
                && window.taps(ox + PIXELS - 1, window.pad_left, shape.w, kw) == (0..kw);
            if inside {
                // Input pixel of tap (ky, kx) of pixel g, as an offset from tap (0, 0) of pixel 0.
                let origin = (oy * window.stride) as isize - window.pad_top as isize;
                let origin = (origin * shape.w as isize + (ox * window.stride) as isize
                    - window.pad_left as isize)
                    * c as isize;
                let base = self.input.as_ptr().wrapping_offset(origin);
                let (row_step, pixel_step) = (shape.w * c, window.stride * c);
                // Inside the input for every tap of every pixel of the group.
                let source = |g: usize, ky: usize, kx: usize| {
                    base.wrapping_add(ky * row_step + kx * c + g * pixel_step)
                };
                kernel.group(&rows, source, out, count, wide);
            } else {
                // Tap-major: the pixels of one tap side by side.
                sources.clear();
                for ky in 0..window.kh {
                    let iy = window.source(oy, ky, window.pad_top, shape.h);
                    for kx in 0..kw {
                        for g in 0..PIXELS {
                            let x = ox + g.min(count - 1);
                            let ix = window.source(x, kx, window.pad_left, shape.w);
                            sources.push(match (iy, ix) {
                                (Some(iy), Some(ix)) => {
                                    self.input[(iy * shape.w + ix) * c..].as_ptr()
                                }
                                _ => self.zeros.as_ptr(),
                            });
                        }
                    }
                }
                let table = &sources[..window.kh * kw * PIXELS];
                let source = |g: usize, ky: usize, kx: usize| table[(ky * kw + kx) * PIXELS + g];
                // Each input load first loads its pointer from the table: the
                // widest chunks share it best, even spilled (rows of 7 and 14
                // pixels, all through the table, ran 10 to 20 % slower in 8s).
                kernel.group(&rows, source, out, count, true);
            }
            ox += count;
        }
    }
}

/// Runs `chunk` over `0..c` in chunks of [`LANES`], then 8, then 1: constant
/// widths compile to straight vector code.
#[inline(always)]
fn lane_chunks(c: usize, mut chunk: impl FnMut(usize, usize) -> usize) {
    let mut first = 0;
    while first < c {
        first += chunk(first, c - first);
    }
}

/// Writes `acc` (the values of `W` channels from `first` of `count` pixels),
/// activated, to `out` with `c` channels per pixel.
#[inline(always)]
fn store_pixels<const W: usize>(
    acc: &mut [[f32; W]; PIXELS],
    activation: Activation,
    out: *mut f32,
    c: usize,
    first: usize,
    count: usize,
) {
    for (g, acc) in acc.iter_mut().take(count).enumerate() {
        activation.apply(acc);
        // SAFETY: `out` holds `count` pixels of `c` channels, `first + W <= c`.
        unsafe {
            out.add(g * c + first)
                .cast::<[f32; W]>()
                .write_unaligned(*acc)
        };
    }
}

struct Depthwise<'a> {
    weights: &'a ChannelBlocks,
    kw: usize,
    activation: Activation,
}

/// `W` values at `at`.
///
/// # Safety
/// `at` points at `W` readable values.
#[inline(always)]
unsafe fn load<const W: usize>(at: *const f32) -> [f32; W] {
    // SAFETY: the caller's.
    unsafe { at.cast::<[f32; W]>().read_unaligned() }
}

impl PixelGroups for Depthwise<'_> {
    fn out_channels(&self) -> usize {
        self.weights.c
    }

    /// Channels `first..first + W` of a group of pixels, accumulated in
    /// registers over all taps; returns `W`.
    #[inline(always)]
    fn chunk<const W: usize>(
        &self,
        rows: &std::ops::Range<usize>,
        source: &impl Fn(usize, usize, usize) -> *const f32,
        first: usize,
        out: *mut f32,
        count: usize,
    ) -> usize {
        let (c, kw) = (self.weights.c, self.kw);
        let weights = self.weights.chunk::<W>(first);
        let mut acc = [weights.bias(); PIXELS];
        for ky in rows.clone() {
            for kx in 0..kw {
                // SAFETY: a tap is a row of the depthwise weights.
                let tap = unsafe { weights.row(ky * kw + kx) };
                for (g, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `first + W <= c`, and every source points at
                    // `c` readable values (an input pixel or `zeros`).
                    let input = unsafe { load::<W>(source(g, ky, kx).wrapping_add(first)) };
                    for l in 0..W {
                        acc[l] = input[l].mul_add(tap[l], acc[l]);
                    }
                }
            }
        }
        store_pixels(&mut acc, self.activation, out, c, first, count);
        W
    }
}

struct ConvDirect<'a> {
    cin: usize,
    weights: &'a ChannelBlocks,
    kw: usize,
    activation: Activation,
}

impl PixelGroups for ConvDirect<'_> {
    fn out_channels(&self) -> usize {
        self.weights.c
    }

    /// Output channels `first..first + W` of a group of pixels: each input
    /// value broadcast against a vector of weights; returns `W`.
    #[inline(always)]
    fn chunk<const W: usize>(
        &self,
        rows: &std::ops::Range<usize>,
        source: &impl Fn(usize, usize, usize) -> *const f32,
        first: usize,
        out: *mut f32,
        count: usize,
    ) -> usize {
        let (cin, kw) = (self.cin, self.kw);
        let weights = self.weights.chunk::<W>(first);
        let mut acc = [weights.bias(); PIXELS];
        for ky in rows.clone() {
            for kx in 0..kw {
                for ci in 0..cin {
                    // SAFETY: the weights have a row per tap and input channel.
                    let tap = unsafe { weights.row((ky * kw + kx) * cin + ci) };
                    for (g, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: every source points at `cin` readable values.
                        let input = unsafe { *source(g, ky, kx).add(ci) };
                        for l in 0..W {
                            acc[l] = input.mul_add(tap[l], acc[l]);
                        }
                    }
                }
            }
        }
        store_pixels(&mut acc, self.activation, out, self.weights.c, first, count);
        W
    }
}

/// Patches of a k×k convolution as rows `[oy*ow+ox][ky][kx][c]` (zero outside
/// the input), so the convolution becomes one matmul with OHWI weights.
pub fn im2col(input: &[f32], shape: Hwc, window: Window, out_shape: Hwc) -> Vec<f32> {
    let patch = window.kh * window.kw * shape.c;
    let mut out = vec![0.0; out_shape.h * out_shape.w * patch];
    out.par_chunks_mut(out_shape.w * patch)
        .enumerate()
        .with_min_len(rows_per_task(out_shape.h, out_shape.w * patch))
        .for_each(|(oy, row)| {
            for (ox, columns) in row.chunks_exact_mut(patch).enumerate() {
                for ky in 0..window.kh {
                    let Some(iy) = window.source(oy, ky, window.pad_top, shape.h) else {
                        continue;
                    };
                    for kx in 0..window.kw {
                        let Some(ix) = window.source(ox, kx, window.pad_left, shape.w) else {
                            continue;
                        };
                        let from = (iy * shape.w + ix) * shape.c;
                        let to = (ky * window.kw + kx) * shape.c;
                        columns[to..to + shape.c].copy_from_slice(&input[from..from + shape.c]);
                    }
                }
            }
        });
    out
}

/// Max pooling; padded taps are ignored (TFLite semantics).
pub fn max_pool(
    input: &[f32],
    shape: Hwc,
    window: Window,
    out_shape: Hwc,
    activation: Activation,
) -> Aligned {
    let c = shape.c;
    let mut out = Aligned::filled(out_shape.elements(), f32::NEG_INFINITY);
    let taps = out_shape.w * c * window.kh * window.kw;
    out.par_chunks_mut(out_shape.w * c)
        .enumerate()
        .with_min_len(rows_per_task(out_shape.h, taps))
        .for_each(|(oy, row)| {
            for (ox, pixel) in row.chunks_exact_mut(c).enumerate() {
                for ky in 0..window.kh {
                    let Some(iy) = window.source(oy, ky, window.pad_top, shape.h) else {
                        continue;
                    };
                    for kx in 0..window.kw {
                        let Some(ix) = window.source(ox, kx, window.pad_left, shape.w) else {
                            continue;
                        };
                        let source = &input[(iy * shape.w + ix) * c..][..c];
                        for (o, &x) in pixel.iter_mut().zip(source) {
                            *o = o.max(x);
                        }
                    }
                }
            }
            activation.apply(row);
        });
    out
}

/// Source coordinates and weight of one output coordinate, as TFLite's
/// reference `ResizeBilinear` computes them.
fn bilinear_source(o: usize, scale: f32, half_pixel: bool, size: usize) -> (usize, usize, f32) {
    let x = if half_pixel {
        (o as f32 + 0.5) * scale - 0.5
    } else {
        o as f32 * scale
    };
    let low = (x.floor() as isize).max(0) as usize;
    let high = (x.ceil() as usize).min(size - 1);
    (low, high, x - low as f32)
}

/// TFLite RESIZE_BILINEAR, then `activation` (that of a 1×1 convolution
/// moved in front of it), then plus `skip` (shaped like the output: an ADD
/// without activation that reads it, fused), on each row while it is in cache.
pub fn resize_bilinear(
    input: &[f32],
    shape: Hwc,
    out_shape: Hwc,
    align_corners: bool,
    half_pixel: bool,
    skip: Option<&[f32]>,
    activation: Activation,
) -> Aligned {
    assert!(
        skip.is_none_or(|s| s.len() == out_shape.elements()),
        "skip shape"
    );
    let scale = |inp: usize, out: usize| {
        if align_corners && out > 1 {
            (inp - 1) as f32 / (out - 1) as f32
        } else {
            inp as f32 / out as f32
        }
    };
    let (sy, sx) = (scale(shape.h, out_shape.h), scale(shape.w, out_shape.w));
    let c = shape.c;
    let columns: Vec<_> = (0..out_shape.w)
        .map(|ox| bilinear_source(ox, sx, half_pixel, shape.w))
        .collect();
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(out_shape.w * c)
            .enumerate()
            .with_min_len(rows_per_task(out_shape.h, 4 * out_shape.w * c))
            .for_each(|(oy, row)| {
                let (y0, y1, fy) = bilinear_source(oy, sy, half_pixel, shape.h);
                for (pixel, &(x0, x1, fx)) in row.chunks_exact_mut(c).zip(&columns) {
                    let at = |y: usize, x: usize| &input[(y * shape.w + x) * c..][..c];
                    let (a, b, p, q) = (at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1));
                    for (i, o) in pixel.iter_mut().enumerate() {
                        o.write(
                            a[i] * (1.0 - fy) * (1.0 - fx)
                                + p[i] * fy * (1.0 - fx)
                                + b[i] * (1.0 - fy) * fx
                                + q[i] * fy * fx,
                        );
                    }
                }
                // SAFETY: the loop above wrote every value of the row.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(row.as_mut_ptr().cast::<f32>(), row.len())
                };
                activation.apply(row);
                if let Some(skip) = skip {
                    let skip = &skip[oy * row.len()..][..row.len()];
                    row.iter_mut().zip(skip).for_each(|(o, s)| *o += s);
                }
            });
    };
    // SAFETY: every row writes all its values.
    unsafe { Aligned::written_by(out_shape.elements(), fill) }
}

/// TFLite DEPTH_TO_SPACE (DCR order): channel block `(dy*b + dx)` moves to pixel offset (dy, dx).
pub fn depth_to_space(input: &[f32], shape: Hwc, block: usize) -> Aligned {
    let out_c = shape.c / (block * block);
    assert_eq!(out_c * block * block, shape.c, "depth_to_space channels");
    assert_eq!(input.len(), shape.elements(), "input shape");
    let fill = |out: &mut [MaybeUninit<f32>]| {
        // One input row makes `block` output rows.
        out.par_chunks_mut(shape.w * shape.c)
            .zip(input.par_chunks(shape.w * shape.c))
            .with_min_len(rows_per_task(shape.h, shape.w * shape.c))
            .for_each(|(rows, row)| {
                for (x, pixel) in row.chunks_exact(shape.c).enumerate() {
                    for (b, values) in pixel.chunks_exact(out_c).enumerate() {
                        let (dy, dx) = (b / block, b % block);
                        let to = (dy * shape.w * block + x * block + dx) * out_c;
                        for (o, v) in rows[to..to + out_c].iter_mut().zip(values) {
                            o.write(*v);
                        }
                    }
                }
            });
    };
    // SAFETY: each input row's `w × c` values land, once each, in its
    // `block` output rows, which hold as many.
    unsafe { Aligned::written_by(input.len(), fill) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of a depthwise convolution, to check the fast kernel against.
    fn naive_depthwise(
        input: &[f32],
        s: Hwc,
        w: &[f32],
        bias: &[f32],
        win: Window,
        o: Hwc,
    ) -> Vec<f32> {
        let mut out = vec![0.0; o.elements()];
        for oy in 0..o.h {
            for ox in 0..o.w {
                for c in 0..s.c {
                    let mut acc = bias[c];
                    for ky in 0..win.kh {
                        for kx in 0..win.kw {
                            let iy = (oy * win.stride + ky) as isize - win.pad_top as isize;
                            let ix = (ox * win.stride + kx) as isize - win.pad_left as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                acc += input[((iy as usize) * s.w + ix as usize) * s.c + c]
                                    * w[(ky * win.kw + kx) * s.c + c];
                            }
                        }
                    }
                    out[(oy * o.w + ox) * s.c + c] = acc;
                }
            }
        }
        out
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect()
    }

    #[test]
    fn depthwise_matches_definition_with_stride_and_padding() {
        // Channels in every mix of chunks: single ones, half a vector,
        // whole vectors in one or more blocks, with and without a tail (16
        // and 40 end on the last packed line); 37 columns: groups of pixels
        // at the borders (taps from a table), inside (taps at fixed
        // offsets) and a last, partial one.
        let cases = [(3, 1, 1, 5), (5, 2, 1, 29), (3, 2, 0, 21), (5, 1, 2, 29)]
            .into_iter()
            .chain([1, 8, 16, 24, 40].map(|c| (3, 1, 1, c)));
        for (k, stride, pad, c) in cases {
            let s = Hwc { h: 9, w: 37, c };
            let win = Window {
                kh: k,
                kw: k,
                stride,
                pad_top: pad,
                pad_left: pad,
            };
            let o = Hwc {
                h: (s.h + 2 * pad - k) / stride + 1,
                w: (s.w + 2 * pad - k) / stride + 1,
                c: s.c,
            };
            let (input, w, bias) = (ramp(s.elements()), ramp(k * k * s.c), ramp(s.c));
            let packed = ChannelBlocks::new(&w, &bias);
            let fast = depthwise(&input, s, &packed, win, o, Activation::None);
            let slow = naive_depthwise(&input, s, &w, &bias, win, o);
            assert_close(&fast, &slow);
        }
    }

    #[test]
    fn conv_direct_matches_im2col_and_matmul() {
        // 3 input channels (an image); output channels in every mix of
        // chunks (29: a vector, a half one and single channels); borders,
        // inside groups and a partial one.
        let cases = [(3, 2, 1, 29), (3, 1, 1, 29), (2, 1, 0, 29)]
            .into_iter()
            .chain([1, 8, 16, 24, 40].map(|c| (3, 2, 1, c)));
        for (k, stride, pad, out_c) in cases {
            let s = Hwc { h: 7, w: 37, c: 3 };
            let win = Window {
                kh: k,
                kw: k,
                stride,
                pad_top: pad,
                pad_left: pad,
            };
            let o = Hwc {
                h: (s.h + 2 * pad - k) / stride + 1,
                w: (s.w + 2 * pad - k) / stride + 1,
                c: out_c,
            };
            let (input, w, bias) = (ramp(s.elements()), ramp(k * k * s.c * o.c), ramp(o.c));
            let packed = ChannelBlocks::new(&w, &bias);
            let fast = conv_direct(&input, s, &packed, win, o, Activation::Relu6);
            let patches = im2col(&input, s, win, o);
            let slow = naive_matmul(&patches, &w, &bias, None, Activation::Relu6);
            assert_close(&fast, &slow);
        }
    }

    /// Direct definition of `lhs · weights + bias + residual`, activated.
    fn naive_matmul(
        lhs: &[f32],
        weights: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
        activation: Activation,
    ) -> Vec<f32> {
        let n = bias.len();
        let k = weights.len() / n;
        let mut out: Vec<f32> = (0..lhs.len() / k * n)
            .map(|i| {
                let (row, col) = (i / n, i % n);
                let dot: f32 = (0..k)
                    .map(|j| lhs[row * k + j] * weights[j * n + col])
                    .sum();
                dot + bias[col] + residual.map_or(0.0, |r| r[i])
            })
            .collect();
        activation.apply(&mut out);
        out
    }

    fn assert_close(fast: &[f32], slow: &[f32]) {
        assert_eq!(fast.len(), slow.len());
        for (a, b) in fast.iter().zip(slow) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn matmul_bias_matches_definition() {
        // Single-threaded, split into bands of pixels, and into blocks of
        // channels, one partial (these two when there is more than one
        // thread); the last, on a few threads, into more bands than threads.
        for (m, k, n) in [(70, 33, 9), (257, 64, 40), (40, 128, 136), (600, 96, 48)] {
            let (lhs, weights, bias, residual) = (ramp(m * k), ramp(k * n), ramp(n), ramp(m * n));
            // Both layouts, whichever this CPU would load.
            let mut layouts = vec![MatmulWeights::Matrix(weights.clone())];
            #[cfg(target_arch = "x86_64")]
            if panels_kernel_available() {
                layouts.push(MatmulWeights::Panels(ChannelBlocks::new(&weights, &bias)));
            }
            for layout in &layouts {
                for skip in [None, Some(residual.as_slice())] {
                    let fast = matmul_bias(&lhs, layout, &bias, skip, Activation::Relu);
                    assert_eq!(fast.as_ptr().align_offset(CACHE_LINE), 0, "aligned output");
                    let slow = naive_matmul(&lhs, &weights, &bias, skip, Activation::Relu);
                    assert_close(&fast, &slow);
                }
            }
        }
    }

    #[test]
    fn sparse_matmul_gives_the_dense_kernels_values() {
        // One thread and several; tiles split in parts, or channels (all
        // transposed first); two blocks of K; partial tiles, vectors and
        // groups of channels.
        for (m, k, n) in [
            (53, 300, 37),
            (400, 96, 64),
            (100, 256, 512),
            // Channels split with a part ending mid-group.
            (100, 200, 301),
            (49, 1152, 192),
        ] {
            let (lhs, bias, residual) = (ramp(m * k), ramp(n), ramp(m * n));
            // Three in four weights zero, in no pattern.
            let mut weights = ramp(k * n);
            for (i, w) in weights.iter_mut().enumerate() {
                if (i * 2_654_435_761) % 1000 >= 250 {
                    *w = 0.0;
                }
            }
            let sparse = SparseWeights::new(&weights, n).expect("mostly zeros");
            let sparse = MatmulWeights::Sparse(sparse);
            let dense = MatmulWeights::dense(weights.clone(), &bias);
            for skip in [None, Some(residual.as_slice())] {
                // No clamp that could hide a wrong value.
                let slow = naive_matmul(&lhs, &weights, &bias, skip, Activation::None);
                let reference = matmul_bias(&lhs, &dense, &bias, skip, Activation::None);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
                    let fast = pool
                        .expect("a thread pool")
                        .install(|| matmul_bias(&lhs, &sparse, &bias, skip, Activation::None));
                    assert_close(&fast, &slow);
                    // The same sums in the same order as gemm's kernel on panels.
                    if matches!(dense, MatmulWeights::Panels(_)) {
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&fast), bits(&reference), "{m}x{k}x{n} on {threads}");
                    }
                }
            }
        }
    }

    #[test]
    fn sparse_weights_only_where_they_pay() {
        let (k, n) = (64, 32);
        let mostly_zero: Vec<f32> = (0..k * n)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        assert!(SparseWeights::new(&mostly_zero, n).is_some());
        // Half zeros, or too few weights for the transposes to pay.
        let half: Vec<f32> = (0..k * n).map(|i| (i % 2) as f32).collect();
        assert!(SparseWeights::new(&half, n).is_none());
        assert!(SparseWeights::new(&mostly_zero[..16 * n], n).is_none());
    }

    #[test]
    fn aligned_values_start_on_a_cache_line() {
        for len in [0, 1, 15, 16, 1000, 100_000] {
            let values = Aligned::filled(len, 2.5);
            assert_eq!(values.as_ptr().align_offset(CACHE_LINE), 0);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v == 2.5));
            let (buffer, offset) = values.into_parts();
            // Less than a line of padding, and the values at its end.
            assert!(offset < CACHE_LINE / 4, "offset {offset}");
            assert_eq!(buffer.len(), offset + len);
            assert!(buffer[offset..].iter().all(|&v| v == 2.5));
        }
    }

    #[test]
    fn relu6_clamps() {
        let mut v = [-1.0, 3.0, 7.0];
        Activation::Relu6.apply(&mut v);
        assert_eq!(v, [0.0, 3.0, 6.0]);
    }

    #[test]
    fn im2col_of_1x1_is_identity() {
        let s = Hwc { h: 3, w: 4, c: 2 };
        let input = ramp(s.elements());
        let win = Window {
            kh: 1,
            kw: 1,
            stride: 1,
            pad_top: 0,
            pad_left: 0,
        };
        assert_eq!(im2col(&input, s, win, s), input);
    }

    #[test]
    fn resize_doubles_with_half_pixel_centers() {
        // One row [0, 4] upscaled to 4 columns: TFLite gives [0, 1, 3, 4].
        let s = Hwc { h: 1, w: 2, c: 1 };
        let out = resize_bilinear(
            &[0.0, 4.0],
            s,
            Hwc { h: 1, w: 4, c: 1 },
            false,
            true,
            None,
            Activation::None,
        );
        assert_eq!(*out, [0.0, 1.0, 3.0, 4.0]);
        // The activation applies after the interpolation: -2, 0, 4, 6 → 0, 0, 4, 6.
        let out = resize_bilinear(
            &[-2.0, 6.0],
            s,
            Hwc { h: 1, w: 4, c: 1 },
            false,
            true,
            None,
            Activation::Relu,
        );
        assert_eq!(*out, [0.0, 0.0, 4.0, 6.0]);
        // A fused ADD: the skip tensor is added after the activation.
        let out = resize_bilinear(
            &[-2.0, 6.0],
            s,
            Hwc { h: 1, w: 4, c: 1 },
            false,
            true,
            Some(&[1.0, 1.0, -5.0, 1.0]),
            Activation::Relu,
        );
        assert_eq!(*out, [1.0, 1.0, -1.0, 7.0]);
    }

    #[test]
    fn max_pool_ignores_padding() {
        let s = Hwc { h: 2, w: 2, c: 1 };
        let win = Window {
            kh: 2,
            kw: 2,
            stride: 2,
            pad_top: 0,
            pad_left: 0,
        };
        let out = max_pool(
            &[-3.0, -1.0, -2.0, -4.0],
            s,
            win,
            Hwc { h: 1, w: 1, c: 1 },
            Activation::None,
        );
        assert_eq!(*out, [-1.0]);
    }

    #[test]
    fn depth_to_space_moves_channel_blocks_to_pixels() {
        let s = Hwc { h: 1, w: 1, c: 4 };
        assert_eq!(
            *depth_to_space(&[1.0, 2.0, 3.0, 4.0], s, 2),
            [1.0, 2.0, 3.0, 4.0]
        );
        let s = Hwc { h: 1, w: 2, c: 4 };
        // Output 2x4x1: row 0 = [a0, a1, b0, b1], row 1 = [a2, a3, b2, b3].
        let out = depth_to_space(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], s, 2);
        assert_eq!(*out, [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]);
        // Several input rows (each its own pair of output rows), 2 channels a block.
        let (s, block, out_c) = (Hwc { h: 3, w: 2, c: 8 }, 2, 2);
        let input = ramp(s.elements());
        let out = depth_to_space(&input, s, block);
        for (y, x, dy, dx, i) in (0..s.h).flat_map(|y| {
            (0..s.w).flat_map(move |x| {
                (0..block).flat_map(move |dy| {
                    (0..block).flat_map(move |dx| (0..out_c).map(move |i| (y, x, dy, dx, i)))
                })
            })
        }) {
            let to = ((y * block + dy) * s.w * block + x * block + dx) * out_c + i;
            let from = (y * s.w + x) * s.c + (dy * block + dx) * out_c + i;
            assert_eq!(out[to], input[from]);
        }
    }
}
