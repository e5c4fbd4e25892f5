//! The cluster edge: what the router does to Nodes for an event.
//!
//! [`plan`] decides the steps (pure); a [`Cluster`] carries them out. `dry_run` mode logs the
//! steps it would take and touches nothing; `kubernetes` mode admits each event on its Node with
//! one patch ([`kubernetes`], [`intent`]) and leaves the slow work — drains, scheduled
//! maintenance, cancels — to a reconciler over the Nodes' annotations. Every API call goes
//! through one prioritised budget ([`budget`]).

pub mod budget;
pub mod cache;
pub mod capacity;
pub mod config;
pub mod drain;
pub mod events;
pub mod failback;
pub mod index;
pub mod intent;
pub mod kubernetes;
pub mod lease;
pub mod lifecycle;
pub mod placement;
pub mod plan;
mod reconcile;
pub mod recovery;
pub mod replacement;
pub mod shelter;
pub mod stats;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use jiff::SignedDuration;
use kube::client::Body;

use crate::event::Event;
use crate::health::Health;
use crate::metrics::Metrics;
use budget::{Budget, Clients};
use config::ClusterConfig;
use plan::Step;

/// An event the cluster side makes itself, for the stream.
#[derive(Debug, Clone)]
pub enum Emitted {
    /// A replacement Node became Ready (`replacement_ready`).
    Replacement(replacement::Replacement),
    /// Spot siblings of an interrupted Node were sheltered (`pool_at_risk`).
    PoolAtRisk(Event),
    /// An owner's pods were moved back to Spot, or the move ended early (`failback`).
    Failback(Event),
    /// A pool's census and statistics, every period (`pool_stats`).
    PoolStats(Event),
}

/// Why a cluster step failed. Every variant is transient: the message (or the reconciler's
/// step) is retried.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server could not be reached or answered with an error.
    #[error("cannot {what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The client's error, with the API server's status when it answered.
        #[source]
        source: kube::Error,
    },
    /// The Node cache has not completed its first list.
    #[error("the Node cache has not synced yet")]
    NotSynced,
    /// The Node kept changing under a write with a resourceVersion precondition.
    #[error("the Node kept changing ({attempts} conflicts in a row)")]
    Conflict {
        /// How many writes were refused.
        attempts: usize,
    },
    /// The Node was deleted while it was being written.
    #[error("the Node was deleted")]
    NodeGone,
    /// An ASG lifecycle call failed.
    #[error("cannot complete the ASG lifecycle action: {0}")]
    Lifecycle(#[source] lifecycle::LifecycleError),
}

impl ClusterError {
    pub(crate) fn api(what: &'static str, source: kube::Error) -> Self {
        ClusterError::Api { what, source }
    }

    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::Api { .. } => "api",
            ClusterError::NotSynced => "not_synced",
            ClusterError::Conflict { .. } => "conflict",
            ClusterError::NodeGone => "node_gone",
            ClusterError::Lifecycle(_) => "lifecycle",
        }
    }

    /// The HTTP status the API server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClusterError::Api {
                source: kube::Error::Api(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }
}

/// The health component of the API server (`/readyz`: `kubernetes: failing for 12s: cannot
/// reach the API server https://...: ...`).
pub const API_COMPONENT: &str = "kubernetes";

/// A `tower::Service` in front of a client that reports each call's result to the API server's
/// health component: a transport error (refused, reset, timed out), a 5xx or a 401 answer fails
/// it, any other answer clears it. The Node watch's relists and the Lease renewals call every few
/// seconds, so an outage shows even while no event arrives.
#[derive(Clone)]
struct Observed {
    inner: Option<kube::Client>,
    health: Arc<Health>,
    server: Arc<str>,
}

impl Observed {
    fn wrap(&self, client: kube::Client) -> kube::Client {
        let ns = client.default_namespace().to_owned();
        kube::Client::new(
            Observed {
                inner: Some(client),
                ..self.clone()
            },
            ns,
        )
    }
}

impl tower::Service<Request<Body>> for Observed {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // `kube::Client` buffers its own stack; readiness is checked in `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let Some(inner) = &this.inner else {
                return Err(kube::Error::Service("no client to send through".into()));
            };
            // `Client::send` hands back every answer, whatever its status (kube-client 5,
            // `client/mod.rs`); statuses become errors later, in `request`.
            let result = inner.send(request).await;
            match &result {
                // A 5xx is the server failing; a 401 is every call failing, for want of valid
                // credentials. Other answers (403, 404, 409, 429 ...) are about one request.
                Ok(rsp) if rsp.status().is_server_error() || rsp.status().as_u16() == 401 => {
                    let status = rsp.status();
                    this.health.failed(
                        API_COMPONENT,
                        &format!("the API server {} answered {status}", this.server),
                    );
                }
                Ok(_) => this.health.ok(API_COMPONENT),
                Err(e) => this.health.failed(
                    API_COMPONENT,
                    &format!("cannot reach the API server {}: {e}", this.server),
                ),
            }
            result
        })
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
        /// Where the Node sits ([`placement::Placement::details`]), for the event's `details`.
        place: serde_json::Map<String, serde_json::Value>,
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
            lead: config.lead(),
            actions: config.actions,
        })
    }

    /// The API clients: in-cluster configuration or the standard kubeconfig resolution, all
    /// sharing one budget of `cluster.api_requests_per_second` (burst `cluster.api_burst`).
    /// Every call they make tells `health` whether the API server answered: the component
    /// [`API_COMPONENT`] fails `/readyz` once calls have failed for `grace`.
    pub async fn clients(
        config: &ClusterConfig,
        health: Arc<Health>,
        grace: std::time::Duration,
    ) -> Result<Clients, ClusterSetupError> {
        let inferred = kube::Config::infer()
            .await
            .map_err(|e| ClusterSetupError::Config(e.to_string()))?;
        Cluster::clients_from(inferred, config, health, grace)
    }

    /// The clients of [`Cluster::clients`], from a client configuration already at hand (a
    /// kubeconfig read by a harness).
    pub fn clients_from(
        inferred: kube::Config,
        config: &ClusterConfig,
        health: Arc<Health>,
        grace: std::time::Duration,
    ) -> Result<Clients, ClusterSetupError> {
        health.register_with_grace(API_COMPONENT, grace);
        let observed = Observed {
            inner: None,
            health,
            server: inferred.cluster_url.to_string().into(),
        };
        // kube 5 turns `default_retry` on: 429, 503 and 504 are retried inside the client
        // (`RetryPolicy::server_retry`, up to 5 times). Fine for Node writes; the drain's
        // client has it off, so that a PodDisruptionBudget's 429 reaches the drain.
        let mut no_retry = inferred.clone();
        no_retry.default_retry = false;
        let build = |c: kube::Config| {
            kube::client::ClientBuilder::try_from(c)
                .map(|b| observed.wrap(b.build()))
                .map_err(ClusterSetupError::Client)
        };
        Ok(Clients::new(
            build(inferred)?,
            build(no_retry)?,
            Budget::new(config.api_requests_per_second, config.api_burst),
        ))
    }

    /// The Kubernetes executor on `clients`; its reconciler acts while `active` is true.
    pub fn kubernetes(
        clients: Clients,
        config: &ClusterConfig,
        metrics: Arc<Metrics>,
        active: tokio::sync::watch::Receiver<bool>,
    ) -> Cluster {
        Cluster::Kubernetes(Arc::new(kubernetes::KubeCluster::start(
            clients, config, metrics, active,
        )))
    }

    /// Marks a delivery on its way to an admit, so that Events and drains wait for it (see
    /// [`budget::Admitting`]); `None` for a dry run.
    pub fn admitting(&self) -> Option<budget::Admitting> {
        match self {
            Cluster::DryRun(_) => None,
            Cluster::Kubernetes(kube) => Some(kube.admitting()),
        }
    }

    /// Counts an event the router published in the pool statistics (a dry run keeps none).
    pub fn observe(&self, event: &Event) {
        if let Cluster::Kubernetes(kube) = self {
            kube.observe(event);
        }
    }

    /// The events the cluster side makes, as they are made (once; `None` for a dry run).
    pub fn take_replacements(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Emitted>> {
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
