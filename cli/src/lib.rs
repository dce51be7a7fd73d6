//! `golftracker` (also installed as the kubectl plugin `kubectl-golftracker`):
//! submit swing videos to a GolfTrackerStack and read their analyses. Uses the
//! kubeconfig like kubectl does; S3 access comes from the stack's credentials
//! Secret, as the operator's own does.

mod cluster;
mod erase;
mod error;
mod follow;
mod report;
mod show;
mod submit;
mod upload;
mod video;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use golftracker_crds::analysis::{CameraView, Golfer, Handedness, Retention};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;

use crate::cluster::Target;
use crate::error::{Result, kube_error};

#[derive(Parser)]
#[command(
    name = "golftracker",
    version,
    about = "Submit golf-swing videos for analysis and read the results"
)]
struct Cli {
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's namespace).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a swing video to the stack's bucket and create its SwingAnalysis.
    Submit {
        /// The video file (MP4/MOV or Matroska/WebM).
        video: PathBuf,
        /// The GolfTrackerStack to analyse it with.
        #[arg(long)]
        stack: String,
        /// Follow the analysis until it finishes and print the result.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits, in seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Name of the SwingAnalysis (default: from the file name and the time).
        #[arg(long)]
        name: Option<String>,
        /// What deleting the analysis does to its data: Erase or Retain.
        #[arg(long, default_value = "Retain", value_parser = parse_enum::<Retention>)]
        retention: Retention,
        /// Higher runs first when the stack's worker slots are full (-1000..1000).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// The golfer's user id (default: $GOLFTRACKER_USER, else $USER).
        #[arg(long, env = "GOLFTRACKER_USER")]
        user: Option<String>,
        /// right or left.
        #[arg(long, default_value = "right", value_parser = parse_enum::<Handedness>)]
        handedness: Handedness,
        /// Club used, e.g. driver or 7-iron.
        #[arg(long)]
        club: Option<String>,
        /// down-the-line, face-on or unknown.
        #[arg(long, default_value = "unknown", value_parser = parse_enum::<CameraView>)]
        camera_view: CameraView,
    },
    /// List analyses as a table.
    List,
    /// Show one analysis: phase, swing events, tempo, recommendations, report location.
    Get { name: String },
    /// Download an analysis' report JSON and plot.
    Report {
        name: String,
        /// Directory to write them to (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Delete an analysis. With retention Erase its video, report and database rows go
    /// too; with Retain they are kept unless --erase-data is given.
    Erase {
        name: String,
        /// Switch retention to Erase first, so the data is deleted whatever was chosen at submit.
        #[arg(long)]
        erase_data: bool,
        /// How long to wait for the deletion to finish, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

/// Parses a CLI value the way the API spells it (`Erase`, `left`, `down-the-line`).
fn parse_enum<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<()> {
    let target = Target::connect(cli.context.as_deref(), cli.namespace.as_deref()).await?;
    match cli.command {
        Command::Submit {
            video,
            stack,
            wait,
            timeout,
            name,
            retention,
            priority,
            user,
            handedness,
            club,
            camera_view,
        } => {
            let user_id = user
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "anonymous".into());
            let request = submit::Request {
                video,
                stack,
                name,
                golfer: Golfer {
                    user_id,
                    handedness,
                    club,
                },
                camera_view,
                retention,
                priority,
                wait: wait.then(|| Duration::from_secs(timeout)),
            };
            submit::run(&target, request).await
        }
        Command::List => {
            let list = target
                .analyses()
                .list(&ListParams::default())
                .await
                .map_err(kube_error("list", "swinganalyses", &target.namespace))?;
            if list.items.is_empty() {
                println!("No analyses in namespace {}.", target.namespace);
            } else {
                print!("{}", show::table(&list.items, Timestamp::now()));
            }
            Ok(())
        }
        Command::Get { name } => {
            print!("{}", show::describe(&target.analysis(&name).await?));
            Ok(())
        }
        Command::Report { name, out } => {
            for path in report::run(&target, &name, &out).await? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Erase {
            name,
            erase_data,
            timeout,
        } => erase::run(&target, &name, erase_data, Duration::from_secs(timeout)).await,
    }
}

/// Entry point of both binaries.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One rustls crypto backend in the process (aws-lc-rs, like the operator).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn enum_values_are_spelled_like_the_api() {
        assert_eq!(parse_enum::<Retention>("Erase"), Ok(Retention::Erase));
        assert_eq!(
            parse_enum::<CameraView>("down-the-line"),
            Ok(CameraView::DownTheLine)
        );
        assert!(parse_enum::<Retention>("erase").is_err());
    }
}
