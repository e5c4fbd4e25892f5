//! The kubelet, as far as a pod's phase goes: a pod bound to a Ready Node runs, and is Ready,
//! `pod_start_delay` after both became true.

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use tokio::time::Instant;

use super::State;
use super::cluster::{NodeView, set_condition};
use crate::resources;
use crate::store::{Store, Target, now};
use crate::str_at;

// kubelet: a started pod's status — phase Running, startTime, the pod conditions and one
// running, ready status per container (pkg/kubelet/kubelet_pods.go generateAPIPodStatus,
// pkg/kubelet/status/generate.go).
fn started(mut pod: Value) -> Value {
    let t = now();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": "",
                   "containerID": format!("containerd://{:016x}", fastrand::u64(..)),
                   "ready": true, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": t}}})
        })
        .collect();
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        set_condition(
            &mut pod,
            json!({"type": kind, "status": "True", "lastProbeTime": null}),
        );
    }
    let status = &mut pod["status"];
    status["phase"] = json!("Running");
    status["startTime"] = json!(t);
    status["containerStatuses"] = json!(containers);
    pod
}

pub(super) fn run(st: &mut State, store: &mut Store, now: Instant) {
    let pods = resources::pods();
    let ready: BTreeSet<String> = store
        .list(resources::nodes(), None)
        .into_iter()
        .map(NodeView::of)
        .filter(|n| n.ready)
        .map(|n| n.name)
        .collect();
    let waiting: Vec<Value> = store
        .list(pods, None)
        .into_iter()
        .filter(|p| matches!(str_at(p, "/status/phase"), "" | "Pending"))
        .filter(|p| str_at(p, "/metadata/deletionTimestamp").is_empty())
        .filter(|p| ready.contains(str_at(p, "/spec/nodeName")))
        .cloned()
        .collect();
    let mut alive = HashSet::new();
    for pod in waiting {
        let uid = str_at(&pod, "/metadata/uid").to_string();
        alive.insert(uid.clone());
        let since = *st.kubelet_started.entry(uid.clone()).or_insert(now);
        if now < since + st.cfg.pod_start_delay {
            continue;
        }
        let ns = str_at(&pod, "/metadata/namespace").to_string();
        let name = str_at(&pod, "/metadata/name").to_string();
        let node = str_at(&pod, "/spec/nodeName").to_string();
        if store
            .update(pods, &ns, &name, started(pod), Target::Raw, false)
            .is_ok()
        {
            st.kubelet_started.remove(&uid);
            alive.remove(&uid);
            st.track_running(&uid, &node, now);
        }
    }
    // A pod whose Node went NotReady, or that went, starts its wait again.
    st.kubelet_started.retain(|uid, _| alive.contains(uid));
}
