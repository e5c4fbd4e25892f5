//! An opt-in cluster simulation: the controllers of a small cluster, run against the fake's
//! store, so a test sees what its pods and Nodes would go through — a scheduler binding pods, a
//! kubelet starting them, workloads replacing what is evicted, a disruption controller keeping
//! budgets honest, and an autoscaler launching Nodes when pods do not fit.
//!
//! Started by [`crate::FakeApiServer::simulate`]; one background task runs every controller in
//! turn each [`SimConfig::tick`] while holding the store's lock (so each pass sees one consistent
//! state), and wakes between ticks on any write to notice deleted pods and replace them at once.
//! Controllers write through the store — watches see every binding and status change, and
//! resourceVersions move — but bypass RBAC and the request log, as in-cluster components do not
//! act as the tested user. What each copies, narrowly:
//!
//! - **Scheduler** (kube-scheduler, pkg/scheduler): every pending, unbound pod whose
//!   schedulerName is empty or `default-scheduler`, highest `spec.priority` first, then oldest
//!   (PrioritySort). Filters: Node Ready; NodeUnschedulable; TaintToleration (NoSchedule and
//!   NoExecute); NodeAffinity (nodeSelector and required terms); NodeResourcesFit (CPU, memory,
//!   pod count). Scores, compared in this order rather than summed with weights: fewer
//!   untolerated PreferNoSchedule taints, larger preferred-affinity weight, LeastAllocated, then
//!   name. Binding sets `spec.nodeName` and `PodScheduled`; a pod that fits nowhere gets
//!   `PodScheduled=False`, reason `Unschedulable`, with the scheduler's "0/N nodes are available"
//!   message. DefaultPreemption: a pod whose preemptionPolicy is not `Never` may delete pods of
//!   strictly lower priority on a Node passing every other filter; victims are chosen and the
//!   Node picked as upstream does (reprieving PDB-protected pods first; fewest PDB violations,
//!   lowest highest victim priority, smallest priority sum, fewest victims, latest start), the
//!   victims get `DisruptionTarget` reason `PreemptionByScheduler` and are deleted, and the pod
//!   is bound at once (upstream nominates and waits for the victims' graceful termination).
//! - **Kubelet**: a pod bound to a Ready Node becomes Running and Ready `pod_start_delay` after
//!   both held; on a NotReady Node it stays Pending.
//! - **Workloads** (the ReplicaSet controller, pkg/controller/replicaset): each
//!   [`WorkloadSpec`] keeps `replicas` active pods (not terminal, not being deleted), created
//!   through Priority admission as the controller's requests would be; a pod that goes is
//!   replaced within one wake-up.
//! - **Disruption controller** (pkg/controller/disruption): every budget's status —
//!   currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed, disruptedPods, the
//!   DisruptionAllowed condition, observedGeneration — recomputed every tick, so the Eviction
//!   API's rules see real numbers.
//! - **Pod garbage collector** (pkg/controller/podgc): pods bound to a Node that was seen and is
//!   gone are marked Failed with `DisruptionTarget` reason `DeletionByPodGC` and deleted, at
//!   once (upstream waits 40 s).
//! - **Cluster Autoscaler** (kubernetes/autoscaler cluster-autoscaler), every `scan_interval`:
//!   pods the scheduler marked Unschedulable, except expendable ones (priority below
//!   `expendable_pods_priority_cutoff`), plus the fake pods of ready CapacityBuffers, are first
//!   fitted into existing free room and Nodes already on their way; the rest are packed
//!   first-fit, largest first, onto template Nodes of every pool whose template fits them, within
//!   `max_nodes`; the priority expander picks one pool (highest `priority`, then name) and that
//!   pool's Nodes are launched. A launched Node appears `launch_delay` later NotReady with the
//!   `node.kubernetes.io/not-ready:NoSchedule` taint, and becomes Ready `boot_delay` after that.
//!   A CapacityBuffer controller fills each buffer's status (podTemplateRef, replicas,
//!   ReadyForProvisioning) from its spec.
//!
//! ```text
//! let fake = FakeApiServer::new();
//! let sim = fake.simulate(SimConfig::default());
//! sim.add_pool(PoolSpec::new("spot", Resources::new(4000, 16 << 30, 110), 10)
//!     .label("eks.amazonaws.com/capacityType", "SPOT"));
//! let nodes = sim.add_nodes("spot", 3);
//! sim.add_workload(WorkloadSpec::new("default", "web", 6, Resources::new(500, 1 << 30, 0)));
//! sim.add_pdb("default", "web", [("app".into(), "web".into())].into(), 5);
//! // The router under test is told nodes[0] will be reclaimed, and drains it …
//! sim.mark_doomed(&nodes[0]);
//! // … then the cloud takes the instance.
//! sim.terminate_node(&nodes[0]);
//! let report = sim.report();
//! assert!(report.bindings_to_doomed().is_empty());
//! assert!(report.violations_without_node_loss().is_empty());
//! println!("{:?} still open: {}", report.unavailability(), report.open_gaps().len());
//! ```
//!
//! Not modelled: scale-down, node-group balancing, more than one pool per scan; pod topology
//! spread, inter-pod (anti-)affinity, host ports, volumes, DaemonSets and every other scheduler
//! plugin; the scheduler's default requests for pods without requests; the taint manager
//! (NoExecute taints do not evict) and node lifecycle controller (Nodes never turn NotReady on
//! their own, pods never lose readiness); graceful termination (deletes are immediate, as
//! everywhere in the fake); ReplicaSet scale-down, Deployments and the ReplicaSet object itself
//! (pods carry an ownerReference to one that is not served); DefaultTolerationSeconds and other
//! admission; CapacityBuffer `scalableRef`, `percentage` and `limits`; expectedPods from
//! controllers' scale (it is the number of matching pods). The controllers' writes share the
//! store's bounded watch history with everyone else's, so a busy simulation compacts it sooner.

mod autoscaler;
mod cluster;
mod disruption;
mod kubelet;
mod nodes;
mod report;
mod scheduler;
mod workloads;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

pub use report::{Binding, Disruption, Ending, NodeLaunch, PdbViolation, SimReport};

use crate::eviction::EvictionRecord;
use crate::resources::{self, Served};
use crate::store::{ChangeKind, Store};
use crate::{FakeApiServer, Shared, str_at};

/// How fast the simulated cluster moves. The defaults are a real cluster's timings scaled down
/// about a hundredfold, for tests.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How often the controllers run (default 20 ms).
    pub tick: Duration,
    /// The autoscaler's decision to the Node object's appearance, NotReady (default 400 ms).
    pub launch_delay: Duration,
    /// The Node's appearance to Ready (default 300 ms).
    pub boot_delay: Duration,
    /// Cluster Autoscaler's `--scan-interval` (default 100 ms; upstream 10 s).
    pub scan_interval: Duration,
    /// Bound to a Ready Node to Running and Ready (default 50 ms).
    pub pod_start_delay: Duration,
    /// The Node label naming its pool (default `eks.amazonaws.com/nodegroup`).
    pub pool_label: String,
    /// Cluster Autoscaler's `--expendable-pods-priority-cutoff` (default −10): pods of lower
    /// priority never cause a scale-up.
    pub expendable_pods_priority_cutoff: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tick: Duration::from_millis(20),
            launch_delay: Duration::from_millis(400),
            boot_delay: Duration::from_millis(300),
            scan_interval: Duration::from_millis(100),
            pod_start_delay: Duration::from_millis(50),
            pool_label: "eks.amazonaws.com/nodegroup".into(),
            expendable_pods_priority_cutoff: -10,
        }
    }
}

/// CPU, memory and a pod count: a Node's allocatable, or a pod's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

impl Resources {
    pub fn new(cpu_millis: i64, memory_bytes: i64, pods: i64) -> Resources {
        Resources {
            cpu_millis,
            memory_bytes,
            pods,
        }
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources::new(
            self.cpu_millis + o.cpu_millis,
            self.memory_bytes + o.memory_bytes,
            self.pods + o.pods,
        )
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, o: Resources) -> Resources {
        Resources::new(
            self.cpu_millis - o.cpu_millis,
            self.memory_bytes - o.memory_bytes,
            self.pods - o.pods,
        )
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, o: Resources) {
        *self = *self - o;
    }
}

/// A node group: what its Nodes look like and how many it may have.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    pub name: String,
    /// Node labels besides the pool label, e.g. `eks.amazonaws.com/capacityType`,
    /// `node.kubernetes.io/instance-type`, `topology.kubernetes.io/zone`.
    pub labels: BTreeMap<String, String>,
    /// Node taints, as JSON (`{"key", "value", "effect"}`).
    pub taints: Vec<Value>,
    pub allocatable: Resources,
    pub max_nodes: usize,
    /// For the autoscaler's priority expander: higher is tried first.
    pub priority: i32,
}

impl PoolSpec {
    /// A pool with no labels, taints or priority.
    pub fn new(name: &str, allocatable: Resources, max_nodes: usize) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            allocatable,
            max_nodes,
            priority: 0,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> PoolSpec {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, taint: Value) -> PoolSpec {
        self.taints.push(taint);
        self
    }

    pub fn priority(mut self, priority: i32) -> PoolSpec {
        self.priority = priority;
        self
    }
}

/// A ReplicaSet-like workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    pub namespace: String,
    pub name: String,
    pub replicas: usize,
    /// Per pod (`pods` is ignored).
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    /// The pod spec's `affinity`, or `Null`.
    pub affinity: Value,
    pub tolerations: Vec<Value>,
    pub priority_class_name: Option<String>,
    /// Pod labels besides `app: <name>` and `pod-template-hash`.
    pub labels: BTreeMap<String, String>,
    pub termination_grace_period_seconds: i64,
}

impl WorkloadSpec {
    /// A workload with no placement constraints, default priority and a 30 s grace period.
    pub fn new(namespace: &str, name: &str, replicas: usize, requests: Resources) -> WorkloadSpec {
        WorkloadSpec {
            namespace: namespace.into(),
            name: name.into(),
            replicas,
            requests,
            node_selector: BTreeMap::new(),
            affinity: Value::Null,
            tolerations: Vec::new(),
            priority_class_name: None,
            labels: BTreeMap::new(),
            termination_grace_period_seconds: 30,
        }
    }
}

/// A workload pod the simulation follows, for the report.
#[derive(Debug)]
struct Tracked {
    workload: usize,
    name: String,
    running: bool,
    /// The gap (index into the report's disruptions) this pod was created to close.
    closes: Option<usize>,
}

/// A pod that ended, kept a while to attribute budget violations.
#[derive(Debug)]
struct EndingLog {
    ns: String,
    labels: Map<String, Value>,
    ending: Ending,
    at: Instant,
}

const ENDINGS_KEPT: usize = 10_000;

/// Everything the controllers remember between passes.
#[derive(Debug)]
struct State {
    cfg: SimConfig,
    start: Instant,
    pools: BTreeMap<String, PoolSpec>,
    workloads: Vec<workloads::Workload>,
    doomed: BTreeMap<String, Instant>,
    launches: Vec<nodes::Launch>,
    /// Nodes present at the last pass, for the pod garbage collector.
    seen_nodes: BTreeSet<String>,
    /// When each bound pod found its Node Ready (the kubelet's start).
    kubelet_started: HashMap<String, Instant>,
    /// Scheduling queue order for pods of equal priority and creation second.
    queue_seq: HashMap<String, u64>,
    next_seq: u64,
    tracked: HashMap<String, Tracked>,
    /// Per workload, gaps waiting for a replacement, oldest first.
    unpaired: Vec<VecDeque<usize>>,
    /// The store's history has been read up to here.
    cursor: u64,
    pdbs: HashMap<(String, String), disruption::Track>,
    endings: VecDeque<EndingLog>,
    next_scan: Instant,
    /// Autoscaler scans so far.
    scans: u64,
    node_seq: u64,
    report: SimReport,
}

impl State {
    fn new(cfg: SimConfig, cursor: u64) -> State {
        let start = Instant::now();
        State {
            next_scan: start + cfg.scan_interval,
            cfg,
            start,
            pools: BTreeMap::new(),
            workloads: Vec::new(),
            doomed: BTreeMap::new(),
            launches: Vec::new(),
            seen_nodes: BTreeSet::new(),
            kubelet_started: HashMap::new(),
            queue_seq: HashMap::new(),
            next_seq: 0,
            tracked: HashMap::new(),
            unpaired: Vec::new(),
            cursor,
            pdbs: HashMap::new(),
            endings: VecDeque::new(),
            scans: 0,
            node_seq: 0,
            report: SimReport::default(),
        }
    }

    fn since(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    /// One pass of every controller.
    fn tick(&mut self, store: &mut Store, served: &Served, evictions: &[EvictionRecord]) {
        let now = Instant::now();
        self.observe(store, evictions);
        nodes::lifecycle(self, store, now);
        nodes::collect_orphans(self, store, now);
        self.observe(store, evictions);
        workloads::sync(self, store, now);
        scheduler::schedule(self, store, now);
        // Preemption victims are recorded and replaced in the same pass.
        self.observe(store, evictions);
        workloads::sync(self, store, now);
        kubelet::run(self, store, now);
        disruption::sync(self, store, now);
        if now >= self.next_scan {
            autoscaler::scan(self, store, served, now);
            self.scans += 1;
            self.next_scan = now + self.cfg.scan_interval;
        }
    }

    /// Between ticks, after any write: record pods that went and replace them.
    fn react(&mut self, store: &mut Store, evictions: &[EvictionRecord]) {
        let now = Instant::now();
        self.observe(store, evictions);
        workloads::sync(self, store, now);
    }

    /// Reads the store's history since the last look and records every pod deletion.
    fn observe(&mut self, store: &Store, evictions: &[EvictionRecord]) {
        let now = Instant::now();
        match store.changes_after(self.cursor) {
            Ok(changes) => {
                for change in changes {
                    if change.kind == ChangeKind::Deleted && change.def.is(resources::pods()) {
                        self.pod_gone(&change.object, evictions, now);
                    }
                }
            }
            // The history was compacted past us: a followed pod no longer stored ended in a way
            // that cannot be told.
            Err(_) => {
                let pods = resources::pods();
                let present: BTreeSet<&str> = store
                    .list(pods, None)
                    .into_iter()
                    .map(|p| str_at(p, "/metadata/uid"))
                    .collect();
                let gone: Vec<String> = self
                    .tracked
                    .keys()
                    .filter(|uid| !present.contains(uid.as_str()))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.workload_pod_ended(&uid, None, Ending::Deleted, now);
                }
            }
        }
        self.cursor = store.rv();
    }

    fn pod_gone(&mut self, pod: &Value, evictions: &[EvictionRecord], now: Instant) {
        let ns = str_at(pod, "/metadata/namespace");
        let name = str_at(pod, "/metadata/name");
        let reason = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "DisruptionTarget" && c["status"] == "True")
            .map(|c| str_at(c, "/reason"));
        let evicted = || {
            evictions
                .iter()
                .any(|e| !e.dry_run && e.namespace == ns && e.name == name)
        };
        let ending = match reason {
            Some("EvictionByEvictionAPI") => Ending::Evicted,
            Some("PreemptionByScheduler") => Ending::Preempted,
            Some("DeletionByPodGC") => Ending::NodeTerminated,
            _ if evicted() => Ending::Evicted,
            _ => Ending::Deleted,
        };
        self.endings.push_back(EndingLog {
            ns: ns.to_string(),
            labels: pod
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            ending,
            at: now,
        });
        while self.endings.len() > ENDINGS_KEPT {
            self.endings.pop_front();
        }
        let node = str_at(pod, "/spec/nodeName");
        let node = (!node.is_empty()).then(|| node.to_string());
        let uid = str_at(pod, "/metadata/uid");
        self.workload_pod_ended(uid, node, ending, now);
    }

    fn workload_pod_ended(
        &mut self,
        uid: &str,
        node: Option<String>,
        ending: Ending,
        now: Instant,
    ) {
        self.kubelet_started.remove(uid);
        self.queue_seq.remove(uid);
        let Some(t) = self.tracked.remove(uid) else {
            return;
        };
        let w = &self.workloads[t.workload];
        let index = self.report.disruptions.len();
        self.report.disruptions.push(Disruption {
            namespace: w.spec.namespace.clone(),
            workload: w.spec.name.clone(),
            pod: t.name,
            node,
            ending,
            at: self.since(now),
            was_running: t.running,
            replacement: None,
            replacement_node: None,
            restored_at: None,
        });
        let queue = &mut self.unpaired[t.workload];
        if t.running {
            queue.push_back(index);
        } else if let Some(gap) = t.closes {
            // A replacement that never ran hands its gap on to the next new pod.
            queue.push_front(gap);
            self.report.disruptions[gap].replacement = None;
        }
    }

    /// A workload pod was created: it closes the oldest open gap, if any.
    fn track_new(&mut self, workload: usize, uid: &str, name: &str) {
        let closes = self.unpaired[workload].pop_front();
        if let Some(gap) = closes {
            self.report.disruptions[gap].replacement = Some(name.to_string());
        }
        self.tracked.insert(
            uid.to_string(),
            Tracked {
                workload,
                name: name.to_string(),
                running: false,
                closes,
            },
        );
    }

    /// The kubelet started a pod.
    fn track_running(&mut self, uid: &str, node: &str, now: Instant) {
        let at = self.since(now);
        let Some(t) = self.tracked.get_mut(uid) else {
            return;
        };
        t.running = true;
        if let Some(gap) = t.closes.take() {
            let d = &mut self.report.disruptions[gap];
            d.restored_at = Some(at);
            d.replacement_node = Some(node.to_string());
        }
    }

    fn snapshot(&self) -> SimReport {
        let mut report = self.report.clone();
        report.elapsed = self.since(Instant::now());
        report.launches = self
            .launches
            .iter()
            .map(|l| NodeLaunch {
                pool: l.pool.clone(),
                name: l.name.clone(),
                requested_at: self.since(l.requested),
                created_at: l.created.map(|t| self.since(t)),
                ready_at: l.ready.map(|t| self.since(t)),
            })
            .collect();
        report.doomed = self
            .doomed
            .iter()
            .map(|(n, t)| (n.clone(), self.since(*t)))
            .collect();
        report.doomed.sort_by_key(|(_, t)| *t);
        report
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` with the store (locked for writing), the accepted evictions and the simulation
/// state, always locked in that order.
fn with_state<T>(
    shared: &Shared,
    state: &Mutex<State>,
    f: impl FnOnce(&mut State, &mut Store, &Served, &[EvictionRecord]) -> T,
) -> T {
    shared.write(|store| {
        let evictions = shared.evictions();
        let mut st = lock(state);
        f(&mut st, store, &shared.served, &evictions)
    })
}

async fn run(shared: Arc<Shared>, state: Arc<Mutex<State>>) {
    let tick = lock(&state).cfg.tick;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut changes = shared.changes.subscribe();
    loop {
        tokio::select! {
            _ = interval.tick() => {
                changes.borrow_and_update();
                with_state(&shared, &state, |st, store, served, ev| st.tick(store, served, ev));
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                changes.borrow_and_update();
                with_state(&shared, &state, |st, store, _, ev| st.react(store, ev));
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running simulation (see the [module documentation](self) for what it models). Cheap to
/// clone; it stops with [`Sim::stop`] or when the last clone is dropped. One simulation per
/// server at a time: two would run every controller twice.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl FakeApiServer {
    /// Starts a cluster simulation on this server's store, in a task on the current Tokio
    /// runtime. Pods and Nodes already stored are scheduled, started and counted like any other.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn simulate(&self, config: SimConfig) -> Sim {
        let cursor = self.shared.store().rv();
        let state = Arc::new(Mutex::new(State::new(config, cursor)));
        let task = tokio::spawn(run(self.shared.clone(), state.clone()));
        Sim {
            inner: Arc::new(Inner {
                shared: self.shared.clone(),
                state,
                task: task.abort_handle(),
            }),
        }
    }
}

impl Sim {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut State, &mut Store, &Served, &[EvictionRecord]) -> T,
    ) -> T {
        with_state(&self.inner.shared, &self.inner.state, f)
    }

    /// Adds (or replaces) a node group the autoscaler may grow.
    pub fn add_pool(&self, spec: PoolSpec) {
        self.with(|st, _, _, _| {
            st.pools.insert(spec.name.clone(), spec);
        });
    }

    /// Creates `n` Ready Nodes of a pool now and returns their names.
    ///
    /// # Panics
    /// If no pool has that name.
    pub fn add_nodes(&self, pool: &str, n: usize) -> Vec<String> {
        self.with(|st, store, _, _| nodes::add_ready(st, store, pool, n))
    }

    /// Adds a workload; its pods are created at once.
    pub fn add_workload(&self, spec: WorkloadSpec) {
        self.with(|st, store, _, _| {
            st.workloads.push(workloads::Workload::new(spec));
            st.unpaired.push(VecDeque::new());
            workloads::sync(st, store, Instant::now());
        });
    }

    /// Creates a PodDisruptionBudget (`minAvailable`, `matchLabels`); its status is computed at
    /// once.
    ///
    /// # Panics
    /// If the store refuses it (a missing namespace, a duplicate name).
    pub fn add_pdb(
        &self,
        namespace: &str,
        name: &str,
        selector: BTreeMap<String, String>,
        min_available: i64,
    ) {
        self.with(|st, store, _, _| {
            disruption::create(store, namespace, name, &selector, min_available);
            disruption::sync(st, store, Instant::now());
        });
    }

    /// Records that `node` received an interruption notice now: bindings to it from now on are
    /// flagged in the report.
    pub fn mark_doomed(&self, node: &str) {
        self.with(|st, _, _, _| {
            st.doomed
                .entry(node.to_string())
                .or_insert_with(Instant::now);
        });
    }

    /// The cloud takes the capacity back: the Node is deleted and, as the pod garbage collector
    /// would, every pod bound to it. Workloads replace their pods at once.
    pub fn terminate_node(&self, node: &str) {
        self.with(|st, store, _, evictions| {
            let now = Instant::now();
            st.observe(store, evictions);
            nodes::terminate(st, store, node, now);
            st.observe(store, evictions);
            workloads::sync(st, store, now);
        });
    }

    /// What the simulation recorded so far.
    pub fn report(&self) -> SimReport {
        let shared = &self.inner.shared;
        let store = shared.store();
        let evictions = shared.evictions();
        let mut st = lock(&self.inner.state);
        st.observe(&store, &evictions);
        st.snapshot()
    }

    /// When the simulation started; report times are measured from here.
    pub fn started(&self) -> Instant {
        lock(&self.inner.state).start
    }

    /// Stops every controller. The store keeps its state; handle methods still write it.
    pub fn stop(&self) {
        self.inner.task.abort();
    }
}
