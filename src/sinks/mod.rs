//! Stream sinks: where normalised events are published.
//!
//! A sink marked `required` makes the message's outcome wait for its delivery (a failure makes the
//! outcome retry); a best-effort sink takes events into a bounded queue and never blocks an
//! acknowledgement: when its queue is full, the event is dropped for that sink and counted.

pub mod config;
mod stdout;
pub mod webhook;

use std::sync::Arc;

use self::config::SinkConfig;
use crate::event::Event;
use crate::metrics::Metrics;

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
    /// A sink could not be set up (bad secret, unreadable secret file).
    #[error("sink setup: {0}")]
    Setup(String),
}

/// Every configured sink.
#[derive(Debug)]
pub struct Sinks {
    stdout: Option<StdoutSink>,
    webhooks: Vec<WebhookSink>,
}

impl Sinks {
    /// Starts the sinks of `configs` (webhook sinks run a delivery task each).
    pub fn start(configs: &[SinkConfig], metrics: Arc<Metrics>) -> Result<Sinks, SinkError> {
        let mut sinks = Sinks {
            stdout: None,
            webhooks: Vec::new(),
        };
        for config in configs {
            match config {
                SinkConfig::Stdout => sinks.stdout = Some(StdoutSink::new(metrics.clone())),
                SinkConfig::Webhook(w) => {
                    sinks.webhooks.push(WebhookSink::start(w, metrics.clone())?)
                }
            }
        }
        Ok(sinks)
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
        Ok(())
    }

    /// Stops the webhook tasks after they delivered what they hold, or `grace` passed; what is
    /// left then is logged and counted as dropped.
    pub async fn close(&self, grace: std::time::Duration) {
        futures::future::join_all(self.webhooks.iter().map(|w| w.close(grace))).await;
    }
}
