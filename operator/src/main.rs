//! `golftracker-operator`: `crds` prints the CRDs; `run` runs the controllers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use golftracker_operator::analysis::{self, Settings, job::JobOptions};
use golftracker_operator::http::{self, Readiness};
use golftracker_operator::stack;
use golftracker_operator::telemetry::{self, Metrics};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "golftracker-operator",
    version,
    about = "Kubernetes operator for GolfTracker swing analyses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (pipe to `kubectl apply -f -`).
    Crds,
    /// Run the controllers.
    Run {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Reconciles running at once, per controller. More only queues requests in
        /// the API server: on a 2-core control plane (operator_scale bench) 4 was a few
        /// percent faster to 1000 Jobs than 3 but pushed the reconcile p99 well past
        /// 50 ms (61 against 48 ms when measured side by side); 3 keeps it under.
        #[arg(long, env = "CONCURRENCY", default_value_t = 3)]
        concurrency: u16,
        /// Take a Lease before reconciling, so several replicas can run.
        #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Seconds between re-checks of a stack's bucket, database and Vault (drift repair).
        #[arg(long, env = "RESYNC_SECONDS", default_value_t = 120)]
        resync_seconds: u64,
        /// Label worker Jobs for the local job runner (local control plane only).
        #[arg(long, env = "LOCAL_JOB_RUNNER")]
        local_job_runner: bool,
        /// The operator's ServiceAccount token for Vault's Kubernetes auth (a projected
        /// token with Vault's audience is better than the default one).
        #[arg(
            long,
            env = "VAULT_SA_TOKEN_PATH",
            default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
        )]
        vault_sa_token_path: std::path::PathBuf,
    },
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    info!("shutting down");
}

/// Blocks until this replica holds the Lease; the returned channel flips to false if it is lost.
/// A standby reports ready while it waits (it is healthy, and a rollout or a
/// PodDisruptionBudget must count it); once leader it is ready again when its caches sync.
async fn become_leader(
    client: Client,
    namespace: &str,
    readiness: &Readiness,
) -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("golftracker-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, "golftracker-operator")
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("creating the leader-election Lease manager")?;
    let (mut leader, _task) = manager.watch().await;
    while !*leader.borrow_and_update() {
        info!("standby: waiting for leadership");
        readiness.set(true);
        leader.changed().await.context("leader election stopped")?;
    }
    readiness.set(false);
    info!("acquired leadership");
    Ok(leader)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match Cli::parse().command {
        Command::Crds => {
            for (i, manifest) in golftracker_crds::crd_manifests().iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", manifest.yaml);
            }
            Ok(())
        }
        Command::Run {
            namespace,
            metrics_addr,
            concurrency,
            leader_election,
            lease_namespace,
            resync_seconds,
            local_job_runner,
            vault_sa_token_path,
        } => {
            telemetry::init_logging();
            let client = Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            let metrics = Metrics::default();
            let readiness = Readiness::default();
            tokio::spawn(http::serve(
                metrics_addr,
                metrics.clone(),
                readiness.clone(),
            ));
            let lost_leadership = if leader_election {
                let mut leader =
                    become_leader(client.clone(), &lease_namespace, &readiness).await?;
                Some(async move {
                    while *leader.borrow_and_update() {
                        if leader.changed().await.is_err() {
                            break;
                        }
                    }
                    warn!("lost leadership; stopping");
                })
            } else {
                None
            };
            // One shutdown, broadcast to both controllers.
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                match lost_leadership {
                    Some(lost) => tokio::select! { _ = shutdown_signal() => {}, _ = lost => {} },
                    None => shutdown_signal().await,
                }
                let _ = stop.send(true);
            });
            let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            };
            let settings = Settings {
                namespace: namespace.clone(),
                concurrency,
                options: JobOptions {
                    local_runner: local_job_runner,
                },
            };
            tokio::join!(
                analysis::run(
                    client.clone(),
                    settings,
                    metrics.clone(),
                    move || readiness.set(true),
                    until_stopped(stopped.clone())
                ),
                stack::run(
                    client,
                    namespace,
                    concurrency,
                    Duration::from_secs(resync_seconds),
                    vault_sa_token_path,
                    metrics,
                    until_stopped(stopped)
                ),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    }
}
