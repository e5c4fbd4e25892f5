//! The metrics of proactive recovery: make-before-break placeholders, sibling shelter, and the
//! recovery of each notice phase by phase. Pools become a label here, bounded: the first
//! [`MAX_POOLS`] distinct pool names seen keep their name, every later one is `other`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{HistogramFamily, Metrics, OutcomeLabel, histogram};
use crate::event::Provider;

/// How many pool names become label values; the rest are `other`.
pub const MAX_POOLS: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: &'static str,
    provider: &'static str,
    kind: &'static str,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderKindLabel {
    provider: &'static str,
    kind: &'static str,
}

/// The recovery metrics, registered by [`Metrics::new`].
#[derive(Debug)]
pub(super) struct Recovery {
    placeholders: Family<OutcomeLabel, Counter>,
    placeholders_removed: Family<ReasonLabel, Counter>,
    placeholders_now: Gauge,
    capacity_wait: HistogramFamily<OutcomeLabel>,
    pools_at_risk: Gauge,
    nodes_sheltered: Counter,
    phases: HistogramFamily<Phase>,
    unavailability: HistogramFamily<ProviderKindLabel>,
    onto_doomed: Counter,
    failback: Family<OutcomeLabel, Counter>,
    failback_pods: Counter,
    failback_duration: HistogramFamily<OutcomeLabel>,
    failback_candidates: Gauge,
    failback_cores: Counter<f64, std::sync::atomic::AtomicU64>,
    pools: Mutex<HashSet<String>>,
}

impl Recovery {
    pub(super) fn new() -> Recovery {
        Recovery {
            placeholders: Family::default(),
            placeholders_removed: Family::default(),
            placeholders_now: Gauge::default(),
            capacity_wait: Family::new_with_constructor(histogram),
            pools_at_risk: Gauge::default(),
            nodes_sheltered: Counter::default(),
            phases: Family::new_with_constructor(histogram),
            unavailability: Family::new_with_constructor(histogram),
            onto_doomed: Counter::default(),
            failback: Family::default(),
            failback_pods: Counter::default(),
            failback_duration: Family::new_with_constructor(histogram),
            failback_candidates: Gauge::default(),
            failback_cores: Counter::default(),
            pools: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "placeholders",
            "Placeholder pods made before a drain, by outcome (created, or why none: skipped_kind, skipped_karpenter, skipped_no_pool, skipped_share, skipped_nothing, refused, not_synced)",
            self.placeholders.clone(),
        );
        r.register(
            "placeholders_removed",
            "Placeholder pods removed, by reason (settled, canceled, node_gone, expired, unreadable)",
            self.placeholders_removed.clone(),
        );
        r.register(
            "placeholders_present",
            "Placeholder pods that exist now",
            self.placeholders_now.clone(),
        );
        r.register(
            "capacity_wait_seconds",
            "How long a drain waited for replacement capacity, by outcome (ready, latest_start)",
            self.capacity_wait.clone(),
        );
        r.register(
            "pools_at_risk",
            "Spot (instance type, zone) pools whose Nodes are sheltered now",
            self.pools_at_risk.clone(),
        );
        r.register(
            "nodes_sheltered",
            "Sibling Nodes given the at-risk taint",
            self.nodes_sheltered.clone(),
        );
        r.register(
            "recovery_phase_seconds",
            "Time from the notice to each recovery phase (cordoned, drained, replacement_ready, pods_running); pool bounded to 32 names, then other",
            self.phases.clone(),
        );
        r.register(
            "pod_unavailability_seconds",
            "Per evicted pod: from its eviction to a pod of the same owner Running again",
            self.unavailability.clone(),
        );
        r.register(
            "pods_onto_doomed_nodes",
            "Replacement pods of evicted pods that ran on a Node that had already received a notice",
            self.onto_doomed.clone(),
        );
        r.register(
            "failback_moves",
            "Failback moves of one owner's pods to Spot, by outcome (moved, aborted, no_capacity, blocked)",
            self.failback.clone(),
        );
        r.register(
            "failback_pods_moved",
            "Pods moved from on-demand back to Spot",
            self.failback_pods.clone(),
        );
        r.register(
            "failback_move_duration_seconds",
            "Duration of a failback move, placeholder to last replacement, by outcome",
            self.failback_duration.clone(),
        );
        r.register(
            "failback_on_demand_cores_moved",
            "CPU requests (cores) of the pods failback moved off on-demand Nodes: the on-demand capacity they no longer hold, for an estimate of node-hours saved",
            self.failback_cores.clone(),
        );
        r.register(
            "failback_candidates",
            "Pods that prefer Spot and run on on-demand Nodes, as of the last failback round",
            self.failback_candidates.clone(),
        );
    }

    /// The label for a pool: its name while fewer than [`MAX_POOLS`] are known, else `other`.
    fn pool_label(&self, pool: &str) -> String {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools.contains(pool) {
            return pool.to_owned();
        }
        if pools.len() < MAX_POOLS {
            pools.insert(pool.to_owned());
            return pool.to_owned();
        }
        "other".to_owned()
    }
}

impl Metrics {
    /// Placeholders were made (`created`, with how many), or none, and why.
    pub fn placeholders(&self, outcome: &'static str, n: u64) {
        let c = self
            .recovery
            .placeholders
            .get_or_create(&OutcomeLabel { outcome });
        c.inc_by(n.max(1));
    }

    /// A placeholder was removed.
    pub fn placeholder_removed(&self, reason: &'static str) {
        self.recovery
            .placeholders_removed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sets how many placeholders exist.
    pub fn placeholders_now(&self, n: i64) {
        self.recovery.placeholders_now.set(n);
    }

    /// A drain stopped waiting for capacity.
    pub fn capacity_wait(&self, outcome: &'static str, took: Duration) {
        self.recovery
            .capacity_wait
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }

    /// Sets how many Spot pools are sheltered.
    pub fn pools_at_risk(&self, n: i64) {
        self.recovery.pools_at_risk.set(n);
    }

    /// `n` siblings were given the at-risk taint.
    pub fn nodes_sheltered(&self, n: u64) {
        self.recovery.nodes_sheltered.inc_by(n);
    }

    /// A notice reached a recovery phase `took` after it occurred.
    pub fn recovery_phase(
        &self,
        phase: &'static str,
        provider: Provider,
        kind: &'static str,
        pool: &str,
        took: Duration,
    ) {
        let labels = Phase {
            phase,
            provider: provider.as_str(),
            kind,
            pool: self.recovery.pool_label(pool),
        };
        self.recovery
            .phases
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// An evicted pod's owner had a pod Running again `took` after the eviction; `onto_doomed`
    /// when it runs on a Node that had received a notice.
    pub fn pod_recovered(
        &self,
        provider: Provider,
        kind: &'static str,
        took: Duration,
        onto_doomed: bool,
    ) {
        self.recovery
            .unavailability
            .get_or_create(&ProviderKindLabel {
                provider: provider.as_str(),
                kind,
            })
            .observe(took.as_secs_f64());
        if onto_doomed {
            self.recovery.onto_doomed.inc();
        }
    }
}

impl Metrics {
    /// A failback move of one owner ended, having moved `moved` pods.
    pub fn failback(&self, outcome: &'static str, moved: u64, took: Duration) {
        let labels = OutcomeLabel { outcome };
        self.recovery.failback.get_or_create(&labels).inc();
        self.recovery.failback_pods.inc_by(moved);
        self.recovery
            .failback_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Pods asking for `cores` CPUs in all were moved off on-demand Nodes.
    pub fn failback_cores_moved(&self, cores: f64) {
        self.recovery.failback_cores.inc_by(cores);
    }

    /// Sets how many pods are failback candidates.
    pub fn failback_candidates(&self, n: i64) {
        self.recovery.failback_candidates.set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_POOLS + 10) {
            m.recovery_phase(
                "cordoned",
                Provider::Aws,
                "interruption",
                &format!("pool-{i}"),
                Duration::from_secs(1),
            );
        }
        let text = m.encode();
        assert!(text.contains("pool=\"pool-0\""));
        assert!(text.contains(&format!("pool=\"pool-{}\"", MAX_POOLS - 1)));
        assert!(!text.contains(&format!("pool=\"pool-{MAX_POOLS}\"")));
        assert!(text.contains("pool=\"other\""));
    }
}
