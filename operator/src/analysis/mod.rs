//! The SwingAnalysis controller: one worker Job per analysis, admitted per stack up to
//! `maxConcurrentJobs`, with the result copied into status and an erase finalizer.
//!
//! Reconcile pipeline: dereference the stack → validate → (finished Job? read result) →
//! admit → build the Job (pure, [`job`]) → apply it server-side → update status.

pub mod cache;
pub mod counts;
pub mod erase;
pub mod job;
pub mod phase;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use golftracker_crds::analysis::{Phase, Retention, SwingAnalysis, SwingAnalysisStatus, condition};
use golftracker_crds::conditions::{self, NewCondition};
use golftracker_crds::stack::{self, GolfTrackerStack};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::external::{DatabasePools, S3Clients};
use crate::predicates;
use crate::telemetry::{Events, Metrics, PhaseLabel, StackLabel};
use cache::CachedJob;
use job::{JobOptions, job_for_analysis, job_name, labels};
use phase::{JobState, job_state};
use queue::{Admission, Waiting};

/// Field manager of everything this controller applies.
pub const FIELD_MANAGER: &str = "golftracker-operator";
/// Finalizer that erases an analysis' data before the object goes (retention Erase).
pub const FINALIZER: &str = "golftracker.io/erase";
const CONTROLLER: &str = "swinganalysis";
/// How long admission uses a stack's S3 client before reading its credentials
/// Secret again.
const S3_CREDENTIALS_RECHECK: Duration = Duration::from_secs(30);

/// Shared state of the SwingAnalysis controller.
pub struct Context {
    pub client: Client,
    pub analyses: Store<SwingAnalysis>,
    pub stacks: Store<GolfTrackerStack>,
    pub jobs: Store<CachedJob>,
    pub options: JobOptions,
    pub metrics: Metrics,
    pub events: Events,
    pub databases: DatabasePools,
    pub s3: S3Clients,
    /// Serialises admission per stack, and remembers (by analysis UID) Jobs created but
    /// not yet seen in the Job cache, so two reconciles never both take the last slot.
    admission: Mutex<HashMap<String, HashSet<String>>>,
    /// Wakes waiting analyses when a slot frees.
    wake: mpsc::UnboundedSender<ObjectRef<SwingAnalysis>>,
    listed: CachesListed,
}

/// Which of the controller's three caches have been listed once, a bit each.
/// Admission, the stack counts and /readyz wait for all three. (Not with kube's
/// `Store::wait_until_ready`: of several tasks waiting on one store it wakes only
/// the last, and the Controller itself waits on the analysis store.)
#[derive(Clone)]
pub struct CachesListed(Arc<watch::Sender<u8>>);

impl CachesListed {
    const ANALYSES: u8 = 1;
    const STACKS: u8 = 2;
    const JOBS: u8 = 4;

    fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    /// For `inspect` on a reflector's events: marks `cache` listed at its InitDone.
    fn mark<K>(&self, cache: u8) -> impl FnMut(&watcher::Result<watcher::Event<K>>) + use<K> {
        let listed = self.0.clone();
        move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed.send_modify(|bits| *bits |= cache);
            }
        }
    }

    pub async fn wait(&self) {
        let all = Self::ANALYSES | Self::STACKS | Self::JOBS;
        // The sender lives in `self`: waiting ends only when all are listed.
        let _ = self.0.subscribe().wait_for(|bits| *bits == all).await;
    }
}

/// Server-side apply as this controller, forced (it alone owns these fields), without
/// the API server's field validation. Both patches of the hot path (the Job, the
/// status) are serialised from typed structs (k8s-openapi's Job, the CRD's own status
/// type), so they cannot carry unknown or duplicate fields; under the default (`Warn`)
/// the API server parses every apply patch a second time only to look for them.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_ignore()
}

fn stack_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// The stack an analysis points at; the reference must stay in the analysis' namespace.
fn stack_ref(analysis: &SwingAnalysis) -> std::result::Result<(String, String), String> {
    let namespace = analysis.namespace().unwrap_or_default();
    match &analysis.spec.stack_ref.namespace {
        Some(other) if *other != namespace => Err(format!(
            "spec.stackRef points to namespace {other:?}; a SwingAnalysis may only use a stack in its own namespace ({namespace:?})"
        )),
        _ => Ok((namespace, analysis.spec.stack_ref.name.clone())),
    }
}

/// UIDs of the analyses whose Job is in the cache (a worker Job's controller owner is
/// its analysis): one pass over the Job cache per admission, not a lookup per analysis.
fn analyses_with_cached_job<'a>(jobs: &'a [Arc<CachedJob>], namespace: &str) -> HashSet<&'a str> {
    jobs.iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|j| {
            j.metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.controller == Some(true))
        })
        .map(|o| o.uid.as_str())
        .collect()
}

/// Analyses of a stack that still want a Job and have none (`has_job` by analysis UID).
fn waiting_of_stack<'a>(
    analyses: &'a [Arc<SwingAnalysis>],
    namespace: &str,
    stack: &str,
    has_job: impl Fn(&str) -> bool,
) -> Vec<Waiting<'a>> {
    analyses
        .iter()
        .filter(|a| {
            a.metadata.namespace.as_deref() == Some(namespace) && a.spec.stack_ref.name == stack
        })
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .filter(|a| {
            !a.status
                .as_ref()
                .is_some_and(|s| s.phase.is_finished() || s.job_name.is_some())
        })
        .filter(|a| a.metadata.uid.as_deref().is_some_and(|uid| !has_job(uid)))
        .map(|a| queue_entry(a))
        .collect()
}

fn queue_entry(analysis: &SwingAnalysis) -> Waiting<'_> {
    Waiting {
        name: analysis.metadata.name.as_deref().unwrap_or_default(),
        priority: analysis.spec.priority,
        created: analysis.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// Whether this process created the analysis' Job and its cache has not seen it yet.
async fn just_created(ctx: &Context, stack_key: &str, analysis_uid: &str) -> bool {
    ctx.admission
        .lock()
        .await
        .get(stack_key)
        .is_some_and(|created| created.contains(analysis_uid))
}

/// Unfinished Jobs of a stack in the cache.
fn active_jobs_of_stack(jobs: &[Arc<CachedJob>], namespace: &str, stack: &str) -> usize {
    jobs.iter()
        .filter(|j| {
            j.metadata.namespace.as_deref() == Some(namespace)
                && j.labels().get(labels::STACK).map(String::as_str) == Some(stack)
                && !job_state(j).is_finished()
        })
        .count()
}

/// After a slot frees, reconcile the analyses that are next in line.
fn wake_next(ctx: &Context, namespace: &str, stack: &GolfTrackerStack) {
    let (analyses, jobs) = (ctx.analyses.state(), ctx.jobs.state());
    let with_job = analyses_with_cached_job(&jobs, namespace);
    let mut waiting = waiting_of_stack(&analyses, namespace, &stack.name_any(), |uid| {
        with_job.contains(uid)
    });
    queue::service_order(&mut waiting);
    for w in waiting
        .iter()
        .take(stack.spec.worker.max_concurrent_jobs.max(1) as usize)
    {
        let _ = ctx.wake.send(ObjectRef::new(w.name).within(namespace));
    }
}

/// Writes the status (server-side apply of the status subresource) and emits an Event
/// when the phase changes.
async fn update_status(
    ctx: &Context,
    analysis: &SwingAnalysis,
    status: SwingAnalysisStatus,
) -> Result<()> {
    let old = analysis.status.clone().unwrap_or_default();
    if old == status {
        return Ok(());
    }
    let api: Api<SwingAnalysis> = Api::namespaced(
        ctx.client.clone(),
        &analysis.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1",
        "kind": "SwingAnalysis",
        "status": status,
    });
    api.patch_status(&analysis.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    if old.phase != status.phase {
        let note = status
            .conditions
            .iter()
            .max_by_key(|c| c.last_transition_time.0)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let event = KubeEvent {
            type_: if status.phase == Phase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: status.phase.as_str().to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.events.publish(event, analysis.object_ref(&()));
        ctx.metrics
            .analyses_by_phase
            .get_or_create(&PhaseLabel {
                phase: status.phase.as_str(),
            })
            .inc();
        if old.phase != Phase::Pending || analysis.status.is_some() {
            ctx.metrics
                .analyses_by_phase
                .get_or_create(&PhaseLabel {
                    phase: old.phase.as_str(),
                })
                .dec();
        }
    }
    Ok(())
}

/// A status with one condition set and the generation recorded.
fn with_condition(
    analysis: &SwingAnalysis,
    mut status: SwingAnalysisStatus,
    new: NewCondition<'_>,
) -> SwingAnalysisStatus {
    let generation = analysis.meta().generation;
    conditions::set_condition(&mut status.conditions, new, generation, now());
    status.observed_generation = generation;
    status
}

fn pending(
    analysis: &SwingAnalysis,
    type_: &'static str,
    reason: &'static str,
    message: String,
) -> SwingAnalysisStatus {
    let mut status = analysis.status.clone().unwrap_or_default();
    status.phase = Phase::Pending;
    status.queue_position = None;
    with_condition(
        analysis,
        status,
        NewCondition {
            type_,
            status: conditions::FALSE,
            reason,
            message,
        },
    )
}

#[instrument(skip_all, fields(analysis = %analysis.name_any(), namespace = analysis.namespace().unwrap_or_default()))]
async fn reconcile(analysis: Arc<SwingAnalysis>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api: Api<SwingAnalysis> = Api::namespaced(
        ctx.client.clone(),
        &analysis.namespace().unwrap_or_default(),
    );
    let handle = |event| async {
        match event {
            Finalizer::Apply(analysis) => apply(&analysis, &ctx).await,
            Finalizer::Cleanup(analysis) => erase::cleanup(&analysis, &ctx).await,
        }
    };
    let has_finalizer = analysis.finalizers().iter().any(|f| f == FINALIZER);
    let result = if !has_finalizer && analysis.spec.retention != Retention::Erase {
        // Retain keeps the data: nothing to do at deletion, so no finalizer to add (a
        // write saved per analysis) nor for the deletion to wait for.
        match analysis.meta().deletion_timestamp {
            Some(_) => Ok(Action::await_change()),
            None => apply(&analysis, &ctx).await,
        }
    } else {
        async {
            // kube's helper only adds a missing finalizer and waits for the watch
            // event to call it again; going on with the object as patched saves each
            // new analysis a round through the queue.
            let analysis = if !has_finalizer && analysis.meta().deletion_timestamp.is_none() {
                finalizer(&api, FINALIZER, analysis.clone(), handle).await?;
                let mut patched = (*analysis).clone();
                patched.finalizers_mut().push(FINALIZER.to_string());
                Arc::new(patched)
            } else {
                analysis
            };
            finalizer(&api, FINALIZER, analysis, handle).await
        }
        .await
        .map_err(Error::from)
    };
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

async fn apply(analysis: &SwingAnalysis, ctx: &Context) -> Result<Action> {
    let current = analysis.status.clone().unwrap_or_default();
    if current.phase.is_finished() {
        return Ok(Action::await_change());
    }
    // Stack, Job and queue lookups read the caches: until each has been listed once
    // (just after a start), a full stack would look empty and a stack missing.
    ctx.listed.wait().await;
    // Dereference and validate the stack.
    let (namespace, stack_name) = match stack_ref(analysis) {
        Ok(found) => found,
        Err(message) => {
            let mut status = current;
            status.phase = Phase::Failed;
            status.completion_time = Some(Time(now()));
            let status = with_condition(
                analysis,
                status,
                NewCondition {
                    type_: condition::FAILED,
                    status: conditions::TRUE,
                    reason: "InvalidStackRef",
                    message,
                },
            );
            update_status(ctx, analysis, status).await?;
            return Ok(Action::await_change());
        }
    };
    let Some(stack) = ctx
        .stacks
        .get(&ObjectRef::new(&stack_name).within(&namespace))
    else {
        let status = pending(
            analysis,
            condition::STACK_READY,
            "StackNotFound",
            format!("GolfTrackerStack {namespace}/{stack_name} does not exist"),
        );
        update_status(ctx, analysis, status).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let stack_conditions = stack
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if !conditions::is_true(stack_conditions, stack::condition::READY) {
        let why = conditions::find(stack_conditions, stack::condition::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let status = pending(
            analysis,
            condition::STACK_READY,
            "StackNotReady",
            format!("GolfTrackerStack {stack_name} is not Ready: {why}"),
        );
        update_status(ctx, analysis, status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let status = with_condition(
        analysis,
        current,
        NewCondition {
            type_: condition::STACK_READY,
            status: conditions::TRUE,
            reason: "StackReady",
            message: format!("GolfTrackerStack {stack_name} is Ready"),
        },
    );

    let name = job_name(analysis)?;
    let uid = analysis.metadata.uid.as_deref().unwrap_or_default();
    let cached = ctx.jobs.get(&ObjectRef::new(&name).within(&namespace));
    if cached.is_none() && just_created(ctx, &stack_key(&namespace, &stack_name), uid).await {
        // Created by this process a moment ago: its watch event brings the analysis back.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let existing = match cached {
        Some(job) => Some(job),
        // Not cached yet (just created, or the operator restarted): ask the server, so a
        // re-delivered reconcile never creates a second Job.
        None if status.job_name.is_some() => {
            Api::<CachedJob>::namespaced(ctx.client.clone(), &namespace)
                .get_opt(&name)
                .await?
                .map(Arc::new)
        }
        None => None,
    };
    match existing {
        Some(job) => observe_job(analysis, ctx, &stack, status, &job).await,
        None => admit(analysis, ctx, &stack, status, &namespace).await,
    }
}

/// Copies the Job's progress into the status; on completion reads the result rows.
async fn observe_job(
    analysis: &SwingAnalysis,
    ctx: &Context,
    stack: &GolfTrackerStack,
    mut status: SwingAnalysisStatus,
    job: &CachedJob,
) -> Result<Action> {
    status.job_name = Some(job.name_any());
    status.queue_position = None;
    let mut status = with_condition(
        analysis,
        status,
        NewCondition {
            type_: condition::INPUT_VALID,
            status: conditions::TRUE,
            reason: "JobCreated",
            message: format!("worker Job {} created", job.name_any()),
        },
    );
    let namespace = analysis.namespace().unwrap_or_default();
    match job_state(job) {
        JobState::Running {
            start_time,
            attempts,
        } => {
            status.phase = Phase::Running;
            status.start_time = start_time.or(status.start_time);
            status.attempts = attempts.max(status.attempts);
            update_status(ctx, analysis, status).await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        JobState::Complete {
            start_time,
            completion_time,
            attempts,
        } => {
            status.start_time = start_time.or(status.start_time);
            status.attempts = attempts.max(status.attempts);
            let pool = ctx.databases.pool(&ctx.client, stack).await?;
            let uid = analysis
                .meta()
                .uid
                .clone()
                .ok_or(Error::MissingField("metadata.uid"))?;
            let Some(report) = golftracker_results_db::fetch_report(&pool, &uid).await? else {
                // The worker exited 0 but wrote no row: say so and look again (a replica
                // may be reading before the worker's commit is visible).
                let status = with_condition(
                    analysis,
                    status,
                    NewCondition {
                        type_: condition::COMPLETE,
                        status: conditions::FALSE,
                        reason: "ResultMissing",
                        message: format!(
                            "Job {} completed but the results database has no row for analysis {uid}",
                            job.name_any()
                        ),
                    },
                );
                update_status(ctx, analysis, status).await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            };
            let report_prefix = job::report_prefix_uri(analysis, stack)?;
            let result = phase::result_from_report(
                &report,
                &format!("{report_prefix}report.json"),
                Some(format!("{report_prefix}report.png")),
            );
            status.result = Some(Box::new(result));
            status.phase = Phase::Succeeded;
            status.completion_time = completion_time.or_else(|| Some(Time(now())));
            if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
                ctx.metrics
                    .job_duration
                    .observe((end.0 - start.0).get_seconds() as f64);
            }
            let tempo = status
                .result
                .as_ref()
                .and_then(|r| r.tempo_ratio)
                .map(|t| format!(", tempo {t:.2}"))
                .unwrap_or_default();
            let status = with_condition(
                analysis,
                status,
                NewCondition {
                    type_: condition::COMPLETE,
                    status: conditions::TRUE,
                    reason: "Analysed",
                    message: format!("analysis finished{tempo}"),
                },
            );
            update_status(ctx, analysis, status).await?;
            wake_next(ctx, &namespace, stack);
            Ok(Action::await_change())
        }
        JobState::Failed {
            start_time,
            reason,
            message,
            attempts,
        } => {
            status.start_time = start_time.or(status.start_time);
            status.attempts = attempts.max(status.attempts);
            // The worker's own reason, when it wrote one, says more than the Job's.
            let worker_failure = match ctx.databases.pool(&ctx.client, stack).await {
                Ok(pool) => match golftracker_results_db::fetch_outcome(
                    &pool,
                    &analysis.meta().uid.clone().unwrap_or_default(),
                )
                .await
                {
                    Ok(Some(golftracker_results_db::Outcome::Failed(f))) => {
                        Some(format!("{}: {}", f.code, f.message))
                    }
                    _ => None,
                },
                Err(_) => None,
            };
            let message = match worker_failure {
                Some(worker) => format!("{reason}: {worker}"),
                None => format!("{reason}: {message}"),
            };
            status.phase = Phase::Failed;
            status.completion_time = Some(Time(now()));
            let reason: &'static str = match reason.as_str() {
                "DeadlineExceeded" => "DeadlineExceeded",
                "BackoffLimitExceeded" => "BackoffLimitExceeded",
                _ => "JobFailed",
            };
            let status = with_condition(
                analysis,
                status,
                NewCondition {
                    type_: condition::FAILED,
                    status: conditions::TRUE,
                    reason,
                    message,
                },
            );
            update_status(ctx, analysis, status).await?;
            wake_next(ctx, &namespace, stack);
            Ok(Action::await_change())
        }
    }
}

/// Takes a slot of the stack for the analysis, or queues it.
async fn admit(
    analysis: &SwingAnalysis,
    ctx: &Context,
    stack: &GolfTrackerStack,
    mut status: SwingAnalysisStatus,
    namespace: &str,
) -> Result<Action> {
    let key = stack_key(namespace, &stack.name_any());
    let uid = analysis
        .metadata
        .uid
        .clone()
        .ok_or(Error::MissingField("metadata.uid"))?;
    let mut slots = ctx.admission.lock().await;
    // The caches are read under the lock: a Job another admission created is then
    // either cached or still in `created`.
    let (analyses, jobs) = (ctx.analyses.state(), ctx.jobs.state());
    let with_job = analyses_with_cached_job(&jobs, namespace);
    let created = slots.entry(key.clone()).or_default();
    created.retain(|uid| !with_job.contains(uid.as_str()));
    let active = active_jobs_of_stack(&jobs, namespace, &stack.name_any()) + created.len();
    let mut waiting = waiting_of_stack(&analyses, namespace, &stack.name_any(), |uid| {
        with_job.contains(uid) || created.contains(uid)
    });
    let name = analysis.name_any();
    if !waiting.iter().any(|w| w.name == name) {
        // The cache has not seen this analysis yet; it still competes fairly.
        waiting.push(queue_entry(analysis));
    }
    let depth = waiting.len();
    let decision = queue::admission(
        &name,
        stack.spec.worker.max_concurrent_jobs,
        active,
        &waiting,
    );
    ctx.metrics
        .queue_depth
        .get_or_create(&StackLabel {
            namespace: namespace.to_string(),
            stack: stack.name_any(),
        })
        .set(
            depth.saturating_sub(
                (stack.spec.worker.max_concurrent_jobs as usize).saturating_sub(active),
            ) as i64,
        );
    match decision {
        Some(Admission::Queued { position }) => {
            drop(slots);
            status.phase = Phase::Queued;
            status.queue_position = Some(position);
            let status = with_condition(
                analysis,
                status,
                NewCondition {
                    type_: condition::INPUT_VALID,
                    status: conditions::UNKNOWN,
                    reason: "Queued",
                    message: format!(
                        "waiting for a worker slot of stack {} (position {position}, {active} running)",
                        stack.name_any()
                    ),
                },
            );
            update_status(ctx, analysis, status).await?;
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        Some(Admission::Admit) | None => {
            // The slot is reserved under the lock; the slow calls (S3, API server) run
            // outside it, so admissions of one stack do not queue behind each other.
            let job = job_for_analysis(analysis, stack, &ctx.options)?;
            let name = job.name_any();
            created.insert(uid.clone());
            drop(slots);
            let release = || async {
                if let Some(created) = ctx.admission.lock().await.get_mut(&key) {
                    created.remove(&uid);
                }
            };
            // Validate what the schema cannot: the video must exist.
            let checked = check_video(ctx, analysis, stack).await;
            if !matches!(checked, Ok(Ok(()))) {
                release().await;
            }
            if let Err(message) = checked? {
                let status = pending(analysis, condition::INPUT_VALID, "VideoNotFound", message);
                update_status(ctx, analysis, status).await?;
                return Ok(Action::requeue(Duration::from_secs(60)));
            }
            let applied = Api::<Job>::namespaced(ctx.client.clone(), namespace)
                .patch(&name, &apply_params(), &Patch::Apply(&job))
                .await;
            if let Err(e) = applied {
                release().await;
                return Err(e.into());
            }
            info!(job = %name, "created worker Job");
            // The status (phase Running, the Job's name) is written when the Job's watch
            // event brings the analysis back: one status write either way, and the
            // admission holds its caller for one API round trip less.
            Ok(Action::requeue(Duration::from_secs(60)))
        }
    }
}

/// `Ok(Err(message))` when the video object does not exist; errors reaching S3 are
/// returned as errors (retried with backoff).
async fn check_video(
    ctx: &Context,
    analysis: &SwingAnalysis,
    stack: &GolfTrackerStack,
) -> Result<std::result::Result<(), String>> {
    let uri = job::video_uri(analysis, stack);
    let Some((bucket, key)) = job::split_s3_uri(&uri) else {
        return Ok(Err(format!(
            "spec.video {uri:?} is not a valid s3://bucket/key location"
        )));
    };
    let s3 = ctx.s3.get(&ctx.client, stack).await?;
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
            Ok(Err(format!("video {uri} does not exist (yet)")))
        }
        Err(e) => Err(Error::S3 {
            operation: "HeadObject",
            target: uri,
            message: crate::external::s3_error_message(&e),
        }),
    }
}

fn error_policy(analysis: Arc<SwingAnalysis>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, &analysis.name_any(), error)
}

/// Settings of [`run`].
pub struct Settings {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Reconciles running at once (kube's default is unbounded).
    pub concurrency: u16,
    pub options: JobOptions,
}

/// Runs the SwingAnalysis controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    on_synced: impl FnOnce() + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (analyses_api, stacks_api, jobs_api): (
        Api<SwingAnalysis>,
        Api<GolfTrackerStack>,
        Api<CachedJob>,
    ) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let listed = CachesListed::new();
    let (stacks, stacks_writer) = reflector::store();
    let stack_events = reflector::reflector(
        stacks_writer,
        watcher(stacks_api, watcher::Config::default().any_semantic()),
    )
    .inspect(listed.mark(CachesListed::STACKS))
    .default_backoff()
    .touched_objects()
    .predicate_filter(stack_change_for_analyses, PredicateConfig::default());
    let (jobs, jobs_writer) = reflector::store();
    let job_events = reflector::reflector(
        jobs_writer,
        watcher(
            jobs_api,
            watcher::Config::default()
                .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
                .any_semantic(),
        )
        .modify(cache::trim_job),
    )
    .inspect(listed.mark(CachesListed::JOBS))
    .default_backoff()
    .touched_objects();
    let (analyses, analyses_writer) = reflector::store();
    let analysis_events = reflector::reflector(
        analyses_writer,
        watcher(analyses_api, watcher::Config::default().any_semantic())
            .modify(cache::trim_analysis),
    )
    .inspect(listed.mark(CachesListed::ANALYSES))
    .default_backoff()
    .applied_objects()
    .predicate_filter(
        predicates::spec_or_lifecycle_change,
        PredicateConfig::default(),
    );
    let controller = Controller::for_stream(analysis_events, analyses.clone()).with_config(
        kube::runtime::controller::Config::default()
            .concurrency(settings.concurrency)
            .debounce(Duration::from_millis(200)),
    );
    let (wake, woken) = mpsc::unbounded_channel();
    let events = Events::start(client.clone());
    let ctx = Arc::new(Context {
        client,
        analyses: analyses.clone(),
        stacks: stacks.clone(),
        jobs: jobs.clone(),
        options: settings.options,
        metrics,
        events,
        databases: DatabasePools::default(),
        s3: S3Clients::rechecking_after(S3_CREDENTIALS_RECHECK),
        admission: Mutex::new(HashMap::new()),
        wake,
        listed: listed.clone(),
    });
    let stack_to_analyses = {
        let analyses = analyses.clone();
        move |stack: GolfTrackerStack| {
            analyses
                .state()
                .into_iter()
                .filter(|a| {
                    a.namespace() == stack.namespace()
                        && a.spec.stack_ref.name == stack.name_any()
                        && !a.status.as_ref().is_some_and(|s| s.phase.is_finished())
                })
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        }
    };
    tokio::spawn({
        let listed = listed.clone();
        async move {
            listed.wait().await;
            on_synced();
        }
    });
    let stack_counts = counts::keep_stack_counts(ctx.client.clone(), analyses, stacks, listed);
    let controller = controller
        .owns_stream(job_events)
        .watches_stream(stack_events, stack_to_analyses)
        .reconcile_on(tokio_stream_from(woken))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    // The counts are written for as long as the controller runs (it holds the Lease).
    futures::future::select(Box::pin(controller), Box::pin(stack_counts)).await;
}

/// What of a stack its analyses react to: its spec (generation) and whether it is
/// Ready. The stack's other status updates (counts, drift checks) would otherwise wake
/// every analysis of the stack each time.
fn stack_change_for_analyses(stack: &GolfTrackerStack) -> Option<u64> {
    let ready = stack
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, stack::condition::READY));
    predicates::change_key((stack.meta().generation, ready))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
