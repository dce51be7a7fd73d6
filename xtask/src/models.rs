//! `cargo xtask models`: pinned, offline-reproducible pose model preparation.
//!
//! Takes MediaPipe's BlazePose TFLite models (person detector + full landmark
//! model) out of the npm package `@mediapipe/pose` (Apache-2.0), checks the
//! tarball's sha256, and converts both into one safetensors file the worker runs
//! natively in candle: the constant f32 tensors (fp16 weights dequantized, sparse
//! weights densified) plus the operator graphs as JSON in the metadata key
//! `model`: `{"id": "blazepose-full@..", "graphs": {"landmark": GRAPH, "detector": GRAPH}}`.
//! The golden test's photo (`samples.jpg`, MIT) comes from `@vladmandic/human`.
//!
//! GRAPH (read by `analysis-worker/src/pose/graph.rs`):
//! `{"inputs": [id], "outputs": {"Identity": id, ..}, "ops": [{"op": "conv_2d",
//! "inputs": [id, ..], "output": id, "shape": [..], ..options}]}`; a constant
//! input `id` is stored as tensor `{model}/t{id}` in its TFLite layout.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tract_tflite::tflite;

/// An npm tarball pinned by version and content hash.
struct NpmPackage {
    spec: &'static str,
    tarball: &'static str,
    sha256: &'static str,
}

const MEDIAPIPE_POSE: NpmPackage = NpmPackage {
    spec: "@mediapipe/pose@0.5.1675469404",
    tarball: "mediapipe-pose-0.5.1675469404.tgz",
    sha256: "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84",
};

const HUMAN: NpmPackage = NpmPackage {
    spec: "@vladmandic/human@3.3.6",
    tarball: "vladmandic-human-3.3.6.tgz",
    sha256: "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7",
};

/// The person detector is not a file of its own in `@mediapipe/pose`: it is the
/// first entry of the Emscripten asset bundle (byte range from
/// `pose_solution_packed_assets_loader.js`, fixed by the tarball hash).
const DETECTOR_BUNDLE: &str = "package/pose_solution_packed_assets.data";
const DETECTOR_BYTES: std::ops::Range<usize> = 0..2_962_288;

/// Directory name under the models cache; bump when the conversion changes.
pub const MODEL_SET: &str = "blazepose-0.5.1675469404-v1";
/// Both models in one file (one S3 object, one sha256): tensors `landmark/t{id}`
/// and `detector/t{id}`.
const WEIGHTS_FILE: &str = "blazepose_full.safetensors";
/// What the worker reports as the model.
const MODEL_ID: &str = "blazepose-full@0.5.1675469404";

const NOTICE: &str = "\
BlazePose GHUM models from the npm package @mediapipe/pose 0.5.1675469404,
Copyright Google LLC, licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0): landmark.tflite is
pose_landmark_full.tflite, detector.tflite is pose_detection.tflite.
blazepose_full.safetensors is both converted by `cargo xtask models`: the same
weights (fp16 dequantized to f32, sparse tensors densified) and operator graphs.

golden/samples.jpg is from the npm package @vladmandic/human 3.3.6, MIT licence
(golden/LICENSE-human), used only by the worker's golden test.
";

pub fn default_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/golftracker/models"))
}

/// The converted weights `run` prepares under `root`, what a stack's `worker.model.uri` names.
pub fn weights_path(root: &Path) -> PathBuf {
    root.join(MODEL_SET).join(WEIGHTS_FILE)
}

/// Prepares `<root>/MODEL_SET/` unless it is already complete.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let dir = root.join(MODEL_SET);
    let done = dir.join("NOTICE");
    if done.exists() {
        eprintln!("models: {} is ready", dir.display());
        return Ok(());
    }
    let work = root.join("download");
    fs::create_dir_all(&work)?;
    fs::create_dir_all(dir.join("golden"))?;

    let pose = unpack(&npm_pack(&MEDIAPIPE_POSE, &work)?)?;
    let landmark = file_in(&pose, "package/pose_landmark_full.tflite")?;
    let bundle = file_in(&pose, DETECTOR_BUNDLE)?;
    ensure!(
        bundle.len() >= DETECTOR_BYTES.end,
        "{DETECTOR_BUNDLE} is too short"
    );
    let detector = &bundle[DETECTOR_BYTES];

    let mut tensors = Vec::new();
    let mut graphs = serde_json::Map::new();
    for (name, tflite) in [("landmark", landmark), ("detector", detector)] {
        fs::write(dir.join(format!("{name}.tflite")), tflite)?;
        let graph = convert(tflite, name, &mut tensors)
            .with_context(|| format!("converting the {name} model"))?;
        graphs.insert(name.to_string(), graph);
    }
    // One metadata key: safetensors writes a HashMap's keys in random order,
    // and the file's sha256 must not change between runs.
    let model = json!({"id": MODEL_ID, "graphs": graphs});
    let metadata = HashMap::from([("model".to_string(), model.to_string())]);
    let out = dir.join(WEIGHTS_FILE);
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, Some(metadata), &out)?;
    let hash = sha256_hex(&fs::read(&out)?);
    fs::write(
        dir.join(format!("{WEIGHTS_FILE}.sha256")),
        format!("{hash}\n"),
    )?;
    eprintln!("models: wrote {} (sha256 {hash})", out.display());

    let human = unpack(&npm_pack(&HUMAN, &work)?)?;
    fs::write(
        dir.join("golden/samples.jpg"),
        file_in(&human, "package/assets/samples.jpg")?,
    )?;
    fs::write(
        dir.join("golden/LICENSE-human"),
        file_in(&human, "package/LICENSE")?,
    )?;

    // Written last: its presence marks a complete model set.
    fs::write(&done, NOTICE)?;
    eprintln!("models: {} is ready", dir.display());
    Ok(())
}

/// `npm pack` into `work` (reusing a tarball already there) and checks the pinned hash.
fn npm_pack(package: &NpmPackage, work: &Path) -> anyhow::Result<Vec<u8>> {
    let path = work.join(package.tarball);
    if !path.exists() {
        let status = Command::new("npm")
            .args(["pack", package.spec, "--silent", "--pack-destination"])
            .arg(work)
            // npm prints the tarball's name on stdout; our own progress goes to stderr.
            .stdout(std::process::Stdio::null())
            .status()
            .context("running npm (is Node.js installed?)")?;
        ensure!(
            status.success(),
            "npm pack {} failed: {status}",
            package.spec
        );
    }
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let hash = sha256_hex(&bytes);
    if hash != package.sha256 {
        fs::remove_file(&path)?;
        bail!(
            "{}: sha256 {hash}, expected {}",
            package.spec,
            package.sha256
        );
    }
    Ok(bytes)
}

fn unpack(tgz: &[u8]) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        files.insert(name, bytes);
    }
    Ok(files)
}

fn file_in<'a>(files: &'a HashMap<String, Vec<u8>>, name: &str) -> anyhow::Result<&'a [u8]> {
    files
        .get(name)
        .map(Vec::as_slice)
        .with_context(|| format!("{name} missing from the package"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A constant tensor of the TFLite model, as the conversion folds it.
#[derive(Clone)]
enum Constant {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    I32(Vec<i32>),
}

/// A constant tensor to store: name, shape, little-endian f32 bytes.
type StoredTensor = (String, Vec<usize>, Vec<u8>);

/// Converts a TFLite flatbuffer: appends its constants (named `{prefix}/t{id}`)
/// to `stored` and returns the operator graph.
fn convert(bytes: &[u8], prefix: &str, stored: &mut Vec<StoredTensor>) -> anyhow::Result<Value> {
    let model = tflite::root_as_model(bytes).context("not a TFLite flatbuffer")?;
    let graph = model.subgraphs().context("no subgraphs")?.get(0);
    let tensors = graph.tensors().context("no tensors")?;
    let buffers = model.buffers().context("no buffers")?;
    let codes = model.operator_codes().context("no operator codes")?;

    let shape_of = |id: usize| -> Vec<usize> {
        tensors
            .get(id)
            .shape()
            .map(|s| s.iter().map(|d| d as usize).collect())
            .unwrap_or_default()
    };
    let mut constants: BTreeMap<usize, Constant> = BTreeMap::new();
    for id in 0..tensors.len() {
        let tensor = tensors.get(id);
        let data = buffers
            .get(tensor.buffer() as usize)
            .data()
            .map(|d| d.bytes())
            .unwrap_or(&[]);
        if data.is_empty() {
            continue;
        }
        let constant = match tensor.type_() {
            tflite::TensorType::FLOAT32 => Constant::F32(le_words(data, f32::from_le_bytes)),
            tflite::TensorType::FLOAT16 => Constant::F16(le_words(data, half::f16::from_le_bytes)),
            tflite::TensorType::INT32 => Constant::I32(le_words(data, i32::from_le_bytes)),
            other => bail!("tensor {id}: unsupported constant type {other:?}"),
        };
        let constant = match tensor.sparsity() {
            Some(sparsity) => densify(&constant, &shape_of(id), &sparsity)?,
            None => constant,
        };
        constants.insert(id, constant);
    }

    let mut ops = Vec::new();
    for op in graph.operators().context("no operators")? {
        let code = codes.get(op.opcode_index() as usize);
        let builtin = code.builtin_code().max(tflite::BuiltinOperator(
            code.deprecated_builtin_code() as i32,
        ));
        let inputs: Vec<usize> = op
            .inputs()
            .map(|v| v.iter().filter(|&i| i >= 0).map(|i| i as usize).collect())
            .unwrap_or_default();
        let outputs: Vec<usize> = op
            .outputs()
            .map(|v| v.iter().map(|i| i as usize).collect())
            .unwrap_or_default();
        ensure!(outputs.len() == 1, "{builtin:?}: {} outputs", outputs.len());
        let output = outputs[0];
        // Constant-only ops are folded here, so the worker never sees fp16 or sparse data.
        match builtin {
            tflite::BuiltinOperator::DEQUANTIZE => {
                let Some(Constant::F16(values)) = constants.get(&inputs[0]) else {
                    bail!(
                        "DEQUANTIZE of a non-fp16 or non-constant tensor {}",
                        inputs[0]
                    );
                };
                let values = values.iter().map(|v| v.to_f32()).collect();
                constants.insert(output, Constant::F32(values));
                continue;
            }
            tflite::BuiltinOperator::DENSIFY => {
                let constant = constants
                    .get(&inputs[0])
                    .context("DENSIFY of a non-constant")?
                    .clone();
                constants.insert(output, constant);
                continue;
            }
            _ => {}
        }
        let int_input = |index: usize| -> anyhow::Result<Vec<i32>> {
            match inputs.get(index).and_then(|i| constants.get(i)) {
                Some(Constant::I32(values)) => Ok(values.clone()),
                _ => bail!("{builtin:?}: input {index} is not a constant int32 tensor"),
            }
        };
        let mut entry = json!({"inputs": inputs, "output": output, "shape": shape_of(output)});
        let options = match builtin {
            tflite::BuiltinOperator::CONV_2D => {
                let o = op
                    .builtin_options_as_conv_2_doptions()
                    .context("conv options")?;
                ensure!(
                    o.dilation_w_factor() == 1 && o.dilation_h_factor() == 1,
                    "dilated conv"
                );
                json!({"op": "conv_2d", "stride": [o.stride_h(), o.stride_w()],
                       "padding": padding(o.padding())?, "activation": activation(o.fused_activation_function())?})
            }
            tflite::BuiltinOperator::DEPTHWISE_CONV_2D => {
                let o = op
                    .builtin_options_as_depthwise_conv_2_doptions()
                    .context("depthwise options")?;
                ensure!(
                    o.dilation_w_factor() == 1 && o.dilation_h_factor() == 1,
                    "dilated depthwise conv"
                );
                json!({"op": "depthwise_conv_2d", "stride": [o.stride_h(), o.stride_w()],
                       "padding": padding(o.padding())?, "activation": activation(o.fused_activation_function())?})
            }
            tflite::BuiltinOperator::MAX_POOL_2D => {
                let o = op
                    .builtin_options_as_pool_2_doptions()
                    .context("pool options")?;
                json!({"op": "max_pool_2d", "stride": [o.stride_h(), o.stride_w()],
                       "filter": [o.filter_height(), o.filter_width()],
                       "padding": padding(o.padding())?, "activation": activation(o.fused_activation_function())?})
            }
            tflite::BuiltinOperator::ADD => {
                let o = op.builtin_options_as_add_options().context("add options")?;
                json!({"op": "add", "activation": activation(o.fused_activation_function())?})
            }
            tflite::BuiltinOperator::CONCATENATION => {
                let o = op
                    .builtin_options_as_concatenation_options()
                    .context("concat options")?;
                json!({"op": "concatenation", "axis": o.axis(), "activation": activation(o.fused_activation_function())?})
            }
            tflite::BuiltinOperator::RESIZE_BILINEAR => {
                let o = op
                    .builtin_options_as_resize_bilinear_options()
                    .context("resize options")?;
                json!({"op": "resize_bilinear", "align_corners": o.align_corners(),
                       "half_pixel_centers": o.half_pixel_centers()})
            }
            tflite::BuiltinOperator::DEPTH_TO_SPACE => {
                let o = op
                    .builtin_options_as_depth_to_space_options()
                    .context("depth_to_space options")?;
                json!({"op": "depth_to_space", "block_size": o.block_size()})
            }
            tflite::BuiltinOperator::PAD => {
                let pads = int_input(1)?;
                json!({"op": "pad", "pads": pads})
            }
            tflite::BuiltinOperator::RESHAPE => json!({"op": "reshape"}),
            tflite::BuiltinOperator::LOGISTIC => json!({"op": "logistic"}),
            other => bail!("unsupported operator {other:?}"),
        };
        merge(&mut entry, options);
        // Int32 operands (pads, shapes) now live in the options; drop them from the inputs.
        if let Some(list) = entry["inputs"].as_array_mut() {
            list.retain(|id| {
                !matches!(
                    constants.get(&(id.as_u64().unwrap_or(0) as usize)),
                    Some(Constant::I32(_))
                )
            });
        }
        ops.push(entry);
    }

    let used: Vec<usize> = ops
        .iter()
        .flat_map(|op| op["inputs"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_u64().map(|id| id as usize))
        .filter(|id| constants.contains_key(id))
        .collect();
    let mut used: Vec<usize> = used;
    used.sort_unstable();
    used.dedup();
    for id in used {
        let Some(Constant::F32(values)) = constants.get(&id) else {
            bail!("operator input {id} is a non-f32 constant");
        };
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        stored.push((format!("{prefix}/t{id}"), shape_of(id), bytes));
    }
    let outputs: serde_json::Map<String, Value> = graph
        .outputs()
        .context("no outputs")?
        .iter()
        .map(|id| {
            let name = tensors
                .get(id as usize)
                .name()
                .unwrap_or_default()
                .to_string();
            (name, json!(id))
        })
        .collect();
    let inputs: Vec<i32> = graph.inputs().context("no inputs")?.iter().collect();
    Ok(json!({"inputs": inputs, "outputs": outputs, "ops": ops}))
}

fn merge(entry: &mut Value, options: Value) {
    if let (Some(entry), Value::Object(options)) = (entry.as_object_mut(), options) {
        entry.extend(options);
    }
}

fn le_words<T, const N: usize>(bytes: &[u8], from: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunk of N bytes")))
        .collect()
}

fn padding(padding: tflite::Padding) -> anyhow::Result<&'static str> {
    match padding {
        tflite::Padding::SAME => Ok("same"),
        tflite::Padding::VALID => Ok("valid"),
        other => bail!("unsupported padding {other:?}"),
    }
}

fn activation(activation: tflite::ActivationFunctionType) -> anyhow::Result<&'static str> {
    match activation {
        tflite::ActivationFunctionType::NONE => Ok("none"),
        tflite::ActivationFunctionType::RELU => Ok("relu"),
        tflite::ActivationFunctionType::RELU6 => Ok("relu6"),
        other => bail!("unsupported fused activation {other:?}"),
    }
}

/// Expands a TFLite sparse tensor (traversal order, dense/CSR dimension
/// metadata, optional block map) into its dense row-major form.
fn densify(
    constant: &Constant,
    shape: &[usize],
    sparsity: &tflite::SparsityParameters,
) -> anyhow::Result<Constant> {
    let order: Vec<usize> = sparsity
        .traversal_order()
        .context("traversal order")?
        .iter()
        .map(|d| d as usize)
        .collect();
    let block_map: Vec<usize> = sparsity
        .block_map()
        .map(|b| b.iter().map(|d| d as usize).collect())
        .unwrap_or_default();
    let metadata = sparsity.dim_metadata().context("dimension metadata")?;
    let mut levels = Vec::new();
    for meta in metadata.iter() {
        levels.push(if meta.format() == tflite::DimensionType::DENSE {
            Level::Dense(meta.dense_size() as usize)
        } else {
            let segments = sparse_vector(meta.array_segments_type(), &meta, true)?;
            let indices = sparse_vector(meta.array_indices_type(), &meta, false)?;
            Level::Sparse { segments, indices }
        });
    }
    let block_sizes: Vec<usize> = block_map
        .iter()
        .enumerate()
        .map(|(k, _)| match levels[shape.len() + k] {
            Level::Dense(size) => size,
            Level::Sparse { .. } => 0,
        })
        .collect();
    let plan = SparsePlan {
        shape,
        order: &order,
        block_map: &block_map,
        block_sizes: &block_sizes,
        levels: &levels,
    };
    let mut positions = Vec::new();
    plan.walk(0, 0, &mut vec![0; order.len()], &mut positions);
    Ok(match constant {
        Constant::F32(values) => Constant::F32(scatter(values, &positions, shape)?),
        Constant::F16(values) => Constant::F16(scatter(values, &positions, shape)?),
        Constant::I32(values) => Constant::I32(scatter(values, &positions, shape)?),
    })
}

enum Level {
    Dense(usize),
    Sparse {
        segments: Vec<usize>,
        indices: Vec<usize>,
    },
}

struct SparsePlan<'a> {
    shape: &'a [usize],
    order: &'a [usize],
    block_map: &'a [usize],
    block_sizes: &'a [usize],
    levels: &'a [Level],
}

impl SparsePlan<'_> {
    /// Appends the dense flat index of each stored value, in storage order.
    fn walk(&self, level: usize, parent: usize, coords: &mut Vec<usize>, out: &mut Vec<usize>) {
        if level == self.levels.len() {
            let mut index = vec![0; self.shape.len()];
            for (level, &dim) in self.order.iter().enumerate() {
                if dim < self.shape.len() {
                    index[dim] += coords[level] * self.block_size_of(dim);
                } else {
                    index[self.block_map[dim - self.shape.len()]] += coords[level];
                }
            }
            out.push(
                index
                    .iter()
                    .zip(self.shape)
                    .fold(0, |flat, (i, d)| flat * d + i),
            );
            return;
        }
        match &self.levels[level] {
            Level::Dense(size) => {
                for i in 0..*size {
                    coords[level] = i;
                    self.walk(level + 1, parent * size + i, coords, out);
                }
            }
            Level::Sparse { segments, indices } => {
                let range = segments[parent]..segments[parent + 1];
                for (k, &index) in indices[range.clone()].iter().enumerate() {
                    coords[level] = index;
                    self.walk(level + 1, range.start + k, coords, out);
                }
            }
        }
    }

    fn block_size_of(&self, dim: usize) -> usize {
        self.block_map
            .iter()
            .position(|&d| d == dim)
            .map_or(1, |k| self.block_sizes[k])
    }
}

fn scatter<T: Copy + Default>(
    values: &[T],
    positions: &[usize],
    shape: &[usize],
) -> anyhow::Result<Vec<T>> {
    ensure!(
        values.len() == positions.len(),
        "sparse tensor: {} values for {} positions",
        values.len(),
        positions.len()
    );
    let mut dense = vec![T::default(); shape.iter().product()];
    for (&value, &position) in values.iter().zip(positions) {
        *dense
            .get_mut(position)
            .context("sparse index out of range")? = value;
    }
    Ok(dense)
}

fn sparse_vector(
    kind: tflite::SparseIndexVector,
    meta: &tflite::DimensionMetadata,
    segments: bool,
) -> anyhow::Result<Vec<usize>> {
    let values: Option<Vec<usize>> = match kind {
        tflite::SparseIndexVector::Int32Vector => {
            if segments {
                meta.array_segments_as_int_32_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            } else {
                meta.array_indices_as_int_32_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            }
        }
        tflite::SparseIndexVector::Uint16Vector => {
            if segments {
                meta.array_segments_as_uint_16_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            } else {
                meta.array_indices_as_uint_16_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            }
        }
        tflite::SparseIndexVector::Uint8Vector => {
            if segments {
                meta.array_segments_as_uint_8_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            } else {
                meta.array_indices_as_uint_8_vector()
                    .and_then(|v| v.values())
                    .map(|v| v.iter().map(|x| x as usize).collect())
            }
        }
        _ => None,
    };
    values.context("sparse dimension without index vectors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_walk_places_values_row_major() {
        // 2x3 matrix [[0, a, 0], [b, 0, c]] stored as dense rows + CSR columns.
        let levels = [
            Level::Dense(2),
            Level::Sparse {
                segments: vec![0, 1, 3],
                indices: vec![1, 0, 2],
            },
        ];
        let plan = SparsePlan {
            shape: &[2, 3],
            order: &[0, 1],
            block_map: &[],
            block_sizes: &[],
            levels: &levels,
        };
        let mut positions = Vec::new();
        plan.walk(0, 0, &mut vec![0; 2], &mut positions);
        assert_eq!(positions, vec![1, 3, 5]);
        assert_eq!(
            scatter(&[1.0, 2.0, 3.0], &positions, &[2, 3]).unwrap(),
            vec![0.0, 1.0, 0.0, 2.0, 0.0, 3.0]
        );
    }
}
