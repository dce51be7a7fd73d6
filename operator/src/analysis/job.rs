//! The worker Job of an analysis, built by pure functions from the analysis and its
//! stack (unit-tested and snapshot-tested without a server).

use std::collections::BTreeMap;

use golftracker_crds::analysis::SwingAnalysis;
use golftracker_crds::stack::{GolfTrackerStack, SpotMode, SpotSpec};
use golftracker_crds::worker_env as env;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSecurityContext, PodSpec,
    PodTemplateSpec, PreferredSchedulingTerm, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::error::{Error, Result};

/// Label keys the operator puts on worker Jobs and pods.
pub mod labels {
    pub const ANALYSIS: &str = "golftracker.io/analysis";
    pub const STACK: &str = "golftracker.io/stack";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "golftracker-operator";
    /// Hands the Job to the local job runner (local control plane only).
    pub const LOCAL_RUNNER: &str = "golftracker.io/local-runner";
}

/// Keys of the stack's S3 credentials Secret.
pub const S3_ACCESS_KEY_ID_KEY: &str = "accessKeyId";
pub const S3_SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
/// Keys of the database credentials Secret.
pub const DB_USERNAME_KEY: &str = "username";
pub const DB_PASSWORD_KEY: &str = "password";

/// UID the worker runs as (the image's non-root user).
const WORKER_UID: i64 = 65532;

/// Knobs that depend on where the operator runs, not on the objects.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Label Jobs for the local job runner (the local control plane has no kubelet).
    pub local_runner: bool,
}

/// The Job's name: derived from the analysis uid only, so a retried or re-delivered
/// reconcile (also after an operator restart) can never create a second Job.
pub fn job_name(analysis: &SwingAnalysis) -> Result<String> {
    let uid = analysis
        .meta()
        .uid
        .as_deref()
        .ok_or(Error::MissingField("metadata.uid"))?;
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    let name = analysis.name_any();
    // 63 is the label-value limit the Job controller copies the name into.
    let prefix: String = name
        .chars()
        .take(63 - 1 - short.len() - "swing-".len())
        .collect();
    Ok(format!(
        "swing-{}-{short}",
        prefix.trim_end_matches(['-', '.'])
    ))
}

/// Name of the ServiceAccount worker pods run as (created by the stack controller).
pub fn worker_service_account(stack: &GolfTrackerStack) -> String {
    format!("{}-worker", stack.name_any())
}

/// Where the video is: `s3://bucket/key`, from a key in the stack's bucket or a full URI.
pub fn video_uri(analysis: &SwingAnalysis, stack: &GolfTrackerStack) -> String {
    let video = &analysis.spec.video;
    if video.starts_with("s3://") {
        video.clone()
    } else {
        format!(
            "s3://{}/{}",
            stack.spec.storage.bucket,
            video.trim_start_matches('/')
        )
    }
}

/// Splits `s3://bucket/key` into bucket and key.
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

/// Prefix of the report objects: one folder per analysis uid, so erasing is a prefix delete.
pub fn report_prefix_uri(analysis: &SwingAnalysis, stack: &GolfTrackerStack) -> Result<String> {
    let uid = analysis
        .meta()
        .uid
        .as_deref()
        .ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = analysis.namespace().unwrap_or_default();
    Ok(format!(
        "s3://{}/reports/{namespace}/{}/{uid}/",
        stack.spec.storage.bucket,
        analysis.name_any()
    ))
}

/// Name of the Secret Vault-issued database credentials are delivered to (by the
/// operator or by the Vault Secrets Operator).
pub fn vault_database_secret(stack: &GolfTrackerStack) -> String {
    format!("{}-worker-db", stack.name_any())
}

/// The Secret holding database credentials for workers: the Vault-delivered one when
/// the stack asks for Vault credentials, else the stack's own Secret reference.
pub fn database_secret(stack: &GolfTrackerStack) -> Option<String> {
    let credentials = &stack.spec.database.credentials;
    match credentials.vault {
        Some(_) => Some(vault_database_secret(stack)),
        None => credentials.secret_ref.clone(),
    }
}

/// Labels shared by the Job and its pods.
pub fn job_labels(
    analysis: &SwingAnalysis,
    stack: &GolfTrackerStack,
    options: &JobOptions,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "golftracker-worker".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            analysis.name_any(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "analysis".to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "golftracker".to_string(),
        ),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::ANALYSIS.to_string(), analysis.name_any()),
        (labels::STACK.to_string(), stack.name_any()),
    ]);
    if options.local_runner {
        labels.insert(labels::LOCAL_RUNNER.to_string(), "true".to_string());
    }
    labels
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

/// The worker's environment: locations and identifiers as values, credentials only as
/// Secret references (no secret value ever appears in the Job).
pub fn worker_env(analysis: &SwingAnalysis, stack: &GolfTrackerStack) -> Result<Vec<EnvVar>> {
    let storage = &stack.spec.storage;
    let database = &stack.spec.database;
    let mut vars = vec![
        plain(env::ANALYSIS_NAME, analysis.name_any()),
        plain(
            env::ANALYSIS_NAMESPACE,
            analysis.namespace().unwrap_or_default(),
        ),
        plain(
            env::ANALYSIS_UID,
            analysis
                .meta()
                .uid
                .clone()
                .ok_or(Error::MissingField("metadata.uid"))?,
        ),
        plain(env::VIDEO_URI, video_uri(analysis, stack)),
        plain(env::REPORT_PREFIX_URI, report_prefix_uri(analysis, stack)?),
        plain(env::S3_REGION, storage.region.clone()),
        plain(env::S3_PATH_STYLE, storage.force_path_style.to_string()),
        plain(env::MODEL_URI, stack.spec.worker.model.uri.clone()),
        plain(env::CAMERA_VIEW, analysis.spec.camera_view.as_str()),
        plain(env::HANDEDNESS, analysis.spec.golfer.handedness.as_str()),
        plain(env::USER_ID, analysis.spec.golfer.user_id.clone()),
        plain(env::PG_HOST, database.host.clone()),
        plain(env::PG_PORT, database.port.to_string()),
        plain(env::PG_DATABASE, database.database.clone()),
        plain(env::PG_SSLMODE, database.ssl_mode.as_str()),
    ];
    if let Some(endpoint) = &storage.endpoint {
        vars.push(plain(env::S3_ENDPOINT, endpoint.clone()));
    }
    if let Some(sha) = &stack.spec.worker.model.sha256 {
        vars.push(plain(env::MODEL_SHA256, sha.clone()));
    }
    if let Some(club) = &analysis.spec.golfer.club {
        vars.push(plain(env::CLUB, club.clone()));
    }
    if let Some(secret) = &storage.credentials_secret {
        vars.push(from_secret(
            env::AWS_ACCESS_KEY_ID,
            secret,
            S3_ACCESS_KEY_ID_KEY,
        ));
        vars.push(from_secret(
            env::AWS_SECRET_ACCESS_KEY,
            secret,
            S3_SECRET_ACCESS_KEY_KEY,
        ));
    }
    if let Some(secret) = database_secret(stack) {
        vars.push(from_secret(env::PG_USER, &secret, DB_USERNAME_KEY));
        vars.push(from_secret(env::PG_PASSWORD, &secret, DB_PASSWORD_KEY));
    }
    Ok(vars)
}

/// Requests/limits of the worker, with `nvidia.com/gpu` added when the stack asks for GPUs.
fn worker_resources(stack: &GolfTrackerStack) -> Option<ResourceRequirements> {
    let worker = &stack.spec.worker;
    let mut resources = worker.resources.clone();
    if worker.gpu > 0 {
        let resources = resources.get_or_insert_with(Default::default);
        resources
            .limits
            .get_or_insert_with(Default::default)
            .insert(
                "nvidia.com/gpu".to_string(),
                Quantity(worker.gpu.to_string()),
            );
    }
    resources
}

/// Node affinity that sends pods to spot capacity, required or preferred.
fn spot_affinity(spot: &SpotSpec) -> Affinity {
    let term = NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: spot.node_label_key.clone(),
            operator: "In".to_string(),
            values: Some(vec![spot.node_label_value.clone()]),
        }]),
        ..Default::default()
    };
    let node_affinity = match spot.mode {
        SpotMode::Required => NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term],
            }),
            ..Default::default()
        },
        SpotMode::Preferred => NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 100,
                    preference: term,
                },
            ]),
            ..Default::default()
        },
    };
    Affinity {
        node_affinity: Some(node_affinity),
        ..Default::default()
    }
}

/// The worker Job of `analysis` under `stack`: restricted pod security, credentials by
/// reference, limits from the stack's worker template, owned by the analysis.
pub fn job_for_analysis(
    analysis: &SwingAnalysis,
    stack: &GolfTrackerStack,
    options: &JobOptions,
) -> Result<Job> {
    let worker = &stack.spec.worker;
    let labels = job_labels(analysis, stack, options);
    let owner = analysis
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let container = Container {
        name: "worker".to_string(),
        image: Some(worker.image.clone()),
        image_pull_policy: worker.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec!["run".to_string()]),
        env: Some(worker_env(analysis, stack)?),
        resources: worker_resources(stack),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "scratch".to_string(),
            mount_path: "/tmp".to_string(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".to_string()),
        service_account_name: Some(worker_service_account(stack)),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            fs_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "scratch".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("2Gi".to_string())),
                medium: None,
            }),
            ..Default::default()
        }]),
        node_selector: (!worker.node_selector.is_empty()).then(|| worker.node_selector.clone()),
        tolerations: worker
            .spot
            .as_ref()
            .filter(|s| !s.tolerations.is_empty())
            .map(|s| s.tolerations.clone()),
        affinity: worker.spot.as_ref().map(spot_affinity),
        ..Default::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(analysis)?),
            namespace: analysis.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(worker.backoff_limit),
            active_deadline_seconds: Some(worker.active_deadline_seconds),
            ttl_seconds_after_finished: Some(worker.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> (SwingAnalysis, GolfTrackerStack) {
        let stack: GolfTrackerStack =
            serde_saphyr::from_str(include_str!("../../../examples/production-stack.yaml"))
                .unwrap();
        let mut analysis: SwingAnalysis =
            serde_saphyr::from_str(include_str!("../../../examples/quickstart-analysis.yaml"))
                .unwrap();
        analysis.metadata.uid = Some("0f8c2d4e-1111-2222-3333-444455556666".into());
        analysis.metadata.namespace = Some("golftracker".into());
        (analysis, stack)
    }

    #[test]
    fn job_name_is_deterministic_and_a_valid_label_value() {
        let (mut analysis, _) = fixtures();
        let first = job_name(&analysis).unwrap();
        assert_eq!(first, job_name(&analysis).unwrap());
        assert_eq!(first, "swing-user-42-driver-1-0f8c2d4e1111");
        analysis.metadata.name = Some("a".repeat(253));
        let long = job_name(&analysis).unwrap();
        assert!(long.len() <= 63, "{long}");
        analysis.metadata.uid = None;
        assert!(job_name(&analysis).is_err());
    }

    #[test]
    fn job_carries_no_secret_values_and_passes_restricted_pod_security() {
        let (analysis, stack) = fixtures();
        let job = job_for_analysis(&analysis, &stack, &JobOptions::default()).unwrap();
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let sc = container.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        for var in container.env.as_ref().unwrap() {
            if var.name.contains("PASSWORD")
                || var.name.contains("SECRET")
                || var.name == env::PG_USER
            {
                assert!(var.value.is_none(), "{} must come from a Secret", var.name);
                assert!(var.value_from.as_ref().unwrap().secret_key_ref.is_some());
            }
        }
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert!(
            !limits.contains_key("nvidia.com/gpu"),
            "the example runs on CPU"
        );
        let affinity = pod
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap();
        assert!(
            affinity
                .preferred_during_scheduling_ignored_during_execution
                .is_some()
        );
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].kind,
            "SwingAnalysis"
        );
        assert!(
            !job.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(labels::LOCAL_RUNNER)
        );
    }

    #[test]
    fn video_and_report_locations() {
        let (mut analysis, stack) = fixtures();
        assert_eq!(
            video_uri(&analysis, &stack),
            "s3://golftracker-prod-videos-eu-west-1/videos/user-42/2026-11-26-driver.mp4"
        );
        analysis.spec.video = "s3://other-bucket/x.mp4".into();
        assert_eq!(video_uri(&analysis, &stack), "s3://other-bucket/x.mp4");
        assert_eq!(split_s3_uri("s3://b/k/x.mp4"), Some(("b", "k/x.mp4")));
        assert_eq!(split_s3_uri("s3://b/"), None);
        assert!(
            report_prefix_uri(&analysis, &stack)
                .unwrap()
                .ends_with("/0f8c2d4e-1111-2222-3333-444455556666/")
        );
    }

    #[test]
    fn a_gpu_worker_gets_nvidia_gpu_limits_next_to_its_own() {
        let (analysis, mut stack) = fixtures();
        stack.spec.worker.gpu = 2;
        let job = job_for_analysis(&analysis, &stack, &JobOptions::default()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let resources = pod.containers[0].resources.clone().unwrap();
        let limits = resources.limits.unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("2".into()));
        assert_eq!(limits["memory"], Quantity("1Gi".into()));
        assert_eq!(resources.requests.unwrap()["cpu"], Quantity("2".into()));
    }

    #[test]
    fn golden_job() {
        let (analysis, stack) = fixtures();
        let job = job_for_analysis(&analysis, &stack, &JobOptions { local_runner: true }).unwrap();
        insta::assert_yaml_snapshot!(job);
    }
}
