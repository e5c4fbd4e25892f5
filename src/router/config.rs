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
    /// Checks the ranges: none may be zero, and none so large that `run` could not honour it
    /// (a semaphore or a channel of that size panics in tokio; a deadline that far overflows);
    /// on error, the offending key (relative to `router`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(("concurrency", "must be 1 to 10000"));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(("queue_capacity", "must be 1 to 1000000"));
        }
        if !(1..=86_400).contains(&self.message_timeout_seconds) {
            return Err(("message_timeout_seconds", "must be 1 to 86400"));
        }
        if self.dedupe_window_seconds > 7 * 86_400 {
            return Err(("dedupe_window_seconds", "must be at most 604800 (7 days)"));
        }
        if !(1..=10_000_000).contains(&self.dedupe_capacity) {
            return Err(("dedupe_capacity", "must be 1 to 10000000"));
        }
        if self.shutdown_grace_seconds > 3_600 {
            return Err(("shutdown_grace_seconds", "must be at most 3600"));
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
