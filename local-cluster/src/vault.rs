//! Vault in dev mode: in memory, unsealed, a root token we choose. Nothing
//! application-specific is configured here; the operator does that.
//!
//! The binary is Vault's `minimal` build (see `build-servers.sh`); the Kubernetes
//! auth method and the PostgreSQL database plugin run as external plugins from the
//! `plugins` folder next to it, which dev mode registers under their usual names
//! on every start (a restarted, empty Vault has them again).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use vaultrs::api::auth::kubernetes::requests::ConfigureKubernetesAuthRequest;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

use crate::{
    Error, KubeEndpoint, install_crypto_provider,
    process::{ServerCommand, ServerProcess, free_port_pair},
    random_secret,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where [`VaultEndpoint::enable_kubernetes_auth`] mounts the Kubernetes auth method
/// (Vault's usual path, and a stack's default `vault.auth.mount`).
pub const KUBERNETES_AUTH_MOUNT: &str = "kubernetes";

/// How to reach Vault. Not `Debug`: it holds the root token.
#[derive(Clone, Serialize, Deserialize)]
pub struct VaultEndpoint {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub root_token: String,
}

impl VaultEndpoint {
    /// A client logged in with the root token.
    pub fn client(&self) -> Result<VaultClient, Error> {
        install_crypto_provider();
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token(&self.root_token)
            .build()
            .map_err(|error| Error::VaultClient(error.to_string()))?;
        VaultClient::new(settings).map_err(|error| Error::VaultClient(error.to_string()))
    }

    /// Succeeds once Vault is initialised and unsealed.
    pub async fn ping(&self) -> Result<(), Error> {
        let health = vaultrs::sys::health(&self.client()?)
            .await
            .map_err(|error| Error::VaultClient(error.to_string()))?;
        if health.initialized && !health.sealed {
            Ok(())
        } else {
            Err(Error::VaultClient("sealed or not initialised".into()))
        }
    }

    /// What a Vault administrator does before workloads can log in with ServiceAccount
    /// tokens: enables the Kubernetes auth method at [`KUBERNETES_AUTH_MOUNT`] (unless it
    /// is there) and points it at `kube`. No reviewer JWT is configured, so Vault reviews
    /// each login token with the token itself: accounts that log in need TokenReview
    /// rights (`system:auth-delegator`).
    pub async fn enable_kubernetes_auth(&self, kube: &KubeEndpoint) -> Result<(), Error> {
        let vault = self.client()?;
        let error = |action: &str| {
            let action = action.to_owned();
            move |e: vaultrs::error::ClientError| Error::VaultClient(format!("{action}: {e}"))
        };
        let mounts = vaultrs::sys::auth::list(&vault)
            .await
            .map_err(error("list auth methods"))?;
        if !mounts.contains_key(&format!("{KUBERNETES_AUTH_MOUNT}/")) {
            vaultrs::sys::auth::enable(&vault, KUBERNETES_AUTH_MOUNT, "kubernetes", None)
                .await
                .map_err(error("enable the Kubernetes auth method"))?;
        }
        vaultrs::auth::kubernetes::configure(
            &vault,
            KUBERNETES_AUTH_MOUNT,
            &kube.server,
            Some(
                ConfigureKubernetesAuthRequest::builder()
                    .kubernetes_ca_cert(kube.ca_cert_pem()?)
                    .disable_local_ca_jwt(true),
            ),
        )
        .await
        .map_err(error("configure the Kubernetes auth method"))
    }
}

pub(crate) async fn start(
    dir: &Path,
    binaries: &BTreeMap<String, PathBuf>,
    die_with_parent: bool,
) -> Result<(ServerProcess, VaultEndpoint), Error> {
    let port = free_port_pair()?;
    let endpoint = VaultEndpoint {
        address: format!("http://127.0.0.1:{port}"),
        // Vault refuses custom token ids that look like its own (`hvs.` prefix).
        root_token: random_secret(24),
    };
    let binary = binaries
        .get("vault")
        .ok_or_else(|| Error::BuildServers("build-servers.sh does not list vault".into()))?;
    let plugins = binary
        .parent()
        .map(|folder| folder.join("plugins"))
        .filter(|plugins| plugins.is_dir())
        .ok_or_else(|| {
            Error::BuildServers(format!(
                "no plugins folder next to {}: rerun build-servers.sh vault",
                binary.display()
            ))
        })?;
    let mut vault = ServerCommand::new("vault", binary, dir.join("vault.log"));
    vault.die_with_parent = die_with_parent;
    vault
        .command
        .args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .arg(format!("-dev-plugin-dir={}", plugins.display()))
        .env("VAULT_DEV_ROOT_TOKEN_ID", &endpoint.root_token)
        .env("HOME", dir);
    let mut vault = vault.spawn()?;
    vault.wait_ready(READY_TIMEOUT, || endpoint.ping()).await?;
    Ok((vault, endpoint))
}
