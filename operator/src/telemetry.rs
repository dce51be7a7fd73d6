//! Logs (tracing) and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Events the queue holds before it drops new ones.
const EVENT_QUEUE: usize = 1024;

/// Kubernetes Events of both controllers, sent by a background task as client-go's
/// event broadcaster does: a reconcile does not wait for the API server to store
/// its Event, and a burst beyond the queue drops Events (they are informational)
/// instead of slowing reconciles down.
///
/// Each Event goes through a fresh kube `Recorder`: a long-lived one keeps every
/// Event it sent for six minutes, to count repeats into a series. The controllers
/// publish once per phase change, so an analysis' Events never repeat, and that
/// cache was the operator's largest heap user under load (~1.5 KB per analysis).
#[derive(Clone)]
pub struct Events {
    queue: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
}

impl Events {
    /// Starts the sender task; it ends when the last `Events` handle is dropped.
    pub fn start(client: kube::Client) -> Self {
        // Instance = the pod, so Events say which replica acted across leader handovers.
        let reporter = Reporter {
            controller: crate::analysis::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (queue, mut queued) =
            tokio::sync::mpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
        tokio::spawn(async move {
            while let Some((event, reference)) = queued.recv().await {
                let recorder = Recorder::new(client.clone(), reporter.clone());
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
                }
            }
        });
        Self { queue }
    }

    /// Queues an Event about `regarding`.
    pub fn publish(&self, event: Event, regarding: ObjectReference) {
        if self.queue.try_send((event, regarding)).is_err() {
            tracing::warn!("event queue full; an Event was dropped");
        }
    }
}

/// JSON logs when `LOG_FORMAT=json`, human-readable otherwise; level from `RUST_LOG`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StackLabel {
    pub namespace: String,
    pub stack: String,
}

/// The operator's metrics, registered once and shared by the controllers.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciles: Family<ControllerLabel, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabel, Histogram>,
    pub analyses_by_phase: Family<PhaseLabel, Gauge>,
    pub queue_depth: Family<StackLabel, Gauge>,
    pub job_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("golftracker_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 1.5, 24))
        });
        let analyses_by_phase = Family::<PhaseLabel, Gauge>::default();
        let queue_depth = Family::<StackLabel, Gauge>::default();
        let job_duration = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "analyses",
            "SwingAnalyses by phase",
            analyses_by_phase.clone(),
        );
        registry.register(
            "queue_depth",
            "SwingAnalyses waiting for a worker slot, by stack",
            queue_depth.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Worker Job wall time, start to finish",
            job_duration.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            reconcile_duration,
            analyses_by_phase,
            queue_depth,
            job_duration,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let label = ControllerLabel { controller };
        self.reconciles.get_or_create(&label).inc();
        self.reconcile_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile, logs it and says when to retry (both controllers' error policy).
    pub fn failed(
        &self,
        controller: &'static str,
        object: &str,
        error: &crate::error::Error,
    ) -> kube::runtime::controller::Action {
        tracing::warn!(controller, object, error = %error, "reconcile failed");
        let kind = error.kind();
        self.errors
            .get_or_create(&ErrorLabels { controller, kind })
            .inc();
        kube::runtime::controller::Action::requeue(error.retry_after())
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
