//! The reconciler: everything that takes longer than a message may wait, worked from the
//! state on each Node ([`super::intent`]) in the kube-runtime `Controller` manner — a Node that
//! changes, a timer that fires, or a task that ends puts the Node's name on the queue; the
//! reconciler reads the Node from the cache, asks [`intent::next`] what is owed, and runs at most
//! one task per Node: admit intents that fell due (scheduled maintenance), or drain.
//!
//! A cancel is the message path removing an intent: the Node changes, [`intent::next`] owes
//! nothing, and a drain still running for it is stopped. Only the leader reconciles; losing
//! the Lease stops every task, and the next leader starts from the Nodes as they are.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

use super::intent::{self, DrainState, Work};
use super::kubernetes::{CONFLICT_ATTEMPTS, Ctx, PatchError};
use super::lifecycle::{Answer, LifecycleAction, LifecycleState};
use super::plan::EventType;
use super::shelter::{self, AtRisk};
use super::{ClusterError, Emitted, capacity};
use crate::event::Event;

/// The longest wait before a failed task is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the leader sweeps placeholders that are no longer needed.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A shelter waits this long before writing, so a pool reclaimed in a burst is written once
/// its first notices are admitted, not once per notice.
const SHELTER_COALESCE: Duration = Duration::from_millis(500);

/// A Spot pool: (instance type, zone).
type PoolKey = (String, String);

/// Which task runs for a Node, so a changed Node that owes the same work keeps its task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Admit,
    Drain(String),
    Lifecycle(String),
}

#[derive(Debug)]
struct Running {
    key: Key,
    abort: AbortHandle,
    id: tokio::task::Id,
}

/// What a task hands back: the Node's name and how its step went.
type Done = (String, Result<(), ClusterError>);

/// The reconciler's state; [`Reconciler::run`] drives it.
#[derive(Debug)]
pub(crate) struct Reconciler {
    ctx: Arc<Ctx>,
    changes: mpsc::UnboundedReceiver<String>,
    active: watch::Receiver<bool>,
    running: HashMap<String, Running>,
    tasks: JoinSet<Done>,
    timers: BinaryHeap<Reverse<(Timestamp, String)>>,
    failures: HashMap<String, u32>,
    /// Shelters asked for, by pool: until when (leader-local; a new leader asks again from the
    /// intents it finds).
    sheltered: HashMap<PoolKey, Timestamp>,
    shelters: JoinSet<()>,
}

impl Reconciler {
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        changes: mpsc::UnboundedReceiver<String>,
        active: watch::Receiver<bool>,
    ) -> Reconciler {
        Reconciler {
            ctx,
            changes,
            active,
            running: HashMap::new(),
            tasks: JoinSet::new(),
            timers: BinaryHeap::new(),
            failures: HashMap::new(),
            sheltered: HashMap::new(),
            shelters: JoinSet::new(),
        }
    }

    /// Runs until the Node watch ends.
    pub(crate) async fn run(mut self) {
        // A dropped sender means the value never changes again (no election: always active).
        let mut election = true;
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if !*self.active.borrow_and_update() {
                self.stand_by();
                // Keep draining the change queue so it does not grow while standing by.
                loop {
                    tokio::select! {
                        changed = self.active.changed() => {
                            if changed.is_err() {
                                // Standing by for good: nothing will make this replica act.
                                return;
                            }
                            if *self.active.borrow_and_update() {
                                break;
                            }
                        }
                        name = self.changes.recv() => if name.is_none() { return },
                    }
                }
                tracing::info!("Leading: reconciling every Node from its annotations.");
                for name in self.ctx.cache.names() {
                    self.evaluate(&name);
                }
                continue;
            }
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let sleep = async {
                match next_timer {
                    Some(at) => {
                        let wait = at.duration_since(Timestamp::now());
                        tokio::time::sleep(wait.try_into().unwrap_or(Duration::ZERO)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.active.changed(), if election => if changed.is_err() { election = false },
                name = self.changes.recv() => match name {
                    Some(name) => self.evaluate(&name),
                    None => return,
                },
                Some(done) = self.tasks.join_next_with_id() => self.finished(done),
                Some(_) = self.shelters.join_next() => {}
                _ = sweep.tick() => {
                    self.count_pools_at_risk();
                    // One sweep at a time; a slow API server makes the next one wait.
                    if sweeping.as_ref().is_none_or(|h| h.is_finished()) {
                        let ctx = self.ctx.clone();
                        sweeping = Some(tokio::spawn(async move { capacity::sweep(&ctx).await }));
                    }
                }
                () = sleep => {
                    let now = Timestamp::now();
                    while let Some(Reverse((at, _))) = self.timers.peek() {
                        if *at > now {
                            break;
                        }
                        if let Some(Reverse((_, name))) = self.timers.pop() {
                            self.evaluate(&name);
                        }
                    }
                }
            }
        }
    }

    /// Not the leader: stop every task and forget every timer; the Nodes keep the state.
    fn stand_by(&mut self) {
        if !self.running.is_empty() {
            tracing::info!(
                tasks = self.running.len(),
                "Standing by: stopping the reconciler's tasks; the next leader resumes them."
            );
        }
        for (_, running) in self.running.drain() {
            running.abort.abort();
        }
        self.shelters.abort_all();
        self.sheltered.clear();
        self.timers.clear();
        self.failures.clear();
    }

    /// Sets the gauge of sheltered pools, forgetting the windows that ended.
    fn count_pools_at_risk(&mut self) {
        let now = Timestamp::now();
        self.sheltered.retain(|_, until| *until > now);
        self.ctx.metrics.pools_at_risk(self.sheltered.len() as i64);
    }

    /// Shelters the Spot siblings of the interrupted Node `view`, when its intent asks for it
    /// and no shelter of that pool already lasts about as long.
    fn shelter(&mut self, view: &intent::NodeView) {
        let config = &self.ctx.shelter;
        if !config.enabled {
            return;
        }
        let now = Timestamp::now();
        let Some(intent) = view.intents().remove(&crate::event::Kind::Interruption) else {
            return;
        };
        if !intent.admitted {
            return;
        }
        let window = config.window();
        let Some((key, until)) =
            shelter::wanted(view, &intent.event, window, &config.exclude_pools, now)
        else {
            return;
        };
        let first = match self.sheltered.get(&key) {
            Some(current) if until.duration_since(*current) <= window / 5 => return,
            Some(_) => false,
            None => true,
        };
        self.sheltered.insert(key.clone(), until);
        self.ctx.metrics.pools_at_risk(self.sheltered.len() as i64);
        let ctx = self.ctx.clone();
        let at_risk = AtRisk {
            until,
            because: intent.event.id.clone(),
            node: view.name.clone(),
        };
        let event = intent.event;
        self.shelters.spawn(async move {
            tokio::time::sleep(SHELTER_COALESCE).await;
            let config = &ctx.shelter;
            match shelter::run(&ctx, &key, &at_risk, config.window(), &config.exclude_pools).await {
                Ok(n) => {
                    ctx.metrics.nodes_sheltered(n as u64);
                    if n > 0 {
                        tracing::info!(instance_type = %key.0, zone = %key.1, nodes = n, until = %until, because = %at_risk.because, "Sheltered the Spot siblings of an interrupted Node.");
                    }
                    if first && n > 0 {
                        let _ = ctx.emitted.send(Emitted::PoolAtRisk(shelter::pool_at_risk(&event, &key, until, n)));
                    }
                }
                Err(e) => {
                    tracing::warn!(instance_type = %key.0, zone = %key.1, error = %e, "Cannot shelter the siblings of an interrupted Node; the next change of it tries again.")
                }
            }
        });
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        let (id, name, result) = match done {
            Ok((id, (name, result))) => (id, name, result),
            // Aborted (a cancel or a newer task for the Node) or panicked.
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "A reconciler task panicked.");
                }
                let id = e.id();
                let Some(name) = self
                    .running
                    .iter()
                    .find(|(_, r)| r.id == id)
                    .map(|(n, _)| n.clone())
                else {
                    return;
                };
                self.running.remove(&name);
                self.retry_later(&name);
                return;
            }
        };
        if self.running.get(&name).is_some_and(|r| r.id == id) {
            self.running.remove(&name);
        }
        match result {
            Ok(()) => {
                self.failures.remove(&name);
                self.evaluate(&name);
            }
            Err(e) => {
                tracing::warn!(node = %name, kind = e.kind(), error = %e, "A reconciler step failed; retrying.");
                self.retry_later(&name);
            }
        }
    }

    fn retry_later(&mut self, name: &str) {
        let n = self.failures.entry(name.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let wait = Duration::from_millis(500)
            .saturating_mul(1 << (*n).min(6))
            .min(MAX_BACKOFF);
        let at = Timestamp::now() + jiff::SignedDuration::try_from(wait).unwrap_or_default();
        self.timers.push(Reverse((at, name.to_owned())));
    }

    /// Looks at one Node and starts, keeps or stops its task.
    fn evaluate(&mut self, name: &str) {
        let Some(view) = self.ctx.cache.get(name) else {
            self.stop(name, "the Node is gone");
            return;
        };
        // Written by hand or by another version: nothing is done for them, and the operator
        // is told each time the Node changes.
        for annotation in view.unreadable() {
            tracing::warn!(node = %name, annotation, "An intent annotation cannot be read; it is ignored.");
        }
        // Intents found on Nodes (a new leader) count from when they occurred.
        for intent in view.intents().values() {
            self.ctx
                .saw_notice(&view, &intent.event, intent.event.data.occurred_at);
        }
        self.ctx.watch_karpenter(&view);
        self.shelter(&view);
        let now = Timestamp::now();
        let plan =
            |e: &crate::event::Event| super::plan::plan(&e.data, self.ctx.lead, &self.ctx.actions);
        let work = match intent::migrate(&view, plan, now) {
            Some(patch) => Work::Admit(patch),
            None => intent::next_owing(&view, now, self.ctx.lifecycle.is_some()),
        };
        // A task whose own write made the Node owe nothing is finishing (its Events and
        // metrics follow the write): let it end. Any other task for a Node that owes nothing
        // lost its intent (a cancel) and is stopped.
        let finishing = self.running.get(name).is_some_and(|r| match &r.key {
            Key::Admit => true,
            Key::Drain(id) => view.drain_state().is_some_and(|d| &d.for_event == id),
            Key::Lifecycle(id) => view.lifecycle_state().is_some_and(|l| &l.for_event == id),
        });
        let key = match &work {
            Work::Idle | Work::Wait(_) if finishing => {
                if let Work::Wait(at) = work {
                    self.timers.push(Reverse((at, name.to_owned())));
                }
                return;
            }
            Work::Idle => {
                self.stop(name, "nothing is owed any more");
                return;
            }
            Work::Wait(at) => {
                self.stop(name, "nothing is due yet");
                self.timers.push(Reverse((*at, name.to_owned())));
                return;
            }
            Work::Admit(_) => Key::Admit,
            Work::Drain { event, .. } => Key::Drain(event.id.clone()),
            Work::CompleteLifecycle { event, .. } => Key::Lifecycle(event.id.clone()),
        };
        if self.running.get(name).is_some_and(|r| r.key == key) {
            return;
        }
        self.stop(name, "other work is owed");
        let ctx = self.ctx.clone();
        let node = name.to_owned();
        let abort = self.tasks.spawn(async move {
            let result = match work {
                Work::Admit(patch) => admit_due(&ctx, &node, &patch).await,
                Work::Drain { event, deadline } => {
                    // Heartbeats keep an ASG lifecycle action alive while the drain runs; they
                    // stop with it (done, stopped by a cancel, or by losing the Lease).
                    let _beating = heartbeats(&ctx, &node, &event);
                    drain(&ctx, &node, &event, deadline).await
                }
                Work::CompleteLifecycle { event, action } => {
                    complete_lifecycle(&ctx, &node, &event, &action).await
                }
                Work::Idle | Work::Wait(_) => Ok(()),
            };
            (node, result)
        });
        let id = abort.id();
        self.running
            .insert(name.to_owned(), Running { key, abort, id });
    }

    fn stop(&mut self, name: &str, why: &str) {
        if let Some(running) = self.running.remove(name) {
            tracing::info!(node = %name, why, "Stopped the Node's reconciler task.");
            running.abort.abort();
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `RecordLifecycleActionHeartbeat` every `heartbeat_every` for `event`'s lifecycle action
/// (if it has one) until the returned guard is dropped, or the action is over.
fn heartbeats(ctx: &Arc<Ctx>, node: &str, event: &Event) -> Option<AbortOnDrop> {
    let api = ctx.lifecycle.clone()?;
    let every = ctx.heartbeat_every?;
    let action = LifecycleAction::of(event)?;
    let ctx = ctx.clone();
    let node = node.to_owned();
    Some(AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match api.heartbeat(&action).await {
                Ok(answer) => {
                    ctx.metrics
                        .lifecycle_answer("heartbeat", answer, &node, &action);
                    if answer == Answer::NoActiveAction {
                        return;
                    }
                }
                // The next tick tries again; the completion is what matters.
                Err(e) => ctx.metrics.lifecycle_failed("heartbeat", &e, &node),
            }
        }
    })))
}

/// The Node's drain ended: complete the ASG lifecycle action with `CONTINUE`, then record it
/// on the Node so that nothing completes it twice. A call that lands and a record that does not
/// (a crash in between) is harmless: the next try hears that no action is active, and records
/// that.
async fn complete_lifecycle(
    ctx: &Ctx,
    node: &str,
    event: &Event,
    action: &LifecycleAction,
) -> Result<(), ClusterError> {
    let Some(api) = &ctx.lifecycle else {
        return Ok(());
    };
    let started = Instant::now();
    let answer = match api.complete(action).await {
        Ok(answer) => answer,
        Err(e) => {
            ctx.metrics.lifecycle_failed("complete", &e, node);
            ctx.metrics
                .action("complete_lifecycle", "error", started.elapsed());
            return Err(ClusterError::Lifecycle(e));
        }
    };
    ctx.metrics
        .lifecycle_answer("complete", answer, node, action);
    let state = LifecycleState::new(&event.id, answer, Timestamp::now());
    match ctx
        .patch_node(&ctx.clients.drain, node, &state.patch())
        .await
    {
        // An annotation alone carries no precondition; a conflict only re-read the Node.
        Ok(()) | Err(PatchError::Conflict) => {
            ctx.metrics
                .action("complete_lifecycle", answer.as_str(), started.elapsed());
            Ok(())
        }
        Err(PatchError::Failed(e)) => {
            ctx.metrics
                .action("complete_lifecycle", "error", started.elapsed());
            Err(e)
        }
    }
}

/// Intents fell due (scheduled maintenance): write their taint, label and cordon.
async fn admit_due(ctx: &Ctx, node: &str, patch: &serde_json::Value) -> Result<(), ClusterError> {
    let started = Instant::now();
    match ctx.patch_node(&ctx.clients.admit, node, patch).await {
        // A conflict re-read the Node into the cache; the reconciler looks again.
        Ok(()) | Err(PatchError::Conflict) => {
            ctx.metrics.action("admit", "ok", started.elapsed());
            tracing::info!(node = %node, "Scheduled steps fell due; the Node is tainted and cordoned.");
            Ok(())
        }
        Err(PatchError::Failed(e)) => {
            ctx.metrics.action("admit", "error", started.elapsed());
            Err(e)
        }
    }
}

/// Drains the Node for `event`'s intent and records how it ended on the Node.
async fn drain(
    ctx: &Ctx,
    node: &str,
    event: &Event,
    deadline: Option<Timestamp>,
) -> Result<(), ClusterError> {
    let started = Instant::now();
    let now = Timestamp::now();
    let stop = ctx.drainer.stop_at(deadline, now);
    tracing::info!(node = %node, id = %event.id, until = %stop, "Draining the Node.");
    let pods = match ctx.drainer.list(node).await {
        Ok(pods) => pods,
        Err(e) => {
            ctx.metrics.action("drain", "error", started.elapsed());
            return Err(e);
        }
    };
    // Make before break: room for the pods first, waited for until the latest start that still
    // fits every grace period before the deadline.
    if !pods.is_empty()
        && let Some(view) = ctx.cache.get(node)
        && let Some(mbb) = &ctx.capacity
    {
        let evict_by = match deadline {
            Some(_) => ctx.drainer.latest_start(&pods, stop, now),
            None => {
                now + jiff::SignedDuration::from_secs(
                    i64::try_from(mbb.config.max_wait_seconds).unwrap_or(i64::MAX),
                )
            }
        };
        capacity::before_evicting(ctx, &view, event, &pods, evict_by).await;
    }
    let drained = match ctx
        .drainer
        .evict_all(node, pods, stop, deadline.is_some(), &ctx.metrics)
        .await
    {
        Ok(drained) => drained,
        Err(e) => {
            ctx.metrics.action("drain", "error", started.elapsed());
            return Err(e);
        }
    };
    let state = DrainState::new(&event.id, Timestamp::now(), drained.left.clone());
    let mut written = false;
    for _ in 0..CONFLICT_ATTEMPTS {
        // An annotation alone: no precondition, so a conflict cannot happen; the loop is for
        // the same code path as every other write.
        match ctx
            .patch_node(&ctx.clients.drain, node, &state.patch())
            .await
        {
            Ok(()) => {
                written = true;
                break;
            }
            Err(PatchError::Conflict) => continue,
            Err(PatchError::Failed(e)) => {
                ctx.metrics.action("drain", "error", started.elapsed());
                return Err(e);
            }
        }
    }
    let view = ctx.cache.get(node).unwrap_or_default();
    ctx.phase("drained", &view, event);
    if let Ok(mut tracker) = ctx.tracker.lock() {
        tracker.drained(node, Timestamp::now());
    }
    ctx.recovery.evicted(
        node,
        view.placement.pool_name().unwrap_or("none"),
        event,
        &drained.owners,
        Timestamp::now(),
    );
    // A Warning Event naming pods, when there are any.
    let warn = |reason: &'static str, what: &str, pods: &[String]| {
        if !pods.is_empty() {
            let note = format!("{what}: {}", pods.join(", "));
            ctx.record_later(&view, event, reason, EventType::Warning, Some(note));
        }
    };
    warn(
        "GracePeriodShortened",
        "Grace periods cut to fit the deadline for",
        &drained.shortened,
    );
    warn(
        "DrainForced",
        "Pods deleted past the deadline (force_after_deadline)",
        &drained.forced,
    );
    if drained.left.is_empty() {
        ctx.metrics.action("drain", "ok", started.elapsed());
        tracing::info!(node = %node, id = %event.id, evicted = drained.evicted, "Drained the Node.");
    } else {
        ctx.metrics.action("drain", "incomplete", started.elapsed());
        ctx.metrics.drain_deadline_missed();
        tracing::warn!(node = %node, id = %event.id, evicted = drained.evicted, left = %drained.left.join(", "), "The drain did not finish before the deadline.");
        warn(
            "DrainIncomplete",
            "Pods not evicted before the deadline",
            &drained.left,
        );
    }
    if written {
        Ok(())
    } else {
        Err(ClusterError::Conflict {
            attempts: CONFLICT_ATTEMPTS,
        })
    }
}
