//! The running service: wires config → sources → router → cluster and sinks, serves HTTP, and
//! shuts down in order on the token: stop receiving, let in-flight messages finish within the
//! grace period (releasing the rest to their queues), flush the sinks.
//!
//! Shutdown has one deadline, `router.shutdown_grace_seconds` after the signal, for everything in
//! flight (HTTP requests, handlers, the messages the sources hold), then at most
//! [`SHUTDOWN_TAIL`] to give back what is left and flush the sinks: the process is gone within
//! grace + tail whatever is stuck. The chart's `terminationGracePeriodSeconds` must be longer.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

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

/// After the grace period: the longest the sources take to give back what they still hold
/// ([`crate::sources::RELEASE_TAIL`]), and the sinks to deliver what they queued.
pub const SHUTDOWN_TAIL: Duration = crate::sources::RELEASE_TAIL;

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
        ClusterMode::Kubernetes => Some(
            Cluster::clients(
                &config.cluster,
                health.clone(),
                Duration::from_secs(config.server.kubernetes_readiness_grace_seconds),
            )
            .await?,
        ),
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
    let sinks = Sinks::start_with(
        &config.sinks,
        metrics.clone(),
        &health,
        config.router.dedupe_window(),
    )?;
    let events = sinks.event_hub();
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
            SourceConfig::HttpIngest(http) => {
                ingest = Some(server::Ingest {
                    tx: tx.clone(),
                    token: http
                        .token
                        .as_deref()
                        .map(|t| server::Secret::new(t.as_bytes())),
                })
            }
            SourceConfig::AzureEventGridWebhook(webhook) => {
                eventgrid = Some(crate::providers::azure::eventgrid::EventGrid::new(
                    webhook,
                    tx.clone(),
                    config.server.body_read_timeout(),
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
                    source.clone().run(tx.clone(), stop, grace)
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
                    source.clone().run(tx.clone(), stop, grace)
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
                    source.clone().run(tx.clone(), stop, grace)
                });
            }
            #[allow(unreachable_patterns, reason = "reachable when a cloud feature is off")]
            other => return Err(ServiceError::SourceUnavailable(other.type_name())),
        }
    }
    drop(tx);

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
        body_read_timeout: config.server.body_read_timeout(),
        events: events.clone(),
    });
    let limits = config.server.limits(server::conn::open_files_limit());
    let server_abort = CancellationToken::new();
    let mut server = tokio::spawn(server::conn::serve(
        listener,
        app,
        limits,
        metrics.clone(),
        shutdown.clone(),
        server_abort.clone(),
    ));
    let mut workers = tokio::spawn(router::serve(router.clone(), rx, config.router.concurrency));
    let replacements = router
        .take_replacements()
        .map(|found| tokio::spawn(publish_replacements(router.clone(), found)));
    tracing::info!(
        listen = %addr, sources = config.sources.len(), max_connections = limits.max_connections,
        "eviction-router is running."
    );

    shutdown.cancelled().await;
    let deadline = Instant::now() + grace;
    // Live streams end now, so that their connections do not hold the server's close.
    if let Some(events) = &events {
        events.close();
    }
    tracing::info!(
        grace_s = grace.as_secs(),
        "Shutting down: no new messages; finishing those in flight."
    );
    // The listener is closed; requests in flight get until the deadline, then their connections
    // are dropped (a half-sent request holds nothing).
    if tokio::time::timeout_at(deadline, &mut server)
        .await
        .is_err()
    {
        server_abort.cancel();
        let _ = server.await;
    }
    // Sources stop receiving and settle or release what they hold within the grace period.
    let release = deadline + SHUTDOWN_TAIL;
    if tokio::time::timeout_at(release, async {
        while sources.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("Sources still giving back messages after the grace period; stopping them.");
        sources.abort_all();
        while sources.join_next().await.is_some() {}
    }
    // Handlers still running past the grace are abandoned; their deliveries count as retry and
    // their messages were released by their sources.
    if tokio::time::timeout_at(deadline, &mut workers)
        .await
        .is_err()
    {
        tracing::warn!("Handlers still running after the grace period; abandoning them.");
        workers.abort();
        let _ = workers.await;
    }
    if let Some(replacements) = replacements {
        replacements.abort();
        let _ = replacements.await;
    }
    // Whatever holds the router now (the cluster's tasks), the sinks deliver what they queued.
    let flush = release
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    router.close(flush).await;
    tracing::info!("eviction-router stopped.");
    Ok(())
}

/// Spawns a queue source that receives while this replica leads (at once without leader
/// election): it starts when the replica becomes the leader, stops (settling or releasing what
/// it holds) when the Lease is lost, starts again when it is won back, and ends on `shutdown`.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(dead_code, reason = "only queue sources use it")
)]
fn spawn_on_leader<F>(
    sources: &mut JoinSet<()>,
    leader: &tokio::sync::watch::Receiver<bool>,
    shutdown: &CancellationToken,
    run: impl Fn(CancellationToken) -> F + Send + 'static,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, mut leader) = (shutdown.clone(), leader.clone());
    sources.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                led = leader.wait_for(|l| *l) => if led.is_err() { return },
            }
            let term = stop.child_token();
            let stepped_down = tokio::spawn({
                let (mut leader, term) = (leader.clone(), term.clone());
                async move {
                    if leader.wait_for(|l| !*l).await.is_ok() {
                        term.cancel();
                    }
                }
            });
            run(term).await;
            stepped_down.abort();
            if stop.is_cancelled() {
                return;
            }
            tracing::warn!(
                "Not the leader any more: the queue source stopped and waits to lead again."
            );
        }
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
            | crate::cluster::Emitted::Failback(event)
            | crate::cluster::Emitted::PoolStats(event) => {
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
