//! The GCP Pub/Sub source: a streaming pull on the subscription a Cloud Logging sink feeds,
//! through `google-cloud-pubsub`'s `Subscriber`, with outcomes mapped per docs/design.md §2:
//!
//! | outcome | call |
//! |---|---|
//! | handled, ignored | ack |
//! | poison | ack (counted by the router); the subscription's dead-letter policy is the alternative |
//! | retry | nack: Pub/Sub redelivers (after the subscription's retry policy backoff, if it has one), `delivery_attempt` + 1 |
//!
//! The crate extends each message's lease while the router holds it (up to `max_lease_seconds`)
//! and applies flow control (`max_outstanding_messages`). It reports nothing when its endpoint
//! is unreachable (it retries inside the stream), so a watchdog checks the subscription with a
//! lightweight admin call: a failed check is logged, counted and marks the source not ready
//! until one passes again. The crate's stream reconnects by itself, but with a backoff that
//! grows to 60 s; so when a check passes after a failure the stream is replaced by a new one on
//! a new client at once. The old stream is closed, its acks are sent and the messages it had
//! not handed out are nacked. A message the service pushed into a connection that died comes
//! back when its lease lapses (the stream ack deadline, set to 10 s). A permanent error
//! (subscription missing, permission denied) closes the stream; a new client and stream follow
//! after a backoff.
//!
//! The crate does not read `PUBSUB_EMULATOR_HOST`; this source does, like Google's other
//! client libraries: `http://$PUBSUB_EMULATOR_HOST` with anonymous credentials.

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::Credentials;
use google_cloud_pubsub::client::{Subscriber, SubscriptionAdmin};
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::PubSubConfig;
use crate::ack::{Delivery, Pending};
use crate::event::Provider;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::sources::{Backoff, settle_within};

/// The health component name of this source.
pub const COMPONENT: &str = "gcp_pubsub";
/// The variable Google's client libraries read for the emulator's `host:port`.
pub const EMULATOR_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// How far each lease extension reaches, and the stream's ack deadline (the crate's minimum).
const LEASE_EXTENSION: Duration = Duration::from_secs(10);
/// How long one health check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// A client could not be built (bad endpoint, no Application Default Credentials).
    #[error("cannot set up the Pub/Sub client for {endpoint}: {source}")]
    Client {
        /// The endpoint, or `default`.
        endpoint: String,
        /// The cause.
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
}

/// Where the clients connect, and with which credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Google's endpoint with Application Default Credentials.
    Google,
    /// An explicit endpoint with Application Default Credentials.
    Custom(String),
    /// An emulator: anonymous credentials.
    Emulator(String),
}

impl Endpoint {
    /// The configured endpoint; else `PUBSUB_EMULATOR_HOST` (from `env`); else Google's.
    /// An `http://` endpoint is an emulator: no credentials are sent to it.
    pub fn resolve(configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Endpoint {
        match (
            configured,
            env(EMULATOR_ENV).filter(|h| !h.trim().is_empty()),
        ) {
            (Some(url), _) if url.starts_with("http://") => Endpoint::Emulator(url.to_owned()),
            (Some(url), _) => Endpoint::Custom(url.to_owned()),
            (None, Some(host)) if host.contains("://") => Endpoint::Emulator(host),
            (None, Some(host)) => Endpoint::Emulator(format!("http://{}", host.trim())),
            (None, None) => Endpoint::Google,
        }
    }

    /// The URL to pass to a client builder, if not Google's default.
    pub fn url(&self) -> Option<&str> {
        match self {
            Endpoint::Google => None,
            Endpoint::Custom(url) | Endpoint::Emulator(url) => Some(url),
        }
    }

    /// The credentials to pass to a client builder, if not Application Default Credentials.
    pub fn credentials(&self) -> Option<Credentials> {
        match self {
            Endpoint::Emulator(_) => {
                Some(google_cloud_auth::credentials::anonymous::Builder::new().build())
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url().unwrap_or("https://pubsub.googleapis.com"))
    }
}

/// A configured Pub/Sub source.
#[derive(Debug, Clone)]
pub struct PubSubSource {
    endpoint: Endpoint,
    admin: SubscriptionAdmin,
    config: PubSubConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl PubSubSource {
    /// Builds the clients; nothing connects until [`PubSubSource::run`].
    pub async fn new(
        config: PubSubConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<PubSubSource, PubSubError> {
        let endpoint = Endpoint::resolve(config.endpoint.as_deref(), |k| std::env::var(k).ok());
        let err = |source| PubSubError::Client {
            endpoint: endpoint.to_string(),
            source,
        };
        let mut admin = SubscriptionAdmin::builder();
        if let Some(url) = endpoint.url() {
            admin = admin.with_endpoint(url);
        }
        if let Some(credentials) = endpoint.credentials() {
            admin = admin.with_credentials(credentials);
        }
        let admin = admin.build().await.map_err(err)?;
        // Fail now, not at the first receive, if the subscriber cannot be built.
        subscriber(&endpoint).await.map_err(err)?;
        tracing::info!(subscription = %config.subscription, endpoint = %endpoint, "Pub/Sub source configured.");
        Ok(PubSubSource {
            endpoint,
            admin,
            config,
            metrics,
            health,
        })
    }

    /// A new stream on a new client: a client whose connection broke may not recover by
    /// itself, so each (re)connection starts from scratch.
    async fn stream(&self) -> Option<MessageStream> {
        match subscriber(&self.endpoint).await {
            Ok(client) => Some(
                client
                    .subscribe(self.config.subscription.clone())
                    .set_max_outstanding_messages(self.config.max_outstanding_messages)
                    .set_max_lease(Duration::from_secs(self.config.max_lease_seconds))
                    // Also the stream's ack deadline (60 s by default): a message the service
                    // pushed into a connection that died comes back after this, not a minute.
                    .set_max_lease_extension(LEASE_EXTENSION)
                    // A stream replaced after an outage may hold messages it received but never
                    // handed out; waiting for processing would keep extending their leases
                    // (up to max_lease) instead of letting the new stream have them. Nacking
                    // them sends them back at once. Acks of messages the router settles before a
                    // shutdown are still sent; one that settles after its stream was replaced is
                    // redelivered and then ignored as a duplicate.
                    .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
                    .build(),
            ),
            Err(e) => {
                self.metrics.source_error(Provider::Gcp, "connect", &e);
                self.health.failed(COMPONENT, &e);
                None
            }
        }
    }

    /// Receives until `shutdown`, then waits up to `grace` for in-flight messages, nacks the
    /// rest for immediate redelivery, and flushes the acknowledgements.
    pub async fn run(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        // Registered only when it starts receiving: a standby (not leading) stays ready.
        self.health.register(COMPONENT);
        let reconnect = Arc::new(Notify::new());
        let watchdog = tokio::spawn(self.clone().watchdog(reconnect.clone(), shutdown.clone()));
        let release = CancellationToken::new();
        let mut settling = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        // A replaced stream shuts down once the messages it handed out are settled, sending
        // their acks and nacks; these tasks wait for that.
        let mut retiring = JoinSet::new();
        // The stream itself is dropped at once, which closes it: the server stops pushing into
        // it. Its lease management runs on until the acks are sent and the messages it had not
        // handed out are nacked.
        let retire = |retiring: &mut JoinSet<()>, stream: Option<MessageStream>| {
            if let Some(stream) = stream {
                let token = stream.shutdown_token();
                drop(stream);
                retiring.spawn(async move { token.shutdown().await });
            }
        };
        let mut stream = self.stream().await;
        'receive: loop {
            let step = match stream.as_mut() {
                None => Step::NoClient,
                Some(current) => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = reconnect.notified() => Step::Reopen,
                    next = current.next() => Step::Item(next),
                },
            };
            let failure = match step {
                Step::Item(Some(Ok((message, handler)))) => {
                    backoff.reset();
                    self.health.ok(COMPONENT);
                    let attempt = handler
                        .delivery_attempt()
                        .and_then(|a| u32::try_from(a).ok());
                    let (delivery, pending) = Delivery::new(
                        Provider::Gcp,
                        message.data,
                        Timestamp::now(),
                        Some(message.message_id),
                    );
                    if tx.send(delivery.with_attempt(attempt)).await.is_err() {
                        // The router is gone: Pub/Sub redelivers.
                        handler.nack();
                        break;
                    }
                    settling.spawn(settle(pending, handler, release.clone()));
                    while settling.try_join_next().is_some() {}
                    while retiring.try_join_next().is_some() {}
                    continue;
                }
                // A permanent error (subscription missing, permission denied) closes the
                // stream; so does its end.
                Step::Item(Some(Err(e))) => google_cloud_gax_error(&e),
                Step::Item(None) => "the stream ended".to_owned(),
                Step::NoClient => "no client".to_owned(),
                Step::Reopen => {
                    tracing::info!(subscription = %self.config.subscription, "Reopening the Pub/Sub stream.");
                    retire(&mut retiring, stream.take());
                    stream = self.stream().await;
                    continue;
                }
            };
            if stream.is_some() {
                self.metrics.source_error(Provider::Gcp, "stream", &failure);
                self.health.failed(COMPONENT, &failure);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break 'receive,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
            retire(&mut retiring, stream.take());
            stream = self.stream().await;
        }
        watchdog.abort();
        settle_within(settling, grace, &release, "Pub/Sub").await;
        // Send the pending acks and nacks before the process exits.
        retire(&mut retiring, stream.take());
        if tokio::time::timeout(crate::sources::RELEASE_TAIL, async {
            while retiring.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("Pub/Sub acknowledgements were not flushed in time.");
        }
        // A standby reports nothing about a subscription it does not read.
        self.health.remove(COMPONENT);
    }

    /// Checks the subscription every `health_check_seconds`; a failure marks the source not
    /// ready until a check passes, which asks for a new stream.
    async fn watchdog(self, reconnect: Arc<Notify>, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.config.health_check_seconds);
        let mut failing = false;
        loop {
            let check = self
                .admin
                .get_subscription()
                .set_subscription(self.config.subscription.clone())
                .send();
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(CHECK_TIMEOUT, check) => r,
            };
            match result {
                Ok(Ok(_)) => {
                    self.health.ok(COMPONENT);
                    if failing {
                        tracing::info!(subscription = %self.config.subscription, "Pub/Sub is reachable again.");
                        reconnect.notify_one();
                    }
                    failing = false;
                }
                Ok(Err(e)) => {
                    let e = google_cloud_gax_error(&e);
                    self.metrics.source_error(Provider::Gcp, "health_check", &e);
                    self.health.failed(COMPONENT, &e);
                    failing = true;
                }
                Err(_) => {
                    let e = format!(
                        "the subscription check did not answer within {}s",
                        CHECK_TIMEOUT.as_secs()
                    );
                    self.metrics.source_error(Provider::Gcp, "health_check", &e);
                    self.health.failed(COMPONENT, &e);
                    failing = true;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// What the receive loop does next. Short-lived, one at a time: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// The stream yielded.
    Item(Option<google_cloud_pubsub::Result<(google_cloud_pubsub::model::Message, Handler)>>),
    /// No client could be built.
    NoClient,
    /// The watchdog saw Pub/Sub come back after a failure.
    Reopen,
}

/// Waits for the outcome (the crate extends the lease meanwhile), then acks or nacks.
async fn settle(pending: Pending, handler: Handler, release: CancellationToken) {
    let outcome = tokio::select! {
        outcome = pending.outcome() => outcome,
        _ = release.cancelled() => {
            handler.nack();
            return;
        }
    };
    if outcome.removes_message() {
        handler.ack();
    } else {
        handler.nack();
    }
}

/// A subscriber client for `endpoint`.
async fn subscriber(
    endpoint: &Endpoint,
) -> Result<Subscriber, google_cloud_gax::client_builder::Error> {
    let mut builder = Subscriber::builder();
    if let Some(url) = endpoint.url() {
        builder = builder.with_endpoint(url);
    }
    if let Some(credentials) = endpoint.credentials() {
        builder = builder.with_credentials(credentials);
    }
    builder.build().await
}

/// The error with its status code and message, on one line.
fn google_cloud_gax_error(e: &google_cloud_pubsub::Error) -> String {
    match e.status() {
        Some(status) => format!("{:?}: {}", status.code, status.message),
        None => {
            let mut line = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                line.push_str(": ");
                line.push_str(&c.to_string());
                cause = c.source();
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_variable_is_honoured_unless_an_endpoint_is_configured() {
        let env = |host: &'static str| move |k: &str| (k == EMULATOR_ENV).then(|| host.to_owned());
        assert_eq!(
            Endpoint::resolve(None, env("127.0.0.1:8085")),
            Endpoint::Emulator("http://127.0.0.1:8085".into())
        );
        assert_eq!(Endpoint::resolve(None, |_| None), Endpoint::Google);
        assert_eq!(Endpoint::resolve(None, env("  ")), Endpoint::Google);
        assert_eq!(
            Endpoint::resolve(Some("https://private.googleapis.com"), env("x:1")),
            Endpoint::Custom("https://private.googleapis.com".into())
        );
        assert_eq!(
            Endpoint::resolve(Some("http://127.0.0.1:9"), |_| None),
            Endpoint::Emulator("http://127.0.0.1:9".into())
        );
        assert!(
            Endpoint::Emulator("http://x".into())
                .credentials()
                .is_some()
        );
        assert!(Endpoint::Google.credentials().is_none());
        assert_eq!(
            Endpoint::Google.to_string(),
            "https://pubsub.googleapis.com"
        );
    }
}
