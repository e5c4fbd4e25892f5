//! The disruption controller: every PodDisruptionBudget's status, recomputed each tick
//! (pkg/controller/disruption/disruption.go trySync), and the report's budget violations.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

use super::cluster::set_condition;
use super::{Ending, PdbViolation, State};
use crate::resources;
use crate::selector::LabelSelector;
use crate::store::{Store, Target};
use crate::{int_at, str_at};

// disruption: an entry of disruptedPods older than this is dropped: the eviction it records
// never deleted the pod (disruption.go DeletionTimeout).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// What the report remembers of one budget.
#[derive(Debug, Default)]
pub(super) struct Track {
    /// When the budget was last seen met; `None` until it first is.
    last_met: Option<Instant>,
    /// The violation in progress (index into the report's list).
    open: Option<usize>,
}

/// Creates a budget as a client would (status zeroed, generation 1).
pub(super) fn create(
    store: &mut Store,
    namespace: &str,
    name: &str,
    selector: &BTreeMap<String, String>,
    min_available: i64,
) {
    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": selector}},
    });
    if let Err(e) = store.create(resources::pdbs(), namespace, pdb, Target::Main, false) {
        panic!("cannot create PodDisruptionBudget {namespace}/{name}: {e}");
    }
}

/// An int-or-percent against a total, rounded up (intstr.GetScaledValueFromIntOrPercent).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    Some((pct * total + 99) / 100)
}

// disruption: expectedPods and desiredHealthy (disruption.go getExpectedPodCount); upstream
// takes expectedPods from the controllers' scale for percentages and maxUnavailable, here it
// is the number of matching pods.
fn desired(spec: &Value, expected: i64) -> i64 {
    if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        (expected - scaled(max, expected).unwrap_or(0)).max(0)
    } else if let Some(min) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        scaled(min, expected).unwrap_or(0)
    } else {
        0
    }
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn expired(at: &Value) -> bool {
    let Some(at) = at.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return true;
    };
    let limit = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    at.saturating_add(limit)
        .is_ok_and(|deadline| deadline < jiff::Timestamp::now())
}

/// The status the disruption controller would write, given the budget and the pods in its
/// namespace.
fn status_of(pdb: &Value, pods: &[&Value]) -> Value {
    let labels = |p: &Value| {
        p.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
    };
    // disruption: a nil selector matches no pod, an empty one every pod (policy/v1).
    let selector = pdb
        .pointer("/spec/selector")
        .and_then(LabelSelector::from_object);
    let matching: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| {
            selector
                .as_ref()
                .is_some_and(|s| s.matches(labels(p).as_ref()))
        })
        .collect();
    let expected = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let desired = desired(&pdb["spec"], expected);
    // disruption: an evicted pod stays counted as disrupted until it is deleted or the entry
    // expires (buildDisruptedPodMap); the pods not being deleted, not disrupted and Ready are
    // healthy (countHealthyPods).
    let old = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut disrupted = Map::new();
    for pod in &matching {
        let name = str_at(pod, "/metadata/name");
        if let Some(at) = old.get(name)
            && str_at(pod, "/metadata/deletionTimestamp").is_empty()
            && !expired(at)
        {
            disrupted.insert(name.to_string(), at.clone());
        }
    }
    let healthy = matching
        .iter()
        .filter(|p| str_at(p, "/metadata/deletionTimestamp").is_empty())
        .filter(|p| !disrupted.contains_key(str_at(p, "/metadata/name")))
        .filter(|p| is_ready(p))
        .count();
    let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
    let allowed = (healthy - desired).max(0);
    let mut status = json!({
        "observedGeneration": int_at(pdb, "/metadata/generation"),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    if let Some(conditions) = pdb.pointer("/status/conditions") {
        status["conditions"] = conditions.clone();
    }
    status
}

pub(super) fn sync(st: &mut State, store: &mut Store, now: Instant) {
    let pdbs: Vec<Value> = store
        .list(resources::pdbs(), None)
        .into_iter()
        .cloned()
        .collect();
    let mut present = HashSet::new();
    for pdb in pdbs {
        let ns = str_at(&pdb, "/metadata/namespace").to_string();
        let name = str_at(&pdb, "/metadata/name").to_string();
        let pods = store.list(resources::pods(), Some(&ns));
        let mut updated = pdb.clone();
        updated["status"] = status_of(&pdb, &pods);
        let allowed = int_at(&updated, "/status/disruptionsAllowed");
        // disruption: DisruptionAllowed is True with reason SufficientPods when a disruption is
        // allowed, else False with InsufficientPods (pkg/apis/policy/helper
        // UpdateDisruptionAllowedCondition).
        let (status, reason) = if allowed > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        let generation = updated["status"]["observedGeneration"].clone();
        set_condition(
            &mut updated,
            json!({"type": "DisruptionAllowed", "status": status, "reason": reason,
                   "message": "", "observedGeneration": generation}),
        );
        let (current, desired) = (
            int_at(&updated, "/status/currentHealthy"),
            int_at(&updated, "/status/desiredHealthy"),
        );
        if updated != pdb {
            let _ = store.update(resources::pdbs(), &ns, &name, updated, Target::Raw, false);
        }
        let selector = pdb
            .pointer("/spec/selector")
            .and_then(LabelSelector::from_object);
        let key = (ns.clone(), name.clone());
        present.insert(key.clone());
        account(st, key, selector, current, desired, now);
    }
    st.pdbs.retain(|k, _| present.contains(k));
}

/// Opens a violation when a budget met before is short now, and closes it when met again.
fn account(
    st: &mut State,
    key: (String, String),
    selector: Option<LabelSelector>,
    current: i64,
    desired: i64,
    now: Instant,
) {
    let at = st.since(now);
    let track = st.pdbs.entry(key.clone()).or_default();
    if current >= desired {
        if let Some(i) = track.open.take() {
            st.report.pdb_violations[i].restored_at = Some(at);
        }
        track.last_met = Some(now);
        return;
    }
    let (Some(last_met), None) = (track.last_met, track.open) else {
        return;
    };
    let mut causes: Vec<Ending> = Vec::new();
    for e in st
        .endings
        .iter()
        .filter(|e| e.at >= last_met && e.ns == key.0)
    {
        let matches = selector
            .as_ref()
            .is_some_and(|s| s.matches(Some(&e.labels)));
        if matches && !causes.contains(&e.ending) {
            causes.push(e.ending);
        }
    }
    st.pdbs.entry(key.clone()).or_default().open = Some(st.report.pdb_violations.len());
    st.report.pdb_violations.push(PdbViolation {
        namespace: key.0,
        name: key.1,
        at,
        restored_at: None,
        current_healthy: current,
        desired_healthy: desired,
        causes,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
               "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn status_counts_healthy_pods_against_the_budget() {
        let pdb = json!({"metadata": {"name": "web", "generation": 2},
                         "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
                         "status": {"disruptedPods": {"c": jiff::Timestamp::now().to_string(),
                                                      "gone": jiff::Timestamp::now().to_string()}}});
        let (a, b, c, d) = (
            pod("a", true),
            pod("b", true),
            pod("c", true),
            pod("d", false),
        );
        let other = json!({"metadata": {"name": "x", "labels": {"app": "db"}}});
        let s = status_of(&pdb, &[&a, &b, &c, &d, &other]);
        assert_eq!(s["expectedPods"], 4);
        assert_eq!(s["currentHealthy"], 2, "c is disrupted, d unready: {s}");
        assert_eq!(s["desiredHealthy"], 2);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["observedGeneration"], 2);
        assert!(s["disruptedPods"].get("gone").is_none());

        let pct = json!({"spec": {"maxUnavailable": "50%", "selector": {}}});
        let s = status_of(&pct, &[&a, &b, &c]);
        assert_eq!(
            (
                s["desiredHealthy"].as_i64(),
                s["disruptionsAllowed"].as_i64()
            ),
            (Some(1), Some(2))
        );
        let none = json!({"spec": {"minAvailable": 1}});
        assert_eq!(status_of(&none, &[&a])["expectedPods"], 0);
    }
}
