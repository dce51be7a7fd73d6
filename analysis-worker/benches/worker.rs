//! Benchmarks that print ratios (not timed tests):
//! 1. PCE per event of the event logic on a larger set of synthetic trajectories;
//! 2. whole-clip `analyze` of a 1080p 30 fps 6 s synthetic clip against
//!    `ffmpeg -i clip -f null -` and against the clip's duration, with peak RSS;
//!    built with `cuda`, also against the same build with the GPU hidden.
//!
//! Run with `cargo bench -p golftracker-worker`. The model is taken from
//! `GOLFTRACKER_BENCH_MODEL` or the `cargo xtask models` cache; the worker
//! binary from `GOLFTRACKER_BENCH_WORKER` or this build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use golftracker_results_db::SwingEvent;
use golftracker_worker::golfer::synthetic_track;
use golftracker_worker::pose;
use golftracker_worker::swing::{analyze, correct_events};

fn pce_benchmark(runs: u64) {
    let mut correct = [0u64; 8];
    let mut failed = 0;
    let started = Instant::now();
    for seed in 10_000..10_000 + runs {
        let (samples, truth, params) = synthetic_track(seed);
        match analyze(&samples, Some(params.view), params.left_handed) {
            Ok(found) => {
                for (k, ok) in correct_events(&found.events, &truth).iter().enumerate() {
                    correct[k] += u64::from(*ok);
                }
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "event logic on {runs} synthetic trajectories ({failed} without a swing found), {:.1} ms each:",
        started.elapsed().as_secs_f64() * 1000.0 / runs as f64
    );
    for (event, c) in SwingEvent::ALL.iter().zip(correct) {
        println!(
            "  PCE {:<20} {:5.1} %",
            event.as_str(),
            100.0 * c as f64 / runs as f64
        );
    }
    println!(
        "  PCE {:<20} {:5.1} %",
        "all",
        100.0 * correct.iter().sum::<u64>() as f64 / (8 * runs) as f64
    );
}

/// Runs a command; returns wall seconds, success and the child's peak RSS (MiB).
fn measure(command: &mut Command) -> (f64, bool, f64) {
    let started = Instant::now();
    // Reaped by wait4 below, which also gives the child's own peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("command starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, and both pointers point to live locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (
        started.elapsed().as_secs_f64(),
        ok,
        usage.ru_maxrss as f64 / 1024.0,
    )
}

fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("GOLFTRACKER_BENCH_MODEL")
        .map(PathBuf::from)
        .or_else(pose::default_weights)?;
    path.exists().then_some(path)
}

fn clip_benchmark(dir: &Path) {
    // A bundle for another machine (gpu/run-bench.sh) points at its own copy.
    let worker = std::env::var("GOLFTRACKER_BENCH_WORKER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_golftracker-worker").to_string());
    let worker = worker.as_str();
    let seconds = 6.0;
    let (synth_s, ok, _) = measure(Command::new(worker).args([
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "2026",
        "--width",
        "1920",
        "--height",
        "1080",
        "--fps",
        "30",
        "--seconds",
        "6",
    ]));
    assert!(ok, "synth failed");
    let clip = dir.join("swing-2026-0.mp4");
    println!("synthetic 1080p30 6 s clip written in {synth_s:.2} s");
    let mut analyze = Command::new(worker);
    analyze
        .arg("analyze")
        .arg(&clip)
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--plot")
        .arg(dir.join("r.png"));
    let model = model_path();
    if let Some(model) = &model {
        analyze.arg("--model").arg(model);
    }
    // The same build with the GPU hidden: what the `cuda` feature buys.
    let mut analyze_on_cpu = Command::new(worker);
    analyze_on_cpu
        .args(analyze.get_args())
        .env("CUDA_VISIBLE_DEVICES", "");
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-v", "error", "-i"])
        .arg(&clip)
        .args(["-f", "null", "-"]);
    let have_ffmpeg = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_ffmpeg {
        println!("  (no ffmpeg CLI on PATH: no decode comparison)");
    }
    // In turns, so that a machine shared with other work slows all alike;
    // medians, so that one disturbed run does not move the figures.
    let (mut ffmpeg_runs, mut analyze_runs, mut cpu_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut analyze_ok = true;
    for _ in 0..CLIP_RUNS {
        if have_ffmpeg {
            let (seconds, ok, rss) = measure(&mut ffmpeg);
            assert!(ok, "ffmpeg failed");
            ffmpeg_runs.push((seconds, rss));
        }
        let (seconds, ok, rss) = measure(&mut analyze);
        analyze_ok &= ok;
        analyze_runs.push((seconds, rss));
        if cfg!(feature = "cuda") {
            let (seconds, ok, rss) = measure(&mut analyze_on_cpu);
            analyze_ok &= ok;
            cpu_runs.push((seconds, rss));
        }
    }
    let peak = |runs: &[(f64, f64)]| runs.iter().map(|r| r.1).fold(0.0, f64::max);
    let ratio = |a: &[(f64, f64)], b: &[(f64, f64)]| {
        let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a.0 / b.0).collect();
        median(&ratios, |r| *r)
    };
    let analyze_s = median(&analyze_runs, |r| r.0);
    let what = if analyze_ok {
        "analyze (decode, motion pass, pose, events, report)"
    } else {
        "analyze FAILED (no model? see its stderr above)"
    };
    println!("medians of {CLIP_RUNS} runs, taken in turns:");
    if have_ffmpeg {
        println!(
            "  ffmpeg -i clip -f null -: {:.2} s, peak RSS {:.0} MiB",
            median(&ffmpeg_runs, |r| r.0),
            peak(&ffmpeg_runs)
        );
    }
    println!(
        "  {what}: {analyze_s:.2} s, peak RSS {:.0} MiB",
        peak(&analyze_runs)
    );
    if !cpu_runs.is_empty() {
        println!(
            "  the same with CUDA_VISIBLE_DEVICES=\"\" (motion pass on the CPU): {:.2} s, peak RSS {:.0} MiB",
            median(&cpu_runs, |r| r.0),
            peak(&cpu_runs)
        );
        println!(
            "  ratio analyze / analyze with the GPU hidden: {:.2}",
            ratio(&analyze_runs, &cpu_runs)
        );
    }
    if have_ffmpeg {
        println!(
            "  ratio analyze / ffmpeg decode: {:.2}",
            ratio(&analyze_runs, &ffmpeg_runs)
        );
    }
    println!(
        "  ratio analyze / clip duration: {:.2} (≤ 1 is real time)",
        analyze_s / seconds
    );
    // A Job on a big node without a CPU limit runs as many threads as the
    // node has cores; its memory must not grow with them.
    let (_, ok, rss) = measure(analyze.env("RAYON_NUM_THREADS", MANY_THREADS.to_string()));
    println!(
        "  peak RSS with {MANY_THREADS} threads (a {MANY_THREADS}-core node's default): {rss:.0} MiB{}",
        if ok { "" } else { " (analyze FAILED)" }
    );
    if analyze_ok {
        let read = |path: PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
        };
        let (report, truth) = (read(dir.join("r.json")), read(clip.with_extension("json")));
        let frame = |v: &serde_json::Value, e: &str| v["events"][e]["frame"].as_i64().unwrap_or(-1);
        let errors: Vec<String> = SwingEvent::ALL
            .iter()
            .map(|e| {
                format!(
                    "{} {:+}",
                    e.as_str(),
                    frame(&report, e.as_str()) - frame(&truth, e.as_str())
                )
            })
            .collect();
        println!("  events found - true (frames): {}", errors.join(", "));
        println!(
            "  tempo {:.2} (true {:.2})",
            report["tempo_ratio"].as_f64().unwrap_or(f64::NAN),
            truth["tempo_ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

/// Runs of the whole-clip comparison.
const CLIP_RUNS: usize = 3;

/// Threads of the run that checks peak RSS on a big node.
const MANY_THREADS: usize = 16;

fn median<T>(runs: &[T], value: impl Fn(&T) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(value).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    pce_benchmark(500);
    let dir = tempfile::tempdir().expect("temp dir");
    clip_benchmark(dir.path());
}
