//! What a simulation observed, as plain data: times are durations since the simulation started.

use std::time::Duration;

/// How a workload pod ended, read from the `DisruptionTarget` condition its last state carried
/// (k8s.io/api/core/v1 PodReasonEvictionByEvictionAPI, PodReasonPreemptionByScheduler,
/// DeletionByPodGC) or, failing that, from the evictions the fake accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Through the Eviction API.
    Evicted,
    /// Deleted by the simulated scheduler to make room for a higher-priority pod.
    Preempted,
    /// Deleted some other way (a DELETE, or the test's own `delete`).
    Deleted,
    /// Its Node went ([`crate::Sim::terminate_node`] or a Node deleted through the API) and the
    /// pod garbage collector deleted it.
    NodeTerminated,
}

/// One workload pod that ended, and how long its workload was a pod short.
#[derive(Debug, Clone, PartialEq)]
pub struct Disruption {
    pub namespace: String,
    pub workload: String,
    pub pod: String,
    /// The Node it was bound to, if any.
    pub node: Option<String>,
    pub ending: Ending,
    /// When the simulation saw it go: at once for its own deletions, at its next wake-up
    /// (right after the write) for the API's.
    pub at: Duration,
    /// Whether it was Running and Ready when it ended. Only such an ending opens a gap: a pod
    /// that never ran took nothing away (if it was itself a replacement, the gap it was to close
    /// passes to the next new pod).
    pub was_running: bool,
    /// The new pod of the same workload paired with this gap (oldest gap first).
    pub replacement: Option<String>,
    /// Where the replacement ran.
    pub replacement_node: Option<String>,
    /// When the replacement became Running and Ready.
    pub restored_at: Option<Duration>,
}

impl Disruption {
    /// `restored_at − at`, once the replacement runs.
    pub fn unavailability(&self) -> Option<Duration> {
        self.restored_at.map(|r| r.saturating_sub(self.at))
    }

    /// A gap still open: the pod was running and no replacement runs yet.
    pub fn is_open(&self) -> bool {
        self.was_running && self.restored_at.is_none()
    }
}

/// One binding by the simulated scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub at: Duration,
    /// Whether the Node had been [`crate::Sim::mark_doomed`] before this binding.
    pub to_doomed: bool,
}

/// One Node the simulated autoscaler asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLaunch {
    pub pool: String,
    pub name: String,
    /// When the autoscaler decided.
    pub requested_at: Duration,
    /// When the Node object appeared (NotReady).
    pub created_at: Option<Duration>,
    /// When it became Ready. `None` while booting, or if it was terminated before.
    pub ready_at: Option<Duration>,
}

/// A PodDisruptionBudget whose healthy pods fell below `desiredHealthy` after having reached
/// it: one entry per episode, from the tick it was first seen short to the tick it recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbViolation {
    pub namespace: String,
    pub name: String,
    pub at: Duration,
    pub restored_at: Option<Duration>,
    pub current_healthy: i64,
    pub desired_healthy: i64,
    /// How the budget's pods ended since the tick it was last met. Empty when none ended (for
    /// example pods that lost readiness, or a budget raised above its pods).
    pub causes: Vec<Ending>,
}

impl PdbViolation {
    /// Whether a Node going away took part: the cloud may legitimately break a budget; the
    /// Eviction API never should.
    pub fn caused_by_node_termination(&self) -> bool {
        self.causes.contains(&Ending::NodeTerminated)
    }
}

/// Everything a simulation recorded, oldest first in every list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Time since the simulation started, when the report was taken.
    pub elapsed: Duration,
    pub disruptions: Vec<Disruption>,
    pub bindings: Vec<Binding>,
    pub launches: Vec<NodeLaunch>,
    pub pdb_violations: Vec<PdbViolation>,
    /// Nodes marked doomed, and when.
    pub doomed: Vec<(String, Duration)>,
    /// Pods the workload controller could not create (admission refusals and the like), as
    /// `namespace/workload: message`, each distinct message once.
    pub errors: Vec<String>,
}

impl SimReport {
    /// The unavailability of every gap that closed, in the order the pods ended.
    pub fn unavailability(&self) -> Vec<Duration> {
        self.disruptions
            .iter()
            .filter_map(Disruption::unavailability)
            .collect()
    }

    /// Gaps still open: running pods ended and not yet replaced by a running pod.
    pub fn open_gaps(&self) -> Vec<&Disruption> {
        self.disruptions.iter().filter(|d| d.is_open()).collect()
    }

    /// Bindings to Nodes already marked doomed.
    pub fn bindings_to_doomed(&self) -> Vec<&Binding> {
        self.bindings.iter().filter(|b| b.to_doomed).collect()
    }

    /// Budget violations no Node termination took part in.
    pub fn violations_without_node_loss(&self) -> Vec<&PdbViolation> {
        self.pdb_violations
            .iter()
            .filter(|v| !v.caused_by_node_termination())
            .collect()
    }
}
