//! The last phase of a recovery: the evicted workload running again. For every pod a drain
//! evicted that has a controller (a ReplicaSet, a StatefulSet, a Job), the first pod of the same
//! controller that runs after the eviction is its replacement: `evicted → Running` is the pod's
//! **unavailability**, the figure a service owner feels. When every evicted pod of a drain has
//! one, the notice reached `pods_running`. A replacement that runs on a Node that had received
//! a notice itself is counted: cordon-first and shelter exist to keep that at zero.
//!
//! Pods are watched only in the namespaces that have evicted pods being waited for, and only
//! while they do (a watch ends by itself once its namespace has nothing left, at the latest at
//! the replacement timeout); nothing is stored but the evictions waited for.
//!
//! RBAC: `pods` list, watch (cluster-wide, as the drain's list is).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::cache::NodeCache;
use crate::event::Event;
use crate::metrics::Metrics;

/// An eviction waited for.
#[derive(Debug, Clone)]
struct Awaited {
    evicted_at: Timestamp,
    /// The drain it belongs to (Node and event id).
    drain: (String, String),
}

/// A drain whose pods are waited for.
#[derive(Debug, Clone)]
struct Drain {
    left: usize,
    event: Event,
    pool: String,
    until: Timestamp,
}

#[derive(Debug, Default)]
struct State {
    /// (namespace, controller uid) → evictions, oldest first.
    awaiting: HashMap<(String, String), VecDeque<Awaited>>,
    drains: HashMap<(String, String), Drain>,
    /// Namespaces watched, with their tasks.
    watches: HashMap<String, tokio::task::JoinHandle<()>>,
}

/// The tracker; shared by the drains (which report evictions) and the pod watches.
pub struct Recovery {
    state: Mutex<State>,
    client: Client,
    cache: Arc<NodeCache>,
    metrics: Arc<Metrics>,
    timeout: SignedDuration,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a pod runs and is Ready.
fn running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Recovery {
    /// A tracker that gives up on a pod after `timeout`.
    pub fn new(
        client: Client,
        cache: Arc<NodeCache>,
        metrics: Arc<Metrics>,
        timeout: SignedDuration,
    ) -> Recovery {
        Recovery {
            state: Mutex::new(State::default()),
            client,
            cache,
            metrics,
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The drain of `node` for `event` evicted pods of these controllers (namespace, uid, when),
    /// ending at `at`.
    pub fn evicted(
        self: &Arc<Self>,
        node: &str,
        pool: &str,
        event: &Event,
        owners: &[(String, String, Timestamp)],
        at: Timestamp,
    ) {
        if owners.is_empty() {
            return;
        }
        let key = (node.to_owned(), event.id.clone());
        let mut state = self.lock();
        state.drains.insert(
            key.clone(),
            Drain {
                left: owners.len(),
                event: event.clone(),
                pool: pool.to_owned(),
                until: at + self.timeout,
            },
        );
        for (namespace, uid, evicted_at) in owners {
            state
                .awaiting
                .entry((namespace.clone(), uid.clone()))
                .or_default()
                .push_back(Awaited {
                    evicted_at: *evicted_at,
                    drain: key.clone(),
                });
            if !state.watches.contains_key(namespace) {
                let me = self.clone();
                let ns = namespace.clone();
                let task = tokio::spawn(async move { me.watch(ns).await });
                state.watches.insert(namespace.clone(), task);
            }
        }
    }

    /// A pod was seen: if it runs and replaces an eviction waited for, that eviction is done.
    fn observe(&self, pod: &Pod, now: Timestamp) {
        if !running(pod) {
            return;
        }
        let Some(namespace) = pod.namespace() else {
            return;
        };
        let Some(uid) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone())
        else {
            return;
        };
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let mut state = self.lock();
        let key = (namespace, uid);
        let Some(queue) = state.awaiting.get_mut(&key) else {
            return;
        };
        // Only a pod made after the eviction replaces it (one that ran before is a sibling).
        let Some(position) = queue
            .iter()
            .position(|a| created.is_none_or(|c| c >= a.evicted_at - SignedDuration::from_secs(1)))
        else {
            return;
        };
        let Some(awaited) = queue.remove(position) else {
            return;
        };
        if queue.is_empty() {
            state.awaiting.remove(&key);
        }
        let onto_doomed = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.cache.get(n))
            .is_some_and(|v| v.doomed());
        let took: Duration = now
            .duration_since(awaited.evicted_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let Some(drain) = state.drains.get_mut(&awaited.drain) else {
            return;
        };
        let data = &drain.event.data;
        self.metrics
            .pod_recovered(data.provider, data.kind.as_str(), took, onto_doomed);
        if onto_doomed {
            tracing::warn!(pod = %pod.name_any(), node = ?pod.spec.as_ref().and_then(|s| s.node_name.clone()), "An evicted pod's replacement runs on a Node that has received a notice.");
        }
        drain.left = drain.left.saturating_sub(1);
        if drain.left == 0 {
            let took: Duration = now
                .duration_since(data.occurred_at)
                .try_into()
                .unwrap_or(Duration::ZERO);
            self.metrics.recovery_phase(
                "pods_running",
                data.provider,
                data.kind.as_str(),
                &drain.pool,
                took,
            );
            tracing::info!(node = %awaited.drain.0, id = %awaited.drain.1, after_s = took.as_secs_f64(), "Every evicted pod of the Node runs again.");
            state.drains.remove(&awaited.drain);
        }
    }

    /// Drops what waited past the timeout; true when `namespace` has nothing left to wait for.
    fn expire(&self, namespace: &str, now: Timestamp) -> bool {
        let mut state = self.lock();
        let expired: Vec<(String, String)> = state
            .drains
            .iter()
            .filter(|(_, d)| d.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            state.drains.remove(key);
            tracing::info!(node = %key.0, id = %key.1, "Gave up waiting for the evicted pods to run again.");
        }
        let drains: std::collections::HashSet<(String, String)> =
            state.drains.keys().cloned().collect();
        state.awaiting.retain(|_, q| {
            q.retain(|a| drains.contains(&a.drain));
            !q.is_empty()
        });
        let idle = !state.awaiting.keys().any(|(ns, _)| ns == namespace);
        if idle {
            state.watches.remove(namespace);
        }
        idle
    }

    /// Watches the pods of `namespace` until nothing there is waited for.
    async fn watch(self: Arc<Self>, namespace: String) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // Only Running pods can end a wait, and the initial list is read 100 pods a page (the
        // watcher's default is 500): a namespace of thousands of pods costs a small page at a
        // time, not a large one, while capacity is being lost. Not `any_semantic()`: a list at
        // resourceVersion "0" is served whole from the API server's cache, `limit` ignored.
        let config = watcher::Config::default()
            .fields("status.phase=Running")
            .page_size(100);
        let stream = watcher(api, config);
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                next = stream.try_next() => match next {
                    Ok(Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                        self.observe(&pod, Timestamp::now());
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(namespace = %namespace, error = %e, "The pod watch failed; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = tick.tick() => if self.expire(&namespace, Timestamp::now()) {
                    return;
                },
            }
        }
    }
}
