//! The running service: wires config → sources → router → cluster and sinks, serves HTTP, and
//! shuts down in order on the token: stop receiving, let in-flight messages finish within the
//! grace period (releasing the rest to their queues), flush the sinks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterSetupError, lease};
use crate::config::{ClusterMode, Config, SourceConfig};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::router::{self, Router};
use crate::server::{self, AppState};
use crate::sinks::{SinkError, Sinks};

/// Why the service could not start. Runtime failures are logged and counted, never returned.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The cluster could not be set up.
    #[error(transparent)]
    Cluster(#[from] ClusterSetupError),
    /// A sink could not be set up.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The Pub/Sub source could not be set up.
    #[cfg(feature = "gcp")]
    #[error(transparent)]
    PubSub(#[from] crate::providers::gcp::pubsub::PubSubError),
    /// The Service Bus source could not be set up.
    #[cfg(feature = "azure")]
    #[error("cannot set up the Service Bus source: {0}")]
    ServiceBus(#[from] crate::providers::azure::servicebus::rest::SetupError),
    /// A configured source is not available in this build.
    #[error("source type `{0}` is not available in this version of eviction-router")]
    SourceUnavailable(&'static str),
    /// The HTTP server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(Duration::from_secs(
        config.server.readiness_grace_seconds,
    )));
    let clients = match config.cluster.mode {
        ClusterMode::DryRun => None,
        ClusterMode::Kubernetes => Some(Cluster::clients(&config.cluster).await?),
    };
    // With leader election, only the Lease holder receives and acts; standbys keep their Node
    // cache warm, stay ready, and answer ingest with retry.
    let election = match (&clients, config.cluster.leader_election.enabled) {
        (Some(clients), true) => Some(clients.admit.clone()),
        _ => None,
    };
    let (leader_tx, leader) = tokio::sync::watch::channel(election.is_none());
    if let Some(client) = election {
        let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("eviction-router-{}", std::process::id()));
        let lease = lease::LeaseConfig {
            name: config.cluster.leader_election.lease_name.clone(),
            namespace: namespace.clone(),
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        };
        let api = kube::Api::namespaced(client, &namespace);
        tokio::spawn(lease::run(api, lease, leader_tx, shutdown.clone()));
    }
    let cluster = match clients {
        None => Cluster::dry_run(&config.cluster),
        Some(clients) => {
            Cluster::kubernetes(clients, &config.cluster, metrics.clone(), leader.clone())
        }
    };
    let sinks = Sinks::start(&config.sinks, metrics.clone())?;
    let grace = config.router.shutdown_grace();
    let router = Arc::new(
        Router::new(&config.router, cluster, sinks, metrics.clone()).with_active(leader.clone()),
    );
    let (tx, rx) = mpsc::channel(config.router.queue_capacity);

    let mut sources: JoinSet<()> = JoinSet::new();
    let mut ingest = None;
    let mut eventgrid = None;
    for source in &config.sources {
        match source {
            SourceConfig::HttpIngest(_) => ingest = Some(tx.clone()),
            SourceConfig::AzureEventGridWebhook(webhook) => {
                eventgrid = Some(crate::providers::azure::eventgrid::EventGrid::new(
                    webhook,
                    tx.clone(),
                    metrics.clone(),
                ));
            }
            #[cfg(feature = "aws")]
            SourceConfig::AwsSqs(sqs) => {
                let source = crate::providers::aws::sqs::SqsSource::new(
                    sqs.clone(),
                    metrics.clone(),
                    health.clone(),
                )
                .await;
                let tx = tx.clone();
                spawn_on_leader(&mut sources, &leader, &shutdown, move |stop| {
                    source.run(tx, stop, grace)
                });
            }
            #[cfg(feature = "gcp")]
            SourceConfig::GcpPubsub(pubsub) => {
                let source = crate::providers::gcp::pubsub::PubSubSource::new(
                    pubsub.clone(),
                    metrics.clone(),
                    health.clone(),
                )
                .await?;
                let tx = tx.clone();
                spawn_on_leader(&mut sources, &leader, &shutdown, move |stop| {
                    source.run(tx, stop, grace)
                });
            }
            #[cfg(feature = "azure")]
            SourceConfig::AzureServiceBus(sb) => {
                let source = crate::providers::azure::servicebus::ServiceBusSource::new(
                    sb.clone(),
                    metrics.clone(),
                    health.clone(),
                )?;
                let tx = tx.clone();
                spawn_on_leader(&mut sources, &leader, &shutdown, move |stop| {
                    source.run(tx, stop, grace)
                });
            }
            #[allow(unreachable_patterns, reason = "reachable when a cloud feature is off")]
            other => return Err(ServiceError::SourceUnavailable(other.type_name())),
        }
    }
    drop(tx);
    // A leader that loses the Lease stops; the Deployment restarts it as a standby.
    {
        let (mut leader, stop) = (leader.clone(), shutdown.clone());
        tokio::spawn(async move {
            if leader.wait_for(|l| *l).await.is_ok()
                && leader.wait_for(|l| !*l).await.is_ok()
                && !stop.is_cancelled()
            {
                tracing::warn!(
                    "Lost the leadership: stopping so that the replica restarts as a standby."
                );
                stop.cancel();
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| ServiceError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.server.listen);
    let app = server::app(AppState {
        metrics: metrics.clone(),
        health,
        ingest,
        eventgrid,
    });
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(server_stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "The HTTP server failed.");
        }
    });
    let workers = tokio::spawn(router::serve(router.clone(), rx, config.router.concurrency));
    if let Some(replacements) = router.take_replacements() {
        tokio::spawn(publish_replacements(router.clone(), replacements));
    }
    tracing::info!(listen = %addr, sources = config.sources.len(), "eviction-router is running.");

    shutdown.cancelled().await;
    tracing::info!(
        grace_s = grace.as_secs(),
        "Shutting down: no new messages; finishing those in flight."
    );
    // Sources stop receiving and settle or release what they hold within the grace period.
    while sources.join_next().await.is_some() {}
    let _ = server.await;
    // Handlers still running past the grace are abandoned; their deliveries count as retry and
    // their messages were released by their sources.
    let mut workers = workers;
    if tokio::time::timeout(grace, &mut workers).await.is_err() {
        tracing::warn!("Handlers still running after the grace period; abandoning them.");
        workers.abort();
        let _ = workers.await;
    }
    if let Ok(router) = Arc::try_unwrap(router) {
        router.close(grace).await;
    }
    tracing::info!("eviction-router stopped.");
    Ok(())
}

/// Spawns a queue source that starts receiving once this replica leads (at once without leader
/// election) and stops on `shutdown`.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(dead_code, reason = "only queue sources use it")
)]
fn spawn_on_leader<F>(
    sources: &mut JoinSet<()>,
    leader: &tokio::sync::watch::Receiver<bool>,
    shutdown: &CancellationToken,
    run: impl FnOnce(CancellationToken) -> F + Send + 'static,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, mut leader) = (shutdown.clone(), leader.clone());
    sources.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = leader.wait_for(|l| *l) => {}
        }
        run(stop).await
    });
}

/// Publishes what the cluster side makes: each replacement found as a `replacement_ready` event
/// (observing its latency), each pool at risk as a `pool_at_risk` event.
pub async fn publish_replacements(
    router: Arc<Router>,
    mut found: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::Emitted>,
) {
    while let Some(emitted) = found.recv().await {
        let replacement = match emitted {
            crate::cluster::Emitted::Replacement(r) => r,
            crate::cluster::Emitted::PoolAtRisk(event)
            | crate::cluster::Emitted::Failback(event) => {
                router.publish(&event).await;
                continue;
            }
        };
        let event = replacement.to_event();
        let latency: Duration = replacement.latency().try_into().unwrap_or(Duration::ZERO);
        let old = &replacement.pending.event.data;
        tracing::info!(
            node = %replacement.node, replaces = %replacement.pending.node, pool = %replacement.pending.pool,
            latency_s = latency.as_secs_f64(), "A replacement Node is Ready."
        );
        let metrics = router.metrics();
        metrics.replacement_ready(old.provider, old.kind.as_str(), latency);
        metrics.recovery_phase(
            "replacement_ready",
            old.provider,
            old.kind.as_str(),
            &replacement.pending.pool,
            latency,
        );
        router.publish(&event).await;
    }
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("Received SIGTERM."),
                        _ = tokio::signal::ctrl_c() => tracing::info!("Received SIGINT."),
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        cancel.cancel();
    });
    token
}
