//! The router: normalise → dedupe `(source, id)` → cluster actions → sinks → [`Outcome`].
//!
//! Deliveries arrive on one bounded channel from every source; at most `concurrency` are handled
//! at once, each within the per-message timeout. On shutdown the channel is closed by the
//! sources, and what is in flight finishes (or is dropped, which counts as retry).

pub mod config;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use self::config::RouterConfig;
use crate::ack::{Delivery, Outcome};
use crate::cluster::{Applied, Cluster};
use crate::dedupe::{Dedupe, Seen};
use crate::event::{Event, Provider};
use crate::metrics::Metrics;
use crate::providers::{self, IgnoreReason, Ignored};
use crate::sinks::Sinks;

/// A message of more events than this is logged as one line with counts; its events are
/// logged at debug level only.
pub const LOG_EACH_EVENT_UP_TO: usize = 10;

/// What became of the events of one message, for its summary line.
#[derive(Debug, Default)]
struct Tally {
    events: usize,
    acted: usize,
    foreign: usize,
    duplicate: usize,
    retry: usize,
}

/// What the router did with one event, for callers that show it (the demo).
#[derive(Debug)]
pub struct Report {
    /// The event, with `node` filled when it was resolved.
    pub event: Event,
    /// What the cluster did or planned.
    pub applied: Applied,
}

/// The shared state of the handlers.
#[derive(Debug)]
pub struct Router {
    dedupe: Mutex<Dedupe>,
    cluster: Cluster,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    timeout: Duration,
    max_events: usize,
    /// Whether this replica may act (it leads, or there is no election).
    active: tokio::sync::watch::Receiver<bool>,
}

impl Router {
    /// A router over `cluster` and `sinks`.
    pub fn new(
        config: &RouterConfig,
        cluster: Cluster,
        sinks: Sinks,
        metrics: Arc<Metrics>,
    ) -> Self {
        Router {
            dedupe: Mutex::new(Dedupe::new(config.dedupe_window(), config.dedupe_capacity)),
            cluster,
            sinks,
            metrics,
            timeout: config.message_timeout(),
            max_events: config.max_events_per_message,
            active: tokio::sync::watch::channel(true).1,
        }
    }

    /// Acts only while `active` is true (leader election); otherwise every message is retry.
    pub fn with_active(mut self, active: tokio::sync::watch::Receiver<bool>) -> Self {
        self.active = active;
        self
    }

    /// The metrics the router writes to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Handles one delivery within the per-message timeout and settles it.
    pub async fn handle(&self, delivery: Delivery) {
        let provider = delivery.provider;
        let outcome = match tokio::time::timeout(
            self.timeout,
            self.handle_body(
                provider,
                &delivery.body,
                delivery.received_at,
                delivery.message_id.as_deref(),
                &mut Vec::new(),
            ),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                self.metrics.message_timed_out(
                    provider,
                    delivery.message_id.as_deref(),
                    self.timeout,
                );
                Outcome::Retry
            }
        };
        self.metrics.message_settled(
            provider,
            delivery.message_id.as_deref(),
            delivery.attempt,
            outcome,
            since(delivery.received_at),
        );
        delivery.settle(outcome);
    }

    /// Handles one message body; what was done for each event is appended to `reports`.
    pub async fn handle_body(
        &self,
        provider: Provider,
        body: &[u8],
        received_at: Timestamp,
        message_id: Option<&str>,
        reports: &mut Vec<Report>,
    ) -> Outcome {
        if !*self.active.borrow() {
            tracing::debug!(provider = %provider, "Not the leader; asking for redelivery.");
            return Outcome::Retry;
        }
        let parsed = match providers::normalize_with(provider, body, self.max_events) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.metrics.event_invalid(provider, message_id, &e);
                return Outcome::Poison;
            }
        };
        if parsed.dropped > 0 {
            self.metrics
                .events_over_cap(provider, message_id, parsed.events.len(), parsed.dropped);
        }
        if !parsed.invalid.is_empty() {
            self.metrics
                .batch_elements_invalid(provider, message_id, &parsed.invalid);
        }
        // Past a handful of events, one line for the message instead of one per event.
        let quiet = parsed.events.len() > LOG_EACH_EVENT_UP_TO;
        let mut tally = Tally::default();
        for ignored in &parsed.ignored {
            self.metrics.event_ignored(provider, ignored);
        }
        let mut outcome = Outcome::Ignored;
        for event in parsed.events {
            let lag = received_at.duration_since(event.data.occurred_at);
            let lag = lag.try_into().unwrap_or(Duration::ZERO);
            if quiet {
                self.metrics.event_received_quietly(&event, lag);
            } else {
                self.metrics.event_received(&event, lag);
            }
            tally.events += 1;
            let key = Dedupe::key(&event.source(), &event.id);
            let seen = self.dedupe_lock().begin(&key, Instant::now());
            match seen {
                Seen::Duplicate => {
                    let ignored = Ignored {
                        reason: IgnoreReason::Duplicate,
                        detail: format!("event {}", event.id),
                    };
                    tally.duplicate += 1;
                    if quiet {
                        self.metrics.event_ignored_quietly(provider, &ignored);
                    } else {
                        self.metrics.event_ignored(provider, &ignored);
                    }
                }
                Seen::InFlight => {
                    if quiet {
                        tracing::debug!(id = %event.id, "The same event is being handled already; asking for redelivery.");
                    } else {
                        tracing::info!(id = %event.id, "The same event is being handled already; asking for redelivery.");
                    }
                    tally.retry += 1;
                    outcome = Outcome::Retry;
                }
                Seen::New => {
                    // Ends the in-flight entry whatever ends this future: success, failure,
                    // the message timeout, cancellation or a panic.
                    let mut guard = InFlight {
                        router: self,
                        key: Some(key),
                    };
                    let result = self.handle_event(event, quiet).await;
                    guard.finish(result.is_some());
                    match result {
                        Some(report) => {
                            let acted = !matches!(report.applied, Applied::Foreign);
                            if acted {
                                tally.acted += 1;
                            } else {
                                tally.foreign += 1;
                            }
                            if acted && outcome != Outcome::Retry {
                                outcome = Outcome::Handled;
                            }
                            reports.push(report);
                        }
                        None => {
                            tally.retry += 1;
                            outcome = Outcome::Retry;
                        }
                    }
                }
            }
        }
        if quiet {
            self.metrics.message_fanned_out(
                provider,
                message_id,
                tally.events,
                tally.acted,
                tally.foreign,
                tally.duplicate,
                tally.retry,
                parsed.dropped,
            );
        }
        // A batch with malformed elements: the valid ones were acted on above, and the message
        // is poison so that the queue dead-letters it for inspection (Event Grid: 400), unless
        // a valid one must be retried first (decision record 0009).
        if !parsed.invalid.is_empty() && outcome != Outcome::Retry {
            outcome = Outcome::Poison;
        }
        outcome
    }

    /// Cluster actions, then sinks. `None` when a required step failed.
    async fn handle_event(&self, mut event: Event, quiet: bool) -> Option<Report> {
        let applied = match self.cluster.apply(&event).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::warn!(id = %event.id, kind = e.kind(), status = ?e.status(), error = %e, "A cluster action failed; the message will be retried.");
                return None;
            }
        };
        match &applied {
            Applied::Foreign => {
                let detail = format!(
                    "instance {} is not a Node of this cluster",
                    event.data.instance.id
                );
                let ignored = Ignored {
                    reason: IgnoreReason::ForeignInstance,
                    detail,
                };
                if quiet {
                    self.metrics
                        .event_ignored_quietly(event.data.provider, &ignored);
                } else {
                    self.metrics.event_ignored(event.data.provider, &ignored);
                }
                return Some(Report { event, applied });
            }
            Applied::Acted { node, place, .. } => {
                event.data.node = Some(crate::event::NodeRef { name: node.clone() });
                // Where the Node sits, for the pool statistics downstream; what the provider
                // said stays.
                for (key, value) in place {
                    event
                        .data
                        .details
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
            }
            Applied::Planned(_) => {}
        }
        if let Err(e) = self.sinks.publish(&event).await {
            tracing::warn!(id = %event.id, error = %e, "A required sink failed; the message will be retried.");
            return None;
        }
        self.cluster.observe(&event);
        Some(Report { event, applied })
    }

    /// Publishes an event the router made itself (`replacement_ready`) to the sinks.
    pub async fn publish(&self, event: &Event) {
        if let Err(e) = self.sinks.publish(event).await {
            tracing::warn!(id = %event.id, error = %e, "A sink did not take a router event.");
        }
        self.cluster.observe(event);
    }

    /// The events the cluster side makes: replacements found, pools at risk (once).
    pub fn take_replacements(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::cluster::Emitted>> {
        self.cluster.take_replacements()
    }

    fn dedupe_lock(&self) -> std::sync::MutexGuard<'_, Dedupe> {
        // The dedupe set is plain data; a panic elsewhere cannot leave it half-updated.
        self.dedupe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the sinks after they delivered what they hold, within `grace`. Takes `&self`: in
    /// `kubernetes` mode the cluster's tasks still hold the router when the service stops.
    pub async fn close(&self, grace: Duration) {
        self.sinks.close(grace).await;
    }
}

/// An in-flight dedupe entry: finished as handled by [`InFlight::finish`], or forgotten when
/// dropped unfinished, so that a redelivery is handled afresh instead of being answered "in
/// flight" forever.
struct InFlight<'a> {
    router: &'a Router,
    key: Option<String>,
}

impl InFlight<'_> {
    fn finish(&mut self, succeeded: bool) {
        if let Some(key) = self.key.take() {
            self.router
                .dedupe_lock()
                .finish(&key, succeeded, Instant::now());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Wall-clock time since `t` (zero if the clock stepped back): the router-added latency of a
/// message is measured from the moment its source received it.
fn since(t: Timestamp) -> Duration {
    Timestamp::now()
        .duration_since(t)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

/// Handles deliveries from `rx` with at most `concurrency` at once, until every sender is gone
/// and every handler has finished.
pub async fn serve(router: Arc<Router>, mut rx: mpsc::Receiver<Delivery>, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut handlers = JoinSet::new();
    while let Some(delivery) = rx.recv().await {
        // From here until its handler ends, Events and drains give way to this delivery's admit.
        let admitting = router.cluster.admitting();
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let router = router.clone();
        handlers.spawn(async move {
            router.handle(delivery).await;
            drop(admitting);
            drop(permit);
        });
        // Reap finished handlers so the set does not grow with the message count.
        while handlers.try_join_next().is_some() {}
    }
    while handlers.join_next().await.is_some() {}
}
