//! `VaultSecretsOperator` secret delivery: the operator emits Vault Secrets Operator
//! resources (`secrets.hashicorp.com/v1beta1`) and VSO writes the same Secrets the
//! operator would (`<stack>-worker-db`, `<stack>-worker-kv`), logging in to Vault as
//! the worker's ServiceAccount through the worker's Kubernetes auth role.
//!
//! VSO reads the CA bundle from key `ca.crt` of the Secret `caSecretRef` names.
//! Destinations are created with `overwrite`, so VSO takes over the Secrets the
//! operator wrote in `Operator` mode.
//! Objects of the other delivery mode are not removed when the mode changes; they go
//! with the stack.

use golftracker_crds::stack::{GolfTrackerStack, VaultSpec};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::delivery::kv_secret_name;
use super::vault::VaultNames;
use super::worker_access::owned_meta;
use crate::analysis::FIELD_MANAGER;
use crate::analysis::job::{vault_database_secret, worker_service_account};
use crate::error::Result;

const GROUP: &str = "secrets.hashicorp.com";
const VERSION: &str = "v1beta1";

/// The API resource of a VSO kind (plural: lowercase kind + `s`, as VSO names them).
pub fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, kind),
        &format!("{}s", kind.to_lowercase()),
    )
}

fn object(
    stack: &GolfTrackerStack,
    kind: &str,
    name: String,
    spec: serde_json::Value,
) -> Result<DynamicObject> {
    let mut object = DynamicObject::new(&name, &api_resource(kind));
    object.metadata = owned_meta(stack, name)?;
    object.data = serde_json::json!({ "spec": spec });
    Ok(object)
}

/// VaultConnection, VaultAuth, VaultStaticSecret (KV) and, for dynamic database
/// credentials, VaultDynamicSecret of the stack.
pub fn objects(stack: &GolfTrackerStack, vault: &VaultSpec) -> Result<Vec<DynamicObject>> {
    let names = VaultNames::of(stack, vault);
    let base = format!("{}-worker", stack.name_any());
    let mut connection = serde_json::json!({ "address": vault.address });
    if let Some(ca) = &vault.ca_secret_ref {
        connection["caCertSecretRef"] = ca.name.clone().into();
    }
    let mut objects = vec![
        object(stack, "VaultConnection", base.clone(), connection)?,
        object(
            stack,
            "VaultAuth",
            base.clone(),
            serde_json::json!({
                "vaultConnectionRef": base,
                "method": "kubernetes",
                "mount": vault.auth.mount,
                "kubernetes": {
                    "role": names.worker_role,
                    "serviceAccount": worker_service_account(stack),
                },
            }),
        )?,
        object(
            stack,
            "VaultStaticSecret",
            kv_secret_name(stack),
            serde_json::json!({
                "vaultAuthRef": base,
                "type": "kv-v2",
                "mount": vault.kv.mount,
                "path": names.kv_path,
                "refreshAfter": "60s",
                "destination": {"name": kv_secret_name(stack), "create": true, "overwrite": true},
            }),
        )?,
    ];
    if let Some(credentials) = &stack.spec.database.credentials.vault {
        objects.push(object(
            stack,
            "VaultDynamicSecret",
            vault_database_secret(stack),
            serde_json::json!({
                "vaultAuthRef": base,
                "mount": vault.database_mount,
                "path": format!("creds/{}", credentials.role),
                // Renew at two thirds of the lease, like the operator's own delivery.
                "renewalPercent": 67,
                "destination": {"name": vault_database_secret(stack), "create": true, "overwrite": true},
            }),
        )?);
    }
    Ok(objects)
}

/// Server-side applies the stack's VSO objects.
pub async fn apply(client: &Client, stack: &GolfTrackerStack, vault: &VaultSpec) -> Result<()> {
    let namespace = stack.namespace().unwrap_or_default();
    for object in objects(stack, vault)? {
        let kind = object
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &api_resource(&kind));
        api.patch(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vso_objects() {
        let mut stack: GolfTrackerStack =
            serde_saphyr::from_str(include_str!("../../../examples/production-stack.yaml"))
                .unwrap();
        stack.metadata.namespace = Some("golftracker".into());
        stack.metadata.uid = Some("5e1f0c2a-7777-8888-9999-000011112222".into());
        let vault = stack.spec.vault.clone().unwrap();
        let objects = objects(&stack, &vault).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o.types.as_ref().unwrap().kind.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "VaultConnection",
                "VaultAuth",
                "VaultStaticSecret",
                "VaultDynamicSecret"
            ]
        );
        insta::assert_yaml_snapshot!(objects);
    }
}
