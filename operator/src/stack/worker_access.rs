//! The worker's Kubernetes identity and reach, owned by the stack: its ServiceAccount,
//! a Role/RoleBinding that grant nothing, and a NetworkPolicy that lets worker pods
//! reach DNS, S3, the database and Vault only.
//!
//! The Role is empty on purpose: worker pods run without a ServiceAccount token
//! (`automountServiceAccountToken: false`) and get their credentials from Secrets
//! referenced in the Job, so they never call the Kubernetes API. The empty Role and its
//! binding make that grant explicit for reviewers and audits. The ServiceAccount
//! exists to name the pods' identity, which Vault's Kubernetes auth role is bound to
//! (the Vault Secrets Operator logs in as it).
//!
//! NetworkPolicy limitation: it matches IP addresses, not names. An endpoint given as
//! an IP address gets an `ipBlock` (`/32` or `/128`); one given as a hostname (AWS S3,
//! an RDS endpoint, `vault.vault.svc`) is allowed by port only, to any address.

use std::collections::BTreeMap;

use golftracker_crds::stack::GolfTrackerStack;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::analysis::FIELD_MANAGER;
use crate::analysis::job::{labels, worker_service_account};
use crate::error::{Error, Result};

/// A network endpoint of the stack, as worker pods reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

impl Endpoint {
    /// Host and port of an `http(s)://host[:port][/path]` URL; the scheme's port when none.
    pub fn from_url(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (!host.is_empty()).then(|| Self {
            host: host.to_string(),
            port,
        })
    }

    /// Egress to this endpoint: to its address when it is an IP, else to its port anywhere.
    fn egress_rule(&self) -> NetworkPolicyEgressRule {
        let cidr = match self.host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => Some(format!("{ip}/32")),
            Ok(std::net::IpAddr::V6(ip)) => Some(format!("{ip}/128")),
            Err(_) => None,
        };
        NetworkPolicyEgressRule {
            to: cidr.map(|cidr| {
                vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock { cidr, except: None }),
                    ..Default::default()
                }]
            }),
            ports: Some(vec![tcp(self.port)]),
        }
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    port_of(port, "TCP")
}

fn port_of(port: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.to_string()),
        end_port: None,
    }
}

/// Where worker pods must be able to connect: S3, the database and (when wired) Vault.
pub fn worker_endpoints(stack: &GolfTrackerStack) -> Vec<Endpoint> {
    let spec = &stack.spec;
    let s3 = match &spec.storage.endpoint {
        Some(url) => Endpoint::from_url(url),
        // AWS S3: regional endpoints over HTTPS.
        None => Some(Endpoint {
            host: format!("s3.{}.amazonaws.com", spec.storage.region),
            port: 443,
        }),
    };
    let database = Some(Endpoint {
        host: spec.database.host.clone(),
        port: spec.database.port,
    });
    let vault = spec
        .vault
        .as_ref()
        .and_then(|v| Endpoint::from_url(&v.address));
    [s3, database, vault].into_iter().flatten().collect()
}

/// Metadata of an object the stack owns, in the stack's namespace.
pub(crate) fn owned_meta(stack: &GolfTrackerStack, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: stack.namespace(),
        labels: Some(BTreeMap::from([
            (labels::STACK.to_string(), stack.name_any()),
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        ])),
        owner_references: Some(vec![
            stack
                .controller_owner_ref(&())
                .ok_or(Error::MissingField("metadata.uid"))?,
        ]),
        ..Default::default()
    })
}

/// The worker pods' ServiceAccount; no token is mounted into pods.
pub fn service_account(stack: &GolfTrackerStack) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        metadata: owned_meta(stack, worker_service_account(stack))?,
        automount_service_account_token: Some(false),
        ..Default::default()
    })
}

/// The worker's Role: no rules (see the module docs for why).
pub fn role(stack: &GolfTrackerStack) -> Result<Role> {
    Ok(Role {
        metadata: owned_meta(stack, worker_service_account(stack))?,
        rules: Some(Vec::new()),
    })
}

/// Binds [`role`] to the worker's ServiceAccount.
pub fn role_binding(stack: &GolfTrackerStack) -> Result<RoleBinding> {
    let name = worker_service_account(stack);
    Ok(RoleBinding {
        metadata: owned_meta(stack, name.clone())?,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name,
            namespace: stack.namespace(),
            api_group: None,
        }]),
    })
}

/// Egress of worker pods: DNS (53, UDP and TCP) and the stack's endpoints; no ingress.
pub fn network_policy(stack: &GolfTrackerStack) -> Result<NetworkPolicy> {
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![port_of(53, "UDP"), port_of(53, "TCP")]),
    };
    let egress = std::iter::once(dns)
        .chain(worker_endpoints(stack).iter().map(Endpoint::egress_rule))
        .collect();
    Ok(NetworkPolicy {
        metadata: owned_meta(stack, worker_service_account(stack))?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::STACK.to_string(), stack.name_any()),
                    (
                        "app.kubernetes.io/name".to_string(),
                        "golftracker-worker".to_string(),
                    ),
                ])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: Some(Vec::new()),
            egress: Some(egress),
        }),
    })
}

/// Server-side applies one namespaced object the operator owns (k8s-openapi types
/// carry their own `apiVersion` and `kind`).
pub async fn apply_owned<K>(client: &Client, object: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Applies the worker's ServiceAccount, Role, RoleBinding and NetworkPolicy.
pub async fn apply(client: &Client, stack: &GolfTrackerStack) -> Result<()> {
    apply_owned(client, &service_account(stack)?).await?;
    apply_owned(client, &role(stack)?).await?;
    apply_owned(client, &role_binding(stack)?).await?;
    apply_owned(client, &network_policy(stack)?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(file: &str) -> GolfTrackerStack {
        let mut stack: GolfTrackerStack = serde_saphyr::from_str(file).unwrap();
        stack.metadata.namespace = Some("golftracker".into());
        stack.metadata.uid = Some("5e1f0c2a-7777-8888-9999-000011112222".into());
        stack
    }

    fn production() -> GolfTrackerStack {
        stack(include_str!("../../../examples/production-stack.yaml"))
    }

    #[test]
    fn endpoints_from_urls() {
        let parse = Endpoint::from_url;
        assert_eq!(
            parse("https://vault.vault.svc:8200"),
            Some(Endpoint {
                host: "vault.vault.svc".into(),
                port: 8200
            })
        );
        assert_eq!(parse("http://127.0.0.1/x").unwrap().port, 80);
        assert_eq!(parse("https://s3.example.com").unwrap().port, 443);
        assert_eq!(parse("http://[::1]:9000").unwrap().host, "::1");
        assert_eq!(parse("http://[::1]:9000").unwrap().port, 9000);
        assert_eq!(parse("ftp://x"), None);
        assert_eq!(parse("http://:80"), None);
    }

    #[test]
    fn ip_endpoints_get_an_ip_block_hostnames_only_a_port() {
        let rule = Endpoint {
            host: "10.0.0.7".into(),
            port: 5432,
        }
        .egress_rule();
        assert_eq!(
            rule.to.unwrap()[0].ip_block.as_ref().unwrap().cidr,
            "10.0.0.7/32"
        );
        let rule = Endpoint {
            host: "db.example.com".into(),
            port: 5432,
        }
        .egress_rule();
        assert!(rule.to.is_none());
        assert_eq!(rule.ports.unwrap()[0].port, Some(IntOrString::Int(5432)));
    }

    #[test]
    fn role_grants_nothing() {
        let role = role(&production()).unwrap();
        assert_eq!(role.rules, Some(Vec::new()));
        let account = service_account(&production()).unwrap();
        assert_eq!(account.automount_service_account_token, Some(false));
    }

    #[test]
    fn golden_worker_objects() {
        let stack = production();
        insta::assert_yaml_snapshot!("service_account", service_account(&stack).unwrap());
        insta::assert_yaml_snapshot!("role", role(&stack).unwrap());
        insta::assert_yaml_snapshot!("role_binding", role_binding(&stack).unwrap());
        insta::assert_yaml_snapshot!("network_policy", network_policy(&stack).unwrap());
        let quickstart = stack_quickstart();
        insta::assert_yaml_snapshot!("network_policy_local", network_policy(&quickstart).unwrap());
    }

    fn stack_quickstart() -> GolfTrackerStack {
        stack(include_str!("../../../examples/quickstart-stack.yaml"))
    }
}
