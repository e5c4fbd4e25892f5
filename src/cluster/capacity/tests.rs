use super::*;
use crate::event::{EventData, Instance, Kind, Provider};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn pod(name: &str, cpu: &str, memory: &str, selector: Value, tolerations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "nodeSelector": selector,
            "tolerations": tolerations,
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "100m"}}},
            ],
        },
    }))
    .unwrap()
}

fn event() -> Event {
    let instance = Instance {
        id: "i-1".into(),
        name: None,
        provider_id: None,
        resource_id: None,
    };
    Event::new(
        "e-1",
        EventData::new(
            Provider::Aws,
            Kind::Interruption,
            "EC2 Spot Instance Interruption Warning",
            instance,
            at("2026-11-23T10:00:00Z"),
        ),
    )
}

fn view() -> NodeView {
    NodeView {
        name: "n1".into(),
        ..NodeView::default()
    }
}

#[test]
fn quantities_are_read_in_thousandths() {
    assert_eq!(milli("250m"), Some(250));
    assert_eq!(milli("2"), Some(2000));
    assert_eq!(milli("1.5"), Some(1500));
    assert_eq!(milli("1Gi"), Some(1000 << 30));
    assert_eq!(milli("1.5Gi"), Some(1500 << 30));
    assert_eq!(milli("512Mi"), Some(512_000 << 20));
    assert_eq!(milli("1k"), Some(1_000_000));
    assert_eq!(milli("1e3"), Some(1_000_000));
    assert_eq!(milli("128974848"), Some(128_974_848_000));
    assert_eq!(
        milli("0.1m"),
        Some(1),
        "rounded up: a request is never made smaller"
    );
    assert_eq!(milli("12Zi"), None);
    assert_eq!(milli(""), None);
}

#[test]
fn pods_that_share_constraints_share_one_placeholder_with_their_summed_requests() {
    let tol = json!([{"key": "team", "operator": "Exists", "effect": "NoSchedule"}]);
    let pods = vec![
        pod("a", "250m", "512Mi", json!({}), tol.clone()),
        pod("b", "500m", "1Gi", json!({}), tol.clone()),
        pod("c", "1", "1Gi", json!({"disk": "ssd"}), json!([])),
    ];
    let pool = (
        "eks.amazonaws.com/nodegroup".to_owned(),
        "spot-a".to_owned(),
    );
    let config = MakeBeforeBreakConfig::default();
    let now = at("2026-11-23T10:00:05Z");
    let made = placeholders(&view(), &pool, &event(), &pods, &config, now);
    assert_eq!(made.len(), 2, "two groups of constraints");
    let shared = made
        .iter()
        .find(|p| p["spec"]["tolerations"] == tol)
        .expect("the tolerating group");
    let reqs = &shared["spec"]["containers"][0]["resources"]["requests"];
    // 250m + 100m + 500m + 100m; 512Mi + 1Gi in bytes.
    assert_eq!(reqs["cpu"], "950m");
    assert_eq!(reqs["memory"], (1536u64 << 20).to_string());
    assert_eq!(
        shared["spec"]["nodeSelector"]["eks.amazonaws.com/nodegroup"],
        "spot-a"
    );
    assert_eq!(
        shared["spec"]["priorityClassName"],
        "eviction-router-placeholder"
    );
    assert_eq!(shared["spec"]["terminationGracePeriodSeconds"], 0);
    let terms = &shared["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms[0]["matchExpressions"][0]["key"], AT_RISK);
    let other = made
        .iter()
        .find(|p| p["spec"]["tolerations"] == json!([]))
        .unwrap();
    assert_eq!(
        other["spec"]["nodeSelector"]["disk"], "ssd",
        "the pods' own selector is kept"
    );
    assert_eq!(
        other["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1100m"
    );

    // The same Node and event give the same names (idempotent creation after a restart);
    // the annotation says what they are for and when they go.
    let again = placeholders(&view(), &pool, &event(), &pods, &config, now);
    let names = |v: &[Value]| {
        v.iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&made), names(&again));
    let of: For = serde_json::from_str(
        made[0]["metadata"]["annotations"][PLACEHOLDER_LABEL]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(of.node, "n1");
    assert_eq!(of.event, "e-1");
    assert_eq!(of.expires, now + SignedDuration::from_secs(600));
    assert_eq!(
        made[0]["metadata"]["labels"][PLACEHOLDER_LABEL],
        group("n1", "e-1")
    );
}

#[test]
fn pods_that_ask_for_nothing_get_no_placeholder() {
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "namespace": "shop"},
        "spec": {"containers": [{"name": "a", "image": "x"}]},
    }))
    .unwrap();
    let pool = ("p".to_owned(), "v".to_owned());
    let made = placeholders(
        &view(),
        &pool,
        &event(),
        &[bare],
        &MakeBeforeBreakConfig::default(),
        at("2026-11-23T10:00:05Z"),
    );
    assert!(made.is_empty());
}

#[test]
fn group_ids_are_stable_label_values() {
    let g = group(
        "ip-10-0-0-1.ec2.internal",
        "1e5527d7-bb36-4607-3370-4164db56a40e",
    );
    assert_eq!(g.len(), 12);
    assert!(g.chars().all(|c| c.is_ascii_hexdigit()));
    // Pinned: a change would orphan the placeholders of a running release on upgrade.
    assert_eq!(group("n1", "e-1"), "84fc95b7151f");
    assert_ne!(group("n1", "e-1"), group("n1", "e-2"));
    assert_ne!(group("n1e", "-1"), group("n1", "e-1"));
}
