//! etcd and kube-apiserver, configured like a real control plane: TLS, client
//! certificates, RBAC, ServiceAccount token issuing and review, default admission.
//!
//! There is no kube-controller-manager and no kubelet: namespaces are never
//! finalized after deletion, nothing garbage-collects by ownerReferences, no
//! `default` ServiceAccount or token Secret appears in new namespaces, and Jobs
//! run only through [`crate::job_runner`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    process::{ServerCommand, ServerProcess, free_port, tcp_accepts},
    tls::KubePki,
    write_private_file,
};

/// Issuer and audience of ServiceAccount tokens, as in a kubeadm cluster.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
const CONTEXT_NAME: &str = "golftracker-local";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach the API server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KubeEndpoint {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// Kubeconfig of the admin user (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// PEM of the CA that signed the serving certificate (what Vault's
    /// Kubernetes auth method needs as `kubernetes_ca_cert`).
    pub ca_cert: PathBuf,
}

impl KubeEndpoint {
    /// A client authenticated as the admin user.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The CA certificate as PEM text.
    pub fn ca_cert_pem(&self) -> Result<String, Error> {
        std::fs::read_to_string(&self.ca_cert).map_err(|source| Error::Io {
            action: format!("read {}", self.ca_cert.display()),
            source,
        })
    }
}

/// A client for the current context of a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig_error = |source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    kube::Client::try_from(config).map_err(Error::KubeClient)
}

/// Starts etcd, then kube-apiserver on it, and waits until `/readyz` says ok.
pub(crate) async fn start(
    dir: &Path,
    binaries: &BTreeMap<String, PathBuf>,
    die_with_parent: bool,
) -> Result<(Vec<ServerProcess>, KubeEndpoint), Error> {
    let pki_dir = dir.join("pki");
    create_dir(&pki_dir)?;
    let pki = KubePki::generate()?;
    let file = |name: &str| pki_dir.join(name);
    for (name, pem) in [
        ("ca.crt", &pki.ca_cert),
        ("apiserver.crt", &pki.serving_cert),
        ("apiserver.key", &pki.serving_key),
        ("admin.crt", &pki.admin_cert),
        ("admin.key", &pki.admin_key),
        ("sa.key", &pki.service_account_key),
        ("sa.pub", &pki.service_account_public_key),
    ] {
        write_private_file(&file(name), pem)?;
    }

    let etcd_client_port = free_port()?;
    let etcd_peer_port = free_port()?;
    let etcd_client_url = format!("http://127.0.0.1:{etcd_client_port}");
    let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
    let mut etcd = ServerCommand::new("etcd", binary(binaries, "etcd")?, dir.join("etcd.log"));
    etcd.die_with_parent = die_with_parent;
    etcd.command.args([
        "--name=local",
        &format!("--data-dir={}", dir.join("etcd-data").display()),
        &format!("--listen-client-urls={etcd_client_url}"),
        &format!("--advertise-client-urls={etcd_client_url}"),
        &format!("--listen-peer-urls={etcd_peer_url}"),
        &format!("--initial-advertise-peer-urls={etcd_peer_url}"),
        &format!("--initial-cluster=local={etcd_peer_url}"),
        // Throwaway data: skipping fsync makes the apiserver much faster on slow disks.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]);
    let mut etcd = etcd.spawn()?;
    etcd.wait_ready(READY_TIMEOUT, || tcp_accepts(etcd_client_port))
        .await?;

    let port = free_port()?;
    let server = format!("https://127.0.0.1:{port}");
    let path = |name: &str| file(name).display().to_string();
    let mut apiserver = ServerCommand::new(
        "kube-apiserver",
        binary(binaries, "kube-apiserver")?,
        dir.join("kube-apiserver.log"),
    );
    apiserver.die_with_parent = die_with_parent;
    apiserver.command.args([
        format!("--etcd-servers={etcd_client_url}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", pki_dir.display()),
        format!("--tls-cert-file={}", path("apiserver.crt")),
        format!("--tls-private-key-file={}", path("apiserver.key")),
        format!("--client-ca-file={}", path("ca.crt")),
        "--authorization-mode=Node,RBAC".to_owned(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", path("sa.pub")),
        format!("--service-account-signing-key-file={}", path("sa.key")),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        "--allow-privileged=true".to_owned(),
        "--profiling=false".to_owned(),
        "--v=1".to_owned(),
    ]);
    let mut apiserver = apiserver.spawn()?;

    let kubeconfig_path = dir.join("kubeconfig");
    let kubeconfig = admin_kubeconfig(&server, &pki_dir);
    let yaml = serde_saphyr::to_string(&kubeconfig).map_err(|error| Error::Io {
        action: "serialize kubeconfig".into(),
        source: std::io::Error::other(error.to_string()),
    })?;
    write_private_file(&kubeconfig_path, &yaml)?;
    let endpoint = KubeEndpoint {
        server,
        kubeconfig: kubeconfig_path,
        ca_cert: file("ca.crt"),
    };
    let client = endpoint.client().await?;
    apiserver
        .wait_ready(READY_TIMEOUT, || readyz(&client))
        .await?;
    Ok((vec![etcd, apiserver], endpoint))
}

async fn readyz(client: &kube::Client) -> Result<(), kube::Error> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request_text(request).await.map(drop)
}

fn binary<'a>(binaries: &'a BTreeMap<String, PathBuf>, name: &str) -> Result<&'a Path, Error> {
    binaries
        .get(name)
        .map(PathBuf::as_path)
        .ok_or_else(|| Error::BuildServers(format!("build-servers.sh does not list {name}")))
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: format!("create {}", dir.display()),
        source,
    })
}

/// A kubeconfig whose only context is the admin user on this server; it names
/// the PEM files rather than embedding them, which kubectl and kube-rs both read.
fn admin_kubeconfig(server: &str, pki_dir: &Path) -> Kubeconfig {
    let path = |name: &str| Some(pki_dir.join(name).display().to_string());
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT_NAME.to_owned(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                certificate_authority: path("ca.crt"),
                ..Cluster::default()
            }),
            other: BTreeMap::new(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: CONTEXT_NAME.to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate: path("admin.crt"),
                client_key: path("admin.key"),
                ..AuthInfo::default()
            }),
            other: BTreeMap::new(),
        }],
        contexts: vec![NamedContext {
            name: CONTEXT_NAME.to_owned(),
            context: Some(Context {
                cluster: CONTEXT_NAME.to_owned(),
                user: Some(CONTEXT_NAME.to_owned()),
                ..Context::default()
            }),
            other: BTreeMap::new(),
        }],
        current_context: Some(CONTEXT_NAME.to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    }
}
