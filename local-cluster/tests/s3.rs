//! aws-sdk-s3 against the local MinIO: bucket, versioning, lifecycle, objects.

use aws_sdk_s3::{
    primitives::ByteStream,
    types::{
        BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus,
        LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, VersioningConfiguration,
    },
};
use golftracker_local_cluster::LocalCluster;

#[tokio::test]
async fn bucket_versioning_lifecycle_and_objects_work_on_minio() {
    let cluster = LocalCluster::builder()
        .without_kube()
        .without_vault()
        .without_postgres()
        .start()
        .await
        .expect("MinIO starts");
    let s3 = cluster.s3().unwrap().client();
    let bucket = "swings";

    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status(), Some(&BucketVersioningStatus::Enabled));

    let rule = LifecycleRule::builder()
        .id("expire-uploads")
        .filter(LifecycleRuleFilter::builder().prefix("uploads/").build())
        .expiration(LifecycleExpiration::builder().days(30).build())
        .status(ExpirationStatus::Enabled)
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("set lifecycle");
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rules = lifecycle.rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].id(), Some("expire-uploads"));
    assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(30));

    for body in ["first swing", "second swing"] {
        s3.put_object()
            .bucket(bucket)
            .key("uploads/swing.mp4")
            .body(ByteStream::from_static(body.as_bytes()))
            .send()
            .await
            .expect("put object");
    }
    let object = s3
        .get_object()
        .bucket(bucket)
        .key("uploads/swing.mp4")
        .send()
        .await
        .expect("get object");
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"second swing");
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix("uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.versions().len(),
        2,
        "versioning keeps both uploads"
    );

    let missing = s3.get_object().bucket(bucket).key("nope").send().await;
    assert!(missing.unwrap_err().into_service_error().is_no_such_key());
}
