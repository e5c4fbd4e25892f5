//! The ReplicaSet-like controller: each workload keeps `replicas` active pods
//! (pkg/controller/replicaset/replica_set.go manageReplicas, controller.FilterActivePods).

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::cluster::{format_bytes, format_cpu};
use super::{State, WorkloadSpec};
use crate::resources;
use crate::store::{Store, Target};
use crate::{admission, str_at};

// apimachinery: the alphabet of generated names and of pod-template-hash
// (k8s.io/apimachinery/pkg/util/rand/rand.go alphanums, SafeEncodeString).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a(bytes: &[u8], offset: u64, prime: u64, mask: u64) -> u64 {
    bytes.iter().fold(offset, |h, b| {
        ((h ^ u64::from(*b)).wrapping_mul(prime)) & mask
    })
}

fn fnv32(s: &str) -> u32 {
    let h = fnv1a(s.as_bytes(), 0x811c_9dc5, 0x0100_0193, u64::from(u32::MAX));
    u32::try_from(h).expect("masked to 32 bits")
}

fn fnv64(s: &str) -> u64 {
    fnv1a(
        s.as_bytes(),
        0xcbf2_9ce4_8422_2325,
        0x0000_0100_0000_01b3,
        u64::MAX,
    )
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// A workload and the ReplicaSet identity its pods point at.
#[derive(Debug)]
pub(super) struct Workload {
    pub(super) spec: WorkloadSpec,
    hash: String,
    rs_name: String,
    rs_uid: String,
}

impl Workload {
    pub(super) fn new(spec: WorkloadSpec) -> Workload {
        let key = format!("{}/{}", spec.namespace, spec.name);
        // replicaset: pod-template-hash is the template's FNV-32a hash, its decimal digits
        // safe-encoded (pkg/controller/controller_utils.go ComputeHash); here the hash of the
        // workload's name, so it is stable.
        let hash = safe_encode(&fnv32(&key).to_string());
        let rs_name = format!("{}-{hash}", spec.name);
        let (a, b) = (fnv64(&key), fnv64(&format!("{key}/replicaset")));
        let hex = format!("{a:016x}{b:016x}");
        let rs_uid = [
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32],
        ]
        .join("-");
        Workload {
            spec,
            hash,
            rs_name,
            rs_uid,
        }
    }

    fn owns(&self, pod: &Value) -> bool {
        pod.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| o["controller"] == true && o["uid"] == self.rs_uid.as_str())
    }

    fn labels(&self) -> Map<String, Value> {
        let mut labels: Map<String, Value> = self
            .spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        labels.insert("app".into(), json!(self.spec.name));
        labels.insert("pod-template-hash".into(), json!(self.hash));
        labels
    }

    fn pod(&self, name: &str) -> Value {
        let s = &self.spec;
        let mut requests = Map::new();
        if s.requests.cpu_millis > 0 {
            requests.insert("cpu".into(), json!(format_cpu(s.requests.cpu_millis)));
        }
        if s.requests.memory_bytes > 0 {
            requests.insert(
                "memory".into(),
                json!(format_bytes(s.requests.memory_bytes)),
            );
        }
        let mut spec = json!({
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": requests}}],
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": s.termination_grace_period_seconds,
        });
        if !s.node_selector.is_empty() {
            spec["nodeSelector"] = json!(s.node_selector);
        }
        if !s.affinity.is_null() {
            spec["affinity"] = s.affinity.clone();
        }
        if !s.tolerations.is_empty() {
            spec["tolerations"] = json!(s.tolerations);
        }
        if let Some(class) = &s.priority_class_name {
            spec["priorityClassName"] = json!(class);
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": s.namespace, "labels": self.labels(),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": self.rs_name, "uid": self.rs_uid,
                    "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": spec,
        })
    }
}

fn fresh_name(store: &Store, ns: &str, workload: &str) -> String {
    loop {
        let suffix: String = (0..5)
            .map(|_| ALPHANUMS[fastrand::usize(..ALPHANUMS.len())] as char)
            .collect();
        let name = format!("{workload}-{suffix}");
        if store.get(resources::pods(), ns, &name).is_none() {
            return name;
        }
    }
}

/// Creates the pods each workload is short of, through Priority admission.
pub(super) fn sync(st: &mut State, store: &mut Store, _now: Instant) {
    let pods = resources::pods();
    for i in 0..st.workloads.len() {
        let w = &st.workloads[i];
        let ns = w.spec.namespace.clone();
        let active = store
            .list(pods, Some(&ns))
            .into_iter()
            .filter(|p| w.owns(p))
            .filter(|p| {
                !matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed")
                    && str_at(p, "/metadata/deletionTimestamp").is_empty()
            })
            .count();
        for _ in active..w.spec.replicas {
            let w = &st.workloads[i];
            let name = fresh_name(store, &ns, &w.spec.name);
            let mut pod = w.pod(&name);
            let created = admission::admit_create(store, pods, &ns, &mut pod)
                .and_then(|()| store.create(pods, &ns, pod, Target::Main, false));
            match created {
                Ok(created) => {
                    let uid = str_at(&created, "/metadata/uid").to_string();
                    st.track_new(i, &uid, &name);
                }
                Err(e) => {
                    let message = format!("{ns}/{}: {}", w.spec.name, e.message);
                    if !st.report.errors.contains(&message) {
                        st.report.errors.push(message);
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Resources;

    #[test]
    fn hashes_are_stable_and_safe_encoded() {
        assert_eq!(fnv32(""), 0x811c_9dc5);
        assert_eq!(fnv32("a"), 0xe40c_292c);
        let w = Workload::new(WorkloadSpec::new("d", "web", 1, Resources::default()));
        let again = Workload::new(WorkloadSpec::new("d", "web", 1, Resources::default()));
        assert_eq!((&w.hash, &w.rs_uid), (&again.hash, &again.rs_uid));
        assert!(w.hash.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert_eq!(w.rs_uid.len(), 36);
        let pod = w.pod("web-abcde");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["name"],
            format!("web-{}", w.hash)
        );
        assert!(w.owns(&pod));
    }
}
