//! The settings of the Pub/Sub source (`type: gcp_pubsub`) and their validation.

use serde::Deserialize;

/// `type: gcp_pubsub`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// `projects/<project>/subscriptions/<subscription>`.
    pub subscription: String,
    /// The Pub/Sub endpoint. By default `http://$PUBSUB_EMULATOR_HOST` when that variable is
    /// set (with anonymous credentials), else Google's endpoint with Application Default
    /// Credentials (GKE Workload Identity).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Flow control: messages leased to the router at once.
    #[serde(default = "defaults::max_outstanding_messages")]
    pub max_outstanding_messages: i64,
    /// The longest a message's lease is extended while it is being handled.
    #[serde(default = "defaults::max_lease_seconds")]
    pub max_lease_seconds: u64,
    /// How often the subscription is checked with a lightweight admin call; a failed check
    /// marks the source not ready and, once it passes again, reopens the stream.
    #[serde(default = "defaults::health_check_seconds")]
    pub health_check_seconds: u64,
}

impl PubSubConfig {
    /// Checks the subscription name, the endpoint and the ranges; on error, the offending key
    /// (relative to the source) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let parts: Vec<&str> = self.subscription.split('/').collect();
        if parts.len() != 4
            || parts[0] != "projects"
            || parts[2] != "subscriptions"
            || parts[1].is_empty()
            || parts[3].is_empty()
        {
            return Err((
                "subscription",
                "must be projects/<project>/subscriptions/<subscription>",
            ));
        }
        if let Some(url) = &self.endpoint
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(("endpoint", "must be an http(s) URL"));
        }
        if !(1..=100_000).contains(&self.max_outstanding_messages) {
            return Err(("max_outstanding_messages", "must be 1 to 100000"));
        }
        if !(10..=86_400).contains(&self.max_lease_seconds) {
            return Err(("max_lease_seconds", "must be 10 to 86400"));
        }
        if !(1..=300).contains(&self.health_check_seconds) {
            return Err(("health_check_seconds", "must be 1 to 300"));
        }
        Ok(())
    }
}

mod defaults {
    pub fn max_outstanding_messages() -> i64 {
        100
    }
    pub fn max_lease_seconds() -> u64 {
        600
    }
    pub fn health_check_seconds() -> u64 {
        10
    }
}
