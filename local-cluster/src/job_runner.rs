//! The local Job runner: stands in for kube-controller-manager's Job controller
//! and the kubelet on the local control plane only.
//!
//! It watches batch/v1 Jobs labelled [`LOCAL_RUNNER_LABEL`]`=true` and runs each
//! pod as a local process: the container image maps to a local binary (see
//! [`JobRunnerConfig::images`]), `command`/`args` and `env`/`envFrom` are resolved
//! as the kubelet does (`value` with `$(VAR)` expansion, `secretKeyRef`,
//! `configMapKeyRef`, `fieldRef`), and stdout+stderr go to a log file per pod
//! ([`pod_logs`]). It writes the Job status as the Job controller does:
//! `startTime`, `active`/`ready`, `succeeded`/`failed`, `completionTime`, and the
//! `SuccessCriteriaMet`+`Complete` or `FailureTarget`+`Failed` conditions the
//! v1.36 API server requires together. `backoffLimit` (a new attempt per failure,
//! after [`JobRunnerConfig::retry_delay`]) and `activeDeadlineSeconds` (the pod
//! is killed, reason `DeadlineExceeded`) are honoured.
//!
//! Knowingly not done: pods are processes, not Pod objects; one pod of a Job
//! runs at a time (`parallelism` is ignored, `completions` are run one after
//! another); `Indexed` completion mode, `podFailurePolicy`, `successPolicy` and
//! `ttlSecondsAfterFinished` are ignored; volumes are not mounted (an `emptyDir`
//! scratch is the `TMPDIR`/`HOME` given to the process, which also runs there).
//! A pod spec the runner cannot honour (unmapped image, missing Secret key, more
//! than one container) fails the Job at once with the problem as its message,
//! where a kubelet would leave the pod pending.

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        batch::v1::{Job, JobCondition, JobStatus},
        core::v1::{ConfigMap, Container, EnvVar, EnvVarSource, Secret},
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{sync::Semaphore, task::JoinHandle};

use crate::Error;

/// Label key that hands a Job to the local runner. The operator sets it (value
/// [`LOCAL_RUNNER_LABEL_VALUE`]) on its worker Jobs; on a real cluster it is
/// inert.
pub const LOCAL_RUNNER_LABEL: &str = "golftracker.io/local-runner";
pub const LOCAL_RUNNER_LABEL_VALUE: &str = "true";

/// The Job controller's default `backoffLimit`.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// What the runner needs to know besides the API server.
#[derive(Clone, Debug)]
pub struct JobRunnerConfig {
    /// Image → local binary. Keys are image names without tag or digest, either
    /// in full (`ghcr.io/golftracker/golftracker-worker`) or just the last path
    /// segment (`golftracker-worker`). The binary is the image's entrypoint: it
    /// runs when the container has no `command`, or when `command[0]` names it
    /// (by file name); any other `command[0]` is looked up on the host `PATH`.
    pub images: BTreeMap<String, PathBuf>,
    /// Pod logs and scratch dirs go under `<work_dir>/jobs/<namespace>/<job>/`.
    pub work_dir: PathBuf,
    /// Pods running at once, over all Jobs.
    pub max_parallel_pods: usize,
    /// Pause before the next attempt after a failed pod (the Job controller backs
    /// off from 10 s exponentially; tests want less).
    pub retry_delay: Duration,
}

impl JobRunnerConfig {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            images: BTreeMap::new(),
            work_dir: work_dir.into(),
            max_parallel_pods: 2,
            retry_delay: Duration::from_secs(1),
        }
    }

    /// Maps an image (without tag) to the local binary that stands for it.
    pub fn image(mut self, image: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        self.images.insert(image.into(), binary.into());
        self
    }
}

/// A runner in a background task; dropping it stops the runner and kills its pods.
pub struct JobRunner {
    task: JoinHandle<()>,
}

impl JobRunner {
    pub fn spawn(client: kube::Client, config: JobRunnerConfig) -> Self {
        Self {
            task: tokio::spawn(async move {
                if let Err(error) = run(client, config).await {
                    tracing::error!(%error, "local job runner stopped");
                }
            }),
        }
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Log files of a Job's pods, oldest first.
pub fn pod_logs(work_dir: &Path, namespace: &str, job: &str) -> Vec<PathBuf> {
    let mut logs: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(job_dir(work_dir, namespace, job))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .map(|path| {
            let created = path
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (created, path)
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, path)| path).collect()
}

fn job_dir(work_dir: &Path, namespace: &str, job: &str) -> PathBuf {
    work_dir.join("jobs").join(namespace).join(job)
}

/// Runs Jobs until the watch ends (it retries API errors with backoff).
pub async fn run(client: kube::Client, config: JobRunnerConfig) -> Result<(), Error> {
    let config = Arc::new(config);
    let pod_slots = Arc::new(Semaphore::new(config.max_parallel_pods.max(1)));
    let watch_config = watcher::Config::default()
        .labels(&format!("{LOCAL_RUNNER_LABEL}={LOCAL_RUNNER_LABEL_VALUE}"));
    let mut events = watcher(Api::<Job>::all(client.clone()), watch_config)
        .default_backoff()
        .boxed();
    // Job uid → the task running it. Aborting the task kills its pod.
    let mut running: HashMap<String, AbortOnDrop> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "watching Jobs failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Apply(job) | watcher::Event::InitApply(job) => {
                let Some(uid) = job.uid() else { continue };
                if is_finished(&job) || job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
                    running.remove(&uid);
                    continue;
                }
                if running.get(&uid).is_some_and(|task| !task.0.is_finished()) {
                    continue;
                }
                let task = tokio::spawn(run_job(
                    client.clone(),
                    job,
                    config.clone(),
                    pod_slots.clone(),
                ));
                running.insert(uid, AbortOnDrop(task));
            }
            watcher::Event::Delete(job) => {
                if let Some(uid) = job.uid() {
                    running.remove(&uid);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
    Ok(())
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_job(
    client: kube::Client,
    job: Job,
    config: Arc<JobRunnerConfig>,
    pod_slots: Arc<Semaphore>,
) {
    let name = job.name_any();
    let namespace = job.namespace().unwrap_or_default();
    if let Err(error) = drive_job(client, job, &config, &pod_slots).await {
        tracing::warn!(%error, job = %name, %namespace, "running Job failed; retried on its next change");
    }
}

/// What became of one pod.
#[derive(Debug, PartialEq)]
enum PodOutcome {
    Succeeded,
    Failed,
    DeadlineExceeded,
}

/// Runs pods of one Job until it is complete or failed, writing its status.
async fn drive_job(
    client: kube::Client,
    job: Job,
    config: &JobRunnerConfig,
    pod_slots: &Semaphore,
) -> Result<(), kube::Error> {
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let name = job.name_any();
    let spec = job.spec.clone().unwrap_or_default();
    let completions = spec.completions.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let mut status = job.status.clone().unwrap_or_default();
    let start_time = status
        .start_time
        .get_or_insert_with(|| Time(Timestamp::now()))
        .0;
    let deadline = spec
        .active_deadline_seconds
        .map(|seconds| start_time + Duration::from_secs(seconds.max(0) as u64));

    loop {
        let succeeded = status.succeeded.unwrap_or(0);
        let failed = status.failed.unwrap_or(0);
        if succeeded >= completions {
            return write_status(&api, &name, finished(status, Finish::Complete)).await;
        }
        if failed > backoff_limit {
            return write_status(&api, &name, finished(status, Finish::BackoffLimitExceeded)).await;
        }
        if failed > 0 {
            tokio::time::sleep(config.retry_delay).await;
        }
        let _slot = pod_slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let pod = match PodPlan::prepare(&client, &job, config).await {
            Ok(pod) => pod,
            Err(problem) => {
                status.failed = Some(failed + 1);
                return write_status(
                    &api,
                    &name,
                    finished(status, Finish::PodSpecProblem(problem)),
                )
                .await;
            }
        };
        status.active = Some(1);
        status.ready = Some(1);
        write_status(&api, &name, status.clone()).await?;
        let outcome = pod.run(deadline).await;
        status.active = Some(0);
        status.ready = Some(0);
        match outcome {
            PodOutcome::Succeeded => status.succeeded = Some(succeeded + 1),
            PodOutcome::Failed => status.failed = Some(failed + 1),
            PodOutcome::DeadlineExceeded => {
                status.failed = Some(failed + 1);
                return write_status(&api, &name, finished(status, Finish::DeadlineExceeded)).await;
            }
        }
        write_status(&api, &name, status.clone()).await?;
    }
}

async fn write_status(api: &Api<Job>, name: &str, status: JobStatus) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// How a Job ends.
#[derive(Debug)]
enum Finish {
    Complete,
    BackoffLimitExceeded,
    DeadlineExceeded,
    PodSpecProblem(PodSpecProblem),
}

/// The final status: counters, `completionTime` (only for Complete, as the API
/// server demands) and the pair of conditions it requires for a finished Job.
fn finished(mut status: JobStatus, finish: Finish) -> JobStatus {
    let now = Time(Timestamp::now());
    let condition = |type_: &str, reason: &str, message: &str| JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let (interim, last, reason, message) = match &finish {
        Finish::Complete => (
            "SuccessCriteriaMet",
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods".to_owned(),
        ),
        Finish::BackoffLimitExceeded => (
            "FailureTarget",
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_owned(),
        ),
        Finish::DeadlineExceeded => (
            "FailureTarget",
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline".to_owned(),
        ),
        Finish::PodSpecProblem(problem) => (
            "FailureTarget",
            "Failed",
            "LocalRunnerPodSpecUnsupported",
            problem.to_string(),
        ),
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != interim && c.type_ != last);
    conditions.push(condition(interim, reason, &message));
    conditions.push(condition(last, reason, &message));
    status.active = Some(0);
    status.ready = Some(0);
    if matches!(finish, Finish::Complete) {
        status.completion_time = Some(now);
    }
    status
}

fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Why a pod spec cannot run here.
#[derive(Debug, thiserror::Error)]
enum PodSpecProblem {
    #[error("image {0:?} is not mapped to a local binary")]
    ImageNotMapped(String),
    #[error("the pod has {0} containers; the local runner runs exactly one")]
    ContainerCount(usize),
    #[error("env {var}: {problem}")]
    Env { var: String, problem: String },
    #[error("envFrom: {0}")]
    EnvFrom(String),
    #[error("failed to prepare the pod directory: {0}")]
    PodDir(std::io::Error),
}

/// A pod ready to run: its identity, processes and where its output goes.
struct PodPlan {
    log: PathBuf,
    scratch: PathBuf,
    /// Init containers first, then the container.
    processes: Vec<ProcessPlan>,
}

struct ProcessPlan {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// What `fieldRef` can refer to.
struct PodIdentity<'a> {
    name: String,
    namespace: &'a str,
    uid: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    service_account: String,
}

impl PodPlan {
    async fn prepare(
        client: &kube::Client,
        job: &Job,
        config: &JobRunnerConfig,
    ) -> Result<Self, PodSpecProblem> {
        let namespace = job.namespace().unwrap_or_default();
        let template = job
            .spec
            .as_ref()
            .map(|spec| spec.template.clone())
            .unwrap_or_default();
        let pod_spec = template.spec.unwrap_or_default();
        if pod_spec.containers.len() != 1 {
            return Err(PodSpecProblem::ContainerCount(pod_spec.containers.len()));
        }
        let meta = template.metadata.unwrap_or_default();
        let suffix = crate::random_secret(5).to_lowercase();
        let pod = PodIdentity {
            name: format!("{}-{suffix}", job.name_any()),
            namespace: &namespace,
            uid: pod_uid(),
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            service_account: pod_spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        };
        let dir = job_dir(&config.work_dir, &namespace, &job.name_any());
        let scratch = dir.join(format!("{}.scratch", pod.name));
        std::fs::create_dir_all(&scratch).map_err(PodSpecProblem::PodDir)?;
        let mut processes = Vec::new();
        for container in pod_spec
            .init_containers
            .iter()
            .flatten()
            .chain(&pod_spec.containers)
        {
            processes.push(ProcessPlan::prepare(client, container, &pod, &scratch, config).await?);
        }
        Ok(Self {
            log: dir.join(format!("{}.log", pod.name)),
            scratch,
            processes,
        })
    }

    /// Runs the processes in order until one fails or `deadline` passes.
    async fn run(self, deadline: Option<Timestamp>) -> PodOutcome {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&self.log);
        let log = match log {
            Ok(log) => log,
            Err(error) => {
                tracing::warn!(%error, log = %self.log.display(), "cannot create pod log");
                return PodOutcome::Failed;
            }
        };
        for process in &self.processes {
            let outcome = process.run(&log, &self.scratch, deadline).await;
            if outcome != PodOutcome::Succeeded {
                return outcome;
            }
        }
        PodOutcome::Succeeded
    }
}

impl ProcessPlan {
    async fn prepare(
        client: &kube::Client,
        container: &Container,
        pod: &PodIdentity<'_>,
        scratch: &Path,
        config: &JobRunnerConfig,
    ) -> Result<Self, PodSpecProblem> {
        let image = container.image.clone().unwrap_or_default();
        let binary = local_binary(&config.images, &image)
            .ok_or_else(|| PodSpecProblem::ImageNotMapped(image.clone()))?;
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOSTNAME".into(), pod.name.clone()),
            ("HOME".into(), scratch.display().to_string()),
            ("TMPDIR".into(), scratch.display().to_string()),
        ];
        env.extend(env_from(client, container, pod.namespace).await?);
        for var in container.env.iter().flatten() {
            let value = env_value(client, var, pod, &env).await?;
            if let Some(value) = value {
                env.retain(|(name, _)| *name != var.name);
                env.push((var.name.clone(), value));
            }
        }
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let expand_all = |items: &Option<Vec<String>>| {
            items
                .iter()
                .flatten()
                .map(|s| expand(s, &lookup))
                .collect::<Vec<_>>()
        };
        let (program, args) = resolve_argv(
            binary,
            &expand_all(&container.command),
            &expand_all(&container.args),
        );
        Ok(Self { program, args, env })
    }

    async fn run(
        &self,
        log: &std::fs::File,
        scratch: &Path,
        deadline: Option<Timestamp>,
    ) -> PodOutcome {
        let (Ok(stdout), Ok(stderr)) = (log.try_clone(), log.try_clone()) else {
            return PodOutcome::Failed;
        };
        let spawned = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(scratch)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                use std::io::Write;
                let _ = writeln!(
                    &*log,
                    "local runner: cannot start {}: {error}",
                    self.program.display()
                );
                return PodOutcome::Failed;
            }
        };
        // Kills the whole process group if this future is dropped (Job deleted).
        let _group = child
            .id()
            .map(|pid| KillGroupOnDrop(Pid::from_raw(pid as i32)));
        let remaining = deadline.map(|deadline| {
            let left = deadline.duration_since(Timestamp::now());
            Duration::try_from(left).unwrap_or(Duration::ZERO)
        });
        let exit = match remaining {
            Some(remaining) => match tokio::time::timeout(remaining, child.wait()).await {
                Ok(exit) => exit,
                Err(_) => return PodOutcome::DeadlineExceeded,
            },
            None => child.wait().await,
        };
        match exit {
            Ok(status) if status.success() => PodOutcome::Succeeded,
            _ => PodOutcome::Failed,
        }
    }
}

struct KillGroupOnDrop(Pid);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// A random RFC 4122 version 4 UUID, as a pod's `metadata.uid`.
fn pod_uid() -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("below 16"))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

async fn env_from(
    client: &kube::Client,
    container: &Container,
    namespace: &str,
) -> Result<Vec<(String, String)>, PodSpecProblem> {
    let mut env = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(secret_ref) = &source.secret_ref {
            let optional = secret_ref.optional.unwrap_or(false);
            match get_optional::<Secret>(client, namespace, &secret_ref.name).await {
                Ok(Some(secret)) => secret_strings(&secret),
                Ok(None) if optional => BTreeMap::new(),
                Ok(None) => {
                    return Err(PodSpecProblem::EnvFrom(format!(
                        "Secret {:?} not found",
                        secret_ref.name
                    )));
                }
                Err(error) => return Err(PodSpecProblem::EnvFrom(error.to_string())),
            }
        } else if let Some(map_ref) = &source.config_map_ref {
            let optional = map_ref.optional.unwrap_or(false);
            match get_optional::<ConfigMap>(client, namespace, &map_ref.name).await {
                Ok(Some(map)) => map.data.unwrap_or_default(),
                Ok(None) if optional => BTreeMap::new(),
                Ok(None) => {
                    return Err(PodSpecProblem::EnvFrom(format!(
                        "ConfigMap {:?} not found",
                        map_ref.name
                    )));
                }
                Err(error) => return Err(PodSpecProblem::EnvFrom(error.to_string())),
            }
        } else {
            BTreeMap::new()
        };
        env.extend(
            data.into_iter()
                .map(|(key, value)| (format!("{prefix}{key}"), value)),
        );
    }
    Ok(env)
}

/// The value of one `env` entry; `None` for an optional reference that is absent.
async fn env_value(
    client: &kube::Client,
    var: &EnvVar,
    pod: &PodIdentity<'_>,
    env_so_far: &[(String, String)],
) -> Result<Option<String>, PodSpecProblem> {
    let problem = |problem: String| PodSpecProblem::Env {
        var: var.name.clone(),
        problem,
    };
    let Some(source) = &var.value_from else {
        let lookup = |name: &str| {
            env_so_far
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), &lookup)));
    };
    match source {
        EnvVarSource {
            secret_key_ref: Some(key_ref),
            ..
        } => {
            let secret = get_optional::<Secret>(client, pod.namespace, &key_ref.name)
                .await
                .map_err(|e| problem(e.to_string()))?;
            let value = secret.and_then(|s| secret_strings(&s).remove(&key_ref.key));
            match value {
                Some(value) => Ok(Some(value)),
                None if key_ref.optional == Some(true) => Ok(None),
                None => Err(problem(format!(
                    "Secret {:?} has no key {:?}",
                    key_ref.name, key_ref.key
                ))),
            }
        }
        EnvVarSource {
            config_map_key_ref: Some(key_ref),
            ..
        } => {
            let map = get_optional::<ConfigMap>(client, pod.namespace, &key_ref.name)
                .await
                .map_err(|e| problem(e.to_string()))?;
            let value = map.and_then(|m| m.data.and_then(|mut d| d.remove(&key_ref.key)));
            match value {
                Some(value) => Ok(Some(value)),
                None if key_ref.optional == Some(true) => Ok(None),
                None => Err(problem(format!(
                    "ConfigMap {:?} has no key {:?}",
                    key_ref.name, key_ref.key
                ))),
            }
        }
        EnvVarSource {
            field_ref: Some(field),
            ..
        } => field_value(pod, &field.field_path)
            .map(Some)
            .ok_or_else(|| problem(format!("fieldRef {:?} is not supported", field.field_path))),
        _ => Err(problem(
            "only value, secretKeyRef, configMapKeyRef and fieldRef are supported".into(),
        )),
    }
}

/// The downward API fields a local pod has.
fn field_value(pod: &PodIdentity<'_>, path: &str) -> Option<String> {
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
    };
    if let Some(key) = subscript("metadata.labels") {
        return Some(pod.labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Some(pod.annotations.get(key).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.to_owned(),
        "metadata.uid" => pod.uid.clone(),
        "spec.serviceAccountName" => pod.service_account.clone(),
        "spec.nodeName" => "localhost".to_owned(),
        "status.podIP" | "status.hostIP" => "127.0.0.1".to_owned(),
        _ => return None,
    })
}

async fn get_optional<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
}

/// A Secret's values as text (the kubelet passes the bytes; env vars are text).
fn secret_strings(secret: &Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), String::from_utf8_lossy(&value.0).into_owned()))
        .collect();
    values.extend(secret.string_data.clone().unwrap_or_default());
    values
}

/// The binary standing for `image`: looked up by name without tag and digest,
/// in full or by its last path segment.
fn local_binary<'a>(images: &'a BTreeMap<String, PathBuf>, image: &str) -> Option<&'a Path> {
    let repository = image_repository(image);
    let last_segment = repository.rsplit('/').next().unwrap_or(repository);
    images
        .get(repository)
        .or_else(|| images.get(last_segment))
        .map(PathBuf::as_path)
}

/// `registry:5000/org/name:tag@sha256:…` → `registry:5000/org/name`.
fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name_start = without_digest.rfind('/').map_or(0, |slash| slash + 1);
    match without_digest[name_start..].find(':') {
        Some(colon) => &without_digest[..name_start + colon],
        None => without_digest,
    }
}

/// The program and arguments of a container, as a container runtime would pick
/// them: `command` replaces the entrypoint (the mapped binary) unless it names
/// that binary; `args` follow.
fn resolve_argv(binary: &Path, command: &[String], args: &[String]) -> (PathBuf, Vec<String>) {
    match command.split_first() {
        None => (binary.to_owned(), args.to_vec()),
        Some((program, command_args)) => {
            let names_binary = Path::new(program).file_name() == binary.file_name();
            let program = if names_binary {
                binary.to_owned()
            } else {
                PathBuf::from(program)
            };
            (program, command_args.iter().chain(args).cloned().collect())
        }
    }
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, undefined
/// references stay as written, `$$` escapes a `$`.
fn expand<'a>(input: &str, lookup: &impl Fn(&str) -> Option<&'a str>) -> String {
    let mut expanded = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        expanded.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(after_escape) = after.strip_prefix('$') {
            expanded.push('$');
            rest = after_escape;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(close) = reference.find(')')
        {
            let name = &reference[..close];
            match lookup(name) {
                Some(value) => expanded.push_str(value),
                None => expanded.push_str(&format!("$({name})")),
            }
            rest = &reference[close + 1..];
        } else {
            expanded.push('$');
            rest = after;
        }
    }
    expanded.push_str(rest);
    expanded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_strips_tag_and_digest_but_not_registry_port() {
        assert_eq!(image_repository("golftracker-worker"), "golftracker-worker");
        assert_eq!(
            image_repository("ghcr.io/gt/worker:0.1.0"),
            "ghcr.io/gt/worker"
        );
        assert_eq!(
            image_repository("localhost:5000/worker"),
            "localhost:5000/worker"
        );
        assert_eq!(
            image_repository("localhost:5000/worker:v1@sha256:abcd"),
            "localhost:5000/worker"
        );
    }

    #[test]
    fn local_binary_matches_full_name_or_last_segment() {
        let images = BTreeMap::from([
            ("golftracker-worker".to_owned(), PathBuf::from("/t/worker")),
            (
                "docker.io/library/busybox".to_owned(),
                PathBuf::from("/bin/sh"),
            ),
        ]);
        assert_eq!(
            local_binary(&images, "ghcr.io/gt/golftracker-worker:0.1"),
            Some(Path::new("/t/worker"))
        );
        assert_eq!(
            local_binary(&images, "docker.io/library/busybox:1.36"),
            Some(Path::new("/bin/sh"))
        );
        assert_eq!(local_binary(&images, "busybox"), None);
    }

    #[test]
    fn command_replaces_the_entrypoint_unless_it_names_it() {
        let binary = Path::new("/target/debug/golftracker-worker");
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            resolve_argv(binary, &[], &strings(&["run"])),
            (binary.to_owned(), strings(&["run"]))
        );
        assert_eq!(
            resolve_argv(
                binary,
                &strings(&["/usr/local/bin/golftracker-worker", "run"]),
                &strings(&["-v"])
            ),
            (binary.to_owned(), strings(&["run", "-v"]))
        );
        assert_eq!(
            resolve_argv(binary, &strings(&["sh", "-c"]), &strings(&["exit 3"])),
            (PathBuf::from("sh"), strings(&["-c", "exit 3"]))
        );
    }

    #[test]
    fn expands_like_the_kubelet() {
        let lookup = |name: &str| (name == "A").then_some("1");
        assert_eq!(expand("x$(A)y", &lookup), "x1y");
        assert_eq!(expand("$(B)", &lookup), "$(B)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("cost $5", &lookup), "cost $5");
    }

    #[test]
    fn field_refs_resolve_from_the_pod_identity() {
        let pod = PodIdentity {
            name: "job-abcde".into(),
            namespace: "ns",
            uid: pod_uid(),
            labels: BTreeMap::from([("app".to_owned(), "worker".to_owned())]),
            annotations: BTreeMap::new(),
            service_account: "default".into(),
        };
        assert_eq!(
            field_value(&pod, "metadata.name").as_deref(),
            Some("job-abcde")
        );
        assert_eq!(
            field_value(&pod, "metadata.namespace").as_deref(),
            Some("ns")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['app']").as_deref(),
            Some("worker")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['missing']").as_deref(),
            Some("")
        );
        assert_eq!(field_value(&pod, "spec.volumes"), None);
        assert_eq!(pod.uid.len(), 36);
    }

    #[test]
    fn finished_status_carries_the_conditions_the_api_server_requires() {
        let started = JobStatus {
            start_time: Some(Time(Timestamp::now())),
            active: Some(1),
            succeeded: Some(1),
            ..JobStatus::default()
        };
        let complete = finished(started.clone(), Finish::Complete);
        let types: Vec<&str> = complete
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert!(complete.completion_time.is_some());
        assert_eq!(complete.active, Some(0));

        let failed = finished(started, Finish::BackoffLimitExceeded);
        let types: Vec<&str> = failed
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["FailureTarget", "Failed"]);
        assert!(failed.completion_time.is_none());
    }
}
