//! Failback: move workloads back to Spot when Spot capacity returns, make before break.
//!
//! During a Spot shortage pods fall back to on-demand Nodes; when Spot returns nothing moves them
//! back. Evicting them blindly loops (nothing makes Spot room first, so they land on on-demand
//! again). Here, every `interval_seconds`, the leader:
//!
//! 1. finds **candidates**: Running pods with a controller that prefer Spot — a preferred node
//!    affinity term on a Spot capacity label, or the annotation `eviction-router/prefer-spot:
//!    "true"` — on Nodes that are on-demand capacity (a capacity label that says so, or Cast
//!    AI's `scheduling.cast.ai/spot-fallback`);
//! 2. decides **when**: inside the configured windows, not paused (the kill switch: the
//!    annotation `eviction-router/failback: paused` on the router's namespace, read every
//!    interval), some Spot pool quiet for `dwell_seconds` (no notice seen; the leader's own
//!    watch counts as a notice at its start, so a new leader waits a whole dwell),
//!    each owner moved at most once per dwell, at most `max_pods_per_interval` pods and
//!    `max_nodes_per_interval` on-demand Nodes touched per interval;
//! 3. **makes before it breaks**: one owner at a time, a placeholder pod sized to the owner's
//!    candidates, required onto Spot (the pods' own preferred Spot term made required), waited
//!    for until it runs; if the Spot pool it landed in had a notice since the dwell began, it is
//!    given up. Then the owner's pods are evicted one at a time through the Eviction API, each
//!    one's placeholder deleted just before it (a placeholder in the way would send the
//!    replacement back to the on-demand room its pod just freed)
//!    (PodDisruptionBudgets honoured; a 429 is retried a few times, then the pod is left),
//!    each next one only once the owner has as many pods Running again as before; a notice for
//!    that pool, or the kill switch, stops it between two evictions;
//! 4. **reports**: a `FailbackToSpot` Event on the owner, a `failback` event on the stream,
//!    `failback_*` metrics. Emptied on-demand Nodes are left to the autoscaler.
//!
//! Nothing is kept in memory that a restart must not lose: placeholders carry the label
//! [`FAILBACK_LABEL`] and a new leader deletes every one it finds before it starts.
//!
//! RBAC: `pods` list (cluster-wide), `pods/eviction` create; in the router's namespace `pods`
//! create, delete, get, list; `namespaces` get (the kill switch).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::capacity::{milli_sum, sum_requests};
use super::kubernetes::Ctx;
use super::placement::SPOT_LABELS;
use super::plan::EventType;
use super::{ClusterError, Emitted};
use crate::event::{Event, EventData, Instance, Kind};

/// The label on failback placeholders.
pub const FAILBACK_LABEL: &str = "eviction-router/failback-placeholder";
/// The opt-in annotation on pods that prefer Spot without saying so in their affinity.
pub const PREFER_SPOT_ANNOTATION: &str = "eviction-router/prefer-spot";
/// The kill switch: this annotation on the router's namespace, value `paused`.
pub const PAUSE_ANNOTATION: &str = "eviction-router/failback";

/// `cluster.failback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailbackConfig {
    /// Off by default.
    pub enabled: bool,
    /// Namespaces whose pods may be moved; empty: all.
    pub namespaces: Vec<String>,
    /// A label selector the pods must match (Kubernetes syntax); empty: all.
    pub selector: String,
    /// A Spot pool must have had no notice for this long.
    pub dwell_seconds: u64,
    /// How often candidates are looked for.
    pub interval_seconds: u64,
    /// At most this many pods moved per interval.
    pub max_pods_per_interval: usize,
    /// At most this many on-demand Nodes have pods moved off them per interval.
    pub max_nodes_per_interval: usize,
    /// Times of day (UTC, `HH:MM-HH:MM`) when failback may run; empty: always.
    pub windows: Vec<String>,
    /// How long a placeholder may take to run before the owner is given up for this round.
    pub capacity_timeout_seconds: u64,
}

impl Default for FailbackConfig {
    fn default() -> Self {
        FailbackConfig {
            enabled: false,
            namespaces: Vec::new(),
            selector: String::new(),
            dwell_seconds: 900,
            interval_seconds: 30,
            max_pods_per_interval: 10,
            max_nodes_per_interval: 2,
            windows: Vec::new(),
            capacity_timeout_seconds: 600,
        }
    }
}

/// A `HH:MM-HH:MM` window as minutes of the day; `None` when malformed.
pub fn parse_window(w: &str) -> Option<(u32, u32)> {
    let minutes = |s: &str| -> Option<u32> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (a, b) = w.split_once('-')?;
    Some((minutes(a)?, minutes(b)?))
}

impl FailbackConfig {
    /// Checks what serde cannot: `Err((key under cluster.failback., what is wrong))`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.interval_seconds == 0 {
            return Err(("interval_seconds", "must be at least 1"));
        }
        if self.max_pods_per_interval == 0 || self.max_nodes_per_interval == 0 {
            return Err((
                "max_pods_per_interval",
                "the per-interval budgets must be at least 1",
            ));
        }
        if self.windows.iter().any(|w| parse_window(w).is_none()) {
            return Err(("windows", "each window is HH:MM-HH:MM (UTC)"));
        }
        Ok(())
    }

    /// Whether `now` falls in a window (a window may wrap midnight).
    pub fn in_window(&self, now: Timestamp) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let t = now.to_zoned(jiff::tz::TimeZone::UTC);
        let m = u32::from(t.hour().unsigned_abs()) * 60 + u32::from(t.minute().unsigned_abs());
        self.windows
            .iter()
            .filter_map(|w| parse_window(w))
            .any(|(a, b)| {
                if a <= b {
                    (a..b).contains(&m)
                } else {
                    m >= a || m < b
                }
            })
    }

    fn dwell(&self) -> SignedDuration {
        SignedDuration::from_secs(i64::try_from(self.dwell_seconds).unwrap_or(i64::MAX))
    }
}

/// When each pool last had a notice, as the leader saw it: admits and the intents found on
/// Nodes feed it. Until the leader has watched for a whole dwell, every pool counts as noticed
/// at its start: a new leader knows no history.
#[derive(Debug)]
pub struct Notices {
    since: Timestamp,
    last: Mutex<HashMap<String, Timestamp>>,
}

impl Notices {
    /// No notice seen yet, watching from `since`.
    pub fn new(since: Timestamp) -> Notices {
        Notices {
            since,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// A notice for `pool` that occurred at `at`.
    pub fn saw(&self, pool: &str, at: Timestamp) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let e = last.entry(pool.to_owned()).or_insert(at);
        if at > *e {
            *e = at;
        }
    }

    /// The last notice for `pool`, or when watching began.
    pub fn last(&self, pool: &str) -> Timestamp {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(pool)
            .copied()
            .unwrap_or(self.since)
            .max(self.since)
    }
}

/// The preferred node affinity terms of a pod that ask for Spot, as required-term
/// `matchExpressions`; empty when it does not prefer Spot (by affinity or annotation).
pub fn spot_preference(pod: &Pod) -> Option<Vec<Value>> {
    let spec = pod.spec.as_ref()?;
    let preferred = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    for term in preferred.into_iter().flatten() {
        let exprs = term.preference.match_expressions.as_deref().unwrap_or(&[]);
        let spot = exprs.iter().any(|e| {
            e.operator == "In"
                && SPOT_LABELS.iter().any(|(k, v)| {
                    e.key == *k && e.values.iter().flatten().any(|x| x.eq_ignore_ascii_case(v))
                })
        });
        if spot {
            return Some(
                exprs
                    .iter()
                    .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    let annotated = pod
        .annotations()
        .get(PREFER_SPOT_ANNOTATION)
        .is_some_and(|v| v == "true");
    // Opted in by annotation: any Spot Node (the first Spot label of the list that the cluster
    // uses is not known here, so Karpenter's and EKS's are both accepted).
    annotated.then(|| {
        vec![json!({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]})]
    })
}

fn controller(pod: &Pod) -> Option<(String, String, String, String)> {
    let o = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    (o.kind != "DaemonSet" && o.kind != "Node").then(|| {
        (
            o.uid.clone(),
            o.kind.clone(),
            o.name.clone(),
            o.api_version.clone(),
        )
    })
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pods of one owner that run on on-demand Nodes and prefer Spot.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Namespace.
    pub namespace: String,
    /// The controller: uid, kind, name, apiVersion.
    pub uid: String,
    kind: String,
    name: String,
    api_version: String,
    /// The Spot term, as required expressions.
    pub spot: Vec<Value>,
    /// The candidates.
    pub pods: Vec<Pod>,
    /// How many of the owner's pods run, anywhere.
    pub running: usize,
}

/// The owners with candidates, from every pod listed and a test of whether a Node is on-demand.
pub fn candidates(pods: &[Pod], on_demand: impl Fn(&str) -> bool) -> Vec<Owner> {
    let mut owners: BTreeMap<(String, String), Owner> = BTreeMap::new();
    let mut running_of: HashMap<String, usize> = HashMap::new();
    for pod in pods {
        let Some((uid, ..)) = controller(pod) else {
            continue;
        };
        if running(pod) {
            *running_of.entry(uid).or_default() += 1;
        }
    }
    for pod in pods {
        if !running(pod) || pod.labels().contains_key(FAILBACK_LABEL) {
            continue;
        }
        let Some((uid, kind, name, api_version)) = controller(pod) else {
            continue;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if !node.is_some_and(&on_demand) {
            continue;
        }
        let Some(spot) = spot_preference(pod) else {
            continue;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let owner = owners
            .entry((namespace.clone(), uid.clone()))
            .or_insert_with(|| Owner {
                namespace,
                running: running_of.get(&uid).copied().unwrap_or(0),
                uid,
                kind,
                name,
                api_version,
                spot,
                pods: Vec::new(),
            });
        owner.pods.push(pod.clone());
    }
    owners.into_values().collect()
}

/// The placeholder for moving `pod` (the `index`th candidate of its owner) to Spot: its own
/// requests, the owner's Spot term made required, its tolerations. One per pod, so each fits
/// wherever the pod would.
pub fn placeholder(
    owner: &Owner,
    pod: &Pod,
    index: usize,
    priority_class: &str,
    image: &str,
    now: Timestamp,
) -> Value {
    let sum = sum_requests(std::iter::once(pod));
    let reqs: serde_json::Map<String, Value> = sum
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k, Value::String(milli_sum(v))))
        .collect();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut exprs = owner.spot.clone();
    exprs.push(json!({"key": super::shelter::AT_RISK, "operator": "DoesNotExist"}));
    let id = group_of(owner);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("eviction-router-failback-{id}-{index}"),
            "labels": {
                "app.kubernetes.io/managed-by": "eviction-router",
                FAILBACK_LABEL: id,
            },
            "annotations": {
                FAILBACK_LABEL: format!("{}/{} {} (made {now})", owner.namespace, owner.name, owner.kind),
            },
        },
        "spec": {
            "priorityClassName": priority_class,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}},
            "tolerations": tolerations,
            "containers": [{"name": "pause", "image": image, "resources": {"requests": reqs}}],
        },
    })
}

/// The label value of an owner's failback placeholders.
fn group_of(owner: &Owner) -> String {
    super::capacity::group(&owner.namespace, &owner.uid)
}

/// How a move ended (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every candidate was evicted and replaced.
    Moved,
    /// A notice for the pool, or the kill switch, stopped it.
    Aborted,
    /// The placeholder did not run in time, or landed where Spot is not quiet.
    NoCapacity,
    /// PodDisruptionBudgets kept refusing.
    Blocked,
}

impl Ended {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Moved => "moved",
            Ended::Aborted => "aborted",
            Ended::NoCapacity => "no_capacity",
            Ended::Blocked => "blocked",
        }
    }
}

/// The failback loop's own state.
#[derive(Debug)]
pub struct Failback {
    config: FailbackConfig,
    namespace: String,
    /// Owner uid → when it was last moved (hysteresis).
    moved: Mutex<HashMap<String, Timestamp>>,
}

/// What one round is allowed to do.
struct Round {
    pods_left: usize,
    nodes: Vec<String>,
}

impl Failback {
    /// The loop for `config`, with placeholders in `namespace`.
    pub fn new(config: FailbackConfig, namespace: String) -> Failback {
        Failback {
            config,
            namespace,
            moved: Mutex::new(HashMap::new()),
        }
    }

    /// Runs while the process lives, acting only while `active`.
    pub(super) async fn run(self: Arc<Self>, ctx: Arc<Ctx>, mut active: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.interval_seconds.max(1));
        let mut cleaned = false;
        let mut paused = false;
        // A dropped sender means the value never changes again (no election: always active).
        let mut election = true;
        loop {
            if !*active.borrow_and_update() {
                cleaned = false;
                if active.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if !cleaned {
                // A new leader starts over: nothing half-done survives it.
                cleaned = self.clean(&ctx).await.is_ok();
            }
            match self.paused(&ctx).await {
                Ok(now_paused) => {
                    if now_paused != paused {
                        tracing::info!(
                            paused = now_paused,
                            "Failback {}.",
                            if now_paused {
                                "paused by the namespace annotation"
                            } else {
                                "resumed"
                            }
                        );
                    }
                    paused = now_paused;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read the failback kill switch; skipping this round.")
                }
            }
            if !paused
                && self.config.in_window(Timestamp::now())
                && let Err(e) = self.round(&ctx).await
            {
                tracing::warn!(error = %e, "A failback round failed; trying again next interval.");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                changed = active.changed(), if election => if changed.is_err() { election = false },
            }
        }
    }

    async fn paused(&self, ctx: &Ctx) -> Result<bool, ClusterError> {
        let api: Api<Namespace> = Api::all(ctx.clients.events.clone());
        let ns = api
            .get(&self.namespace)
            .await
            .map_err(|e| ClusterError::api("read the router's namespace", e))?;
        Ok(ns
            .annotations()
            .get(PAUSE_ANNOTATION)
            .is_some_and(|v| v == "paused"))
    }

    async fn clean(&self, ctx: &Ctx) -> Result<(), ClusterError> {
        let api: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &self.namespace);
        let list = api
            .list(&ListParams::default().labels(FAILBACK_LABEL))
            .await
            .map_err(|e| ClusterError::api("list failback placeholders", e))?;
        for pod in list.items {
            let name = pod.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(placeholder = %name, "Removed a failback placeholder left by an earlier leader.")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(ClusterError::api("delete a failback placeholder", e)),
            }
        }
        Ok(())
    }

    /// One round: find the candidates and move owners within the budget.
    async fn round(&self, ctx: &Ctx) -> Result<(), ClusterError> {
        let pods = self.list(ctx).await?;
        let on_demand = |node: &str| {
            ctx.cache
                .get(node)
                .is_some_and(|v| v.placement.fallback && !v.placement.spot)
        };
        let owners = candidates(&pods, on_demand);
        ctx.metrics
            .failback_candidates(owners.iter().map(|o| o.pods.len()).sum::<usize>() as i64);
        if owners.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let dwell = self.config.dwell();
        // Every Spot pool must be quiet: where the placeholder lands is the scheduler's choice.
        let spot_pools: Vec<String> = {
            let mut p: Vec<String> = ctx
                .cache
                .select(|v| v.placement.spot)
                .iter()
                .filter_map(|v| v.placement.pool_name().map(str::to_owned))
                .collect();
            p.sort();
            p.dedup();
            p
        };
        // A cluster with no Spot Node left has no pool to hear from: the placeholder finds out
        // whether Spot can be had, and the pool it lands in is checked then.
        if !spot_pools.is_empty() && spot_pools.iter().all(|p| ctx.notices.last(p) + dwell > now) {
            tracing::debug!(
                "No Spot pool has been quiet for the dwell time; no failback this round."
            );
            return Ok(());
        }
        let mut round = Round {
            pods_left: self.config.max_pods_per_interval,
            nodes: Vec::new(),
        };
        for owner in owners {
            if round.pods_left == 0 {
                break;
            }
            let recently = self
                .moved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&owner.uid)
                .is_some_and(|t| *t + dwell > now);
            if recently {
                continue;
            }
            // The Nodes this owner's pods would leave, within the Node budget.
            let mut pods = Vec::new();
            for pod in &owner.pods {
                if pods.len() >= round.pods_left {
                    break;
                }
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                if !round.nodes.contains(&node) {
                    if round.nodes.len() >= self.config.max_nodes_per_interval {
                        continue;
                    }
                    round.nodes.push(node);
                }
                pods.push(pod.clone());
            }
            if pods.is_empty() {
                continue;
            }
            round.pods_left -= pods.len();
            let started = Instant::now();
            let (ended, moved) = self.move_owner(ctx, &owner, &pods, now).await?;
            self.moved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(owner.uid.clone(), Timestamp::now());
            ctx.metrics
                .failback(ended.as_str(), moved as u64, started.elapsed());
            tracing::info!(namespace = %owner.namespace, owner = %owner.name, kind = %owner.kind, outcome = ended.as_str(), moved, of = pods.len(), "Failback of an owner's pods to Spot ended.");
            self.report(ctx, &owner, ended, moved);
        }
        Ok(())
    }

    async fn list(&self, ctx: &Ctx) -> Result<Vec<Pod>, ClusterError> {
        let params = match self.config.selector.as_str() {
            "" => ListParams::default(),
            s => ListParams::default().labels(s),
        };
        let params = params.fields("status.phase=Running");
        let mut out = Vec::new();
        if self.config.namespaces.is_empty() {
            let api: Api<Pod> = Api::all(ctx.clients.drain.clone());
            out = api
                .list(&params)
                .await
                .map_err(|e| ClusterError::api("list pods for failback", e))?
                .items;
        } else {
            for ns in &self.config.namespaces {
                let api: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), ns);
                out.extend(
                    api.list(&params)
                        .await
                        .map_err(|e| ClusterError::api("list pods for failback", e))?
                        .items,
                );
            }
        }
        Ok(out)
    }

    /// Moves one owner's `pods`; how it ended and how many were moved.
    async fn move_owner(
        &self,
        ctx: &Ctx,
        owner: &Owner,
        pods: &[Pod],
        began: Timestamp,
    ) -> Result<(Ended, usize), ClusterError> {
        let Some(mbb) = &ctx.capacity else {
            return Ok((Ended::NoCapacity, 0));
        };
        let placeholders: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &self.namespace);
        let mut names = Vec::with_capacity(pods.len());
        let mut result = Ok((Ended::NoCapacity, 0));
        for (i, candidate) in pods.iter().enumerate() {
            let body = placeholder(
                owner,
                candidate,
                i,
                &mbb.config.priority_class,
                &mbb.config.image,
                Timestamp::now(),
            );
            let Ok(pod) = serde_json::from_value::<Pod>(body) else {
                continue;
            };
            names.push(pod.name_any());
            match placeholders.create(&PostParams::default(), &pod).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    result = Err(ClusterError::api("create a failback placeholder", e));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.after_placeholders(ctx, owner, pods, began).await;
        }
        for name in names {
            match placeholders.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(placeholder = %name, error = %e, "Cannot delete a failback placeholder; the next leader removes it.")
                }
            }
        }
        result
    }

    async fn after_placeholders(
        &self,
        ctx: &Ctx,
        owner: &Owner,
        pods: &[Pod],
        began: Timestamp,
    ) -> Result<(Ended, usize), ClusterError> {
        let placeholders: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &self.namespace);
        let selector = format!("{FAILBACK_LABEL}={}", group_of(owner));
        let deadline = Instant::now() + Duration::from_secs(self.config.capacity_timeout_seconds);
        // Wait for every placeholder to run: the Spot capacity exists before anything is
        // evicted. The pools they run in must be quiet.
        let pools: Vec<String> = loop {
            if Instant::now() >= deadline {
                return Ok((Ended::NoCapacity, 0));
            }
            let list = placeholders
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| ClusterError::api("list failback placeholders", e))?;
            // One gone (preempted by a real pod) before running: try again next round.
            if list.items.len() < pods.len() {
                return Ok((Ended::NoCapacity, 0));
            }
            if list.items.iter().all(running) {
                break list
                    .items
                    .iter()
                    .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
                    .filter_map(|n| ctx.cache.get(&n))
                    .filter_map(|v| v.placement.pool_name().map(str::to_owned))
                    .collect();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let noticed = |since: Timestamp| pools.iter().any(|p| ctx.notices.last(p) > since);
        let dwell = self.config.dwell();
        if noticed(began - dwell) {
            return Ok((Ended::NoCapacity, 0));
        }
        let mut moved = 0;
        let mut want_running = owner.running;
        let id = group_of(owner);
        for (i, pod) in pods.iter().enumerate() {
            // Stop between two evictions when the pool is noticed or the switch is thrown.
            if noticed(began) || self.paused(ctx).await.unwrap_or(true) {
                return Ok((Ended::Aborted, moved));
            }
            // The pod's own room on Spot is freed just before it goes: the scheduler preempts
            // only for a pod that fits nowhere, and the evicted pod's old place on on-demand is
            // free too, so a placeholder left in the way would send its replacement back there.
            // With the room free, the pod's own preference for Spot decides.
            let name = format!("eviction-router-failback-{id}-{i}");
            match placeholders.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(ClusterError::api("delete a failback placeholder", e)),
            }
            let mut evicted = false;
            for attempt in 0..5u32 {
                match evict(&ctx.clients.drain, pod).await {
                    Evicted::Yes => {
                        evicted = true;
                        break;
                    }
                    Evicted::Gone => break,
                    Evicted::Blocked => {
                        tokio::time::sleep(Duration::from_secs(1 << attempt.min(4))).await;
                    }
                }
            }
            if !evicted {
                return Ok((Ended::Blocked, moved));
            }
            moved += 1;
            let cores = sum_requests(std::iter::once(pod))
                .get("cpu")
                .copied()
                .unwrap_or(0);
            ctx.metrics.failback_cores_moved(cores as f64 / 1000.0);
            // The owner's replacement must run before the next pod goes.
            want_running = want_running.max(1);
            let wait_until =
                Instant::now() + Duration::from_secs(self.config.capacity_timeout_seconds);
            loop {
                let n = self.running_of(ctx, owner).await?;
                if n >= want_running {
                    break;
                }
                if Instant::now() >= wait_until {
                    return Ok((Ended::NoCapacity, moved));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok((Ended::Moved, moved))
    }

    async fn running_of(&self, ctx: &Ctx, owner: &Owner) -> Result<usize, ClusterError> {
        let api: Api<Pod> = Api::namespaced(ctx.clients.drain.clone(), &owner.namespace);
        let list = api
            .list(&ListParams::default().fields("status.phase=Running"))
            .await
            .map_err(|e| ClusterError::api("list an owner's pods", e))?;
        Ok(list
            .items
            .iter()
            .filter(|p| {
                controller(p).is_some_and(|c| c.0 == owner.uid)
                    && p.metadata.deletion_timestamp.is_none()
            })
            .count())
    }

    fn report(&self, ctx: &Ctx, owner: &Owner, ended: Ended, moved: usize) {
        let reference = ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(owner.namespace.clone()),
            uid: Some(owner.uid.clone()),
            ..ObjectReference::default()
        };
        let provider = owner
            .pods
            .first()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| ctx.cache.get(n))
            .and_then(|v| v.placement.provider);
        let Some(provider) = provider else {
            return;
        };
        let instance = Instance {
            id: format!("{}/{}", owner.namespace, owner.name),
            name: Some(owner.kind.clone()),
            provider_id: None,
            resource_id: None,
        };
        let mut data = EventData::new(
            provider,
            Kind::Failback,
            "failback",
            instance,
            Timestamp::now(),
        );
        data.details.insert("outcome".into(), ended.as_str().into());
        data.details.insert("moved".into(), moved.into());
        data.details
            .insert("namespace".into(), owner.namespace.clone().into());
        data.details.insert(
            "owner".into(),
            format!("{}/{}", owner.kind, owner.name).into(),
        );
        let event = Event::new(
            format!("failback/{}/{}", owner.uid, Timestamp::now().as_second()),
            data,
        );
        let note = format!(
            "{moved} of {} pods moved back to Spot ({})",
            owner.pods.len(),
            ended.as_str()
        );
        let events = ctx.events.clone();
        let e = event.clone();
        tokio::spawn(async move {
            if let Err(err) = events
                .record(
                    &reference,
                    &e,
                    "FailbackToSpot",
                    EventType::Normal,
                    Some(note),
                )
                .await
            {
                tracing::warn!(error = %err, "Cannot record the failback Event.");
            }
        });
        let _ = ctx.emitted.send(Emitted::Failback(event));
    }
}

enum Evicted {
    Yes,
    Gone,
    Blocked,
}

async fn evict(client: &Client, pod: &Pod) -> Evicted {
    let (Some(ns), name) = (pod.namespace(), pod.name_any()) else {
        return Evicted::Gone;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": { "name": name, "namespace": ns },
    });
    let result: Result<Value, kube::Error> = api
        .create_subresource("eviction", &name, &PostParams::default(), &body)
        .await;
    match result {
        Ok(_) => Evicted::Yes,
        Err(kube::Error::Api(e)) if e.code == 404 => Evicted::Gone,
        Err(_) => Evicted::Blocked,
    }
}

#[cfg(test)]
mod tests;
