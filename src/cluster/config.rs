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
    /// Capacity for a doomed Node's pods before they are evicted.
    pub make_before_break: MakeBeforeBreakConfig,
    /// `PreferNoSchedule` on the Spot siblings of an interrupted Node.
    pub shelter: ShelterConfig,
    /// Moving pods from on-demand back to Spot when Spot returns (off by default).
    pub failback: super::failback::FailbackConfig,
    /// What to do with Nodes Karpenter manages: `act` as on any Node, `observe` (record,
    /// stream and measure, but leave the taint, cordon and drain to Karpenter), or `auto`: act
    /// until Karpenter is seen acting on an interruption itself, then observe.
    pub karpenter: KarpenterMode,
    /// Completing the ASG termination lifecycle actions of drained Nodes (AWS).
    pub asg_lifecycle: super::lifecycle::LifecycleConfig,
    /// Per-pool statistics: the `pool_stats` events, the `pool_*` gauges, the saved state.
    pub pool_stats: super::stats::PoolStatsConfig,
    /// The router's own namespace (placeholders, the Lease). Not read from the file: the
    /// `POD_NAMESPACE` environment variable (the chart sets it from the downward API) when
    /// `None`, else `default`.
    #[serde(skip)]
    pub namespace: Option<String>,
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
            make_before_break: MakeBeforeBreakConfig::default(),
            shelter: ShelterConfig::default(),
            failback: super::failback::FailbackConfig::default(),
            karpenter: KarpenterMode::default(),
            asg_lifecycle: super::lifecycle::LifecycleConfig::default(),
            pool_stats: super::stats::PoolStatsConfig::default(),
            namespace: None,
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
        let mbb = &self.make_before_break;
        if !(mbb.max_pool_share > 0.0 && mbb.max_pool_share <= 1.0) {
            return Err((
                "make_before_break.max_pool_share",
                "must be more than 0 and at most 1",
            ));
        }
        if mbb.priority_class.is_empty() || mbb.image.is_empty() {
            return Err((
                "make_before_break.priority_class",
                "the priority class and the image must not be empty",
            ));
        }
        if mbb.timeout_seconds == 0 {
            return Err(("make_before_break.timeout_seconds", "must be at least 1"));
        }
        if self.asg_lifecycle.heartbeat_interval_seconds > 7200 {
            return Err((
                "asg_lifecycle.heartbeat_interval_seconds",
                "must be 0 (none) to 7200 (the longest heartbeat timeout a hook takes)",
            ));
        }
        if let Err((key, what)) = self.pool_stats.validate() {
            let key = match key {
                "interval_seconds" => "pool_stats.interval_seconds",
                _ => "pool_stats.config_map",
            };
            return Err((key, what));
        }
        if self.shelter.window_seconds == 0 {
            return Err(("shelter.window_seconds", "must be at least 1"));
        }
        if let Err((key, what)) = self.failback.validate() {
            let key = match key {
                "interval_seconds" => "failback.interval_seconds",
                "windows" => "failback.windows",
                _ => "failback.max_pods_per_interval",
            };
            return Err((key, what));
        }
        if self.failback.enabled && self.make_before_break.kinds.is_empty() {
            return Err((
                "failback.enabled",
                "needs make_before_break (its placeholders make the Spot room first)",
            ));
        }
        Ok(())
    }

    /// The router's own namespace: [`ClusterConfig::namespace`], else `POD_NAMESPACE`, else
    /// `default`.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
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

/// `cluster.karpenter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KarpenterMode {
    /// Act until Karpenter is seen acting on an interruption (its `karpenter.sh/disrupted`
    /// taint, or the Node being deleted, within a minute of the notice), then observe.
    #[default]
    Auto,
    /// Record, stream and measure; never taint, cordon or drain a Karpenter Node.
    Observe,
    /// Act on Karpenter Nodes as on any other.
    Act,
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

/// `cluster.make_before_break`: before a doomed Node's pods are evicted, placeholder pods of
/// the same shape ask the pool's autoscaler for their capacity; the drain evicts once the
/// placeholders run (real pods preempt them) or at the latest start that still fits every pod's
/// grace before the deadline, whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MakeBeforeBreakConfig {
    /// The kinds it applies to.
    pub kinds: Vec<crate::event::Kind>,
    /// The PriorityClass of the placeholders: negative, so any real pod preempts them, and not
    /// below Cluster Autoscaler's expendable cutoff (−10), so they still trigger a scale-up.
    /// The chart creates it.
    pub priority_class: String,
    /// The placeholders' image.
    pub image: String,
    /// Placeholders are deleted this long after they were made, whatever happened.
    pub timeout_seconds: u64,
    /// Placeholders left after the drain ended are deleted this long after it.
    pub settle_seconds: u64,
    /// With no deadline, evictions wait at most this long for the capacity.
    pub max_wait_seconds: u64,
    /// At most this share of a pool's Nodes is being replaced by placeholders at once.
    pub max_pool_share: f64,
}

impl Default for MakeBeforeBreakConfig {
    fn default() -> Self {
        MakeBeforeBreakConfig {
            kinds: vec![
                crate::event::Kind::Interruption,
                crate::event::Kind::Termination,
            ],
            priority_class: "eviction-router-placeholder".into(),
            image: "registry.k8s.io/pause:3.10".into(),
            timeout_seconds: 600,
            settle_seconds: 30,
            max_wait_seconds: 120,
            max_pool_share: 1.0,
        }
    }
}

impl MakeBeforeBreakConfig {
    /// Whether `kind` gets capacity first.
    pub fn applies(&self, kind: crate::event::Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// `cluster.shelter`: on an interruption of a Spot Node of instance type T in zone Z, the
/// other Spot Nodes of (T, Z) get the `PreferNoSchedule` taint `eviction-router/at-risk` for a
/// window, so evicted pods land elsewhere when they can.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShelterConfig {
    /// Whether siblings are sheltered at all.
    pub enabled: bool,
    /// How long after the interruption the taint stays.
    pub window_seconds: u64,
    /// Pools (by name) whose Nodes are never sheltered.
    pub exclude_pools: Vec<String>,
}

impl Default for ShelterConfig {
    fn default() -> Self {
        ShelterConfig {
            enabled: true,
            window_seconds: 300,
            exclude_pools: Vec::new(),
        }
    }
}

impl ShelterConfig {
    /// The window as a signed duration.
    pub fn window(&self) -> SignedDuration {
        secs(self.window_seconds)
    }
}
