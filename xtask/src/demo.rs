//! `cargo xtask demo`: the whole system on this machine in one command. Installs what
//! is missing, builds the binaries, starts (or reuses) the local control plane,
//! installs the CRDs, runs the operator, applies the quickstart stack, and analyses a
//! synthetic swing with the `golftracker` CLI. A second run reuses all of it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use golftracker_crds::GolfTrackerStack;
use golftracker_crds::stack::condition;
use golftracker_local_cluster::{
    DetachedCluster, kube_apiserver::client_from_kubeconfig, stop_servers,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions::is_crd_established};
use kube::{Api, Client, ResourceExt};

use crate::env;
use crate::test::run_step;

const NAMESPACE: &str = "default";
const FIELD_MANAGER: &str = "golftracker-demo";
const OPERATOR: &str = "operator";
/// The seed of the synthetic clip (the one the e2e tests analyse).
const CLIP_SEED: u64 = 7;

fn say(message: &str) {
    println!("[demo] {message}");
}

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    crate::system::ensure_packages()?;
    run_step(
        "demo",
        "servers",
        "bash",
        &["local-cluster/build-servers.sh"],
    )?;
    let models = crate::models::default_dir()?;
    crate::models::run(&models)?;
    run_step(
        "demo",
        "build",
        "cargo",
        &[
            "build",
            "--quiet",
            "-p",
            "golftracker-operator",
            "-p",
            "golftracker-worker",
            "-p",
            "golftracker-cli",
            "--bins",
        ],
    )?;
    let bin = env::target_dir().join("debug");
    let env_dir = env::env_dir();
    let runtime = tokio::runtime::Runtime::new()?;
    let kubeconfig = runtime.block_on(async {
        say("local control plane: reusing it if it runs, else starting it");
        let mut cluster = env::ensure_up(&env_dir).await?;
        let kubeconfig = cluster
            .endpoints
            .kube
            .as_ref()
            .context("the environment has no kube-apiserver")?
            .kubeconfig
            .clone();
        let client = client_from_kubeconfig(&kubeconfig).await?;
        install_crds(&client).await?;
        apply_secrets(&client, &cluster).await?;
        enable_vault_kubernetes_auth(&cluster).await?;
        restart_operator(
            &env_dir,
            &mut cluster,
            &bin.join("golftracker-operator"),
            &kubeconfig,
        )?;
        let stack = quickstart_stack(&cluster, &crate::models::weights_path(&models))?;
        apply_stack(&client, &stack).await?;
        anyhow::Ok(kubeconfig)
    })?;

    let demo_dir = env::target_dir().join("golftracker-demo");
    let clip = synthetic_clip(&bin.join("golftracker-worker"), &demo_dir)?;
    let name = format!("demo-{}", std::time::UNIX_EPOCH.elapsed()?.as_secs());
    say(&format!(
        "submitting {} as swinganalysis/{name}",
        clip.display()
    ));
    let cli = bin.join("golftracker");
    let clip_arg = clip.to_string_lossy();
    run_cli(
        &cli,
        &kubeconfig,
        &[
            "submit",
            &clip_arg,
            "--stack",
            "quickstart",
            "--wait",
            "--name",
            &name,
            "--user",
            "demo",
            "--club",
            "7-iron",
            "--retention",
            "Erase",
        ],
    )?;
    let report_dir = demo_dir.join(&name);
    let report_arg = report_dir.to_string_lossy();
    run_cli(&cli, &kubeconfig, &["report", &name, "--out", &report_arg])?;
    say(&format!("done in {:.0}s", started.elapsed().as_secs_f64()));
    println!(
        "\nThe plot and the full report are in {}.\nTry:\n  \
         source {}\n  \
         {} list\n  \
         {} get {name}\n  \
         cargo xtask env down   # stops everything",
        report_dir.display(),
        env_dir.join("env.sh").display(),
        cli.display(),
        cli.display(),
    );
    Ok(())
}

async fn install_crds(client: &Client) -> anyhow::Result<()> {
    say("installing the CRDs");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in golftracker_crds::crd_manifests() {
        let name = manifest.crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&manifest.crd),
        )
        .await
        .with_context(|| format!("apply CRD {name}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established in 30s"))??;
    }
    Ok(())
}

/// The Secrets the quickstart stack names, with the local servers' credentials.
async fn apply_secrets(client: &Client, cluster: &DetachedCluster) -> anyhow::Result<()> {
    let endpoints = &cluster.endpoints;
    let s3 = endpoints.s3.as_ref().context("no MinIO")?;
    let pg = endpoints.postgres.as_ref().context("no PostgreSQL")?;
    let vault = endpoints.vault.as_ref().context("no Vault")?;
    say("writing the stack's Secrets (S3 keys, database login, Vault token)");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    for (name, data) in [
        (
            "golftracker-s3",
            serde_json::json!({"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key}),
        ),
        (
            "golftracker-db",
            serde_json::json!({"username": pg.user, "password": pg.password}),
        ),
        (
            "golftracker-vault-bootstrap",
            serde_json::json!({"token": vault.root_token}),
        ),
    ] {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": data,
        });
        secrets
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .with_context(|| format!("apply Secret {name}"))?;
    }
    Ok(())
}

/// The Vault administrator's part: the operator creates the worker's role in
/// Vault's Kubernetes auth method, which must exist and know this kube-apiserver.
async fn enable_vault_kubernetes_auth(cluster: &DetachedCluster) -> anyhow::Result<()> {
    let endpoints = &cluster.endpoints;
    let vault = endpoints.vault.as_ref().context("no Vault")?;
    let kube = endpoints.kube.as_ref().context("no kube-apiserver")?;
    say("Vault: Kubernetes auth method enabled and pointed at the kube-apiserver");
    Ok(vault.enable_kubernetes_auth(kube).await?)
}

/// Runs the freshly built operator in the background, replacing one an earlier run
/// started; `cargo xtask env down` stops it with the servers.
fn restart_operator(
    env_dir: &Path,
    cluster: &mut DetachedCluster,
    binary: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<()> {
    let (old, mut servers): (Vec<_>, Vec<_>) = cluster
        .servers
        .drain(..)
        .partition(|server| server.name == OPERATOR);
    stop_servers(&old);
    let log = cluster.endpoints.work_dir.join("operator.log");
    let mut command = Command::new(binary);
    command
        .args(["run", "--local-job-runner", "--leader-election=false"])
        .args(["--namespace", NAMESPACE, "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn");
    let operator = env::spawn_detached(OPERATOR, &mut command, &log)?;
    say(&format!(
        "operator running (pid {}, log {})",
        operator.pid,
        log.display()
    ));
    servers.push(operator);
    cluster.servers = servers;
    env::write_state(env_dir, cluster)
}

/// examples/quickstart-stack.yaml pointed at this machine's servers and model file
/// (the example's ports are the servers' usual ones; the local ones are picked free).
fn quickstart_stack(cluster: &DetachedCluster, model: &Path) -> anyhow::Result<GolfTrackerStack> {
    let path = env::workspace_root().join("examples/quickstart-stack.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut stack: GolfTrackerStack =
        serde_saphyr::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let endpoints = &cluster.endpoints;
    let s3 = endpoints.s3.as_ref().context("no MinIO")?;
    let pg = endpoints.postgres.as_ref().context("no PostgreSQL")?;
    let spec = &mut stack.spec;
    spec.storage.endpoint = Some(s3.endpoint.clone());
    spec.storage.region = s3.region.clone();
    spec.database.host = pg.host.clone();
    spec.database.port = i32::from(pg.port);
    spec.database.database = pg.database.clone();
    if let (Some(vault), Some(local)) = (spec.vault.as_mut(), endpoints.vault.as_ref()) {
        vault.address = local.address.clone();
    }
    spec.worker.model.uri = model.to_string_lossy().into_owned();
    Ok(stack)
}

/// Applies the stack and waits until the operator reports it Ready, printing each
/// condition as it changes.
async fn apply_stack(client: &Client, stack: &GolfTrackerStack) -> anyhow::Result<()> {
    let name = stack.name_any();
    say(&format!(
        "applying stack {name} (examples/quickstart-stack.yaml)"
    ));
    let stacks: Api<GolfTrackerStack> = Api::namespaced(client.clone(), NAMESPACE);
    stacks
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(stack),
        )
        .await
        .with_context(|| format!("apply stack {name}"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut shown = Vec::new();
    loop {
        let conditions = stacks
            .get(&name)
            .await?
            .status
            .map(|s| s.conditions)
            .unwrap_or_default();
        for c in &conditions {
            let line = format!("{} {} {}: {}", c.type_, c.status, c.reason, c.message);
            if !shown.contains(&line) {
                say(&format!("stack {name}: {line}"));
                shown.push(line);
            }
        }
        if golftracker_crds::conditions::is_true(&conditions, condition::READY) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "stack {name} not Ready after 180s (see the conditions above and the operator log)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The demo's swing clip, made once by the worker's `synth`.
fn synthetic_clip(worker: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let clip = dir.join(format!("swing-{CLIP_SEED}-0.mp4"));
    if clip.exists() {
        say(&format!("reusing the sample swing {}", clip.display()));
        return Ok(clip);
    }
    std::fs::create_dir_all(dir)?;
    let seed = CLIP_SEED.to_string();
    let out_dir = dir.to_string_lossy();
    run_step(
        "demo",
        "sample swing",
        &worker.to_string_lossy(),
        &[
            "synth",
            "--out",
            &out_dir,
            "--seed",
            &seed,
            "--width",
            "640",
            "--height",
            "480",
            "--seconds",
            "4",
        ],
    )?;
    Ok(clip)
}

fn run_cli(cli: &Path, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!("$ golftracker {}", args.join(" "));
    let status = Command::new(cli)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .status()
        .with_context(|| format!("run {}", cli.display()))?;
    if !status.success() {
        bail!("golftracker {} failed ({status})", args[0]);
    }
    Ok(())
}
