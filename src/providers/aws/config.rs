//! The settings of the SQS source (`type: aws_sqs`) and their validation.

use serde::Deserialize;

/// `type: aws_sqs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// The queue URL (Terraform output `queue_url`).
    pub queue_url: String,
    /// The region; by default the standard AWS resolution (env, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Concurrent long-polling receive loops.
    #[serde(default = "defaults::pollers")]
    pub pollers: usize,
    /// Messages per receive, 1 to 10.
    #[serde(default = "defaults::max_messages")]
    pub max_messages: i32,
    /// Long-poll wait, 0 to 20 seconds.
    #[serde(default = "defaults::wait_time_seconds")]
    pub wait_time_seconds: i32,
    /// Visibility timeout set on receipt and extended while a message is being handled.
    #[serde(default = "defaults::visibility_timeout_seconds")]
    pub visibility_timeout_seconds: i32,
    /// Visibility set on a message whose outcome is retry, doubled per earlier receive and
    /// capped at `visibility_timeout_seconds`: it comes back this soon rather than after a full
    /// visibility timeout.
    #[serde(default = "defaults::retry_visibility_seconds")]
    pub retry_visibility_seconds: i32,
}

impl SqsConfig {
    /// The visibility to set on a message retried after its `receive_count`-th receive:
    /// `retry_visibility_seconds · 2^(receive_count − 1)`, capped at the visibility timeout, so
    /// that a longer outage spends the queue's `maxReceiveCount` slowly.
    pub fn retry_visibility(&self, receive_count: u32) -> i32 {
        let doublings = receive_count.saturating_sub(1).min(16);
        self.retry_visibility_seconds
            .saturating_mul(1 << doublings)
            .min(self.visibility_timeout_seconds)
    }

    /// Checks the ranges; on error, the offending key (relative to the source) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !self.queue_url.starts_with("http://") && !self.queue_url.starts_with("https://") {
            return Err(("queue_url", "must be an http(s) URL"));
        }
        if self.pollers == 0 || self.pollers > 64 {
            return Err(("pollers", "must be 1 to 64"));
        }
        if !(1..=10).contains(&self.max_messages) {
            return Err(("max_messages", "must be 1 to 10"));
        }
        if !(0..=20).contains(&self.wait_time_seconds) {
            return Err(("wait_time_seconds", "must be 0 to 20"));
        }
        if !(2..=43_200).contains(&self.visibility_timeout_seconds) {
            return Err(("visibility_timeout_seconds", "must be 2 to 43200"));
        }
        // Capped at the visibility timeout when used, so the default fits any timeout.
        if !(0..=43_200).contains(&self.retry_visibility_seconds) {
            return Err(("retry_visibility_seconds", "must be 0 to 43200"));
        }
        Ok(())
    }
}

mod defaults {
    pub fn pollers() -> usize {
        2
    }
    pub fn max_messages() -> i32 {
        10
    }
    pub fn wait_time_seconds() -> i32 {
        20
    }
    pub fn visibility_timeout_seconds() -> i32 {
        60
    }
    pub fn retry_visibility_seconds() -> i32 {
        5
    }
}
