//! What the analysis controller's caches keep of each object: only what admission,
//! the queue and status need. With thousands of analyses the caches are most of the
//! operator's memory.

use golftracker_crds::analysis::SwingAnalysis;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::job::labels;

/// A worker Job as the controller reads it: metadata and status, deserialized
/// straight from the API server's answer. (k8s-openapi's `Job` holds its pod
/// template inline: 2.6 KB per cached Job even with the spec dropped.)
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedJob {
    pub metadata: ObjectMeta,
    pub status: Option<JobStatus>,
}

impl k8s_openapi::Resource for CachedJob {
    const API_VERSION: &'static str = Job::API_VERSION;
    const GROUP: &'static str = Job::GROUP;
    const KIND: &'static str = Job::KIND;
    const VERSION: &'static str = Job::VERSION;
    const URL_PATH_SEGMENT: &'static str = Job::URL_PATH_SEGMENT;
    type Scope = <Job as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedJob {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Managed fields (and a `kubectl apply` copy of the object) are kept by the API
/// server for every analysis and read by nothing here.
pub fn trim_analysis(analysis: &mut SwingAnalysis) {
    analysis.metadata.managed_fields = None;
    if let Some(annotations) = analysis.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Of a Job's metadata the controller reads its name, owner and stack label.
pub fn trim_job(job: &mut CachedJob) {
    job.metadata.managed_fields = None;
    job.metadata.annotations = None;
    if let Some(kept) = job.metadata.labels.as_mut() {
        kept.retain(|key, _| key == labels::STACK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_job_keeps_status_owner_and_stack_label_only() {
        let job = serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "swing-a-1234",
                "namespace": "golf",
                "labels": {labels::STACK: "prod", "app.kubernetes.io/name": "golftracker-worker"},
                "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
                    "name": "a", "uid": "u-1", "controller": true}],
                "managedFields": [{"manager": "golftracker-operator", "operation": "Apply"}]
            },
            "spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "w:1"}]}}},
            "status": {"active": 1}
        });
        let mut cached: CachedJob = serde_json::from_value(job).unwrap();
        trim_job(&mut cached);
        let labels = cached.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[labels::STACK], "prod");
        assert!(cached.metadata.annotations.is_none());
        assert!(cached.metadata.managed_fields.is_none());
        assert_eq!(cached.metadata.owner_references.unwrap()[0].uid, "u-1");
        assert_eq!(cached.status.unwrap().active, Some(1));
    }
}
