//! Vault wiring of a stack: the operator logs in (Kubernetes auth with its own
//! ServiceAccount token, or a bootstrap token from a Secret) and ensures the worker's
//! policy, its Kubernetes auth role, its KV v2 path and, for dynamic database
//! credentials, the database secrets engine connection and role.
//!
//! The Kubernetes auth method at `auth.mount` must already be enabled and configured
//! by the Vault administrator: the operator logs in through it, and only the
//! administrator knows how Vault reaches the cluster's API server (host, CA, token
//! reviewer). Secrets engines (`kv.mount`, `databaseMount`) are mounted when missing.
//! `vault-operator-policy.hcl` next to this file is the policy the operator needs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use golftracker_crds::stack::{GolfTrackerStack, VaultDatabaseCredentials, VaultSpec};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest;
use vaultrs::api::database::requests::{PostgreSQLConnectionRequest, SetRoleRequest};
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use vaultrs::api::sys::requests::EnableEngineRequest;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::analysis::job::{DB_PASSWORD_KEY, DB_USERNAME_KEY, worker_service_account};
use crate::error::{Error, Result};
use crate::external::{secret_data, secret_key};

/// Group role that owns the results schema. Vault's users log in as members of it and
/// act as it (`ALTER ROLE … SET role`), so tables a short-lived user creates (migrations)
/// outlive that user, and the user can be dropped when its lease ends.
pub const RESULTS_OWNER_ROLE: &str = "golftracker_results";

/// Names of what the operator creates in Vault for one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultNames {
    /// ACL policy of the worker, and the Kubernetes auth role that grants it.
    pub worker_role: String,
    /// Path of the stack's secret in the KV v2 engine (without mount).
    pub kv_path: String,
    /// Connection name in the database secrets engine.
    pub database_connection: String,
}

impl VaultNames {
    pub fn of(stack: &GolfTrackerStack, vault: &VaultSpec) -> Self {
        let namespace = stack.namespace().unwrap_or_default();
        let name = stack.name_any();
        Self {
            worker_role: format!("golftracker-{namespace}-{name}-worker"),
            kv_path: format!(
                "{}/{namespace}/{name}",
                vault.kv.path_prefix.trim_matches('/')
            ),
            database_connection: format!("golftracker-{namespace}-{name}"),
        }
    }
}

/// The worker's ACL policy: read its own KV secret and issue its own database credentials.
pub fn worker_policy(
    vault: &VaultSpec,
    names: &VaultNames,
    database: Option<&VaultDatabaseCredentials>,
) -> String {
    let mut policy = format!(
        "path \"{}/data/{}\" {{\n  capabilities = [\"read\"]\n}}\n",
        vault.kv.mount, names.kv_path
    );
    if let Some(database) = database {
        policy.push_str(&format!(
            "path \"{}/creds/{}\" {{\n  capabilities = [\"read\"]\n}}\n",
            vault.database_mount, database.role
        ));
    }
    policy
}

/// SQL Vault runs to create a user: a member of [`RESULTS_OWNER_ROLE`] that acts as it.
/// The group role is created on first use, and may create tables in the schema.
pub fn creation_statements() -> Vec<String> {
    vec![
        format!(
            "DO $$ BEGIN CREATE ROLE \"{RESULTS_OWNER_ROLE}\" NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        ),
        format!("GRANT USAGE, CREATE ON SCHEMA public TO \"{RESULTS_OWNER_ROLE}\";"),
        format!(
            "CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' \
             VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{RESULTS_OWNER_ROLE}\";"
        ),
        format!("ALTER ROLE \"{{{{name}}}}\" SET role = '{RESULTS_OWNER_ROLE}';"),
    ]
}

/// Maps a Vault client error to ours, with Vault's own messages (never a secret: Vault
/// does not echo credentials) or the transport error chain.
pub fn vault_error(operation: &'static str) -> impl FnOnce(ClientError) -> Error {
    move |e| match e {
        ClientError::APIError { code, errors } => Error::Vault {
            operation,
            reason: "VaultRefused",
            message: format!("HTTP {code}: {}", errors.join("; ")),
        },
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Error::Vault {
                operation,
                reason: "VaultUnreachable",
                message,
            }
        }
    }
}

fn is_not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, .. })
}

/// The operator's Kubernetes auth logins, one per stack, reused while two thirds of
/// their TTL is left. Vault revokes the leases a token created when the token goes,
/// so logging in (and out) on every reconcile would kill delivered credentials; a
/// kept token keeps them. Its TTL (the operator role's `token_ttl`) should exceed
/// `maxTtl` of database credentials; when it does not, credentials are re-issued
/// after the token expires (the lease lookup finds them revoked).
#[derive(Default)]
pub struct VaultLogins {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl VaultLogins {
    fn key(stack: &GolfTrackerStack, vault: &VaultSpec) -> String {
        format!(
            "{}/{}|{}|{}|{}",
            stack.namespace().unwrap_or_default(),
            stack.name_any(),
            vault.address,
            vault.auth.mount,
            vault.auth.role
        )
    }

    /// Forgets the stack's login, e.g. after Vault refused it or restarted.
    pub fn forget(&self, stack: &GolfTrackerStack, vault: &VaultSpec) {
        self.tokens
            .lock()
            .expect("login cache lock")
            .remove(&Self::key(stack, vault));
    }

    fn cached(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("login cache lock");
        tokens
            .get(key)
            .filter(|(_, renew_at)| Instant::now() < *renew_at)
            .map(|(token, _)| token.clone())
    }

    fn keep(&self, key: String, token: String, ttl: Duration) {
        let renew_at = Instant::now() + ttl * 2 / 3;
        self.tokens
            .lock()
            .expect("login cache lock")
            .insert(key, (token, renew_at));
    }
}

/// A client logged in as the operator: with the bootstrap token when `tokenSecretRef`
/// is set, else through Kubernetes auth with the token file at `sa_token_path`.
pub async fn login(
    client: &Client,
    logins: &VaultLogins,
    stack: &GolfTrackerStack,
    vault: &VaultSpec,
    sa_token_path: &Path,
) -> Result<VaultClient> {
    let namespace = stack.namespace().unwrap_or_default();
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&vault.address)
        .timeout(Some(Duration::from_secs(10)))
        .token("");
    if let Some(ca) = &vault.ca_secret_ref {
        let (_, data) = secret_data(client, &namespace, &ca.name, "Vault CA").await?;
        let pem = secret_key(&data, &ca.key, "Vault CA", &ca.name)?;
        // vaultrs reads CA bundles from files only.
        let path = std::env::temp_dir().join(format!(
            "golftracker-vault-ca-{namespace}-{}.pem",
            stack.name_any()
        ));
        std::fs::write(&path, pem).map_err(|e| Error::Vault {
            operation: "CA bundle",
            reason: "VaultRefused",
            message: e.to_string(),
        })?;
        settings.ca_certs(vec![path.to_string_lossy().into_owned()]);
    }
    let key = VaultLogins::key(stack, vault);
    let cached = logins.cached(&key);
    if let Some(token) = &vault.auth.token_secret_ref {
        let (_, data) = secret_data(client, &namespace, &token.name, "Vault token").await?;
        settings.token(secret_key(&data, &token.key, "Vault token", &token.name)?);
    } else if let Some(token) = &cached {
        settings.token(token);
    }
    let settings = settings.build().map_err(|e| Error::Vault {
        operation: "client settings",
        reason: "VaultRefused",
        message: e.to_string(),
    })?;
    let mut vault_client = VaultClient::new(settings).map_err(vault_error("client"))?;
    if vault.auth.token_secret_ref.is_none() && cached.is_none() {
        let jwt = tokio::fs::read_to_string(sa_token_path)
            .await
            .map_err(|e| Error::Vault {
                operation: "login",
                reason: "VaultLoginFailed",
                message: format!(
                    "reading the operator's ServiceAccount token {}: {e}",
                    sa_token_path.display()
                ),
            })?;
        let auth = vaultrs::auth::kubernetes::login(
            &vault_client,
            &vault.auth.mount,
            &vault.auth.role,
            jwt.trim(),
        )
        .await
        .map_err(vault_error("login"))?;
        vault_client.set_token(&auth.client_token);
        logins.keep(
            key,
            auth.client_token,
            Duration::from_secs(auth.lease_duration),
        );
    }
    Ok(vault_client)
}

/// Mounts the secrets engine `engine` (`kv` version 2, `database`) at `mount` if nothing is there.
async fn ensure_engine(
    vault_client: &VaultClient,
    mount: &str,
    engine: &str,
    options: Option<BTreeMap<String, String>>,
) -> Result<()> {
    let mounts = vaultrs::sys::mount::list(vault_client)
        .await
        .map_err(vault_error("list secrets engines"))?;
    let key = format!("{}/", mount.trim_matches('/'));
    match mounts.get(&key) {
        Some(existing) if existing.mount_type == engine => Ok(()),
        Some(existing) => Err(Error::Vault {
            operation: "secrets engine",
            reason: "VaultMisconfigured",
            message: format!("{key} is a {} engine, not {engine}", existing.mount_type),
        }),
        None => {
            let mut request = EnableEngineRequest::builder();
            if let Some(options) = options {
                request.options(
                    options
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                );
            }
            vaultrs::sys::mount::enable(vault_client, mount, engine, Some(&mut request))
                .await
                .map_err(vault_error("mount secrets engine"))
        }
    }
}

async fn ensure_auth_method(vault_client: &VaultClient, mount: &str) -> Result<()> {
    let methods = vaultrs::sys::auth::list(vault_client)
        .await
        .map_err(vault_error("list auth methods"))?;
    let key = format!("{}/", mount.trim_matches('/'));
    match methods.get(&key) {
        Some(method) if method.mount_type == "kubernetes" => Ok(()),
        _ => Err(Error::Vault {
            operation: "auth method",
            reason: "VaultMisconfigured",
            message: format!(
                "no Kubernetes auth method at auth/{key}: the Vault administrator enables and configures it"
            ),
        }),
    }
}

/// Creates the stack's KV secret, empty, unless it exists: values are never overwritten
/// (`cas=0` writes only when there is no version yet, so a race cannot overwrite either).
async fn ensure_kv_secret(vault_client: &VaultClient, vault: &VaultSpec, path: &str) -> Result<()> {
    match vaultrs::kv2::read_metadata(vault_client, &vault.kv.mount, path).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            let created = vaultrs::kv2::set_with_options(
                vault_client,
                &vault.kv.mount,
                path,
                &BTreeMap::<String, String>::new(),
                SetSecretRequestOptions { cas: 0 },
            )
            .await;
            match created {
                Ok(_) => Ok(()),
                // Someone wrote it between our read and write: theirs stays.
                Err(ClientError::APIError { code: 400, .. }) => Ok(()),
                Err(e) => Err(vault_error("create KV secret")(e)),
            }
        }
        Err(e) => Err(vault_error("read KV metadata")(e)),
    }
}

/// Ensures everything Vault holds for the stack; returns the names, for the caller's
/// delivery step and status message.
pub async fn provision(
    client: &Client,
    vault_client: &VaultClient,
    stack: &GolfTrackerStack,
    vault: &VaultSpec,
) -> Result<VaultNames> {
    let names = VaultNames::of(stack, vault);
    let database = stack.spec.database.credentials.vault.as_ref();
    ensure_auth_method(vault_client, &vault.auth.mount).await?;
    ensure_engine(
        vault_client,
        &vault.kv.mount,
        "kv",
        Some(BTreeMap::from([("version".into(), "2".into())])),
    )
    .await?;
    vaultrs::sys::policy::set(
        vault_client,
        &names.worker_role,
        &worker_policy(vault, &names, database),
    )
    .await
    .map_err(vault_error("write worker policy"))?;
    vaultrs::auth::kubernetes::role::create(
        vault_client,
        &vault.auth.mount,
        &names.worker_role,
        Some(
            CreateKubernetesRoleRequest::builder()
                .bound_service_account_names(vec![worker_service_account(stack)])
                .bound_service_account_namespaces(vec![stack.namespace().unwrap_or_default()])
                .token_policies(vec![names.worker_role.clone()])
                .token_ttl("1h"),
        ),
    )
    .await
    .map_err(vault_error("write worker Kubernetes auth role"))?;
    ensure_kv_secret(vault_client, vault, &names.kv_path).await?;
    if let Some(database) = database {
        ensure_database_role(client, vault_client, stack, vault, &names, database).await?;
    }
    Ok(names)
}

async fn ensure_database_role(
    client: &Client,
    vault_client: &VaultClient,
    stack: &GolfTrackerStack,
    vault: &VaultSpec,
    names: &VaultNames,
    credentials: &VaultDatabaseCredentials,
) -> Result<()> {
    ensure_engine(vault_client, &vault.database_mount, "database", None).await?;
    let db = &stack.spec.database;
    let namespace = stack.namespace().unwrap_or_default();
    let secret = &credentials.admin_secret_ref;
    let (_, data) = secret_data(client, &namespace, secret, "database admin").await?;
    vaultrs::database::connection::postgres(
        vault_client,
        &vault.database_mount,
        &names.database_connection,
        Some(
            PostgreSQLConnectionRequest::builder()
                .plugin_name("postgresql-database-plugin")
                .connection_url(format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/{}?sslmode={}",
                    db.host,
                    db.port,
                    db.database,
                    db.ssl_mode.as_str()
                ))
                .username(secret_key(
                    &data,
                    DB_USERNAME_KEY,
                    "database admin",
                    secret,
                )?)
                .password(secret_key(
                    &data,
                    DB_PASSWORD_KEY,
                    "database admin",
                    secret,
                )?)
                .allowed_roles(vec![credentials.role.clone()]),
        ),
    )
    .await
    .map_err(vault_error("configure database connection"))?;
    vaultrs::database::role::set(
        vault_client,
        &vault.database_mount,
        &credentials.role,
        Some(
            SetRoleRequest::builder()
                .db_name(&names.database_connection)
                .creation_statements(creation_statements())
                .default_ttl(&credentials.ttl)
                .max_ttl(&credentials.max_ttl),
        ),
    )
    .await
    .map_err(vault_error("write database role"))
}

/// A Vault response with its lease (vaultrs strips the lease from the responses it parses).
#[derive(Debug, serde::Deserialize)]
pub struct Leased<T> {
    #[serde(default)]
    pub lease_id: String,
    #[serde(default)]
    pub lease_duration: u64,
    pub data: Option<T>,
}

/// One raw call to Vault through vaultrs' client (token, API version, TLS), answering
/// the whole response: for the lease endpoints and lease-carrying reads vaultrs lacks.
pub struct VaultCall<T> {
    method: rustify::enums::RequestMethod,
    path: String,
    body: Option<serde_json::Value>,
    response: std::marker::PhantomData<fn() -> T>,
}

impl<T> VaultCall<T> {
    pub fn get(path: String) -> Self {
        Self {
            method: rustify::enums::RequestMethod::GET,
            path,
            body: None,
            response: std::marker::PhantomData,
        }
    }
    pub fn put(path: String, body: serde_json::Value) -> Self {
        Self {
            method: rustify::enums::RequestMethod::PUT,
            path,
            body: Some(body),
            response: std::marker::PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Send + Sync> rustify::Endpoint for VaultCall<T> {
    type Response = T;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }
    fn method(&self) -> rustify::enums::RequestMethod {
        self.method.clone()
    }
    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(self
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).expect("a JSON value serialises")))
    }
}

async fn call<T: DeserializeOwned + Send + Sync>(
    vault_client: &VaultClient,
    request: VaultCall<T>,
    operation: &'static str,
) -> Result<T> {
    vaultrs::api::exec_with_no_result(vault_client, request)
        .await
        .map_err(vault_error(operation))
}

/// Issued database credentials.
#[derive(serde::Deserialize)]
pub struct DatabaseCredentials {
    pub username: String,
    pub password: String,
}

/// Issues new credentials from the stack's database role, with their lease.
pub async fn issue_database_credentials(
    vault_client: &VaultClient,
    vault: &VaultSpec,
    role: &str,
) -> Result<Leased<DatabaseCredentials>> {
    call(
        vault_client,
        VaultCall::get(format!("{}/creds/{role}", vault.database_mount)),
        "issue database credentials",
    )
    .await
}

/// Seconds left on a lease; `None` when Vault no longer knows it (revoked or expired).
pub async fn lease_ttl(vault_client: &VaultClient, lease_id: &str) -> Result<Option<u64>> {
    #[derive(serde::Deserialize)]
    struct Lookup {
        ttl: u64,
    }
    let lookup: Result<Leased<Lookup>> = call(
        vault_client,
        VaultCall::put(
            "sys/leases/lookup".into(),
            serde_json::json!({ "lease_id": lease_id }),
        ),
        "look up lease",
    )
    .await;
    match lookup {
        Ok(found) => Ok(found.data.map(|d| d.ttl)),
        // Vault answers 400 "invalid lease" for a lease it does not hold.
        Err(Error::Vault {
            reason: "VaultRefused",
            message,
            ..
        }) if message.starts_with("HTTP 400") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Extends a lease by `increment` seconds; answers the seconds it now has left (Vault
/// cuts this at the role's `maxTtl`).
pub async fn renew_lease(
    vault_client: &VaultClient,
    lease_id: &str,
    increment: u64,
) -> Result<u64> {
    let renewed: Leased<serde_json::Value> = call(
        vault_client,
        VaultCall::put(
            "sys/leases/renew".into(),
            serde_json::json!({ "lease_id": lease_id, "increment": increment }),
        ),
        "renew lease",
    )
    .await?;
    Ok(renewed.lease_duration)
}

/// Reads the stack's KV secret (string values; others as JSON text).
pub async fn read_kv(
    vault_client: &VaultClient,
    vault: &VaultSpec,
    names: &VaultNames,
) -> Result<BTreeMap<String, String>> {
    let data: BTreeMap<String, serde_json::Value> =
        vaultrs::kv2::read(vault_client, &vault.kv.mount, &names.kv_path)
            .await
            .map_err(vault_error("read KV secret"))?;
    Ok(data
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> GolfTrackerStack {
        let mut stack: GolfTrackerStack =
            serde_saphyr::from_str(include_str!("../../../examples/production-stack.yaml"))
                .unwrap();
        stack.metadata.namespace = Some("golftracker".into());
        stack
    }

    #[test]
    fn names_are_per_namespace_and_stack() {
        let stack = stack();
        let vault = stack.spec.vault.clone().unwrap();
        let names = VaultNames::of(&stack, &vault);
        assert_eq!(
            names,
            VaultNames {
                worker_role: format!("golftracker-golftracker-{}-worker", stack.name_any()),
                kv_path: format!("golftracker/golftracker/{}", stack.name_any()),
                database_connection: format!("golftracker-golftracker-{}", stack.name_any()),
            }
        );
    }

    #[test]
    fn worker_policy_reads_only_its_own_paths() {
        let stack = stack();
        let vault = stack.spec.vault.clone().unwrap();
        let names = VaultNames::of(&stack, &vault);
        let database = stack.spec.database.credentials.vault.as_ref();
        insta::assert_snapshot!(worker_policy(&vault, &names, database));
        let without_database = worker_policy(&vault, &names, None);
        assert!(!without_database.contains("creds"), "{without_database}");
        assert!(!without_database.contains("update") && !without_database.contains("*"));
    }

    #[test]
    fn users_act_as_the_schema_owner() {
        let statements = creation_statements();
        assert!(statements[2].contains("IN ROLE \"golftracker_results\""));
        assert!(statements[2].contains("'{{password}}'"));
        assert!(statements[3].contains("SET role = 'golftracker_results'"));
    }
}
