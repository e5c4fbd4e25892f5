//! The NATS JetStream sink: each event published as a CloudEvent on
//! `<subject_prefix>.<cluster>.<provider>.<kind>`, in binary mode (each context attribute a `ce-`
//! header, the `data` object the body) or structured mode (the whole event as the body), with
//! `Nats-Msg-Id` = `<source>/<id>` so that JetStream drops a repeat within its duplicate window
//! (decision record 0007).
//!
//! A `required` sink publishes from the message's own handler and returns only once JetStream
//! acknowledged the publish (the stream stored it, on a quorum of its replicas), so the queue
//! message is acknowledged after the publish ack, never before. A best-effort sink takes events
//! into a bounded buffer that a task publishes with at most `max_in_flight` acks outstanding; a
//! full buffer drops the event and counts it.
//!
//! What this stands on in async-nats 0.51 (read in its source):
//! - `ConnectOptions::retry_on_initial_connect` makes `connect` return at once and connect in
//!   the background, so a NATS outage at start delays nothing; with `max_reconnects(None)` the
//!   client reconnects forever, each attempt after `reconnect_delay_callback(attempts)` (ours:
//!   [`reconnect_delay`]; its default is 2^n ms capped at 4 s, without jitter).
//! - While disconnected, publishes wait in the client's command channel (2048 deep) and go out
//!   after the reconnect; the wait to enter it is bounded by the context timeout.
//! - `jetstream::Context::send_publish` → `PublishAckFuture`: awaiting it waits for the ack for
//!   the context timeout (`ContextBuilder::timeout`; 5 s when unset), a missing stream answers
//!   "no responders" at once (`PublishErrorKind::StreamNotFound`), and `PublishAck::duplicate`
//!   says the server dropped the publish as a repeat of its `Nats-Msg-Id`.
//! - `HeaderValue::from(&str)` panics on CR or LF: header values are built with
//!   [`header_value`], which escapes them.
//! - The client pings every 60 s by default and declares the connection dead after two missed
//!   pongs; we ping every [`PING_INTERVAL`] so a silent peer is noticed within half a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SinkError;
use super::config::{NatsMode, NatsSinkConfig};
use crate::event::Event;
use crate::health::Health;
use crate::metrics::Metrics;

mod wire;

pub use wire::{
    CLUSTER_ATTRIBUTE, CONTENT_TYPE_STRUCTURED, check_prefix, decode, encode, escape_token,
    header_value, message_id, subject,
};

/// How often the client pings the server.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The longest wait between reconnect attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// The delay before reconnect attempt `attempts` (async-nats counts from 1): none for the first,
/// then 100 ms doubled per attempt up to [`MAX_RECONNECT_DELAY`], with full jitter in the upper
/// half so that a fleet of routers does not reconnect in step after a server restart.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    let capped = Duration::from_millis(100)
        .saturating_mul(1u32 << exp)
        .min(MAX_RECONNECT_DELAY);
    let half = capped / 2;
    half + half.mul_f64(fastrand::f64())
}

/// `url` with any `user:password@` replaced, for logs.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &u[..scheme], &u[at + 1..])
            }
            _ => u.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One event, encoded, waiting for its publish.
struct Job {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    id: String,
}

/// What the publishing side shares.
struct Shared {
    url: String,
    cluster: String,
    prefix: String,
    mode: NatsMode,
    max_attempts: u32,
    initial_backoff: Duration,
    ack_timeout: Duration,
    context: watch::Receiver<Option<jetstream::Context>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    component: String,
}

/// A running NATS JetStream sink.
pub struct NatsSink {
    shared: Arc<Shared>,
    required: bool,
    /// The best-effort buffer; `None` for a required sink.
    queue: Option<mpsc::Sender<Job>>,
    in_flight: Arc<AtomicUsize>,
    closing: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.shared.url)
            .field("cluster", &self.shared.cluster)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Reads the credentials, registers `component` with `health` (failing until connected)
    /// and starts connecting in the background. `dedupe_window` is the router's: a stream whose
    /// duplicate window is shorter is reported once connected.
    pub fn start(
        config: &NatsSinkConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        component: String,
        dedupe_window: Duration,
    ) -> Result<NatsSink, SinkError> {
        let url = redact(&config.url);
        let addrs = config
            .urls()
            .into_iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SinkError::Setup(format!("nats url: {e}")))?;
        let ack_timeout = Duration::from_millis(config.ack_timeout_ms);
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("eviction-router/{}", config.cluster))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .connection_timeout(Duration::from_secs(config.connect_timeout_seconds))
            .ping_interval(PING_INTERVAL);
        if let Some(path) = &config.creds_file {
            let creds = std::fs::read_to_string(path).map_err(|e| {
                SinkError::Setup(format!("cannot read creds_file {}: {e}", path.display()))
            })?;
            options = options
                .credentials(&creds)
                .map_err(|e| SinkError::Setup(format!("creds_file {}: {e}", path.display())))?;
        }
        if let Some(path) = &config.nkey_seed_file {
            let seed = std::fs::read_to_string(path).map_err(|e| {
                SinkError::Setup(format!(
                    "cannot read nkey_seed_file {}: {e}",
                    path.display()
                ))
            })?;
            let seed = seed.trim().to_owned();
            // A user seed is 58 base32 characters starting `SU`; the client signs the server's
            // nonce with it when it connects.
            if !(seed.len() == 58 && seed.starts_with("SU")) {
                return Err(SinkError::Setup(format!(
                    "nkey_seed_file {} holds no NKey user seed (58 characters, `SU...`)",
                    path.display()
                )));
            }
            options = options.nkey(seed);
        }
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        let tls = &config.tls;
        if tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &tls.ca_file {
            check_readable("tls.ca_file", ca)?;
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            check_readable("tls.cert_file", cert)?;
            check_readable("tls.key_file", key)?;
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        health.register_with_grace(
            &component,
            Duration::from_secs(config.readiness_grace_seconds),
        );
        {
            let (metrics, health, component, url) = (
                metrics.clone(),
                health.clone(),
                component.clone(),
                url.clone(),
            );
            options = options.event_callback(move |event| {
                let (metrics, health, component, url) =
                    (metrics.clone(), health.clone(), component.clone(), url.clone());
                async move {
                    use async_nats::Event as E;
                    match event {
                        E::Connected => {
                            metrics.nats_connection(&url, true);
                            health.ok(&component);
                        }
                        E::Disconnected => {
                            metrics.nats_connection(&url, false);
                            health.failed(&component, &"disconnected from NATS; reconnecting");
                        }
                        E::LameDuckMode => {
                            tracing::info!(url, "The NATS server is entering lame duck mode; the client will move to another.")
                        }
                        E::SlowConsumer(_) | E::Draining | E::Closed => {}
                        E::ServerError(e) => {
                            tracing::warn!(url, error = %e, "The NATS server reported an error.");
                            health.failed(&component, &format!("server error: {e}"));
                        }
                        E::ClientError(e) => {
                            tracing::warn!(url, error = %e, "The NATS client reported an error.")
                        }
                    }
                }
            });
        }
        let (context_tx, context) = watch::channel(None);
        let closing = CancellationToken::new();
        let shared = Arc::new(Shared {
            url,
            cluster: config.cluster.clone(),
            prefix: config.subject_prefix.clone(),
            mode: config.mode,
            max_attempts: config.max_attempts,
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            ack_timeout,
            context,
            metrics,
            health,
            component,
        });
        let mut tasks = vec![tokio::spawn(connect(
            shared.clone(),
            options,
            addrs,
            context_tx,
            dedupe_window,
            closing.clone(),
        ))];
        let in_flight = Arc::new(AtomicUsize::new(0));
        let queue = if config.required {
            None
        } else {
            let (tx, rx) = mpsc::channel(config.queue_capacity);
            tasks.push(tokio::spawn(run(
                shared.clone(),
                rx,
                closing.clone(),
                config.max_in_flight,
                in_flight.clone(),
            )));
            Some(tx)
        };
        Ok(NatsSink {
            shared,
            required: config.required,
            queue,
            in_flight,
            closing,
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// Publishes `event`. A required sink returns once JetStream acknowledged it (or every
    /// attempt failed); a best-effort sink returns at once, dropping the event when its buffer
    /// is full.
    pub async fn publish(&self, event: &Event) -> Result<(), SinkError> {
        let job = self.shared.job(event);
        let Some(queue) = &self.queue else {
            return self
                .shared
                .deliver(job, None)
                .await
                .map_err(|reason| SinkError::Nats {
                    url: self.shared.url.clone(),
                    reason,
                });
        };
        if self.closing.is_cancelled() || queue.try_send(job).is_err() {
            self.shared.metrics.nats_dropped();
        }
        Ok(())
    }

    /// Stops taking events and lets the best-effort buffer drain for at most `grace` (no retry
    /// after the close); what is left then is dropped, logged and counted.
    pub async fn close(&self, grace: Duration) {
        self.closing.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = 0;
        for mut task in tasks {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                if let Some(queue) = &self.queue {
                    left = queue.max_capacity() - queue.capacity()
                        + self.in_flight.load(Ordering::Acquire);
                }
                task.abort();
            }
        }
        if left > 0 {
            self.shared
                .metrics
                .sink_undelivered_at_shutdown("nats", &self.shared.url, left);
        }
    }
}

fn check_readable(key: &str, path: &std::path::Path) -> Result<(), SinkError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| SinkError::Setup(format!("cannot read {key} {}: {e}", path.display())))
}

/// Connects in the background, hands the JetStream context to the publishers, then checks that
/// a stream captures the sink's subjects and that its duplicate window covers the router's
/// dedupe window.
async fn connect(
    shared: Arc<Shared>,
    options: async_nats::ConnectOptions,
    addrs: Vec<async_nats::ServerAddr>,
    context_tx: watch::Sender<Option<jetstream::Context>>,
    dedupe_window: Duration,
    closing: CancellationToken,
) {
    let client = match options.connect(addrs).await {
        Ok(client) => client,
        Err(e) => {
            // Only a setup error gets here: with retry_on_initial_connect the client connects in
            // the background.
            tracing::error!(url = %shared.url, error = %e, "Cannot set up the NATS client.");
            shared.health.failed(&shared.component, &e);
            return;
        }
    };
    let context = jetstream::ContextBuilder::new()
        .timeout(shared.ack_timeout)
        .build(client);
    let _ = context_tx.send(Some(context.clone()));
    let probe = format!("{}.{}.>", shared.prefix, escape_token(&shared.cluster));
    loop {
        let found = tokio::select! {
            _ = closing.cancelled() => return,
            found = context.stream_by_subject(probe.clone()) => found,
        };
        let retry = match found {
            Ok(name) => match context.get_stream(&name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => {
                        let window = info.config.duplicate_window;
                        if window < dedupe_window {
                            tracing::warn!(
                                stream = %name, duplicate_window_s = window.as_secs(),
                                dedupe_window_s = dedupe_window.as_secs(),
                                "The JetStream stream's duplicate window is shorter than router.dedupe_window_seconds: a repeat after it is stored twice."
                            );
                        } else {
                            tracing::info!(stream = %name, replicas = info.config.num_replicas, "The NATS sink publishes into a JetStream stream.");
                        }
                        return;
                    }
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::context::GetStreamByNameErrorKind::NotFound
                ) =>
            {
                let reason = format!("no JetStream stream captures `{probe}`");
                tracing::warn!(url = %shared.url, "{reason}: publishes will fail until one is created.");
                shared.health.failed(&shared.component, &reason);
                reason
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(error = %retry, "Checking the JetStream stream again later.");
        tokio::select! {
            _ = closing.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// The best-effort publisher: at most `max_in_flight` publishes awaiting their ack at once.
async fn run(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Job>,
    closing: CancellationToken,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
) {
    let jobs = futures::stream::unfold(
        (rx, closing.clone(), false),
        |(mut rx, closing, mut closed)| async move {
            loop {
                tokio::select! {
                    biased;
                    _ = closing.cancelled(), if !closed => {
                        // No new jobs; the queued ones are still received.
                        rx.close();
                        closed = true;
                    }
                    job = rx.recv() => return job.map(|job| (job, (rx, closing, closed))),
                }
            }
        },
    );
    jobs.for_each_concurrent(max_in_flight, |job| {
        let (shared, closing, in_flight) = (shared.clone(), closing.clone(), in_flight.clone());
        async move {
            in_flight.fetch_add(1, Ordering::AcqRel);
            let _ = shared.deliver(job, Some(&closing)).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    })
    .await;
}

impl Shared {
    fn job(&self, event: &Event) -> Job {
        let (headers, payload) = encode(event, &self.cluster, self.mode);
        Job {
            subject: subject(&self.prefix, &self.cluster, event),
            headers,
            payload,
            id: event.id.clone(),
        }
    }

    /// Publishes `job` until JetStream acknowledges it, at most `max_attempts` times with
    /// backoff (none after `closing`), every attempt with the same `Nats-Msg-Id`.
    async fn deliver(&self, job: Job, closing: Option<&CancellationToken>) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                if closing.is_some_and(CancellationToken::is_cancelled) {
                    break;
                }
                self.metrics
                    .nats_attempt_failed(&job.id, attempt - 1, &last);
                tokio::time::sleep(super::webhook::backoff(self.initial_backoff, attempt)).await;
            }
            match self.attempt(&job).await {
                Ok(ack) => {
                    self.health.ok(&self.component);
                    self.metrics
                        .nats_acked(&job.id, ack.duplicate, start.elapsed());
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        self.health.failed(&self.component, &last);
        self.metrics.nats_failed(&job.id, &last, start.elapsed());
        Err(last)
    }

    async fn attempt(&self, job: &Job) -> Result<jetstream::publish::PublishAck, String> {
        // Bounds every wait of one attempt: for the first connection, for a place in the
        // client's queue or an ack permit, and for the ack itself.
        let limit = self.ack_timeout * 2;
        let publish = async {
            let mut context = self.context.clone();
            let context = match context.wait_for(Option::is_some).await {
                Ok(c) => c.clone(),
                Err(_) => None,
            };
            let Some(context) = context else {
                return Err("the NATS client has stopped".to_owned());
            };
            let message = PublishMessage::build()
                .payload(job.payload.clone())
                .headers(job.headers.clone());
            let ack = context
                .send_publish(job.subject.clone(), message)
                .await
                .map_err(|e| self.describe(&job.subject, &e))?;
            ack.await.map_err(|e| self.describe(&job.subject, &e))
        };
        match tokio::time::timeout(limit, publish).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "not connected, or no publish acknowledgement within {} ms",
                limit.as_millis()
            )),
        }
    }

    fn describe(&self, subject: &str, e: &jetstream::context::PublishError) -> String {
        match e.kind() {
            PublishErrorKind::StreamNotFound => {
                format!("no JetStream stream captures `{subject}` (no responders)")
            }
            PublishErrorKind::TimedOut => format!(
                "no publish acknowledgement within {} ms",
                self.ack_timeout.as_millis()
            ),
            _ => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
