//! Developer tasks, run as `cargo xtask <task>` (alias in .cargo/config.toml).

mod crds;
mod demo;
mod env;
mod eval_swings;
mod models;
mod system;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "GolfTracker developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate the CRD YAML in crds/yaml/ from the Rust types.
    Crds {
        /// Only check that the checked-in YAML matches the types; exit non-zero if not.
        #[arg(long)]
        check: bool,
    },
    /// The local control plane in the background: `env up`, `env status`, `env down`.
    Env {
        #[command(subcommand)]
        command: env::EnvCommand,
    },
    /// Fetch the pinned pose models (npm), check their sha256 and convert them to safetensors.
    Models {
        /// Cache directory (default: $HOME/.cache/golftracker/models).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The whole system on this machine: local control plane, operator, quickstart
    /// stack, and a sample swing analysed with the `golftracker` CLI.
    Demo,
    /// Run the worker over labelled real swings (DIR/labels.csv) and score each event.
    EvalSwings {
        /// Folder with the clips and their labels.csv.
        dir: std::path::PathBuf,
        /// Only the clips whose `split` column has this value (e.g. tune, report).
        #[arg(long)]
        split: Option<String>,
        /// A worker binary to run instead of building this workspace's.
        #[arg(long)]
        worker: Option<std::path::PathBuf>,
    },
    /// Everything CI runs: installs what is missing, then format, lints and all tests.
    Test,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Crds { check } => crds::run(check),
        Task::Env { command } => env::run(command),
        Task::Demo => demo::run(),
        Task::Test => test::run(),
        Task::EvalSwings { dir, split, worker } => eval_swings::run(&dir, split.as_deref(), worker),
        Task::Models { dir } => models::run(&dir.map_or_else(models::default_dir, Ok)?),
    }
}
