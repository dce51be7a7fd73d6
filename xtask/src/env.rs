//! `cargo xtask env up|status|down`: the local control plane in the background,
//! for the demo and for development. State (pids, ports, credentials) lives in
//! `target/golftracker-env/`, readable only by its owner.

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};
use clap::Subcommand;
use golftracker_local_cluster::{
    DetachedCluster, LocalCluster, ServerRecord, group_alive,
    job_runner::{self, JobRunnerConfig},
    kube_apiserver::client_from_kubeconfig,
    stop_servers,
};

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Start kube-apiserver+etcd, MinIO, Vault, PostgreSQL and the local Job
    /// runner in the background; print endpoints; write kubeconfig and env.sh.
    Up {
        /// Image (without tag) → local binary for the Job runner, as NAME=PATH.
        /// Default: golftracker-worker=target/debug/golftracker-worker.
        #[arg(long = "image", value_parser = parse_image)]
        images: Vec<(String, PathBuf)>,
    },
    /// Show what runs.
    Status,
    /// Stop everything and remove target/golftracker-env.
    Down,
    /// The Job runner process that `up` starts (not for people).
    #[command(hide = true)]
    JobRunner {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        work_dir: PathBuf,
        #[arg(long = "image", value_parser = parse_image)]
        images: Vec<(String, PathBuf)>,
    },
}

fn parse_image(mapping: &str) -> Result<(String, PathBuf), String> {
    mapping
        .split_once('=')
        .map(|(image, path)| (image.to_owned(), PathBuf::from(path)))
        .ok_or_else(|| format!("expected NAME=PATH, got {mapping:?}"))
}

pub fn run(command: EnvCommand) -> anyhow::Result<()> {
    let env_dir = env_dir();
    let runtime = tokio::runtime::Runtime::new()?;
    match command {
        EnvCommand::Up { images } => runtime.block_on(up(&env_dir, images)),
        EnvCommand::Status => status(&env_dir),
        EnvCommand::Down => down(&env_dir),
        EnvCommand::JobRunner {
            kubeconfig,
            work_dir,
            images,
        } => runtime.block_on(job_runner(&kubeconfig, &work_dir, images)),
    }
}

/// Where `env up` keeps its state, logs and data.
pub fn env_dir() -> PathBuf {
    target_dir().join("golftracker-env")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn state_file(env_dir: &Path) -> PathBuf {
    env_dir.join("state.json")
}

pub fn read_state(env_dir: &Path) -> anyhow::Result<Option<DetachedCluster>> {
    let path = state_file(env_dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))?,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
    }
}

async fn up(env_dir: &Path, images: Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    if let Some(state) = read_state(env_dir)?
        && state.servers.iter().any(|server| group_alive(server.pid))
    {
        bail!("already running (see `cargo xtask env status`; `cargo xtask env down` stops it)");
    }
    // PostgreSQL comes from apt.
    crate::system::ensure_packages()?;
    if env_dir.exists() {
        std::fs::remove_dir_all(env_dir)
            .with_context(|| format!("remove {}", env_dir.display()))?;
    }
    println!(
        "starting the local control plane (the first run builds the servers: minutes each on 2 cores)"
    );
    let started = std::time::Instant::now();
    let mut cluster = LocalCluster::builder()
        .work_dir(env_dir.join("cluster"))
        .start_detached()
        .await?;
    let runner = match &cluster.endpoints.kube {
        Some(kube) => start_job_runner(env_dir, &kube.kubeconfig, &images),
        None => bail!("the cluster has no kube-apiserver"),
    };
    match runner {
        Ok(runner) => cluster.servers.push(runner),
        Err(error) => {
            stop_servers(&cluster.servers);
            return Err(error);
        }
    }
    write_state(env_dir, &cluster)?;
    let env_file = env_dir.join("env.sh");
    golftracker_local_cluster::write_private_file(&env_file, &env_script(&cluster))?;
    println!("started in {:.1}s", started.elapsed().as_secs_f64());
    print_endpoints(&cluster);
    println!(
        "\nsource {}   # KUBECONFIG, AWS_*, VAULT_*, DATABASE_URL",
        env_file.display()
    );
    Ok(())
}

pub fn write_state(env_dir: &Path, cluster: &DetachedCluster) -> anyhow::Result<()> {
    Ok(golftracker_local_cluster::write_private_file(
        &state_file(env_dir),
        &serde_json::to_string_pretty(cluster)?,
    )?)
}

/// The running environment, started first when nothing (or only part of it) runs.
pub async fn ensure_up(env_dir: &Path) -> anyhow::Result<DetachedCluster> {
    if let Some(state) = read_state(env_dir)? {
        if state.servers.iter().all(|server| group_alive(server.pid)) {
            return Ok(state);
        }
        println!("part of the local control plane stopped: restarting all of it");
        down(env_dir)?;
    }
    up(env_dir, Vec::new()).await?;
    read_state(env_dir)?.context("`env up` wrote no state")
}

/// Starts `command` in a process group of its own that outlives xtask, stdout and
/// stderr to `log`; stopped with SIGTERM by `env down`.
pub fn spawn_detached(
    name: &str,
    command: &mut Command,
    log: &Path,
) -> anyhow::Result<ServerRecord> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start the {name}"))?;
    Ok(ServerRecord {
        name: name.to_owned(),
        pid: child.id() as i32,
        log: log.to_owned(),
        stop_signal: "SIGTERM".to_owned(),
    })
}

/// Starts `cargo xtask env job-runner` as a detached process of its own.
fn start_job_runner(
    env_dir: &Path,
    kubeconfig: &Path,
    images: &[(String, PathBuf)],
) -> anyhow::Result<ServerRecord> {
    let work_dir = env_dir.join("cluster");
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["env", "job-runner", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--work-dir")
        .arg(&work_dir);
    for (image, path) in images {
        command.arg(format!("--image={image}={}", path.display()));
    }
    spawn_detached("job-runner", &mut command, &work_dir.join("job-runner.log"))
}

async fn job_runner(
    kubeconfig: &Path,
    work_dir: &Path,
    images: Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    let mut config = JobRunnerConfig::new(work_dir);
    config.images = if images.is_empty() {
        default_images()
    } else {
        images.into_iter().collect()
    };
    println!("local job runner: images {:?}", config.images);
    job_runner::run(client_from_kubeconfig(kubeconfig).await?, config).await?;
    Ok(())
}

fn default_images() -> BTreeMap<String, PathBuf> {
    BTreeMap::from([(
        "golftracker-worker".to_owned(),
        target_dir().join("debug").join("golftracker-worker"),
    )])
}

fn status(env_dir: &Path) -> anyhow::Result<()> {
    let Some(state) = read_state(env_dir)? else {
        println!("not running (`cargo xtask env up` starts it)");
        return Ok(());
    };
    for server in &state.servers {
        let running = if group_alive(server.pid) {
            "running"
        } else {
            "STOPPED"
        };
        println!(
            "{:<15} {running:<8} pid {:<8} log {}",
            server.name,
            server.pid,
            server.log.display()
        );
    }
    print_endpoints(&state);
    Ok(())
}

fn down(env_dir: &Path) -> anyhow::Result<()> {
    if let Some(state) = read_state(env_dir)? {
        stop_servers(&state.servers);
        println!("stopped {} processes", state.servers.len());
    }
    if env_dir.exists() {
        std::fs::remove_dir_all(env_dir)
            .with_context(|| format!("remove {}", env_dir.display()))?;
    }
    Ok(())
}

/// Endpoints without secrets (those are in env.sh).
fn print_endpoints(cluster: &DetachedCluster) {
    let endpoints = &cluster.endpoints;
    if let Some(kube) = &endpoints.kube {
        println!(
            "kube-apiserver  {}  (KUBECONFIG={})",
            kube.server,
            kube.kubeconfig.display()
        );
    }
    if let Some(s3) = &endpoints.s3 {
        println!("S3 (MinIO)      {}  region {}", s3.endpoint, s3.region);
    }
    if let Some(vault) = &endpoints.vault {
        println!("Vault           {}", vault.address);
    }
    if let Some(postgres) = &endpoints.postgres {
        println!(
            "PostgreSQL      {}:{}  user {} db {}",
            postgres.host, postgres.port, postgres.user, postgres.database
        );
    }
    println!("logs and data   {}", endpoints.work_dir.display());
}

/// `env.sh`: what clients (kubectl, aws, vault, psql, the operator) read.
fn env_script(cluster: &DetachedCluster) -> String {
    let endpoints = &cluster.endpoints;
    let mut lines = Vec::new();
    let mut export = |name: &str, value: &str| lines.push(format!("export {name}='{value}'"));
    if let Some(kube) = &endpoints.kube {
        export("KUBECONFIG", &kube.kubeconfig.display().to_string());
    }
    if let Some(s3) = &endpoints.s3 {
        export("AWS_ACCESS_KEY_ID", &s3.access_key);
        export("AWS_SECRET_ACCESS_KEY", &s3.secret_key);
        export("AWS_REGION", &s3.region);
        export("AWS_ENDPOINT_URL", &s3.endpoint);
        export("GOLFTRACKER_S3_ENDPOINT", &s3.endpoint);
    }
    if let Some(vault) = &endpoints.vault {
        export("VAULT_ADDR", &vault.address);
        export("VAULT_TOKEN", &vault.root_token);
    }
    if let Some(postgres) = &endpoints.postgres {
        export("DATABASE_URL", &postgres.url());
    }
    lines.join("\n") + "\n"
}
