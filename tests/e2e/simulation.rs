//! Proactive recovery in the fake API server's cluster simulation (scheduler, kubelet,
//! ReplicaSet-like workloads, disruption controller, Cluster Autoscaler), with the chart's RBAC
//! enforced: make before break evicts once the replacement capacity runs, a router restart in
//! the middle leaves nothing behind, and failback moves pods back to Spot without breaking a
//! PodDisruptionBudget and stops at the kill switch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eviction_router::ack::Outcome;
use eviction_router::cluster::config::MakeBeforeBreakConfig;
use eviction_router::cluster::failback::FailbackConfig;
use eviction_router::config::{ClusterConfig, ClusterMode};
use eviction_router::event::Provider;
use eviction_router::metrics::Metrics;
use eviction_router::router::Router;
use fake_apiserver::sim::{Ending, PoolSpec, Resources, Sim, SimConfig, WorkloadSpec};
use fake_apiserver::{FakeApiServer, Rbac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::cluster::{ROUTER_USER, chart_rbac, router_enforcing};
use crate::support::{eventually, fixture, handle};

const NAMESPACE: &str = "eviction-router";
const GI: i64 = 1 << 30;

/// The chart rendered with every optional feature on (failback among them).
fn all_features_rbac() -> Rbac {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chart/all-features.yaml"
    );
    Rbac::from_manifests(&std::fs::read_to_string(path).unwrap(), ROUTER_USER).unwrap()
}

fn setup(fake: &FakeApiServer) {
    for ns in [NAMESPACE, "shop"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap();
    }
    fake.insert(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "eviction-router-placeholder"}, "value": -10, "preemptionPolicy": "Never",
    }))
    .unwrap();
}

fn spot_pool(name: &str, max: usize) -> PoolSpec {
    PoolSpec::new(name, Resources::new(2000, 8 * GI, 29), max)
        .label("eks.amazonaws.com/capacityType", "SPOT")
        .label("node.kubernetes.io/instance-type", "m5.large")
        .label("topology.kubernetes.io/zone", "us-east-1a")
        .priority(10)
}

fn on_demand_pool(name: &str, max: usize) -> PoolSpec {
    PoolSpec::new(name, Resources::new(2000, 8 * GI, 29), max)
        .label("eks.amazonaws.com/capacityType", "ON_DEMAND")
        .label("node.kubernetes.io/instance-type", "m5.large")
        .label("topology.kubernetes.io/zone", "us-east-1a")
        .priority(1)
}

fn config() -> ClusterConfig {
    ClusterConfig {
        mode: ClusterMode::Kubernetes,
        drain_margin_seconds: 1,
        namespace: Some(NAMESPACE.into()),
        make_before_break: MakeBeforeBreakConfig {
            settle_seconds: 1,
            ..MakeBeforeBreakConfig::default()
        },
        ..ClusterConfig::default()
    }
}

fn router(
    fake: &FakeApiServer,
    metrics: Arc<Metrics>,
    config: &ClusterConfig,
    rbac: Rbac,
) -> Router {
    router_enforcing(fake, metrics, config, rbac, watch::channel(true).1)
}

/// The Spot warning for the simulated Node `node`, with its deadline `notice` from now.
fn warning_for(fake: &FakeApiServer, id: &str, node: &str, notice: SignedDuration) -> String {
    let n = fake.get("nodes", None, node).unwrap();
    let pid = n["spec"]["providerID"].as_str().unwrap();
    let instance = pid.rsplit('/').next().unwrap();
    let zone = pid.split('/').nth(3).unwrap();
    let mut v: Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = json!(id);
    // The deadline is the warning's time plus two minutes.
    v["time"] = json!((Timestamp::now() + notice - SignedDuration::from_secs(120)).to_string());
    v["detail"]["instance-id"] = json!(instance);
    v["resources"] = json!([format!("arn:aws:ec2:{zone}:instance/{instance}")]);
    v.to_string()
}

fn placeholders(fake: &FakeApiServer) -> usize {
    fake.list("pods", Some(NAMESPACE))
        .iter()
        .filter(|p| p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "eviction-router")
        .count()
}

/// Waits until every pod of the workloads runs (no gap open, no pod Pending).
async fn all_running(fake: &FakeApiServer, sim: &Sim, want: usize, what: &str) {
    eventually(Duration::from_secs(20), what, async || {
        let running = fake
            .list("pods", Some("shop"))
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running == want && sim.report().open_gaps().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn make_before_break_evicts_once_the_replacement_capacity_runs() {
    let fake = FakeApiServer::new();
    setup(&fake);
    let sim = fake.simulate(SimConfig {
        launch_delay: Duration::from_millis(800),
        boot_delay: Duration::from_millis(400),
        ..SimConfig::default()
    });
    sim.add_pool(spot_pool("spot", 10));
    let nodes = sim.add_nodes("spot", 2);
    // Six pods of 600m: three per Node fill each (2 CPUs), no room to spare.
    let mut web = WorkloadSpec::new("shop", "web", 6, Resources::new(600, GI, 0));
    web.termination_grace_period_seconds = 2;
    sim.add_workload(web);
    all_running(&fake, &sim, 6, "the workload running").await;
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone(), &config(), chart_rbac());

    // A 12 s notice: with a 1 s margin and 2 s grace, the latest start is 9 s away; the
    // autoscaler has a Node Ready in about 1.3 s.
    let doomed = &nodes[0];
    sim.mark_doomed(doomed);
    let body = warning_for(&fake, "mbb-sim", doomed, SignedDuration::from_secs(12));
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    let noticed = sim.started().elapsed();

    eventually(
        Duration::from_secs(15),
        "the doomed Node drained",
        async || {
            let n = fake.get("nodes", None, doomed)?;
            n["metadata"]["annotations"]
                .get("eviction-router/drain")
                .map(|_| ())
        },
    )
    .await;
    all_running(&fake, &sim, 6, "every pod running again").await;
    let report = sim.report();
    let evicted: Vec<_> = report
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Evicted)
        .collect();
    assert_eq!(evicted.len(), 3, "{:?}", report.disruptions);
    let ready = report
        .launches
        .iter()
        .filter_map(|l| l.ready_at)
        .min()
        .expect("the autoscaler launched a Node for the placeholder");
    for d in &evicted {
        assert!(
            d.at >= ready,
            "evicted at {:?}, before the new Node was Ready at {ready:?}",
            d.at
        );
        assert!(
            d.at < noticed + Duration::from_secs(9),
            "evicted after the latest start"
        );
        // The replacement preempted the placeholder on the new Node: it ran within moments.
        let gap = d.unavailability().unwrap();
        assert!(
            gap < Duration::from_millis(800),
            "{} was unavailable {gap:?}",
            d.pod
        );
        assert_ne!(d.replacement_node.as_deref(), Some(doomed.as_str()));
    }
    assert!(
        report.bindings_to_doomed().is_empty(),
        "{:?}",
        report.bindings_to_doomed()
    );
    assert!(report.violations_without_node_loss().is_empty());
    assert!(
        metrics
            .encode()
            .contains("capacity_wait_seconds_count{outcome=\"ready\"} 1"),
        "{}",
        metrics.encode()
    );
    eventually(Duration::from_secs(10), "no placeholder left", async || {
        (placeholders(&fake) == 0).then_some(())
    })
    .await;
    assert!(fake.denied().is_empty(), "{:?}", fake.denied());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_restarted_while_waiting_for_capacity_resumes_and_leaves_nothing_behind() {
    let fake = FakeApiServer::new();
    setup(&fake);
    let sim = fake.simulate(SimConfig {
        // Slow capacity: the first router is gone long before it comes.
        launch_delay: Duration::from_millis(3000),
        boot_delay: Duration::from_millis(500),
        ..SimConfig::default()
    });
    sim.add_pool(spot_pool("spot", 10));
    let nodes = sim.add_nodes("spot", 1);
    let mut web = WorkloadSpec::new("shop", "web", 3, Resources::new(600, GI, 0));
    web.termination_grace_period_seconds = 1;
    sim.add_workload(web);
    all_running(&fake, &sim, 3, "the workload running").await;

    let doomed = &nodes[0];
    let first = router(&fake, Arc::new(Metrics::new()), &config(), chart_rbac());
    let body = warning_for(&fake, "restart", doomed, SignedDuration::from_secs(20));
    assert_eq!(handle(&first, Provider::Aws, &body).await, Outcome::Handled);
    eventually(Duration::from_secs(5), "a placeholder", async || {
        (placeholders(&fake) == 1).then_some(())
    })
    .await;
    assert!(fake.evictions().is_empty());
    drop(first);

    // The next router resumes from the Node and the placeholder as they are.
    let metrics = Arc::new(Metrics::new());
    let _second = router(&fake, metrics.clone(), &config(), chart_rbac());
    eventually(
        Duration::from_secs(20),
        "the doomed Node drained",
        async || {
            let n = fake.get("nodes", None, doomed)?;
            n["metadata"]["annotations"]
                .get("eviction-router/drain")
                .map(|_| ())
        },
    )
    .await;
    all_running(&fake, &sim, 3, "every pod running again").await;
    eventually(Duration::from_secs(10), "no placeholder left", async || {
        (placeholders(&fake) == 0).then_some(())
    })
    .await;
    // One placeholder was ever made: the second router found the first one's.
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("/api/v1/namespaces/{NAMESPACE}/pods"))
        .count();
    assert!(creates <= 2, "{creates} creates");
    assert_eq!(
        fake.list("pods", Some(NAMESPACE)).len(),
        0,
        "nothing is left in the router's namespace"
    );
    assert!(fake.denied().is_empty(), "{:?}", fake.denied());
}

fn prefers_spot() -> Value {
    json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}]}}]}})
}

fn failback_config() -> ClusterConfig {
    ClusterConfig {
        failback: FailbackConfig {
            enabled: true,
            dwell_seconds: 1,
            interval_seconds: 1,
            max_pods_per_interval: 10,
            max_nodes_per_interval: 10,
            capacity_timeout_seconds: 10,
            ..FailbackConfig::default()
        },
        ..config()
    }
}

/// Where the workload's pods run, by capacity type.
fn on(fake: &FakeApiServer, capacity: &str) -> usize {
    let nodes: BTreeMap<String, String> = fake
        .list("nodes", None)
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_owned(),
                n["metadata"]["labels"]["eks.amazonaws.com/capacityType"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    fake.list("pods", Some("shop"))
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .and_then(|n| nodes.get(n))
                .is_some_and(|c| c == capacity)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn failback_moves_pods_back_to_spot_within_their_budget_and_stops_at_the_kill_switch() {
    let fake = FakeApiServer::new();
    setup(&fake);
    let sim = fake.simulate(SimConfig::default());
    // A Spot outage: only on-demand capacity can be had, so the pods land there.
    sim.add_pool(on_demand_pool("od", 10));
    let mut web = WorkloadSpec::new("shop", "web", 4, Resources::new(600, GI, 0));
    web.affinity = prefers_spot();
    web.labels.insert("tier".into(), "web".into());
    sim.add_workload(web);
    let selector: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
    sim.add_pdb("shop", "web", selector, 3);
    all_running(&fake, &sim, 4, "the workload on on-demand").await;
    assert_eq!(on(&fake, "ON_DEMAND"), 4);

    // The kill switch is on from the start: nothing moves.
    let mut ns = fake.get("namespaces", None, NAMESPACE).unwrap();
    ns["metadata"]["annotations"] = json!({"eviction-router/failback": "paused"});
    fake.update(ns).unwrap();
    let metrics = Arc::new(Metrics::new());
    let _router = router(
        &fake,
        metrics.clone(),
        &failback_config(),
        all_features_rbac(),
    );
    // Spot returns.
    sim.add_pool(spot_pool("spot", 10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(on(&fake, "ON_DEMAND"), 4, "paused: nothing moved");
    assert!(fake.evictions().is_empty());

    // Lifting the switch: every pod ends on Spot, one at a time, the budget never broken.
    let mut ns = fake.get("namespaces", None, NAMESPACE).unwrap();
    ns["metadata"]["annotations"] = json!({});
    fake.update(ns).unwrap();
    eventually(Duration::from_secs(30), "every pod on Spot", async || {
        (on(&fake, "SPOT") == 4).then_some(())
    })
    .await;
    all_running(&fake, &sim, 4, "every pod running").await;
    let report = sim.report();
    assert!(
        report.violations_without_node_loss().is_empty(),
        "{:?}",
        report.pdb_violations
    );
    let evicted = report
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Evicted)
        .count();
    assert_eq!(evicted, 4, "each pod moved once: {:?}", report.disruptions);
    eventually(Duration::from_secs(10), "the move recorded", async || {
        let text = metrics.encode();
        (text.contains("eviction_router_failback_pods_moved_total 4")
            && text.contains("failback_moves_total{outcome=\"moved\"} 1"))
        .then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "no placeholder left", async || {
        (placeholders(&fake) == 0).then_some(())
    })
    .await;
    // Nothing thrashes: later rounds find no candidate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim.report()
            .disruptions
            .iter()
            .filter(|d| d.ending == Ending::Evicted)
            .count(),
        4
    );
    assert!(fake.denied().is_empty(), "{:?}", fake.denied());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notice_for_the_spot_pool_stops_failback_between_two_evictions() {
    let fake = FakeApiServer::new();
    setup(&fake);
    let sim = fake.simulate(SimConfig::default());
    sim.add_pool(on_demand_pool("od", 10));
    let mut web = WorkloadSpec::new("shop", "web", 6, Resources::new(600, GI, 0));
    web.affinity = prefers_spot();
    sim.add_workload(web);
    all_running(&fake, &sim, 6, "the workload on on-demand").await;
    let metrics = Arc::new(Metrics::new());
    // A dwell of 5 s: the leader's own start counts as a notice, so the first move comes 5 s
    // after it; the notice below then holds failback off for 5 s more.
    let config = ClusterConfig {
        failback: FailbackConfig {
            dwell_seconds: 5,
            ..failback_config().failback
        },
        ..failback_config()
    };
    let router = router(&fake, metrics.clone(), &config, all_features_rbac());
    sim.add_pool(spot_pool("spot", 10));
    eventually(Duration::from_secs(20), "the first pod moved", async || {
        (!fake.evictions().is_empty()).then_some(())
    })
    .await;
    // Spot is reclaimed again: a notice for a Spot Node that now runs a moved pod.
    let spot_node = eventually(Duration::from_secs(10), "a Spot Node", async || {
        fake.list("nodes", None)
            .iter()
            .find(|n| n["metadata"]["labels"]["eks.amazonaws.com/capacityType"] == "SPOT")
            .and_then(|n| n["metadata"]["name"].as_str().map(str::to_owned))
    })
    .await;
    let body = warning_for(
        &fake,
        "reclaim-again",
        &spot_node,
        SignedDuration::from_secs(60),
    );
    assert_eq!(
        handle(&router, Provider::Aws, &body).await,
        Outcome::Handled
    );
    let at_notice = fake.evictions().len();
    eventually(Duration::from_secs(10), "the move aborted", async || {
        metrics
            .encode()
            .contains("failback_moves_total{outcome=\"aborted\"} 1")
            .then_some(())
    })
    .await;
    // At most the eviction that was under way when the notice came, then nothing: the pool is
    // not quiet, and the owner was just moved.
    let failback_evictions = |fake: &FakeApiServer| {
        fake.evictions()
            .iter()
            .filter(|e| e.namespace == "shop")
            .count()
    };
    let after = failback_evictions(&fake);
    assert!(
        after <= at_notice + 1,
        "{after} evictions, {at_notice} at the notice"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The reclaimed Node's own drain evicts its pods; failback adds none.
    let drained_from_spot = sim
        .report()
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Evicted && d.node.as_deref() == Some(spot_node.as_str()))
        .count();
    assert_eq!(
        failback_evictions(&fake),
        after + drained_from_spot,
        "failback evicted nothing more after it stopped"
    );
    assert!(sim.report().violations_without_node_loss().is_empty());
}
