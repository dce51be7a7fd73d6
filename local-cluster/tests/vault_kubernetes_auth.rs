//! A ServiceAccount token from TokenRequest logs in to Vault's Kubernetes auth
//! method, which verifies it against the local kube-apiserver (TokenReview).

use golftracker_local_cluster::LocalCluster;
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
};
use kube::{Api, api::PostParams};
use vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest;

const NAMESPACE: &str = "golf";
const MOUNT: &str = golftracker_local_cluster::vault::KUBERNETES_AUTH_MOUNT;

#[tokio::test]
async fn service_account_token_logs_in_to_vault() {
    let cluster = LocalCluster::builder()
        .without_s3()
        .without_postgres()
        .start()
        .await
        .expect("kube-apiserver and Vault start");
    let kube = cluster.kube_client().unwrap();
    let vault = cluster.vault().unwrap().client().unwrap();

    let namespaces: Api<Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": NAMESPACE }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(kube.clone(), NAMESPACE);
    for name in ["worker", "intruder"] {
        accounts
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": { "name": name }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    // Vault reviews a token with the token itself (no reviewer JWT configured),
    // so the account may create TokenReviews, as with Vault on a real cluster.
    let bindings: Api<ClusterRoleBinding> = Api::all(kube.clone());
    bindings
        .create(
            &PostParams::default(),
            &ClusterRoleBinding {
                metadata: kube::api::ObjectMeta {
                    name: Some("golf-worker-auth-delegator".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: "system:auth-delegator".into(),
                },
                subjects: Some(
                    ["worker", "intruder"]
                        .map(|name| Subject {
                            kind: "ServiceAccount".into(),
                            name: name.into(),
                            namespace: Some(NAMESPACE.into()),
                            ..Default::default()
                        })
                        .to_vec(),
                ),
            },
        )
        .await
        .unwrap();

    cluster
        .vault()
        .unwrap()
        .enable_kubernetes_auth(cluster.kube().unwrap())
        .await
        .expect("enable and configure kubernetes auth");
    vaultrs::auth::kubernetes::role::create(
        &vault,
        MOUNT,
        "worker",
        Some(
            CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec!["worker".into()])
                .bound_service_account_namespaces(vec![NAMESPACE.into()])
                .token_policies(vec!["default".into()]),
        ),
    )
    .await
    .expect("create role");

    let token = |account: &'static str| {
        let accounts = accounts.clone();
        async move {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            accounts
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .expect("TokenRequest")
                .status
                .and_then(|status| status.token)
                .expect("token in status")
        }
    };

    let login = vaultrs::auth::kubernetes::login(&vault, MOUNT, "worker", &token("worker").await)
        .await
        .expect("the worker's token logs in");
    assert!(!login.client_token.is_empty());
    assert_eq!(
        login
            .metadata
            .as_ref()
            .and_then(|m| m.get("service_account_name"))
            .map(String::as_str),
        Some("worker")
    );

    let refused =
        vaultrs::auth::kubernetes::login(&vault, MOUNT, "worker", &token("intruder").await).await;
    assert!(
        refused.is_err(),
        "another account's token is refused by the role"
    );
    let forged = vaultrs::auth::kubernetes::login(&vault, MOUNT, "worker", "e30.e30.c2ln").await;
    assert!(
        forged.is_err(),
        "a token the API server did not sign is refused"
    );
}
