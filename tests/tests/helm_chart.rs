//! The Helm chart (charts/golftracker-operator): lint, render with default and
//! production values, install into the local control plane, and run the real operator
//! binary as the chart's ServiceAccount (a TokenRequest token, not admin) through a full
//! stack reconcile and a full analysis: the proof that the chart's RBAC is enough.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use golftracker_crds::analysis::{Phase, SwingAnalysis};
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::operator_process::{LEASE, OperatorProcess, free_port};
use golftracker_e2e::{
    Harness, NAMESPACE, STACK, install_vso_crds, operator_binary, phase,
    service_account_kubeconfig, service_account_kubeconfig_in, start_cluster,
    start_cluster_with_vault, synthetic_clip,
};
use golftracker_local_cluster::LocalClusterBuilder;
use golftracker_local_cluster::kube_apiserver::{KubeEndpoint, client_from_kubeconfig};
use golftracker_operator::stack::vso;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

const RELEASE: &str = "golftracker-operator";
const RELEASE_NAMESPACE: &str = "golftracker-system";
/// `<release>-<chart>`, shortened to the release name as that already holds the chart name.
const FULLNAME: &str = "golftracker-operator";
const POD_NAME: &str = "golftracker-operator-rbac-proof";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/golftracker-operator")
}

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml")
}

/// helm, built by `local-cluster/build-servers.sh` like the servers; its state kept
/// out of the user's home.
fn helm(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let binaries = golftracker_local_cluster::binaries::ensure_go_servers(&["helm"])?;
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    Ok(Command::new(&binaries["helm"])
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()?)
}

fn helm_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = helm(args)?;
    ensure!(
        out.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm template` output as objects; `extra` are more helm arguments (`-f`, `--set`).
fn render(extra: &[&str]) -> anyhow::Result<Vec<Value>> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        RELEASE_NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&helm_ok(&args)?)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn production_values() -> String {
    chart_dir()
        .join("values-production.yaml")
        .to_string_lossy()
        .into_owned()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn operator_container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// Every (apiGroup, resource, verb) a role grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

fn grant(group: &str, resource: &str, verbs: &[&str]) -> Vec<(String, String, String)> {
    verbs
        .iter()
        .map(|v| (group.to_owned(), resource.to_owned(), (*v).to_owned()))
        .collect()
}

/// What the operator calls, and nothing else (the chart README's RBAC table).
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    (
        "golftracker.io",
        "swinganalyses",
        &["list", "watch", "patch"],
    ),
    (
        "golftracker.io",
        "golftrackerstacks",
        &["list", "watch", "patch"],
    ),
    ("golftracker.io", "swinganalyses/status", &["patch"]),
    ("golftracker.io", "golftrackerstacks/status", &["patch"]),
    ("golftracker.io", "swinganalyses/finalizers", &["update"]),
    (
        "golftracker.io",
        "golftrackerstacks/finalizers",
        &["update"],
    ),
    (
        "batch",
        "jobs",
        &["get", "list", "watch", "create", "patch"],
    ),
    ("", "secrets", &["get", "create", "patch"]),
    ("", "serviceaccounts", &["create", "patch"]),
    ("rbac.authorization.k8s.io", "roles", &["create", "patch"]),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["create", "patch"],
    ),
    ("networking.k8s.io", "networkpolicies", &["create", "patch"]),
    (
        "secrets.hashicorp.com",
        "vaultconnections",
        &["create", "patch"],
    ),
    ("secrets.hashicorp.com", "vaultauths", &["create", "patch"]),
    (
        "secrets.hashicorp.com",
        "vaultstaticsecrets",
        &["create", "patch"],
    ),
    (
        "secrets.hashicorp.com",
        "vaultdynamicsecrets",
        &["create", "patch"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
];

fn operator_grants() -> BTreeSet<(String, String, String)> {
    OPERATOR_RULES
        .iter()
        .flat_map(|(group, resource, verbs)| grant(group, resource, verbs))
        .collect()
}

/// The generated CRDs by name.
fn generated_crds() -> anyhow::Result<Vec<(String, Value)>> {
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(crds_dir())? {
        let path = entry?.path();
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
        crds.push((crd["metadata"]["name"].as_str().unwrap().to_owned(), crd));
    }
    crds.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(crds)
}

#[test]
fn chart_ships_the_generated_crds_unchanged() -> anyhow::Result<()> {
    let names = |dir: PathBuf| -> anyhow::Result<BTreeSet<String>> {
        Ok(std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?)
    };
    let chart_crds = chart_dir().join("files/crds");
    let generated = names(crds_dir())?;
    assert_eq!(names(chart_crds.clone())?, generated, "CRD files differ");
    for name in &generated {
        assert_eq!(
            std::fs::read_to_string(chart_crds.join(name))?,
            std::fs::read_to_string(crds_dir().join(name))?,
            "charts/golftracker-operator/files/crds/{name} differs from crds/yaml/{name}: copy it over"
        );
    }
    Ok(())
}

#[test]
fn lint_passes_with_default_and_production_values() -> anyhow::Result<()> {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    helm_ok(&["lint", "--strict", chart])?;
    helm_ok(&["lint", "--strict", chart, "-f", &production_values()])?;
    Ok(())
}

#[test]
fn default_values_render_a_restricted_leader_elected_operator() -> anyhow::Result<()> {
    let objects = render(&[])?;

    let deployment = find(&objects, "Deployment", FULLNAME);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = operator_container(&objects);
    assert_eq!(container["args"], serde_json::json!(["run"]));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        env_value(container, "LEADER_ELECTION").unwrap()["value"],
        "true"
    );
    assert_eq!(
        env_value(container, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(
        env_value(container, "VAULT_SA_TOKEN_PATH").is_none(),
        "default: Vault login with the pod's own token"
    );
    assert!(
        env_value(container, "WATCH_NAMESPACE").is_none(),
        "default watches all namespaces"
    );

    // Least privilege, cluster-wide: exactly the operator's calls; the Lease only in its namespace.
    let role = find(&objects, "ClusterRole", FULLNAME);
    assert_eq!(grants(role), operator_grants());
    let binding = find(&objects, "ClusterRoleBinding", FULLNAME);
    assert_eq!(binding["subjects"][0]["name"], FULLNAME);
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NAMESPACE);
    let lease_role = find(&objects, "Role", &format!("{FULLNAME}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], RELEASE_NAMESPACE);
    let lease_rules = lease_role["rules"].as_array().unwrap();
    assert_eq!(lease_rules[0]["verbs"], serde_json::json!(["create"]));
    assert_eq!(lease_rules[1]["resourceNames"], serde_json::json!([LEASE]));
    assert_eq!(lease_rules[1]["verbs"], serde_json::json!(["get", "patch"]));

    // The ready user roles.
    assert_eq!(
        grants(find(&objects, "ClusterRole", "golftracker-submitter")),
        grant(
            "golftracker.io",
            "swinganalyses",
            &["create", "get", "list", "watch"]
        )
        .into_iter()
        .collect()
    );
    let viewer = grants(find(&objects, "ClusterRole", "golftracker-viewer"));
    assert!(
        viewer
            .iter()
            .all(|(_, _, verb)| ["get", "list", "watch"].contains(&verb.as_str()))
    );
    assert_eq!(viewer.len(), 6);

    let service = find(&objects, "Service", &format!("{FULLNAME}-metrics"));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert!(
        !kinds(&objects)
            .iter()
            .any(|k| k.starts_with("ServiceMonitor/"))
    );

    // CRDs: kept on uninstall, otherwise exactly the generated ones.
    for (name, generated) in generated_crds()? {
        let mut rendered = find(&objects, "CustomResourceDefinition", &name).clone();
        let metadata = rendered["metadata"].as_object_mut().unwrap();
        let annotations = metadata.remove("annotations").unwrap_or_default();
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
        let labels = metadata.remove("labels").unwrap_or_default();
        assert_eq!(labels["app.kubernetes.io/name"], FULLNAME);
        assert!(
            rendered == generated,
            "{name} renders differently from crds/yaml"
        );
    }
    Ok(())
}

#[test]
fn production_values_render_namespaced_rbac_irsa_and_a_service_monitor() -> anyhow::Result<()> {
    let objects = render(&["-f", &production_values()])?;
    let names = kinds(&objects);

    let account = find(&objects, "ServiceAccount", FULLNAME);
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    // watchNamespace: a Role there instead of a ClusterRole; nothing cluster-wide but the user roles.
    let role = find(&objects, "Role", FULLNAME);
    assert_eq!(role["metadata"]["namespace"], "golftracker");
    assert_eq!(grants(role), operator_grants());
    let binding = find(&objects, "RoleBinding", FULLNAME);
    assert_eq!(binding["metadata"]["namespace"], "golftracker");
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NAMESPACE);
    let cluster_wide: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("ClusterRole"))
        .collect();
    assert_eq!(
        cluster_wide,
        [
            "ClusterRole/golftracker-submitter",
            "ClusterRole/golftracker-viewer"
        ]
    );
    let container = operator_container(&objects);
    assert_eq!(
        env_value(container, "WATCH_NAMESPACE").unwrap()["value"],
        "golftracker"
    );
    assert!(container["image"].as_str().unwrap().contains(".dkr.ecr."));
    // Vault login with a projected token of Vault's audience, where the operator reads it.
    let token_path = env_value(container, "VAULT_SA_TOKEN_PATH").unwrap()["value"]
        .as_str()
        .unwrap();
    let pod = &find(&objects, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "vault-token")
        .unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "vault-token")
        .unwrap();
    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "vault");
    assert_eq!(
        token_path,
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            source["path"].as_str().unwrap()
        )
    );
    let monitor = find(&objects, "ServiceMonitor", FULLNAME);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    Ok(())
}

#[test]
fn unsafe_or_mistyped_values_are_rejected() -> anyhow::Result<()> {
    let chart = chart_dir();
    for (set, why) in [
        (
            "securityContext.allowPrivilegeEscalation=true",
            "allowPrivilegeEscalation",
        ),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("replicas=3", "replicas"),
        ("leaderElection.enabled=false", "leaderElection"),
    ] {
        let out = helm(&["template", RELEASE, chart.to_str().unwrap(), "--set", set])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(why), "--set {set}: {stderr}");
    }
    Ok(())
}

/// `helm install` into the cluster, the operator's rules in a Role of [`NAMESPACE`]; returns
/// the installed manifest after checking every object of it is in the cluster (the
/// Deployment gets no pods here: there is no kubelet).
fn install_chart(kube: &KubeEndpoint) -> anyhow::Result<Vec<Value>> {
    let chart = chart_dir();
    let kubeconfig = kube.kubeconfig.to_str().unwrap();
    helm_ok(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        &format!("watchNamespace={NAMESPACE}"),
    ])?;
    let manifest: Vec<Value> = serde_saphyr::from_multiple(&helm_ok(&[
        "get",
        "manifest",
        RELEASE,
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        RELEASE_NAMESPACE,
    ])?)?;
    let manifest: Vec<Value> = manifest.into_iter().filter(|d| !d.is_null()).collect();
    let expected = [
        "CustomResourceDefinition/golftrackerstacks.golftracker.io",
        "CustomResourceDefinition/swinganalyses.golftracker.io",
        "ServiceAccount/golftracker-operator",
        "Role/golftracker-operator",
        "RoleBinding/golftracker-operator",
        "Role/golftracker-operator-leader-election",
        "RoleBinding/golftracker-operator-leader-election",
        "ClusterRole/golftracker-submitter",
        "ClusterRole/golftracker-viewer",
        "Service/golftracker-operator-metrics",
        "Deployment/golftracker-operator",
        "PodDisruptionBudget/golftracker-operator",
    ];
    assert_eq!(
        kinds(&manifest),
        expected.iter().map(|s| s.to_string()).collect()
    );
    let kubectl =
        golftracker_local_cluster::binaries::ensure_go_servers(&["kubectl"])?["kubectl"].clone();
    for object in &manifest {
        let (kind, name) = (
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
        );
        let namespace = object["metadata"]["namespace"].as_str();
        let out = Command::new(&kubectl)
            .args(["--kubeconfig", kubeconfig, "get", kind, name])
            .args(
                namespace
                    .map(|n| vec!["--namespace", n])
                    .unwrap_or_default(),
            )
            .output()?;
        assert!(
            out.status.success(),
            "{kind}/{name} not in the cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(manifest)
}

/// The operator binary with the installed Deployment's own arguments and environment
/// (the pod's fields filled in) and a TokenRequest token of the chart's ServiceAccount,
/// labelling Jobs for the local job runner; returns it, ready, and the path of its log.
async fn run_as_chart_account(
    harness: &Harness,
    manifest: &[Value],
) -> anyhow::Result<(OperatorProcess, PathBuf)> {
    let container = operator_container(manifest);
    let kubeconfig =
        service_account_kubeconfig_in(&harness.cluster, RELEASE_NAMESPACE, FULLNAME).await?;
    let work = harness.cluster.work_dir().join("rbac-proof");
    std::fs::create_dir_all(&work)?;
    let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let log_path = work.join("operator.log");
    let mut command = Command::new(operator_binary()?);
    command.args(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => POD_NAME.to_owned(),
            Some("metadata.namespace") => RELEASE_NAMESPACE.to_owned(),
            Some(other) => bail!("env {name} needs the pod field {other}"),
            None => var["value"].as_str().unwrap().to_owned(),
        };
        command.env(name, value);
    }
    command
        .env("KUBECONFIG", &kubeconfig)
        .env("METRICS_ADDR", metrics_addr.to_string())
        .env("LOCAL_JOB_RUNNER", "true");
    let operator = OperatorProcess::start(command, &log_path, POD_NAME, metrics_addr)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while operator.get("/readyz").await.map(|r| r.0).unwrap_or(0) != 200 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "operator never ready: {}",
            std::fs::read_to_string(&log_path)?
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((operator, log_path))
}

/// No call was refused: every refusal (a reconcile error, an Event that could not be
/// published) is logged with the API server's "forbidden", and none is. Other API errors
/// (a conflict under load, a timeout) are retried and say nothing about RBAC.
async fn assert_nothing_refused(operator: &OperatorProcess, log_path: &Path) -> anyhow::Result<()> {
    let log = std::fs::read_to_string(log_path)?;
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the operator was refused calls:\n{}",
        refused.join("\n")
    );
    let metrics = operator.metrics().await?;
    assert!(
        metrics.contains("golftracker_operator_reconciles_total"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_chart_runs_the_operator_as_its_service_account() -> anyhow::Result<()> {
    let cluster = start_cluster().await?;
    let admin = cluster.kube_client()?;
    let manifest = install_chart(cluster.kube()?)?;
    let harness = Harness::without_operator(cluster, 1).await?;
    let (operator, log_path) = run_as_chart_account(&harness, &manifest).await?;

    // Full stack reconcile (bucket, schema, the worker's account, status, finalizer).
    golftracker_e2e::wait_stack_ready(&harness.client, Duration::from_secs(90)).await?;
    let lease = Api::<Lease>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get(LEASE)
        .await?;
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(POD_NAME)
    );

    // Full analysis: Job, result, status, Events; then erase on delete (the finalizer).
    let clip = synthetic_clip(log_path.parent().unwrap(), 7)?;
    harness.submit("rbac-proof", &clip, 0, "Erase").await?;
    let done = harness
        .wait_finished(&["rbac-proof".to_owned()], Duration::from_secs(300))
        .await?;
    assert_eq!(phase(&done[0]), Phase::Succeeded, "{:?}", done[0].status);
    // The Event of the last phase change follows the status write; wait for it.
    let events = Api::<Event>::namespaced(admin.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !events
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|e| {
            e.reporting_controller.as_deref() == Some("golftracker-operator")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("rbac-proof")
        })
    {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the operator published no Event for the analysis"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    harness
        .analyses()
        .delete("rbac-proof", &DeleteParams::default())
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while harness.analyses().get_opt("rbac-proof").await?.is_some() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "erase finalizer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_nothing_refused(&operator, &log_path).await
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_chart_lets_the_operator_wire_vault_and_the_vault_secrets_operator()
-> anyhow::Result<()> {
    let cluster = start_cluster_with_vault().await?;
    let manifest = install_chart(cluster.kube()?)?;
    let harness = Harness::without_operator(cluster, 1).await?;
    let vault = harness.cluster.vault()?;
    vault
        .enable_kubernetes_auth(harness.cluster.kube()?)
        .await?;

    // Vault provisioning with a bootstrap token from a Secret; the operator delivers the
    // worker's KV Secret itself.
    let bootstrap: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "vault-bootstrap", "namespace": NAMESPACE},
        "stringData": {"token": vault.root_token},
    }))?;
    Api::<Secret>::namespaced(harness.client.clone(), NAMESPACE)
        .create(&PostParams::default(), &bootstrap)
        .await?;
    let stacks: Api<GolfTrackerStack> = Api::namespaced(harness.client.clone(), NAMESPACE);
    let vault_spec = serde_json::json!({"address": vault.address,
        "auth": {"tokenSecretRef": {"name": "vault-bootstrap", "key": "token"}}});
    stacks
        .patch(
            STACK,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"vault": vault_spec}})),
        )
        .await?;
    let (operator, log_path) = run_as_chart_account(&harness, &manifest).await?;
    let stack = golftracker_e2e::wait_stack_ready(&harness.client, Duration::from_secs(90)).await?;
    let kv_secret = format!("{STACK}-worker-kv");
    Api::<Secret>::namespaced(harness.client.clone(), NAMESPACE)
        .get(&kv_secret)
        .await
        .with_context(|| format!("KV Secret {kv_secret} not delivered: {:?}", stack.status))?;

    // Delivery by the Vault Secrets Operator: the operator applies VSO's objects.
    install_vso_crds(&harness.client).await?;
    stacks
        .patch(
            STACK,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!(
                {"spec": {"vault": {"secretDelivery": "VaultSecretsOperator"}}}
            )),
        )
        .await?;
    for kind in ["VaultConnection", "VaultAuth", "VaultStaticSecret"] {
        let objects: Api<DynamicObject> =
            Api::namespaced_with(harness.client.clone(), NAMESPACE, &vso::api_resource(kind));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while objects.list(&ListParams::default()).await?.items.is_empty() {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no {kind} applied: {}",
                std::fs::read_to_string(&log_path)?
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    golftracker_e2e::wait_stack_ready(&harness.client, Duration::from_secs(60)).await?;
    assert_nothing_refused(&operator, &log_path).await
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

#[tokio::test(flavor = "multi_thread")]
async fn user_roles_let_a_backend_submit_and_a_dashboard_read_and_uninstall_keeps_the_crds()
-> anyhow::Result<()> {
    golftracker_local_cluster::install_crypto_provider();
    let cluster = LocalClusterBuilder::none().with_kube().start().await?;
    install_chart(cluster.kube()?)?;
    let admin = cluster.kube_client()?;
    for (account, role) in [
        ("backend", "golftracker-submitter"),
        ("dashboard", "golftracker-viewer"),
    ] {
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": account, "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
        }))?;
        Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
            .create(&PostParams::default(), &binding)
            .await?;
    }
    let as_account = |account: &'static str| {
        let cluster = &cluster;
        async move {
            let kubeconfig = service_account_kubeconfig(cluster, account).await?;
            anyhow::Ok(client_from_kubeconfig(&kubeconfig).await?)
        }
    };
    let backend = as_account("backend").await?;
    let dashboard = as_account("dashboard").await?;
    let analysis: SwingAnalysis = serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
        "metadata": {"name": "submitted", "namespace": NAMESPACE},
        "spec": {"stackRef": {"name": "any"}, "video": "videos/a.mp4", "golfer": {"userId": "u"}},
    }))?;

    // The backend submits and follows analyses (once the CRD is served).
    let analyses: Api<SwingAnalysis> = Api::namespaced(backend.clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = analyses.create(&PostParams::default(), &analysis).await {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "backend cannot submit: {e}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    analyses.get("submitted").await?;
    analyses.list(&ListParams::default()).await?;
    // ... and nothing else: no edits, no deletes, no stacks, no Secrets.
    assert!(is_forbidden(
        analyses.delete("submitted", &DeleteParams::default()).await
    ));
    assert!(is_forbidden(
        analyses
            .patch(
                "submitted",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"priority": 9}})),
            )
            .await
    ));
    assert!(is_forbidden(
        Api::<GolfTrackerStack>::namespaced(backend.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(backend, NAMESPACE)
            .list(&ListParams::default())
            .await
    ));

    // The dashboard reads analyses and stacks, and writes nothing.
    let read: Api<SwingAnalysis> = Api::namespaced(dashboard.clone(), NAMESPACE);
    assert_eq!(read.list(&ListParams::default()).await?.items.len(), 1);
    Api::<GolfTrackerStack>::namespaced(dashboard.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await?;
    let mut another = analysis.clone();
    another.metadata.name = Some("from-dashboard".into());
    assert!(is_forbidden(
        read.create(&PostParams::default(), &another).await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(dashboard, NAMESPACE)
            .list(&ListParams::default())
            .await
    ));

    // `helm uninstall` keeps the CRDs (resource-policy keep) and so every analysis.
    helm_ok(&[
        "uninstall",
        RELEASE,
        "--kubeconfig",
        cluster.kube()?.kubeconfig.to_str().unwrap(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
    ])?;
    Api::<SwingAnalysis>::namespaced(admin.clone(), NAMESPACE)
        .get("submitted")
        .await?;
    assert!(
        Api::<ClusterRole>::all(admin)
            .get_opt("golftracker-submitter")
            .await?
            .is_none(),
        "the release's other objects go"
    );
    Ok(())
}
