//! Sibling shelter: when a Spot Node of instance type T in zone Z is interrupted, the other Spot
//! Nodes of (T, Z) are the likeliest to go next, and they are exactly where the scheduler would
//! put the evicted pods. For a window they carry the `PreferNoSchedule` taint
//! `eviction-router/at-risk` (and a label of the same key, so the router's own placeholders can
//! require Nodes without it); the scheduler then prefers any other Node that fits, and still
//! uses them when nothing else does. The state is on each sibling:
//!
//! | on the sibling | value |
//! |---|---|
//! | taint `eviction-router/at-risk:PreferNoSchedule` | |
//! | label `eviction-router/at-risk` | `"true"` |
//! | annotation `eviction-router/at-risk` | an [`AtRisk`]: until when, because of which event and Node |
//!
//! The reconciler lifts it when the window ends ([`lift`], called from `intent::next`). Pure:
//! the views and the clock in, merge patches out; [`run`] carries them out.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ClusterError;
use super::intent::{Desired, NodeView};
use super::kubernetes::{CONFLICT_ATTEMPTS, Ctx, PatchError};
use crate::event::{Event, EventData, Instance, Kind};

/// The taint, label and annotation key.
pub const AT_RISK: &str = "eviction-router/at-risk";

/// Why and until when a Node is sheltered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtRisk {
    /// When the taint is lifted.
    pub until: Timestamp,
    /// The id of the interruption that put it there (the latest one that extended it).
    pub because: String,
    /// The interrupted Node.
    pub node: String,
}

impl NodeView {
    /// The shelter on this Node, if it carries a readable one.
    pub fn at_risk(&self) -> Option<AtRisk> {
        serde_json::from_str(self.annotations.get(AT_RISK)?).ok()
    }

    /// Whether an interruption or termination was admitted on this Node: it is going, and its
    /// own cordon keeps pods off.
    pub fn doomed(&self) -> bool {
        self.intents()
            .iter()
            .any(|(k, i)| matches!(k, Kind::Interruption | Kind::Termination) && i.admitted)
    }
}

/// The shelter an interruption asks for: the Spot siblings' key and until when, or `None` when
/// the Node is not Spot, its type or zone is unknown, its pool is excluded, or the window is
/// over already.
pub fn wanted(
    view: &NodeView,
    event: &Event,
    window: SignedDuration,
    exclude_pools: &[String],
    now: Timestamp,
) -> Option<((String, String), Timestamp)> {
    if event.data.kind != Kind::Interruption {
        return None;
    }
    if view
        .placement
        .pool_name()
        .is_some_and(|p| exclude_pools.iter().any(|e| e == p))
    {
        return None;
    }
    let key = view.placement.spot_key()?;
    let until = event.data.occurred_at + window;
    (until > now).then_some((key, until))
}

/// Whether a shelter until `until` would change what `view` carries enough to be written: an
/// existing one is extended only when it would move by more than a fifth of the window, so a
/// pool reclaimed over a minute writes each sibling a few times, not once per notice.
fn worth_writing(view: &NodeView, until: Timestamp, window: SignedDuration) -> bool {
    match view.at_risk() {
        None => true,
        Some(current) => until.duration_since(current.until) > window / 5,
    }
}

/// The patch that shelters the sibling `view`, or `None` when it needs none: it is the
/// interrupted Node, it is going itself, its pool is excluded, or it is sheltered long enough.
pub fn shelter(
    view: &NodeView,
    at_risk: &AtRisk,
    window: SignedDuration,
    exclude_pools: &[String],
) -> Option<Value> {
    if view.name == at_risk.node
        || view.doomed()
        || view
            .placement
            .pool_name()
            .is_some_and(|p| exclude_pools.iter().any(|e| e == p))
        || !worth_writing(view, at_risk.until, window)
    {
        return None;
    }
    let mut desired = Desired::of(view);
    desired.taint(AT_RISK, "PreferNoSchedule");
    desired.labels.insert(AT_RISK.into(), "true".into());
    desired.annotations.insert(
        AT_RISK.into(),
        serde_json::to_string(at_risk).unwrap_or_default(),
    );
    desired.patch(view)
}

/// What [`lift`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lift {
    /// The Node is not sheltered.
    None,
    /// Sheltered until then.
    Until(Timestamp),
    /// The shelter ended: `desired` no longer has it.
    Lifted,
}

/// Takes an expired shelter off `desired`.
pub(super) fn lift(view: &NodeView, desired: &mut Desired, now: Timestamp) -> Lift {
    if !view.annotations.contains_key(AT_RISK)
        && !view.labels.contains_key(AT_RISK)
        && !view.taints.iter().any(|t| t.key == AT_RISK)
    {
        return Lift::None;
    }
    // An unreadable annotation (or a taint without one) is lifted too: nothing else would
    // ever take it off.
    if let Some(at_risk) = view.at_risk()
        && at_risk.until > now
    {
        return Lift::Until(at_risk.until);
    }
    desired.taints.retain(|t| t.key != AT_RISK);
    desired.labels.remove(AT_RISK);
    desired.annotations.remove(AT_RISK);
    Lift::Lifted
}

/// The `pool_at_risk` event for the stream.
pub fn pool_at_risk(
    event: &Event,
    key: &(String, String),
    until: Timestamp,
    nodes: usize,
) -> Event {
    let old = &event.data;
    let instance = Instance {
        id: format!("{}/{}", key.0, key.1),
        name: None,
        provider_id: None,
        resource_id: None,
    };
    let mut data = EventData::new(
        old.provider,
        Kind::PoolAtRisk,
        "pool_at_risk",
        instance,
        old.occurred_at,
    );
    data.account = old.account.clone();
    data.region = old.region.clone();
    data.zone = Some(key.1.clone());
    data.not_after = Some(until);
    data.details
        .insert("instance_type".into(), key.0.clone().into());
    data.details.insert("zone".into(), key.1.clone().into());
    data.details
        .insert("because".into(), event.id.clone().into());
    data.details.insert("nodes".into(), nodes.into());
    Event::new(format!("{}/pool_at_risk", event.id), data)
}

/// Shelters the siblings of `at_risk.node` sharing `key`; returns how many were written.
///
/// RBAC: `nodes` patch (and get, on a conflict).
pub(super) async fn run(
    ctx: &Ctx,
    key: &(String, String),
    at_risk: &AtRisk,
    window: SignedDuration,
    exclude_pools: &[String],
) -> Result<usize, ClusterError> {
    let started = Instant::now();
    // Karpenter Nodes left to Karpenter are not written either.
    let siblings = ctx
        .cache
        .select(|v| v.placement.spot_key().as_ref() == Some(key) && !ctx.observes(v));
    let mut written = 0;
    for sibling in siblings {
        let mut view = sibling;
        for _ in 0..CONFLICT_ATTEMPTS {
            let Some(patch) = shelter(&view, at_risk, window, exclude_pools) else {
                break;
            };
            // The Events client: after every admit, before every eviction.
            match ctx
                .patch_node(&ctx.clients.events, &view.name, &patch)
                .await
            {
                Ok(()) => {
                    written += 1;
                    break;
                }
                Err(PatchError::Conflict) => match ctx.cache.get(&view.name) {
                    Some(v) => view = v,
                    None => break,
                },
                Err(PatchError::Failed(e)) => {
                    ctx.metrics.action("shelter", "error", started.elapsed());
                    return Err(e);
                }
            }
        }
    }
    ctx.metrics.action("shelter", "ok", started.elapsed());
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::placement::Placement;
    use k8s_openapi::api::core::v1::Taint;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sibling(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            resource_version: Some("7".into()),
            placement: Placement {
                pool: Some(("eks.amazonaws.com/nodegroup".into(), "spot".into())),
                instance_type: Some("m5.large".into()),
                zone: Some("us-east-1a".into()),
                spot: true,
                karpenter: false,
                ..Placement::default()
            },
            taints: vec![Taint {
                key: "other".into(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: None,
            }],
            ..NodeView::default()
        }
    }

    fn risk(until: &str) -> AtRisk {
        AtRisk {
            until: at(until),
            because: "e1".into(),
            node: "n0".into(),
        }
    }

    fn apply(view: &NodeView, patch: &Value) -> NodeView {
        let mut v = view.clone();
        if let Some(taints) = patch.pointer("/spec/taints") {
            v.taints = serde_json::from_value(taints.clone()).unwrap();
        }
        for (field, map) in [
            ("labels", &mut v.labels),
            ("annotations", &mut v.annotations),
        ] {
            if let Some(m) = patch
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object)
            {
                for (k, val) in m {
                    match val.as_str() {
                        Some(s) => map.insert(k.clone(), s.into()),
                        None => map.remove(k),
                    };
                }
            }
        }
        v
    }

    #[test]
    fn a_sibling_gets_the_taint_label_and_annotation_in_one_patch_keeping_other_taints() {
        let window = SignedDuration::from_secs(300);
        let view = sibling("n1");
        let patch = shelter(&view, &risk("2026-11-23T10:05:00Z"), window, &[]).unwrap();
        assert_eq!(
            patch["metadata"]["resourceVersion"], "7",
            "the taint list is atomic"
        );
        let taints = patch["spec"]["taints"].as_array().unwrap();
        assert_eq!(taints.len(), 2);
        assert!(taints.iter().any(|t| t["key"] == "other"));
        assert!(
            taints
                .iter()
                .any(|t| t["key"] == AT_RISK && t["effect"] == "PreferNoSchedule")
        );
        assert_eq!(patch["metadata"]["labels"][AT_RISK], "true");
        let sheltered = apply(&view, &patch);
        assert_eq!(
            sheltered.at_risk().unwrap().until,
            at("2026-11-23T10:05:00Z")
        );

        // A later notice 10 s on does not write it again; one 2 minutes on extends it.
        assert_eq!(
            shelter(&sheltered, &risk("2026-11-23T10:05:10Z"), window, &[]),
            None
        );
        assert!(shelter(&sheltered, &risk("2026-11-23T10:07:00Z"), window, &[]).is_some());
    }

    #[test]
    fn the_interrupted_node_excluded_pools_and_doomed_nodes_are_not_sheltered() {
        let window = SignedDuration::from_secs(300);
        let r = risk("2026-11-23T10:05:00Z");
        assert_eq!(
            shelter(&sibling("n0"), &r, window, &[]),
            None,
            "the Node itself"
        );
        assert_eq!(shelter(&sibling("n1"), &r, window, &["spot".into()]), None);
    }

    #[test]
    fn the_shelter_is_lifted_when_its_window_ends() {
        let window = SignedDuration::from_secs(300);
        let view = sibling("n1");
        let sheltered = apply(
            &view,
            &shelter(&view, &risk("2026-11-23T10:05:00Z"), window, &[]).unwrap(),
        );
        let before = crate::cluster::intent::next(&sheltered, at("2026-11-23T10:04:00Z"));
        assert_eq!(
            before,
            crate::cluster::intent::Work::Wait(at("2026-11-23T10:05:00Z"))
        );
        let crate::cluster::intent::Work::Admit(patch) =
            crate::cluster::intent::next(&sheltered, at("2026-11-23T10:05:01Z"))
        else {
            panic!("the expired shelter is lifted");
        };
        let lifted = apply(&sheltered, &patch);
        assert_eq!(lifted.taints.len(), 1);
        assert_eq!(lifted.taints[0].key, "other");
        assert!(!lifted.labels.contains_key(AT_RISK));
        assert!(!lifted.annotations.contains_key(AT_RISK));
        assert_eq!(
            crate::cluster::intent::next(&lifted, at("2026-11-23T10:05:01Z")),
            crate::cluster::intent::Work::Idle
        );
    }
}
