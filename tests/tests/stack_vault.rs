//! The stack controller's Vault part on a real Vault (dev server), kube-apiserver and
//! PostgreSQL: the operator logs in with its own ServiceAccount token, provisions the
//! worker's policy, Kubernetes auth role, KV secret and dynamic database credentials,
//! delivers them as Secrets, and re-issues them when they are revoked.
//!
//! The test plays the Vault administrator: it enables and configures the Kubernetes
//! auth method and gives the operator its role with `vault-operator-policy.hcl`. No
//! token reviewer JWT is configured, so Vault reviews each token with the token itself:
//! the accounts that log in may create TokenReviews (`system:auth-delegator`).

use std::time::Duration;

use golftracker_crds::analysis::Phase;
use golftracker_crds::stack::GolfTrackerStack;
use golftracker_e2e::{
    Harness, NAMESPACE, STACK, install_crds, install_vso_crds, operator_vault_token_path, phase,
    service_account_token, start_cluster_with_vault, synthetic_clip, temp_dir,
};
use golftracker_operator::stack::delivery::LEASE_ID_ANNOTATION;
use golftracker_operator::stack::vault::{Leased, VaultCall};
use golftracker_operator::stack::vso;
use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use sqlx::postgres::PgConnectOptions;
use vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};

const OPERATOR_ACCOUNT: &str = "golftracker-operator";
const WORKER_ACCOUNT: &str = "e2e-worker";
const WORKER_ROLE: &str = "golftracker-default-e2e-worker";
const DATABASE_ROLE: &str = "golftracker-e2e";
const DB_SECRET: &str = "e2e-worker-db";
const KV_SECRET: &str = "e2e-worker-kv";

async fn token(h: &Harness, account: &str) -> String {
    service_account_token(&h.cluster, NAMESPACE, account)
        .await
        .unwrap()
}

/// What the Vault administrator sets up before the operator can work: the Kubernetes
/// auth method and the operator's role and policy. Run again after a dev Vault restart.
async fn configure_vault_as_admin(h: &Harness, root: &VaultClient) {
    h.cluster
        .vault()
        .unwrap()
        .enable_kubernetes_auth(h.cluster.kube().unwrap())
        .await
        .expect("enable and configure kubernetes auth");
    vaultrs::sys::policy::set(
        root,
        OPERATOR_ACCOUNT,
        include_str!("../../operator/src/stack/vault-operator-policy.hcl"),
    )
    .await
    .expect("operator policy");
    vaultrs::auth::kubernetes::role::create(
        root,
        "kubernetes",
        OPERATOR_ACCOUNT,
        Some(
            CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec![OPERATOR_ACCOUNT.into()])
                .bound_service_account_namespaces(vec![NAMESPACE.into()])
                .token_policies(vec![OPERATOR_ACCOUNT.into()]),
        ),
    )
    .await
    .expect("operator role");
}

/// TokenReview rights for the operator's account and the worker's (which the operator
/// creates later), and the operator's token where the operator reads it.
async fn create_accounts(h: &Harness) {
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "golftracker-vault-login"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": ([OPERATOR_ACCOUNT, WORKER_ACCOUNT].map(|name| serde_json::json!(
            {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}))),
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(h.client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    std::fs::write(
        operator_vault_token_path(&h.cluster),
        token(h, OPERATOR_ACCOUNT).await,
    )
    .unwrap();
}

/// A harness on servers with Vault; the stack is created but no operator runs yet.
async fn harness_with_vault() -> (Harness, VaultClient) {
    let cluster = start_cluster_with_vault().await.unwrap();
    install_crds(&cluster.kube_client().unwrap()).await.unwrap();
    let h = Harness::without_operator(cluster, 2).await.unwrap();
    let root = h.cluster.vault().unwrap().client().unwrap();
    configure_vault_as_admin(&h, &root).await;
    create_accounts(&h).await;
    (h, root)
}

async fn patch_stack(h: &Harness, spec: serde_json::Value) {
    Api::<GolfTrackerStack>::namespaced(h.client.clone(), NAMESPACE)
        .patch(
            STACK,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// Vault (operator logged in with Kubernetes auth, operator delivery) and database
/// credentials from Vault's database engine with these lease times.
async fn wire_vault_database_credentials(h: &Harness, ttl: &str, max_ttl: &str) {
    let vault = h.cluster.vault().unwrap().address.clone();
    patch_stack(
        h,
        serde_json::json!({
            "database": {"credentials": {"secretRef": null, "vault": {
                "role": DATABASE_ROLE, "ttl": ttl, "maxTtl": max_ttl, "adminSecretRef": "golftracker-db"}}},
            "vault": {"address": vault, "auth": {"mount": "kubernetes", "role": OPERATOR_ACCOUNT},
                      "secretDelivery": "Operator"},
        }),
    )
    .await;
}

async fn secret_values(h: &Harness, name: &str) -> Option<(String, String)> {
    let secret = Api::<Secret>::namespaced(h.client.clone(), NAMESPACE)
        .get_opt(name)
        .await
        .unwrap()?;
    let data = secret.data.unwrap_or_default();
    let value = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    Some((value("username")?, value("password")?))
}

/// Connects to the results database as `username`.
async fn connect(h: &Harness, username: &str, password: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    let pg = h.cluster.postgres().unwrap();
    let options = PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .database(&pg.database)
        .username(username)
        .password(password)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    sqlx::pool::PoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Reads and writes the results schema as these credentials.
async fn assert_can_use_results_schema(h: &Harness, username: &str, password: &str) {
    let pool = connect(h, username, password)
        .await
        .expect("Vault-issued credentials connect");
    let uid = format!("probe-{username}");
    sqlx::query(
        "INSERT INTO failures (analysis_uid, namespace, name, user_id, code, message) \
         VALUES ($1, 'default', 'probe', 'u', 'Probe', 'written with Vault credentials')",
    )
    .bind(&uid)
    .execute(&pool)
    .await
    .expect("insert into the results schema");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM failures WHERE analysis_uid = $1")
        .bind(&uid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    pool.close().await;
}

async fn wait_for<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    for _ in 0..240 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_wired_stack_serves_the_worker_rotates_credentials_and_emits_vso_objects() {
    let (mut h, root) = harness_with_vault().await;
    let vault = h.cluster.vault().unwrap().address.clone();
    wire_vault_database_credentials(&h, "1h", "2h").await;
    h.start_operator();
    let stack = golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(90))
        .await
        .unwrap();
    let status = stack.status.unwrap();
    assert_eq!(status.worker_secret_name.as_deref(), Some(DB_SECRET));

    // The worker's identity and reach, owned by the stack.
    let policy: NetworkPolicy = Api::namespaced(h.client.clone(), NAMESPACE)
        .get(WORKER_ACCOUNT)
        .await
        .unwrap();
    let egress = policy.spec.unwrap().egress.unwrap();
    let vault_port = vault.rsplit(':').next().unwrap().parse::<i32>().unwrap();
    assert!(
        egress
            .iter()
            .any(|rule| rule.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(vault_port))),
        "{egress:?}"
    );
    let role: Role = Api::namespaced(h.client.clone(), NAMESPACE)
        .get(WORKER_ACCOUNT)
        .await
        .unwrap();
    assert_eq!(role.rules.unwrap_or_default(), vec![]);
    let account: ServiceAccount = Api::namespaced(h.client.clone(), NAMESPACE)
        .get(WORKER_ACCOUNT)
        .await
        .unwrap();
    assert_eq!(account.metadata.owner_references.unwrap()[0].name, STACK);

    // What the operator provisioned in Vault.
    let policy = vaultrs::sys::policy::read(&root, WORKER_ROLE)
        .await
        .unwrap();
    assert!(
        policy.rules.contains("secret/data/golftracker/default/e2e"),
        "{}",
        policy.rules
    );
    let role = vaultrs::auth::kubernetes::role::read(&root, "kubernetes", WORKER_ROLE)
        .await
        .unwrap();
    assert_eq!(role.bound_service_account_names, vec![WORKER_ACCOUNT]);
    assert_eq!(role.bound_service_account_namespaces, vec![NAMESPACE]);

    // The application's secret, set in Vault, is never overwritten by the operator and
    // reaches the delivered KV Secret.
    vaultrs::kv2::set(
        &root,
        "secret",
        "golftracker/default/e2e",
        &serde_json::json!({"apiKey": "k-123"}),
    )
    .await
    .unwrap();
    let kv: Api<Secret> = Api::namespaced(h.client.clone(), NAMESPACE);
    wait_for("the KV value in its Secret", || async {
        let secret = kv.get_opt(KV_SECRET).await.unwrap()?;
        (secret.data?.get("apiKey")?.0 == b"k-123").then_some(())
    })
    .await;

    // The worker's own account logs in through its role and reads its KV secret and
    // database credentials, which work on the results schema.
    let worker_token = token(&h, WORKER_ACCOUNT).await;
    let mut worker = VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&vault)
            .token("")
            .build()
            .unwrap(),
    )
    .unwrap();
    let login = vaultrs::auth::kubernetes::login(&worker, "kubernetes", WORKER_ROLE, &worker_token)
        .await
        .expect("the worker's token logs in");
    worker.set_token(&login.client_token);
    let value: serde_json::Value = vaultrs::kv2::read(&worker, "secret", "golftracker/default/e2e")
        .await
        .expect("the worker reads its KV secret");
    assert_eq!(value["apiKey"], "k-123");
    assert!(
        vaultrs::kv2::read::<serde_json::Value>(&worker, "secret", "golftracker/default/other")
            .await
            .is_err(),
        "the worker's policy covers its own path only"
    );
    let issued = vaultrs::database::role::creds(&worker, "database", DATABASE_ROLE)
        .await
        .expect("the worker issues its database credentials");
    assert_can_use_results_schema(&h, &issued.username, &issued.password).await;

    // The operator's delivered credentials work too.
    let (user, password) = secret_values(&h, DB_SECRET).await.expect("delivered");
    assert_can_use_results_schema(&h, &user, &password).await;

    // Rotation: every credential of the role revoked → new ones are delivered and work.
    vaultrs::api::exec_with_empty(
        &root,
        VaultCall::<()>::put(
            format!("sys/leases/revoke-prefix/database/creds/{DATABASE_ROLE}"),
            serde_json::json!({}),
        ),
    )
    .await
    .expect("revoke the role's leases");
    assert!(
        connect(&h, &user, &password).await.is_err(),
        "revoked credentials still connect"
    );
    let (rotated_user, rotated_password) = wait_for("re-issued credentials", || async {
        secret_values(&h, DB_SECRET)
            .await
            .filter(|(u, _)| *u != user)
    })
    .await;
    assert_can_use_results_schema(&h, &rotated_user, &rotated_password).await;

    // The stack stays Ready (the operator's own pool follows the rotation), and the
    // next analysis Job runs with the rotated credentials and records its result.
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(30))
        .await
        .unwrap();
    let clip = synthetic_clip(&temp_dir("stack-vault"), 7).unwrap();
    h.submit("after-rotation", &clip, 0, "Retain")
        .await
        .unwrap();
    let finished = h
        .wait_finished(&["after-rotation".to_string()], Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(
        phase(&finished[0]),
        Phase::Succeeded,
        "{:?}",
        finished[0].status
    );
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM analyses WHERE name = 'after-rotation'")
            .fetch_one(&h.db)
            .await
            .unwrap();
    assert_eq!(recorded, 1);

    // No credential reached the stack's status or its Events.
    let stack = Api::<GolfTrackerStack>::namespaced(h.client.clone(), NAMESPACE)
        .get(STACK)
        .await
        .unwrap();
    let events = Api::<Event>::namespaced(h.client.clone(), NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap();
    let published = format!(
        "{}{}",
        serde_json::to_string(&stack.status).unwrap(),
        serde_json::to_string(&events.items).unwrap()
    );
    for secret in [&password, &rotated_password, &issued.password] {
        assert!(
            !published.contains(secret.as_str()),
            "a password was published"
        );
    }

    // Delivery by the Vault Secrets Operator: the operator emits VSO's objects, owned
    // by the stack (VSO itself does not run here; its CRDs are installed, schema-less).
    install_vso_crds(&h.client).await.unwrap();
    patch_stack(
        &h,
        serde_json::json!({"vault": {"secretDelivery": "VaultSecretsOperator"}}),
    )
    .await;
    for (kind, name) in [
        ("VaultConnection", "e2e-worker"),
        ("VaultAuth", "e2e-worker"),
        ("VaultStaticSecret", KV_SECRET),
        ("VaultDynamicSecret", DB_SECRET),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(h.client.clone(), NAMESPACE, &vso::api_resource(kind));
        let object = wait_for(kind, || async { api.get_opt(name).await.ok().flatten() }).await;
        assert_eq!(
            object.metadata.owner_references.unwrap()[0].name,
            STACK,
            "{kind}"
        );
    }
    h.kill_operator();
}

async fn condition(h: &Harness, type_: &str) -> Option<(String, String)> {
    let stack = Api::<GolfTrackerStack>::namespaced(h.client.clone(), NAMESPACE)
        .get(STACK)
        .await
        .unwrap();
    let conditions = stack.status?.conditions;
    let found = conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_outage_marks_only_vault_not_ready_and_a_restarted_vault_is_provisioned_again() {
    let (mut h, root) = harness_with_vault().await;
    // Bootstrap login with a token from a Secret; database credentials from a Secret,
    // so the database does not depend on Vault.
    let bootstrap: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "vault-bootstrap"},
        "stringData": {"token": h.cluster.vault().unwrap().root_token},
    }))
    .unwrap();
    Api::<Secret>::namespaced(h.client.clone(), NAMESPACE)
        .create(&PostParams::default(), &bootstrap)
        .await
        .unwrap();
    let vault = h.cluster.vault().unwrap().address.clone();
    patch_stack(
        &h,
        serde_json::json!({"vault": {"address": vault,
            "auth": {"tokenSecretRef": {"name": "vault-bootstrap", "key": "token"}}}}),
    )
    .await;
    h.start_operator();
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(90))
        .await
        .unwrap();

    // Vault database credentials without spec.vault are refused by the API server.
    let refused = Api::<GolfTrackerStack>::namespaced(h.client.clone(), NAMESPACE)
        .patch(
            STACK,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"vault": null, "database": {"credentials":
                {"secretRef": null, "vault": {"role": "r", "adminSecretRef": "golftracker-db"}}}}}),
            ),
        )
        .await
        .expect_err("credentials.vault without spec.vault");
    assert!(
        refused.to_string().contains("needs spec.vault"),
        "{refused}"
    );

    h.cluster.stop_server("vault").unwrap();
    let reason = wait_for("VaultReady False", || async {
        condition(&h, "VaultReady")
            .await
            .filter(|(status, _)| status == "False")
            .map(|(_, reason)| reason)
    })
    .await;
    assert_eq!(reason, "VaultUnreachable");
    for part in ["StorageReady", "DatabaseReady"] {
        let (status, reason) = condition(&h, part).await.unwrap();
        assert_eq!(status, "True", "{part} {reason} while Vault is down");
    }
    assert_eq!(condition(&h, "Ready").await.unwrap().0, "False");

    // A dev Vault comes back empty: once its administrator has set up the Kubernetes
    // auth method again, the operator provisions the stack's policy and role again.
    h.cluster.restart_server("vault").await.unwrap();
    configure_vault_as_admin(&h, &root).await;
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(60))
        .await
        .unwrap();
    vaultrs::sys::policy::read(&root, WORKER_ROLE)
        .await
        .expect("the worker policy is back");
    vaultrs::auth::kubernetes::role::read(&root, "kubernetes", WORKER_ROLE)
        .await
        .expect("the worker role is back");
    h.kill_operator();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_leases_are_renewed_then_replaced_before_they_end() {
    let (mut h, root) = harness_with_vault().await;
    wire_vault_database_credentials(&h, "6s", "15s").await;
    h.start_operator();
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(90))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NAMESPACE);
    let first = secrets.get(DB_SECRET).await.unwrap();
    let lease = first.metadata.annotations.unwrap()[LEASE_ID_ANNOTATION].clone();
    let (user, _) = secret_values(&h, DB_SECRET).await.unwrap();

    // At two thirds of its 6 s the lease is renewed, so the same user stays current.
    wait_for("a renewal of the first lease", || async {
        let lookup: Leased<serde_json::Value> = vaultrs::api::exec_with_no_result(
            &root,
            VaultCall::put(
                "sys/leases/lookup".into(),
                serde_json::json!({ "lease_id": lease }),
            ),
        )
        .await
        .ok()?;
        lookup.data?["last_renewal"].as_str().map(|_| ())
    })
    .await;
    // Near maxTtl renewing no longer helps: new credentials are issued, and they work.
    let (rotated_user, rotated_password) = wait_for("credentials issued at maxTtl", || async {
        secret_values(&h, DB_SECRET)
            .await
            .filter(|(u, _)| *u != user)
    })
    .await;
    assert_can_use_results_schema(&h, &rotated_user, &rotated_password).await;
    h.kill_operator();
}
