//! Shared set-up of the end-to-end tests: a local control plane with the CRDs, a
//! stack backed by MinIO and PostgreSQL (made Ready by the operator's stack controller), the local job runner mapped to the
//! real `golftracker-worker`, and the operator's SwingAnalysis controller.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub mod operator_process;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use golftracker_crds::analysis::{Phase, SwingAnalysis};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_local_cluster::job_runner::{JobRunner, JobRunnerConfig};
use golftracker_local_cluster::{LocalCluster, LocalClusterBuilder};
use golftracker_operator::analysis::{self, Settings, job::JobOptions};
use golftracker_operator::stack;
use golftracker_operator::telemetry::Metrics;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;

pub const NAMESPACE: &str = "default";
pub const STACK: &str = "e2e";
pub const BUCKET: &str = "golftracker-e2e";

/// The directory cargo puts this workspace's binaries in.
fn target_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The real worker binary, built if this test run did not build it already.
pub fn worker_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("golftracker-worker")
}

/// The real operator binary (what the container image runs), built if missing.
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("golftracker-operator")
}

/// The `golftracker` CLI binary, built if missing.
pub fn cli_binary() -> anyhow::Result<PathBuf> {
    package_binary("golftracker-cli", "golftracker")
}

/// A binary of the workspace whose package and binary share `name`.
fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    package_binary(name, name)
}

/// Binary `name` of workspace package `package`, built only when missing:
/// `cargo test --workspace` builds the binaries of the packages that have
/// integration tests, not the others (the CLI, the operator), which are built here.
/// The workspace-hack crate gives this `-p` build the test run's dependency
/// features, so it compiles only the package itself. After changing the operator,
/// worker or CLI, build that binary (or delete it) so the tests run the new code.
fn package_binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let dir = target_bin_dir();
    let path = dir.join(name);
    if !path.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        if !cargo.status()?.success() {
            bail!("building {name} failed");
        }
    }
    Ok(path)
}

/// The pose weights `cargo xtask models` prepares.
pub fn model_path() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME")?;
    let path = PathBuf::from(home)
        .join(".cache/golftracker/models/blazepose-0.5.1675469404-v1/blazepose_full.safetensors");
    if !path.exists() {
        bail!(
            "pose model missing at {}: run `cargo xtask models`",
            path.display()
        );
    }
    Ok(path)
}

/// A synthetic swing clip made by the worker itself (deterministic for a seed).
pub fn synthetic_clip(dir: &Path, seed: u64) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(worker_binary()?)
        .args(["synth", "--out"])
        .arg(dir)
        .args([
            "--seed",
            &seed.to_string(),
            "--width",
            "640",
            "--height",
            "480",
            "--seconds",
            "4",
        ])
        .output()?;
    if !out.status.success() {
        bail!("synth failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(std::fs::read(dir.join(format!("swing-{seed}-0.mp4")))?)
}

/// Everything an end-to-end test needs, stopped on drop.
pub struct Harness {
    pub cluster: LocalCluster,
    pub client: Client,
    pub s3: aws_sdk_s3::Client,
    pub db: sqlx::PgPool,
    _runner: JobRunner,
    stop_operator: Option<oneshot::Sender<()>>,
    operator: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// Starts the servers, installs the CRDs, creates a Ready stack allowing
    /// `max_concurrent_jobs`, and starts the job runner and the operator.
    pub async fn start(max_concurrent_jobs: i32) -> anyhow::Result<Self> {
        let cluster = start_cluster().await?;
        install_crds(&cluster.kube_client()?).await?;
        let mut harness = Self::without_operator(cluster, max_concurrent_jobs).await?;
        harness.start_operator();
        wait_stack_ready(&harness.client, Duration::from_secs(60)).await?;
        Ok(harness)
    }

    /// Like [`Self::start`] without the operator: the test runs it its own way (as a
    /// process) and waits for the stack to become Ready itself.
    pub async fn start_without_operator(max_concurrent_jobs: i32) -> anyhow::Result<Self> {
        let cluster = start_cluster().await?;
        install_crds(&cluster.kube_client()?).await?;
        Self::without_operator(cluster, max_concurrent_jobs).await
    }

    /// Jobs the operator created, by the analysis they run.
    pub async fn jobs_by_analysis(&self) -> anyhow::Result<BTreeMap<String, Vec<Job>>> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), NAMESPACE);
        let mut by = BTreeMap::<String, Vec<Job>>::new();
        let managed =
            ListParams::default().labels("app.kubernetes.io/managed-by=golftracker-operator");
        for job in jobs.list(&managed).await? {
            let analysis = job
                .labels()
                .get("golftracker.io/analysis")
                .cloned()
                .unwrap_or_default();
            by.entry(analysis).or_default().push(job);
        }
        Ok(by)
    }

    /// On a cluster whose CRDs are installed (or being installed): the Secrets, the stack
    /// and the job runner, but no operator, for tests that run the operator their own way.
    pub async fn without_operator(
        cluster: LocalCluster,
        max_concurrent_jobs: i32,
    ) -> anyhow::Result<Self> {
        let client = cluster.kube_client()?;
        wait_crds_established(&client).await?;
        let s3 = cluster.s3()?.client();
        let db = cluster.postgres()?.pool().await?;
        create_stack_and_secrets(&client, &cluster, max_concurrent_jobs).await?;
        let runner = JobRunner::spawn(
            client.clone(),
            JobRunnerConfig::new(cluster.work_dir().join("job-runner"))
                .image("golftracker-worker", worker_binary()?),
        );
        Ok(Self {
            cluster,
            client,
            s3,
            db,
            _runner: runner,
            stop_operator: None,
            operator: None,
        })
    }

    /// Starts (or restarts) the operator's two controllers in this process.
    pub fn start_operator(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = Settings {
            namespace: Some(NAMESPACE.into()),
            concurrency: 8,
            options: JobOptions { local_runner: true },
        };
        let client = self.client.clone();
        let vault_sa_token = operator_vault_token_path(&self.cluster);
        self.operator = Some(tokio::spawn(async move {
            let stopped = futures::FutureExt::shared(async move {
                let _ = stopped.await;
            });
            let metrics = Metrics::default();
            tokio::join!(
                analysis::run(
                    client.clone(),
                    settings,
                    metrics.clone(),
                    || {},
                    stopped.clone()
                ),
                stack::run(
                    client,
                    Some(NAMESPACE.into()),
                    4,
                    Duration::from_secs(2),
                    vault_sa_token,
                    metrics,
                    stopped
                ),
            );
        }));
        self.stop_operator = Some(stop);
    }

    /// Stops the operator abruptly (the task is aborted mid-reconcile, like SIGKILL).
    pub fn kill_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
        }
        self.stop_operator = None;
    }

    pub fn analyses(&self) -> Api<SwingAnalysis> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Uploads a video and creates an analysis of it.
    pub async fn submit(
        &self,
        name: &str,
        video: &[u8],
        priority: i32,
        retention: &str,
    ) -> anyhow::Result<()> {
        let key = format!("videos/{name}.mp4");
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(video.to_vec().into())
            .send()
            .await?;
        let analysis: SwingAnalysis = serde_json::from_value(serde_json::json!({
            "apiVersion": "golftracker.io/v1alpha1",
            "kind": "SwingAnalysis",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "stackRef": {"name": STACK},
                "video": key,
                "golfer": {"userId": "golfer-1", "club": "7-iron"},
                "cameraView": "unknown",
                "priority": priority,
                "retention": retention,
            }
        }))?;
        self.analyses()
            .create(&PostParams::default(), &analysis)
            .await?;
        Ok(())
    }

    /// Waits until the named analyses finish and checks each Succeeded with exactly one
    /// Job (never a second, also across operator restarts); returns them.
    pub async fn wait_succeeded_with_one_job_each(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Vec<SwingAnalysis>> {
        let finished = self.wait_finished(names, timeout).await?;
        for a in &finished {
            let status = a.status.clone().unwrap_or_default();
            if status.phase != Phase::Succeeded {
                bail!(
                    "{} is {:?}: {:?}",
                    a.name_any(),
                    status.phase,
                    status.conditions
                );
            }
        }
        let jobs = self.jobs_by_analysis().await?;
        for name in names {
            let count = jobs.get(name).map(Vec::len).unwrap_or(0);
            if count != 1 {
                bail!("{name} has {count} Jobs, not exactly one");
            }
        }
        Ok(finished)
    }

    /// Waits until every named analysis is Succeeded or Failed; returns them.
    pub async fn wait_finished(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Vec<SwingAnalysis>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut done = Vec::new();
            for name in names {
                let a = self.analyses().get(name).await?;
                if a.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
                    done.push(a);
                }
            }
            if done.len() == names.len() {
                return Ok(done);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} of {} analyses finished in {timeout:?}",
                    done.len(),
                    names.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.kill_operator();
    }
}

/// Where the in-process operator reads its ServiceAccount token for Vault's Kubernetes
/// auth (a test that wires Vault writes a TokenRequest token there).
pub fn operator_vault_token_path(cluster: &LocalCluster) -> PathBuf {
    cluster.work_dir().join("operator-vault-token")
}

/// A kubeconfig that authenticates as ServiceAccount `account` of [`NAMESPACE`] (created
/// if missing) with a TokenRequest token, as a pod of that account would; returns its path.
pub async fn service_account_kubeconfig(
    cluster: &LocalCluster,
    account: &str,
) -> anyhow::Result<PathBuf> {
    service_account_kubeconfig_in(cluster, NAMESPACE, account).await
}

/// A TokenRequest token (one hour) of ServiceAccount `account` of `namespace`, created
/// if missing: what a pod of that account would present.
pub async fn service_account_token(
    cluster: &LocalCluster,
    namespace: &str,
    account: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.kube_client()?, namespace);
    if accounts.get_opt(account).await?.is_none() {
        let object: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": account, "namespace": namespace}
        }))?;
        accounts.create(&PostParams::default(), &object).await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")?;
    Ok(token)
}

/// [`service_account_kubeconfig`] for an account of another namespace (one a Helm
/// release installed, say).
pub async fn service_account_kubeconfig_in(
    cluster: &LocalCluster,
    namespace: &str,
    account: &str,
) -> anyhow::Result<PathBuf> {
    let token = service_account_token(cluster, namespace, account).await?;
    let kube = cluster.kube()?;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "local", "cluster": {"server": kube.server, "certificate-authority": kube.ca_cert}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account, "namespace": namespace}}],
    });
    let path = cluster
        .work_dir()
        .join(format!("kubeconfig-{namespace}-{account}"));
    std::fs::write(&path, kubeconfig.to_string())?;
    Ok(path)
}

/// A scratch directory for one test's files (clips), under the system temp dir.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("golftracker-e2e-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test's temp dir");
    dir
}

pub fn phase(a: &SwingAnalysis) -> Phase {
    a.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The servers the end-to-end tests use: kube-apiserver, MinIO and PostgreSQL.
pub async fn start_cluster() -> anyhow::Result<LocalCluster> {
    Ok(e2e_servers().start().await?)
}

/// [`start_cluster`] and a Vault dev server.
pub async fn start_cluster_with_vault() -> anyhow::Result<LocalCluster> {
    Ok(e2e_servers().with_vault().start().await?)
}

fn e2e_servers() -> LocalClusterBuilder {
    golftracker_local_cluster::install_crypto_provider();
    LocalClusterBuilder::none()
        .with_kube()
        .with_s3()
        .with_postgres()
}

/// The Vault Secrets Operator's four CRDs, accepting any spec: enough for the API server
/// to store what the operator emits with `secretDelivery: VaultSecretsOperator`.
pub async fn install_vso_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in [
        "VaultConnection",
        "VaultAuth",
        "VaultStaticSecret",
        "VaultDynamicSecret",
    ] {
        let resource = stack::vso::api_resource(kind);
        let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{}.{}", resource.plural, resource.group)},
            "spec": {
                "group": resource.group,
                "names": {"kind": kind, "plural": resource.plural},
                "scope": "Namespaced",
                "versions": [{"name": resource.version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            }
        }))?;
        crds.create(&PostParams::default(), &crd).await?;
    }
    let served: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &stack::vso::api_resource("VaultDynamicSecret"),
    );
    for _ in 0..100 {
        if served.list(&Default::default()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the VSO CRDs were not served")
}

/// Applies the CRDs (see `Harness::without_operator` for waiting until they are served).
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in golftracker_crds::crd_manifests() {
        let name = manifest.crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("golftracker-e2e").force(),
            &Patch::Apply(&manifest.crd),
        )
        .await?;
    }
    Ok(())
}

/// Waits until the API serves the new kinds.
pub async fn wait_crds_established(client: &Client) -> anyhow::Result<()> {
    let analyses: Api<SwingAnalysis> = Api::namespaced(client.clone(), NAMESPACE);
    for _ in 0..100 {
        if analyses.list(&Default::default()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("CRDs were not established")
}

/// The stack under test and the Secrets it references; the operator makes it Ready.
pub async fn create_stack_and_secrets(
    client: &Client,
    cluster: &LocalCluster,
    max_concurrent_jobs: i32,
) -> anyhow::Result<()> {
    create_secrets(client, cluster).await?;
    create_stack(client, cluster, max_concurrent_jobs).await
}

async fn create_secrets(client: &Client, cluster: &LocalCluster) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let s3 = cluster.s3()?;
    let pg = cluster.postgres()?;
    for (name, data) in [
        (
            "golftracker-s3",
            serde_json::json!({"accessKeyId": s3.access_key, "secretAccessKey": s3.secret_key}),
        ),
        (
            "golftracker-db",
            serde_json::json!({"username": pg.user, "password": pg.password}),
        ),
    ] {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": data,
        }))?;
        secrets.create(&PostParams::default(), &secret).await?;
    }
    Ok(())
}

/// The stack under test; the operator's stack controller provisions it.
async fn create_stack(
    client: &Client,
    cluster: &LocalCluster,
    max_concurrent_jobs: i32,
) -> anyhow::Result<()> {
    let stack = stack_manifest(cluster, STACK, BUCKET, max_concurrent_jobs)?;
    let stacks: Api<GolfTrackerStack> = Api::namespaced(client.clone(), NAMESPACE);
    stacks.create(&PostParams::default(), &stack).await?;
    Ok(())
}

/// A stack on this cluster's MinIO and PostgreSQL, using the Secrets of
/// [`create_stack_and_secrets`].
pub fn stack_manifest(
    cluster: &LocalCluster,
    name: &str,
    bucket: &str,
    max_concurrent_jobs: i32,
) -> anyhow::Result<GolfTrackerStack> {
    let s3 = cluster.s3()?;
    let pg = cluster.postgres()?;
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1",
        "kind": "GolfTrackerStack",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "storage": {"bucket": bucket, "region": s3.region, "endpoint": s3.endpoint, "forcePathStyle": true,
                        "credentialsSecret": "golftracker-s3",
                        "lifecycle": {"daysToExpire": 365},
                        "corsAllowedOrigins": ["https://app.golftracker.example"]},
            "database": {"host": pg.host, "port": pg.port, "database": pg.database, "sslMode": "disable",
                         "credentials": {"secretRef": "golftracker-db"}},
            "worker": {"image": "ghcr.io/golftracker/golftracker-worker:test", "maxConcurrentJobs": max_concurrent_jobs,
                       "backoffLimit": 0, "activeDeadlineSeconds": 600,
                       "model": {"uri": model_path()?.to_string_lossy()}},
        }
    }))?)
}

/// Waits until the stack controller reports the stack Ready.
pub async fn wait_stack_ready(
    client: &Client,
    timeout: Duration,
) -> anyhow::Result<GolfTrackerStack> {
    let stacks: Api<GolfTrackerStack> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stack = stacks.get(STACK).await?;
        let conditions = stack
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        if golftracker_crds::conditions::is_true(&conditions, "Ready") {
            return Ok(stack);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("stack not Ready in {timeout:?}: {conditions:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
