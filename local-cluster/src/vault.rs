//! Vault in dev mode: in memory, unsealed, a root token we choose. Nothing
//! application-specific is configured here; the operator does that.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

use crate::{
    Error, install_crypto_provider,
    process::{ServerCommand, ServerProcess, free_port_pair},
    random_secret,
};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

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
    let mut vault = ServerCommand::new("vault", binary, dir.join("vault.log"));
    vault.die_with_parent = die_with_parent;
    vault
        .command
        .args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("VAULT_DEV_ROOT_TOKEN_ID", &endpoint.root_token)
        .env("HOME", dir);
    let mut vault = vault.spawn()?;
    vault.wait_ready(READY_TIMEOUT, || endpoint.ping()).await?;
    Ok((vault, endpoint))
}
