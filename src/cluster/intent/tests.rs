use super::*;
use crate::cluster::lifecycle::{Answer, LifecycleState};
use crate::cluster::plan::{self, Actions};
use crate::event::{EventData, Instance, Provider, Status};
use jiff::SignedDuration;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn event(id: &str, kind: Kind, status: Option<Status>, not_before: Option<&str>) -> Event {
    let at = t("2026-11-23T10:00:00Z");
    let instance = Instance {
        id: "i-1".into(),
        name: None,
        provider_id: None,
        resource_id: None,
    };
    let mut d = EventData::new(Provider::Aws, kind, "x", instance, at);
    d.status = status;
    d.not_before = not_before.map(t);
    d.deadline = match kind {
        Kind::Interruption => Some(at + SignedDuration::from_secs(120)),
        _ => d.not_before,
    };
    Event::new(id, d)
}

fn steps(e: &Event) -> Vec<Step> {
    plan::plan(&e.data, SignedDuration::from_mins(10), &Actions::default())
}

/// A Node with one foreign taint, as the API server would hold it.
fn node_json() -> Value {
    json!({
        "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7",
                     "labels": {"karpenter.sh/nodepool": "spot"}},
        "spec": {"taints": [{"key": "team.example/dedicated", "value": "ml", "effect": "NoSchedule"}]},
    })
}

/// RFC 7386, for applying our patches in tests.
fn merge(doc: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !doc.is_object() {
                *doc = json!({});
            }
            let d = doc.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *doc = other.clone(),
    }
}

fn apply(doc: &mut Value, patch: &Value) -> NodeView {
    merge(doc, patch);
    // The API server bumps the resourceVersion on every write.
    let rv: u64 = doc["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    doc["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    view(doc)
}

/// Admits `e` on the Node `doc` and applies the patch.
fn step(doc: &mut Value, e: &Event, now: Timestamp) -> NodeView {
    let patch = admit(&view(doc), e, &steps(e), now).patch.unwrap();
    apply(doc, &patch)
}

fn view(doc: &Value) -> NodeView {
    NodeView::of(&serde_json::from_value::<Node>(doc.clone()).unwrap())
}

#[test]
fn an_interruption_is_admitted_in_one_patch_that_keeps_other_taints() {
    let doc = node_json();
    let e = event("e1", Kind::Interruption, None, None);
    let a = admit(&view(&doc), &e, &steps(&e), t("2026-11-23T10:00:01Z"));
    assert!(!a.duplicate);
    assert_eq!(a.record, vec![("SpotInterruption", EventType::Warning)]);
    let patch = a.patch.unwrap();
    assert_eq!(
        patch["metadata"]["resourceVersion"], "7",
        "the precondition"
    );
    assert_eq!(
        patch["spec"]["taints"],
        json!([
            {"key": "team.example/dedicated", "value": "ml", "effect": "NoSchedule"},
            {"key": "eviction-router/interruption", "effect": "NoSchedule"},
        ]),
        "the whole list, the other controller's taint first and intact"
    );
    assert_eq!(patch["spec"]["unschedulable"], true);
    assert_eq!(
        patch["metadata"]["labels"],
        json!({"eviction-router/draining": "interruption"})
    );
    let ann = &patch["metadata"]["annotations"];
    assert_eq!(ann[CORDONED_ANNOTATION], "true");
    let intent: Intent =
        serde_json::from_str(ann["eviction-router/intent.interruption"].as_str().unwrap()).unwrap();
    assert!(intent.admitted && intent.drain && intent.cordon);
    assert_eq!(intent.event, e);
    assert_eq!(intent.deadline, Some(t("2026-11-23T10:02:00Z")));
}

#[test]
fn the_same_event_again_writes_nothing() {
    let mut doc = node_json();
    let e = event("e1", Kind::Interruption, None, None);
    let now = t("2026-11-23T10:00:01Z");
    let v = step(&mut doc, &e, now);
    let again = admit(&v, &e, &steps(&e), now);
    assert!(again.duplicate);
    assert_eq!(again.patch, None);
    assert!(again.record.is_empty());
}

#[test]
fn a_node_cordoned_by_someone_else_is_not_marked_as_ours() {
    let mut doc = node_json();
    doc["spec"]["unschedulable"] = json!(true);
    let e = event("e1", Kind::Interruption, None, None);
    let patch = admit(&view(&doc), &e, &steps(&e), t("2026-11-23T10:00:01Z"))
        .patch
        .unwrap();
    assert!(patch["spec"].get("unschedulable").is_none());
    assert!(
        patch["metadata"]["annotations"]
            .get(CORDONED_ANNOTATION)
            .is_none()
    );
}

#[test]
fn the_reconciler_drains_an_admitted_intent_once() {
    let mut doc = node_json();
    let e = event("e1", Kind::Interruption, None, None);
    let now = t("2026-11-23T10:00:01Z");
    let v = step(&mut doc, &e, now);
    let Work::Drain {
        event: ev,
        deadline,
    } = next(&v, now)
    else {
        panic!("a drain is due: {:?}", next(&v, now));
    };
    assert_eq!(ev.id, "e1");
    assert_eq!(deadline, Some(t("2026-11-23T10:02:00Z")));
    let done = DrainState::new("e1", now, Vec::new());
    assert_eq!(done.state, DrainEnd::Done);
    let v = apply(&mut doc, &done.patch());
    assert_eq!(next(&v, now), Work::Idle, "served");
    // A second notice (another event id) drains again.
    let e2 = event("e2", Kind::Interruption, None, None);
    let v = step(&mut doc, &e2, now);
    assert!(matches!(next(&v, now), Work::Drain { event, .. } if event.id == "e2"));
}

#[test]
fn scheduled_maintenance_waits_then_admits_then_drains() {
    let mut doc = node_json();
    let e = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Scheduled),
        Some("2026-11-25T02:00:00Z"),
    );
    let now = t("2026-11-23T10:00:01Z");
    let a = admit(&view(&doc), &e, &steps(&e), now);
    assert_eq!(a.record, vec![("ScheduledMaintenance", EventType::Normal)]);
    let patch = a.patch.unwrap();
    assert!(patch.get("spec").is_none(), "nothing due yet: {patch}");
    assert!(
        patch["metadata"].get("resourceVersion").is_none(),
        "an annotation alone needs no precondition"
    );
    let v = apply(&mut doc, &patch);
    let due = t("2026-11-25T01:50:00Z");
    assert_eq!(next(&v, now), Work::Wait(due));
    let Work::Admit(patch) = next(&v, due) else {
        panic!("due: {:?}", next(&v, due));
    };
    assert_eq!(patch["spec"]["unschedulable"], true);
    assert_eq!(patch["metadata"]["resourceVersion"], "8");
    let v = apply(&mut doc, &patch);
    assert!(
        v.taints
            .iter()
            .any(|t| t.key == "eviction-router/scheduled_maintenance")
    );
    assert!(
        matches!(next(&v, due), Work::Drain { deadline: Some(d), .. } if d == t("2026-11-25T02:00:00Z"))
    );
}

#[test]
fn a_cancel_before_the_window_leaves_the_node_untouched() {
    let mut doc = node_json();
    let original = view(&doc);
    let now = t("2026-11-23T10:00:01Z");
    let e = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Scheduled),
        Some("2026-11-25T02:00:00Z"),
    );
    step(&mut doc, &e, now);
    let c = event(
        "m2",
        Kind::ScheduledMaintenance,
        Some(Status::Canceled),
        None,
    );
    let v = step(&mut doc, &c, now);
    assert_eq!(next(&v, t("2026-11-25T02:00:00Z")), Work::Idle);
    assert_eq!(v.taints, original.taints);
    assert_eq!(v.annotations, original.annotations);
    assert!(!v.unschedulable);
}

#[test]
fn a_cancel_after_the_window_opened_undoes_what_was_ours_only() {
    let mut doc = node_json();
    let now = t("2026-11-23T10:00:01Z");
    let started = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Started),
        None,
    );
    let v = step(&mut doc, &started, now);
    assert!(v.unschedulable);
    apply(
        &mut doc,
        &DrainState::new("m1", now, vec!["a/b".into()]).patch(),
    );
    // An interruption of the same Node meanwhile: the cancel must leave its cordon.
    let i = event("e1", Kind::Interruption, None, None);
    let v = step(&mut doc, &i, now);
    let c = event(
        "m2",
        Kind::ScheduledMaintenance,
        Some(Status::Canceled),
        None,
    );
    let patch = admit(&v, &c, &steps(&c), now).patch.unwrap();
    let v = apply(&mut doc, &patch);
    assert!(v.unschedulable, "the interruption still holds it");
    let keys: Vec<_> = v.taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        ["team.example/dedicated", "eviction-router/interruption"]
    );
    assert!(
        !v.annotations
            .contains_key("eviction-router/intent.scheduled_maintenance")
    );
    assert!(
        !v.annotations.contains_key(DRAIN_ANNOTATION),
        "the drain was the maintenance's"
    );
    assert_eq!(
        v.labels.get(DRAINING_LABEL).map(String::as_str),
        Some("interruption")
    );
}

#[test]
fn a_cancel_uncordons_only_a_cordon_that_was_ours() {
    let mut doc = node_json();
    doc["spec"]["unschedulable"] = json!(true);
    let now = t("2026-11-23T10:00:01Z");
    let started = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Started),
        None,
    );
    step(&mut doc, &started, now);
    let c = event(
        "m2",
        Kind::ScheduledMaintenance,
        Some(Status::Canceled),
        None,
    );
    let v = step(&mut doc, &c, now);
    assert!(v.unschedulable, "an operator's cordon stays");
}

#[test]
fn the_earliest_deadline_drives_the_drain_and_unreadable_intents_are_reported() {
    let mut doc = node_json();
    let now = t("2026-11-23T10:00:01Z");
    let m = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Started),
        None,
    );
    step(&mut doc, &m, now);
    let i = event("e1", Kind::Interruption, None, None);
    let v = step(&mut doc, &i, now);
    assert!(matches!(next(&v, now), Work::Drain { event, .. } if event.id == "e1"));
    let mut v = v;
    v.annotations.insert(
        "eviction-router/intent.interruption".into(),
        "{not json".into(),
    );
    v.annotations
        .insert("eviction-router/intent.nonsense".into(), "{}".into());
    assert_eq!(
        v.unreadable(),
        [
            "eviction-router/intent.interruption",
            "eviction-router/intent.nonsense"
        ]
    );
    assert!(matches!(next(&v, now), Work::Drain { event, .. } if event.id == "m1"));
}

#[test]
fn a_rebalance_recommendation_prefers_no_schedule_and_needs_no_work() {
    let mut doc = node_json();
    let now = t("2026-11-23T10:00:01Z");
    let r = event("r1", Kind::RebalanceRecommendation, None, None);
    let a = admit(&view(&doc), &r, &steps(&r), now);
    let v = apply(&mut doc, &a.patch.unwrap());
    assert!(!v.unschedulable);
    assert!(
        v.taints
            .iter()
            .any(|t| t.key == "eviction-router/rebalance_recommendation"
                && t.effect == "PreferNoSchedule")
    );
    assert_eq!(next(&v, now), Work::Idle);
}

#[test]
fn drain_state_keeps_a_bounded_list() {
    let left: Vec<String> = (0..50).map(|i| format!("ns/p{i}")).collect();
    let d = DrainState::new("e", t("2026-11-23T10:00:01Z"), left);
    assert_eq!(d.state, DrainEnd::Incomplete);
    assert_eq!(d.left, 50);
    assert_eq!(d.pods.len(), 20);
}

#[test]
fn a_node_of_the_release_before_intents_is_carried_over() {
    let mut doc = node_json();
    let e = event(
        "m1",
        Kind::ScheduledMaintenance,
        Some(Status::Scheduled),
        Some("2026-11-25T02:00:00Z"),
    );
    doc["metadata"]["annotations"] = json!({
        "eviction-router/scheduled": e.to_json_line(),
        "eviction-router/last-event": "{\"id\":\"x\"}",
    });
    let now = t("2026-11-23T10:00:01Z");
    let patch = migrate(&view(&doc), steps, now).expect("a migration");
    let v = apply(&mut doc, &patch);
    assert!(!v.annotations.contains_key("eviction-router/scheduled"));
    assert!(!v.annotations.contains_key("eviction-router/last-event"));
    let intent = &v.intents()[&Kind::ScheduledMaintenance];
    assert_eq!(intent.event.id, "m1");
    assert_eq!(next(&v, now), Work::Wait(t("2026-11-25T01:50:00Z")));
    assert_eq!(migrate(&v, steps, now), None, "once");
    // Only the last-event annotation: it just goes.
    let mut doc = node_json();
    doc["metadata"]["annotations"] = json!({"eviction-router/last-event": "{}"});
    let patch = migrate(&view(&doc), steps, now).unwrap();
    assert_eq!(
        patch,
        json!({"metadata": {"annotations": {"eviction-router/last-event": null}}})
    );
}

/// A termination from an ASG lifecycle hook, as the AWS normaliser writes its details.
fn hooked(id: &str) -> Event {
    let mut e = event(id, Kind::Termination, None, None);
    for (k, v) in [
        ("lifecycle_hook_name", "drain-hook"),
        ("lifecycle_action_token", "tok-1"),
        ("auto_scaling_group_name", "nodes-a"),
    ] {
        e.data.details.insert(k.into(), json!(v));
    }
    e
}

#[test]
fn the_lifecycle_action_is_owed_once_the_drain_ended_and_until_it_is_recorded() {
    let mut doc = node_json();
    let e = hooked("h1");
    let now = t("2026-11-23T10:00:01Z");
    let v = step(&mut doc, &e, now);
    // The drain comes first, whatever is owed after it.
    assert!(matches!(next_owing(&v, now, true), Work::Drain { event, .. } if event.id == "h1"));
    // Ended with pods left (stopped at its deadline) counts as ended.
    let v = apply(
        &mut doc,
        &DrainState::new("h1", now, vec!["a/p".into()]).patch(),
    );
    let Work::CompleteLifecycle { event, action } = next_owing(&v, now, true) else {
        panic!("the hook is owed: {:?}", next_owing(&v, now, true));
    };
    assert_eq!(event.id, "h1");
    assert_eq!(
        (
            action.group.as_str(),
            action.hook.as_str(),
            action.token.as_deref()
        ),
        ("nodes-a", "drain-hook", Some("tok-1"))
    );
    // Without completion (the feature off), nothing is owed.
    assert_eq!(next_owing(&v, now, false), Work::Idle);
    assert_eq!(next(&v, now), Work::Idle);
    // Recorded, whether completed or found over: never again.
    for answer in [Answer::Taken, Answer::NoActiveAction] {
        let mut doc = doc.clone();
        let v = apply(&mut doc, &LifecycleState::new("h1", answer, now).patch());
        assert_eq!(next_owing(&v, now, true), Work::Idle, "{answer:?}");
    }
    // A record of another event's action does not count.
    let v = apply(
        &mut doc,
        &LifecycleState::new("other", Answer::Taken, now).patch(),
    );
    assert!(matches!(
        next_owing(&v, now, true),
        Work::CompleteLifecycle { .. }
    ));
}

#[test]
fn a_hooked_termination_that_is_not_drained_is_completed_at_once() {
    let mut doc = node_json();
    let e = hooked("h2");
    let now = t("2026-11-23T10:00:01Z");
    let mut actions = Actions::default();
    actions.termination.drain = false;
    let plan = plan::plan(&e.data, SignedDuration::from_mins(10), &actions);
    let patch = admit(&view(&doc), &e, &plan, now).patch.unwrap();
    let v = apply(&mut doc, &patch);
    assert!(
        matches!(next_owing(&v, now, true), Work::CompleteLifecycle { event, .. } if event.id == "h2")
    );
    // A plain termination owes no lifecycle action.
    let mut doc = node_json();
    let plain = event("t1", Kind::Termination, None, None);
    step(&mut doc, &plain, now);
    let v = apply(&mut doc, &DrainState::new("t1", now, Vec::new()).patch());
    assert_eq!(next_owing(&v, now, true), Work::Idle);
}
