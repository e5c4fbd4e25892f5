//! The state the router keeps on a Node, and every decision taken from it. Pure: a [`NodeView`]
//! and the clock in, a merge patch (or a piece of work) out.
//!
//! | annotation | value |
//! |---|---|
//! | `eviction-router/intent.<kind>` | an [`Intent`]: the normalised event, what is planned, when it is due, whether it is admitted |
//! | `eviction-router/drain` | a [`DrainState`]: which intent the last drain served, and how it ended |
//! | `eviction-router/cordoned` | `"true"` when the router cordoned a schedulable Node (only then does an undo uncordon it) |
//!
//! The message path *admits* ([`admit`]): one merge patch that writes the taint, the label, the
//! cordon and the intent together, and carries the Node's `metadata.resourceVersion` whenever it
//! changes `spec` — `spec.taints` is an atomic list, so the whole list is written, and the
//! precondition makes the API server answer 409 Conflict instead of dropping another
//! controller's taint. Everything slower is [`next`]'s answer to the reconciler.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Taint};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::lifecycle::{LIFECYCLE_ANNOTATION, LifecycleAction, LifecycleState};
use super::placement::Placement;
use super::plan::{DRAINING_LABEL, EventType, KEY_PREFIX, Step};
use crate::event::{Event, Kind};

/// Prefix of the per-kind intent annotations.
pub const INTENT_PREFIX: &str = "eviction-router/intent.";
/// The drain's progress.
pub const DRAIN_ANNOTATION: &str = "eviction-router/drain";
/// Set when the router cordoned a Node that was schedulable.
pub const CORDONED_ANNOTATION: &str = "eviction-router/cordoned";
/// How many pod names a [`DrainState`] keeps.
const MAX_LEFT: usize = 20;

/// The intent annotation key of a kind.
pub fn intent_key(kind: Kind) -> String {
    format!("{INTENT_PREFIX}{}", kind.as_str())
}

/// What the router means to do to a Node for one event, kept on the Node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The event, as normalised.
    pub event: Event,
    /// When the taint, label, cordon and drain are due; `None` is at once.
    pub due: Option<Timestamp>,
    /// Whether the due taint, label and cordon are written.
    pub admitted: bool,
    /// The taint to add (`key`, `effect`), if any.
    pub taint: Option<(String, String)>,
    /// Whether the draining label is set.
    pub label: bool,
    /// Whether the Node is cordoned.
    pub cordon: bool,
    /// Whether the Node is drained.
    pub drain: bool,
    /// When the capacity is expected to go.
    pub deadline: Option<Timestamp>,
}

/// How the last drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainEnd {
    /// Every evictable pod was evicted (or was gone).
    Done,
    /// Pods were left at `deadline − margin`.
    Incomplete,
}

/// The drain's progress, kept on the Node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainState {
    /// The id of the event whose intent the drain served.
    #[serde(rename = "for")]
    pub for_event: String,
    /// How it ended.
    pub state: DrainEnd,
    /// When.
    pub at: Timestamp,
    /// How many pods were left.
    pub left: usize,
    /// Some of them (`namespace/name`).
    pub pods: Vec<String>,
}

impl DrainState {
    /// A drain for `for_event` that ended at `at` with `left` pods not evicted.
    pub fn new(for_event: &str, at: Timestamp, mut left: Vec<String>) -> DrainState {
        let n = left.len();
        left.truncate(MAX_LEFT);
        DrainState {
            for_event: for_event.to_owned(),
            state: if n == 0 {
                DrainEnd::Done
            } else {
                DrainEnd::Incomplete
            },
            at,
            left: n,
            pods: left,
        }
    }

    /// The merge patch that records it.
    pub fn patch(&self) -> Value {
        let value = serde_json::to_string(self).unwrap_or_default();
        json!({ "metadata": { "annotations": { DRAIN_ANNOTATION: value } } })
    }
}

/// What the router keeps of a Node: only what its decisions read, so thousands of Nodes cost
/// little memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, for Events.
    pub uid: Option<String>,
    /// `metadata.resourceVersion` as last seen.
    pub resource_version: Option<String>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `spec.taints`, every one of them.
    pub taints: Vec<Taint>,
    /// The router's own labels (`eviction-router/...`).
    pub labels: BTreeMap<String, String>,
    /// The router's own annotations (`eviction-router/...`).
    pub annotations: BTreeMap<String, String>,
    /// Its pool, instance type, zone and capacity type.
    pub placement: Placement,
    /// Whether it is being deleted (`metadata.deletionTimestamp`).
    pub deleting: bool,
}

fn ours(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.starts_with('/'))
}

impl NodeView {
    /// The view of a Node object.
    pub fn of(node: &Node) -> NodeView {
        let meta = &node.metadata;
        let pick = |m: &Option<BTreeMap<String, String>>| {
            m.iter()
                .flatten()
                .filter(|(k, _)| ours(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let spec = node.spec.as_ref();
        NodeView {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            labels: pick(&meta.labels),
            annotations: pick(&meta.annotations),
            placement: Placement::default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// The view of a Node object, with its placement read through `pool_labels`.
    pub fn placed(node: &Node, pool_labels: &[String]) -> NodeView {
        let mut view = NodeView::of(node);
        if let Some(labels) = &node.metadata.labels {
            view.placement = Placement::of(labels, pool_labels);
        }
        let claimed = node
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "NodeClaim" && o.api_version.starts_with("karpenter.sh/"));
        view.placement.karpenter |= claimed;
        view.placement.created_at = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| t.0.to_string().parse().ok());
        view.placement.provider = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(super::placement::provider_of);
        view
    }

    /// The intents on the Node, by kind. Unreadable ones are skipped (and reported by
    /// [`NodeView::unreadable`]).
    pub fn intents(&self) -> BTreeMap<Kind, Intent> {
        self.annotations
            .iter()
            .filter_map(|(k, v)| {
                let kind: Kind = k.strip_prefix(INTENT_PREFIX)?.parse().ok()?;
                let intent: Intent = serde_json::from_str(v).ok()?;
                Some((kind, intent))
            })
            .collect()
    }

    /// Intent annotations that cannot be read (written by another version, or by hand).
    pub fn unreadable(&self) -> Vec<&str> {
        self.annotations
            .iter()
            .filter(|(k, v)| {
                k.starts_with(INTENT_PREFIX)
                    && (k
                        .strip_prefix(INTENT_PREFIX)
                        .is_none_or(|kind| kind.parse::<Kind>().is_err())
                        || serde_json::from_str::<Intent>(v).is_err())
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// The drain's recorded progress.
    pub fn drain_state(&self) -> Option<DrainState> {
        serde_json::from_str(self.annotations.get(DRAIN_ANNOTATION)?).ok()
    }

    /// The ASG lifecycle action recorded completed on the Node.
    pub fn lifecycle_state(&self) -> Option<LifecycleState> {
        serde_json::from_str(self.annotations.get(LIFECYCLE_ANNOTATION)?).ok()
    }
}

/// The Node as the router wants it; diffed against the view into one merge patch.
#[derive(Debug, Clone)]
pub(super) struct Desired {
    unschedulable: bool,
    pub(super) taints: Vec<Taint>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
}

impl Desired {
    pub(super) fn of(view: &NodeView) -> Desired {
        Desired {
            unschedulable: view.unschedulable,
            taints: view.taints.clone(),
            labels: view.labels.clone(),
            annotations: view.annotations.clone(),
        }
    }

    pub(super) fn taint(&mut self, key: &str, effect: &str) {
        if self
            .taints
            .iter()
            .any(|t| t.key == key && t.effect == effect)
        {
            return;
        }
        self.taints.retain(|t| t.key != key);
        self.taints.push(Taint {
            key: key.to_owned(),
            effect: effect.to_owned(),
            value: None,
            time_added: None,
        });
    }

    fn cordon(&mut self) {
        if !self.unschedulable {
            self.unschedulable = true;
            self.annotations
                .insert(CORDONED_ANNOTATION.into(), "true".into());
        }
    }

    /// Writes what `intent` plans, marking it admitted.
    fn admit(&mut self, kind: Kind, intent: &mut Intent) {
        if let Some((key, effect)) = &intent.taint {
            self.taint(key, effect);
        }
        if intent.label {
            self.labels
                .insert(DRAINING_LABEL.into(), kind.as_str().into());
        }
        if intent.cordon {
            self.cordon();
        }
        intent.admitted = true;
    }

    fn set_intent(&mut self, kind: Kind, intent: &Intent) {
        let value = serde_json::to_string(intent).unwrap_or_default();
        self.annotations.insert(intent_key(kind), value);
    }

    /// Undoes what the intent of `kind` did; `also_taint` is the taint its cancel names.
    fn undo(&mut self, kind: Kind, view: &NodeView, also_taint: Option<&str>) {
        let intent = view.intents().remove(&kind);
        self.annotations.remove(&intent_key(kind));
        if let Some(key) = intent.as_ref().and_then(|i| i.taint.as_ref()).map(|t| &t.0) {
            self.taints.retain(|t| &t.key != key);
        }
        if let Some(key) = also_taint {
            self.taints.retain(|t| t.key != key);
        }
        if self
            .labels
            .get(DRAINING_LABEL)
            .is_some_and(|v| v == kind.as_str())
        {
            self.labels.remove(DRAINING_LABEL);
        }
        if let (Some(intent), Some(drain)) = (&intent, view.drain_state())
            && drain.for_event == intent.event.id
        {
            self.annotations.remove(DRAIN_ANNOTATION);
        }
        if let (Some(intent), Some(done)) = (&intent, view.lifecycle_state())
            && done.for_event == intent.event.id
        {
            self.annotations.remove(LIFECYCLE_ANNOTATION);
        }
        // Uncordon only a cordon that is ours, and only when no other intent of ours still
        // holds the Node.
        let held = view
            .intents()
            .iter()
            .any(|(k, i)| *k != kind && i.cordon && i.admitted);
        let cordoned_by_us = self
            .annotations
            .get(CORDONED_ANNOTATION)
            .is_some_and(|v| v == "true");
        if cordoned_by_us && !held {
            self.unschedulable = false;
            self.annotations.remove(CORDONED_ANNOTATION);
        }
    }

    /// The merge patch from `view` to this, or `None` when they are the same. It carries the
    /// view's resourceVersion whenever `spec` changes.
    pub(super) fn patch(&self, view: &NodeView) -> Option<Value> {
        let mut metadata = Map::new();
        let mut spec = Map::new();
        let diff = |now: &BTreeMap<String, String>, was: &BTreeMap<String, String>| {
            let mut m = Map::new();
            for (k, v) in now {
                if was.get(k) != Some(v) {
                    m.insert(k.clone(), Value::String(v.clone()));
                }
            }
            for k in was.keys() {
                if !now.contains_key(k) {
                    m.insert(k.clone(), Value::Null);
                }
            }
            m
        };
        let labels = diff(&self.labels, &view.labels);
        if !labels.is_empty() {
            metadata.insert("labels".into(), Value::Object(labels));
        }
        let annotations = diff(&self.annotations, &view.annotations);
        if !annotations.is_empty() {
            metadata.insert("annotations".into(), Value::Object(annotations));
        }
        if self.taints != view.taints {
            // JSON merge patch replaces a list whole: the list written is the full list.
            spec.insert(
                "taints".into(),
                serde_json::to_value(&self.taints).unwrap_or(Value::Null),
            );
        }
        if self.unschedulable != view.unschedulable {
            spec.insert(
                "unschedulable".into(),
                if self.unschedulable {
                    Value::Bool(true)
                } else {
                    Value::Null
                },
            );
        }
        if metadata.is_empty() && spec.is_empty() {
            return None;
        }
        let mut patch = Map::new();
        if !spec.is_empty() {
            // The precondition: 409 Conflict if the Node changed since the view was taken.
            if let Some(rv) = &view.resource_version {
                metadata.insert("resourceVersion".into(), Value::String(rv.clone()));
            }
            patch.insert("spec".into(), Value::Object(spec));
        }
        if !metadata.is_empty() {
            patch.insert("metadata".into(), Value::Object(metadata));
        }
        Some(Value::Object(patch))
    }
}

/// What the message path does for one event on one Node.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// The one patch to send, if anything changes.
    pub patch: Option<Value>,
    /// The Kubernetes Events to record once the patch is written.
    pub record: Vec<(&'static str, EventType)>,
    /// The Node already holds this very event: nothing is written or recorded again.
    pub duplicate: bool,
}

fn due(at: &Option<Timestamp>, now: Timestamp) -> bool {
    at.is_none_or(|at| at <= now)
}

/// The admission of `event` (planned as `steps`) on the Node `view`, at `now`.
pub fn admit(view: &NodeView, event: &Event, steps: &[Step], now: Timestamp) -> Admission {
    let kind = event.data.kind;
    if view
        .intents()
        .get(&kind)
        .is_some_and(|i| i.event.id == event.id)
    {
        return Admission {
            patch: None,
            record: Vec::new(),
            duplicate: true,
        };
    }
    let mut desired = Desired::of(view);
    let mut record = Vec::new();
    let mut intent = Intent {
        event: event.clone(),
        due: None,
        admitted: false,
        taint: None,
        label: false,
        cordon: false,
        drain: false,
        deadline: event.data.deadline,
    };
    let mut undo = None;
    for step in steps {
        match step {
            Step::Taint { key, effect, at } => {
                intent.taint = Some((key.clone(), effect.as_str().to_owned()));
                intent.due = intent.due.or(*at);
            }
            Step::Label { at, .. } => {
                intent.label = true;
                intent.due = intent.due.or(*at);
            }
            Step::Cordon { at } => {
                intent.cordon = true;
                intent.due = intent.due.or(*at);
            }
            Step::Drain { at, deadline } => {
                intent.drain = true;
                intent.deadline = *deadline;
                intent.due = intent.due.or(*at);
            }
            Step::RecordEvent { reason, event_type } => record.push((*reason, *event_type)),
            Step::Untaint { key } => undo = Some(key.clone()),
            Step::Unlabel { .. } | Step::Uncordon => {
                undo = undo.or_else(|| Some(String::new()));
            }
        }
    }
    match undo {
        Some(key) => {
            let key = (!key.is_empty()).then_some(key.as_str());
            desired.undo(kind, view, key);
        }
        None => {
            if due(&intent.due, now) {
                desired.admit(kind, &mut intent);
            }
            desired.set_intent(kind, &intent);
        }
    }
    Admission {
        patch: desired.patch(view),
        record,
        duplicate: false,
    }
}

/// Annotations of the release before intents: a maintenance scheduled for later (the event's
/// JSON) and the last event handled. [`migrate`] turns the first into an intent.
pub const LEGACY_ANNOTATIONS: [&str; 2] =
    ["eviction-router/scheduled", "eviction-router/last-event"];

/// The patch that carries a Node written by the release before intents over: the scheduled
/// event becomes its intent (as `plan` would admit it now), and the old annotations go. `None`
/// when the Node has none of them.
pub fn migrate(
    view: &NodeView,
    plan: impl Fn(&Event) -> Vec<Step>,
    now: Timestamp,
) -> Option<Value> {
    if !LEGACY_ANNOTATIONS
        .iter()
        .any(|k| view.annotations.contains_key(*k))
    {
        return None;
    }
    let scheduled = view
        .annotations
        .get(LEGACY_ANNOTATIONS[0])
        .and_then(|json| serde_json::from_str::<Event>(json).ok());
    let mut patch = match scheduled {
        Some(event) => admit(view, &event, &plan(&event), now)
            .patch
            .unwrap_or_else(|| json!({})),
        None => json!({}),
    };
    for key in LEGACY_ANNOTATIONS {
        if view.annotations.contains_key(key) {
            patch["metadata"]["annotations"][key] = Value::Null;
        }
    }
    Some(patch)
}

/// The next piece of work the reconciler owes a Node.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Nothing now, nor later.
    Idle,
    /// Nothing now; look again at this time.
    Wait(Timestamp),
    /// Intents fell due: write their taint, label and cordon (one patch), then look again.
    Admit(Value),
    /// Drain the Node for the intent of `event` (its kind), finishing before `deadline − margin`.
    Drain {
        /// The intent's event.
        event: Box<Event>,
        /// When the capacity goes, if known.
        deadline: Option<Timestamp>,
    },
    /// The drain has ended: complete the ASG lifecycle action of `event`'s intent.
    CompleteLifecycle {
        /// The intent's event.
        event: Box<Event>,
        /// What to complete.
        action: LifecycleAction,
    },
}

/// What the reconciler does next for `view` at `now`, completing no lifecycle actions.
pub fn next(view: &NodeView, now: Timestamp) -> Work {
    next_owing(view, now, false)
}

/// What the reconciler does next for `view` at `now`; with `lifecycle`, an ASG lifecycle action
/// is owed once the Node's drain has ended (or at once, for an intent that does not drain), until
/// the Node records it completed.
pub fn next_owing(view: &NodeView, now: Timestamp, lifecycle: bool) -> Work {
    let intents = view.intents();
    let mut desired = Desired::of(view);
    let mut wait: Option<Timestamp> = None;
    let mut admitted_any = false;
    let mut drain: Option<&Intent> = None;
    let mut fell_due = BTreeMap::new();
    match super::shelter::lift(view, &mut desired, now) {
        super::shelter::Lift::None => {}
        // Still sheltered: look again when the window ends.
        super::shelter::Lift::Until(until) => wait = Some(until),
        super::shelter::Lift::Lifted => admitted_any = true,
    }
    for (kind, intent) in &intents {
        if !due(&intent.due, now) {
            wait = Some(match (wait, intent.due) {
                (Some(w), Some(d)) => w.min(d),
                (w, d) => w.or(d).unwrap_or(now),
            });
            continue;
        }
        if !intent.admitted {
            let mut intent = intent.clone();
            desired.admit(*kind, &mut intent);
            desired.set_intent(*kind, &intent);
            fell_due.insert(*kind, intent);
            admitted_any = true;
            continue;
        }
        if intent.drain {
            // The earliest deadline drives the drain; no deadline comes last.
            let earlier = match (drain.and_then(|d| d.deadline), intent.deadline) {
                (_, None) => drain.is_none(),
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b < a,
            };
            if earlier {
                drain = Some(intent);
            }
        }
    }
    if admitted_any && let Some(patch) = desired.patch(view) {
        return Work::Admit(patch);
    }
    if let Some(intent) = drain {
        let served = view
            .drain_state()
            .is_some_and(|d| d.for_event == intent.event.id);
        if !served {
            return Work::Drain {
                event: Box::new(intent.event.clone()),
                deadline: intent.deadline,
            };
        }
    }
    if lifecycle {
        let completed = view.lifecycle_state();
        for intent in intents.values().filter(|i| i.admitted) {
            let Some(action) = LifecycleAction::of(&intent.event) else {
                continue;
            };
            // Only the earliest deadline's drain runs; any drain that ended emptied the Node.
            let drained = !intent.drain || view.drain_state().is_some();
            let done = completed
                .as_ref()
                .is_some_and(|c| c.for_event == intent.event.id);
            if drained && !done {
                return Work::CompleteLifecycle {
                    event: Box::new(intent.event.clone()),
                    action,
                };
            }
        }
    }
    match wait {
        Some(at) => Work::Wait(at),
        None => Work::Idle,
    }
}

#[cfg(test)]
mod tests;
