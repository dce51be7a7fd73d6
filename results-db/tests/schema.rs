//! The results schema against a real PostgreSQL server.

mod postgres;

use std::collections::BTreeMap;

use golftracker_results_db::{
    AnalysisKey, EventMark, Metric, Outcome, Recommendation, Report, SwingEvents, erase_analysis,
    fetch_outcome, fetch_report, migrate, record_failure, record_success,
};
use sqlx::PgPool;

fn key(uid: &str) -> AnalysisKey {
    AnalysisKey {
        uid: uid.into(),
        namespace: "golf".into(),
        name: format!("swing-{uid}"),
        user_id: "golfer-7".into(),
    }
}

fn report(tempo: f64, metrics: &[&str]) -> Report {
    Report {
        fps: 30.0,
        frames: 180,
        width: 1080,
        height: 1920,
        view: "down-the-line".into(),
        model: "blazepose-full".into(),
        events: SwingEvents::from_ordered(std::array::from_fn(|i| EventMark {
            frame: 20 + 10 * i as u64,
            time_s: (20 + 10 * i) as f64 / 30.0,
            confidence: 0.8,
        })),
        tempo_ratio: Some(tempo),
        backswing_ms: Some(900.0),
        downswing_ms: Some(900.0 / tempo),
        metrics: metrics
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    Metric {
                        value: 1.5,
                        unit: "deg".into(),
                        confidence: 0.7,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        recommendations: vec![Recommendation {
            code: "tempo".into(),
            message: "slow down".into(),
            value: tempo,
        }],
        slow_motion: None,
        swings_seen: Some(1),
    }
}

async fn count(pool: &PgPool, table: &str, uid: &str) -> i64 {
    let column = if table == "analyses" {
        "uid"
    } else {
        "analysis_uid"
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE {column} = $1"
    )))
    .bind(uid)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn results_round_trip_idempotently_and_erase_completely() {
    let server = postgres::TestPostgres::start();
    let pool = server.pool().await;
    migrate(&pool).await.unwrap();
    // A second migration run (another worker, the operator) is a no-op.
    migrate(&pool).await.unwrap();

    assert_eq!(fetch_outcome(&pool, "a1").await.unwrap(), None);

    // A failed first attempt, retried: still one failure row, the latest message.
    record_failure(&pool, &key("a1"), "Transient", "first")
        .await
        .unwrap();
    record_failure(&pool, &key("a1"), "NoPersonFound", "no person in the video")
        .await
        .unwrap();
    assert_eq!(count(&pool, "failures", "a1").await, 1);
    match fetch_outcome(&pool, "a1").await.unwrap() {
        Some(Outcome::Failed(failure)) => {
            assert_eq!(failure.code, "NoPersonFound");
            assert_eq!(failure.message, "no person in the video");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // Success after retries replaces the failure; a repeated write does not duplicate.
    record_success(
        &pool,
        &key("a1"),
        &report(2.5, &["hip_turn", "head_sway"]),
        "s3://b/r1/",
    )
    .await
    .unwrap();
    let final_report = report(3.0, &["hip_turn"]);
    record_success(&pool, &key("a1"), &final_report, "s3://b/r/")
        .await
        .unwrap();
    assert_eq!(count(&pool, "analyses", "a1").await, 1);
    assert_eq!(count(&pool, "events", "a1").await, 8);
    assert_eq!(count(&pool, "metrics", "a1").await, 1);
    assert_eq!(count(&pool, "failures", "a1").await, 0);
    match fetch_outcome(&pool, "a1").await.unwrap() {
        Some(Outcome::Succeeded(success)) => {
            assert_eq!(success.report_uri, "s3://b/r/");
            assert_eq!(success.tempo_ratio, Some(3.0));
            assert_eq!(success.view, "down-the-line");
        }
        other => panic!("expected a success, got {other:?}"),
    }
    assert_eq!(
        fetch_report(&pool, "a1").await.unwrap(),
        Some(final_report.clone())
    );

    // Another analysis of the same user is untouched by erasing the first.
    record_success(&pool, &key("a2"), &final_report, "s3://b/r2/")
        .await
        .unwrap();
    record_failure(&pool, &key("a1"), "Late", "a stale retry failed")
        .await
        .unwrap();
    let erased = erase_analysis(&pool, "a1").await.unwrap();
    assert_eq!(
        (
            erased.analyses,
            erased.events,
            erased.metrics,
            erased.failures
        ),
        (1, 8, 1, 1)
    );
    for table in ["analyses", "events", "metrics", "failures"] {
        assert_eq!(
            count(&pool, table, "a1").await,
            0,
            "{table} still has rows of a1"
        );
    }
    assert_eq!(fetch_outcome(&pool, "a1").await.unwrap(), None);
    assert_eq!(erase_analysis(&pool, "a1").await.unwrap().total(), 0);
    assert_eq!(count(&pool, "events", "a2").await, 8);

    // The documented indexes exist (lookups by user id).
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for index in [
        "analyses_user_id",
        "failures_user_id",
        "events_pkey",
        "metrics_pkey",
    ] {
        assert!(
            indexes.iter().any(|name| name == index),
            "missing index {index}: {indexes:?}"
        );
    }
}
