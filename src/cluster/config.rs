//! `cluster:` in the configuration: what is done to the cluster, and how fast.
//!
//! The cluster owns its settings; the root configuration (`crate::config`) only composes them,
//! so nothing under `cluster/` depends on the rest of the configuration.

use std::time::Duration;

use jiff::SignedDuration;
use serde::Deserialize;

use super::plan::Actions;
use super::replacement::DEFAULT_POOL_LABELS;

/// `cluster:` — what is done to the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `kubernetes` acts on the cluster; `dry_run` plans and logs, touching nothing.
    pub mode: ClusterMode,
    /// Lease-based leader election between replicas.
    pub leader_election: LeaderElectionConfig,
    /// Scheduled maintenance is acted on this long before its window opens.
    pub maintenance_lead_seconds: u64,
    /// A drain stops retrying evictions a budget blocks this long before the deadline.
    pub drain_margin_seconds: u64,
    /// A drain of an event with no deadline gives up after this long.
    pub drain_timeout_seconds: u64,
    /// Delete the pods a drain could not evict at `deadline − margin`, ignoring their
    /// PodDisruptionBudgets. Off by default; needs `delete` on pods (the chart grants it only
    /// with `cluster.forceAfterDeadline`).
    pub force_after_deadline: bool,
    /// Node labels naming a Node's pool, first present wins (replacement tracking).
    pub pool_labels: Vec<String>,
    /// How long a replacement Node is waited for before giving up (and counting it).
    pub replacement_timeout_seconds: u64,
    /// Which actions each kind takes.
    pub actions: Actions,
    /// Client-side limit on requests to the API server per second, shared by every call;
    /// 0 for none.
    pub api_requests_per_second: u32,
    /// How many requests may be sent at once above the rate after a quiet period.
    pub api_burst: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            mode: ClusterMode::default(),
            leader_election: LeaderElectionConfig::default(),
            maintenance_lead_seconds: 600,
            drain_margin_seconds: 10,
            drain_timeout_seconds: 300,
            force_after_deadline: false,
            pool_labels: DEFAULT_POOL_LABELS.iter().map(|s| s.to_string()).collect(),
            replacement_timeout_seconds: 1800,
            actions: Actions::default(),
            // Karpenter's defaults for its own client (--kube-client-qps 200, --kube-client-burst 300).
            api_requests_per_second: 200,
            api_burst: 300,
        }
    }
}

impl ClusterConfig {
    /// Checks values serde cannot: `Err((key under cluster., what is wrong))`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.api_requests_per_second > 0 && self.api_burst == 0 {
            return Err(("api_burst", "must be at least 1 when a rate is set"));
        }
        if self.drain_timeout_seconds == 0 {
            return Err(("drain_timeout_seconds", "must be at least 1"));
        }
        if self.pool_labels.iter().any(String::is_empty) {
            return Err(("pool_labels", "must not contain an empty label"));
        }
        if self.leader_election.lease_name.is_empty() {
            return Err(("leader_election.lease_name", "must not be empty"));
        }
        Ok(())
    }

    /// `maintenance_lead_seconds` as a signed duration.
    pub fn lead(&self) -> SignedDuration {
        secs(self.maintenance_lead_seconds)
    }

    /// `replacement_timeout_seconds` as a signed duration.
    pub fn replacement_timeout(&self) -> SignedDuration {
        secs(self.replacement_timeout_seconds)
    }

    /// `drain_margin_seconds` as a duration.
    pub fn drain_margin(&self) -> Duration {
        Duration::from_secs(self.drain_margin_seconds)
    }

    /// `drain_timeout_seconds` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_seconds)
    }
}

fn secs(s: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX))
}

/// `cluster.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// Act on the cluster.
    #[default]
    Kubernetes,
    /// Plan and log only.
    DryRun,
}

/// `cluster.leader_election`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Whether replicas elect a leader; only the leader acts.
    pub enabled: bool,
    /// The Lease's name, in the pod's namespace.
    pub lease_name: String,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: "eviction-router".into(),
        }
    }
}
