//! The stack's bucket: created if missing, settings put back when they drift. A
//! setting the store does not implement (MinIO answers NotImplemented to some)
//! becomes a note in the condition, not a failure of the stack.

use aws_sdk_s3::Client as S3;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    CorsConfiguration, CorsRule, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Transition, TransitionStorageClass, VersioningConfiguration,
};
use golftracker_crds::stack::{EncryptionMode, LifecycleSpec, StorageSpec};

use crate::error::{Error, Result};

/// What reconciling the bucket found.
#[derive(Debug, Default, PartialEq)]
pub struct StorageReport {
    pub created: bool,
    /// Settings found changed behind the operator's back and put back.
    pub repaired: Vec<&'static str>,
    /// Settings the store does not implement.
    pub unsupported: Vec<&'static str>,
}

fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    bucket: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> Error {
    Error::S3 {
        operation,
        target: format!("s3://{bucket}"),
        message: crate::external::s3_error_message(&e),
    }
}

fn not_implemented<E: ProvideErrorMetadata, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "NotImplemented" || c == "XNotImplemented")
}

/// A bucket setting the store may not implement: `NotImplemented` anywhere, or any
/// refusal by an S3-compatible store (MinIO answers MalformedXML to a public access
/// block), is reported instead of failing the stack. On AWS a refusal is an error.
fn optional_setting<
    T,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
>(
    result: std::result::Result<T, aws_sdk_s3::error::SdkError<E, R>>,
    operation: &'static str,
    setting: &'static str,
    spec: &StorageSpec,
    report: &mut StorageReport,
) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if not_implemented(&e)
                || (spec.endpoint.is_some() && e.as_service_error().is_some()) =>
        {
            report.unsupported.push(setting);
            Ok(())
        }
        Err(e) => Err(s3_error(operation, &spec.bucket, e)),
    }
}

/// The lifecycle rules of raw videos; pure, so its shape is unit-tested.
pub fn lifecycle_configuration(spec: &LifecycleSpec) -> BucketLifecycleConfiguration {
    let mut rule = LifecycleRule::builder()
        .id("golftracker-videos")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix(&spec.video_prefix)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(spec.days_to_abort_incomplete_multipart_upload)
                .build(),
        );
    if let Some(days) = spec.days_to_intelligent_tiering {
        rule = rule.transitions(
            Transition::builder()
                .days(days)
                .storage_class(TransitionStorageClass::IntelligentTiering)
                .build(),
        );
    }
    if let Some(days) = spec.days_to_expire {
        rule = rule.expiration(LifecycleExpiration::builder().days(days).build());
    }
    BucketLifecycleConfiguration::builder()
        .rules(rule.build().expect("id and status are set"))
        .build()
        .expect("one rule")
}

/// Only the expiry of raw videos, for stores that accept nothing more; `None` without one.
pub fn expiry_only_configuration(spec: &LifecycleSpec) -> Option<BucketLifecycleConfiguration> {
    let days = spec.days_to_expire?;
    let rule = LifecycleRule::builder()
        .id("golftracker-videos")
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix(&spec.video_prefix)
                .build(),
        )
        .expiration(LifecycleExpiration::builder().days(days).build())
        .build()
        .expect("id and status are set");
    Some(
        BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .expect("one rule"),
    )
}

/// Default encryption; pure.
pub fn encryption_configuration(spec: &StorageSpec) -> ServerSideEncryptionConfiguration {
    let default = match spec.encryption.mode {
        EncryptionMode::SseS3 => {
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256)
        }
        EncryptionMode::SseKms => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .set_kms_master_key_id(spec.encryption.kms_key_id.clone()),
    };
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default.build().expect("algorithm is set"))
                .bucket_key_enabled(spec.encryption.mode == EncryptionMode::SseKms)
                .build(),
        )
        .build()
        .expect("one rule")
}

/// Creates the bucket if missing and puts every setting in place.
pub async fn ensure_bucket(s3: &S3, spec: &StorageSpec) -> Result<StorageReport> {
    let bucket = spec.bucket.as_str();
    let mut report = StorageReport::default();
    if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
        if !e.as_service_error().is_some_and(|s| s.is_not_found()) {
            return Err(s3_error("HeadBucket", bucket, e));
        }
        let mut create = s3.create_bucket().bucket(bucket);
        if spec.region != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        spec.region.as_str(),
                    ))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => report.created = true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(s3_error("CreateBucket", bucket, e)),
        }
    }
    ensure_versioning(s3, spec, &mut report).await?;
    let encryption = s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption_configuration(spec))
        .send()
        .await;
    optional_setting(
        encryption,
        "PutBucketEncryption",
        "default encryption",
        spec,
        &mut report,
    )?;
    let put_lifecycle = |config: BucketLifecycleConfiguration| {
        s3.put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(config)
            .send()
    };
    match put_lifecycle(lifecycle_configuration(&spec.lifecycle)).await {
        Err(e) if not_implemented(&e) => report.unsupported.push("lifecycle"),
        // S3-compatible stores refuse parts of the AWS rule set (MinIO: transitions need a
        // configured remote tier, no AbortIncompleteMultipartUpload): keep expiry, report the rest.
        Err(e) if spec.endpoint.is_some() => {
            report.unsupported.push(
                "intelligent-tiering transition and multipart-upload clean-up in lifecycle rules",
            );
            if let Some(config) = expiry_only_configuration(&spec.lifecycle) {
                put_lifecycle(config)
                    .await
                    .map_err(|_| s3_error("PutBucketLifecycleConfiguration", bucket, e))?;
            }
        }
        other => drop(other.map_err(|e| s3_error("PutBucketLifecycleConfiguration", bucket, e))?),
    }
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    let block = s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(block)
        .send()
        .await;
    optional_setting(
        block,
        "PutPublicAccessBlock",
        "public access block",
        spec,
        &mut report,
    )?;
    if !spec.cors_allowed_origins.is_empty() {
        let rule = CorsRule::builder()
            .set_allowed_origins(Some(spec.cors_allowed_origins.clone()))
            .allowed_methods("PUT")
            .allowed_methods("POST")
            .allowed_methods("GET")
            .allowed_headers("*")
            .max_age_seconds(3600)
            .build()
            .expect("origins and methods are set");
        let cors = CorsConfiguration::builder()
            .cors_rules(rule)
            .build()
            .expect("one rule");
        let cors = s3
            .put_bucket_cors()
            .bucket(bucket)
            .cors_configuration(cors)
            .send()
            .await;
        optional_setting(cors, "PutBucketCors", "CORS", spec, &mut report)?;
    }
    Ok(report)
}

/// Versioning is read back first, so a change behind the operator's back is reported.
async fn ensure_versioning(s3: &S3, spec: &StorageSpec, report: &mut StorageReport) -> Result<()> {
    let bucket = spec.bucket.as_str();
    let current = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| s3_error("GetBucketVersioning", bucket, e))?;
    let want = if spec.versioning {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    let is_enabled = current.status() == Some(&BucketVersioningStatus::Enabled);
    if is_enabled == spec.versioning {
        return Ok(());
    }
    // Never enabled and not wanted: leave the bucket unversioned.
    if current.status().is_none() && !spec.versioning {
        return Ok(());
    }
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(want).build())
        .send()
        .await
        .map_err(|e| s3_error("PutBucketVersioning", bucket, e))?;
    if !report.created {
        report.repaired.push("versioning");
    }
    Ok(())
}

/// Deletion policy Delete: removes the bucket only when it holds no object.
/// `Ok(Some(reason))` when it was kept.
pub async fn delete_bucket_if_empty(s3: &S3, bucket: &str) -> Result<Option<String>> {
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .max_keys(1)
        .send()
        .await;
    match versions {
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchBucket") => {
            return Ok(None);
        }
        Err(e) => return Err(s3_error("ListObjectVersions", bucket, e)),
        Ok(page) if !page.versions().is_empty() || !page.delete_markers().is_empty() => {
            return Ok(Some(format!(
                "bucket {bucket} is not empty; deletionPolicy Delete only removes empty buckets"
            )));
        }
        Ok(_) => {}
    }
    s3.delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| s3_error("DeleteBucket", bucket, e))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_tiers_expires_and_aborts_uploads_of_videos_only() {
        let spec = LifecycleSpec {
            video_prefix: "videos/".into(),
            days_to_intelligent_tiering: Some(30),
            days_to_expire: Some(365),
            days_to_abort_incomplete_multipart_upload: 7,
        };
        let config = lifecycle_configuration(&spec);
        let rule = &config.rules()[0];
        assert_eq!(rule.filter().and_then(|f| f.prefix()), Some("videos/"));
        assert_eq!(rule.transitions()[0].days(), Some(30));
        assert_eq!(
            rule.transitions()[0].storage_class(),
            Some(&TransitionStorageClass::IntelligentTiering)
        );
        assert_eq!(rule.expiration().and_then(|e| e.days()), Some(365));
        assert_eq!(
            rule.abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation()),
            Some(7)
        );
        let none = lifecycle_configuration(&LifecycleSpec::default());
        assert!(none.rules()[0].transitions().is_empty() && none.rules()[0].expiration().is_none());
    }
}
