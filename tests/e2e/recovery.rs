//! Proactive recovery against the fake API server with the chart's RBAC enforced: the Spot
//! siblings of an interrupted Node are sheltered for a window and released after it; a drain
//! makes placeholder pods for the Node's pods first, waits for them (or for its latest start),
//! and the placeholders are swept once the pods had time to take their room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eviction_router::ack::Outcome;
use eviction_router::cluster::Emitted;
use eviction_router::cluster::config::{MakeBeforeBreakConfig, ShelterConfig};
use eviction_router::config::{ClusterConfig, ClusterMode};
use eviction_router::event::{Kind, Provider};
use eviction_router::metrics::Metrics;
use eviction_router::router::Router;
use fake_apiserver::FakeApiServer;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::cluster::{chart_rbac, router_enforcing};
use crate::support::{eventually, fixture, handle};

const NAMESPACE: &str = "eviction-router";

/// An EKS managed node group Node (not Karpenter): Spot when `spot`.
fn node(name: &str, instance: &str, zone: &str, spot: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "eks.amazonaws.com/nodegroup": if spot { "spot-m5" } else { "on-demand" },
            "eks.amazonaws.com/capacityType": if spot { "SPOT" } else { "ON_DEMAND" },
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": zone,
        }},
        "spec": {"providerID": format!("aws:///{zone}/{instance}"),
                 "taints": [{"key": "team.example/dedicated", "value": "web", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "29"}},
    })
}

fn config() -> ClusterConfig {
    ClusterConfig {
        mode: ClusterMode::Kubernetes,
        drain_margin_seconds: 1,
        drain_timeout_seconds: 30,
        namespace: Some(NAMESPACE.into()),
        ..ClusterConfig::default()
    }
}

fn router(fake: &FakeApiServer, metrics: Arc<Metrics>, config: &ClusterConfig) -> Router {
    router_enforcing(fake, metrics, config, chart_rbac(), watch::channel(true).1)
}

/// The Spot warning fixture for `instance` in `zone`, occurred at `at`.
fn spot_warning(id: &str, instance: &str, zone: &str, at: Timestamp) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = json!(id);
    v["time"] = json!(at.to_string());
    v["detail"]["instance-id"] = json!(instance);
    v["resources"] = json!([format!("arn:aws:ec2:{zone}:instance/{instance}")]);
    v.to_string()
}

fn has_taint(fake: &FakeApiServer, node: &str, key: &str, effect: &str) -> bool {
    let n = fake.get("nodes", None, node).unwrap();
    n["spec"]["taints"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

fn assert_no_forbidden(fake: &FakeApiServer) {
    let denied = fake.denied();
    assert!(denied.is_empty(), "the chart's RBAC refused: {denied:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spot_siblings_of_an_interrupted_node_are_sheltered_for_the_window_then_released() {
    let fake = FakeApiServer::new();
    let zone = "us-east-1a";
    fake.insert(node("doomed", "i-00000000000000001", zone, true))
        .unwrap();
    fake.insert(node("sibling-1", "i-00000000000000002", zone, true))
        .unwrap();
    fake.insert(node("sibling-2", "i-00000000000000003", zone, true))
        .unwrap();
    fake.insert(node(
        "other-zone",
        "i-00000000000000004",
        "us-east-1b",
        true,
    ))
    .unwrap();
    fake.insert(node("on-demand", "i-00000000000000005", zone, false))
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        shelter: ShelterConfig {
            window_seconds: 4,
            ..ShelterConfig::default()
        },
        ..config()
    };
    let router = router(&fake, metrics.clone(), &config);
    let mut emitted = router.take_replacements().unwrap();
    let body = spot_warning("shelter-1", "i-00000000000000001", zone, Timestamp::now());
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    let started = Instant::now();

    let key = "eviction-router/at-risk";
    eventually(
        Duration::from_secs(10),
        "both siblings sheltered",
        async || {
            (has_taint(&fake, "sibling-1", key, "PreferNoSchedule")
                && has_taint(&fake, "sibling-2", key, "PreferNoSchedule"))
            .then_some(())
        },
    )
    .await;
    for name in ["sibling-1", "sibling-2"] {
        let n = fake.get("nodes", None, name).unwrap();
        assert_eq!(n["metadata"]["labels"][key], "true");
        assert!(
            has_taint(&fake, name, "team.example/dedicated", "NoSchedule"),
            "another controller's taint is kept"
        );
    }
    for name in ["doomed", "other-zone", "on-demand"] {
        assert!(
            !has_taint(&fake, name, key, "PreferNoSchedule"),
            "{name} is not a sibling"
        );
    }
    // The stream hears of it once.
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Emitted::PoolAtRisk(e)) = emitted.recv().await {
                return e;
            }
        }
    })
    .await
    .expect("a pool_at_risk event");
    assert_eq!(event.data.kind, Kind::PoolAtRisk);
    assert_eq!(event.data.details["instance_type"], "m5.large");
    assert_eq!(event.data.details["zone"], zone);
    assert_eq!(event.data.details["nodes"], 2);
    assert!(
        metrics
            .encode()
            .contains("eviction_router_nodes_sheltered_total 2")
    );

    // A second notice in the same pool a moment later writes nothing again.
    fake.clear_requests();
    let body = spot_warning("shelter-2", "i-00000000000000002", zone, Timestamp::now());
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );

    // The window (4 s from the notice) ends: the reconciler lifts the shelter.
    eventually(Duration::from_secs(15), "the shelter lifted", async || {
        (!has_taint(&fake, "sibling-2", key, "PreferNoSchedule")).then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the window ends"
    );
    let n = fake.get("nodes", None, "sibling-2").unwrap();
    assert!(n["metadata"]["labels"].get(key).is_none());
    assert!(n["metadata"]["annotations"].get(key).is_none());
    assert!(has_taint(
        &fake,
        "sibling-2",
        "team.example/dedicated",
        "NoSchedule"
    ));
    let sibling_1_writes = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == "/api/v1/nodes/sibling-2")
        .count();
    assert_eq!(
        sibling_1_writes, 1,
        "only the lift, no second shelter of the same window"
    );
    assert_no_forbidden(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn shelter_off_and_excluded_pools_write_nothing_to_siblings() {
    for config in [
        ClusterConfig {
            shelter: ShelterConfig {
                enabled: false,
                ..ShelterConfig::default()
            },
            ..config()
        },
        ClusterConfig {
            shelter: ShelterConfig {
                exclude_pools: vec!["spot-m5".into()],
                ..ShelterConfig::default()
            },
            ..config()
        },
    ] {
        let fake = FakeApiServer::new();
        let zone = "us-east-1a";
        fake.insert(node("doomed", "i-00000000000000001", zone, true))
            .unwrap();
        fake.insert(node("sibling-1", "i-00000000000000002", zone, true))
            .unwrap();
        let router = router(&fake, Arc::new(Metrics::new()), &config);
        let body = spot_warning("s", "i-00000000000000001", zone, Timestamp::now());
        assert_eq!(
            handle(&router, Provider::Aws, &body).await,
            Outcome::Handled
        );
        // The drain of the doomed Node (no pods) ends; by then a shelter would have been written.
        eventually(Duration::from_secs(10), "the drain recorded", async || {
            let n = fake.get("nodes", None, "doomed").unwrap();
            n["metadata"]["annotations"]
                .get("eviction-router/drain")
                .map(|_| ())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!has_taint(
            &fake,
            "sibling-1",
            "eviction-router/at-risk",
            "PreferNoSchedule"
        ));
    }
}

/// The placeholder pods in the router's namespace.
fn placeholders(fake: &FakeApiServer) -> Vec<Value> {
    fake.list("pods", Some(NAMESPACE))
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["eviction-router/placeholder"].is_string())
        .collect()
}

/// A pod of `app` on `node`, asking for some room.
fn pod(name: &str, node: &str, grace: i64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-web", "controller": true}]},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": grace,
                 "tolerations": [{"key": "team.example/dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
                 "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn namespaces(fake: &FakeApiServer) {
    for ns in [NAMESPACE, "shop"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_capacity_coming_the_drain_evicts_at_its_latest_start_and_the_placeholders_go() {
    let fake = FakeApiServer::new();
    namespaces(&fake);
    fake.insert(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "eviction-router-placeholder"}, "value": -10, "preemptionPolicy": "Never",
    }))
    .unwrap();
    let zone = "us-east-1a";
    fake.insert(node("doomed", "i-00000000000000001", zone, true))
        .unwrap();
    fake.insert(pod("web-1", "doomed", 5)).unwrap();
    fake.insert(pod("web-2", "doomed", 5)).unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        make_before_break: MakeBeforeBreakConfig {
            settle_seconds: 1,
            ..MakeBeforeBreakConfig::default()
        },
        ..config()
    };
    let router = router(&fake, metrics.clone(), &config);
    // Occurred 110 s ago: the deadline is 10 s away, the drain stops at 9 s (margin 1 s), and
    // evictions with a 5 s grace start at the latest 4 s from now. Nothing schedules the
    // placeholders here, so the drain waits until then.
    let now = Timestamp::now();
    let body = spot_warning(
        "mbb-1",
        "i-00000000000000001",
        zone,
        now - SignedDuration::from_secs(110),
    );
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    let latest_start = now + SignedDuration::from_secs(4);

    let made = eventually(Duration::from_secs(5), "a placeholder", async || {
        let p = placeholders(&fake);
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(
        made.len(),
        1,
        "both pods share their constraints: one placeholder"
    );
    let p = &made[0];
    assert_eq!(
        p["spec"]["priorityClassName"],
        "eviction-router-placeholder"
    );
    assert_eq!(
        p["spec"]["priority"], -10,
        "resolved by the API server's priority admission"
    );
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    assert_eq!(
        p["spec"]["nodeSelector"]["eks.amazonaws.com/nodegroup"],
        "spot-m5"
    );
    assert_eq!(p["spec"]["tolerations"][0]["key"], "team.example/dedicated");
    assert!(
        fake.evictions().is_empty(),
        "no eviction while the capacity is awaited"
    );

    eventually(Duration::from_secs(15), "both pods evicted", async || {
        (fake.evictions().len() == 2).then_some(())
    })
    .await;
    for e in fake.evictions() {
        let at = Timestamp::try_from(e.at).unwrap();
        assert!(
            at >= latest_start - SignedDuration::from_millis(300),
            "evicted at {at}, before the latest start {latest_start}"
        );
        assert!(e.grace_period_seconds.unwrap() <= 5);
    }
    assert!(
        metrics
            .encode()
            .contains("capacity_wait_seconds_count{outcome=\"latest_start\"} 1")
    );
    // Drained, then settled: the placeholder is swept.
    eventually(
        Duration::from_secs(20),
        "the placeholder swept",
        async || placeholders(&fake).is_empty().then_some(()),
    )
    .await;
    assert!(
        metrics
            .encode()
            .contains("placeholders_removed_total{reason=\"settled\"} 1")
    );
    assert_no_forbidden(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn karpenter_nodes_and_a_missing_priority_class_get_no_placeholders_and_no_wait() {
    let fake = FakeApiServer::new();
    namespaces(&fake);
    let zone = "us-east-1a";
    // No PriorityClass: the API server refuses the placeholder and the drain goes on at once.
    fake.insert(node("doomed", "i-00000000000000001", zone, true))
        .unwrap();
    let mut karpenter = node("karpenter", "i-00000000000000002", zone, true);
    karpenter["metadata"]["labels"]["karpenter.sh/nodepool"] = json!("default");
    fake.insert(karpenter).unwrap();
    fake.insert(pod("web-1", "doomed", 5)).unwrap();
    fake.insert(pod("web-2", "karpenter", 5)).unwrap();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone(), &config());
    let now = Timestamp::now();
    for (id, instance) in [
        ("k-1", "i-00000000000000001"),
        ("k-2", "i-00000000000000002"),
    ] {
        let body = spot_warning(id, instance, zone, now);
        assert_eq!(
            handle(&router, Provider::Aws, &body).await,
            Outcome::Handled
        );
    }
    eventually(Duration::from_secs(10), "both pods evicted", async || {
        (fake.evictions().len() == 2).then_some(())
    })
    .await;
    let text = metrics.encode();
    assert!(
        text.contains("placeholders_total{outcome=\"refused\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("placeholders_total{outcome=\"skipped_karpenter\"} 1"),
        "{text}"
    );
    assert!(placeholders(&fake).is_empty());
}

fn karpenter_node(name: &str, instance: &str, owned_by_claim: bool) -> Value {
    let mut n = node(name, instance, "us-east-1a", true);
    if owned_by_claim {
        // A NodeClaim owner alone, no NodePool label: still Karpenter's.
        n["metadata"]["ownerReferences"] = json!([{"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "name": name, "uid": format!("claim-{name}"), "controller": true}]);
    } else {
        n["metadata"]["labels"]["karpenter.sh/nodepool"] = json!("default");
    }
    n
}

fn node_writes(fake: &FakeApiServer, node: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == format!("/api/v1/nodes/{node}"))
        .count()
}

fn reasons(fake: &FakeApiServer) -> Vec<String> {
    fake.list("events", Some("default"))
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_observe_mode_karpenter_nodes_are_recorded_but_never_tainted_cordoned_or_drained() {
    use eviction_router::cluster::config::KarpenterMode;
    let fake = FakeApiServer::new();
    namespaces(&fake);
    fake.insert(karpenter_node("k1", "i-00000000000000001", false))
        .unwrap();
    fake.insert(karpenter_node("k2", "i-00000000000000002", true))
        .unwrap();
    fake.insert(pod("web-1", "k1", 5)).unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        karpenter: KarpenterMode::Observe,
        ..config()
    };
    let router = router(&fake, metrics.clone(), &config);
    for (id, instance) in [
        ("o-1", "i-00000000000000001"),
        ("o-2", "i-00000000000000002"),
    ] {
        let body = spot_warning(id, instance, "us-east-1a", Timestamp::now());
        assert_eq!(
            handle(&router, Provider::Aws, &body).await,
            Outcome::Handled
        );
    }
    eventually(Duration::from_secs(5), "the Events recorded", async || {
        (reasons(&fake)
            .iter()
            .filter(|r| *r == "SpotInterruption")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(node_writes(&fake, "k1"), 0, "no taint, no cordon");
    assert_eq!(
        node_writes(&fake, "k2"),
        0,
        "a NodeClaim-owned Node is Karpenter's too"
    );
    assert!(fake.evictions().is_empty(), "no drain");
    assert!(
        metrics
            .encode()
            .contains("actions_total{action=\"observe\",outcome=\"ok\"} 2")
    );
    assert_no_forbidden(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_auto_mode_karpenter_seen_acting_on_an_interruption_switches_to_observing() {
    let fake = FakeApiServer::new();
    namespaces(&fake);
    fake.insert(karpenter_node("k1", "i-00000000000000001", false))
        .unwrap();
    fake.insert(karpenter_node("k2", "i-00000000000000002", false))
        .unwrap();
    let router = router(&fake, Arc::new(Metrics::new()), &config());
    // Until Karpenter is seen acting, the router acts on its Nodes as on any other.
    let body = spot_warning("a-1", "i-00000000000000001", "us-east-1a", Timestamp::now());
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    assert!(has_taint(
        &fake,
        "k1",
        "eviction-router/interruption",
        "NoSchedule"
    ));
    // Karpenter's interruption controller handles the same notice: its termination taint.
    let mut k1 = fake.get("nodes", None, "k1").unwrap();
    k1["spec"]["taints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}));
    fake.update(k1).unwrap();
    eventually(
        Duration::from_secs(5),
        "the switch said in an Event",
        async || {
            reasons(&fake)
                .iter()
                .any(|r| r == "KarpenterHandlesInterruptions")
                .then_some(())
        },
    )
    .await;
    // The next Karpenter Node's notice is observed only.
    let body = spot_warning("a-2", "i-00000000000000002", "us-east-1a", Timestamp::now());
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(node_writes(&fake, "k2"), 0);
    assert_no_forbidden(&fake);
}
