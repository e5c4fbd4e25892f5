//! The cluster edge: what the router does to Nodes for an event.
//!
//! [`plan`] decides the steps (pure); a [`Cluster`] carries them out. `dry_run` mode logs the
//! steps it would take and touches nothing; `kubernetes` mode acts through the API server.

pub mod index;
pub mod kubernetes;
pub mod lease;
pub mod plan;
pub mod replacement;

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;

use crate::config::ClusterConfig;
use crate::event::Event;
use crate::metrics::Metrics;
use plan::Step;

fn lead(config: &ClusterConfig) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(config.maintenance_lead_seconds).unwrap_or(i64::MAX))
}

/// Why a cluster step failed. Every variant is transient: the message is retried.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server could not be reached or answered with an error.
    #[error("the Kubernetes API failed: {0}")]
    Api(String),
}

impl ClusterError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::Api(_) => "api",
        }
    }
}

/// What the cluster did for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The steps were planned and logged only.
    Planned(Vec<Step>),
    /// The instance is the Node `node`; the steps due now were carried out.
    Acted {
        /// The Node's name.
        node: String,
        /// The planned steps (those due later were left for their time).
        steps: Vec<Step>,
    },
    /// The instance is not a Node of this cluster (shared queues are normal).
    Foreign,
}

/// Where cluster steps go.
#[derive(Debug)]
pub enum Cluster {
    /// Plan and log only.
    DryRun(DryRun),
    /// Act through the API server.
    Kubernetes(Arc<kubernetes::KubeCluster>),
}

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterSetupError {
    /// No cluster configuration was found (in-cluster or kubeconfig).
    #[error("cannot configure the Kubernetes client (in-cluster or kubeconfig): {0}")]
    Config(String),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

impl Cluster {
    /// A dry-run cluster.
    pub fn dry_run(config: &ClusterConfig) -> Cluster {
        Cluster::DryRun(DryRun {
            lead: lead(config),
            actions: config.actions,
        })
    }

    /// The API client: in-cluster configuration or the standard kubeconfig resolution, limited
    /// to `cluster.api_requests_per_second` (0: no limit).
    pub async fn client(config: &ClusterConfig) -> Result<kube::Client, ClusterSetupError> {
        let inferred = kube::Config::infer()
            .await
            .map_err(|e| ClusterSetupError::Config(e.to_string()))?;
        let builder =
            kube::client::ClientBuilder::try_from(inferred).map_err(ClusterSetupError::Client)?;
        Ok(match config.api_requests_per_second {
            0 => builder.build(),
            qps => builder
                .with_layer(&tower::limit::RateLimitLayer::new(
                    qps,
                    Duration::from_secs(1),
                ))
                .build(),
        })
    }

    /// The Kubernetes executor on `client`.
    pub fn kubernetes(
        client: kube::Client,
        config: &ClusterConfig,
        metrics: Arc<Metrics>,
    ) -> Cluster {
        let settings = kubernetes::KubeSettings {
            lead: lead(config),
            drain_margin: Duration::from_secs(config.drain_margin_seconds),
            drain_timeout: Duration::from_secs(config.drain_timeout_seconds),
            reporter: kube::runtime::events::Reporter {
                controller: "eviction-router".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
            pool_labels: config.pool_labels.clone(),
            actions: config.actions,
            replacement_timeout: SignedDuration::from_secs(
                i64::try_from(config.replacement_timeout_seconds).unwrap_or(i64::MAX),
            ),
        };
        let kube = Arc::new(kubernetes::KubeCluster::start(client, settings, metrics));
        tokio::spawn(kube.clone().run_schedule());
        Cluster::Kubernetes(kube)
    }

    /// Replacements found, as they are found (once; `None` for a dry run).
    pub fn take_replacements(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<replacement::Replacement>> {
        match self {
            Cluster::DryRun(_) => None,
            Cluster::Kubernetes(kube) => kube.take_replacements(),
        }
    }

    /// Carries out (or plans) the steps for `event`.
    pub async fn apply(&self, event: &Event) -> Result<Applied, ClusterError> {
        match self {
            Cluster::DryRun(dry) => Ok(dry.apply(event)),
            Cluster::Kubernetes(kube) => kube.apply(event).await,
        }
    }
}

/// The dry run: plans and logs, touches nothing.
#[derive(Debug)]
pub struct DryRun {
    lead: SignedDuration,
    actions: plan::Actions,
}

impl DryRun {
    fn apply(&self, event: &Event) -> Applied {
        let steps = plan::plan(&event.data, self.lead, &self.actions);
        for step in &steps {
            tracing::info!(
                id = %event.id, instance = %event.data.instance.id, action = step.action(), step = %step,
                "Dry run: would act on the instance's Node."
            );
        }
        Applied::Planned(steps)
    }
}
