//! The Kubernetes executor: the message path's *admit*, and the tasks behind it (the Node
//! watch, the reconciler, replacement expiry).
//!
//! Admit resolves the event's instance to a Node from the cache and sends ONE merge patch
//! (taint, label, cordon and the intent annotation, see [`super::intent`]), re-reading the Node
//! only when the API server answers 409 Conflict; the Kubernetes Event follows in the
//! background. Nothing in the message path waits for pods.
//!
//! RBAC this module needs: `nodes` get, list, watch, patch; `pods` list; `pods/eviction` create;
//! `events.k8s.io` `events` create, patch (and `pods` delete with `force_after_deadline`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Reporter;
use tokio::sync::{mpsc, watch};

use super::budget::Clients;
use super::cache::{self, NodeCache};
use super::capacity::Capacity;
use super::config::{ClusterConfig, KarpenterMode, ShelterConfig};
use super::drain::Drainer;
use super::events::{Events, node_ref};
use super::failback::{Failback, Notices};
use super::intent::{self, NodeView};
use super::lifecycle::{Lifecycle, LifecycleConfig};
use super::plan::{self, Actions};
use super::reconcile::Reconciler;
use super::recovery::Recovery;
use super::replacement::{Replacement, Tracker};
use super::stats::PoolStats;
use super::{Applied, ClusterError, Emitted};
use crate::event::{Event, Kind};
use crate::metrics::Metrics;

/// The taint Karpenter's termination controller puts on a Node it is disrupting.
pub(crate) const KARPENTER_DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";
/// Field manager of every write.
pub(crate) const MANAGER: &str = "eviction-router";
/// Attempts of a write whose resourceVersion precondition fails (409 Conflict).
pub(crate) const CONFLICT_ATTEMPTS: usize = 5;
/// How long the message path waits for the first Node list.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// What the message path and the reconciler share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) clients: Clients,
    pub(crate) cache: Arc<NodeCache>,
    pub(crate) events: Events,
    pub(crate) drainer: Drainer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lead: SignedDuration,
    pub(crate) actions: Actions,
    /// Make before break, when any kind has it.
    pub(crate) capacity: Option<Capacity>,
    pub(crate) shelter: ShelterConfig,
    /// Events the cluster side makes itself, for the stream.
    pub(crate) emitted: mpsc::UnboundedSender<Emitted>,
    /// Evicted pods waited for until they run again.
    pub(crate) recovery: Arc<Recovery>,
    /// The last notice of each pool (failback's dwell).
    pub(crate) notices: Notices,
    /// Replacements waited for (the drain records its end there).
    pub(crate) tracker: Arc<Mutex<Tracker>>,
    /// `cluster.karpenter`, and whether (in `auto`) Karpenter was seen handling interruptions.
    pub(crate) karpenter: KarpenterMode,
    pub(crate) karpenter_acts: std::sync::atomic::AtomicBool,
    /// The cloud's lifecycle API, when ASG lifecycle actions are completed.
    pub(crate) lifecycle: Option<Arc<dyn Lifecycle>>,
    /// How often a drain holding a lifecycle action sends a heartbeat.
    pub(crate) heartbeat_every: Option<Duration>,
}

/// The lifecycle API `config` asks for: the AWS one when built with the `aws` feature.
fn lifecycle_api(config: &LifecycleConfig) -> Option<Arc<dyn Lifecycle>> {
    if !config.complete {
        return None;
    }
    #[cfg(feature = "aws")]
    {
        Some(Arc::new(
            crate::providers::aws::lifecycle::AsgLifecycle::new(config.region.clone()),
        ))
    }
    #[cfg(not(feature = "aws"))]
    {
        None
    }
}

impl Ctx {
    pub(crate) fn nodes(&self, client: &kube::Client) -> Api<Node> {
        Api::all(client.clone())
    }

    /// Records an Event in the background: Events never hold a message or a drain.
    pub(crate) fn record_later(
        &self,
        view: &NodeView,
        event: &Event,
        reason: &'static str,
        event_type: plan::EventType,
        note: Option<String>,
    ) {
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        let node = node_ref(&view.name, view.uid.as_deref());
        let event = event.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = events.record(&node, &event, reason, event_type, note).await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics.action("event", outcome, started.elapsed());
            if let Err(e) = result {
                tracing::warn!(node = node.name.as_deref().unwrap_or(""), reason, error = %e, "Cannot record a Kubernetes Event.");
            }
        });
    }

    /// Whether the Node `view` is left to Karpenter: only record, stream and measure.
    pub(crate) fn observes(&self, view: &NodeView) -> bool {
        view.placement.karpenter
            && match self.karpenter {
                KarpenterMode::Act => false,
                KarpenterMode::Observe => true,
                KarpenterMode::Auto => self
                    .karpenter_acts
                    .load(std::sync::atomic::Ordering::Relaxed),
            }
    }

    /// In `auto`, notices that Karpenter acts on an interruption it was told of too: its
    /// `karpenter.sh/disrupted` taint, or the Node being deleted, within a minute of the
    /// notice. From then on Karpenter Nodes are observed, and the operator is told once.
    pub(crate) fn watch_karpenter(&self, view: &NodeView) {
        use std::sync::atomic::Ordering;
        if self.karpenter != KarpenterMode::Auto
            || !view.placement.karpenter
            || self.karpenter_acts.load(Ordering::Relaxed)
        {
            return;
        }
        let acting = view.deleting
            || view
                .taints
                .iter()
                .any(|t| t.key == KARPENTER_DISRUPTED_TAINT);
        if !acting {
            return;
        }
        let now = Timestamp::now();
        let recent = view.intents().into_iter().find(|(k, i)| {
            matches!(k, Kind::Interruption | Kind::Termination)
                && i.admitted
                && now.duration_since(i.event.data.occurred_at) <= SignedDuration::from_mins(1)
        });
        let Some((_, intent)) = recent else {
            return;
        };
        if self.karpenter_acts.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(node = %view.name, id = %intent.event.id, "Karpenter acts on interruptions itself (its interruption queue is on): from now on Karpenter Nodes are observed, not tainted, cordoned or drained (cluster.karpenter: auto).");
        self.record_later(
            view,
            &intent.event,
            "KarpenterHandlesInterruptions",
            plan::EventType::Normal,
            Some("Karpenter acts on interruptions itself: eviction-router now only observes Karpenter Nodes (cluster.karpenter: auto)".into()),
        );
    }

    /// Remembers a notice of capacity at risk in the Node's pool at `at` (failback waits for
    /// quiet, and stops at a new one).
    pub(crate) fn saw_notice(&self, view: &NodeView, event: &Event, at: Timestamp) {
        if matches!(
            event.data.kind,
            Kind::Interruption | Kind::Termination | Kind::RebalanceRecommendation
        ) && let Some(pool) = view.placement.pool_name()
        {
            self.notices.saw(pool, at);
        }
    }

    /// Observes that the notice `event` on the Node `view` reached `phase` now.
    pub(crate) fn phase(&self, phase: &'static str, view: &NodeView, event: &Event) {
        let took: Duration = Timestamp::now()
            .duration_since(event.data.occurred_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let pool = view.placement.pool_name().unwrap_or("none");
        self.metrics.recovery_phase(
            phase,
            event.data.provider,
            event.data.kind.as_str(),
            pool,
            took,
        );
    }

    /// Sends `patch` to the Node and takes the answer into the cache. A 409 Conflict (the
    /// resourceVersion precondition) re-reads the Node into the cache and is returned as such.
    pub(crate) async fn patch_node(
        &self,
        client: &kube::Client,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), PatchError> {
        let nodes = self.nodes(client);
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match nodes.patch(name, &params, &Patch::Merge(patch)).await {
            Ok(node) => {
                self.cache.observe(&node);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                match nodes.get(name).await {
                    Ok(node) => self.cache.observe(&node),
                    Err(e) => {
                        return Err(PatchError::Failed(ClusterError::api("read the Node", e)));
                    }
                }
                Err(PatchError::Conflict)
            }
            Err(e) => Err(PatchError::Failed(ClusterError::api("patch the Node", e))),
        }
    }
}

/// Why a Node patch did not land.
#[derive(Debug)]
pub(crate) enum PatchError {
    /// The Node changed since it was read; the cache holds it as it is now.
    Conflict,
    /// Anything else.
    Failed(ClusterError),
}

/// The executor.
pub struct KubeCluster {
    ctx: Arc<Ctx>,
    tracker: Arc<Mutex<Tracker>>,
    replacements: Mutex<Option<mpsc::UnboundedReceiver<Emitted>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The pool statistics, when kept.
    pool_stats: Option<Arc<PoolStats>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubeCluster {
    /// Starts the Node watch, the reconciler (acting while `active` is true) and replacement
    /// expiry.
    pub fn start(
        clients: Clients,
        config: &ClusterConfig,
        metrics: Arc<Metrics>,
        active: watch::Receiver<bool>,
    ) -> KubeCluster {
        let cache = Arc::new(NodeCache::with_pool_labels(config.pool_labels.clone()));
        let tracker = Arc::new(Mutex::new(Tracker::new(
            config.pool_labels.clone(),
            config.replacement_timeout(),
        )));
        let (emitted, replacements) = mpsc::unbounded_channel();
        let (found, mut found_rx) = mpsc::unbounded_channel::<Replacement>();
        let (changed, changes) = mpsc::unbounded_channel();
        let reporter = Reporter {
            controller: "eviction-router".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recovery = Arc::new(Recovery::new(
            clients.drain.clone(),
            cache.clone(),
            metrics.clone(),
            config.replacement_timeout(),
        ));
        let ctx = Arc::new(Ctx {
            events: Events::new(clients.events.clone(), reporter),
            drainer: Drainer {
                client: clients.drain.clone(),
                margin: config.drain_margin(),
                timeout: config.drain_timeout(),
                force_after_deadline: config.force_after_deadline,
                in_flight: Arc::new(tokio::sync::Semaphore::new(super::drain::IN_FLIGHT)),
            },
            clients,
            cache: cache.clone(),
            metrics: metrics.clone(),
            lead: config.lead(),
            actions: config.actions,
            capacity: (!config.make_before_break.kinds.is_empty())
                .then(|| Capacity::new(config.make_before_break.clone(), config.namespace())),
            shelter: config.shelter.clone(),
            emitted: emitted.clone(),
            recovery,
            notices: Notices::new(Timestamp::now()),
            tracker: tracker.clone(),
            karpenter: config.karpenter,
            karpenter_acts: std::sync::atomic::AtomicBool::new(false),
            lifecycle: lifecycle_api(&config.asg_lifecycle),
            heartbeat_every: config.asg_lifecycle.heartbeat_interval(),
        });
        let feeds = cache::Feeds {
            changed,
            tracker: tracker.clone(),
            found,
        };
        let mut tasks = vec![
            tokio::spawn(cache::run(ctx.clients.admit.clone(), cache, feeds)),
            tokio::spawn(Reconciler::new(ctx.clone(), changes, active.clone()).run()),
            tokio::spawn(expire_replacements(tracker.clone(), metrics)),
            // Replacements join the other events the cluster side makes.
            tokio::spawn(async move {
                while let Some(r) = found_rx.recv().await {
                    if emitted.send(Emitted::Replacement(r)).is_err() {
                        break;
                    }
                }
            }),
        ];

        if config.failback.enabled {
            let failback = Arc::new(Failback::new(config.failback.clone(), config.namespace()));
            tasks.push(tokio::spawn(failback.run(ctx.clone(), active.clone())));
        }
        let pool_stats = config.pool_stats.enabled.then(|| {
            Arc::new(PoolStats::new(
                config.pool_stats.clone(),
                config.namespace(),
            ))
        });
        if let Some(stats) = &pool_stats {
            tasks.push(tokio::spawn(stats.clone().run(ctx.clone(), active.clone())));
        }
        KubeCluster {
            ctx,
            tracker,
            replacements: Mutex::new(Some(replacements)),
            tasks,
            pool_stats,
        }
    }

    /// Counts a published event in the pool statistics.
    pub fn observe(&self, event: &Event) {
        if let Some(stats) = &self.pool_stats {
            stats.observe(event);
        }
    }

    /// The events the cluster side makes (replacements found, pools at risk), once: the service
    /// publishes them.
    pub fn take_replacements(&self) -> Option<mpsc::UnboundedReceiver<Emitted>> {
        self.replacements.lock().ok().and_then(|mut r| r.take())
    }

    /// Whether the Node cache has completed its first list.
    pub fn synced(&self) -> bool {
        self.ctx.cache.synced()
    }

    /// Waits until the Node cache has completed its first list, at most `limit`.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        self.ctx.cache.wait_synced(limit).await
    }

    /// Marks a delivery on its way to an admit (see [`super::budget::Admitting`]).
    pub fn admitting(&self) -> super::budget::Admitting {
        self.ctx.clients.budget.admitting()
    }

    /// How many Nodes are cached.
    pub fn nodes_cached(&self) -> usize {
        self.ctx.cache.len()
    }

    /// The message path: resolves the Node and admits the event with one patch.
    pub async fn apply(&self, event: &Event) -> Result<Applied, ClusterError> {
        let ctx = &self.ctx;
        if !ctx.cache.synced() && !ctx.cache.wait_synced(SYNC_WAIT).await {
            return Err(ClusterError::NotSynced);
        }
        let Some(mut view) = ctx.cache.resolve(&event.data) else {
            return Ok(Applied::Foreign);
        };
        let steps = plan::plan(&event.data, ctx.lead, &ctx.actions);
        let started = Instant::now();
        if ctx.observes(&view) {
            // Karpenter taints, cordons and drains its own Nodes: record, stream and measure.
            let steps: Vec<plan::Step> = steps
                .into_iter()
                .filter(|s| matches!(s, plan::Step::RecordEvent { .. }))
                .collect();
            for step in &steps {
                if let plan::Step::RecordEvent { reason, event_type } = step {
                    ctx.record_later(&view, event, reason, *event_type, None);
                }
            }
            ctx.saw_notice(&view, event, Timestamp::now());
            self.expect_replacement(&view, event);
            ctx.metrics.action("observe", "ok", started.elapsed());
            tracing::info!(node = %view.name, id = %event.id, kind = %event.data.kind, "A Karpenter Node: Karpenter handles it; observing only.");
            return Ok(Applied::Acted {
                node: view.name.clone(),
                steps,
                place: view.placement.details(),
            });
        }
        for _ in 0..CONFLICT_ATTEMPTS {
            let admission = intent::admit(&view, event, &steps, Timestamp::now());
            if admission.duplicate {
                tracing::info!(node = %view.name, id = %event.id, "The Node already holds this event; nothing to do.");
                return Ok(Applied::Acted {
                    node: view.name.clone(),
                    steps: Vec::new(),
                    place: view.placement.details(),
                });
            }
            if let Some(patch) = &admission.patch {
                match ctx.patch_node(&ctx.clients.admit, &view.name, patch).await {
                    Ok(()) => {}
                    Err(PatchError::Conflict) => {
                        view = ctx.cache.get(&view.name).ok_or(ClusterError::NodeGone)?;
                        continue;
                    }
                    Err(PatchError::Failed(e)) => {
                        ctx.metrics.action("admit", "error", started.elapsed());
                        return Err(e);
                    }
                }
            }
            ctx.metrics.action("admit", "ok", started.elapsed());
            // When it arrived: a late notice is news now.
            ctx.saw_notice(&view, event, Timestamp::now());
            if admission.patch.is_some()
                && steps
                    .iter()
                    .any(|s| matches!(s, plan::Step::Cordon { at: None }))
            {
                ctx.phase("cordoned", &view, event);
            }
            tracing::info!(node = %view.name, id = %event.id, kind = %event.data.kind, steps = %describe(&steps), "Admitted an event on its Node.");
            for (reason, event_type) in admission.record {
                ctx.record_later(&view, event, reason, event_type, None);
            }
            self.expect_replacement(&view, event);
            return Ok(Applied::Acted {
                node: view.name.clone(),
                steps,
                place: view.placement.details(),
            });
        }
        ctx.metrics.action("admit", "error", started.elapsed());
        Err(ClusterError::Conflict {
            attempts: CONFLICT_ATTEMPTS,
        })
    }
}

impl KubeCluster {
    /// Waits for the replacement of the Node `view` lost to `event`, if it is such a loss.
    fn expect_replacement(&self, view: &NodeView, event: &Event) {
        if matches!(event.data.kind, Kind::Interruption | Kind::Termination)
            && let Ok(mut tracker) = self.tracker.lock()
        {
            if tracker.expect(&view.name, event, Timestamp::now()) {
                tracing::info!(node = %view.name, id = %event.id, "Waiting for the Node's replacement.");
            }
            self.ctx
                .metrics
                .replacements_pending(tracker.pending() as i64);
        }
    }
}

fn describe(steps: &[plan::Step]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gives up on replacements past their timeout, once a second, until the process ends.
async fn expire_replacements(tracker: Arc<Mutex<Tracker>>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Ok(mut tracker) = tracker.lock() {
            for expired in tracker.expire(Timestamp::now()) {
                tracing::warn!(node = %expired.node, pool = %expired.pool, id = %expired.event.id, "No replacement became Ready in time; giving up.");
                metrics.replacement_timeout();
            }
            metrics.replacements_pending(tracker.pending() as i64);
        }
    }
}
