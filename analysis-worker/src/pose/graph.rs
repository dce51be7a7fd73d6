//! A TFLite model converted by `cargo xtask models`, run natively in candle.
//!
//! The safetensors file holds the model's constant tensors (`{model}/t{id}`, TFLite
//! layouts, f32) and its operator list as JSON (metadata key `model`, format
//! documented in `xtask/src/models.rs`). Activations are candle tensors in
//! NHWC (those the kernels write own cache-line-aligned buffers); 1×1
//! convolutions are matmuls (bias fused), k×k ones im2col + matmul, depthwise
//! convolutions and the other spatial ops the kernels in [`super::kernels`],
//! an explicit PAD read only by VALID convolutions is folded into them, a
//! residual ADD into the projection convolution (or upsampling) before it,
//! and a 1×1 convolution that reads a bilinear upsampling runs before it instead.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use candle_core::{CpuStorage, Device, Storage, Tensor};
use serde::Deserialize;

use super::PoseError;
use super::kernels::{self, Activation, Aligned, ChannelBlocks, Hwc, MatmulWeights, Window};

/// The `model` metadata of a file made by `cargo xtask models`.
#[derive(Deserialize)]
pub struct ModelFile {
    /// Model identifier for reports, e.g. `blazepose-full@0.5.1675469404`.
    pub id: String,
    graphs: HashMap<String, GraphSpec>,
}

impl ModelFile {
    pub fn read(tensors_file: &[u8]) -> Result<Self, PoseError> {
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(tensors_file).map_err(weights_error)?;
        let model = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("model"))
            .ok_or_else(|| weights_error("no model metadata (made by `cargo xtask models`?)"))?;
        serde_json::from_str(model).map_err(weights_error)
    }
}

#[derive(Deserialize)]
struct GraphSpec {
    inputs: Vec<usize>,
    outputs: HashMap<String, usize>,
    ops: Vec<OpSpec>,
}

#[derive(Deserialize)]
struct OpSpec {
    inputs: Vec<usize>,
    output: usize,
    shape: Vec<usize>,
    #[serde(flatten)]
    kind: OpKind,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PaddingSpec {
    Same,
    Valid,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpKind {
    #[serde(rename = "conv_2d")]
    Conv2d {
        stride: [usize; 2],
        padding: PaddingSpec,
        activation: Activation,
    },
    #[serde(rename = "depthwise_conv_2d")]
    DepthwiseConv2d {
        stride: [usize; 2],
        padding: PaddingSpec,
        activation: Activation,
    },
    #[serde(rename = "max_pool_2d")]
    MaxPool2d {
        stride: [usize; 2],
        filter: [usize; 2],
        padding: PaddingSpec,
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    Concatenation {
        axis: i64,
        activation: Activation,
    },
    ResizeBilinear {
        align_corners: bool,
        half_pixel_centers: bool,
    },
    DepthToSpace {
        block_size: usize,
    },
    /// `[before, after]` per dimension, NHWC.
    Pad {
        pads: Vec<usize>,
    },
    Reshape,
    Logistic,
}

/// Where a convolution's zero padding comes from.
#[derive(Debug, Clone, Copy)]
enum Padding {
    /// TFLite SAME: computed from the input size.
    Same,
    /// Fixed top/left padding (VALID, or a folded PAD op).
    Fixed { top: usize, left: usize },
}

enum Layer {
    /// Weights as the `[kh*kw*cin, cout]` matrix of the matmul; with
    /// `residual`, the node's second input is added before the activation
    /// (a projection and the ADD after it, fused).
    Conv {
        weights: MatmulWeights,
        bias: Vec<f32>,
        /// The weights packed for [`kernels::conv_direct`], for a k×k
        /// convolution of an input with few channels (an image).
        direct: Option<ChannelBlocks>,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
        activation: Activation,
        residual: bool,
    },
    /// Weights packed from `[kh][kw][c]`.
    Depthwise {
        weights: ChannelBlocks,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
        activation: Activation,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    Concat {
        axis: usize,
        activation: Activation,
    },
    /// With the activation of a 1×1 convolution moved in front of it; with
    /// `residual`, the node's second input is added after the activation
    /// (an ADD without activation after it, fused).
    Resize {
        align_corners: bool,
        half_pixel_centers: bool,
        activation: Activation,
        residual: bool,
    },
    DepthToSpace {
        block: usize,
    },
    Pad {
        pads: Vec<usize>,
    },
    Reshape,
    Logistic,
}

struct Node {
    layer: Layer,
    inputs: Vec<usize>,
    output: usize,
    shape: Vec<usize>,
    /// Activations no later node reads, dropped after this one to bound memory.
    release: Vec<usize>,
}

/// A converted model, pruned to the outputs asked for at load time.
pub struct Graph {
    nodes: Vec<Node>,
    input: usize,
    outputs: Vec<(String, usize)>,
}

fn weights_error(e: impl std::fmt::Display) -> PoseError {
    PoseError::Weights(e.to_string())
}

fn inference_error(e: impl std::fmt::Display) -> PoseError {
    PoseError::Inference(e.to_string())
}

impl Graph {
    /// Loads `model` (`landmark` or `detector`) from a converted file's
    /// `tensors`, keeping only the ops needed for the `wanted` outputs (TFLite names).
    pub fn load(
        file: &ModelFile,
        tensors: &safetensors::SafeTensors,
        model: &str,
        wanted: &[&str],
    ) -> Result<Self, PoseError> {
        let spec = file
            .graphs
            .get(model)
            .ok_or_else(|| weights_error(format!("no {model} graph in the weights")))?;
        let constant = |id: usize| -> Result<(Vec<f32>, Vec<usize>), PoseError> {
            let view = tensors
                .tensor(&format!("{model}/t{id}"))
                .map_err(weights_error)?;
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((values, view.shape().to_vec()))
        };
        let is_constant = |id: usize| tensors.tensor(&format!("{model}/t{id}")).is_ok();

        let outputs = wanted
            .iter()
            .map(|name| {
                spec.outputs
                    .get(*name)
                    .map(|&id| (name.to_string(), id))
                    .ok_or_else(|| weights_error(format!("model has no output {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let input = *spec
            .inputs
            .first()
            .ok_or_else(|| weights_error("model has no input"))?;

        // Keep the ops the wanted outputs depend on.
        let mut needed: HashSet<usize> = outputs.iter().map(|(_, id)| *id).collect();
        let mut keep = vec![false; spec.ops.len()];
        for (index, op) in spec.ops.iter().enumerate().rev() {
            if needed.contains(&op.output) {
                keep[index] = true;
                needed.extend(op.inputs.iter().copied());
            }
        }

        let mut folded_pads: HashMap<usize, (usize, [usize; 2])> = HashMap::new();
        let mut nodes = Vec::new();
        for (op, _) in spec.ops.iter().zip(&keep).filter(|(_, kept)| **kept) {
            let activations: Vec<usize> = op
                .inputs
                .iter()
                .copied()
                .filter(|&id| !is_constant(id))
                .collect();
            let mut inputs = activations.clone();
            let fixed_or_same = |padding: PaddingSpec, inputs: &mut Vec<usize>| match padding {
                PaddingSpec::Same => Padding::Same,
                PaddingSpec::Valid => match folded_pads.get(&inputs[0]) {
                    Some(&(source, [top, left])) => {
                        inputs[0] = source;
                        Padding::Fixed { top, left }
                    }
                    None => Padding::Fixed { top: 0, left: 0 },
                },
            };
            let layer = match &op.kind {
                OpKind::Conv2d {
                    stride,
                    padding,
                    activation,
                } => {
                    let (w, shape) = constant(op.inputs[1])?;
                    let (bias, _) = constant(op.inputs[2])?;
                    let [cout, kh, kw, cin] = shape[..] else {
                        return Err(weights_error("conv weights are not OHWI"));
                    };
                    if bias.len() != cout {
                        return Err(weights_error(
                            "conv bias does not match its output channels",
                        ));
                    }
                    // OHWI → the [kh*kw*cin × cout] right-hand side of the matmul.
                    let taps = kh * kw * cin;
                    let weights: Vec<f32> = (0..taps)
                        .flat_map(|tap| (0..cout).map(move |o| (tap, o)))
                        .map(|(tap, o)| w[o * taps + tap])
                        .collect();
                    let padding = fixed_or_same(*padding, &mut inputs);
                    square_stride(stride)?;
                    let direct = (([kh, kw], stride[0]) != ([1, 1], 1)
                        && cin <= DIRECT_CONV_CHANNELS)
                        .then(|| ChannelBlocks::new(&weights, &bias));
                    Layer::Conv {
                        weights: MatmulWeights::new(weights, &bias),
                        bias,
                        direct,
                        kernel: [kh, kw],
                        stride: stride[0],
                        padding,
                        activation: *activation,
                        residual: false,
                    }
                }
                OpKind::DepthwiseConv2d {
                    stride,
                    padding,
                    activation,
                } => {
                    let (weights, shape) = constant(op.inputs[1])?;
                    let (bias, _) = constant(op.inputs[2])?;
                    let [1, kh, kw, c] = shape[..] else {
                        return Err(weights_error("depthwise multiplier is not 1"));
                    };
                    if bias.len() != c {
                        return Err(weights_error("depthwise bias does not match its channels"));
                    }
                    let padding = fixed_or_same(*padding, &mut inputs);
                    square_stride(stride)?;
                    Layer::Depthwise {
                        weights: ChannelBlocks::new(&weights, &bias),
                        kernel: [kh, kw],
                        stride: stride[0],
                        padding,
                        activation: *activation,
                    }
                }
                OpKind::MaxPool2d {
                    stride,
                    filter,
                    padding,
                    activation,
                } => {
                    square_stride(stride)?;
                    let padding = fixed_or_same(*padding, &mut inputs);
                    Layer::MaxPool {
                        kernel: *filter,
                        stride: stride[0],
                        padding,
                        activation: *activation,
                    }
                }
                OpKind::Add { activation } => Layer::Add {
                    activation: *activation,
                },
                OpKind::Concatenation { axis, activation } => {
                    let axis = if *axis < 0 {
                        op.shape.len() as i64 + axis
                    } else {
                        *axis
                    } as usize;
                    Layer::Concat {
                        axis,
                        activation: *activation,
                    }
                }
                OpKind::ResizeBilinear {
                    align_corners,
                    half_pixel_centers,
                } => Layer::Resize {
                    align_corners: *align_corners,
                    half_pixel_centers: *half_pixel_centers,
                    activation: Activation::None,
                    residual: false,
                },
                OpKind::DepthToSpace { block_size } => Layer::DepthToSpace { block: *block_size },
                OpKind::Pad { pads } => {
                    let spatial_only =
                        pads.len() == 8 && pads[0..2] == [0, 0] && pads[6..8] == [0, 0];
                    // Every reader a VALID convolution of it (the detector's
                    // heads read one padded tensor in pairs).
                    let readers: Vec<&OpSpec> = spec
                        .ops
                        .iter()
                        .zip(&keep)
                        .filter(|(next, kept)| **kept && next.inputs.contains(&op.output))
                        .map(|(next, _)| next)
                        .collect();
                    let foldable = spatial_only
                        && !readers.is_empty()
                        && !outputs.iter().any(|(_, id)| *id == op.output)
                        && readers.iter().all(|next| {
                            next.inputs.first() == Some(&op.output)
                                && next.inputs.iter().filter(|&&id| id == op.output).count() == 1
                                && matches!(
                                    next.kind,
                                    OpKind::Conv2d {
                                        padding: PaddingSpec::Valid,
                                        ..
                                    } | OpKind::DepthwiseConv2d {
                                        padding: PaddingSpec::Valid,
                                        ..
                                    }
                                )
                        });
                    if foldable {
                        folded_pads.insert(op.output, (activations[0], [pads[2], pads[4]]));
                        continue;
                    }
                    Layer::Pad { pads: pads.clone() }
                }
                OpKind::Reshape => Layer::Reshape,
                OpKind::Logistic => Layer::Logistic,
            };
            if inputs.len() != expected_inputs(&layer, inputs.len()) {
                return Err(weights_error(
                    "an operator has a constant where an activation is expected",
                ));
            }
            nodes.push(Node {
                layer,
                inputs,
                output: op.output,
                shape: op.shape.clone(),
                release: Vec::new(),
            });
        }

        convolve_before_resizing(&mut nodes, &outputs);
        fuse_residual_adds(&mut nodes, &outputs);

        // Release each activation after its last reader (never the outputs).
        let mut seen: HashSet<usize> = outputs.iter().map(|(_, id)| *id).collect();
        for node in nodes.iter_mut().rev() {
            node.release = node
                .inputs
                .iter()
                .copied()
                .filter(|id| seen.insert(*id))
                .collect();
        }
        Ok(Self {
            nodes,
            input,
            outputs,
        })
    }

    /// Runs the graph on one NHWC input; returns the wanted outputs in the order asked for.
    /// The ops run on a rayon worker, which then takes part in each op's
    /// parallel loop instead of handing it over and waiting for it.
    pub fn run(&self, input: Tensor) -> Result<Vec<Tensor>, PoseError> {
        rayon::scope(|_| self.run_nodes(input, None))
    }

    /// As [`Self::run`], and appends each op's time to `times`: where a
    /// model's time goes, for `pose-bench --layers`.
    pub fn run_profiled(
        &self,
        input: Tensor,
        times: &mut Vec<LayerTime>,
    ) -> Result<Vec<Tensor>, PoseError> {
        rayon::scope(|_| self.run_nodes(input, Some(times)))
    }

    fn run_nodes(
        &self,
        input: Tensor,
        mut times: Option<&mut Vec<LayerTime>>,
    ) -> Result<Vec<Tensor>, PoseError> {
        let mut values: HashMap<usize, Tensor> = HashMap::from([(self.input, input)]);
        for node in &self.nodes {
            let args = node
                .inputs
                .iter()
                .map(|id| {
                    values
                        .get(id)
                        .ok_or_else(|| inference_error(format!("tensor {id} not computed")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The clock is read only when profiling: `run` is the worker's hot path.
            let start = times.is_some().then(Instant::now);
            let out = node.forward(&args).map_err(inference_error)?;
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times.push(LayerTime {
                    layer: node.describe(args[0].dims()),
                    time: start.elapsed(),
                });
            }
            for id in &node.release {
                values.remove(id);
            }
            values.insert(node.output, out);
        }
        self.outputs
            .iter()
            .map(|(name, id)| {
                values
                    .remove(id)
                    .ok_or_else(|| inference_error(format!("output {name} not computed")))
            })
            .collect()
    }
}

/// One op of a profiled run: what it was (with its input and output
/// shapes) and how long it took.
pub struct LayerTime {
    pub layer: String,
    pub time: Duration,
}

/// Swaps each bilinear upsampling that only feeds a 1×1 convolution with
/// it: the convolution is linear per pixel and the resize's weights sum to 1,
/// so convolving the small input first gives the same values (to rounding)
/// for a quarter of the multiply-adds; the activation moves after the resize.
fn convolve_before_resizing(nodes: &mut [Node], outputs: &[(String, usize)]) {
    let mut fresh = nodes.iter().map(|n| n.output).max().unwrap_or(0) + 1;
    for index in 1..nodes.len() {
        let resized = nodes[index - 1].output;
        let only_reader = nodes[index].inputs == [resized]
            && nodes.iter().filter(|n| n.inputs.contains(&resized)).count() == 1
            && !outputs.iter().any(|(_, id)| *id == resized);
        let small = nodes[index - 1]
            .inputs
            .first()
            .and_then(|&id| nodes.iter().find(|n| n.output == id))
            .map(|n| n.shape.clone());
        let (Some(mut small), true) = (small, only_reader) else {
            continue;
        };
        let (head, tail) = nodes.split_at_mut(index);
        let (resize, conv) = (&mut head[index - 1], &mut tail[0]);
        let (
            Layer::Resize {
                activation: after, ..
            },
            Layer::Conv {
                kernel: [1, 1],
                stride: 1,
                residual: false,
                activation,
                ..
            },
        ) = (&mut resize.layer, &mut conv.layer)
        else {
            continue;
        };
        *after = std::mem::replace(activation, Activation::None);
        small[3] = conv.shape[3];
        let big = std::mem::replace(&mut conv.shape, small);
        let output = std::mem::replace(&mut conv.output, fresh);
        conv.inputs = std::mem::replace(&mut resize.inputs, vec![fresh]);
        resize.shape = big;
        resize.output = output;
        fresh += 1;
        nodes.swap(index - 1, index);
    }
}

/// Folds each ADD into the convolution (or bilinear resize) producing one of
/// its operands when that convolution has no activation of its own (that
/// ADD none), the ADD is its only reader and the other operand is already
/// computed when it runs: the node adds the skip tensor as it writes its
/// output instead of another pass.
fn fuse_residual_adds(nodes: &mut Vec<Node>, outputs: &[(String, usize)]) {
    let mut index = 0;
    while index < nodes.len() {
        let fusable = match nodes[index].layer {
            Layer::Add { activation } => {
                nodes[index]
                    .inputs
                    .iter()
                    .enumerate()
                    .find_map(|(side, &id)| {
                        let producer = nodes[..index].iter().position(|n| n.output == id)?;
                        let skip = nodes[index].inputs[1 - side];
                        let readers = nodes.iter().filter(|n| n.inputs.contains(&id)).count();
                        let skip_ready = !nodes[producer..index].iter().any(|n| n.output == skip);
                        // The activations stay in order: a convolution's
                        // is none (the ADD's applies after the skip), an
                        // upsampling's applies before the ADD, which has none.
                        let fusable_producer = match nodes[producer].layer {
                            Layer::Conv {
                                activation: Activation::None,
                                residual: false,
                                ..
                            } => true,
                            Layer::Resize {
                                residual: false, ..
                            } => activation == Activation::None,
                            _ => false,
                        };
                        (fusable_producer
                            && readers == 1
                            && skip_ready
                            && !outputs.iter().any(|(_, o)| *o == id))
                        .then_some((producer, skip, activation))
                    })
            }
            _ => None,
        };
        let Some((producer, skip, add_activation)) = fusable else {
            index += 1;
            continue;
        };
        let add = nodes.remove(index);
        let fused = &mut nodes[producer];
        match &mut fused.layer {
            Layer::Conv {
                activation,
                residual,
                ..
            } => {
                *activation = add_activation;
                *residual = true;
            }
            Layer::Resize { residual, .. } => *residual = true,
            _ => {}
        }
        fused.inputs.push(skip);
        fused.output = add.output;
    }
}

fn square_stride(stride: &[usize; 2]) -> Result<(), PoseError> {
    if stride[0] == stride[1] {
        Ok(())
    } else {
        Err(weights_error("non-square strides are not supported"))
    }
}

fn expected_inputs(layer: &Layer, given: usize) -> usize {
    match layer {
        Layer::Add { .. }
        | Layer::Conv { residual: true, .. }
        | Layer::Resize { residual: true, .. } => 2,
        Layer::Concat { .. } => given.max(1),
        _ => 1,
    }
}

/// Up to this many input channels (an image) a k×k convolution runs
/// directly: as im2col + gemm, its patches would be too short a `k`.
const DIRECT_CONV_CHANNELS: usize = 4;

fn hwc(shape: &[usize]) -> candle_core::Result<Hwc> {
    match shape {
        [1, h, w, c] => Ok(Hwc {
            h: *h,
            w: *w,
            c: *c,
        }),
        other => candle_core::bail!("expected an NHWC tensor with batch 1, got {other:?}"),
    }
}

/// Runs `f` on the f32 data of a contiguous CPU tensor without copying it.
fn with_data<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("pose graph: expected an f32 CPU tensor");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("non-contiguous tensor"))?;
    Ok(f(&data[start..end]))
}

/// Runs `f` on the data of `x` and of the `skip` tensor a fused ADD adds, if any.
fn with_skip<R>(
    x: &Tensor,
    skip: Option<&Tensor>,
    f: impl FnOnce(&[f32], Option<&[f32]>) -> R,
) -> candle_core::Result<R> {
    match skip {
        Some(skip) => with_data(skip, |skip| with_data(x, |data| f(data, Some(skip))))?,
        None => with_data(x, |data| f(data, None)),
    }
}

/// A kernel's output as an NHWC tensor that owns its buffer (no copy),
/// viewing the values from their cache-line-aligned start.
fn nhwc(data: Aligned, shape: Hwc) -> candle_core::Result<Tensor> {
    let (buffer, offset) = data.into_parts();
    let total = buffer.len();
    Tensor::from_vec(buffer, total, &Device::Cpu)?
        .narrow(0, offset, total - offset)?
        .reshape((1, shape.h, shape.w, shape.c))
}

fn window(kernel: [usize; 2], stride: usize, padding: Padding, input: Hwc, output: Hwc) -> Window {
    let same = |inp: usize, out: usize, k: usize| ((out - 1) * stride + k).saturating_sub(inp) / 2;
    let (pad_top, pad_left) = match padding {
        Padding::Same => (
            same(input.h, output.h, kernel[0]),
            same(input.w, output.w, kernel[1]),
        ),
        Padding::Fixed { top, left } => (top, left),
    };
    Window {
        kh: kernel[0],
        kw: kernel[1],
        stride,
        pad_top,
        pad_left,
    }
}

fn activate(tensor: Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    match activation {
        Activation::None => Ok(tensor),
        Activation::Relu => tensor.relu(),
        Activation::Relu6 => tensor.clamp(0f32, 6f32),
    }
}

impl Node {
    /// The op, its fusions and its shapes, e.g. `conv 1x1/1 +add [1, 14, 14, 672] -> [1, 14, 14, 112]`.
    fn describe(&self, input: &[usize]) -> String {
        let add = |fused: bool| if fused { " +add" } else { "" };
        let op = match &self.layer {
            Layer::Conv {
                kernel,
                stride,
                residual,
                ..
            } => format!(
                "conv {}x{}/{stride}{}",
                kernel[0],
                kernel[1],
                add(*residual)
            ),
            Layer::Depthwise { kernel, stride, .. } => {
                format!("depthwise {}x{}/{stride}", kernel[0], kernel[1])
            }
            Layer::MaxPool { kernel, stride, .. } => {
                format!("max_pool {}x{}/{stride}", kernel[0], kernel[1])
            }
            Layer::Add { .. } => "add".into(),
            Layer::Concat { .. } => "concat".into(),
            Layer::Resize { residual, .. } => format!("resize{}", add(*residual)),
            Layer::DepthToSpace { .. } => "depth_to_space".into(),
            Layer::Pad { .. } => "pad".into(),
            Layer::Reshape => "reshape".into(),
            Layer::Logistic => "logistic".into(),
        };
        format!("{op} {input:?} -> {:?}", self.shape)
    }

    fn forward(&self, args: &[&Tensor]) -> candle_core::Result<Tensor> {
        let x = args[0];
        match &self.layer {
            Layer::Conv {
                weights,
                bias,
                direct,
                kernel,
                stride,
                padding,
                activation,
                residual,
            } => {
                let (input, output) = (hwc(x.dims())?, hwc(&self.shape)?);
                let matmul = |lhs: &[f32], skip: Option<&[f32]>| {
                    kernels::matmul_bias(lhs, weights, bias, skip, *activation)
                };
                let conv = |data: &[f32], skip: Option<&[f32]>| {
                    let win = window(*kernel, *stride, *padding, input, output);
                    if *kernel == [1, 1] && *stride == 1 {
                        matmul(data, skip)
                    } else if let (Some(direct), None) = (direct, skip) {
                        kernels::conv_direct(data, input, direct, win, output, *activation)
                    } else {
                        matmul(&kernels::im2col(data, input, win, output), skip)
                    }
                };
                nhwc(with_skip(x, residual.then(|| args[1]), conv)?, output)
            }
            Layer::Depthwise {
                weights,
                kernel,
                stride,
                padding,
                activation,
            } => {
                let (input, output) = (hwc(x.dims())?, hwc(&self.shape)?);
                let win = window(*kernel, *stride, *padding, input, output);
                let out = with_data(x, |data| {
                    kernels::depthwise(data, input, weights, win, output, *activation)
                })?;
                nhwc(out, output)
            }
            Layer::MaxPool {
                kernel,
                stride,
                padding,
                activation,
            } => {
                let (input, output) = (hwc(x.dims())?, hwc(&self.shape)?);
                let win = window(*kernel, *stride, *padding, input, output);
                nhwc(
                    with_data(x, |data| {
                        kernels::max_pool(data, input, win, output, *activation)
                    })?,
                    output,
                )
            }
            Layer::Add { activation } => {
                let out = with_data(x, |a| {
                    with_data(args[1], |b| kernels::add(a, b, *activation))
                })??;
                nhwc(out, hwc(&self.shape)?)
            }
            Layer::Concat { axis, activation } => activate(Tensor::cat(args, *axis)?, *activation),
            Layer::Resize {
                align_corners,
                half_pixel_centers,
                activation,
                residual,
            } => {
                let (input, output) = (hwc(x.dims())?, hwc(&self.shape)?);
                let resize = |data: &[f32], skip: Option<&[f32]>| {
                    kernels::resize_bilinear(
                        data,
                        input,
                        output,
                        *align_corners,
                        *half_pixel_centers,
                        skip,
                        *activation,
                    )
                };
                nhwc(with_skip(x, residual.then(|| args[1]), resize)?, output)
            }
            Layer::DepthToSpace { block } => {
                let input = hwc(x.dims())?;
                nhwc(
                    with_data(x, |data| kernels::depth_to_space(data, input, *block))?,
                    hwc(&self.shape)?,
                )
            }
            Layer::Pad { pads } => {
                let mut out = x.clone();
                for (dim, pair) in pads.chunks_exact(2).enumerate() {
                    out = out.pad_with_zeros(dim, pair[0], pair[1])?;
                }
                out.contiguous()
            }
            Layer::Reshape => x.reshape(self.shape.as_slice()),
            Layer::Logistic => (x.neg()?.exp()? + 1.0)?.recip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_outputs_become_tensors_over_their_aligned_values() {
        let values = Aligned::filled(2 * 3 * 4, 1.5);
        let aligned = values.as_ptr();
        let tensor = nhwc(values, Hwc { h: 2, w: 3, c: 4 }).unwrap();
        assert_eq!(tensor.dims(), [1, 2, 3, 4]);
        // No copy: the kernels read the aligned values themselves.
        with_data(&tensor, |data| {
            assert_eq!(data.as_ptr(), aligned);
            assert_eq!(data, [1.5; 24]);
        })
        .unwrap();
    }
}
