//! Clients for a stack's external systems (S3 and the results database), built from
//! the stack's spec and the Secrets it references. Secret values stay in memory.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};
use golftracker_crds::stack::GolfTrackerStack;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use tokio::sync::Mutex;

use crate::analysis::job::{
    DB_PASSWORD_KEY, DB_USERNAME_KEY, S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY,
    database_secret,
};
use crate::error::{Error, Result};

/// A short, secret-free description of an S3 failure: the service's code and message
/// when it answered, else the transport error (the full debug form holds the raw response).
pub fn s3_error_message<
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> String {
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("Unknown"),
            service.message().unwrap_or("no message")
        ),
        None => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

/// A Secret's resourceVersion and its values (lossy UTF-8).
pub(crate) async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &'static str,
) -> Result<(String, BTreeMap<String, String>)> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Secret {
            what,
            message: format!("Secret {namespace}/{name} not found"),
        })?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    Ok((secret.metadata.resource_version.unwrap_or_default(), data))
}

/// One value of a Secret read by [`secret_data`]; names the missing key, never a value.
pub(crate) fn secret_key<'a>(
    data: &'a BTreeMap<String, String>,
    key: &str,
    what: &'static str,
    secret: &str,
) -> Result<&'a str> {
    data.get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::Secret {
            what,
            message: format!("Secret {secret} has no key {key:?}"),
        })
}

/// An S3 client for the stack's bucket: static keys from `credentialsSecret` when set,
/// else the default AWS chain (IRSA web identity on EKS).
pub async fn s3_client(client: &Client, stack: &GolfTrackerStack) -> Result<aws_sdk_s3::Client> {
    let credentials = s3_credentials(client, stack).await?;
    Ok(build_s3_client(stack, credentials.map(|(_, c)| c)).await)
}

/// The static keys of `credentialsSecret` with the Secret's resourceVersion, or `None`
/// for the default AWS chain.
async fn s3_credentials(
    client: &Client,
    stack: &GolfTrackerStack,
) -> Result<Option<(String, Credentials)>> {
    let Some(name) = &stack.spec.storage.credentials_secret else {
        return Ok(None);
    };
    let namespace = stack.namespace().unwrap_or_default();
    let (version, data) = secret_data(client, &namespace, name, "S3 credentials").await?;
    let id = secret_key(&data, S3_ACCESS_KEY_ID_KEY, "S3 credentials", name)?;
    let secret = secret_key(&data, S3_SECRET_ACCESS_KEY_KEY, "S3 credentials", name)?;
    let credentials = Credentials::new(id, secret, None, None, "golftracker-stack-secret");
    Ok(Some((version, credentials)))
}

async fn build_s3_client(
    stack: &GolfTrackerStack,
    credentials: Option<Credentials>,
) -> aws_sdk_s3::Client {
    let storage = &stack.spec.storage;
    let mut config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(Region::new(storage.region.clone()))
        .force_path_style(storage.force_path_style)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2));
    if let Some(endpoint) = &storage.endpoint {
        config = config.endpoint_url(endpoint);
    }
    match credentials {
        Some(credentials) => config = config.credentials_provider(credentials),
        None => {
            let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            if let Some(provider) = shared.credentials_provider() {
                config = config.credentials_provider(provider);
            }
        }
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// S3 clients per stack, reused while the stack's storage settings and its credentials
/// Secret (resourceVersion) are unchanged: a client owns a connection pool and TLS
/// set-up, and building one per reconcile dominated the operator's time and memory
/// with many analyses.
pub struct S3Clients {
    clients: Mutex<HashMap<String, CachedS3Client>>,
    /// How long a client is used before its credentials Secret is read again.
    recheck: Duration,
}

struct CachedS3Client {
    /// Storage settings and the credentials Secret's resourceVersion it was built for.
    settings: String,
    secret_version: Option<String>,
    checked: Instant,
    client: aws_sdk_s3::Client,
}

impl S3Clients {
    /// Reads the credentials Secret on every use: for the stack controller, which
    /// reports a missing or broken Secret.
    pub fn checking_each_use() -> Self {
        Self::rechecking_after(Duration::ZERO)
    }

    /// Reads the credentials Secret again only after `recheck`: admission checks
    /// every analysis' video, and a Secret read per analysis was one API request in
    /// four of the analysis controller's. A rotated Secret is picked up within `recheck`.
    pub fn rechecking_after(recheck: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            recheck,
        }
    }

    pub async fn get(
        &self,
        client: &Client,
        stack: &GolfTrackerStack,
    ) -> Result<aws_sdk_s3::Client> {
        let storage = &stack.spec.storage;
        let settings = format!(
            "{:?}|{}|{}|{:?}",
            storage.endpoint, storage.region, storage.force_path_style, storage.credentials_secret,
        );
        let key = format!(
            "{}/{}",
            stack.namespace().unwrap_or_default(),
            stack.name_any()
        );
        if let Some(cached) = self.clients.lock().await.get(&key)
            && cached.settings == settings
            && cached.checked.elapsed() < self.recheck
        {
            return Ok(cached.client.clone());
        }
        let credentials = s3_credentials(client, stack).await?;
        let secret_version = credentials.as_ref().map(|(v, _)| v.clone());
        let mut clients = self.clients.lock().await;
        if let Some(cached) = clients.get_mut(&key)
            && cached.settings == settings
            && cached.secret_version == secret_version
        {
            cached.checked = Instant::now();
            return Ok(cached.client.clone());
        }
        drop(clients);
        let s3 = build_s3_client(stack, credentials.map(|(_, c)| c)).await;
        self.clients.lock().await.insert(
            key,
            CachedS3Client {
                settings,
                secret_version,
                checked: Instant::now(),
                client: s3.clone(),
            },
        );
        Ok(s3)
    }
}

/// Connection pools to stacks' results databases, reused while the credentials Secret
/// keeps its resourceVersion (a rotated Secret gets a new pool).
#[derive(Default)]
pub struct DatabasePools {
    pools: Mutex<HashMap<String, PgPool>>,
}

impl DatabasePools {
    pub async fn pool(&self, client: &Client, stack: &GolfTrackerStack) -> Result<PgPool> {
        let namespace = stack.namespace().unwrap_or_default();
        let secret = database_secret(stack).ok_or_else(|| Error::Secret {
            what: "database credentials",
            message: "the stack names no database credentials Secret yet".into(),
        })?;
        let (version, data) =
            secret_data(client, &namespace, &secret, "database credentials").await?;
        let cache_key = format!("{namespace}/{}/{secret}@{version}", stack.name_any());
        if let Some(pool) = self.pools.lock().await.get(&cache_key) {
            return Ok(pool.clone());
        }
        let db = &stack.spec.database;
        let ssl_mode: PgSslMode = db
            .ssl_mode
            .as_str()
            .parse()
            .map_err(|e: sqlx::Error| Error::Database(e.to_string()))?;
        let options = PgConnectOptions::new_without_pgpass()
            .host(&db.host)
            .port(db.port as u16)
            .database(&db.database)
            .username(secret_key(
                &data,
                DB_USERNAME_KEY,
                "database credentials",
                &secret,
            )?)
            .password(secret_key(
                &data,
                DB_PASSWORD_KEY,
                "database credentials",
                &secret,
            )?)
            .ssl_mode(ssl_mode);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let mut pools = self.pools.lock().await;
        pools.retain(|k, _| !k.starts_with(&format!("{namespace}/{}/", stack.name_any())));
        pools.insert(cache_key, pool.clone());
        Ok(pool)
    }
}
