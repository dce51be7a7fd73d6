//! Per-frame pose model time: the candle BlazePose vs the official TFLite
//! runtime (LiteRT with XNNPACK) on the same CPU, model, input and thread count.
//! Prints milliseconds per inference and the ratio; not a timed test.
//!
//! `cargo run -p golftracker-worker --bin pose-bench [-- [--layers] MODELS_DIR [RUNS [ROUNDS]]]`
//! (MODELS_DIR from `cargo xtask models`; threads from RAYON_NUM_THREADS,
//! default 2). With ROUNDS > 1, candle and LiteRT take turns that many times
//! and the medians are printed, the ratio as the median of each round's: on
//! a shared machine the load then changes under both alike. Each also times
//! every single inference: the fastest ones, which the load can only slow
//! down, compare the runtimes' own speed most steadily. Then the two take
//! turns of 5 inferences (RUNS × ROUNDS in all) against one LiteRT process
//! on a pipe: this machine's speed changes in steps, seconds apart, which a
//! round of RUNS can fall on one side of; the median of the turns' ratios
//! compares both in the same state. `--layers` also
//! prints each candle op's median and minimum time over RUNS runs, and the
//! time by op kind.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use candle_core::{Device, Tensor};
use golftracker_worker::pose::{
    self,
    blazepose::{BlazePose, Network},
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (flags, positional): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let layers = match flags.as_slice() {
        [] => false,
        [flag] if flag == "--layers" => true,
        other => return Err(format!("unknown options {other:?}").into()),
    };
    let mut args = positional.into_iter();
    let dir = args
        .next()
        .map(PathBuf::from)
        .or_else(pose::default_models_dir)
        .ok_or("no models dir: pass one, or set HOME")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(50);
    let rounds: usize = args
        .next()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1usize)
        .max(1);
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2usize);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    // candle sizes its matmul threads from this variable on every op; set it for it.
    // SAFETY: no other thread reads the environment yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };

    let weights = std::fs::read(dir.join("blazepose_full.safetensors"))?;
    let model = BlazePose::from_safetensors(&weights)?;
    let scratch = std::env::temp_dir().join(format!("pose-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    println!(
        "pose model per-frame time, {threads} thread(s), {runs} runs, median of {rounds} \
         alternating round(s) (wall / CPU ms)"
    );
    for (name, network, size) in [
        ("landmark", Network::Landmark, 256),
        ("detector", Network::Detector, 224),
    ] {
        let input = pattern(size)?;
        let run = || -> Result<(), pose::PoseError> {
            match network {
                Network::Landmark => model.run_landmarks(input.clone()).map(drop),
                Network::Detector => model.run_detector(input.clone()).map(drop),
            }
        };
        for _ in 0..3 {
            run()?;
        }
        let model_path = dir.join(format!("{name}.tflite"));
        let (mut candle_rounds, mut litert_rounds, mut ratios) = (vec![], vec![], vec![]);
        let (mut candle_single, mut litert_single) = (vec![], vec![]);
        for _ in 0..rounds {
            let (start, start_cpu) = (Instant::now(), process_cpu_ms()?);
            let single = timed_runs(&run, runs)?;
            let candle = (
                start.elapsed().as_secs_f64() * 1000.0 / runs as f64,
                (process_cpu_ms()? - start_cpu) / runs as f64,
            );
            candle_single.push(Single::of(single));
            let litert = litert_ms(&model_path, &input, &scratch, runs, threads)?;
            eprintln!(
                "{name:>9} round: candle {:6.2} / {:6.2}  LiteRT {:6.2} / {:6.2}",
                candle.0, candle.1, litert.mean.0, litert.mean.1
            );
            candle_rounds.push(candle);
            litert_rounds.push(litert.mean);
            litert_single.push(litert.single);
            ratios.push((candle.0 / litert.mean.0, candle.1 / litert.mean.1));
        }
        // The ratio is the median of each round's (its two runs seconds apart).
        let (candle, litert, ratio) = (
            medians(&candle_rounds),
            medians(&litert_rounds),
            medians(&ratios),
        );
        println!(
            "{name:>9}: candle {:6.2} / {:6.2}  LiteRT {:6.2} / {:6.2}  candle/LiteRT {:.2} / {:.2}",
            candle.0, candle.1, litert.0, litert.1, ratio.0, ratio.1
        );
        let (candle, litert) = (Single::over(&candle_single), Single::over(&litert_single));
        println!(
            "{:>9}  single inference, fastest / median (ms): candle {:6.2} / {:6.2}  \
             LiteRT {:6.2} / {:6.2}  candle/LiteRT {:.2} / {:.2}",
            "",
            candle.fastest,
            candle.median,
            litert.fastest,
            litert.median,
            candle.fastest / litert.fastest,
            candle.median / litert.median,
        );
        let blocks = runs * rounds / BLOCK;
        let [candle, litert, ratio] = paired_blocks(
            run,
            litert_command(&model_path, &input, &scratch, threads)?,
            blocks,
        )?;
        println!(
            "{:>9}  {blocks} paired turns of {BLOCK} inferences, median (ms): candle {candle:6.2}  \
             LiteRT {litert:6.2}  candle/LiteRT (median of the turns' ratios) {ratio:.2}",
            ""
        );
        if layers {
            print_layers(&model, network, &input, runs)?;
        }
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// The median wall time of `runs` profiled runs and the part outside the
/// ops; each op's median and minimum time, in graph order; then their sums
/// by kind (op and window, e.g. `conv 1x1/1`, fused ADDs counted with their op).
fn print_layers(
    model: &BlazePose,
    network: Network,
    input: &Tensor,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    // Each run's wall time and the part of it outside the ops (tensor
    // bookkeeping, allocation): what the per-op times do not show.
    let (mut profiles, mut walls, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let profile = model.profile(network, input.clone())?;
        let wall = start.elapsed().as_secs_f64() * 1e6;
        let in_ops: f64 = profile.iter().map(|op| op.time.as_secs_f64() * 1e6).sum();
        walls.push(wall);
        outside.push(wall - in_ops);
        profiles.push(profile);
    }
    println!(
        "  profiled run (median µs): {:.0}, of which outside the ops {:.0}",
        median(walls.into_iter()),
        median(outside.into_iter())
    );
    // Per op, the median and the minimum: a busy shared machine only ever
    // adds time, so the minimum is the steadier number to compare builds by.
    let times_us = |op: usize| profiles.iter().map(move |p| p[op].time.as_secs_f64() * 1e6);
    let ops: Vec<(&str, [f64; 2])> = (0..profiles[0].len())
        .map(|op| {
            let layer = profiles[0][op].layer.as_str();
            (layer, [median(times_us(op)), fastest(times_us(op))])
        })
        .collect();
    let total: f64 = ops.iter().map(|(_, [us, _])| us).sum();
    println!("  per op (median and minimum µs, median's share of their sum {total:.0} µs):");
    for (layer, [us, min]) in &ops {
        println!("  {us:8.1} {min:8.1} {:5.1} %  {layer}", 100.0 * us / total);
    }
    let mut kinds: Vec<(&str, [f64; 2])> = Vec::new();
    for (layer, times) in &ops {
        let kind = layer.split(" [").next().unwrap_or(layer);
        let kind = kind.strip_suffix(" +add").unwrap_or(kind);
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, sums)) => (0..2).for_each(|i| sums[i] += times[i]),
            None => kinds.push((kind, *times)),
        }
    }
    kinds.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]));
    println!("  by kind (sums of the medians and of the minima):");
    for (kind, [us, min]) in kinds {
        println!("  {us:8.1} {min:8.1} {:5.1} %  {kind}", 100.0 * us / total);
    }
    Ok(())
}

/// The median of non-empty `values` (the upper one of an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The smallest of `values` (infinity for none).
fn fastest(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

/// The fastest and the median single inference of a round, in ms.
#[derive(Clone, Copy)]
struct Single {
    fastest: f64,
    median: f64,
}

impl Single {
    fn of(times: Vec<f64>) -> Self {
        Self {
            fastest: fastest(times.iter().copied()),
            median: median(times.into_iter()),
        }
    }

    /// Over rounds: the fastest of all, and the median of the rounds' medians.
    fn over(rounds: &[Single]) -> Self {
        Self {
            fastest: fastest(rounds.iter().map(|r| r.fastest)),
            median: median(rounds.iter().map(|r| r.median)),
        }
    }
}

/// LiteRT's times for one round.
struct LiteRt {
    /// Mean (wall, CPU) ms per inference.
    mean: (f64, f64),
    single: Single,
}

/// The medians of the rounds' (wall, CPU) pairs.
fn medians(rounds: &[(f64, f64)]) -> (f64, f64) {
    (
        median(rounds.iter().map(|r| r.0)),
        median(rounds.iter().map(|r| r.1)),
    )
}

/// CPU time of this process (all threads) in ms, from /proc: on a shared
/// machine it says more about the work done than the wall clock.
fn process_cpu_ms() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("bad /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // Linux reports these in USER_HZ, 100 per second on every mainstream platform.
    Ok(ticks * 10.0)
}

/// A deterministic image-like input in 0..1 (the models' speed does not depend on content).
fn pattern(size: usize) -> candle_core::Result<Tensor> {
    let values = (0..size * size * 3)
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 1000.0)
        .collect();
    Tensor::from_vec(values, (1, size, size, 3), &Device::Cpu)
}

/// The reference script on `model` and `input`, with LiteRT on `threads` threads.
fn litert_command(
    model: &Path,
    input: &Tensor,
    scratch: &Path,
    threads: usize,
) -> Result<Command, Box<dyn std::error::Error>> {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let setup = Command::new("bash")
        .arg(reference.join("setup.sh"))
        .output()?;
    let python = String::from_utf8(setup.stdout)?.trim().to_string();
    let input_path = scratch.join("input.npy");
    input.write_npy(&input_path)?;
    let mut command = Command::new(python);
    command
        .arg(reference.join("litert_reference.py"))
        .args([model, &input_path])
        .args(["--threads", &threads.to_string()]);
    Ok(command)
}

/// LiteRT's times over `runs` inferences, from the reference script.
fn litert_ms(
    model: &Path,
    input: &Tensor,
    scratch: &Path,
    runs: usize,
    threads: usize,
) -> Result<LiteRt, Box<dyn std::error::Error>> {
    let out = litert_command(model, input, scratch, threads)?
        .args(["--bench", &runs.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!("LiteRT: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    let values = numbers(&stdout)?;
    let [wall, cpu, fastest, median] = values[..] else {
        return Err(format!("LiteRT: expected `wall cpu fastest median`, got {stdout:?}").into());
    };
    Ok(LiteRt {
        mean: (wall, cpu),
        single: Single { fastest, median },
    })
}

/// Inferences per turn of [`paired_blocks`]: short enough that a change in
/// the machine's load between two turns is rare, long enough to time.
const BLOCK: usize = 5;

/// Candle (`run`) and LiteRT (the reference script serving on a pipe) in
/// turns of [`BLOCK`] inferences each, `blocks` times, which goes first
/// alternating: the medians of all single inferences, and the median of the
/// blocks' ratios (candle's median over LiteRT's), which the slow drifts of
/// a shared machine's speed cancel out of.
fn paired_blocks(
    run: impl Fn() -> Result<(), pose::PoseError>,
    mut litert: Command,
    blocks: usize,
) -> Result<[f64; 3], Box<dyn std::error::Error>> {
    let mut server = litert
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut requests = server.stdin.take().ok_or("LiteRT: no stdin")?;
    let mut replies = BufReader::new(server.stdout.take().ok_or("LiteRT: no stdout")?).lines();
    let mut litert_block = || -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        writeln!(requests, "{BLOCK}")?;
        Ok(numbers(&replies.next().ok_or("LiteRT: no reply")??)?)
    };
    let candle_block = || timed_runs(&run, BLOCK);
    let (mut candle, mut litert, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..blocks.max(1) {
        let (c, l) = if block % 2 == 0 {
            (candle_block()?, litert_block()?)
        } else {
            let l = litert_block()?;
            (candle_block()?, l)
        };
        ratios.push(median(c.iter().copied()) / median(l.iter().copied()));
        candle.extend(c);
        litert.extend(l);
    }
    drop(requests);
    server.wait()?;
    Ok([
        median(candle.into_iter()),
        median(litert.into_iter()),
        median(ratios.into_iter()),
    ])
}

/// Each of `runs` calls of `run`'s wall milliseconds.
fn timed_runs(
    run: &impl Fn() -> Result<(), pose::PoseError>,
    runs: usize,
) -> Result<Vec<f64>, pose::PoseError> {
    (0..runs)
        .map(|_| {
            let before = Instant::now();
            run().map(|()| before.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}

/// The whitespace-separated numbers the reference script prints.
fn numbers(text: &str) -> Result<Vec<f64>, std::num::ParseFloatError> {
    text.split_whitespace().map(str::parse).collect()
}
