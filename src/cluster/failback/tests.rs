use super::*;

fn pod(name: &str, node: &str, affinity: Value, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs-1", "controller": true}]},
        "spec": {"nodeName": node, "affinity": affinity,
                 "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]},
        "status": {"phase": "Running"},
    }))
    .unwrap()
}

fn prefers_spot() -> Value {
    json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}]}},
        {"weight": 100, "preference": {"matchExpressions": [{"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}]}},
    ]}})
}

#[test]
fn a_preferred_spot_term_or_the_annotation_marks_a_pod_that_prefers_spot() {
    let p = pod("a", "n", prefers_spot(), json!({}));
    let exprs = spot_preference(&p).unwrap();
    assert_eq!(exprs.len(), 1);
    assert_eq!(exprs[0]["key"], "eks.amazonaws.com/capacityType");
    assert_eq!(
        spot_preference(&pod("b", "n", Value::Null, json!({}))),
        None
    );
    let annotated = pod(
        "c",
        "n",
        Value::Null,
        json!({PREFER_SPOT_ANNOTATION: "true"}),
    );
    assert!(spot_preference(&annotated).is_some());
}

#[test]
fn candidates_are_running_pods_that_prefer_spot_on_on_demand_nodes_grouped_by_owner() {
    let pods = vec![
        pod("a", "od-1", prefers_spot(), json!({})),
        pod("b", "od-2", prefers_spot(), json!({})),
        pod("c", "spot-1", prefers_spot(), json!({})),
        pod("d", "od-1", Value::Null, json!({})),
    ];
    let owners = candidates(&pods, |n| n.starts_with("od-"));
    assert_eq!(owners.len(), 1);
    let names: Vec<String> = owners[0].pods.iter().map(ResourceExt::name_any).collect();
    assert_eq!(
        names,
        ["a", "b"],
        "not the pod already on Spot, nor one without a preference"
    );
    assert_eq!(
        owners[0].running, 4,
        "every Running pod of the owner counts"
    );
}

#[test]
fn the_placeholder_requires_spot_and_asks_for_the_pod_it_makes_room_for() {
    let pods = vec![
        pod("a", "od-1", prefers_spot(), json!({})),
        pod("b", "od-1", prefers_spot(), json!({})),
    ];
    let owners = candidates(&pods, |_| true);
    let p = placeholder(
        &owners[0],
        &owners[0].pods[1],
        1,
        "pc",
        "pause",
        Timestamp::UNIX_EPOCH,
    );
    let requests = &p["spec"]["containers"][0]["resources"]["requests"];
    assert_eq!(
        requests["cpu"], "500m",
        "one placeholder per pod, its own size"
    );
    assert_eq!(requests["memory"], (1u64 << 30).to_string());
    assert!(p["metadata"]["name"].as_str().unwrap().ends_with("-1"));
    let exprs = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"];
    assert_eq!(exprs[0]["key"], "eks.amazonaws.com/capacityType");
    assert_eq!(exprs[1]["key"], "eviction-router/at-risk");
    assert!(p["metadata"]["labels"][FAILBACK_LABEL].is_string());
}

#[test]
fn windows_are_utc_times_of_day_and_may_wrap_midnight() {
    let config = FailbackConfig {
        windows: vec!["22:00-02:00".into(), "09:00-10:30".into()],
        ..FailbackConfig::default()
    };
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    assert!(config.in_window(at("2026-11-23T23:30:00Z")));
    assert!(config.in_window(at("2026-11-23T01:59:00Z")));
    assert!(config.in_window(at("2026-11-23T10:00:00Z")));
    assert!(!config.in_window(at("2026-11-23T10:30:00Z")));
    assert!(!config.in_window(at("2026-11-23T12:00:00Z")));
    assert!(FailbackConfig::default().in_window(at("2026-11-23T12:00:00Z")));
    assert_eq!(parse_window("25:00-01:00"), None);
    assert!(
        FailbackConfig {
            windows: vec!["9-10".into()],
            ..FailbackConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn a_pool_counts_as_noticed_until_a_whole_dwell_was_watched() {
    let start: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
    let notices = Notices::new(start);
    assert_eq!(notices.last("spot"), start, "a new leader knows no history");
    notices.saw("spot", start + SignedDuration::from_secs(60));
    notices.saw("spot", start + SignedDuration::from_secs(30));
    assert_eq!(notices.last("spot"), start + SignedDuration::from_secs(60));
}
