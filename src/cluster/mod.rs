//! The cluster edge: what the router does to Nodes for an event.
//!
//! [`plan`] decides the steps (pure); a [`Cluster`] carries them out. `dry_run` mode logs the
//! steps it would take and touches nothing; `kubernetes` mode acts through the API server.

pub mod index;
pub mod plan;

use jiff::SignedDuration;

use crate::config::{ClusterConfig, ClusterMode};
use crate::event::Event;
use plan::Step;

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
}

/// Where cluster steps go.
#[derive(Debug)]
pub enum Cluster {
    /// Plan and log only.
    DryRun(DryRun),
}

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterSetupError {
    /// `cluster.mode: kubernetes` is not available in this build.
    #[error(
        "cluster.mode `kubernetes` is not available in this version of eviction-router; \
         set `cluster.mode: dry_run` to plan and log the actions without acting"
    )]
    KubernetesUnavailable,
}

impl Cluster {
    /// The cluster of `config`.
    pub fn new(config: &ClusterConfig) -> Result<Cluster, ClusterSetupError> {
        match config.mode {
            ClusterMode::DryRun => Ok(Cluster::DryRun(DryRun {
                lead: SignedDuration::from_secs(config.maintenance_lead_seconds as i64),
            })),
            ClusterMode::Kubernetes => Err(ClusterSetupError::KubernetesUnavailable),
        }
    }

    /// Carries out (or plans) the steps for `event`.
    pub async fn apply(&self, event: &Event) -> Result<Applied, ClusterError> {
        match self {
            Cluster::DryRun(dry) => Ok(dry.apply(event)),
        }
    }
}

/// The dry run: plans and logs, touches nothing.
#[derive(Debug)]
pub struct DryRun {
    lead: SignedDuration,
}

impl DryRun {
    fn apply(&self, event: &Event) -> Applied {
        let steps = plan::plan(&event.data, self.lead);
        for step in &steps {
            tracing::info!(
                id = %event.id, instance = %event.data.instance.id, action = step.action(), step = %step,
                "Dry run: would act on the instance's Node."
            );
        }
        Applied::Planned(steps)
    }
}
