//! The operator binary run as its own process, as it runs in a Pod: so tests can
//! SIGKILL it and run two replicas that compete for the leader Lease.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{NAMESPACE, operator_binary};

/// Name of the operator's leader-election Lease (in [`NAMESPACE`] here).
pub const LEASE: &str = "golftracker-operator";

/// A running `golftracker-operator run`; SIGKILLed on drop.
pub struct OperatorProcess {
    child: Child,
    /// Its identity in the Lease (`POD_NAME`).
    pub identity: String,
    pub metrics_addr: SocketAddr,
}

impl OperatorProcess {
    /// Starts the operator against the cluster of `kubeconfig`, watching [`NAMESPACE`],
    /// labelling Jobs for the local job runner; its log is appended to `log`.
    pub fn spawn(
        kubeconfig: &Path,
        log: &Path,
        identity: &str,
        leader_election: bool,
    ) -> anyhow::Result<Self> {
        Self::spawn_binary(
            &operator_binary()?,
            kubeconfig,
            log,
            identity,
            leader_election,
        )
    }

    /// [`Self::spawn`] with a given build of the operator (the benchmark runs the
    /// image's `release-small` build).
    pub fn spawn_binary(
        binary: &Path,
        kubeconfig: &Path,
        log: &Path,
        identity: &str,
        leader_election: bool,
    ) -> anyhow::Result<Self> {
        let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut command = Command::new(binary);
        command
            .args([
                "run",
                "--namespace",
                NAMESPACE,
                "--lease-namespace",
                NAMESPACE,
            ])
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--leader-election", &leader_election.to_string()])
            // Reconcile concurrency is the operator's default, as the chart deploys it.
            .args(["--resync-seconds", "2", "--local-job-runner"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,kube=warn");
        Self::start(command, log, identity, metrics_addr)
    }

    /// Starts `command`, an operator command line of the caller's (say, a Deployment's
    /// arguments and environment) that serves on `metrics_addr`; its log is appended to `log`.
    pub fn start(
        mut command: Command,
        log: &Path,
        identity: &str,
        metrics_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start golftracker-operator")?;
        Ok(Self {
            child,
            identity: identity.into(),
            metrics_addr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown hook runs, the Lease is not released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Status code and body of a GET on its metrics port (`/metrics`, `/healthz`, `/readyz`).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("{path} answered: {head}"))?;
        Ok((code, body.to_string()))
    }

    /// The Prometheus text of its `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        match self.get("/metrics").await? {
            (200, body) => Ok(body),
            (code, _) => bail!("/metrics answered {code}"),
        }
    }

    /// Total reconciles of one controller so far (0 before the first).
    pub async fn reconciles(&self, controller: &str) -> anyhow::Result<u64> {
        let metrics = self.metrics().await?;
        let series =
            format!("golftracker_operator_reconciles_total{{controller=\"{controller}\"}} ");
        Ok(metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map(|v| v.trim().parse().unwrap_or(0))
            .unwrap_or(0))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Who holds the operator's leader Lease now.
pub async fn lease_holder(client: &Client) -> anyhow::Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get_opt(LEASE)
        .await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
