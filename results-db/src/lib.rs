//! The results database of GolfTracker: one schema, written by the analysis worker
//! and read by the operator, so both sides share these functions instead of SQL strings.
//!
//! Every write is an upsert keyed by the SwingAnalysis uid: a Job that is retried
//! after a partial run overwrites its rows instead of duplicating them.

mod report;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};

pub use report::{EventMark, Metric, Recommendation, Report, SlowMotion, SwingEvent, SwingEvents};

/// The embedded migrations (`results-db/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the results database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("results database query: {0}")]
    Query(#[from] sqlx::Error),
    #[error("serializing the report: {0}")]
    Report(#[from] serde_json::Error),
}

/// Identifies one SwingAnalysis: the uid is the key, the rest is stored for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisKey {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub user_id: String,
}

/// What the operator copies into the SwingAnalysis status.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(SuccessSummary),
    Failed(FailureSummary),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SuccessSummary {
    pub report_uri: String,
    pub view: String,
    pub model: String,
    pub tempo_ratio: Option<f64>,
    pub backswing_ms: Option<f64>,
    pub downswing_ms: Option<f64>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureSummary {
    /// Machine-readable reason, e.g. `NoPersonFound`, `UnsupportedVideo`.
    pub code: String,
    pub message: String,
    pub recorded_at: DateTime<Utc>,
}

/// Rows removed by [`erase_analysis`], per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasedRows {
    pub analyses: u64,
    pub events: u64,
    pub metrics: u64,
    pub failures: u64,
}

impl ErasedRows {
    pub fn total(&self) -> u64 {
        self.analyses + self.events + self.metrics + self.failures
    }
}

/// Creates or upgrades the schema; safe to run concurrently from several processes
/// (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Stores a successful analysis, replacing whatever an earlier attempt left
/// (including a failure row: the latest attempt is the truth).
pub async fn record_success(
    pool: &PgPool,
    key: &AnalysisKey,
    report: &Report,
    report_uri: &str,
) -> Result<(), Error> {
    let report_json = serde_json::to_value(report)?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO analyses (uid, namespace, name, user_id, fps, frames, width, height, view, \
             model, tempo_ratio, backswing_ms, downswing_ms, report_uri, report, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now()) \
         ON CONFLICT (uid) DO UPDATE SET namespace = EXCLUDED.namespace, name = EXCLUDED.name, \
             user_id = EXCLUDED.user_id, fps = EXCLUDED.fps, frames = EXCLUDED.frames, \
             width = EXCLUDED.width, height = EXCLUDED.height, view = EXCLUDED.view, \
             model = EXCLUDED.model, tempo_ratio = EXCLUDED.tempo_ratio, \
             backswing_ms = EXCLUDED.backswing_ms, downswing_ms = EXCLUDED.downswing_ms, \
             report_uri = EXCLUDED.report_uri, report = EXCLUDED.report, recorded_at = now()",
    )
    .bind(&key.uid)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(&key.user_id)
    .bind(report.fps)
    .bind(i64::try_from(report.frames).unwrap_or(i64::MAX))
    .bind(i32::try_from(report.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(report.height).unwrap_or(i32::MAX))
    .bind(&report.view)
    .bind(&report.model)
    .bind(report.tempo_ratio)
    .bind(report.backswing_ms)
    .bind(report.downswing_ms)
    .bind(report_uri)
    .bind(&report_json)
    .execute(&mut *tx)
    .await?;

    // Replace the child rows wholesale: a retry may have found other metrics.
    delete_children(&mut tx, &key.uid).await?;
    for (event, mark) in report.events.iter() {
        sqlx::query(
            "INSERT INTO events (analysis_uid, event, frame, time_s, confidence) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.uid)
        .bind(event.as_str())
        .bind(i64::try_from(mark.frame).unwrap_or(i64::MAX))
        .bind(mark.time_s)
        .bind(mark.confidence)
        .execute(&mut *tx)
        .await?;
    }
    for (name, metric) in &report.metrics {
        sqlx::query(
            "INSERT INTO metrics (analysis_uid, name, value, unit, confidence) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.uid)
        .bind(name)
        .bind(metric.value)
        .bind(&metric.unit)
        .bind(metric.confidence)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM failures WHERE analysis_uid = $1")
        .bind(&key.uid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Stores why an analysis failed (one row per analysis; a retry overwrites it).
pub async fn record_failure(
    pool: &PgPool,
    key: &AnalysisKey,
    code: &str,
    message: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO failures (analysis_uid, namespace, name, user_id, code, message, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now()) \
         ON CONFLICT (analysis_uid) DO UPDATE SET namespace = EXCLUDED.namespace, \
             name = EXCLUDED.name, user_id = EXCLUDED.user_id, code = EXCLUDED.code, \
             message = EXCLUDED.message, recorded_at = now()",
    )
    .bind(&key.uid)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(&key.user_id)
    .bind(code)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(())
}

/// The stored outcome of an analysis, a success taking precedence; `None` while
/// the worker has written nothing yet.
pub async fn fetch_outcome(pool: &PgPool, analysis_uid: &str) -> Result<Option<Outcome>, Error> {
    let success = sqlx::query(
        "SELECT report_uri, view, model, tempo_ratio, backswing_ms, downswing_ms, recorded_at \
         FROM analyses WHERE uid = $1",
    )
    .bind(analysis_uid)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = success {
        return Ok(Some(Outcome::Succeeded(SuccessSummary {
            report_uri: row.try_get("report_uri")?,
            view: row.try_get("view")?,
            model: row.try_get("model")?,
            tempo_ratio: row.try_get("tempo_ratio")?,
            backswing_ms: row.try_get("backswing_ms")?,
            downswing_ms: row.try_get("downswing_ms")?,
            recorded_at: row.try_get("recorded_at")?,
        })));
    }
    let failure =
        sqlx::query("SELECT code, message, recorded_at FROM failures WHERE analysis_uid = $1")
            .bind(analysis_uid)
            .fetch_optional(pool)
            .await?;
    failure
        .map(|row| {
            Ok(Outcome::Failed(FailureSummary {
                code: row.try_get("code")?,
                message: row.try_get("message")?,
                recorded_at: row.try_get("recorded_at")?,
            }))
        })
        .transpose()
}

/// The full stored report of a successful analysis.
pub async fn fetch_report(pool: &PgPool, analysis_uid: &str) -> Result<Option<Report>, Error> {
    let report: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT report FROM analyses WHERE uid = $1")
            .bind(analysis_uid)
            .fetch_optional(pool)
            .await?;
    Ok(report.map(serde_json::from_value).transpose()?)
}

/// Deletes every row of one analysis (privacy erasure), in one transaction.
pub async fn erase_analysis(pool: &PgPool, analysis_uid: &str) -> Result<ErasedRows, Error> {
    let mut tx = pool.begin().await?;
    let (events, metrics) = delete_children(&mut tx, analysis_uid).await?;
    let analyses = sqlx::query("DELETE FROM analyses WHERE uid = $1")
        .bind(analysis_uid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let failures = sqlx::query("DELETE FROM failures WHERE analysis_uid = $1")
        .bind(analysis_uid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(ErasedRows {
        analyses,
        events,
        metrics,
        failures,
    })
}

/// Deletes the event and metric rows of an analysis; returns how many of each.
async fn delete_children(
    tx: &mut Transaction<'_, Postgres>,
    analysis_uid: &str,
) -> Result<(u64, u64), Error> {
    let events = sqlx::query("DELETE FROM events WHERE analysis_uid = $1")
        .bind(analysis_uid)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let metrics = sqlx::query("DELETE FROM metrics WHERE analysis_uid = $1")
        .bind(analysis_uid)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok((events, metrics))
}
