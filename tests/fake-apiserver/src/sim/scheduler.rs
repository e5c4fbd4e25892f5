//! kube-scheduler, simplified: queue order, filters, scores, binding, the Unschedulable
//! condition, and DefaultPreemption (pkg/scheduler).

use serde_json::{Value, json};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

use super::cluster::{
    NodeView, PodView, fits, intolerable_prefer_no_schedule, least_allocated,
    preferred_affinity_weight, set_condition, static_filter,
};
use super::{Binding, Resources, State};
use crate::resources;
use crate::selector::LabelSelector;
use crate::store::{Preconditions, Store, Target};
use crate::str_at;

/// A budget as preemption weighs it.
struct Budget {
    ns: String,
    selector: Option<LabelSelector>,
    allowed: i64,
    disrupted: Vec<String>,
}

fn budgets(store: &Store) -> Vec<Budget> {
    store
        .list(resources::pdbs(), None)
        .into_iter()
        .map(|pdb| Budget {
            ns: str_at(pdb, "/metadata/namespace").to_string(),
            selector: pdb
                .pointer("/spec/selector")
                .and_then(LabelSelector::from_object),
            allowed: pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            disrupted: pdb
                .pointer("/status/disruptedPods")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// The cluster as one scheduling cycle sees it, updated as pods are bound and preempted.
struct Snapshot {
    nodes: Vec<NodeView>,
    pods: Vec<PodView>,
    /// Requests of the non-terminal pods bound to each Node.
    used: HashMap<String, Resources>,
    /// Indexes into `pods` of the non-terminal pods bound to each Node.
    on_node: HashMap<String, Vec<usize>>,
}

impl Snapshot {
    fn of(store: &Store) -> Snapshot {
        let nodes: Vec<NodeView> = store
            .list(resources::nodes(), None)
            .into_iter()
            .map(NodeView::of)
            .collect();
        let pods: Vec<PodView> = store
            .list(resources::pods(), None)
            .into_iter()
            .map(PodView::of)
            .collect();
        let mut snapshot = Snapshot {
            nodes,
            pods,
            used: HashMap::new(),
            on_node: HashMap::new(),
        };
        for i in 0..snapshot.pods.len() {
            let p = &snapshot.pods[i];
            if !p.node_name.is_empty() && !p.terminal() {
                let node = p.node_name.clone();
                *snapshot.used.entry(node.clone()).or_default() += p.requests;
                snapshot.on_node.entry(node).or_default().push(i);
            }
        }
        snapshot
    }

    fn used(&self, node: &str) -> Resources {
        self.used.get(node).copied().unwrap_or_default()
    }

    fn place(&mut self, pod: usize, node: &str) {
        let requests = self.pods[pod].requests;
        *self.used.entry(node.to_string()).or_default() += requests;
        self.on_node.entry(node.to_string()).or_default().push(pod);
        self.pods[pod].node_name = node.to_string();
    }

    fn remove(&mut self, pod: usize) {
        let node = std::mem::take(&mut self.pods[pod].node_name);
        if let Some(u) = self.used.get_mut(&node) {
            *u -= self.pods[pod].requests;
        }
        if let Some(list) = self.on_node.get_mut(&node) {
            list.retain(|i| *i != pod);
        }
        self.pods[pod].phase = "Failed".into();
    }
}

// scheduler: the FitError message, one "count reason" per distinct reason, sorted
// (pkg/scheduler/framework/types.go FitError.Error, Diagnosis).
fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// The best feasible Node: fewest untolerated PreferNoSchedule taints, then the largest
/// preferred-affinity weight, then the emptiest, then the name.
fn pick(pod: &PodView, feasible: &[&NodeView], snapshot: &Snapshot) -> Option<String> {
    feasible
        .iter()
        .min_by(|a, b| {
            let key = |n: &NodeView| {
                (
                    intolerable_prefer_no_schedule(pod, n),
                    Reverse(preferred_affinity_weight(pod, n)),
                    Reverse(least_allocated(pod, n, &snapshot.used(&n.name))),
                )
            };
            key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
        })
        .map(|n| n.name.clone())
}

/// Preemption's choice on one Node.
struct Candidate {
    node: String,
    /// Highest priority first.
    victims: Vec<usize>,
    pdb_violations: usize,
}

// preemption: MoreImportantPod — higher priority, then the earlier start
// (pkg/scheduler/util/utils.go).
fn more_important(a: &PodView, b: &PodView) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.start_time.cmp(&b.start_time))
}

// preemption: on one Node, remove every lower-priority pod; if the preemptor then fits, add
// them back most important first, PDB-violating ones before the others, keeping each that
// still leaves room — the rest are the victims (plugins/defaultpreemption
// default_preemption.go SelectVictimsOnNode, filterPodsWithPDBViolation).
fn victims_on(
    pod: &PodView,
    node: &NodeView,
    snapshot: &Snapshot,
    budgets: &[Budget],
) -> Option<Candidate> {
    let mut lower: Vec<usize> = snapshot
        .on_node
        .get(&node.name)
        .into_iter()
        .flatten()
        .copied()
        .filter(|i| {
            let p = &snapshot.pods[*i];
            p.priority < pod.priority && !p.deleting
        })
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut room = snapshot.used(&node.name);
    for i in &lower {
        room -= snapshot.pods[*i].requests;
    }
    if fits(pod, node, &room).is_err() {
        return None;
    }
    lower.sort_by(|a, b| more_important(&snapshot.pods[*a], &snapshot.pods[*b]));
    let mut allowed: Vec<i64> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for i in lower {
        let p = &snapshot.pods[i];
        let mut violates = false;
        for (b, left) in budgets.iter().zip(allowed.iter_mut()) {
            let covers = b.ns == p.ns
                && b.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(Some(&p.labels)));
            if covers && !b.disrupted.contains(&p.name) {
                *left -= 1;
                violates |= *left < 0;
            }
        }
        if violates {
            violating.push(i);
        } else {
            other.push(i);
        }
    }
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, counts) in [(violating, true), (other, false)] {
        for i in group {
            let with = room + snapshot.pods[i].requests;
            if fits(pod, node, &with).is_ok() {
                room = with;
            } else {
                victims.push(i);
                pdb_violations += usize::from(counts);
            }
        }
    }
    if victims.is_empty() {
        return None;
    }
    victims.sort_by(|a, b| more_important(&snapshot.pods[*a], &snapshot.pods[*b]));
    Some(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

// preemption: the Node with the fewest PDB violations, then the lowest highest-victim
// priority, then the smallest sum of victim priorities (each offset by 2^31 so negative
// priorities still count), then the fewest victims, then the latest start among the
// highest-priority victims (pkg/scheduler/framework/preemption/preemption.go
// pickOneNodeForPreemption); the name breaks what remains.
fn choose(candidates: Vec<Candidate>, snapshot: &Snapshot) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let p = |i: &usize| &snapshot.pods[*i];
        let highest = p(&c.victims[0]).priority;
        let sum: i64 = c.victims.iter().map(|i| p(i).priority + (1i64 << 31)).sum();
        let earliest_top = c
            .victims
            .iter()
            .map(p)
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time.clone())
            .min()
            .unwrap_or_default();
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            Reverse(earliest_top),
        )
    };
    candidates
        .into_iter()
        .min_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.node.cmp(&b.node)))
}

// scheduler: binding sets spec.nodeName and the PodScheduled condition
// (pkg/registry/core/pod/storage/storage.go setPodNodeAndMetadata).
fn bind(store: &mut Store, pod: &PodView, node: &str) -> bool {
    let pods = resources::pods();
    let Some(mut obj) = store.get(pods, &pod.ns, &pod.name).cloned() else {
        return false;
    };
    if str_at(&obj, "/metadata/uid") != pod.uid || !str_at(&obj, "/spec/nodeName").is_empty() {
        return false;
    }
    obj["spec"]["nodeName"] = json!(node);
    set_condition(
        &mut obj,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
    );
    store
        .update(pods, &pod.ns, &pod.name, obj, Target::Raw, false)
        .is_ok()
}

// preemption: a victim gets DisruptionTarget reason PreemptionByScheduler before it is deleted
// (pkg/scheduler/framework/preemption/preemption.go prepareCandidate).
fn preempt(store: &mut Store, victim: &PodView) -> bool {
    let pods = resources::pods();
    let Some(mut obj) = store.get(pods, &victim.ns, &victim.name).cloned() else {
        return true;
    };
    set_condition(
        &mut obj,
        json!({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
               "message": "default-scheduler: preempting to accommodate a higher priority pod",
               "lastProbeTime": null}),
    );
    let _ = store.update(pods, &victim.ns, &victim.name, obj, Target::Raw, false);
    let _ = store.delete(
        pods,
        &victim.ns,
        &victim.name,
        &Preconditions::default(),
        false,
    );
    // A victim with finalizers is only being deleted; its room is not free yet.
    store.get(pods, &victim.ns, &victim.name).is_none()
}

// scheduler: a pod that fits nowhere gets PodScheduled=False, reason Unschedulable, and the
// FitError message (pkg/scheduler/schedule_one.go handleSchedulingFailure).
fn mark_unschedulable(store: &mut Store, pod: &PodView, message: &str) {
    let pods = resources::pods();
    let Some(mut obj) = store.get(pods, &pod.ns, &pod.name).cloned() else {
        return;
    };
    let changed = set_condition(
        &mut obj,
        json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
               "message": message, "lastProbeTime": null}),
    );
    if changed {
        let _ = store.update(pods, &pod.ns, &pod.name, obj, Target::Raw, false);
    }
}

/// One scheduling cycle over every pending pod.
pub(super) fn schedule(st: &mut State, store: &mut Store, now: Instant) {
    let mut snapshot = Snapshot::of(store);
    let mut queue: Vec<usize> = (0..snapshot.pods.len())
        .filter(|i| snapshot.pods[*i].awaits_scheduling())
        .collect();
    if queue.is_empty() {
        return;
    }
    for i in &queue {
        let uid = &snapshot.pods[*i].uid;
        if !st.queue_seq.contains_key(uid) {
            st.queue_seq.insert(uid.clone(), st.next_seq);
            st.next_seq += 1;
        }
    }
    // scheduler: PrioritySort — higher priority first, then the earlier arrival
    // (plugins/queuesort/priority_sort.go).
    queue.sort_by_key(|i| {
        let p = &snapshot.pods[*i];
        (
            Reverse(p.priority),
            p.created.clone(),
            st.queue_seq.get(&p.uid).copied().unwrap_or(u64::MAX),
        )
    });
    let budgets = budgets(store);
    for i in queue {
        let pod = snapshot.pods[i].clone();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut feasible = Vec::new();
        for node in &snapshot.nodes {
            let verdict = static_filter(&pod, node)
                .map_err(|r| vec![r])
                .and_then(|()| fits(&pod, node, &snapshot.used(&node.name)));
            match verdict {
                Ok(()) => feasible.push(node),
                Err(rs) => {
                    for r in rs {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        if let Some(node) = pick(&pod, &feasible, &snapshot) {
            if bind(store, &pod, &node) {
                snapshot.place(i, &node);
                record_binding(st, &pod, &node, now);
            }
            continue;
        }
        if !pod.preempt_never {
            let candidates: Vec<Candidate> = snapshot
                .nodes
                .iter()
                .filter(|n| static_filter(&pod, n).is_ok())
                .filter_map(|n| victims_on(&pod, n, &snapshot, &budgets))
                .collect();
            if let Some(c) = choose(candidates, &snapshot) {
                let mut freed = true;
                for v in &c.victims {
                    let victim = snapshot.pods[*v].clone();
                    freed &= preempt(store, &victim);
                    snapshot.remove(*v);
                }
                if freed && bind(store, &pod, &c.node) {
                    snapshot.place(i, &c.node);
                    record_binding(st, &pod, &c.node, now);
                }
                continue;
            }
        }
        let message = unschedulable_message(snapshot.nodes.len(), &reasons);
        mark_unschedulable(store, &pod, &message);
    }
}

fn record_binding(st: &mut State, pod: &PodView, node: &str, now: Instant) {
    let to_doomed = st.doomed.get(node).is_some_and(|t| *t <= now);
    let at = st.since(now);
    st.report.bindings.push(Binding {
        namespace: pod.ns.clone(),
        pod: pod.name.clone(),
        node: node.to_string(),
        at,
        to_doomed,
    });
    st.queue_seq.remove(&pod.uid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_counts_reasons() {
        let mut reasons = BTreeMap::new();
        reasons.insert("Insufficient cpu".to_string(), 2);
        reasons.insert("node(s) had untolerated taint {spot: true}".to_string(), 1);
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 1 node(s) had untolerated taint {spot: true}, 2 Insufficient cpu."
        );
        assert_eq!(
            unschedulable_message(0, &BTreeMap::new()),
            "no nodes available to schedule pods"
        );
    }
}
