//! `Operator` secret delivery: the operator reads Vault and writes the Secrets worker
//! Jobs use, owned by the stack. When two thirds of the database credentials' lease
//! have passed, the lease is renewed; once `maxTtl` leaves too little to renew, or as
//! soon as Vault no longer holds the lease (revoked: rotation), new credentials are
//! issued. So the next Jobs always start with live credentials; Jobs already running
//! keep theirs until their lease ends.

use std::collections::BTreeMap;
use std::time::Duration;

use golftracker_crds::stack::{GolfTrackerStack, VaultDatabaseCredentials, VaultSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use vaultrs::client::VaultClient;

use super::vault::{self, DatabaseCredentials, Leased, VaultNames};
use super::worker_access::{apply_owned, owned_meta};
use crate::analysis::job::{DB_PASSWORD_KEY, DB_USERNAME_KEY, vault_database_secret};
use crate::error::{Error, Result};

/// Annotations on the delivered database Secret: which lease its values belong to and
/// how long that lease was issued for (neither is a credential).
pub const LEASE_ID_ANNOTATION: &str = "golftracker.io/vault-lease-id";
pub const LEASE_DURATION_ANNOTATION: &str = "golftracker.io/vault-lease-duration";

/// Name of the Secret the stack's KV values are delivered to.
pub fn kv_secret_name(stack: &GolfTrackerStack) -> String {
    format!("{}-worker-kv", stack.name_any())
}

fn secret(
    stack: &GolfTrackerStack,
    name: String,
    data: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret> {
    let mut metadata = owned_meta(stack, name)?;
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Ok(Secret {
        metadata,
        type_: Some("Opaque".to_string()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    })
}

/// The Secret holding issued database credentials (keys `username`, `password`).
pub fn database_secret(
    stack: &GolfTrackerStack,
    issued: &Leased<DatabaseCredentials>,
) -> Result<Secret> {
    let credentials = issued.data.as_ref().ok_or_else(|| Error::Vault {
        operation: "issue database credentials",
        reason: "VaultRefused",
        message: "the response holds no credentials".into(),
    })?;
    secret(
        stack,
        vault_database_secret(stack),
        BTreeMap::from([
            (DB_USERNAME_KEY.to_string(), credentials.username.clone()),
            (DB_PASSWORD_KEY.to_string(), credentials.password.clone()),
        ]),
        BTreeMap::from([
            (LEASE_ID_ANNOTATION.to_string(), issued.lease_id.clone()),
            (
                LEASE_DURATION_ANNOTATION.to_string(),
                issued.lease_duration.to_string(),
            ),
        ]),
    )
}

/// How long credentials with `ttl` seconds left of a `duration`-second lease stay
/// current: until one third of the lease is left.
pub fn time_to_reissue(ttl: u64, duration: u64) -> Option<Duration> {
    let reserve = duration / 3;
    (ttl > reserve).then(|| Duration::from_secs(ttl - reserve))
}

/// Keeps the delivered database credentials live; returns when to look again (`None`:
/// the lease does not expire, the resync interval is enough).
pub async fn deliver_database_credentials(
    client: &Client,
    vault_client: &VaultClient,
    stack: &GolfTrackerStack,
    vault: &VaultSpec,
    credentials: &VaultDatabaseCredentials,
) -> Result<Option<Duration>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &stack.namespace().unwrap_or_default());
    if let Some(existing) = api.get_opt(&vault_database_secret(stack)).await? {
        let annotations = existing.annotations();
        let lease = annotations.get(LEASE_ID_ANNOTATION);
        let duration = annotations
            .get(LEASE_DURATION_ANNOTATION)
            .and_then(|d| d.parse().ok());
        if let (Some(lease), Some(duration)) = (lease, duration)
            && let Some(ttl) = vault::lease_ttl(vault_client, lease).await?
        {
            if let Some(current) = time_to_reissue(ttl, duration) {
                return Ok(Some(current));
            }
            // A third left: extend the same credentials while `maxTtl` allows.
            let renewed = vault::renew_lease(vault_client, lease, duration).await?;
            if let Some(current) = time_to_reissue(renewed, duration) {
                return Ok(Some(current));
            }
        }
    }
    let issued = vault::issue_database_credentials(vault_client, vault, &credentials.role).await?;
    apply_owned(client, &database_secret(stack, &issued)?).await?;
    Ok(time_to_reissue(
        issued.lease_duration,
        issued.lease_duration,
    ))
}

/// Copies the stack's KV secret into its Kubernetes Secret.
pub async fn deliver_kv(
    client: &Client,
    vault_client: &VaultClient,
    stack: &GolfTrackerStack,
    vault: &VaultSpec,
    names: &VaultNames,
) -> Result<()> {
    let data = vault::read_kv(vault_client, vault, names).await?;
    apply_owned(
        client,
        &secret(stack, kv_secret_name(stack), data, BTreeMap::new())?,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reissued_when_a_third_of_the_lease_is_left() {
        assert_eq!(time_to_reissue(3600, 3600), Some(Duration::from_secs(2400)));
        assert_eq!(time_to_reissue(1300, 3600), Some(Duration::from_secs(100)));
        assert_eq!(time_to_reissue(1200, 3600), None);
        assert_eq!(time_to_reissue(0, 3600), None);
    }

    #[test]
    fn database_secret_keeps_the_lease_in_annotations_only() {
        let mut stack: GolfTrackerStack =
            serde_saphyr::from_str(include_str!("../../../examples/production-stack.yaml"))
                .unwrap();
        stack.metadata.namespace = Some("golftracker".into());
        stack.metadata.uid = Some("5e1f0c2a-7777-8888-9999-000011112222".into());
        let issued = Leased {
            lease_id: "database/creds/golftracker-worker/abc".into(),
            lease_duration: 3600,
            data: Some(DatabaseCredentials {
                username: "v-user".into(),
                password: "p4ss".into(),
            }),
        };
        let secret = database_secret(&stack, &issued).unwrap();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("production-worker-db")
        );
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["password"].0, b"p4ss");
        let annotations = secret.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[LEASE_DURATION_ANNOTATION], "3600");
        assert!(!annotations.values().any(|v| v.contains("p4ss")));
        assert_eq!(
            secret.metadata.owner_references.as_ref().unwrap()[0].kind,
            "GolfTrackerStack"
        );
    }
}
