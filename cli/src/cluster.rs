//! The connection to the cluster, found like kubectl finds it (KUBECONFIG or
//! ~/.kube/config, `--context`, `-n`, else in-cluster), and the lookups every command shares.

use golftracker_crds::analysis::SwingAnalysis;
use golftracker_crds::conditions;
use golftracker_crds::stack::{GolfTrackerStack, condition};
use kube::config::{Config, KubeConfigOptions};
use kube::{Api, Client};

use crate::error::{Error, Result, kube_error};
use crate::show;

/// A client and the namespace the command works in.
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

impl Target {
    pub async fn connect(context: Option<&str>, namespace: Option<&str>) -> Result<Self> {
        let config = match context {
            Some(context) => Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(context.to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?,
            None => Config::infer()
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?,
        };
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_owned);
        let client = Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
        Ok(Self { client, namespace })
    }

    pub fn analyses(&self) -> Api<SwingAnalysis> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn analysis(&self, name: &str) -> Result<SwingAnalysis> {
        self.analyses()
            .get_opt(name)
            .await
            .map_err(kube_error("get", "swinganalyses", &self.namespace))?
            .ok_or_else(|| Error::AnalysisNotFound {
                name: name.to_owned(),
                namespace: self.namespace.clone(),
            })
    }

    /// The stack, whatever its state.
    pub async fn stack(&self, name: &str) -> Result<GolfTrackerStack> {
        Api::<GolfTrackerStack>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(kube_error("get", "golftrackerstacks", &self.namespace))?
            .ok_or_else(|| Error::StackNotFound {
                name: name.to_owned(),
                namespace: self.namespace.clone(),
            })
    }

    /// The stack an analysis can be submitted to: present and Ready.
    pub async fn ready_stack(&self, name: &str) -> Result<GolfTrackerStack> {
        let stack = self.stack(name).await?;
        let conditions = stack
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        if conditions::is_true(conditions, condition::READY) {
            return Ok(stack);
        }
        // The parts that fail say why; Ready itself only names them.
        let failing: Vec<String> = conditions
            .iter()
            .filter(|c| c.type_ != condition::READY && c.status != conditions::TRUE)
            .map(|c| format!("{} {}", c.type_, show::condition_text(c)))
            .collect();
        let reason = match conditions::find(conditions, condition::READY) {
            None => "the operator has not reported on it yet (is it running?)".to_owned(),
            Some(ready) if failing.is_empty() => show::condition_text(ready),
            Some(_) => failing.join("; "),
        };
        Err(Error::StackNotReady {
            name: name.to_owned(),
            reason,
        })
    }

    /// An S3 client for the stack's bucket, built as the operator builds its own.
    pub async fn s3(&self, stack: &GolfTrackerStack) -> Result<aws_sdk_s3::Client> {
        golftracker_operator::external::s3_client(&self.client, stack)
            .await
            .map_err(|e| match e {
                golftracker_operator::error::Error::Kube(source) => {
                    kube_error("get", "secrets", &self.namespace)(source)
                }
                other => other.into(),
            })
    }
}
