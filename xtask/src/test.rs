//! `cargo xtask test`: everything CI runs, in order, from a fresh machine: system
//! packages, the local control plane servers (cached), the pose models (cached), then
//! format, lints and the whole test suite against the real servers.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
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

/// A step running beside the others, its output in a log file that is printed when it
/// ends (interleaved progress of two builds would be unreadable).
struct BackgroundStep {
    task: &'static str,
    name: &'static str,
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl BackgroundStep {
    fn spawn(
        task: &'static str,
        name: &'static str,
        program: &str,
        args: &[&str],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let output = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        println!(
            "[{task}] {name}: {program} {} (in the background, log: {})",
            args.join(" "),
            log.display()
        );
        let child = Command::new(program)
            .args(args)
            .current_dir(workspace_root())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Self {
            task,
            name,
            child,
            log,
            started: Instant::now(),
        })
    }

    /// Waits for the step, then prints its log: all of it if it failed, else the lines
    /// that start with `[`, its own progress (not, e.g., Go's module downloads).
    fn wait(mut self) -> anyhow::Result<()> {
        let (task, name) = (self.task, self.name);
        println!("[{task}] {name}: waiting");
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {name}"))?;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|line| !status.success() || line.starts_with('['))
            .for_each(|line| println!("{line}"));
        println!(
            "[{task}] {name}: {status} after {:.0}s",
            self.started.elapsed().as_secs_f64()
        );
        if !status.success() {
            bail!("{name} failed ({status})");
        }
        Ok(())
    }
}

/// A step that fails stops the whole run: the background build (bash and its `go`
/// processes, one process group) must not outlive it.
impl Drop for BackgroundStep {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn run() -> anyhow::Result<()> {
    crate::system::ensure_packages()?;
    // On a bare machine the Go servers take about 20 minutes to build; cargo lints and
    // compiles the tests meanwhile (both builds leave cores idle at times: module
    // downloads, single-crate and link phases). Only running the tests needs them.
    let servers = BackgroundStep::spawn(
        "test",
        "servers",
        "bash",
        &["local-cluster/build-servers.sh"],
        crate::models::cache_root()?.join("servers-build.log"),
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
    run_step(
        "test",
        "compile tests",
        "cargo",
        &["test", "--workspace", "--no-run"],
    )?;
    servers.wait()?;
    run_step("test", "tests", "cargo", &["test", "--workspace"])
}
