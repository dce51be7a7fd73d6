//! The GolfTrackerStack controller on real MinIO, PostgreSQL and kube-apiserver.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{BUCKET, Harness, NAMESPACE, STACK};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_provisions_bucket_and_schema_and_repairs_drift() {
    let h = Harness::start(3).await.unwrap();
    let stacks: Api<GolfTrackerStack> = Api::namespaced(h.client.clone(), NAMESPACE);
    let stack = stacks.get(STACK).await.unwrap();
    let status = stack.status.unwrap();
    for type_ in ["StorageReady", "DatabaseReady", "VaultReady", "Ready"] {
        assert!(
            golftracker_crds::conditions::is_true(&status.conditions, type_),
            "{type_}: {:?}",
            status.conditions
        );
    }
    assert!(
        status
            .database_version
            .as_deref()
            .is_some_and(|v| v.starts_with("15")),
        "{status:?}"
    );
    assert!(
        status
            .bucket_endpoint
            .as_deref()
            .is_some_and(|e| e.ends_with(BUCKET))
    );

    // The bucket exists with versioning; the schema exists.
    let versioning =
        h.s3.get_bucket_versioning()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&h.db)
    .await
    .unwrap();
    for table in ["analyses", "events", "metrics", "failures"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }

    // Versioning suspended behind the operator's back is put back, with an Event.
    h.s3.put_bucket_versioning()
        .bucket(BUCKET)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut repaired = false;
    for _ in 0..60 {
        let v =
            h.s3.get_bucket_versioning()
                .bucket(BUCKET)
                .send()
                .await
                .unwrap();
        if v.status() == Some(&BucketVersioningStatus::Enabled) {
            repaired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(repaired, "versioning was not repaired");
    let events: Api<Event> = Api::namespaced(h.client.clone(), NAMESPACE);
    let mut seen = false;
    for _ in 0..20 {
        let list = events.list(&ListParams::default()).await.unwrap();
        seen = list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DriftRepaired"));
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen, "no DriftRepaired event");
}
