//! Stream sinks: where normalised events are published.
//!
//! A sink marked `required` makes the message's outcome wait for its delivery (a failure makes the
//! outcome retry); a best-effort sink takes events into a bounded queue and never blocks an
//! acknowledgement: when its queue is full, the event is dropped for that sink and counted.
//! The SSE sink is always best-effort, and is handed an event only once every required sink took
//! it, so that a retried message does not show its events twice on the live stream.

pub mod config;
pub mod nats;
pub mod sse;
mod stdout;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use self::config::SinkConfig;
use crate::event::Event;
use crate::health::Health;
use crate::metrics::Metrics;

pub use nats::NatsSink;
pub use sse::EventHub;
pub use stdout::StdoutSink;
pub use webhook::WebhookSink;

/// Why a required sink did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to standard output failed.
    #[error("stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// The webhook did not accept the event within its attempts.
    #[error("webhook {url}: {reason}")]
    Webhook {
        /// The sink's URL.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// JetStream did not acknowledge the event within the sink's attempts.
    #[error("nats {url}: {reason}")]
    Nats {
        /// The sink's server URLs (credentials removed).
        url: String,
        /// The last failure.
        reason: String,
    },
    /// A sink could not be set up (bad secret, unreadable secret file).
    #[error("sink setup: {0}")]
    Setup(String),
}

/// Every configured sink.
#[derive(Debug)]
pub struct Sinks {
    stdout: Option<StdoutSink>,
    webhooks: Vec<WebhookSink>,
    nats: Vec<NatsSink>,
    sse: Option<Arc<EventHub>>,
}

impl Sinks {
    /// Starts the sinks of `configs` (webhook and NATS sinks run tasks of their own), reporting
    /// NATS sinks to a health registry of their own.
    pub fn start(configs: &[SinkConfig], metrics: Arc<Metrics>) -> Result<Sinks, SinkError> {
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        Sinks::start_with(configs, metrics, &health, Duration::from_secs(600))
    }

    /// [`Sinks::start`], NATS sinks reporting to `health` (components `nats_sink`, then
    /// `nats_sink_2`, ...) and checking their stream's duplicate window against
    /// `dedupe_window`.
    pub fn start_with(
        configs: &[SinkConfig],
        metrics: Arc<Metrics>,
        health: &Arc<Health>,
        dedupe_window: Duration,
    ) -> Result<Sinks, SinkError> {
        let mut sinks = Sinks {
            stdout: None,
            webhooks: Vec::new(),
            nats: Vec::new(),
            sse: None,
        };
        for config in configs {
            match config {
                SinkConfig::Stdout => sinks.stdout = Some(StdoutSink::new(metrics.clone())),
                SinkConfig::Webhook(w) => {
                    sinks.webhooks.push(WebhookSink::start(w, metrics.clone())?)
                }
                SinkConfig::Nats(n) => {
                    let component = match sinks.nats.len() {
                        0 => "nats_sink".to_owned(),
                        i => format!("nats_sink_{}", i + 1),
                    };
                    sinks.nats.push(NatsSink::start(
                        n,
                        metrics.clone(),
                        health.clone(),
                        component,
                        dedupe_window,
                    )?)
                }
                SinkConfig::Sse(s) => sinks.sse = Some(EventHub::new(s, metrics.clone())),
            }
        }
        Ok(sinks)
    }

    /// The live stream of the SSE sink, when one is configured.
    pub fn event_hub(&self) -> Option<Arc<EventHub>> {
        self.sse.clone()
    }

    /// Publishes `event` to every sink; returns once every required sink took it.
    pub async fn publish(&self, event: &Event) -> Result<(), SinkError> {
        let line = event.to_json_line();
        if let Some(stdout) = &self.stdout {
            stdout.write(&line).await?;
        }
        for webhook in &self.webhooks {
            webhook.publish(&line).await?;
        }
        for nats in &self.nats {
            nats.publish(event).await?;
        }
        if let Some(sse) = &self.sse {
            sse.publish_line(event, line);
        }
        Ok(())
    }

    /// Stops the webhook and NATS tasks after they delivered what they hold, or `grace`
    /// passed; what is left then is logged and counted as dropped. The live stream ends.
    pub async fn close(&self, grace: std::time::Duration) {
        if let Some(sse) = &self.sse {
            sse.close();
        }
        futures::future::join(
            futures::future::join_all(self.webhooks.iter().map(|w| w.close(grace))),
            futures::future::join_all(self.nats.iter().map(|n| n.close(grace))),
        )
        .await;
    }
}
