//! Make before break: capacity for a doomed Node's pods before they are evicted.
//!
//! Cluster Autoscaler starts a Node only when pods are Pending, so a drain at the notice spends
//! most of a two-minute window with the evicted pods waiting for a Node to boot. Instead, the
//! drain first creates *placeholder* pods in the router's namespace: one per group of the
//! Node's evictable pods that share their scheduling constraints, asking for the group's
//! summed requests, with the pool's nodeSelector, the pods' own selector, required node affinity
//! and tolerations, and a negative-priority PriorityClass (the overprovisioning pattern). The
//! autoscaler adds capacity for them; once they run, the drain evicts and the real pods preempt
//! them. The drain waits for the placeholders to run, or until the latest start that still lets
//! every pod finish its (deadline-fitted) grace period before the deadline, whichever is first:
//! the Node is cordoned at once either way.
//!
//! Karpenter launches a replacement for its own NodeClaims in parallel: its Nodes get no
//! placeholders. Nor do Nodes with no known pool (nothing to aim the placeholder at), nor pools
//! where [`MakeBeforeBreakConfig::max_pool_share`] of the Nodes already have placeholders.
//!
//! Everything is labelled and annotated with the Node and the event it is for, so a sweep by
//! whichever replica leads removes it: once the drain ended and the pods had time to take the
//! space (`settle_seconds`), when the intent is gone (a cancel), when the Node is gone, and in
//! any case at `timeout_seconds`. Creation is idempotent (names derive from the Node and the
//! event), so a restarted drain finds its placeholders again.
//!
//! Not done here: the `autoscaling.x-k8s.io` CapacityBuffer API; placeholders are used wherever
//! this runs.
//!
//! RBAC, in the router's namespace only: `pods` create, delete, list, watch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::config::MakeBeforeBreakConfig;
use super::intent::NodeView;
use super::kubernetes::Ctx;
use super::shelter::AT_RISK;
use crate::event::Event;

/// Label on every placeholder: the group (Node and event) it belongs to.
pub const PLACEHOLDER_LABEL: &str = "eviction-router/placeholder";
/// Label naming the pool a placeholder is for.
pub const POOL_LABEL: &str = "eviction-router/pool";
/// The selector of every placeholder.
pub const SELECTOR: &str =
    "app.kubernetes.io/managed-by=eviction-router,eviction-router/placeholder";

/// What a placeholder carries about itself (annotation [`PLACEHOLDER_LABEL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct For {
    /// The doomed Node.
    pub node: String,
    /// The event whose intent it serves.
    pub event: String,
    /// When it is deleted whatever happened.
    pub expires: Timestamp,
}

/// A stable 64-bit FNV-1a hash, so that names survive a restart and an upgrade.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The group id of the placeholders for `node` and `event`: 12 hex digits, a valid label value.
pub fn group(node: &str, event: &str) -> String {
    format!("{:012x}", fnv1a(&[node, event]) & 0xffff_ffff_ffff)
}

/// A quantity in thousandths of its unit (`"250m"` → 250, `"1Gi"` → 1024³·1000), or `None`
/// when it cannot be read. Covers the forms `resource.Quantity` accepts: decimal SI suffixes,
/// binary suffixes and exponents.
pub fn milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (exponent, scale): (i32, i128) = match suffix {
        "" => (0, 1),
        s if s.starts_with(['e', 'E']) => (s[1..].parse().ok()?, 1),
        "m" => (-3, 1),
        "k" => (3, 1),
        "M" => (6, 1),
        "G" => (9, 1),
        "T" => (12, 1),
        "P" => (15, 1),
        "E" => (18, 1),
        "Ki" => (0, 1 << 10),
        "Mi" => (0, 1 << 20),
        "Gi" => (0, 1 << 30),
        "Ti" => (0, 1 << 40),
        "Pi" => (0, 1 << 50),
        "Ei" => (0, 1 << 60),
        _ => return None,
    };
    decimal(number, exponent + 3)?.checked_mul(scale)
}

/// `digits × 10^exponent` rounded up to an integer (a request is never made smaller).
fn decimal(digits: &str, exponent: i32) -> Option<i128> {
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let negative = int.starts_with('-');
    let int = int.trim_start_matches(['+', '-']);
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all = format!("{int}{frac}");
    let mut value: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    let mut exp = exponent - i32::try_from(frac.len()).ok()?;
    while exp > 0 {
        value = value.checked_mul(10)?;
        exp -= 1;
    }
    while exp < 0 {
        value = (value + 9) / 10;
        exp += 1;
    }
    Some(if negative { -value } else { value })
}

/// Formats thousandths back into a quantity.
pub(super) fn milli_sum(v: i128) -> String {
    if v % 1000 == 0 {
        format!("{}", v / 1000)
    } else {
        format!("{v}m")
    }
}

/// The scheduling constraints a group of pods shares, as JSON (nodeSelector, required node
/// affinity terms, tolerations).
fn constraints(pod: &Pod) -> Value {
    let spec = pod.spec.as_ref();
    let selector = spec
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let terms = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| serde_json::to_value(&r.node_selector_terms).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let tolerations = spec
        .and_then(|s| s.tolerations.as_ref())
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    json!({ "nodeSelector": selector, "terms": terms, "tolerations": tolerations })
}

/// The summed container requests of `pods`, by resource name, in thousandths.
pub(super) fn sum_requests<'a>(pods: impl Iterator<Item = &'a Pod>) -> BTreeMap<String, i128> {
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for pod in pods {
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        for c in containers {
            let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            for (name, q) in reqs.into_iter().flatten() {
                if let Some(v) = milli(&q.0) {
                    *sum.entry(name.clone()).or_default() += v;
                }
            }
        }
    }
    sum
}

/// The placeholder pods for the evictable `pods` of the Node `view` (pool `pool`, as (label,
/// value)), for `event`, made at `now`. Pure.
pub fn placeholders(
    view: &NodeView,
    pool: &(String, String),
    event: &Event,
    pods: &[Pod],
    config: &MakeBeforeBreakConfig,
    now: Timestamp,
) -> Vec<Value> {
    let group = group(&view.name, &event.id);
    let expires =
        now + SignedDuration::from_secs(i64::try_from(config.timeout_seconds).unwrap_or(i64::MAX));
    let annotation = serde_json::to_string(&For {
        node: view.name.clone(),
        event: event.id.clone(),
        expires,
    })
    .unwrap_or_default();
    // Pods that share their constraints share a placeholder; a BTreeMap keeps the order (and so
    // the names) the same on every try.
    let mut groups: BTreeMap<String, (Value, Vec<&Pod>)> = BTreeMap::new();
    for pod in pods {
        let c = constraints(pod);
        groups
            .entry(c.to_string())
            .or_insert_with(|| (c, Vec::new()))
            .1
            .push(pod);
    }
    let mut out = Vec::new();
    for (i, (_, (c, members))) in groups.into_iter().enumerate() {
        let sum = sum_requests(members.iter().copied());
        if sum.values().all(|v| *v <= 0) {
            continue; // Pods that ask for nothing need no room made for them.
        }
        let reqs: serde_json::Map<String, Value> = sum
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| (k, Value::String(milli_sum(v))))
            .collect();
        let mut selector = c["nodeSelector"].as_object().cloned().unwrap_or_default();
        selector.insert(pool.0.clone(), Value::String(pool.1.clone()));
        // Never on a sheltered sibling: it is the likeliest to go next.
        let avoid = json!({"key": AT_RISK, "operator": "DoesNotExist"});
        let terms: Vec<Value> = match c["terms"].as_array() {
            Some(terms) if !terms.is_empty() => terms
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    let mut exprs = t["matchExpressions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    exprs.push(avoid.clone());
                    t["matchExpressions"] = Value::Array(exprs);
                    t
                })
                .collect(),
            _ => vec![json!({"matchExpressions": [avoid]})],
        };
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("eviction-router-placeholder-{group}-{i}"),
                "labels": {
                    "app.kubernetes.io/managed-by": "eviction-router",
                    PLACEHOLDER_LABEL: group,
                    POOL_LABEL: pool.1,
                },
                "annotations": { PLACEHOLDER_LABEL: annotation },
            },
            "spec": {
                "priorityClassName": config.priority_class,
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "nodeSelector": selector,
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}},
                "tolerations": c["tolerations"].as_array().cloned().unwrap_or_default(),
                "containers": [{
                    "name": "pause",
                    "image": config.image,
                    "resources": {"requests": reqs},
                }],
            },
        }));
    }
    out
}

/// What the sweep knows of one placeholder.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    group: String,
    pool: String,
    running: bool,
    created: Option<Timestamp>,
    of: Option<For>,
}

fn seen(pod: &Pod) -> Seen {
    let labels = pod.labels();
    Seen {
        group: labels.get(PLACEHOLDER_LABEL).cloned().unwrap_or_default(),
        pool: labels.get(POOL_LABEL).cloned().unwrap_or_default(),
        running: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running"),
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        of: pod
            .annotations()
            .get(PLACEHOLDER_LABEL)
            .and_then(|a| serde_json::from_str(a).ok()),
    }
}

/// The placeholders of the router's namespace, from a watch: the drains wait on it and the
/// sweep reads it, with no API call.
#[derive(Debug)]
pub struct Placeholders {
    pods: RwLock<HashMap<String, Seen>>,
    changed: watch::Sender<u64>,
    synced: watch::Sender<bool>,
}

impl Placeholders {
    /// An empty, unsynced set.
    pub fn new() -> Placeholders {
        Placeholders {
            pods: RwLock::new(HashMap::new()),
            changed: watch::Sender::new(0),
            synced: watch::Sender::new(false),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Seen>> {
        self.pods.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Seen>> {
        self.pods.read().unwrap_or_else(|e| e.into_inner())
    }

    fn upsert(&self, pod: &Pod) {
        self.write().insert(pod.name_any(), seen(pod));
        self.changed.send_modify(|v| *v += 1);
    }

    /// How many placeholders there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many groups have placeholders in `pool`.
    fn groups_in(&self, pool: &str) -> usize {
        let pods = self.read();
        let mut groups: Vec<&str> = pods
            .values()
            .filter(|s| s.pool == pool)
            .map(|s| s.group.as_str())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups.len()
    }

    /// Whether none of `names` is waiting for room: each runs, or is gone (preempted).
    fn settled(&self, names: &[String]) -> bool {
        let pods = self.read();
        names.iter().all(|n| pods.get(n).is_none_or(|s| s.running))
    }
}

impl Default for Placeholders {
    fn default() -> Self {
        Placeholders::new()
    }
}

/// Watches the placeholders of `namespace` into `set` until the process ends.
///
/// RBAC: `pods` list, watch in the router's namespace.
pub async fn watch(client: Client, namespace: String, set: Arc<Placeholders>) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let stream = watcher(
        api,
        watcher::Config::default().labels(SELECTOR).any_semantic(),
    );
    let mut stream = std::pin::pin!(stream);
    let mut staging: HashMap<String, Seen> = HashMap::new();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => match event {
                watcher::Event::Init => staging.clear(),
                watcher::Event::InitApply(pod) => {
                    staging.insert(pod.name_any(), seen(&pod));
                }
                watcher::Event::InitDone => {
                    *set.write() = std::mem::take(&mut staging);
                    set.synced.send_replace(true);
                    set.changed.send_modify(|v| *v += 1);
                }
                watcher::Event::Apply(pod) => set.upsert(&pod),
                watcher::Event::Delete(pod) => {
                    set.write().remove(&pod.name_any());
                    set.changed.send_modify(|v| *v += 1);
                }
            },
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "The placeholder watch failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Why no placeholders were made (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The kind is not configured for it.
    Kind,
    /// Karpenter replaces its own Nodes.
    Karpenter,
    /// The Node has no known pool.
    NoPool,
    /// The pool's share is used up.
    Share,
    /// No evictable pod asks for resources.
    Nothing,
    /// The API server refused (RBAC, a missing PriorityClass, a quota).
    Refused,
    /// The placeholder watch has not synced.
    NotSynced,
}

impl Skipped {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Skipped::Kind => "skipped_kind",
            Skipped::Karpenter => "skipped_karpenter",
            Skipped::NoPool => "skipped_no_pool",
            Skipped::Share => "skipped_share",
            Skipped::Nothing => "skipped_nothing",
            Skipped::Refused => "refused",
            Skipped::NotSynced => "not_synced",
        }
    }
}

/// Makes room for the evictable `pods` of `view` before they are evicted for `event`, then waits
/// for it until `evict_by`. Never fails the drain: whatever goes wrong, it logs, counts and lets
/// the evictions start.
pub(super) async fn before_evicting(
    ctx: &Ctx,
    view: &NodeView,
    event: &Event,
    pods: &[Pod],
    evict_by: Timestamp,
) {
    let Some(mbb) = &ctx.capacity else {
        return;
    };
    let names = match provide(ctx, mbb, view, event, pods).await {
        Ok(names) => names,
        Err(skipped) => {
            ctx.metrics.placeholders(skipped.as_str(), 0);
            tracing::info!(node = %view.name, id = %event.id, reason = skipped.as_str(), "No placeholders for the Node's pods; evicting without waiting.");
            return;
        }
    };
    ctx.metrics.placeholders("created", names.len() as u64);
    let started = Instant::now();
    tracing::info!(node = %view.name, id = %event.id, placeholders = names.len(), until = %evict_by, "Waiting for replacement capacity before evicting.");
    let mut changed = mbb.set.changed.subscribe();
    let ready = loop {
        if mbb.set.settled(&names) {
            break true;
        }
        let left: Duration = evict_by
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            break false;
        }
        // Woken by every placeholder change; the timeout is the latest start.
        let _ = tokio::time::timeout(left, changed.changed()).await;
    };
    let outcome = if ready { "ready" } else { "latest_start" };
    ctx.metrics.capacity_wait(outcome, started.elapsed());
    tracing::info!(node = %view.name, id = %event.id, outcome, waited_s = started.elapsed().as_secs_f64(), "Evicting the Node's pods.");
}

/// The make-before-break part of the context. The placeholder watch starts with the first
/// drain that wants placeholders, so a cluster that never needs them never lists pods in the
/// router's namespace.
#[derive(Debug)]
pub struct Capacity {
    /// The settings.
    pub config: MakeBeforeBreakConfig,
    /// Where placeholders are made.
    pub namespace: String,
    /// The placeholders seen.
    pub set: Arc<Placeholders>,
    watching: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long the first drain that wants placeholders waits for their watch to list.
const WATCH_SYNC_WAIT: Duration = Duration::from_secs(5);

impl Capacity {
    /// Make before break with `config`, placeholders in `namespace`.
    pub fn new(config: MakeBeforeBreakConfig, namespace: String) -> Capacity {
        Capacity {
            config,
            namespace,
            set: Arc::new(Placeholders::new()),
            watching: std::sync::Mutex::new(None),
        }
    }

    /// Starts the placeholder watch if it is not running, and waits (a little) for its list.
    async fn watched(&self, client: &Client) -> bool {
        {
            let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
            if watching.is_none() {
                *watching = Some(tokio::spawn(watch(
                    client.clone(),
                    self.namespace.clone(),
                    self.set.clone(),
                )));
            }
        }
        let mut synced = self.set.synced.subscribe();
        tokio::time::timeout(WATCH_SYNC_WAIT, synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Capacity {
    fn drop(&mut self) {
        if let Some(task) = self.watching.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Creates the placeholders; their names, or why none were made.
async fn provide(
    ctx: &Ctx,
    mbb: &Capacity,
    view: &NodeView,
    event: &Event,
    pods: &[Pod],
) -> Result<Vec<String>, Skipped> {
    if !mbb.config.applies(event.data.kind) {
        return Err(Skipped::Kind);
    }
    if view.placement.karpenter {
        return Err(Skipped::Karpenter);
    }
    let Some(pool) = view.placement.pool.clone() else {
        return Err(Skipped::NoPool);
    };
    if !mbb.watched(&ctx.clients.admit).await {
        return Err(Skipped::NotSynced);
    }
    let group_id = group(&view.name, &event.id);
    let ours = mbb.set.read().values().any(|s| s.group == group_id);
    if !ours {
        let pool_nodes = ctx
            .cache
            .select(|v| v.placement.pool.as_ref() == Some(&pool))
            .len();
        let allowed = ((pool_nodes as f64) * mbb.config.max_pool_share).ceil() as usize;
        if mbb.set.groups_in(&pool.1) >= allowed.max(1) {
            return Err(Skipped::Share);
        }
    }
    let wanted = placeholders(view, &pool, event, pods, &mbb.config, Timestamp::now());
    if wanted.is_empty() {
        return Err(Skipped::Nothing);
    }
    let api: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &mbb.namespace);
    let mut names = Vec::with_capacity(wanted.len());
    for body in wanted {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pod: Pod = match serde_json::from_value(body) {
            Ok(pod) => pod,
            Err(_) => continue,
        };
        let _permit = ctx.drainer.in_flight.acquire().await;
        match api.create(&PostParams::default(), &pod).await {
            Ok(created) => mbb.set.upsert(&created),
            // Made by an earlier try of this drain (a restart, a new leader).
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                tracing::warn!(node = %view.name, namespace = %mbb.namespace, status = e.code, error = %e.message, "The API server refused a placeholder pod; evicting without one (check the RBAC and the PriorityClass).");
                return Err(Skipped::Refused);
            }
            Err(e) => {
                tracing::warn!(node = %view.name, error = %e, "Cannot create a placeholder pod; evicting without it.");
                return Err(Skipped::Refused);
            }
        }
        names.push(name);
    }
    Ok(names)
}

/// Why a placeholder is removed (a bounded label).
fn why_remove(s: &Seen, ctx: &Ctx, settle: SignedDuration, now: Timestamp) -> Option<&'static str> {
    let Some(of) = &s.of else {
        // Not one of ours as this version writes them: old enough, it goes.
        return s
            .created
            .filter(|c| *c + settle <= now)
            .map(|_| "unreadable");
    };
    if of.expires <= now {
        return Some("expired");
    }
    let Some(view) = ctx.cache.get(&of.node) else {
        return s
            .created
            .is_none_or(|c| c + settle <= now)
            .then_some("node_gone");
    };
    let serves = view.intents().values().any(|i| i.event.id == of.event);
    if !serves {
        return Some("canceled");
    }
    match view.drain_state() {
        Some(d) if d.for_event == of.event && d.at + settle <= now => Some("settled"),
        _ => None,
    }
}

/// Removes the placeholders that are no longer needed; the leader calls it periodically.
///
/// RBAC: `pods` delete in the router's namespace.
pub(super) async fn sweep(ctx: &Ctx) {
    let Some(mbb) = &ctx.capacity else {
        return;
    };
    let now = Timestamp::now();
    let settle =
        SignedDuration::from_secs(i64::try_from(mbb.config.settle_seconds).unwrap_or(i64::MAX));
    let doomed: Vec<(String, &'static str)> = mbb
        .set
        .read()
        .iter()
        .filter_map(|(name, s)| why_remove(s, ctx, settle, now).map(|why| (name.clone(), why)))
        .collect();
    let api: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &mbb.namespace);
    for (name, why) in doomed {
        let _permit = ctx.drainer.in_flight.acquire().await;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(placeholder = %name, error = %e, "Cannot delete a placeholder; trying again at the next sweep.");
                continue;
            }
        }
        mbb.set.write().remove(&name);
        ctx.metrics.placeholder_removed(why);
        tracing::info!(placeholder = %name, why, "Removed a placeholder.");
    }
    ctx.metrics.placeholders_now(mbb.set.len() as i64);
}

#[cfg(test)]
mod tests;
