//! `golftracker-worker`: analyses golf swing videos (see the subcommands).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use golftracker_worker::{Error, analyze, decode, job, pose, swing, synth};

#[derive(Parser)]
#[command(version, about = "Golf swing video analysis worker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse a local video file.
    Analyze {
        video: PathBuf,
        /// Where to write the report JSON.
        #[arg(long)]
        json: PathBuf,
        /// Where to write the report PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Pose model weights (safetensors from `cargo xtask models`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Camera view: face-on, down-the-line or unknown (inferred).
        #[arg(long, default_value = "unknown")]
        view: String,
        #[arg(long)]
        left_handed: bool,
        /// Where to write the pose of every analysed frame (JSON), for debugging.
        #[arg(long)]
        poses: Option<PathBuf>,
    },
    /// Run only the swing logic on a pose track written by `analyze --poses`
    /// (prints the events JSON): for looking into the swing logic without the model.
    AnalyzePoses {
        poses: PathBuf,
        #[arg(long, default_value = "unknown")]
        view: String,
        #[arg(long)]
        left_handed: bool,
    },
    /// Analyse one SwingAnalysis in a Job (inputs from the environment).
    Run,
    /// Write deterministic synthetic swing clips with ground-truth events.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 1280)]
        width: u32,
        #[arg(long, default_value_t = 720)]
        height: u32,
        #[arg(long, default_value_t = 30)]
        fps: u32,
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
    },
}

/// The pose model behind `--model` / the job's model URI.
fn load_model(path: &Path) -> Result<Box<dyn pose::PoseEstimator>, Error> {
    Ok(pose::load_estimator(path)?)
}

fn analyze_file(
    video: &Path,
    json: &Path,
    plot: Option<&Path>,
    model: Option<PathBuf>,
    view: &str,
    left_handed: bool,
    poses: Option<&Path>,
) -> Result<(), Error> {
    let options = analyze::Options {
        view: swing::CameraView::from_spec(view),
        left_handed,
        limits: decode::Limits::default(),
        poses_out: poses.map(Path::to_path_buf),
    };
    let load = || {
        let model = model
            .or_else(pose::default_weights)
            .ok_or_else(|| Error::Config("no pose model: pass --model".into()))?;
        load_model(&model)
    };
    let analysis = analyze::analyze_video(video, load, options)?;
    std::fs::write(json, serde_json::to_vec_pretty(&analysis.report)?)?;
    if let Some(plot) = plot {
        std::fs::write(plot, &analysis.png)?;
    }
    Ok(())
}

/// Most malloc arenas the worker's threads share, unless `MALLOC_ARENA_MAX`
/// says otherwise. glibc gives each thread that allocates an arena of its
/// own, up to 8 per core, and keeps what is freed there for that arena: each
/// inference runs on whichever rayon worker picks it up and leaves its
/// ~15 MiB of layer outputs in that thread's arena, so peak RSS grew with the
/// core count (1080p clip: 150 MiB on 2 threads, 236 on 16 here, 471 on a
/// 16-core host) where 4 arenas keep it flat.
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: i32 = 4;

fn main() -> ExitCode {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: a malloc setting, before any other thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    }
    // candle re-reads the CPU count on every op unless the rayon pool size is fixed.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        // SAFETY: nothing else runs yet; this is the first statement of main.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze {
            video,
            json,
            plot,
            model,
            view,
            left_handed,
            poses,
        } => analyze_file(
            &video,
            &json,
            plot.as_deref(),
            model,
            &view,
            left_handed,
            poses.as_deref(),
        ),
        Command::AnalyzePoses {
            poses,
            view,
            left_handed,
        } => analyze::read_poses(&poses).and_then(|samples| {
            let found = swing::analyze(&samples, swing::CameraView::from_spec(&view), left_handed)
                .map_err(Error::from)?;
            let events: serde_json::Map<String, serde_json::Value> = found
                .events
                .iter()
                .map(|(e, m)| (e.as_str().to_string(), m.frame.into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({"view": found.view.as_str(), "events": events,
                    "tempo_ratio": found.tempo_ratio, "backswing_ms": found.backswing_ms,
                    "downswing_ms": found.downswing_ms,
                    "recommendations": found.recommendations.iter().map(|r| r.code.clone()).collect::<Vec<_>>()})
            );
            Ok(())
        }),
        Command::Run => tokio::runtime::Runtime::new()
            .map_err(Error::Io)
            .and_then(|runtime| runtime.block_on(job::run(load_model))),
        Command::Synth {
            out,
            seed,
            count,
            width,
            height,
            fps,
            seconds,
        } => {
            let format = synth::ClipFormat {
                width,
                height,
                fps,
                seconds,
            };
            synth::write_clips(&out, seed, count, format).map(|_| ())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error ({}): {error}", error.code());
            ExitCode::FAILURE
        }
    }
}
