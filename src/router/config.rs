//! The `router:` settings and their validation.

use std::time::Duration;

use serde::Deserialize;

/// `router:` — how deliveries are handled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Messages waiting for a handler before sources stop receiving.
    pub queue_capacity: usize,
    /// How long a handled `(source, id)` is remembered.
    pub dedupe_window_seconds: u64,
    /// How many handled ids are remembered at most.
    pub dedupe_capacity: usize,
    /// Longest a message may take; past it the outcome is retry.
    pub message_timeout_seconds: u64,
    /// On SIGTERM, how long in-flight messages may take before they are released.
    pub shutdown_grace_seconds: u64,
    /// The most events one message becomes; the rest are counted, not acted on.
    pub max_events_per_message: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            concurrency: 64,
            queue_capacity: 1024,
            dedupe_window_seconds: 600,
            dedupe_capacity: 100_000,
            message_timeout_seconds: 90,
            shutdown_grace_seconds: 20,
            max_events_per_message: crate::providers::DEFAULT_MAX_EVENTS,
        }
    }
}

impl RouterConfig {
    /// Checks the values that must not be zero; on error, the offending key (relative to
    /// `router`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.concurrency == 0 {
            return Err(("concurrency", "must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(("queue_capacity", "must be at least 1"));
        }
        if self.message_timeout_seconds == 0 {
            return Err(("message_timeout_seconds", "must be at least 1"));
        }
        if !(1..=100_000).contains(&self.max_events_per_message) {
            return Err(("max_events_per_message", "must be 1 to 100000"));
        }
        Ok(())
    }

    /// `dedupe_window_seconds` as a duration.
    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_window_seconds)
    }

    /// `message_timeout_seconds` as a duration.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_secs(self.message_timeout_seconds)
    }

    /// `shutdown_grace_seconds` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}
