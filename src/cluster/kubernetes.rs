//! The Kubernetes executor: resolves an event's instance to a Node through a watched cache, and
//! carries out the planned steps through the API server.
//!
//! RBAC this module needs: `nodes` get, list, watch, patch; `pods` get, list; `pods/eviction`
//! create; `events.k8s.io` `events` create, patch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::index::{GKE_INSTANCE_ID_ANNOTATION, NodeIndex};
use super::plan::{self, Effect, EventType, Step};
use super::replacement::{Replacement, Tracker};
use super::{Applied, ClusterError};
use crate::event::{Event, Kind};
use crate::metrics::Metrics;

/// The annotation recording the last event handled on a Node (id, kind, time), so that a
/// restarted or second replica does not act twice and `kubectl describe node` says why.
pub const LAST_EVENT_ANNOTATION: &str = "eviction-router/last-event";
/// Set when the router cordoned a Node that was schedulable: only then does an undo uncordon it.
pub const CORDONED_ANNOTATION: &str = "eviction-router/cordoned";
/// A maintenance event whose steps are due later, as the normalised event's JSON. The timer is
/// re-derived from it, so a restarted (or another) replica carries the steps out on time.
pub const SCHEDULED_ANNOTATION: &str = "eviction-router/scheduled";
/// How often due scheduled steps are looked for.
const SCHEDULE_TICK: Duration = Duration::from_secs(1);
/// Field manager for patches.
const MANAGER: &str = "eviction-router";
/// Attempts of a read-modify-write on `spec.taints` against 409 Conflict.
const CONFLICT_ATTEMPTS: usize = 5;

/// Settings of the executor.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Scheduled maintenance is acted on this long before the window.
    pub lead: SignedDuration,
    /// A drain stops retrying PDB-blocked evictions this long before the deadline.
    pub drain_margin: Duration,
    /// A drain with no deadline gives up after this long.
    pub drain_timeout: Duration,
    /// The reporting controller and instance of Kubernetes Events.
    pub reporter: Reporter,
    /// Node labels naming a Node's pool, first present wins.
    pub pool_labels: Vec<String>,
    /// The actions per kind.
    pub actions: plan::Actions,
    /// How long a replacement is waited for.
    pub replacement_timeout: SignedDuration,
}

/// The executor.
pub struct KubeCluster {
    client: Client,
    index: Arc<RwLock<NodeIndex>>,
    /// Node name → the event in its scheduled annotation.
    scheduled: Arc<RwLock<BTreeMap<String, String>>>,
    /// Node name → the id in its last-event annotation.
    last_event: Arc<RwLock<BTreeMap<String, String>>>,
    tracker: Arc<Mutex<Tracker>>,
    replacements: Mutex<Option<mpsc::UnboundedReceiver<Replacement>>>,
    synced: watch::Receiver<bool>,
    recorder: Recorder,
    settings: KubeSettings,
    metrics: Arc<Metrics>,
    _watch: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Starts watching Nodes into the index.
    pub fn start(client: Client, settings: KubeSettings, metrics: Arc<Metrics>) -> KubeCluster {
        let index = Arc::new(RwLock::new(NodeIndex::new()));
        let scheduled = Arc::new(RwLock::new(BTreeMap::new()));
        let last_event = Arc::new(RwLock::new(BTreeMap::new()));
        let (synced_tx, synced) = watch::channel(false);
        let nodes: Api<Node> = Api::all(client.clone());
        let tracker = Arc::new(Mutex::new(Tracker::new(
            settings.pool_labels.clone(),
            settings.replacement_timeout,
        )));
        let (found, replacements) = mpsc::unbounded_channel();
        let cache = Cache {
            index: index.clone(),
            scheduled: scheduled.clone(),
            last_event: last_event.clone(),
            tracker: Some((tracker.clone(), found)),
        };
        let task = tokio::spawn(async move {
            let mut staging = Cache::default();
            let stream = watcher(nodes, watcher::Config::default().any_semantic());
            let mut stream = std::pin::pin!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(event)) => apply_watch_event(event, &cache, &mut staging, &synced_tx),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "The Node watch failed; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let recorder = Recorder::new(client.clone(), settings.reporter.clone());
        KubeCluster {
            client,
            index,
            scheduled,
            last_event,
            tracker,
            replacements: Mutex::new(Some(replacements)),
            synced,
            recorder,
            settings,
            metrics,
            _watch: task,
        }
    }

    /// The replacements found, once: the service publishes them as `replacement_ready` events.
    pub fn take_replacements(&self) -> Option<mpsc::UnboundedReceiver<Replacement>> {
        self.replacements.lock().ok().and_then(|mut r| r.take())
    }

    /// Carries out scheduled maintenance steps as they fall due, and gives up on replacements
    /// past their timeout, until the process ends. The schedule lives in Node annotations, so
    /// nothing is lost across restarts.
    pub async fn run_schedule(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SCHEDULE_TICK);
        loop {
            tick.tick().await;
            if let Ok(mut tracker) = self.tracker.lock() {
                for expired in tracker.expire(Timestamp::now()) {
                    tracing::warn!(node = %expired.node, pool = %expired.pool, id = %expired.event.id, "No replacement became Ready in time; giving up.");
                    self.metrics.replacement_timeout();
                }
                self.metrics.replacements_pending(tracker.pending() as i64);
            }
            let pending: Vec<(String, String)> = match self.scheduled.read() {
                Ok(s) => s.iter().map(|(n, e)| (n.clone(), e.clone())).collect(),
                Err(_) => continue,
            };
            for (node, json) in pending {
                let event: Event = match serde_json::from_str(&json) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(node = %node, error = %e, "Dropping an unreadable schedule annotation.");
                        let _ = self.unschedule(&node).await;
                        continue;
                    }
                };
                let steps = plan::plan(&event.data, self.settings.lead, &self.settings.actions);
                let now = Timestamp::now();
                let due: Vec<&Step> = steps
                    .iter()
                    .filter(|s| step_at(s).is_some_and(|at| at <= now))
                    .collect();
                if due.is_empty() {
                    continue;
                }
                // Claim the schedule first, so the next tick does not start it again.
                if let Err(e) = self.unschedule(&node).await {
                    tracing::warn!(node = %node, error = %e, "Cannot claim a scheduled step; will retry.");
                    continue;
                }
                tracing::info!(node = %node, id = %event.id, "Scheduled maintenance is due; acting.");
                for step in due {
                    let started = std::time::Instant::now();
                    let result = self.run_step(&node, &event, step).await;
                    let outcome = if result.is_ok() { "ok" } else { "error" };
                    self.metrics
                        .action(step.action(), outcome, started.elapsed());
                    if let Err(e) = result {
                        tracing::warn!(node = %node, step = %step, error = %e, "A scheduled step failed.");
                    }
                }
            }
        }
    }

    async fn unschedule(&self, node: &str) -> Result<(), ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch =
            serde_json::json!({ "metadata": { "annotations": { SCHEDULED_ANNOTATION: null } } });
        merge(&nodes, node, patch).await?;
        if let Ok(mut s) = self.scheduled.write() {
            s.remove(node);
        }
        Ok(())
    }

    /// Whether the Node cache has completed its first list.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the Node cache has completed its first list, at most `limit`.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.clone();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many Nodes are cached.
    pub fn nodes_cached(&self) -> usize {
        self.index.read().map(|i| i.len()).unwrap_or(0)
    }

    /// Resolves the Node and carries out the steps due now.
    pub async fn apply(&self, event: &Event) -> Result<Applied, ClusterError> {
        if !self.synced() && !self.wait_synced(Duration::from_secs(10)).await {
            return Err(ClusterError::Api(
                "the Node cache has not synced yet".into(),
            ));
        }
        let node = {
            let index = self
                .index
                .read()
                .map_err(|_| ClusterError::Api("node index poisoned".into()))?;
            index.resolve(&event.data).map(str::to_owned)
        };
        let Some(node) = node else {
            return Ok(Applied::Foreign);
        };
        // Recorded on the Node once every step due now succeeded: a restarted or second replica
        // that gets the same event again does nothing twice.
        let done = self
            .last_event
            .read()
            .ok()
            .and_then(|l| l.get(&node).cloned());
        if done.as_deref() == Some(event.id.as_str()) {
            tracing::info!(node = %node, id = %event.id, "The Node's annotation says this event was handled already.");
            return Ok(Applied::Acted {
                node,
                steps: Vec::new(),
            });
        }
        let steps = plan::plan(&event.data, self.settings.lead, &self.settings.actions);
        let now = Timestamp::now();
        if steps.iter().any(|s| step_at(s).is_some_and(|at| at > now)) {
            // Written before anything else, so a crash between here and the due time loses nothing.
            let nodes: Api<Node> = Api::all(self.client.clone());
            let patch = serde_json::json!({ "metadata": { "annotations": { SCHEDULED_ANNOTATION: event.to_json_line() } } });
            merge(&nodes, &node, patch).await?;
            if let Ok(mut s) = self.scheduled.write() {
                s.insert(node.clone(), event.to_json_line());
            }
        }
        for step in &steps {
            if step_at(step).is_some_and(|at| at > now) {
                tracing::info!(node = %node, id = %event.id, step = %step, "Scheduled a step for later.");
                continue;
            }
            let started = std::time::Instant::now();
            let result = self.run_step(&node, event, step).await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            self.metrics
                .action(step.action(), outcome, started.elapsed());
            match result {
                Ok(()) => {
                    tracing::info!(node = %node, id = %event.id, step = %step, "Acted on a Node.")
                }
                Err(e) => {
                    tracing::warn!(node = %node, id = %event.id, step = %step, error = %e, "A cluster action failed.");
                    return Err(e);
                }
            }
        }
        let record = serde_json::json!({ "id": event.id, "kind": event.data.kind, "time": Timestamp::now() });
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({ "metadata": { "annotations": { LAST_EVENT_ANNOTATION: record.to_string() } } });
        merge(&nodes, &node, patch).await?;
        if let Ok(mut l) = self.last_event.write() {
            l.insert(node.clone(), event.id.clone());
        }
        if matches!(event.data.kind, Kind::Interruption | Kind::Termination)
            && let Ok(mut tracker) = self.tracker.lock()
        {
            if tracker.expect(&node, event, Timestamp::now()) {
                tracing::info!(node = %node, id = %event.id, "Waiting for the Node's replacement.");
            }
            self.metrics.replacements_pending(tracker.pending() as i64);
        }
        Ok(Applied::Acted { node, steps })
    }

    async fn run_step(&self, node: &str, event: &Event, step: &Step) -> Result<(), ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match step {
            Step::Taint { key, effect, .. } => self.taint(&nodes, node, key, *effect).await,
            Step::Untaint { key } => self.untaint(&nodes, node, key).await,
            Step::Label { key, value, .. } => {
                merge(
                    &nodes,
                    node,
                    serde_json::json!({ "metadata": { "labels": { *key: value } } }),
                )
                .await
            }
            Step::Unlabel { key } => {
                merge(
                    &nodes,
                    node,
                    serde_json::json!({ "metadata": { "labels": { *key: null } } }),
                )
                .await
            }
            Step::Cordon { .. } => {
                let current = nodes.get(node).await.map_err(api)?;
                if current
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
                {
                    return Ok(());
                }
                // Remember that the cordon is ours, so an undo does not uncordon a Node that
                // someone else cordoned.
                let patch = serde_json::json!({
                    "metadata": { "annotations": { CORDONED_ANNOTATION: "true" } },
                    "spec": { "unschedulable": true },
                });
                merge(&nodes, node, patch).await
            }
            Step::Uncordon => {
                let current = nodes.get(node).await.map_err(api)?;
                let ours = current
                    .annotations()
                    .get(CORDONED_ANNOTATION)
                    .is_some_and(|v| v == "true");
                let other_taints = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key.starts_with("eviction-router/")));
                if !ours || other_taints {
                    tracing::info!(node = %node, "Left the Node cordoned: the cordon is not ours alone.");
                    return Ok(());
                }
                let patch = serde_json::json!({
                    "metadata": { "annotations": { CORDONED_ANNOTATION: null } },
                    "spec": { "unschedulable": null },
                });
                merge(&nodes, node, patch).await
            }
            Step::Drain { deadline, .. } => {
                self.drain(node, event, *deadline).await;
                Ok(())
            }
            Step::RecordEvent { reason, event_type } => {
                self.record(node, event, reason, *event_type, None).await
            }
        }
    }

    /// Adds the taint, keeping every other taint.
    async fn taint(
        &self,
        nodes: &Api<Node>,
        node: &str,
        key: &str,
        effect: Effect,
    ) -> Result<(), ClusterError> {
        edit_taints(nodes, node, &format!("taint {key}"), |taints| {
            if taints
                .iter()
                .any(|t| t.key == key && t.effect == effect.as_str())
            {
                return false;
            }
            taints.retain(|t| t.key != key);
            taints.push(Taint {
                key: key.to_owned(),
                effect: effect.as_str().to_owned(),
                value: None,
                time_added: None,
            });
            true
        })
        .await
    }

    /// Removes the taint `key`, keeping every other taint.
    async fn untaint(&self, nodes: &Api<Node>, node: &str, key: &str) -> Result<(), ClusterError> {
        edit_taints(nodes, node, &format!("untaint {key}"), |taints| {
            let before = taints.len();
            taints.retain(|t| t.key != key);
            taints.len() != before
        })
        .await
    }

    /// Evicts the Node's pods through the Eviction API (PodDisruptionBudgets honoured), all at
    /// once, retrying those a budget blocks until `deadline − margin`. DaemonSet and mirror pods
    /// are skipped. Pods still there at the end are reported in a `DrainIncomplete` Event.
    async fn drain(&self, node: &str, event: &Event, deadline: Option<Timestamp>) {
        let stop = match deadline {
            Some(d) => {
                let left = d.duration_since(Timestamp::now());
                let left: Duration = left.try_into().unwrap_or(Duration::ZERO);
                left.saturating_sub(self.settings.drain_margin)
            }
            None => self.settings.drain_timeout,
        };
        let stop_at = tokio::time::Instant::now() + stop;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = match pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "Cannot list the Node's pods to drain it.");
                self.metrics.eviction("error");
                return;
            }
        };
        let mut evictions = JoinSet::new();
        for pod in list.items.into_iter().filter(evictable) {
            let (Some(ns), name) = (pod.namespace(), pod.name_any()) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let metrics = self.metrics.clone();
            evictions.spawn(async move {
                let mut wait = Duration::from_millis(500);
                loop {
                    match api.evict(&name, &EvictParams::default()).await {
                        Ok(_) => {
                            metrics.eviction("evicted");
                            return None;
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 => return None,
                        Err(kube::Error::Api(e)) if e.code == 429 => metrics.eviction("pdb_blocked"),
                        Err(e) => {
                            tracing::debug!(pod = %name, error = %e, "An eviction failed; retrying.");
                            metrics.eviction("error");
                        }
                    }
                    if tokio::time::Instant::now() + wait >= stop_at {
                        return Some(format!("{ns}/{name}"));
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            });
        }
        let mut left = Vec::new();
        while let Some(done) = evictions.join_next().await {
            if let Ok(Some(pod)) = done {
                left.push(pod);
            }
        }
        if !left.is_empty() {
            left.sort();
            self.metrics.drain_deadline_missed();
            tracing::warn!(node = %node, pods = %left.join(", "), "The drain did not finish before the deadline.");
            let note = format!("Pods not evicted before the deadline: {}", left.join(", "));
            let _ = self
                .record(
                    node,
                    event,
                    "DrainIncomplete",
                    EventType::Warning,
                    Some(note),
                )
                .await;
        }
    }

    async fn record(
        &self,
        node: &str,
        event: &Event,
        reason: &str,
        event_type: EventType,
        note: Option<String>,
    ) -> Result<(), ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let object = nodes.get(node).await.map_err(api)?;
        let d = &event.data;
        let note = note.unwrap_or_else(|| {
            let deadline = d
                .deadline
                .map(|t| format!(", deadline {t}"))
                .unwrap_or_default();
            format!(
                "{} {} for {} ({}{deadline}; event {})",
                d.provider, d.kind, d.instance.id, d.provider_event, event.id
            )
        });
        let kube_event = KubeEvent {
            type_: match event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1024).collect()),
            action: d.kind.as_str().to_owned(),
            secondary: None,
        };
        self.recorder
            .publish(&kube_event, &object.object_ref(&()))
            .await
            .map_err(api)
    }
}

fn step_at(step: &Step) -> Option<Timestamp> {
    match step {
        Step::Taint { at, .. }
        | Step::Label { at, .. }
        | Step::Cordon { at }
        | Step::Drain { at, .. } => *at,
        _ => None,
    }
}

/// Whether a drain evicts this pod: not a DaemonSet pod (it would come back at once), not a
/// mirror (static) pod, not already finished or terminating.
fn evictable(pod: &Pod) -> bool {
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

/// Changes `spec.taints` (an atomic list) by read-modify-write with the resourceVersion read,
/// retried on 409 Conflict, so other controllers' taints are never clobbered. `edit` returns
/// whether it changed anything; nothing is written when it did not.
async fn edit_taints(
    nodes: &Api<Node>,
    node: &str,
    what: &str,
    edit: impl Fn(&mut Vec<Taint>) -> bool,
) -> Result<(), ClusterError> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut current = nodes.get(node).await.map_err(api)?;
        let taints = current
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new);
        if !edit(taints) {
            return Ok(());
        }
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match nodes.replace(node, &params, &current).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(api(e)),
        }
    }
    Err(ClusterError::Api(format!(
        "{what}: the Node kept changing ({CONFLICT_ATTEMPTS} conflicts)"
    )))
}

async fn merge(
    nodes: &Api<Node>,
    node: &str,
    patch: serde_json::Value,
) -> Result<(), ClusterError> {
    nodes
        .patch(node, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(api)
}

fn api(e: kube::Error) -> ClusterError {
    ClusterError::Api(e.to_string())
}

/// What the Node watch maintains: the index, and the scheduled annotations. Only these small
/// parts of each Node are kept, so thousands of Nodes cost little memory.
#[derive(Debug, Default)]
struct Cache {
    index: Arc<RwLock<NodeIndex>>,
    scheduled: Arc<RwLock<BTreeMap<String, String>>>,
    last_event: Arc<RwLock<BTreeMap<String, String>>>,
    /// The replacement tracker and where found replacements go (the live cache only).
    tracker: Option<(Arc<Mutex<Tracker>>, mpsc::UnboundedSender<Replacement>)>,
}

fn apply_watch_event(
    event: watcher::Event<Node>,
    cache: &Cache,
    staging: &mut Cache,
    synced: &watch::Sender<bool>,
) {
    fn upsert(cache: &Cache, node: &Node) {
        let name = node.name_any();
        let pid = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
        let empty = BTreeMap::new();
        let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
        if let Ok(mut idx) = cache.index.write() {
            idx.upsert(&name, pid, annotations);
        }
        if let Ok(mut s) = cache.scheduled.write() {
            match annotations.get(SCHEDULED_ANNOTATION) {
                Some(json) => s.insert(name.clone(), json.clone()),
                None => s.remove(&name),
            };
        }
        let last = annotations
            .get(LAST_EVENT_ANNOTATION)
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        if let Ok(mut l) = cache.last_event.write() {
            match last {
                Some(id) => l.insert(name.clone(), id),
                None => l.remove(&name),
            };
        }
    }
    /// Feeds the replacement tracker; found replacements go to the service.
    fn track(cache: &Cache, node: &Node) {
        let Some((tracker, found)) = &cache.tracker else {
            return;
        };
        let Ok(mut tracker) = tracker.lock() else {
            return;
        };
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        let pool = tracker.pool_of(labels).cloned();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
        let identity = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .map(|pid| match annotations.get(GKE_INSTANCE_ID_ANNOTATION) {
                Some(id) => format!("{pid}#{id}"),
                None => pid,
            });
        for replacement in
            tracker.observe(&node.name_any(), pool, ready, identity, Timestamp::now())
        {
            let _ = found.send(replacement);
        }
    }
    match event {
        watcher::Event::Init => *staging = Cache::default(),
        watcher::Event::InitApply(node) => {
            upsert(staging, &node);
            track(cache, &node);
        }
        watcher::Event::InitDone => {
            fn swap<T: Default>(from: &RwLock<T>, to: &RwLock<T>) {
                let taken = from
                    .write()
                    .map(|mut v| std::mem::take(&mut *v))
                    .unwrap_or_default();
                if let Ok(mut v) = to.write() {
                    *v = taken;
                }
            }
            swap(&staging.index, &cache.index);
            swap(&staging.scheduled, &cache.scheduled);
            swap(&staging.last_event, &cache.last_event);
            let _ = synced.send(true);
        }
        watcher::Event::Apply(node) => {
            upsert(cache, &node);
            track(cache, &node);
        }
        watcher::Event::Delete(node) => {
            let name = node.name_any();
            if let Some((tracker, _)) = &cache.tracker
                && let Ok(mut tracker) = tracker.lock()
            {
                tracker.removed(&name);
            }
            if let Ok(mut idx) = cache.index.write() {
                idx.remove(&name);
            }
            if let Ok(mut s) = cache.scheduled.write() {
                s.remove(&name);
            }
        }
    }
}
