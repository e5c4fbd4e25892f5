//! The cluster edge through the real kube-rs stack against the in-repo fake API server (in
//! process), with the chart's rendered RBAC enforced on every request: the message path admits
//! with one patch and returns; the reconciler drains within the deadline (PDBs honoured, the
//! grace period sent), schedules maintenance, undoes a cancel, resumes after a leader change,
//! and retries what failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eviction_router::ack::Outcome;
use eviction_router::cluster::Cluster;
use eviction_router::cluster::budget::{Budget, Clients};
use eviction_router::config::{ClusterConfig, ClusterMode, RouterConfig};
use eviction_router::event::Provider;
use eviction_router::metrics::Metrics;
use eviction_router::router::Router;
use eviction_router::sinks::Sinks;
use fake_apiserver::{FakeApiServer, Rbac};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::{eventually, fixture, handle};

const INSTANCE: &str = "i-0b662ef9931388ba0";
const NODE: &str = "ip-10-0-1-5.ec2.internal";
/// The identity the chart gives the router.
pub const ROUTER_USER: &str = "system:serviceaccount:eviction-router:eviction-router";

/// The chart's rendered RBAC, as the API server would enforce it for the router.
pub fn chart_rbac() -> Rbac {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/manifests/eviction-router.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    Rbac::from_manifests(&yaml, ROUTER_USER).unwrap()
}

fn node(name: &str, provider_id: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "spot"}},
        "spec": {"providerID": provider_id, "taints": [{"key": "team.example/dedicated", "value": "ml", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn pod(name: &str, owner_kind: &str, extra_annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "labels": {"app": name},
            "annotations": extra_annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "owner", "uid": "u"}],
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn pdb(app: &str, allowed: i64) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": app, "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1},
    })
}

fn cluster_with_pods() -> FakeApiServer {
    let fake = FakeApiServer::new();
    fake.insert(node(NODE, &format!("aws:///us-east-1b/{INSTANCE}")))
        .unwrap();
    fake.insert(node(
        "ip-10-0-2-9.ec2.internal",
        "aws:///us-east-1a/i-0aaaaaaaaaaaaaaaa",
    ))
    .unwrap();
    let mut web = pod("web", "ReplicaSet", json!({}));
    web["spec"]["terminationGracePeriodSeconds"] = json!(20);
    fake.insert(web).unwrap();
    fake.insert(pod("db", "StatefulSet", json!({}))).unwrap();
    fake.insert(pod("logs", "DaemonSet", json!({}))).unwrap();
    fake.insert(pod(
        "static",
        "Node",
        json!({"kubernetes.io/config.mirror": "abc"}),
    ))
    .unwrap();
    fake.insert(pdb("db", 0)).unwrap();
    fake
}

fn test_config() -> ClusterConfig {
    ClusterConfig {
        mode: ClusterMode::Kubernetes,
        drain_margin_seconds: 1,
        drain_timeout_seconds: 30,
        // The release namespace, as the chart deploys it (POD_NAMESPACE): its Roles are there.
        namespace: Some("eviction-router".into()),
        // These tests count the requests of the admit path and the drain; the statistics'
        // ConfigMap reads have their own test (`pools.rs`).
        pool_stats: eviction_router::cluster::stats::PoolStatsConfig {
            enabled: false,
            ..Default::default()
        },
        ..ClusterConfig::default()
    }
}

/// A router acting on `fake` (with the chart's RBAC enforced) while `active` is true.
fn router_with(
    fake: &FakeApiServer,
    metrics: Arc<Metrics>,
    config: &ClusterConfig,
    active: watch::Receiver<bool>,
) -> Router {
    router_enforcing(fake, metrics, config, chart_rbac(), active)
}

/// A router acting on `fake` with `rbac` enforced, while `active` is true.
pub fn router_enforcing(
    fake: &FakeApiServer,
    metrics: Arc<Metrics>,
    config: &ClusterConfig,
    rbac: Rbac,
    active: watch::Receiver<bool>,
) -> Router {
    fake.enforce_rbac(rbac);
    let client = kube::Client::new(fake.service(), "default");
    let budget = Budget::new(config.api_requests_per_second, config.api_burst);
    let cluster = Cluster::kubernetes(
        Clients::single(client, budget),
        config,
        metrics.clone(),
        active.clone(),
    );
    let sinks = Sinks::start(&[], metrics.clone()).unwrap();
    Router::new(&RouterConfig::default(), cluster, sinks, metrics).with_active(active)
}

fn router(fake: &FakeApiServer, metrics: Arc<Metrics>) -> Router {
    router_with(fake, metrics, &test_config(), watch::channel(true).1)
}

/// The Spot warning fixture, re-timed to `at` (its deadline is two minutes later).
fn spot_warning(id: &str, at: Timestamp) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = json!(id);
    v["time"] = json!(at.to_string());
    v.to_string()
}

fn taints(fake: &FakeApiServer) -> Vec<(String, String)> {
    let n = fake.get("nodes", None, NODE).unwrap();
    n["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap().to_owned(),
                        t["effect"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The drain annotation of a Node, parsed.
fn drain_state(fake: &FakeApiServer, node: &str) -> Option<Value> {
    let n = fake.get("nodes", None, node)?;
    let v = n["metadata"]["annotations"]["eviction-router/drain"].as_str()?;
    Some(serde_json::from_str(v).unwrap())
}

/// No request was refused by RBAC.
fn assert_no_forbidden(fake: &FakeApiServer) {
    let denied: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(denied.is_empty(), "the chart's RBAC refused: {denied:?}");
}

/// Waits until the router's Node cache is synced (a foreign event needs the cache).
async fn synced(router: &Router) {
    let mut v: Value = serde_json::from_str(&fixture("aws/rebalance-recommendation.json")).unwrap();
    v["id"] = json!(format!("sync-{}", fastrand::u64(..)));
    v["detail"]["instance-id"] = json!("i-0notinthiscluster");
    v["resources"] = json!(["arn:aws:ec2:us-east-1b:instance/i-0notinthiscluster"]);
    assert_eq!(
        handle(router, Provider::Aws, &v.to_string()).await,
        Outcome::Ignored
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interruption_is_admitted_with_one_patch_and_drained_behind_it() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    synced(&router).await;
    fake.clear_requests();
    let body = spot_warning("itn-1", Timestamp::now());
    let outcome = handle(&router, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Handled, "acknowledged once admitted");

    // The message path wrote ONE patch and read nothing.
    let node_path = format!("/api/v1/nodes/{NODE}");
    let at_ack = fake.requests();
    let writes: Vec<_> = at_ack.iter().filter(|r| r.path == node_path).collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    let n = fake.get("nodes", None, NODE).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(
        n["metadata"]["labels"]["eviction-router/draining"],
        "interruption"
    );
    let t = taints(&fake);
    assert!(
        t.contains(&("team.example/dedicated".into(), "NoSchedule".into())),
        "another controller's taint kept: {t:?}"
    );
    assert!(
        t.contains(&("eviction-router/interruption".into(), "NoSchedule".into())),
        "{t:?}"
    );
    let intent: Value = serde_json::from_str(
        n["metadata"]["annotations"]["eviction-router/intent.interruption"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(intent["event"]["id"], "itn-1");

    // The reconciler drains: web goes with its own grace period (20 s fits the deadline), the
    // budget holds db, DaemonSet and mirror pods stay.
    eventually(Duration::from_secs(10), "the web pod evicted", async || {
        fake.get("pods", Some("default"), "web")
            .is_none()
            .then_some(())
    })
    .await;
    let evictions = fake.evictions();
    let web = evictions.iter().find(|e| e.name == "web").unwrap();
    assert_eq!(web.grace_period_seconds, Some(20), "deleteOptions arrived");
    eventually(
        Duration::from_secs(10),
        "the budget's 429 seen by the drain",
        async || {
            metrics
                .encode()
                .contains("eviction_router_evictions_total{outcome=\"pdb_blocked\"}")
                .then_some(())
        },
    )
    .await;
    assert!(fake.get("pods", Some("default"), "db").is_some());
    assert!(drain_state(&fake, NODE).is_none(), "not done yet");

    // The budget allows a disruption now: the drain completes and says so on the Node.
    let mut budget = fake
        .get("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    budget["status"]["disruptionsAllowed"] = json!(1);
    fake.update(budget).unwrap();
    let state = eventually(Duration::from_secs(15), "the drain done", async || {
        drain_state(&fake, NODE)
    })
    .await;
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["for"], "itn-1");
    assert!(fake.get("pods", Some("default"), "db").is_none());
    assert!(fake.get("pods", Some("default"), "logs").is_some());
    assert!(fake.get("pods", Some("default"), "static").is_some());
    let events = eventually(Duration::from_secs(5), "the Event", async || {
        let events = fake.list("events", Some("default"));
        events
            .iter()
            .any(|e| e["reason"] == "SpotInterruption")
            .then_some(events)
    })
    .await;
    assert!(events.iter().all(|e| e["reason"] != "DrainIncomplete"));
    let text = metrics.encode();
    assert!(
        text.contains("eviction_router_evictions_total{outcome=\"evicted\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("eviction_router_actions_total{action=\"admit\",outcome=\"ok\"} 1"),
        "{text}"
    );

    // Requests for this Node besides evictions: the admit, the Event, the pod list, the
    // drain's record.
    let per_node: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/eviction") && !r.query.contains("watch"))
        .collect();
    assert!(per_node.len() <= 4, "{per_node:#?}");
    assert!(fake.requests().iter().all(|r| r.method != "PUT"));
    assert_no_forbidden(&fake);

    // A restarted (or second) router gets the same event: the Node says it holds it, and
    // nothing is written.
    let before = fake.resource_version();
    let fresh = self::router(&fake, Arc::new(Metrics::new()));
    let outcome = handle(&fresh, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Handled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.resource_version(),
        before,
        "a restarted router acted twice"
    );

    // The same event again changes nothing twice.
    let outcome = handle(&router, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Ignored);
    assert_eq!(
        fake.resource_version(),
        before,
        "a duplicate wrote to the cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pdb_blocked_drain_ends_in_drain_incomplete_at_deadline_minus_margin() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    // Two minutes' notice given 115 s ago: 5 s left, less the 1 s margin.
    let at = Timestamp::now() - jiff::SignedDuration::from_secs(115);
    let deadline = at + jiff::SignedDuration::from_secs(120);
    let started = Instant::now();
    let outcome = handle(&router, Provider::Aws, &spot_warning("itn-late", at)).await;
    assert_eq!(
        outcome,
        Outcome::Handled,
        "the message never waits for the drain"
    );
    assert!(
        fake.get("pods", Some("default"), "db").is_some(),
        "answered before the drain could end ({:?})",
        started.elapsed()
    );
    let state = eventually(Duration::from_secs(20), "the drain's end", async || {
        drain_state(&fake, NODE)
    })
    .await;
    assert_eq!(state["state"], "incomplete", "{state}");
    assert_eq!(state["pods"], json!(["default/db"]));
    let ended: Timestamp = state["at"].as_str().unwrap().parse().unwrap();
    assert!(
        ended >= deadline - jiff::SignedDuration::from_secs(1),
        "gave up at {ended}, before deadline − margin ({deadline} − 1 s)"
    );
    let incomplete = eventually(
        Duration::from_secs(5),
        "a DrainIncomplete Event",
        async || {
            fake.list("events", Some("default"))
                .into_iter()
                .find(|e| e["reason"] == "DrainIncomplete")
        },
    )
    .await;
    assert!(
        incomplete["note"].as_str().unwrap().contains("default/db"),
        "{incomplete}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("eviction_router_drain_deadline_missed_total 1"),
        "{text}"
    );
    assert!(
        text.contains("eviction_router_evictions_total{outcome=\"pdb_blocked\"}"),
        "the 429 reached the drain: {text}"
    );
    // A shortened grace period is said so: web asks for 20 s, fewer were left.
    let web = fake
        .evictions()
        .into_iter()
        .find(|e| e.name == "web")
        .unwrap();
    assert!(web.grace_period_seconds.unwrap() < 20, "{web:?}");
    eventually(
        Duration::from_secs(5),
        "a GracePeriodShortened Event",
        async || {
            fake.list("events", Some("default"))
                .into_iter()
                .find(|e| e["reason"] == "GracePeriodShortened")
        },
    )
    .await;
    assert_no_forbidden(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_instances_are_ignored_and_api_errors_are_retried() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    synced(&router).await;
    assert!(metrics.encode().contains(
        "eviction_router_events_ignored_total{provider=\"aws\",reason=\"foreign_instance\"} 1"
    ));

    // The API server fails: the outcome is retry and nothing is lost; once it recovers the same
    // message is handled.
    fake.faults().fail_next("PATCH", "/api/v1/nodes", 20);
    let body = fixture("aws/rebalance-recommendation.json");
    let outcome = handle(&router, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Retry);
    fake.faults().clear();
    let outcome = handle(&router, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Handled);
    assert!(taints(&fake).contains(&(
        "eviction-router/rebalance_recommendation".into(),
        "PreferNoSchedule".into()
    )));
    let n = fake.get("nodes", None, NODE).unwrap();
    assert_ne!(
        n["spec"]["unschedulable"], true,
        "a recommendation does not cordon"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pod_list_is_retried_never_taken_for_drained() {
    let fake = cluster_with_pods();
    fake.delete("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    synced(&router).await;
    fake.faults().fail_next("GET", "/api/v1/pods", 2);
    let outcome = handle(
        &router,
        Provider::Aws,
        &spot_warning("itn-list", Timestamp::now()),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    let state = eventually(Duration::from_secs(15), "the drain done", async || {
        drain_state(&fake, NODE)
    })
    .await;
    assert_eq!(state["state"], "done");
    assert!(
        fake.get("pods", Some("default"), "web").is_none()
            && fake.get("pods", Some("default"), "db").is_none(),
        "recorded as drained with pods left"
    );
    let lists = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/pods")
        .count();
    assert_eq!(lists, 3, "two failures, then the list that worked");
}

/// Azure's reboot scheduled event, with a status and a NotBefore (RFC 1123, blank when none).
fn azure_reboot(id: &str, status: &str, not_before: Option<Timestamp>) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("azure/scheduled-event-reboot.eventgrid.json")).unwrap();
    v["id"] = json!(id);
    v["data"]["resourceInfo"]["properties"]["EventStatus"] = json!(status);
    let nb = not_before
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default();
    v["data"]["resourceInfo"]["properties"]["NotBefore"] = json!(nb);
    v.to_string()
}

fn azure_worker(fake: &FakeApiServer) {
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-7", "labels": {}},
        "spec": {"providerID": "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/workers/providers/Microsoft.Compute/virtualMachines/worker-7"},
    }))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_maintenance_undoes_what_the_started_one_did() {
    let fake = FakeApiServer::new();
    azure_worker(&fake);
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics);
    let outcome = handle(
        &router,
        Provider::Azure,
        &azure_reboot("started", "Started", None),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    let n = fake.get("nodes", None, "worker-7").unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);

    let outcome = handle(
        &router,
        Provider::Azure,
        &azure_reboot("canceled", "Canceled", None),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    let n = fake.get("nodes", None, "worker-7").unwrap();
    assert_ne!(n["spec"]["unschedulable"], true, "{n}");
    assert!(
        n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()),
        "{n}"
    );
    assert!(
        n["metadata"]["labels"]
            .get("eviction-router/draining")
            .is_none(),
        "{n}"
    );
    let annotations = n["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        annotations
            .keys()
            .all(|k| !k.starts_with("eviction-router/")),
        "{annotations:?}"
    );
    assert_no_forbidden(&fake);
}

/// Maintenance announced, then canceled before its window: at the window's time the Node is as
/// it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_before_the_window_leaves_the_node_untouched_at_its_time() {
    let fake = FakeApiServer::new();
    azure_worker(&fake);
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        maintenance_lead_seconds: 0,
        ..test_config()
    };
    let router = router_with(&fake, metrics, &config, watch::channel(true).1);
    // NotBefore has a one-second resolution.
    let opens = Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let outcome = handle(
        &router,
        Provider::Azure,
        &azure_reboot("sched", "Scheduled", Some(opens)),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    let n = fake.get("nodes", None, "worker-7").unwrap();
    assert!(
        n["metadata"]["annotations"]
            .get("eviction-router/intent.scheduled_maintenance")
            .is_some(),
        "{n}"
    );
    let outcome = handle(
        &router,
        Provider::Azure,
        &azure_reboot("cancel", "Canceled", Some(opens)),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    let node_rv = |fake: &FakeApiServer| {
        fake.get("nodes", None, "worker-7").unwrap()["metadata"]["resourceVersion"].clone()
    };
    let untouched = node_rv(&fake);
    while Timestamp::now() < opens + jiff::SignedDuration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = fake.get("nodes", None, "worker-7").unwrap();
    assert_ne!(n["spec"]["unschedulable"], true, "{n}");
    assert!(
        n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()),
        "{n}"
    );
    assert_eq!(
        node_rv(&fake),
        untouched,
        "the Node was written after the cancel"
    );
}

/// Maintenance announced ahead: only the Event now; the taint, cordon and drain when the window
/// (less the lead) opens, from the intent kept on the Node.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_maintenance_acts_when_its_window_opens() {
    let fake = FakeApiServer::new();
    let name = "gke-prod-pool-1-7f3a2b1c-x9k2";
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"container.googleapis.com/instance_id": "2074079198322937303"}},
        "spec": {"providerID": format!("gce://skilled-adapter-452/us-east1-d/{name}")},
    }))
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        maintenance_lead_seconds: 0,
        ..test_config()
    };
    let router = router_with(&fake, metrics, &config, watch::channel(true).1);
    let mut v: Value =
        serde_json::from_str(&fixture("gcp/upcoming-maintenance-pending.logentry.json")).unwrap();
    let opens = Timestamp::now() + jiff::SignedDuration::from_secs(3);
    v["protoPayload"]["metadata"]["windowStartTime"] = json!(opens.to_string());
    let outcome = handle(&router, Provider::Gcp, &v.to_string()).await;
    assert_eq!(outcome, Outcome::Handled);
    let n = fake.get("nodes", None, name).unwrap();
    assert_ne!(
        n["spec"]["unschedulable"], true,
        "nothing before the window"
    );
    let intent = n["metadata"]["annotations"]["eviction-router/intent.scheduled_maintenance"]
        .as_str()
        .unwrap();
    assert!(intent.contains("um1pending01"), "{intent}");
    eventually(
        Duration::from_secs(5),
        "the ScheduledMaintenance Event",
        async || {
            fake.list("events", Some("default"))
                .iter()
                .any(|e| e["reason"] == "ScheduledMaintenance")
                .then_some(())
        },
    )
    .await;

    eventually(
        Duration::from_secs(15),
        "the cordon when the window opens",
        async || {
            let n = fake.get("nodes", None, name)?;
            (n["spec"]["unschedulable"] == true).then_some(())
        },
    )
    .await;
    assert!(Timestamp::now() >= opens, "acted before the window");
    let n = fake.get("nodes", None, name).unwrap();
    assert_eq!(
        n["metadata"]["labels"]["eviction-router/draining"],
        "scheduled_maintenance"
    );
    let intent: Value = serde_json::from_str(
        n["metadata"]["annotations"]["eviction-router/intent.scheduled_maintenance"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(intent["admitted"], true);
    eventually(
        Duration::from_secs(10),
        "the (empty) drain recorded",
        async || drain_state(&fake, name),
    )
    .await;
    assert_no_forbidden(&fake);
}

/// The leader stops mid-drain; the next one resumes the drain from the Node's annotations.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_mid_drain_is_resumed_by_the_next_one() {
    let fake = cluster_with_pods();
    let (a_leads, a_active) = watch::channel(true);
    let (b_leads, b_active) = watch::channel(false);
    let a = router_with(&fake, Arc::new(Metrics::new()), &test_config(), a_active);
    let b_metrics = Arc::new(Metrics::new());
    let b = router_with(&fake, b_metrics.clone(), &test_config(), b_active);
    let outcome = handle(&a, Provider::Aws, &spot_warning("itn-ha", Timestamp::now())).await;
    assert_eq!(outcome, Outcome::Handled);
    eventually(
        Duration::from_secs(10),
        "the web pod evicted by the leader",
        async || {
            fake.get("pods", Some("default"), "web")
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        !b.metrics()
            .encode()
            .contains("eviction_router_evictions_total{outcome=\"evicted\"} 1"),
        "a standby evicted"
    );

    // The leader goes (its Lease lost, then the process): B takes over.
    a_leads.send(false).unwrap();
    drop(a);
    let blocked_before = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/db/eviction"))
        .count();
    b_leads.send(true).unwrap();
    eventually(
        Duration::from_secs(10),
        "the next leader retrying the db pod",
        async || {
            let n = fake
                .requests()
                .iter()
                .filter(|r| r.path.ends_with("/db/eviction"))
                .count();
            (n > blocked_before).then_some(())
        },
    )
    .await;
    let mut budget = fake
        .get("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    budget["status"]["disruptionsAllowed"] = json!(1);
    fake.update(budget).unwrap();
    let state = eventually(
        Duration::from_secs(15),
        "the drain done by the next leader",
        async || drain_state(&fake, NODE),
    )
    .await;
    assert_eq!(state["state"], "done");
    assert!(fake.get("pods", Some("default"), "db").is_none());
    assert!(
        b_metrics
            .encode()
            .contains("eviction_router_evictions_total{outcome=\"evicted\"} 1"),
        "the next leader evicted db"
    );
    assert_no_forbidden(&fake);
}

/// The real binary, with a kubeconfig pointing at the fake over HTTP: an interruption posted to
/// the ingest endpoint cordons and taints the right Node.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_acts_on_the_cluster_named_by_its_kubeconfig() {
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(node(NODE, &format!("aws:///us-east-1b/{INSTANCE}")))
        .unwrap();
    fake.enforce_rbac(chart_rbac());
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let config = "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n";
    let router = crate::support::Router::start(config, &[("KUBECONFIG", kubeconfig.clone())]).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(spot_warning("itn-binary", Timestamp::now()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        "{\"outcome\":\"handled\"}\n"
    );
    let n = fake.get("nodes", None, NODE).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    let event = router
        .next_event(Duration::from_secs(5))
        .expect("the event on stdout");
    assert_eq!(
        event["data"]["node"]["name"], NODE,
        "the router fills in the Node it resolved"
    );
    assert_eq!(router.terminate(), Some(0));
}

/// Two replicas contend for the Lease: one leads; when it stops, the other takes over.
#[tokio::test(flavor = "multi_thread")]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() {
    use eviction_router::cluster::lease::{self, LeaseConfig};
    let fake = FakeApiServer::new();
    // The release namespace, where the chart's Role grants the Lease.
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .unwrap();
    fake.enforce_rbac(chart_rbac());
    let candidate = |identity: &str| {
        let client = kube::Client::new(fake.service(), "eviction-router");
        let api = kube::Api::namespaced(client, "eviction-router");
        let config = LeaseConfig {
            name: "eviction-router".into(),
            namespace: "eviction-router".into(),
            identity: identity.into(),
            duration: Duration::from_secs(2),
            renew_every: Duration::from_millis(200),
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(lease::run(api, config, tx, stop.clone()));
        (rx, stop)
    };
    let (a, stop_a) = candidate("replica-a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b, stop_b) = candidate("replica-b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(*a.borrow() && !*b.borrow(), "exactly one leads");
    assert_eq!(
        fake.get("leases", Some("eviction-router"), "eviction-router")
            .unwrap()["spec"]["holderIdentity"],
        "replica-a"
    );

    stop_a.cancel();
    eventually(
        Duration::from_secs(5),
        "replica-b to take over",
        async || (*b.borrow()).then_some(()),
    )
    .await;
    assert!(!*a.borrow());
    let lease = fake
        .get("leases", Some("eviction-router"), "eviction-router")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    stop_b.cancel();
    assert_no_forbidden(&fake);
}

/// A standby answers with retry and never touches the cluster.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_does_not_act() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let (_leader, standby) = watch::channel(false);
    let router = router_with(&fake, metrics, &test_config(), standby);
    let before = fake.resource_version();
    let outcome = handle(
        &router,
        Provider::Aws,
        &spot_warning("itn-standby", Timestamp::now()),
    )
    .await;
    assert_eq!(outcome, Outcome::Retry);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.resource_version(), before);
}

/// One budget for every call: at 2 requests/s with a burst of 1, the admit goes first, and the
/// drain's calls follow at the rate.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_spends_one_budget_admits_first() {
    let fake = cluster_with_pods();
    fake.delete("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = ClusterConfig {
        api_requests_per_second: 2,
        api_burst: 1,
        ..test_config()
    };
    let router = router_with(&fake, metrics, &config, watch::channel(true).1);
    synced(&router).await;
    // Let the budget refill after the Node list and watch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.clear_requests();
    let started = Instant::now();
    let outcome = handle(
        &router,
        Provider::Aws,
        &spot_warning("itn-limited", Timestamp::now()),
    )
    .await;
    assert_eq!(outcome, Outcome::Handled);
    eventually(Duration::from_secs(20), "the drain done", async || {
        drain_state(&fake, NODE)
    })
    .await;
    let took = started.elapsed();
    let requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.query.contains("watch"))
        .collect();
    assert_eq!(
        requests[0].method, "PATCH",
        "the admit first: {requests:#?}"
    );
    // Admit, Event, pod list, two evictions, the drain's record: at 2/s after a burst of 1.
    let n = requests.len() as u64;
    assert!(n >= 6, "{requests:#?}");
    let floor = Duration::from_millis((n - 1) * 500 - 250);
    assert!(
        took >= floor,
        "{n} requests in {took:?}: the limit was not applied"
    );
}

/// A handler cut short by the message timeout leaves no "in flight" key behind: the redelivery
/// is handled, not answered "in flight" until the queue gives up on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_message_is_handled_on_its_redelivery() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    fake.enforce_rbac(chart_rbac());
    let client = kube::Client::new(fake.service(), "default");
    let config = test_config();
    let cluster = Cluster::kubernetes(
        Clients::single(client, Budget::new(200, 300)),
        &config,
        metrics.clone(),
        watch::channel(true).1,
    );
    let router_config: RouterConfig = serde_norway::from_str("message_timeout_seconds: 1").unwrap();
    let router = Arc::new(Router::new(
        &router_config,
        cluster,
        Sinks::start(&[], metrics.clone()).unwrap(),
        metrics,
    ));
    synced(&router).await;
    let body = spot_warning("itn-slow", Timestamp::now());
    let deliver = |router: Arc<Router>, body: String| async move {
        let (delivery, pending) = eviction_router::ack::Delivery::new(
            Provider::Aws,
            body.into_bytes().into(),
            Timestamp::now(),
            None,
        );
        router.handle(delivery).await;
        pending.outcome().await
    };
    fake.faults().set_latency(Duration::from_secs(3));
    assert_eq!(deliver(router.clone(), body.clone()).await, Outcome::Retry);
    fake.faults().set_latency(Duration::ZERO);
    assert_eq!(
        deliver(router.clone(), body.clone()).await,
        Outcome::Handled,
        "the redelivery was answered as still in flight"
    );
    let n = fake.get("nodes", None, NODE).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
}

/// `force_after_deadline`: what a budget still blocks at `deadline − margin` is deleted, with
/// the `delete` on pods the chart grants only then.
#[tokio::test(flavor = "multi_thread")]
async fn force_after_deadline_deletes_what_a_budget_still_blocks() {
    let fake = cluster_with_pods();
    let mut rbac = chart_rbac();
    // What the chart adds with cluster.forceAfterDeadline: true.
    rbac.add_manifests(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: eviction-router-force}
rules:
  - apiGroups: ['']
    resources: [pods]
    verbs: [list, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: eviction-router-force}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: eviction-router-force}
subjects: [{kind: ServiceAccount, name: eviction-router, namespace: eviction-router}]
",
    )
    .unwrap();
    let config = ClusterConfig {
        force_after_deadline: true,
        ..test_config()
    };
    let metrics = Arc::new(Metrics::new());
    let router = router_with(&fake, metrics, &config, watch::channel(true).1);
    fake.enforce_rbac(rbac);
    let at = Timestamp::now() - jiff::SignedDuration::from_secs(116);
    let outcome = handle(&router, Provider::Aws, &spot_warning("itn-force", at)).await;
    assert_eq!(outcome, Outcome::Handled);
    let state = eventually(Duration::from_secs(15), "the drain's end", async || {
        drain_state(&fake, NODE)
    })
    .await;
    assert_eq!(state["state"], "done", "{state}");
    assert!(
        fake.get("pods", Some("default"), "db").is_none(),
        "db was deleted"
    );
    assert!(
        fake.evictions().iter().all(|e| e.name != "db"),
        "the budget never allowed db's eviction"
    );
    eventually(Duration::from_secs(5), "a DrainForced Event", async || {
        fake.list("events", Some("default"))
            .into_iter()
            .find(|e| e["reason"] == "DrainForced")
    })
    .await;
    assert_no_forbidden(&fake);
}
