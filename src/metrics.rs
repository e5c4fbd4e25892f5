//! Telemetry from one place: each method is one happening, and writes its `tracing` line and
//! moves its metric together, so logs and metrics never drift. Labels come only from bounded
//! sets (providers, kinds, reasons, outcomes, stages); never node, instance or event ids.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ack::Outcome;
use crate::event::{Event, Provider};
use crate::providers::{Ignored, ParseError};

mod lifecycle;
mod pools;
mod recovery;

pub use recovery::MAX_POOLS;

/// Histogram buckets in seconds, from 5 ms to the 600 s a maintenance lead can take.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderKind {
    provider: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderReason {
    provider: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcome {
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionOutcome {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderStage {
    provider: &'static str,
    stage: &'static str,
}

/// Every metric of the router, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_received: Family<ProviderKind, Counter>,
    events_ignored: Family<ProviderReason, Counter>,
    events_invalid: Family<ProviderLabel, Counter>,
    event_delivery_lag: HistogramFamily<ProviderKind>,
    messages: Family<ProviderOutcome, Counter>,
    message_duration: HistogramFamily<ProviderOutcome>,
    action_duration: HistogramFamily<ActionOutcome>,
    actions: Family<ActionOutcome, Counter>,
    evictions: Family<OutcomeLabel, Counter>,
    drain_deadline_missed: Counter,
    replacement_latency: HistogramFamily<ProviderKind>,
    replacements_pending: Gauge,
    replacement_timeouts: Counter,
    sink_deliveries: Family<SinkOutcome, Counter>,
    source_errors: Family<ProviderStage, Counter>,
    source_backlog: Family<ProviderLabel, Gauge>,
    webhook_requests: Family<OutcomeLabel, Counter>,
    recovery: recovery::Recovery,
    hardening: Hardening,
    stream: Stream,
    lifecycle: lifecycle::Lifecycle,
    pools: pools::Pools,
}

/// The metrics of the hardening against hostile traffic, outages and fan-out (one block, so
/// that it reads as one piece).
#[derive(Debug, Default)]
struct Hardening {
    http_connections: Gauge,
    http_connections_closed: Family<ReasonLabel, Counter>,
    http_accept_errors: Counter,
    ingest_requests: Family<OutcomeLabel, Counter>,
    events_over_cap: Family<ProviderLabel, Counter>,
    accept_log: LogSampler,
    unauthorized_log: LogSampler,
    eventgrid_unauthorized_log: LogSampler,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Lets one log line through per [`LogSampler::EVERY`] and counts the ones held back, so that a
/// flood of the same refusal costs one line per interval, which says how many it stands for.
#[derive(Debug, Default)]
pub struct LogSampler {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogSampler {
    /// One line per this long.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// `Some(held back since the last line)` when a line may be written now.
    pub fn allow(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held) = &mut *state;
        match last {
            Some(t) if now.saturating_duration_since(*t) < Self::EVERY => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("eviction_router");
        let m = Metrics {
            events_received: Family::default(),
            events_ignored: Family::default(),
            events_invalid: Family::default(),
            event_delivery_lag: Family::new_with_constructor(histogram),
            messages: Family::default(),
            message_duration: Family::new_with_constructor(histogram),
            action_duration: Family::new_with_constructor(histogram),
            actions: Family::default(),
            evictions: Family::default(),
            drain_deadline_missed: Counter::default(),
            replacement_latency: Family::new_with_constructor(histogram),
            replacements_pending: Gauge::default(),
            replacement_timeouts: Counter::default(),
            sink_deliveries: Family::default(),
            source_errors: Family::default(),
            source_backlog: Family::default(),
            webhook_requests: Family::default(),
            recovery: recovery::Recovery::new(),
            hardening: Hardening::default(),
            stream: Stream::new(),
            lifecycle: lifecycle::Lifecycle::default(),
            pools: pools::Pools::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "events_received",
            "Normalised events received",
            m.events_received.clone(),
        );
        r.register(
            "events_ignored",
            "Valid messages or events not acted on",
            m.events_ignored.clone(),
        );
        r.register(
            "events_invalid",
            "Malformed messages (poison)",
            m.events_invalid.clone(),
        );
        r.register(
            "event_delivery_lag_seconds",
            "Time from the provider's occurred_at to the router receiving the event",
            m.event_delivery_lag.clone(),
        );
        r.register(
            "messages",
            "Messages settled, by outcome",
            m.messages.clone(),
        );
        r.register(
            "message_duration_seconds",
            "Router-added latency: from the source receiving a message to its outcome",
            m.message_duration.clone(),
        );
        r.register(
            "action_duration_seconds",
            "Duration of cluster actions",
            m.action_duration.clone(),
        );
        r.register("actions", "Cluster actions, by outcome", m.actions.clone());
        r.register(
            "evictions",
            "Pod evictions, by outcome",
            m.evictions.clone(),
        );
        r.register(
            "drain_deadline_missed",
            "Drains that did not finish before the deadline",
            m.drain_deadline_missed.clone(),
        );
        r.register(
            "replacement_latency_seconds",
            "Time from notice to a replacement Node being Ready",
            m.replacement_latency.clone(),
        );
        r.register(
            "replacements_pending",
            "Replacements being waited for",
            m.replacements_pending.clone(),
        );
        r.register(
            "replacement_timeouts",
            "Replacements given up on",
            m.replacement_timeouts.clone(),
        );
        r.register(
            "sink_deliveries",
            "Stream sink deliveries, by outcome",
            m.sink_deliveries.clone(),
        );
        r.register(
            "source_errors",
            "Errors talking to a source, by stage",
            m.source_errors.clone(),
        );
        r.register(
            "source_backlog_messages",
            "Approximate messages waiting in the source queue",
            m.source_backlog.clone(),
        );
        r.register(
            "webhook_requests",
            "Event Grid webhook requests, by outcome (handled, ignored, retry, poison, validated, unauthorized, too_large, busy)",
            m.webhook_requests.clone(),
        );
        m.recovery.register(r);
        m.hardening.register(r);
        m.stream.register(r);
        m.lifecycle.register(r);
        m.pools.register(r);
        // Series operators alert on exist from the start at zero, so that `increase()` sees the
        // first event and dashboards show zero rather than no data.
        for provider in Provider::ALL {
            let _ = m.events_invalid.get_or_create(&ProviderLabel {
                provider: provider.as_str(),
            });
            for kind in crate::event::Kind::ALL {
                let _ = m.events_received.get_or_create(&ProviderKind {
                    provider: provider.as_str(),
                    kind: kind.as_str(),
                });
            }
        }
        for outcome in ["evicted", "pdb_blocked", "error"] {
            let _ = m.evictions.get_or_create(&OutcomeLabel { outcome });
        }
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A normalised event arrived, `lag` after the provider says it occurred.
    pub fn event_received(&self, event: &Event, lag: Duration) {
        let d = &event.data;
        tracing::info!(
            provider = %d.provider, kind = %d.kind, id = %event.id, instance = %d.instance.id,
            provider_event = %d.provider_event, lag_ms = lag.as_millis() as u64,
            "Received an event."
        );
        self.count_received(event, lag);
    }

    /// A message or event was valid but not acted on.
    pub fn event_ignored(&self, provider: Provider, ignored: &Ignored) {
        tracing::info!(provider = %provider, reason = ignored.reason.as_str(), detail = %ignored.detail, "Ignored a message.");
        self.count_ignored(provider, ignored);
    }

    /// A message could not be normalised: it is poison.
    pub fn event_invalid(&self, provider: Provider, message_id: Option<&str>, error: &ParseError) {
        tracing::warn!(provider = %provider, message_id, kind = error.kind(), error = %error, "Rejected a malformed message.");
        self.events_invalid
            .get_or_create(&ProviderLabel {
                provider: provider.as_str(),
            })
            .inc();
    }

    /// A message was settled.
    pub fn message_settled(
        &self,
        provider: Provider,
        message_id: Option<&str>,
        attempt: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) {
        let took_ms = took.as_secs_f64() * 1e3;
        if attempt.is_some_and(|a| a > 1) || matches!(outcome, Outcome::Retry | Outcome::Poison) {
            // Redeliveries and anything but success are what an operator looks for.
            tracing::info!(provider = %provider, message_id, attempt, outcome = outcome.as_str(), took_ms, "Settled a message.");
        } else {
            tracing::debug!(provider = %provider, message_id, attempt, outcome = outcome.as_str(), took_ms, "Settled a message.");
        }
        let labels = ProviderOutcome {
            provider: provider.as_str(),
            outcome: outcome.as_str(),
        };
        self.messages.get_or_create(&labels).inc();
        self.message_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A message ran past the per-message timeout.
    pub fn message_timed_out(&self, provider: Provider, message_id: Option<&str>, limit: Duration) {
        tracing::warn!(provider = %provider, message_id, limit_s = limit.as_secs(), "A message took too long; releasing it for redelivery.");
    }

    /// A cluster action finished.
    pub fn action(&self, action: &'static str, outcome: &'static str, took: Duration) {
        let labels = ActionOutcome { action, outcome };
        self.actions.get_or_create(&labels).inc();
        self.action_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A pod eviction attempt ended (`evicted`, `pdb_blocked`, `error`).
    pub fn eviction(&self, outcome: &'static str) {
        self.evictions
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A drain did not finish before its deadline.
    pub fn drain_deadline_missed(&self) {
        self.drain_deadline_missed.inc();
    }

    /// A replacement Node became Ready `latency` after the notice.
    pub fn replacement_ready(&self, provider: Provider, kind: &'static str, latency: Duration) {
        self.replacement_latency
            .get_or_create(&ProviderKind {
                provider: provider.as_str(),
                kind,
            })
            .observe(latency.as_secs_f64());
    }

    /// Sets how many replacements are being waited for.
    pub fn replacements_pending(&self, n: i64) {
        self.replacements_pending.set(n);
    }

    /// A replacement was given up on.
    pub fn replacement_timeout(&self) {
        self.replacement_timeouts.inc();
    }

    /// A stream sink delivery ended (`delivered`, `failed`, `dropped`).
    pub fn sink_delivery(&self, sink: &'static str, outcome: &'static str) {
        self.sink_deliveries
            .get_or_create(&SinkOutcome { sink, outcome })
            .inc();
    }

    /// A source call failed.
    pub fn source_error(
        &self,
        provider: Provider,
        stage: &'static str,
        error: &dyn std::fmt::Display,
    ) {
        tracing::warn!(provider = %provider, stage, error = %error, "A source call failed; backing off.");
        self.source_errors
            .get_or_create(&ProviderStage {
                provider: provider.as_str(),
                stage,
            })
            .inc();
    }

    /// The Event Grid webhook answered a request. Refusals are logged; accepted requests are
    /// logged by the router as events.
    pub fn webhook_request(&self, outcome: &'static str, status: u16, detail: &str) {
        match outcome {
            // Anyone who reaches the URL can send these: one line per interval, with a count.
            "unauthorized" => {
                if let Some(held) = self
                    .hardening
                    .eventgrid_unauthorized_log
                    .allow(std::time::Instant::now())
                {
                    tracing::warn!(
                        outcome,
                        status,
                        detail,
                        similar_held_back = held,
                        "Refused an Event Grid webhook request."
                    )
                }
            }
            "too_large" | "busy" | "body_timeout" | "broken_body" => {
                tracing::warn!(
                    outcome,
                    status,
                    detail,
                    "Refused an Event Grid webhook request."
                )
            }
            "validated" => {
                tracing::info!(
                    outcome,
                    status,
                    detail,
                    "Answered the Event Grid subscription validation."
                )
            }
            _ => tracing::debug!(outcome, status, "Answered an Event Grid webhook request."),
        }
        self.webhook_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The source's queue holds about `n` messages.
    pub fn source_backlog(&self, provider: Provider, n: i64) {
        self.source_backlog
            .get_or_create(&ProviderLabel {
                provider: provider.as_str(),
            })
            .set(n);
    }
}

impl Hardening {
    fn register(&self, r: &mut Registry) {
        r.register(
            "http_connections",
            "HTTP connections open",
            self.http_connections.clone(),
        );
        r.register(
            "http_connections_closed",
            "HTTP connections closed by the router, by reason (header_timeout, idle_timeout, evicted, refused, shutdown)",
            self.http_connections_closed.clone(),
        );
        r.register(
            "http_accept_errors",
            "Failed accepts of HTTP connections (out of file descriptors, say)",
            self.http_accept_errors.clone(),
        );
        r.register(
            "events_over_cap",
            "Events a message named beyond router.max_events_per_message: not acted on",
            self.events_over_cap.clone(),
        );
        r.register(
            "ingest_requests",
            "HTTP ingest requests, by outcome (handled, ignored, retry, poison, unauthorized, too_large, body_timeout, broken_body)",
            self.ingest_requests.clone(),
        );
    }
}

/// What the hardening against hostile traffic, outages and fan-out reports.
impl Metrics {
    /// How many HTTP connections are open.
    pub fn http_connections_open(&self, n: usize) {
        self.hardening
            .http_connections
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The router closed an HTTP connection: `header_timeout`, `idle_timeout`, `evicted` (to
    /// make room at the connection limit), `refused` (at the limit, every connection busy),
    /// `shutdown`. Logged at debug level only: hostile traffic must not flood the log.
    pub fn http_connection_closed(&self, reason: &'static str) {
        tracing::debug!(reason, "Closed an HTTP connection.");
        if reason == "refused" {
            self.warn_sampled(
                &self.hardening.accept_log,
                "Refused an HTTP connection: every connection has a request in flight (server.max_connections).",
            );
        }
        self.hardening
            .http_connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Accepting an HTTP connection failed.
    pub fn http_accept_failed(&self, error: &std::io::Error) {
        if let Some(held) = self.hardening.accept_log.allow(std::time::Instant::now()) {
            tracing::warn!(error = %error, similar_held_back = held, "Cannot accept an HTTP connection.");
        }
        self.hardening.http_accept_errors.inc();
    }

    /// Connections still open when the shutdown deadline came were dropped.
    pub fn http_connections_dropped_at_shutdown(&self, n: usize) {
        tracing::warn!(
            connections = n,
            "HTTP connections still open at the end of the grace period were closed."
        );
        self.hardening
            .http_connections_closed
            .get_or_create(&ReasonLabel { reason: "shutdown" })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The HTTP ingest endpoint answered a request. A refused token is logged at most once per
    /// [`LogSampler::EVERY`], with the count held back.
    pub fn ingest_request(&self, outcome: &'static str, status: u16) {
        if outcome == "unauthorized" {
            if let Some(held) = self
                .hardening
                .unauthorized_log
                .allow(std::time::Instant::now())
            {
                tracing::warn!(
                    status,
                    similar_held_back = held,
                    "Refused an ingest request: missing or wrong bearer token."
                );
            }
        } else {
            tracing::debug!(outcome, status, "Answered an ingest request.");
        }
        self.hardening
            .ingest_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A sink still held `n` events when the shutdown left it no more time: they are dropped.
    pub fn sink_undelivered_at_shutdown(&self, sink: &'static str, url: &str, n: usize) {
        tracing::warn!(
            sink,
            url,
            events = n,
            "A sink could not deliver what it held before the shutdown; dropping it."
        );
        self.sink_deliveries
            .get_or_create(&SinkOutcome {
                sink,
                outcome: "dropped",
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The metrics of a received event, logged by the caller.
    fn count_received(&self, event: &Event, lag: Duration) {
        let d = &event.data;
        let labels = ProviderKind {
            provider: d.provider.as_str(),
            kind: d.kind.as_str(),
        };
        self.events_received.get_or_create(&labels).inc();
        self.event_delivery_lag
            .get_or_create(&labels)
            .observe(lag.as_secs_f64());
    }

    /// The metric of an ignored event, logged by the caller.
    fn count_ignored(&self, provider: Provider, ignored: &Ignored) {
        self.events_ignored
            .get_or_create(&ProviderReason {
                provider: provider.as_str(),
                reason: ignored.reason.as_str(),
            })
            .inc();
    }

    /// [`Metrics::event_received`] for one of many events of a message: logged at debug level,
    /// the message's summary line ([`Metrics::message_fanned_out`]) says the rest.
    pub fn event_received_quietly(&self, event: &Event, lag: Duration) {
        let d = &event.data;
        tracing::debug!(
            provider = %d.provider, kind = %d.kind, id = %event.id, instance = %d.instance.id,
            lag_ms = lag.as_millis() as u64, "Received an event."
        );
        self.count_received(event, lag);
    }

    /// [`Metrics::event_ignored`] for one of many events of a message, at debug level.
    pub fn event_ignored_quietly(&self, provider: Provider, ignored: &Ignored) {
        tracing::debug!(provider = %provider, reason = ignored.reason.as_str(), detail = %ignored.detail, "Ignored an event.");
        self.count_ignored(provider, ignored);
    }

    /// One message became many events: one line for all of them.
    #[allow(clippy::too_many_arguments, reason = "one line, one field per count")]
    pub fn message_fanned_out(
        &self,
        provider: Provider,
        message_id: Option<&str>,
        events: usize,
        acted: usize,
        foreign: usize,
        duplicate: usize,
        retry: usize,
        over_cap: usize,
    ) {
        tracing::info!(
            provider = %provider, message_id, events, acted, foreign, duplicate, retry, over_cap,
            "Handled a message of many events."
        );
    }

    /// A message named more events than `router.max_events_per_message`: the first `kept` are
    /// acted on, `dropped` are counted and not built.
    pub fn events_over_cap(
        &self,
        provider: Provider,
        message_id: Option<&str>,
        kept: usize,
        dropped: usize,
    ) {
        tracing::warn!(
            provider = %provider, message_id, kept, dropped,
            "A message named more events than router.max_events_per_message; acting on the first ones only."
        );
        self.hardening
            .events_over_cap
            .get_or_create(&ProviderLabel {
                provider: provider.as_str(),
            })
            .inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
    }

    /// Elements of a batch are malformed (the others were handled): one line for all, each
    /// counted in `events_invalid_total`.
    pub fn batch_elements_invalid(
        &self,
        provider: Provider,
        message_id: Option<&str>,
        invalid: &[crate::providers::Invalid],
    ) {
        // The first few say enough; the count says how many.
        let shown: Vec<String> = invalid
            .iter()
            .take(5)
            .map(|i| format!("[{}] {}: {}", i.index, i.kind, i.error))
            .collect();
        tracing::warn!(
            provider = %provider, message_id, invalid = invalid.len(), first = %shown.join("; "),
            "Rejected malformed elements of a batch; the valid ones were handled."
        );
        self.events_invalid
            .get_or_create(&ProviderLabel {
                provider: provider.as_str(),
            })
            .inc_by(u64::try_from(invalid.len()).unwrap_or(u64::MAX));
    }

    fn warn_sampled(&self, sampler: &LogSampler, message: &'static str) {
        if let Some(held) = sampler.allow(std::time::Instant::now()) {
            tracing::warn!(similar_held_back = held, "{message}");
        }
    }
}

// --- The live stream: the NATS JetStream sink and the SSE endpoint ----------------------------

/// The metrics of the NATS sink and of `GET /v1/events` (one block, so that it reads as one
/// piece). Deliveries themselves are `sink_deliveries_total{sink="nats"|"sse"}`.
#[derive(Debug)]
struct Stream {
    nats_connected: Gauge,
    nats_reconnects: Counter,
    nats_publish_duration: HistogramFamily<OutcomeLabel>,
    nats_publish_retries: Counter,
    sse_subscribers: Gauge,
    sse_subscribers_closed: Family<ReasonLabel, Counter>,
    sse_events_missed: Counter,
    nats_error_log: LogSampler,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            nats_connected: Gauge::default(),
            nats_reconnects: Counter::default(),
            nats_publish_duration: Family::new_with_constructor(histogram),
            nats_publish_retries: Counter::default(),
            sse_subscribers: Gauge::default(),
            sse_subscribers_closed: Family::default(),
            sse_events_missed: Counter::default(),
            nats_error_log: LogSampler::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "nats_connected",
            "NATS sinks connected to a server",
            self.nats_connected.clone(),
        );
        r.register(
            "nats_reconnects",
            "Times a NATS sink lost its server connection",
            self.nats_reconnects.clone(),
        );
        r.register(
            "nats_publish_duration_seconds",
            "From handing an event to JetStream to its publish acknowledgement, by outcome (acked, duplicate, failed)",
            self.nats_publish_duration.clone(),
        );
        r.register(
            "nats_publish_retries",
            "JetStream publish attempts after the first (same Nats-Msg-Id)",
            self.nats_publish_retries.clone(),
        );
        r.register(
            "sse_subscribers",
            "Subscribers of GET /v1/events",
            self.sse_subscribers.clone(),
        );
        r.register(
            "sse_subscribers_closed",
            "Subscribers of GET /v1/events that ended or were refused, by reason (slow: cut off a buffer behind; limit: refused at max_subscribers; shutdown; gone: the client left)",
            self.sse_subscribers_closed.clone(),
        );
        r.register(
            "sse_events_missed",
            "Events a resuming subscriber asked for that had left the ring already",
            self.sse_events_missed.clone(),
        );
    }
}

/// What the live stream reports.
impl Metrics {
    /// A NATS sink (re)connected (`up`) or lost its connection.
    pub fn nats_connection(&self, url: &str, up: bool) {
        if up {
            tracing::info!(url, "Connected to NATS.");
            self.stream.nats_connected.inc();
        } else {
            tracing::warn!(
                url,
                "Lost the connection to NATS; reconnecting with backoff."
            );
            self.stream.nats_connected.dec();
            self.stream.nats_reconnects.inc();
        }
    }

    /// JetStream acknowledged a publish after `took`; `duplicate` when it dropped it as a
    /// repeat of a `Nats-Msg-Id` within the stream's duplicate window.
    pub fn nats_acked(&self, id: &str, duplicate: bool, took: Duration) {
        let outcome = if duplicate { "duplicate" } else { "acked" };
        if duplicate {
            tracing::debug!(
                id,
                "JetStream dropped a repeated publish (same Nats-Msg-Id)."
            );
        }
        self.stream
            .nats_publish_duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
        self.sink_delivery("nats", if duplicate { "duplicate" } else { "delivered" });
    }

    /// One publish attempt failed; another follows with the same `Nats-Msg-Id`. Logged at most
    /// once per [`LogSampler::EVERY`] at warn level: an outage fails every event alike.
    pub fn nats_attempt_failed(&self, id: &str, attempt: u32, error: &dyn std::fmt::Display) {
        tracing::debug!(id, attempt, error = %error, "A JetStream publish attempt failed.");
        if let Some(held) = self.stream.nats_error_log.allow(std::time::Instant::now()) {
            tracing::warn!(error = %error, similar_held_back = held, "A JetStream publish failed; retrying.");
        }
        self.stream.nats_publish_retries.inc();
    }

    /// Every attempt to publish an event failed after `took`.
    pub fn nats_failed(&self, id: &str, error: &dyn std::fmt::Display, took: Duration) {
        tracing::warn!(id, error = %error, "JetStream did not take an event.");
        self.stream
            .nats_publish_duration
            .get_or_create(&OutcomeLabel { outcome: "failed" })
            .observe(took.as_secs_f64());
        self.sink_delivery("nats", "failed");
    }

    /// A best-effort NATS sink's buffer was full: the event is dropped for it.
    pub fn nats_dropped(&self) {
        if let Some(held) = self.stream.nats_error_log.allow(std::time::Instant::now()) {
            tracing::warn!(
                similar_held_back = held,
                "The NATS sink's buffer is full; dropped an event for it."
            );
        }
        self.sink_delivery("nats", "dropped");
    }

    /// A subscriber of `GET /v1/events` joined; `subscribers` are open now.
    pub fn sse_subscribed(&self, subscribers: usize, resumed: bool) {
        tracing::debug!(
            subscribers,
            resumed,
            "A subscriber joined the event stream."
        );
        self.stream
            .sse_subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
    }

    /// A subscriber left or was ended: `slow` (fell a whole buffer behind), `limit` (refused
    /// at `max_subscribers`), `shutdown`, `gone` (the client went away).
    pub fn sse_closed(&self, reason: &'static str, subscribers: usize) {
        match reason {
            "slow" => tracing::warn!(
                "Cut off a subscriber of the event stream that fell behind; it may resume with Last-Event-ID."
            ),
            "limit" => tracing::warn!(
                subscribers,
                "Refused a subscriber of the event stream: sinks[].max_subscribers reached."
            ),
            _ => tracing::debug!(reason, "A subscriber left the event stream."),
        }
        self.stream
            .sse_subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        self.stream
            .sse_subscribers_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A resuming subscriber asked for `n` events that had left the ring.
    pub fn sse_missed(&self, n: u64) {
        tracing::info!(
            events = n,
            "A subscriber resumed from before the ring; it missed events."
        );
        self.stream.sse_events_missed.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_metric_is_exposed_with_its_prefix() {
        let m = Metrics::new();
        m.action("cordon", "ok", Duration::from_millis(3));
        m.sink_delivery("stdout", "delivered");
        m.source_error(Provider::Aws, "receive", &"refused");
        m.source_backlog(Provider::Aws, 3);
        m.replacement_ready(Provider::Aws, "interruption", Duration::from_secs(90));
        m.events_ignored
            .get_or_create(&ProviderReason {
                provider: "aws",
                reason: "duplicate",
            })
            .inc();
        m.event_delivery_lag
            .get_or_create(&ProviderKind {
                provider: "aws",
                kind: "interruption",
            })
            .observe(1.0);
        let text = m.encode();
        for name in [
            "eviction_router_events_received_total",
            "eviction_router_events_ignored_total",
            "eviction_router_events_invalid_total",
            "eviction_router_event_delivery_lag_seconds",
            "eviction_router_action_duration_seconds",
            "eviction_router_actions_total",
            "eviction_router_evictions_total",
            "eviction_router_drain_deadline_missed_total",
            "eviction_router_replacement_latency_seconds",
            "eviction_router_replacements_pending",
            "eviction_router_replacement_timeouts_total",
            "eviction_router_sink_deliveries_total",
            "eviction_router_source_errors_total",
            "eviction_router_source_backlog_messages",
        ] {
            assert!(
                text.contains(&format!("# TYPE {}", name.trim_end_matches("_total"))),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains("eviction_router_drain_deadline_missed_total 0"),
            "{text}"
        );
        assert!(text.contains("le=\"600.0\""), "buckets reach 600 s");
    }
}
