//! The GolfTrackerStack controller: storage, database and Vault are reconciled as
//! independent parts, each with its own condition; `Ready` holds when all do. A
//! failing part says why and never blocks the others. External state is re-checked
//! every resync interval, so drift is repaired.

pub mod delivery;
pub mod storage;
pub mod vault;
pub mod vso;
pub mod worker_access;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use golftracker_crds::conditions::{self, NewCondition};
use golftracker_crds::stack::{
    DeletionPolicy, GolfTrackerStack, GolfTrackerStackStatus, SecretDelivery, VaultSpec, condition,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{PredicateConfig, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::instrument;

use crate::analysis::FIELD_MANAGER;
use crate::analysis::job::database_secret;
use crate::error::{Error, Result};
use crate::external::{DatabasePools, S3Clients};
use crate::predicates;
use crate::telemetry::{Events, Metrics};

/// Finalizer that applies the bucket's deletion policy.
pub const FINALIZER: &str = "golftracker.io/bucket";
const CONTROLLER: &str = "golftrackerstack";
/// Retry while some part is not ready.
const RETRY: Duration = Duration::from_secs(20);

pub struct Context {
    pub client: Client,
    /// How often external state is re-checked when nothing changes (drift repair).
    pub resync: Duration,
    pub metrics: Metrics,
    pub events: Events,
    pub databases: DatabasePools,
    pub s3: S3Clients,
    /// The operator's ServiceAccount token, for Vault's Kubernetes auth.
    pub vault_sa_token: PathBuf,
    pub vault_logins: vault::VaultLogins,
}

/// One part's outcome: condition status, reason, message.
type Part = (&'static str, &'static str, String);

async fn reconcile_storage(stack: &GolfTrackerStack, ctx: &Context) -> (Part, Option<String>) {
    let result = async {
        let s3 = ctx.s3.get(&ctx.client, stack).await?;
        storage::ensure_bucket(&s3, &stack.spec.storage).await
    }
    .await;
    match result {
        Ok(report) => {
            for setting in &report.repaired {
                publish(
                    ctx,
                    stack,
                    EventType::Warning,
                    "DriftRepaired",
                    format!("bucket {setting} was changed outside the operator; put back"),
                );
            }
            let mut message = format!(
                "bucket {} {}",
                stack.spec.storage.bucket,
                if report.created {
                    "created"
                } else {
                    "in place"
                }
            );
            if !report.unsupported.is_empty() {
                message.push_str(&format!(
                    "; the store does not implement: {}",
                    report.unsupported.join(", ")
                ));
            }
            let endpoint = match &stack.spec.storage.endpoint {
                Some(e) => format!("{}/{}", e.trim_end_matches('/'), stack.spec.storage.bucket),
                None => format!(
                    "https://{}.s3.{}.amazonaws.com",
                    stack.spec.storage.bucket, stack.spec.storage.region
                ),
            };
            ((conditions::TRUE, "BucketReady", message), Some(endpoint))
        }
        Err(e) => ((conditions::FALSE, "BucketError", e.to_string()), None),
    }
}

async fn reconcile_database(stack: &GolfTrackerStack, ctx: &Context) -> (Part, Option<String>) {
    if stack.spec.database.credentials.vault.is_some() && stack.spec.vault.is_none() {
        return (
            (
                conditions::FALSE,
                "VaultNotConfigured",
                "database.credentials.vault needs spec.vault".into(),
            ),
            None,
        );
    }
    let result = async {
        let pool = ctx.databases.pool(&ctx.client, stack).await?;
        golftracker_results_db::migrate(&pool).await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        Ok::<_, Error>(version)
    }
    .await;
    match result {
        Ok(version) => (
            (
                conditions::TRUE,
                "SchemaMigrated",
                format!("connected to PostgreSQL {version}; results schema up to date"),
            ),
            Some(version),
        ),
        Err(e) => ((conditions::FALSE, "DatabaseError", e.to_string()), None),
    }
}

/// Provisions Vault and delivers secrets; `Ok` carries the status message and, for
/// operator-delivered database credentials, when they must be looked at again.
async fn provision_vault(
    stack: &GolfTrackerStack,
    spec: &VaultSpec,
    ctx: &Context,
) -> Result<(String, Option<Duration>)> {
    let vault_client = vault::login(
        &ctx.client,
        &ctx.vault_logins,
        stack,
        spec,
        &ctx.vault_sa_token,
    )
    .await?;
    let result = async {
        let names = vault::provision(&ctx.client, &vault_client, stack, spec).await?;
        let mut message = format!(
            "policy and Kubernetes auth role {}, KV {}/{}",
            names.worker_role, spec.kv.mount, names.kv_path
        );
        let credentials = stack.spec.database.credentials.vault.as_ref();
        if let Some(credentials) = credentials {
            message.push_str(&format!(
                ", database role {}/{}",
                spec.database_mount, credentials.role
            ));
        }
        let refresh = match spec.secret_delivery {
            SecretDelivery::Operator => {
                delivery::deliver_kv(&ctx.client, &vault_client, stack, spec, &names).await?;
                message.push_str("; secrets delivered by the operator");
                match credentials {
                    Some(credentials) => {
                        delivery::deliver_database_credentials(
                            &ctx.client,
                            &vault_client,
                            stack,
                            spec,
                            credentials,
                        )
                        .await?
                    }
                    None => None,
                }
            }
            SecretDelivery::VaultSecretsOperator => {
                vso::apply(&ctx.client, stack, spec).await?;
                message.push_str("; secrets delivered by the Vault Secrets Operator");
                None
            }
        };
        Ok((message, refresh))
    }
    .await;
    if result.is_err() {
        ctx.vault_logins.forget(stack, spec);
    }
    result
}

async fn reconcile_vault(stack: &GolfTrackerStack, ctx: &Context) -> (Part, Option<Duration>) {
    let Some(spec) = &stack.spec.vault else {
        return (
            (
                conditions::TRUE,
                "NotConfigured",
                "no spec.vault: credentials come from Kubernetes Secrets".into(),
            ),
            None,
        );
    };
    match provision_vault(stack, spec, ctx).await {
        Ok((message, refresh)) => ((conditions::TRUE, "Provisioned", message), refresh),
        Err(e) => {
            let reason = match &e {
                Error::Vault { reason, .. } => reason,
                _ => "VaultProvisioningFailed",
            };
            ((conditions::FALSE, reason, e.to_string()), None)
        }
    }
}

fn publish(ctx: &Context, stack: &GolfTrackerStack, type_: EventType, reason: &str, note: String) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(event, stack.object_ref(&()));
}

async fn apply(stack: &GolfTrackerStack, ctx: &Context) -> Result<Action> {
    // Vault goes first: it may deliver the database credentials.
    let ((storage, endpoint), ((vault, refresh), (database, version)), workers) = tokio::join!(
        reconcile_storage(stack, ctx),
        async {
            let vault = reconcile_vault(stack, ctx).await;
            (vault, reconcile_database(stack, ctx).await)
        },
        worker_access::apply(&ctx.client, stack)
    );
    let old = stack.status.clone().unwrap_or_default();
    let mut status = GolfTrackerStackStatus {
        bucket_endpoint: endpoint.or(old.bucket_endpoint.clone()),
        database_version: version.or(old.database_version.clone()),
        worker_secret_name: database_secret(stack),
        ..old.clone()
    };
    let generation = stack.meta().generation;
    let now = k8s_openapi::jiff::Timestamp::now();
    let parts = [
        (condition::STORAGE_READY, storage),
        (condition::DATABASE_READY, database),
        (condition::VAULT_READY, vault),
    ];
    let all_ready = parts.iter().all(|(_, (s, _, _))| *s == conditions::TRUE);
    let not_ready: Vec<&str> = parts
        .iter()
        .filter(|(_, (s, _, _))| *s != conditions::TRUE)
        .map(|(t, _)| *t)
        .collect();
    for (type_, (s, reason, message)) in parts {
        conditions::set_condition(
            &mut status.conditions,
            NewCondition {
                type_,
                status: s,
                reason,
                message,
            },
            generation,
            now,
        );
    }
    let ready = if all_ready {
        NewCondition {
            type_: condition::READY,
            status: conditions::TRUE,
            reason: "AllPartsReady",
            message: "storage, database and Vault are ready".into(),
        }
    } else {
        NewCondition {
            type_: condition::READY,
            status: conditions::FALSE,
            reason: "PartsNotReady",
            message: format!("not ready: {}", not_ready.join(", ")),
        }
    };
    conditions::set_condition(&mut status.conditions, ready, generation, now);
    status.observed_generation = generation;
    // The analysis counts belong to the SwingAnalysis controller's field manager.
    (status.queued_analyses, status.running_analyses) = (None, None);
    let old_without_counts = GolfTrackerStackStatus {
        queued_analyses: None,
        running_analyses: None,
        ..old
    };
    if status != old_without_counts {
        let api: Api<GolfTrackerStack> =
            Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
        let patch = serde_json::json!({"apiVersion": "golftracker.io/v1alpha1", "kind": "GolfTrackerStack", "status": status});
        api.patch_status(
            &stack.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    workers?;
    let next = if all_ready { ctx.resync } else { RETRY };
    Ok(Action::requeue(refresh.map_or(next, |r| r.min(next))))
}

async fn cleanup(stack: &GolfTrackerStack, ctx: &Context) -> Result<Action> {
    if stack.spec.storage.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let s3 = ctx.s3.get(&ctx.client, stack).await?;
    match storage::delete_bucket_if_empty(&s3, &stack.spec.storage.bucket).await? {
        None => Ok(Action::await_change()),
        Some(reason) => {
            publish(ctx, stack, EventType::Warning, "BucketKept", reason.clone());
            Err(Error::Finalizer(reason))
        }
    }
}

#[instrument(skip_all, fields(stack = %stack.name_any(), namespace = stack.namespace().unwrap_or_default()))]
async fn reconcile(stack: Arc<GolfTrackerStack>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api: Api<GolfTrackerStack> =
        Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, stack, |event| async {
        match event {
            Finalizer::Apply(stack) => apply(&stack, &ctx).await,
            Finalizer::Cleanup(stack) => cleanup(&stack, &ctx).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

fn error_policy(stack: Arc<GolfTrackerStack>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, &stack.name_any(), error)
}

/// Runs the GolfTrackerStack controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    concurrency: u16,
    resync: Duration,
    vault_sa_token: PathBuf,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<GolfTrackerStack> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let events = Events::start(client.clone());
    let ctx = Arc::new(Context {
        client,
        resync,
        metrics,
        events,
        databases: DatabasePools::default(),
        s3: S3Clients::checking_each_use(),
        vault_sa_token,
        vault_logins: Default::default(),
    });
    let (stacks, writer) = reflector::store();
    let triggers = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(
        predicates::spec_or_lifecycle_change,
        PredicateConfig::default(),
    );
    Controller::for_stream(triggers, stacks)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
