//! `cargo xtask test`: everything CI runs, in order, from a fresh machine: system
//! packages, the local control plane servers (cached), the pose models (cached), then
//! format, lints and the whole test suite against the real servers.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Runs one step of `task` in the workspace root, saying what runs and how long it took.
pub fn run_step(task: &str, name: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("[{task}] {name}: {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {program}"))?;
    println!(
        "[{task}] {name}: {status} after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn run() -> anyhow::Result<()> {
    crate::system::ensure_packages()?;
    run_step(
        "test",
        "servers",
        "bash",
        &["local-cluster/build-servers.sh"],
    )?;
    crate::models::run(&crate::models::default_dir()?)?;
    run_step(
        "test",
        "format",
        "cargo",
        &["fmt", "--all", "--", "--check"],
    )?;
    run_step(
        "test",
        "crds",
        "cargo",
        &["run", "--quiet", "-p", "xtask", "--", "crds", "--check"],
    )?;
    run_step(
        "test",
        "lints",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run_step("test", "tests", "cargo", &["test", "--workspace"])
}
