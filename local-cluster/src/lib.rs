//! The local control plane: real kube-apiserver + etcd, MinIO, Vault and
//! PostgreSQL on 127.0.0.1, for tests, the demo and development.
//!
//! ```no_run
//! # async fn demo() -> Result<(), golftracker_local_cluster::Error> {
//! use golftracker_local_cluster::LocalCluster;
//! let cluster = LocalCluster::builder().without_vault().start().await?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(cluster.kube_client()?);
//! let s3 = cluster.s3()?.client();
//! # Ok(()) }
//! ```
//!
//! The Go servers are built once into `~/.cache/golftracker/bin` by
//! `build-servers.sh` (called for missing ones); PostgreSQL comes from apt
//! (`cargo xtask test` and `cargo xtask env up` install it). Each cluster lives in its own temp dir, on its own
//! ports, so several may run at once; dropping it stops the servers and removes
//! the dir. See [`kube_apiserver`] for what a cluster without controller-manager
//! and kubelet does not do, and [`job_runner`] for how Jobs run anyway.

pub mod binaries;
pub mod job_runner;
pub mod kube_apiserver;
pub mod postgres;
mod process;
pub mod s3;
mod tls;
pub mod vault;

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use crate::process::ServerProcess;
pub use crate::{
    kube_apiserver::KubeEndpoint,
    postgres::PostgresEndpoint,
    process::{ServerRecord, group_alive, stop_servers},
    s3::S3Endpoint,
    vault::VaultEndpoint,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the server binaries failed: {0}")]
    BuildServers(String),
    #[error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin \
         (`apt-get install postgresql`, which `cargo xtask test` does; or set GOLFTRACKER_PG_BINDIR)"
    )]
    PostgresMissing,
    #[error("running as root, but there is no user {0:?} to run PostgreSQL as")]
    NoUnprivilegedUser(&'static str),
    #[error("{server} did not start: {problem}; log {log}:\n{log_tail}", log = log.display())]
    ServerNotReady {
        server: String,
        problem: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("failed to generate TLS material")]
    Tls(#[from] rcgen::Error),
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to build a Kubernetes client")]
    KubeClient(#[source] kube::Error),
    #[error("failed to build a Vault client: {0}")]
    VaultClient(String),
    #[error("failed to connect to PostgreSQL")]
    Postgres(#[source] sqlx::Error),
    #[error("this cluster was started without {0}")]
    NotStarted(&'static str),
}

/// Which servers to start, and where. Everything is on by default; a test that
/// only needs S3 turns the rest off and starts in a second.
#[derive(Clone, Debug)]
pub struct LocalClusterBuilder {
    kube: bool,
    s3: bool,
    vault: bool,
    postgres: bool,
    work_dir: Option<PathBuf>,
}

impl Default for LocalClusterBuilder {
    fn default() -> Self {
        Self {
            kube: true,
            s3: true,
            vault: true,
            postgres: true,
            work_dir: None,
        }
    }
}

impl LocalClusterBuilder {
    /// Starts no server unless one is named with `with_*`.
    pub fn none() -> Self {
        Self {
            kube: false,
            s3: false,
            vault: false,
            postgres: false,
            work_dir: None,
        }
    }
    pub fn with_kube(mut self) -> Self {
        self.kube = true;
        self
    }
    pub fn with_s3(mut self) -> Self {
        self.s3 = true;
        self
    }
    pub fn with_vault(mut self) -> Self {
        self.vault = true;
        self
    }
    pub fn with_postgres(mut self) -> Self {
        self.postgres = true;
        self
    }
    pub fn without_kube(mut self) -> Self {
        self.kube = false;
        self
    }
    pub fn without_s3(mut self) -> Self {
        self.s3 = false;
        self
    }
    pub fn without_vault(mut self) -> Self {
        self.vault = false;
        self
    }
    pub fn without_postgres(mut self) -> Self {
        self.postgres = false;
        self
    }
    /// Keeps everything under `dir` (created if missing, never removed) instead
    /// of a temp dir removed on drop.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Starts the chosen servers (building missing binaries first) and waits
    /// until each answers.
    pub async fn start(self) -> Result<LocalCluster, Error> {
        self.start_servers(true).await
    }

    /// Like [`Self::start`], but the servers outlive this process: for
    /// `cargo xtask env up`. Stop them with [`stop_servers`].
    pub async fn start_detached(self) -> Result<DetachedCluster, Error> {
        let cluster = self.start_servers(false).await?;
        Ok(cluster.detach())
    }

    async fn start_servers(self, die_with_parent: bool) -> Result<LocalCluster, Error> {
        install_crypto_provider();
        let go_servers: Vec<&str> = [
            (self.kube, "etcd"),
            (self.kube, "kube-apiserver"),
            (self.s3, "minio"),
            (self.vault, "vault"),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect();
        let binaries =
            tokio::task::spawn_blocking(move || binaries::ensure_go_servers(&go_servers))
                .await
                .map_err(|error| Error::BuildServers(error.to_string()))??;

        let (dir, temp_dir) = match &self.work_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    action: format!("create {}", dir.display()),
                    source,
                })?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("golftracker-cluster-")
                    .tempdir()
                    .map_err(|source| Error::Io {
                        action: "create a temp dir".into(),
                        source,
                    })?;
                (temp.path().to_owned(), Some(temp))
            }
        };

        // Each server starts on its own; they come up concurrently.
        let (kube, s3, vault, postgres) = tokio::join!(
            optional(
                self.kube,
                kube_apiserver::start(&dir, &binaries, die_with_parent)
            ),
            optional(self.s3, s3::start(&dir, &binaries, die_with_parent)),
            optional(self.vault, vault::start(&dir, &binaries, die_with_parent)),
            optional(self.postgres, postgres::start(&dir, die_with_parent)),
        );
        // On any failure the started servers are dropped, i.e. stopped.
        let (kube_servers, kube) = kube?.unzip();
        let (s3_server, s3) = s3?.unzip();
        let (vault_server, vault) = vault?.unzip();
        let (postgres_server, postgres) = postgres?.unzip();
        let kube_client = match &kube {
            Some(endpoint) => Some(endpoint.client().await?),
            None => None,
        };
        let servers = kube_servers
            .into_iter()
            .flatten()
            .chain(s3_server)
            .chain(vault_server)
            .chain(postgres_server)
            .collect();
        Ok(LocalCluster {
            endpoints: Endpoints {
                work_dir: dir,
                kube,
                s3,
                vault,
                postgres,
            },
            kube_client,
            servers,
            temp_dir,
        })
    }
}

async fn optional<T>(
    wanted: bool,
    start: impl Future<Output = Result<T, Error>>,
) -> Result<Option<T>, Error> {
    if wanted {
        start.await.map(Some)
    } else {
        Ok(None)
    }
}

/// Where each started server listens, and with which credentials. Serializable
/// so `cargo xtask env` can keep it in its state file. Not `Debug`: it holds
/// secrets.
#[derive(Clone, Serialize, Deserialize)]
pub struct Endpoints {
    /// Logs, data and TLS material of this cluster.
    pub work_dir: PathBuf,
    pub kube: Option<KubeEndpoint>,
    pub s3: Option<S3Endpoint>,
    pub vault: Option<VaultEndpoint>,
    pub postgres: Option<PostgresEndpoint>,
}

/// Running servers owned by this value: dropping it stops them all and removes
/// the temp dir.
pub struct LocalCluster {
    endpoints: Endpoints,
    kube_client: Option<kube::Client>,
    /// In start order; stopped in reverse.
    servers: Vec<ServerProcess>,
    temp_dir: Option<tempfile::TempDir>,
}

/// Servers left running by [`LocalClusterBuilder::start_detached`].
#[derive(Clone, Serialize, Deserialize)]
pub struct DetachedCluster {
    pub endpoints: Endpoints,
    pub servers: Vec<ServerRecord>,
}

impl LocalCluster {
    /// Starts every server; see [`LocalClusterBuilder`] to pick fewer.
    pub async fn start() -> Result<Self, Error> {
        LocalClusterBuilder::default().start().await
    }

    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder::default()
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Logs, data and TLS material of this cluster.
    pub fn work_dir(&self) -> &Path {
        &self.endpoints.work_dir
    }

    pub fn kube(&self) -> Result<&KubeEndpoint, Error> {
        self.endpoints
            .kube
            .as_ref()
            .ok_or(Error::NotStarted("kube-apiserver"))
    }

    /// A client authenticated as the cluster admin.
    pub fn kube_client(&self) -> Result<kube::Client, Error> {
        self.kube_client
            .clone()
            .ok_or(Error::NotStarted("kube-apiserver"))
    }

    pub fn s3(&self) -> Result<&S3Endpoint, Error> {
        self.endpoints.s3.as_ref().ok_or(Error::NotStarted("MinIO"))
    }

    pub fn vault(&self) -> Result<&VaultEndpoint, Error> {
        self.endpoints
            .vault
            .as_ref()
            .ok_or(Error::NotStarted("Vault"))
    }

    pub fn postgres(&self) -> Result<&PostgresEndpoint, Error> {
        self.endpoints
            .postgres
            .as_ref()
            .ok_or(Error::NotStarted("PostgreSQL"))
    }

    /// The running servers (name, process id, log), in start order: a benchmark reads
    /// their CPU time from /proc.
    pub fn servers(&self) -> impl Iterator<Item = &ServerRecord> {
        self.servers.iter().map(|s| &s.record)
    }

    /// Stops one server (`minio`, `postgres` or `vault`) to test an outage; its port
    /// refuses connections until [`Self::restart_server`].
    pub fn stop_server(&mut self, name: &str) -> Result<(), Error> {
        self.server_mut(name)?.stop();
        Ok(())
    }

    /// Starts a server stopped by [`Self::stop_server`] again on the same port, data
    /// and credentials (dev-mode Vault keeps no data: it comes back empty), and waits
    /// until it answers.
    pub async fn restart_server(&mut self, name: &str) -> Result<(), Error> {
        let timeout = std::time::Duration::from_secs(60);
        let endpoints = self.endpoints.clone();
        let server = self.server_mut(name)?;
        server.restart()?;
        match name {
            "minio" => {
                let s3 = endpoints.s3.as_ref().ok_or(Error::NotStarted("MinIO"))?;
                server.wait_ready(timeout, || s3.ping()).await
            }
            "postgres" => {
                let pg = endpoints
                    .postgres
                    .as_ref()
                    .ok_or(Error::NotStarted("PostgreSQL"))?;
                server.wait_ready(timeout, || pg.ping()).await
            }
            "vault" => {
                let vault = endpoints.vault.as_ref().ok_or(Error::NotStarted("Vault"))?;
                server.wait_ready(timeout, || vault.ping()).await
            }
            _ => Err(Error::NotStarted(
                "a restartable server (minio, postgres, vault)",
            )),
        }
    }

    fn server_mut(&mut self, name: &str) -> Result<&mut ServerProcess, Error> {
        self.servers
            .iter_mut()
            .find(|s| s.record.name == name)
            .ok_or(Error::NotStarted("the named server"))
    }

    fn detach(mut self) -> DetachedCluster {
        let servers = std::mem::take(&mut self.servers)
            .into_iter()
            .map(ServerProcess::detach)
            .collect();
        if let Some(temp_dir) = self.temp_dir.take() {
            let _ = temp_dir.keep();
        }
        DetachedCluster {
            endpoints: self.endpoints.clone(),
            servers,
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Signal all first so they shut down in parallel, then wait for each.
        for server in &self.servers {
            server.send_stop_signal();
        }
        while self.servers.pop().is_some() {}
    }
}

/// Writes a file only its owner can read (keys, kubeconfig, passwords).
pub fn write_private_file(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|source| Error::Io {
            action: format!("write {}", path.display()),
            source,
        })
}

/// A random alphanumeric string for passwords and tokens.
pub(crate) fn random_secret(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// vaultrs and sqlx leave the rustls crypto provider to the process; we use
/// aws-lc-rs like the rest of the workspace. A provider already installed wins.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
