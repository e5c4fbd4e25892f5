//! Cluster Autoscaler, simplified: one scale-up decision per scan, for the pods the scheduler
//! could not place and the fake pods of CapacityBuffers (kubernetes/autoscaler
//! cluster-autoscaler/core/static_autoscaler.go RunOnce, core/scaleup).

use serde_json::{Value, json};
use std::cmp::Ordering;
use std::collections::HashMap;
use tokio::time::Instant;

use super::cluster::{NodeView, PodView, fits, set_condition, static_filter};
use super::{PoolSpec, Resources, State, nodes};
use crate::resources::{self, CAPACITY_BUFFER_GROUP, Served};
use crate::store::{Store, Target};
use crate::{int_at, str_at};

// capacitybuffer: the only provisioning strategy, the conditions and reasons the buffer
// controller and the pod list processor write, and the fake pods' annotation
// (cluster-autoscaler/capacitybuffer/constants.go, capacitybuffer/common/common.go,
// processors/capacitybuffer/pod_list_processor.go).
const ACTIVE_CAPACITY: &str = "buffer.x-k8s.io/active-capacity";
const READY_FOR_PROVISIONING: &str = "ReadyForProvisioning";
const PROVISIONING: &str = "Provisioning";

fn template_node(st: &State, pool: &PoolSpec, name: &str) -> NodeView {
    NodeView::of(&nodes::node_object(&st.cfg, pool, name, true))
}

/// The CapacityBuffer controller and pod list processor: fills each buffer's status from its
/// spec, and returns `status.replicas` copies of the pod of every buffer ready to provision.
// capacitybuffer: the controller resolves spec.podTemplateRef and spec.replicas into status and
// marks ReadyForProvisioning (capacitybuffer/controller, translators/pod_template_translator.go);
// the processor injects `capacity-buffer-<name>-<i>` pods built from the template's pod
// (pod_list_processor.go makeFakePods) and marks Provisioning.
fn buffer_pods(store: &mut Store, served: &Served) -> Vec<PodView> {
    let Some(def) = served.any_version(CAPACITY_BUFFER_GROUP, "capacitybuffers") else {
        return Vec::new();
    };
    let buffers: Vec<Value> = store.list(def, None).into_iter().cloned().collect();
    let mut fake = Vec::new();
    for buffer in buffers {
        let ns = str_at(&buffer, "/metadata/namespace").to_string();
        let name = str_at(&buffer, "/metadata/name").to_string();
        let strategy = match str_at(&buffer, "/spec/provisioningStrategy") {
            "" => ACTIVE_CAPACITY,
            s => s,
        }
        .to_string();
        let template_name = str_at(&buffer, "/spec/podTemplateRef/name").to_string();
        let replicas = buffer.pointer("/spec/replicas").and_then(Value::as_i64);
        let template = store
            .get(resources::pod_templates(), &ns, &template_name)
            .cloned();
        let mut updated = buffer.clone();
        if !updated.get("status").is_some_and(Value::is_object) {
            updated["status"] = json!({});
        }
        let mut injected = Vec::new();
        match (&template, replicas) {
            (Some(t), Some(replicas)) => {
                let status = &mut updated["status"];
                status["podTemplateRef"] = json!({"name": template_name});
                status["replicas"] = json!(replicas);
                status["provisioningStrategy"] = json!(strategy);
                let generation = int_at(t, "/metadata/generation");
                if generation > 0 {
                    status["podTemplateGeneration"] = json!(generation);
                }
                set_condition(
                    &mut updated,
                    json!({"type": READY_FOR_PROVISIONING, "status": "True",
                           "reason": "AttributesSetSuccessfully", "message": "ready"}),
                );
                let (status, reason) = if strategy != ACTIVE_CAPACITY {
                    ("False", "UnknownProvisioningStrategy")
                } else if replicas <= 0 {
                    ("False", "BufferIsEmpty")
                } else {
                    for i in 1..=replicas {
                        injected.push(fake_pod(t, &ns, &name, i));
                    }
                    ("True", "FakePodsInjected")
                };
                set_condition(
                    &mut updated,
                    json!({"type": PROVISIONING, "status": status, "reason": reason,
                           "message": ""}),
                );
            }
            _ => {
                let why = if template_name.is_empty() {
                    "only podTemplateRef with replicas is simulated".to_string()
                } else if template.is_none() {
                    format!("podtemplates \"{template_name}\" not found")
                } else {
                    "only podTemplateRef with replicas is simulated".to_string()
                };
                set_condition(
                    &mut updated,
                    json!({"type": READY_FOR_PROVISIONING, "status": "False",
                           "reason": "error", "message": why}),
                );
            }
        }
        if updated != buffer {
            let _ = store.update(def, &ns, &name, updated, Target::Raw, false);
        }
        fake.extend(injected.iter().map(PodView::of));
    }
    fake
}

fn fake_pod(template: &Value, ns: &str, buffer: &str, i: i64) -> Value {
    let labels = template
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "metadata": {"name": format!("capacity-buffer-{buffer}-{i}"), "namespace": ns,
                     "labels": labels, "annotations": {"podType": "capacityBufferFakePod"}},
        "spec": template.pointer("/template/spec").cloned().unwrap_or_else(|| json!({})),
    })
}

// estimator: pods are packed largest first, by the sum of their CPU and memory shares of the
// template Node (cluster-autoscaler/estimator/decreasing_pod_orderer.go).
fn size(pod: &PodView, node: &NodeView) -> f64 {
    let share = |r: i64, a: i64| if a > 0 { r as f64 / a as f64 } else { 0.0 };
    share(pod.requests.cpu_millis, node.allocatable.cpu_millis)
        + share(pod.requests.memory_bytes, node.allocatable.memory_bytes)
}

/// One scan: maybe one scale-up.
pub(super) fn scan(st: &mut State, store: &mut Store, served: &Served, now: Instant) {
    let fake = buffer_pods(store, served);
    let cutoff = st.cfg.expendable_pods_priority_cutoff;
    let node_objects: Vec<NodeView> = store
        .list(resources::nodes(), None)
        .into_iter()
        .map(NodeView::of)
        .collect();
    let all_pods: Vec<PodView> = store
        .list(resources::pods(), None)
        .into_iter()
        .map(PodView::of)
        .collect();
    let mut used: HashMap<&str, Resources> = HashMap::new();
    for p in all_pods.iter().filter(|p| !p.terminal()) {
        *used.entry(p.node_name.as_str()).or_default() += p.requests;
    }
    // autoscaler: the candidates are pods the scheduler marked Unschedulable
    // (utils/kubernetes/listers.go unschedulablePodLister); expendable ones — a priority below
    // the cutoff — never cause a scale-up (core/utils/expendable.go FilterOutExpendablePods:
    // `priority < cutoff`).
    let mut pending: Vec<PodView> = all_pods
        .iter()
        .filter(|p| p.awaits_scheduling() && p.unschedulable)
        .filter(|p| p.priority_field.is_none_or(|prio| prio >= cutoff))
        .cloned()
        .collect();
    pending.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.created.cmp(&b.created))
    });
    pending.extend(fake);
    if pending.is_empty() {
        return;
    }

    // autoscaler: pods that fit existing free room or Nodes already on their way are left to
    // the scheduler (core/podlistprocessor/filter_out_schedulable.go; upcoming Nodes are in the
    // snapshot as template Nodes, core/static_autoscaler.go addUpcomingNodesToClusterSnapshot).
    let mut room: Vec<(NodeView, Resources)> = node_objects
        .iter()
        .filter(|n| n.ready)
        .map(|n| {
            (
                n.clone(),
                used.get(n.name.as_str()).copied().unwrap_or_default(),
            )
        })
        .collect();
    for l in st.launches.iter().filter(|l| l.upcoming()) {
        if let Some(pool) = st.pools.get(&l.pool) {
            room.push((template_node(st, pool, &l.name), Resources::default()));
        }
    }
    let mut remaining = Vec::new();
    for pod in pending {
        let slot = room
            .iter_mut()
            .find(|(n, u)| static_filter(&pod, n).is_ok() && fits(&pod, n, u).is_ok());
        match slot {
            Some((_, u)) => *u += pod.requests,
            None => remaining.push(pod),
        }
    }
    if remaining.is_empty() {
        return;
    }

    // scaleup: an option per pool whose template fits some pods, sized by binpacking within
    // max_nodes (core/scaleup/orchestrator/orchestrator.go ComputeExpansionOption,
    // estimator/binpacking_estimator.go); the priority expander takes the highest priority
    // (expander/priority) — upstream picks randomly among equals, here the name decides.
    let mut best: Option<(i32, String, usize)> = None;
    for pool in st.pools.values() {
        let template = template_node(st, pool, &format!("template-{}", pool.name));
        let empty = Resources::default();
        let mut fitting: Vec<&PodView> = remaining
            .iter()
            .filter(|p| static_filter(p, &template).is_ok() && fits(p, &template, &empty).is_ok())
            .collect();
        if fitting.is_empty() {
            continue;
        }
        let existing = node_objects
            .iter()
            .filter(|n| {
                n.labels.get(&st.cfg.pool_label).and_then(Value::as_str) == Some(&pool.name)
            })
            .count();
        let launching = st
            .launches
            .iter()
            .filter(|l| l.pool == pool.name && l.created.is_none() && !l.lost)
            .count();
        let limit = pool.max_nodes.saturating_sub(existing + launching);
        if limit == 0 {
            continue;
        }
        fitting.sort_by(|a, b| {
            size(b, &template)
                .partial_cmp(&size(a, &template))
                .unwrap_or(Ordering::Equal)
        });
        let mut bins: Vec<Resources> = Vec::new();
        for pod in fitting {
            if let Some(bin) = bins.iter_mut().find(|b| fits(pod, &template, b).is_ok()) {
                *bin += pod.requests;
            } else if bins.len() < limit {
                bins.push(pod.requests);
            }
        }
        let better = best.as_ref().is_none_or(|(priority, name, _)| {
            pool.priority > *priority || (pool.priority == *priority && pool.name < *name)
        });
        if better {
            best = Some((pool.priority, pool.name.clone(), bins.len()));
        }
    }
    if let Some((_, pool, count)) = best {
        nodes::request(st, store, &pool, count, now);
    }
}
