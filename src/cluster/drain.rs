//! The drain of one Node, through the Eviction API, within the notice.
//!
//! Each evictable pod gets a `policy/v1` `Eviction` with `deleteOptions.gracePeriodSeconds =
//! min(its own terminationGracePeriodSeconds, deadline − now − margin)`, so it can shut down
//! before the capacity is gone. The body is built here and posted with `create_subresource`:
//! kube-core 5's `Api::evict` serialises `EvictParams` as `"delete_options"` (snake_case), which
//! the API server ignores, so a grace period set through it never arrives.
//!
//! A PodDisruptionBudget answers 429; the drain retries those pods until `deadline − margin`
//! (its client has kube's own 429 retry off: see [`super::budget::Clients::drain`]), then
//! reports the pods left. A failed pod list is an error — the reconciler retries it — never a
//! drain with nothing to do.
//!
//! RBAC: `pods` list; `pods/eviction` create; `pods` delete only with `force_after_deadline`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;

use super::ClusterError;
use crate::metrics::Metrics;

/// A pod's own grace period when it sets none (the API server's default).
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The first wait before retrying a blocked eviction; doubled up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(500);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// How a drain ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Pods evicted.
    pub evicted: usize,
    /// The evicted pods that have a controller: (namespace, the controller's uid, when), for
    /// the recovery tracker.
    pub owners: Vec<(String, String, Timestamp)>,
    /// Pods (`namespace/name`) still there at `deadline − margin`.
    pub left: Vec<String>,
    /// Pods whose grace period was cut to fit the deadline.
    pub shortened: Vec<String>,
    /// Pods deleted past the deadline (`force_after_deadline`).
    pub forced: Vec<String>,
}

/// What one drain needs.
#[derive(Clone)]
pub struct Drainer {
    /// The drain client (no client-side 429 retry).
    pub client: Client,
    /// Stop retrying this long before the deadline.
    pub margin: Duration,
    /// With no deadline, give up after this long.
    pub timeout: Duration,
    /// Delete what is left at the stop.
    pub force_after_deadline: bool,
    /// Calls in flight for every drain together. A call waiting for the budget holds its whole
    /// request; a thousand drains would hold thousands of them. Waiting here costs a few bytes.
    pub in_flight: Arc<Semaphore>,
}

/// How many drain calls (pod lists, evictions, deletes) are in flight at once, across Nodes:
/// far above what the default budget of 200/s needs on any API server's latency.
pub const IN_FLIGHT: usize = 64;

impl std::fmt::Debug for Drainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drainer")
            .field("margin", &self.margin)
            .field("timeout", &self.timeout)
            .field("force_after_deadline", &self.force_after_deadline)
            .finish_non_exhaustive()
    }
}

/// Whether a drain evicts this pod: not a DaemonSet pod (it would come back at once), not a
/// mirror (static) pod, not already finished or terminating.
pub fn evictable(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let daemonset = meta
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
    let mirror = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let terminating = meta.deletion_timestamp.is_some();
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !(daemonset || mirror || terminating || finished)
}

/// The grace period for a pod: its own, cut to what is left before `stop`; at least 1 s (0
/// would ask for an immediate kill).
pub fn grace_seconds(pod: &Pod, stop: Option<Timestamp>, now: Timestamp) -> (i64, bool) {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    match stop {
        Some(stop) => {
            let left = stop.duration_since(now).as_secs().max(1);
            if own > left {
                (left, true)
            } else {
                (own.max(0), false)
            }
        }
        None => (own.max(0), false),
    }
}

impl Drainer {
    /// When retrying stops for a deadline.
    pub fn stop_at(&self, deadline: Option<Timestamp>, started: Timestamp) -> Timestamp {
        match deadline {
            Some(d) => d - jiff::SignedDuration::try_from(self.margin).unwrap_or_default(),
            None => started + jiff::SignedDuration::try_from(self.timeout).unwrap_or_default(),
        }
    }

    /// The evictable pods on `node`. A failed list is an error, never an empty Node.
    pub async fn list(&self, node: &str) -> Result<Vec<Pod>, ClusterError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let _permit = self.in_flight.acquire().await;
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| ClusterError::api("list the Node's pods", e))?;
        Ok(list.items.into_iter().filter(evictable).collect())
    }

    /// The latest time the evictions of `pods` may start so that each finishes its grace period
    /// (cut to fit `stop`) by `stop`.
    pub fn latest_start(&self, pods: &[Pod], stop: Timestamp, now: Timestamp) -> Timestamp {
        let longest = pods
            .iter()
            .map(|p| grace_seconds(p, Some(stop), now).0)
            .max()
            .unwrap_or(0);
        stop - jiff::SignedDuration::from_secs(longest)
    }

    /// Evicts the listed `pods` of `node`, retrying blocked evictions until `stop`.
    pub async fn evict_all(
        &self,
        node: &str,
        pods: Vec<Pod>,
        stop: Timestamp,
        has_deadline: bool,
        metrics: &Metrics,
    ) -> Result<Drained, ClusterError> {
        let mut drained = Drained::default();
        let now = Timestamp::now();
        let mut pending: Vec<Pending> = Vec::new();
        for pod in pods {
            let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else {
                continue;
            };
            let (grace, cut) = grace_seconds(&pod, has_deadline.then_some(stop), now);
            if cut {
                drained.shortened.push(format!("{namespace}/{name}"));
            }
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone());
            pending.push(Pending {
                namespace,
                name,
                grace,
                owner,
            });
        }
        // Rounds: every pod still there is tried once, one at a time (the drains of other
        // Nodes run beside this one); then a wait, doubled each round, until `stop`, where the
        // last round runs. One request in flight per drain keeps a burst of a thousand drains
        // small in memory; the budget, not this loop, sets the pace.
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            let mut still = Vec::with_capacity(pending.len());
            for pod in pending {
                match self.evict(&pod).await {
                    Attempt::Evicted => {
                        metrics.eviction("evicted");
                        drained.evicted += 1;
                        if let Some(owner) = &pod.owner {
                            drained.owners.push((
                                pod.namespace.clone(),
                                owner.clone(),
                                Timestamp::now(),
                            ));
                        }
                    }
                    Attempt::Gone => {}
                    Attempt::Blocked => {
                        metrics.eviction("pdb_blocked");
                        still.push(pod);
                    }
                    Attempt::Failed => {
                        metrics.eviction("error");
                        still.push(pod);
                    }
                }
            }
            pending = still;
            let left: Duration = stop
                .duration_since(Timestamp::now())
                .try_into()
                .unwrap_or(Duration::ZERO);
            if pending.is_empty() || left.is_zero() {
                break;
            }
            tokio::time::sleep(wait.min(left)).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
        let mut blocked: Vec<String> = pending
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        blocked.sort();
        if self.force_after_deadline {
            for pod in &blocked {
                let Some((ns, name)) = pod.split_once('/') else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                let _permit = self.in_flight.acquire().await;
                match api.delete(name, &params).await {
                    Ok(_) => drained.forced.push(pod.clone()),
                    Err(kube::Error::Api(e)) if e.code == 404 => drained.forced.push(pod.clone()),
                    Err(e) => {
                        tracing::warn!(node = %node, pod = %pod, error = %e, "Cannot delete a pod past the deadline.")
                    }
                }
            }
            blocked.retain(|p| !drained.forced.contains(p));
        }
        drained.left = blocked;
        Ok(drained)
    }
}

/// A pod the drain still has to evict.
#[derive(Debug)]
struct Pending {
    namespace: String,
    name: String,
    grace: i64,
    /// The uid of its controller, if it has one.
    owner: Option<String>,
}

/// How one eviction went.
enum Attempt {
    Evicted,
    /// Not found: it went by itself.
    Gone,
    /// 429: a PodDisruptionBudget refuses for now (eviction.go: TooManyRequests).
    Blocked,
    Failed,
}

impl Drainer {
    async fn evict(&self, pod: &Pending) -> Attempt {
        let _permit = self.in_flight.acquire().await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": { "name": pod.name, "namespace": pod.namespace },
            "deleteOptions": { "gracePeriodSeconds": pod.grace },
        });
        let result: Result<serde_json::Value, kube::Error> = api
            .create_subresource("eviction", &pod.name, &PostParams::default(), &body)
            .await;
        match result {
            Ok(_) => Attempt::Evicted,
            Err(kube::Error::Api(e)) if e.code == 404 => Attempt::Gone,
            Err(kube::Error::Api(e)) if e.code == 429 => Attempt::Blocked,
            Err(e) => {
                tracing::debug!(pod = %pod.name, namespace = %pod.namespace, error = %e, "An eviction failed; retrying.");
                Attempt::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(grace: Option<i64>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "terminationGracePeriodSeconds": grace},
        }))
        .unwrap()
    }

    #[test]
    fn the_grace_period_is_the_pods_own_cut_to_the_deadline() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let stop = Some(now + jiff::SignedDuration::from_secs(100));
        assert_eq!(grace_seconds(&pod(Some(20)), stop, now), (20, false));
        assert_eq!(grace_seconds(&pod(None), stop, now), (30, false));
        assert_eq!(grace_seconds(&pod(Some(600)), stop, now), (100, true));
        assert_eq!(grace_seconds(&pod(Some(600)), None, now), (600, false));
        let past = Some(now - jiff::SignedDuration::from_secs(5));
        assert_eq!(
            grace_seconds(&pod(Some(20)), past, now),
            (1, true),
            "never 0"
        );
    }
}
