//! Nodes: the cloud side (launching, booting, taking capacity back) and the pod garbage
//! collector that follows a Node's deletion.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::cluster::{resource_list, set_condition};
use super::{PoolSpec, SimConfig, State};
use crate::resources;
use crate::store::{Preconditions, Store, Target, now};
use crate::str_at;

// kubernetes: the taint a Node carries until its kubelet reports Ready
// (k8s.io/api/core/v1 TaintNodeNotReady, added by the node lifecycle controller).
pub(super) const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const DEFAULT_ZONE: &str = "us-east-1a";

/// A Node the autoscaler asked for, on its way.
#[derive(Debug)]
pub(super) struct Launch {
    pub pool: String,
    pub name: String,
    pub requested: Instant,
    pub created: Option<Instant>,
    pub ready: Option<Instant>,
    /// Deleted before it became Ready.
    pub lost: bool,
}

impl Launch {
    /// Not yet Ready and not lost: capacity the autoscaler counts as coming.
    pub(super) fn upcoming(&self) -> bool {
        self.ready.is_none() && !self.lost
    }
}

fn ready_condition(ready: bool) -> Value {
    let t = now();
    if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status", "lastHeartbeatTime": t,
               "lastTransitionTime": t})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
               "message": "container runtime network not ready: NetworkReady=false",
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    }
}

/// A Node of `pool` as EKS registers one: the pool's labels plus the pool label and hostname,
/// its taints, `aws:///<zone>/i-…` providerID, allocatable as capacity.
pub(super) fn node_object(cfg: &SimConfig, pool: &PoolSpec, name: &str, ready: bool) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in &pool.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(cfg.pool_label.clone(), json!(pool.name));
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    let zone = pool
        .labels
        .get("topology.kubernetes.io/zone")
        .map_or(DEFAULT_ZONE, String::as_str);
    let instance: String = (0..17)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect();
    let mut taints = pool.taints.clone();
    if !ready {
        taints.push(json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"}));
    }
    let list = resource_list(&pool.allocatable);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": format!("aws:///{zone}/i-{instance}"), "taints": taints},
        "status": {"capacity": list, "allocatable": list,
                   "conditions": [ready_condition(ready)]},
    })
}

/// A name no Node has and no launch holds: `<pool>-<n>`.
fn fresh_name(st: &mut State, store: &Store, pool: &str) -> String {
    loop {
        st.node_seq += 1;
        let name = format!("{pool}-{}", st.node_seq);
        let taken = store.get(resources::nodes(), "", &name).is_some()
            || st.launches.iter().any(|l| l.name == name);
        if !taken {
            return name;
        }
    }
}

fn pool_spec(st: &State, pool: &str) -> PoolSpec {
    st.pools
        .get(pool)
        .cloned()
        .unwrap_or_else(|| panic!("the simulation has no pool called {pool:?}"))
}

pub(super) fn add_ready(st: &mut State, store: &mut Store, pool: &str, n: usize) -> Vec<String> {
    let spec = pool_spec(st, pool);
    let mut names = Vec::new();
    for _ in 0..n {
        let name = fresh_name(st, store, pool);
        let node = node_object(&st.cfg, &spec, &name, true);
        store
            .create(resources::nodes(), "", node, Target::Raw, false)
            .expect("a fresh Node name is free");
        st.seen_nodes.insert(name.clone());
        names.push(name);
    }
    names
}

/// Asks the cloud for `count` Nodes of `pool` now.
pub(super) fn request(st: &mut State, store: &Store, pool: &str, count: usize, now: Instant) {
    for _ in 0..count {
        let name = fresh_name(st, store, pool);
        st.launches.push(Launch {
            pool: pool.to_string(),
            name,
            requested: now,
            created: None,
            ready: None,
            lost: false,
        });
    }
}

/// Launched Nodes appear after `launch_delay` (NotReady, tainted) and become Ready after
/// `boot_delay`.
pub(super) fn lifecycle(st: &mut State, store: &mut Store, now: Instant) {
    let nodes = resources::nodes();
    let (launch_delay, boot_delay) = (st.cfg.launch_delay, st.cfg.boot_delay);
    for i in 0..st.launches.len() {
        let l = &st.launches[i];
        if l.lost || l.ready.is_some() {
            continue;
        }
        match l.created {
            None if now >= l.requested + launch_delay => {
                let Some(spec) = st.pools.get(&l.pool).cloned() else {
                    st.launches[i].lost = true;
                    continue;
                };
                let node = node_object(&st.cfg, &spec, &l.name, false);
                match store.create(nodes, "", node, Target::Raw, false) {
                    Ok(_) => st.launches[i].created = Some(now),
                    Err(_) => st.launches[i].lost = true,
                }
            }
            Some(created) if now >= created + boot_delay => {
                let Some(mut node) = store.get(nodes, "", &l.name).cloned() else {
                    st.launches[i].lost = true;
                    continue;
                };
                if let Some(taints) = node
                    .pointer_mut("/spec/taints")
                    .and_then(Value::as_array_mut)
                {
                    taints.retain(|t| t["key"] != NOT_READY_TAINT);
                }
                set_condition(&mut node, ready_condition(true));
                let name = l.name.clone();
                if store
                    .update(nodes, "", &name, node, Target::Raw, false)
                    .is_ok()
                {
                    st.launches[i].ready = Some(now);
                }
            }
            _ => {}
        }
    }
}

// podgc: a pod bound to a Node that no longer exists is marked Failed with a DisruptionTarget
// condition and deleted with no grace (pkg/controller/podgc/gc_controller.go gcOrphaned,
// markFailedAndDeletePodWithCondition); upstream waits a 40 s quarantine first.
fn delete_orphan(store: &mut Store, pod: &Value) {
    let pods = resources::pods();
    let ns = str_at(pod, "/metadata/namespace").to_string();
    let name = str_at(pod, "/metadata/name").to_string();
    let mut failed = pod.clone();
    failed["status"]["phase"] = json!("Failed");
    set_condition(
        &mut failed,
        json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
               "message": "PodGC: node no longer exists", "lastProbeTime": null}),
    );
    if store
        .update(pods, &ns, &name, failed, Target::Raw, false)
        .is_ok()
    {
        let _ = store.delete(pods, &ns, &name, &Preconditions::default(), false);
    }
}

fn delete_pods_on(store: &mut Store, gone: &[String]) {
    let orphans: Vec<Value> = store
        .list(resources::pods(), None)
        .into_iter()
        .filter(|p| gone.iter().any(|n| n == str_at(p, "/spec/nodeName")))
        .cloned()
        .collect();
    for pod in orphans {
        delete_orphan(store, &pod);
    }
}

/// Pods bound to Nodes seen before and gone now are garbage collected.
pub(super) fn collect_orphans(st: &mut State, store: &mut Store, _now: Instant) {
    let present: std::collections::BTreeSet<String> = store
        .list(resources::nodes(), None)
        .into_iter()
        .map(|n| str_at(n, "/metadata/name").to_string())
        .collect();
    let gone: Vec<String> = st.seen_nodes.difference(&present).cloned().collect();
    if !gone.is_empty() {
        delete_pods_on(store, &gone);
    }
    st.seen_nodes = present;
}

/// The cloud reclaims a Node: it is deleted, then its pods.
pub(super) fn terminate(st: &mut State, store: &mut Store, node: &str, _now: Instant) {
    let _ = store.delete(
        resources::nodes(),
        "",
        node,
        &Preconditions::default(),
        false,
    );
    delete_pods_on(store, &[node.to_string()]);
    st.seen_nodes.remove(node);
    for l in st.launches.iter_mut().filter(|l| l.name == node) {
        if l.ready.is_none() {
            l.lost = true;
        }
    }
}
