//! The GolfTrackerStack controller on real MinIO, PostgreSQL and kube-apiserver.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption, VersioningConfiguration};
use golftracker_crds::conditions::{find, is_true};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{BUCKET, Harness, NAMESPACE, STACK, stack_manifest};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

fn stacks(h: &Harness) -> Api<GolfTrackerStack> {
    Api::namespaced(h.client.clone(), NAMESPACE)
}

/// Polls the stack until `check` accepts its conditions; returns them.
async fn wait_conditions(
    h: &Harness,
    stack: &str,
    what: &str,
    check: impl Fn(&[Condition]) -> bool,
) -> Vec<Condition> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let conditions = stacks(h)
            .get(stack)
            .await
            .unwrap()
            .status
            .map(|s| s.conditions)
            .unwrap_or_default();
        if check(&conditions) {
            return conditions;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stack}: {what} not reached: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for an Event of `reason` about the named object.
async fn wait_event(h: &Harness, object: &str, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(h.client.clone(), NAMESPACE);
    for _ in 0..240 {
        let list = events.list(&ListParams::default()).await.unwrap();
        if let Some(e) = list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some(object)
        }) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no {reason} Event for {object}");
}

/// Expiration days of the bucket's video lifecycle rule.
async fn expiration_days(h: &Harness, bucket: &str) -> Option<i32> {
    let lifecycle =
        h.s3.get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
            .ok()?;
    lifecycle
        .rules()
        .iter()
        .find_map(|r| r.expiration().and_then(|e| e.days()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_provisions_bucket_and_schema_and_repairs_drift() {
    let h = Harness::start(3).await.unwrap();
    let stack = stacks(&h).get(STACK).await.unwrap();
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

    // Encryption (SSE-S3) and the lifecycle asked for, read back from the store.
    let encryption =
        h.s3.get_bucket_encryption()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
    let default = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().clone());
    assert_eq!(default, Some(ServerSideEncryption::Aes256));
    assert_eq!(expiration_days(&h, BUCKET).await, Some(365));
    // CORS for the app's uploads, unless the store says it does not implement it (then
    // the condition must say so rather than claim it).
    let storage = find(&status.conditions, "StorageReady").unwrap();
    match h.s3.get_bucket_cors().bucket(BUCKET).send().await {
        Ok(cors) => assert!(
            cors.cors_rules().iter().any(|r| r
                .allowed_origins()
                .iter()
                .any(|o| o == "https://app.golftracker.example")),
            "{cors:?}"
        ),
        Err(_) => assert!(
            storage.message.contains("CORS"),
            "CORS neither set nor reported unsupported: {}",
            storage.message
        ),
    }

    // The lifecycle follows the spec.
    stacks(&h)
        .patch(
            STACK,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"storage": {"lifecycle": {"daysToExpire": 30}}}}),
            ),
        )
        .await
        .unwrap();
    let mut followed = false;
    for _ in 0..120 {
        if expiration_days(&h, BUCKET).await == Some(30) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(followed, "lifecycle did not follow the spec to 30 days");

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

/// PostgreSQL stopped: DatabaseReady goes False with the reason, storage and Vault
/// stay True; PostgreSQL back: Ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_only_affects_database_ready() {
    let mut h = Harness::start(3).await.unwrap();
    h.cluster.stop_server("postgres").unwrap();
    let conditions = wait_conditions(&h, STACK, "DatabaseReady=False", |c| {
        find(c, "DatabaseReady").is_some_and(|c| c.status == "False")
    })
    .await;
    let database = find(&conditions, "DatabaseReady").unwrap();
    assert_eq!(database.reason, "DatabaseError");
    assert!(!database.message.is_empty());
    assert!(is_true(&conditions, "StorageReady"), "{conditions:?}");
    assert!(is_true(&conditions, "VaultReady"), "{conditions:?}");
    assert!(!is_true(&conditions, "Ready"));

    h.cluster.restart_server("postgres").await.unwrap();
    wait_conditions(&h, STACK, "Ready again", |c| is_true(c, "Ready")).await;
}

/// Deletion policy: Delete refuses a bucket that still holds objects (the stack stays
/// and an Event says why) and deletes it once empty; Retain leaves the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_waits_for_an_empty_bucket_and_retain_keeps_it() {
    let h = Harness::start(3).await.unwrap();
    let bucket = "golftracker-e2e-delete";
    let mut doomed = stack_manifest(&h.cluster, "doomed", bucket, 3).unwrap();
    doomed.spec.storage.deletion_policy = golftracker_crds::stack::DeletionPolicy::Delete;
    stacks(&h)
        .create(&PostParams::default(), &doomed)
        .await
        .unwrap();
    wait_conditions(&h, "doomed", "Ready", |c| is_true(c, "Ready")).await;
    h.s3.put_object()
        .bucket(bucket)
        .key("videos/left-behind.mp4")
        .body(b"a golfer's video".to_vec().into())
        .send()
        .await
        .unwrap();

    stacks(&h)
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let kept = wait_event(&h, "doomed", "BucketKept").await;
    assert!(
        kept.message.as_deref().is_some_and(|m| m.contains(bucket)),
        "{kept:?}"
    );
    assert!(stacks(&h).get_opt("doomed").await.unwrap().is_some());
    assert!(h.s3.head_bucket().bucket(bucket).send().await.is_ok());

    // Emptied (every version: the bucket is versioned), the bucket and the stack go.
    let versions =
        h.s3.list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
    for v in versions.versions() {
        h.s3.delete_object()
            .bucket(bucket)
            .key(v.key().unwrap())
            .set_version_id(v.version_id().map(String::from))
            .send()
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while stacks(&h).get_opt("doomed").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the emptied stack was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        h.s3.head_bucket().bucket(bucket).send().await.is_err(),
        "bucket not deleted"
    );

    // Retain (the default): the stack goes, the bucket stays.
    stacks(&h)
        .delete(STACK, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stacks(&h).get_opt(STACK).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Retain stack was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(h.s3.head_bucket().bucket(BUCKET).send().await.is_ok());
}
