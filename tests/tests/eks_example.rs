//! The production example's parts agree: examples/eks/cluster.yaml (eksctl) gives IRSA
//! roles to the chart's ServiceAccount and to the stack's worker ServiceAccount, with
//! the role ARN the chart's production values use, and its GPU spot node group is what
//! examples/production-stack.yaml's workers select and tolerate.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn service_account<'a>(cluster: &'a Value, namespace: &str, name: &str) -> &'a Value {
    cluster["iam"]["serviceAccounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sa| sa["metadata"]["name"] == name && sa["metadata"]["namespace"] == namespace)
        .unwrap_or_else(|| panic!("no IRSA ServiceAccount {namespace}/{name}"))
}

#[test]
fn irsa_roles_belong_to_the_chart_and_the_stacks_worker() {
    let cluster = yaml("examples/eks/cluster.yaml");
    let stack = yaml("examples/production-stack.yaml");
    let values = yaml("charts/golftracker-operator/values-production.yaml");
    assert_eq!(cluster["iam"]["withOIDC"], true);

    // The chart's ServiceAccount (release golftracker-operator, as the README installs it).
    let operator = service_account(&cluster, "golftracker-system", "golftracker-operator");
    let annotation = values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .unwrap();
    assert!(
        annotation.ends_with(&format!(":role/{}", operator["roleName"].as_str().unwrap())),
        "{annotation}"
    );
    // The worker's ServiceAccount the operator creates: `<stack>-worker` in its namespace.
    let worker_account = format!("{}-worker", stack["metadata"]["name"].as_str().unwrap());
    let worker = service_account(
        &cluster,
        stack["metadata"]["namespace"].as_str().unwrap(),
        &worker_account,
    );
    // The worker's role reaches the bucket and the KMS key the stack names.
    let policy = worker["attachPolicy"].to_string();
    assert!(policy.contains(stack["spec"]["storage"]["bucket"].as_str().unwrap()));
    assert!(
        policy.contains(
            stack["spec"]["storage"]["encryption"]["kmsKeyId"]
                .as_str()
                .unwrap()
        )
    );
    let operator_policy = operator["attachPolicy"].to_string();
    assert!(operator_policy.contains(stack["spec"]["storage"]["bucket"].as_str().unwrap()));
}

#[test]
fn spot_node_group_is_what_the_workers_select_and_tolerate() {
    let cluster = yaml("examples/eks/cluster.yaml");
    let stack = yaml("examples/production-stack.yaml");
    let worker = &stack["spec"]["worker"];
    let group = cluster["managedNodeGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["spot"] == true)
        .expect("a spot node group");

    // EKS labels managed spot nodes eks.amazonaws.com/capacityType=SPOT.
    assert_eq!(
        worker["spot"]["nodeLabelKey"],
        "eks.amazonaws.com/capacityType"
    );
    assert_eq!(worker["spot"]["nodeLabelValue"], "SPOT");
    let instance_type = &worker["nodeSelector"]["node.kubernetes.io/instance-type"];
    assert!(
        group["instanceTypes"]
            .as_array()
            .unwrap()
            .contains(instance_type),
        "{instance_type} is not in the node group"
    );
    // GPU nodes (tainted nvidia.com/gpu) exactly when the workers ask for GPUs.
    let gpu_nodes = group["taints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "nvidia.com/gpu");
    assert_eq!(gpu_nodes, worker["gpu"].as_i64().unwrap_or(0) > 0);

    // Every taint of the node group is tolerated by the workers.
    let tolerations = worker["spot"]["tolerations"].as_array().unwrap();
    for taint in group["taints"].as_array().unwrap() {
        let tolerated = tolerations.iter().any(|t| {
            t["key"] == taint["key"]
                && t["effect"] == taint["effect"]
                && (t["operator"] == "Exists" || t["value"] == taint["value"])
        });
        assert!(tolerated, "taint {taint} is not tolerated");
    }
}
