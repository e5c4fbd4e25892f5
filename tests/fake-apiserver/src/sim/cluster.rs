//! Views of pods and Nodes as the scheduler and the autoscaler read them, quantities, and the
//! filters both share (kube-scheduler's NodeUnschedulable, TaintToleration, NodeAffinity and
//! NodeResourcesFit plugins, simplified).

use serde_json::{Map, Value, json};

use super::Resources;
use crate::store::now;
use crate::{int_at, str_at};

/// A Kubernetes quantity (`"500m"`, `"1.5"`, `"128Mi"`, `"1e3"`, or a JSON number) in base units.
// apimachinery: the quantity grammar of k8s.io/apimachinery/pkg/api/resource/quantity.go —
// a signed decimal, then a binary (Ki…Ei), decimal (n, u, m, k, M…E) or exponent suffix.
pub(crate) fn parse_quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exp => {
            let digits = exp.strip_prefix('e').or_else(|| exp.strip_prefix('E'))?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * scale)
}

/// CPU in millicores, rounded up as the apiserver rounds sub-milli quantities.
fn cpu_millis(v: &Value) -> i64 {
    parse_quantity(v).map_or(0, |q| (q * 1000.0).ceil() as i64)
}

fn whole(v: &Value) -> i64 {
    parse_quantity(v).map_or(0, |q| q.ceil() as i64)
}

/// `4` or `3500m`, as the apiserver canonicalises CPU.
pub(crate) fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// `16Gi`, `512Mi`, `100Ki` or plain bytes.
pub(crate) fn format_bytes(bytes: i64) -> String {
    for (suffix, unit) in [("Gi", 1i64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes != 0 && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// `{cpu, memory, pods}` as a ResourceList.
pub(crate) fn resource_list(r: &Resources) -> Value {
    json!({"cpu": format_cpu(r.cpu_millis), "memory": format_bytes(r.memory_bytes),
           "pods": r.pods.to_string()})
}

fn container_requests(c: &Value) -> Resources {
    // apiserver: requests default to limits when only limits are set
    // (pkg/apis/core/v1/defaults.go SetDefaults_Pod).
    let get = |name: &str| {
        c.pointer(&format!("/resources/requests/{name}"))
            .or_else(|| c.pointer(&format!("/resources/limits/{name}")))
    };
    Resources {
        cpu_millis: get("cpu").map_or(0, cpu_millis),
        memory_bytes: get("memory").map_or(0, whole),
        pods: 0,
    }
}

// scheduler: a pod requests the sum of its containers, or its largest init container if more
// (k8s.io/component-helpers/resource/helpers.go PodRequests; sidecars and overhead are not
// modelled). `pods` is always 1.
fn pod_requests(pod: &Value) -> Resources {
    let list = |key: &str| {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut sum = Resources::default();
    for c in list("containers") {
        sum += container_requests(&c);
    }
    for c in list("initContainers") {
        let r = container_requests(&c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.max(r.memory_bytes);
    }
    sum.pods = 1;
    sum
}

fn condition_is(obj: &Value, kind: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == status)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
}

/// Sets a pod or Node condition; `lastTransitionTime` moves only when the status does. Returns
/// whether anything but times changed (kubelet/scheduler: podutil.UpdatePodCondition).
pub(crate) fn set_condition(obj: &mut Value, mut cond: Value) -> bool {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let status = &mut obj["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"]
        .as_array_mut()
        .expect("conditions were just made an array");
    if cond.get("lastTransitionTime").is_none() {
        cond["lastTransitionTime"] = json!(now());
    }
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(existing) => {
            let same = |k: &str| existing.get(k) == cond.get(k);
            let unchanged = same("status") && same("reason") && same("message");
            if same("status") {
                cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            if let Some(t) = existing.get("lastHeartbeatTime").cloned()
                && cond.get("lastHeartbeatTime").is_none()
            {
                cond["lastHeartbeatTime"] = t;
            }
            *existing = cond;
            !unchanged
        }
        None => {
            list.push(cond);
            true
        }
    }
}

/// What the scheduler and autoscaler need of a pod.
#[derive(Debug, Clone)]
pub(crate) struct PodView {
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub labels: Map<String, Value>,
    /// `spec.priority` as admission set it; `None` for a pod written without admission.
    pub priority_field: Option<i64>,
    /// The priority the scheduler uses: `spec.priority`, or 0.
    pub priority: i64,
    pub preempt_never: bool,
    pub requests: Resources,
    pub node_selector: Map<String, Value>,
    pub affinity: Value,
    pub tolerations: Vec<Value>,
    pub node_name: String,
    pub phase: String,
    pub deleting: bool,
    pub created: String,
    pub start_time: String,
    pub default_scheduler: bool,
    pub gated: bool,
    /// PodScheduled is False with reason Unschedulable: a scheduling pass failed.
    pub unschedulable: bool,
}

impl PodView {
    pub(crate) fn of(pod: &Value) -> PodView {
        let map = |p: &str| {
            pod.pointer(p)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let priority_field = pod.pointer("/spec/priority").and_then(Value::as_i64);
        let scheduler = str_at(pod, "/spec/schedulerName");
        let unschedulable = condition(pod, "PodScheduled")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "Unschedulable");
        PodView {
            ns: str_at(pod, "/metadata/namespace").to_string(),
            name: str_at(pod, "/metadata/name").to_string(),
            uid: str_at(pod, "/metadata/uid").to_string(),
            labels: map("/metadata/labels"),
            priority_field,
            priority: priority_field.unwrap_or(0),
            preempt_never: str_at(pod, "/spec/preemptionPolicy") == "Never",
            requests: pod_requests(pod),
            node_selector: map("/spec/nodeSelector"),
            affinity: pod
                .pointer("/spec/affinity")
                .cloned()
                .unwrap_or(Value::Null),
            tolerations: pod
                .pointer("/spec/tolerations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            node_name: str_at(pod, "/spec/nodeName").to_string(),
            phase: str_at(pod, "/status/phase").to_string(),
            deleting: !str_at(pod, "/metadata/deletionTimestamp").is_empty(),
            created: str_at(pod, "/metadata/creationTimestamp").to_string(),
            start_time: str_at(pod, "/status/startTime").to_string(),
            default_scheduler: scheduler.is_empty() || scheduler == "default-scheduler",
            gated: pod
                .pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .is_some_and(|g| !g.is_empty()),
            unschedulable,
        }
    }

    pub(crate) fn terminal(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }

    /// Waiting for kube-scheduler: Pending, unbound, not being deleted, ours, not gated
    /// (scheduler: pods with schedulingGates wait outside the active queue, plugins/schedulinggates).
    pub(crate) fn awaits_scheduling(&self) -> bool {
        matches!(self.phase.as_str(), "" | "Pending")
            && self.node_name.is_empty()
            && !self.deleting
            && self.default_scheduler
            && !self.gated
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    fn of(v: &Value) -> Taint {
        Taint {
            key: str_at(v, "/key").to_string(),
            value: str_at(v, "/value").to_string(),
            effect: str_at(v, "/effect").to_string(),
        }
    }
}

/// What the scheduler and autoscaler need of a Node.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    pub name: String,
    pub labels: Map<String, Value>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable: Resources,
}

impl NodeView {
    pub(crate) fn of(node: &Value) -> NodeView {
        let allocatable = |key: &str| node.pointer(&format!("/status/allocatable/{key}"));
        NodeView {
            name: str_at(node, "/metadata/name").to_string(),
            labels: node
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            taints: node
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Taint::of)
                .collect(),
            unschedulable: node
                .pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ready: condition_is(node, "Ready", "True"),
            allocatable: Resources {
                cpu_millis: allocatable("cpu").map_or(0, cpu_millis),
                memory_bytes: allocatable("memory").map_or(0, whole),
                pods: allocatable("pods").map_or(0, whole),
            },
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }
}

// core/v1: a toleration matches a taint when the effects match (an empty toleration effect
// matches every effect), the keys match (an empty key matches every key — valid only with
// Exists), and the operator holds: Exists for any value, Equal (or empty) for the same value
// (k8s.io/api/core/v1/toleration.go ToleratesTaint).
pub(crate) fn tolerates(tolerations: &[Value], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect = str_at(t, "/effect");
        let key = str_at(t, "/key");
        if !effect.is_empty() && effect != taint.effect {
            return false;
        }
        if !key.is_empty() && key != taint.key {
            return false;
        }
        match str_at(t, "/operator") {
            "Exists" => true,
            "" | "Equal" => str_at(t, "/value") == taint.value,
            _ => false,
        }
    })
}

// nodeaffinity: one NodeSelectorRequirement against a value (k8s.io/component-helpers/
// scheduling/corev1/nodeaffinity/nodeaffinity.go, labels.Selector semantics): In, NotIn,
// Exists, DoesNotExist, and Gt/Lt comparing integers.
fn requirement_holds(req: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = req
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let int = |s: &str| s.parse::<i64>().ok();
    match str_at(req, "/operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => match (value.and_then(int), values.first().and_then(|v| int(v))) {
            (Some(have), Some(bound)) => have > bound,
            _ => false,
        },
        "Lt" => match (value.and_then(int), values.first().and_then(|v| int(v))) {
            (Some(have), Some(bound)) => have < bound,
            _ => false,
        },
        _ => false,
    }
}

// nodeaffinity: a term's matchExpressions (on labels) and matchFields (metadata.name only) are
// ANDed; a term with neither matches no Node (nodeaffinity.go nodeSelectorTerm.match).
fn term_matches(term: &Value, node: &NodeView) -> bool {
    let list = |key: &str| {
        term.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (exprs, fields) = (list("matchExpressions"), list("matchFields"));
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|e| requirement_holds(e, node.label(str_at(e, "/key"))))
        && fields
            .iter()
            .all(|f| str_at(f, "/key") == "metadata.name" && requirement_holds(f, Some(&node.name)))
}

// nodeaffinity: nodeSelector labels must all match, and the required affinity's terms are ORed
// (plugins/nodeaffinity, RequiredNodeAffinity.Match).
fn node_affinity_matches(pod: &PodView, node: &NodeView) -> bool {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.label(k) == v.as_str());
    let required = pod
        .affinity
        .pointer("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution");
    let affinity_ok = match required.filter(|r| !r.is_null()) {
        None => true,
        Some(r) => r
            .get("nodeSelectorTerms")
            .and_then(Value::as_array)
            .is_some_and(|terms| terms.iter().any(|t| term_matches(t, node))),
    };
    selector_ok && affinity_ok
}

/// The summed weights of the pod's preferred node affinity terms this Node matches
/// (plugins/nodeaffinity Score).
pub(crate) fn preferred_affinity_weight(pod: &PodView, node: &NodeView) -> i64 {
    pod.affinity
        .pointer("/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("preference").is_some_and(|t| term_matches(t, node)))
        .map(|p| int_at(p, "/weight"))
        .sum()
}

/// PreferNoSchedule taints the pod does not tolerate (plugins/tainttoleration Score: fewer is
/// better). Only tolerations whose effect is empty or PreferNoSchedule count.
pub(crate) fn intolerable_prefer_no_schedule(pod: &PodView, node: &NodeView) -> usize {
    let tolerations: Vec<Value> = pod
        .tolerations
        .iter()
        .filter(|t| matches!(str_at(t, "/effect"), "" | "PreferNoSchedule"))
        .cloned()
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&tolerations, t))
        .count()
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Every filter but resource fit, in the default profile's order; `Err` is the reason the
/// scheduler reports for this Node.
pub(crate) fn static_filter(pod: &PodView, node: &NodeView) -> Result<(), String> {
    if !node.ready {
        return Err("node(s) were not ready".into());
    }
    // nodeunschedulable: a cordoned Node fits only pods tolerating
    // node.kubernetes.io/unschedulable:NoSchedule (plugins/nodeunschedulable).
    let cordon = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        value: String::new(),
        effect: "NoSchedule".into(),
    };
    if node.unschedulable && !tolerates(&pod.tolerations, &cordon) {
        return Err("node(s) were unschedulable".into());
    }
    // tainttoleration: every NoSchedule and NoExecute taint must be tolerated
    // (plugins/tainttoleration Filter, v1helper.FindMatchingUntoleratedTaint).
    if let Some(t) = node.taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(&pod.tolerations, t)
    }) {
        return Err(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key, t.value
        ));
    }
    if !node_affinity_matches(pod, node) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    Ok(())
}

// noderesources: the pod fits when its requests plus those already on the Node stay within
// allocatable, and the Node has room for one more pod (plugins/noderesources/fit.go fitsRequest).
pub(crate) fn fits(pod: &PodView, node: &NodeView, used: &Resources) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if used.pods + 1 > node.allocatable.pods {
        reasons.push("Too many pods".to_string());
    }
    let r = &pod.requests;
    if r.cpu_millis > 0 && used.cpu_millis + r.cpu_millis > node.allocatable.cpu_millis {
        reasons.push("Insufficient cpu".to_string());
    }
    if r.memory_bytes > 0 && used.memory_bytes + r.memory_bytes > node.allocatable.memory_bytes {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// NodeResourcesFit's LeastAllocated score, CPU and memory weighted equally: higher is emptier
/// (plugins/noderesources/least_allocated.go).
pub(crate) fn least_allocated(pod: &PodView, node: &NodeView, used: &Resources) -> i64 {
    let score = |capacity: i64, requested: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * 100 / capacity
        }
    };
    score(
        node.allocatable.cpu_millis,
        used.cpu_millis + pod.requests.cpu_millis,
    ) + score(
        node.allocatable.memory_bytes,
        used.memory_bytes + pod.requests.memory_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value) -> NodeView {
        NodeView::of(&json!({
            "metadata": {"name": "n1", "labels": labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn pod(spec: Value) -> PodView {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] =
                json!([{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]);
        }
        PodView::of(&json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec}))
    }

    #[test]
    fn quantities() {
        let q = |s: &str| parse_quantity(&json!(s)).unwrap();
        assert_eq!(q("500m"), 0.5);
        assert_eq!(q("2"), 2.0);
        assert_eq!(q("1Gi"), 1073741824.0);
        assert_eq!(q("1G"), 1e9);
        assert_eq!(q("129e6"), 129e6);
        assert_eq!(q("1.5Ki"), 1536.0);
        assert_eq!(parse_quantity(&json!(3)), Some(3.0));
        assert!(parse_quantity(&json!("lots")).is_none());
        assert_eq!(cpu_millis(&json!("0.25")), 250);
        assert_eq!(
            (format_cpu(4000), format_cpu(3500)),
            ("4".into(), "3500m".into())
        );
        assert_eq!(format_bytes(16 << 30), "16Gi");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Gi"}}}],
        }));
        assert_eq!(p.requests, Resources::new(300, 1 << 30, 1));
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "spot".into(),
            value: "true".into(),
            effect: "NoSchedule".into(),
        };
        let t = |v: Value| tolerates(&[v], &taint);
        assert!(t(
            json!({"key": "spot", "operator": "Equal", "value": "true"})
        ));
        assert!(t(
            json!({"key": "spot", "value": "true", "effect": "NoSchedule"})
        ));
        assert!(t(json!({"key": "spot", "operator": "Exists"})));
        assert!(t(json!({"operator": "Exists"})));
        assert!(!t(json!({"key": "spot", "value": "false"})));
        assert!(!t(
            json!({"key": "spot", "operator": "Exists", "effect": "NoExecute"})
        ));
        assert!(!t(json!({"key": "other", "operator": "Exists"})));
    }

    #[test]
    fn taints_selectors_and_affinity_filter_nodes() {
        let plain = node(json!({"zone": "a", "size": "8"}), json!([]));
        assert!(static_filter(&pod(json!({})), &plain).is_ok());

        let tainted = node(
            json!({}),
            json!([{"key": "spot", "value": "true", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            static_filter(&pod(json!({})), &tainted),
            Err("node(s) had untolerated taint {spot: true}".into())
        );
        let tolerant = pod(json!({"tolerations": [{"key": "spot", "operator": "Exists"}]}));
        assert!(static_filter(&tolerant, &tainted).is_ok());
        // PreferNoSchedule never filters.
        let soft = node(
            json!({}),
            json!([{"key": "spot", "effect": "PreferNoSchedule"}]),
        );
        assert!(static_filter(&pod(json!({})), &soft).is_ok());
        assert_eq!(intolerable_prefer_no_schedule(&pod(json!({})), &soft), 1);
        assert_eq!(intolerable_prefer_no_schedule(&tolerant, &soft), 0);

        let selected = pod(json!({"nodeSelector": {"zone": "b"}}));
        assert!(static_filter(&selected, &plain).is_err());
        let selected = pod(json!({"nodeSelector": {"zone": "a"}}));
        assert!(static_filter(&selected, &plain).is_ok());

        let affinity = |terms: Value| {
            pod(json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let ok = |terms: Value| static_filter(&affinity(terms), &plain).is_ok();
        assert!(ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}])
        ));
        assert!(!ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"},
                                                {"key": "gpu", "operator": "DoesNotExist"}]}])
        ));
        assert!(!ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"},
                                                 {"key": "size", "operator": "Gt", "values": ["8"]}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "size", "operator": "Lt", "values": ["9"]}]}])
        ));
        // Terms are ORed; an empty term matches nothing.
        assert!(ok(
            json!([{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                          {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        ));
        assert!(!ok(json!([{}])));
        assert!(!ok(json!([])));

        let mut cordoned = plain.clone();
        cordoned.unschedulable = true;
        assert_eq!(
            static_filter(&pod(json!({})), &cordoned),
            Err("node(s) were unschedulable".into())
        );
        let mut not_ready = plain;
        not_ready.ready = false;
        assert!(static_filter(&pod(json!({})), &not_ready).is_err());
    }

    #[test]
    fn fit_counts_cpu_memory_and_pods() {
        let n = node(json!({}), json!([]));
        let p = pod(json!({}));
        assert!(fits(&p, &n, &Resources::new(1500, 3 << 30, 2)).is_ok());
        assert_eq!(
            fits(&p, &n, &Resources::new(1600, 3 << 30, 2)),
            Err(vec!["Insufficient cpu".to_string()])
        );
        assert_eq!(
            fits(&p, &n, &Resources::new(0, 0, 3)),
            Err(vec!["Too many pods".to_string()])
        );
        assert!(
            least_allocated(&p, &n, &Resources::default())
                > least_allocated(&p, &n, &Resources::new(1000, 0, 1))
        );
    }

    #[test]
    fn preferred_affinity_weights_add_up() {
        let n = node(json!({"zone": "a", "kind": "spot"}), json!([]));
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "kind", "operator": "In", "values": ["od"]}]}},
                {"weight": 1, "preference": {"matchExpressions": [{"key": "kind", "operator": "Exists"}]}},
            ]}}}),
        );
        assert_eq!(preferred_affinity_weight(&p, &n), 11);
    }
}
