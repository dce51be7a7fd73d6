//! System packages from Debian's apt that building and testing need. Installed when
//! missing and running as root (CI and fresh machines); otherwise the command to run
//! is printed.

use std::process::Command;

use anyhow::{Context, bail};

/// Everything the workspace needs beyond Rust and Go:
/// - PostgreSQL server binaries (the local control plane runs private clusters),
/// - FFmpeg development libraries + clang/pkg-config for the worker's `ffmpeg-next`,
/// - the `ffmpeg` CLI (benchmarks compare against it),
/// - python3-venv (the pose golden test runs the official LiteRT runtime in a venv).
pub const PACKAGES: &[&str] = &[
    "postgresql",
    "clang",
    "libclang-dev",
    "pkg-config",
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libswresample-dev",
    "ffmpeg",
    "python3-venv",
];

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Installs missing packages with apt-get when root; fails with the command to run otherwise.
pub fn ensure_packages() -> anyhow::Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        bail!(
            "missing system packages; run: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    println!("[system] installing {} from apt", missing.join(" "));
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    if apt_get(&install).is_err() {
        apt_get(&["update"])?;
        apt_get(&install)?;
    }
    Ok(())
}
