//! The Kubernetes executor through the real kube-rs stack against the in-repo fake API server
//! (in process): node resolution, taint / label / cordon, deadline-aware drain with a PDB,
//! Events, idempotency, foreign instances, API errors as retry, and undoing a canceled
//! maintenance.

use std::sync::Arc;
use std::time::Duration;

use eviction_router::ack::Outcome;
use eviction_router::cluster::Cluster;
use eviction_router::config::{ClusterConfig, ClusterMode, RouterConfig};
use eviction_router::event::Provider;
use eviction_router::metrics::Metrics;
use eviction_router::router::Router;
use eviction_router::sinks::Sinks;
use fake_apiserver::FakeApiServer;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{eventually, fixture, handle};

const INSTANCE: &str = "i-0b662ef9931388ba0";
const NODE: &str = "ip-10-0-1-5.ec2.internal";

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
    fake.insert(pod("web", "ReplicaSet", json!({}))).unwrap();
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

fn router(fake: &FakeApiServer, metrics: Arc<Metrics>) -> Router {
    let config = ClusterConfig {
        mode: ClusterMode::Kubernetes,
        drain_margin_seconds: 1,
        drain_timeout_seconds: 30,
        ..ClusterConfig::default()
    };
    let client = kube::Client::new(fake.service(), "default");
    let cluster = Cluster::kubernetes(client, &config, metrics.clone());
    let sinks = Sinks::start(&[], metrics.clone()).unwrap();
    Router::new(&RouterConfig::default(), cluster, sinks, metrics)
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

#[tokio::test(flavor = "multi_thread")]
async fn an_interruption_cordons_taints_and_drains_its_node_within_the_deadline() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = Arc::new(router(&fake, metrics.clone()));
    let body = spot_warning("itn-1", Timestamp::now());
    let handling = {
        let router = router.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let mut reports = Vec::new();
            let outcome = router.handle_body(
                Provider::Aws,
                body.as_bytes(),
                Timestamp::now(),
                None,
                &mut reports,
            );
            (outcome.await, reports)
        })
    };

    // Tainted (beside the other controller's taint), labelled, cordoned, annotated; pods evicted
    // except the DaemonSet and mirror pods, and the one its budget protects.
    eventually(Duration::from_secs(10), "the web pod evicted", async || {
        fake.get("pods", Some("default"), "web")
            .is_none()
            .then_some(())
    })
    .await;
    let n = fake.get("nodes", None, NODE).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    assert_eq!(
        n["metadata"]["labels"]["eviction-router/draining"],
        "interruption"
    );
    assert!(
        n["metadata"]["annotations"]
            .get("eviction-router/last-event")
            .is_none(),
        "recorded only once every step succeeded"
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
    assert!(
        fake.get("pods", Some("default"), "db").is_some(),
        "the budget holds the db pod"
    );
    assert!(
        !handling.is_finished(),
        "the drain waits for the budget, within the deadline"
    );

    // The budget allows a disruption now: the drain completes and the message is handled.
    let mut budget = fake
        .get("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    budget["status"]["disruptionsAllowed"] = json!(1);
    fake.update(budget).unwrap();
    let (outcome, reports) = tokio::time::timeout(Duration::from_secs(20), handling)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Handled);
    assert_eq!(reports[0].event.data.node.as_ref().unwrap().name, NODE);
    assert!(fake.get("pods", Some("default"), "db").is_none());
    assert!(
        fake.get("pods", Some("default"), "logs").is_some(),
        "DaemonSet pods are not evicted"
    );
    assert!(
        fake.get("pods", Some("default"), "static").is_some(),
        "mirror pods are not evicted"
    );

    let events = fake.list("events", Some("default"));
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"SpotInterruption"), "{events:?}");
    let text = metrics.encode();
    assert!(
        text.contains("eviction_router_evictions_total{outcome=\"evicted\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("eviction_router_actions_total{action=\"cordon\",outcome=\"ok\"} 1"),
        "{text}"
    );

    let n = fake.get("nodes", None, NODE).unwrap();
    assert!(
        n["metadata"]["annotations"]["eviction-router/last-event"]
            .as_str()
            .unwrap()
            .contains("itn-1")
    );

    // A restarted (or second) router gets the same event: the Node's annotation says it was
    // handled, and nothing is written.
    let before = fake.resource_version();
    let fresh = self::router(&fake, Arc::new(Metrics::new()));
    let outcome = handle(&fresh, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Handled);
    assert_eq!(
        fake.resource_version(),
        before,
        "a restarted router acted twice"
    );

    // The same event again changes nothing twice.
    let before = fake.resource_version();
    let outcome = handle(&router, Provider::Aws, &body).await;
    assert_eq!(outcome, Outcome::Ignored);
    assert_eq!(
        fake.resource_version(),
        before,
        "a duplicate wrote to the cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_that_cannot_finish_before_the_deadline_is_reported() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    // Two minutes' notice given 115 s ago: 5 s left, less the 1 s margin.
    let at = Timestamp::now() - jiff::SignedDuration::from_secs(115);
    let outcome = handle(&router, Provider::Aws, &spot_warning("itn-late", at)).await;
    assert_eq!(
        outcome,
        Outcome::Handled,
        "a missed deadline is reported, not retried"
    );
    assert!(fake.get("pods", Some("default"), "db").is_some());
    let events = fake.list("events", Some("default"));
    let incomplete = events
        .iter()
        .find(|e| e["reason"] == "DrainIncomplete")
        .expect("a DrainIncomplete event");
    assert!(
        incomplete["note"].as_str().unwrap().contains("default/db"),
        "{incomplete}"
    );
    assert!(
        metrics
            .encode()
            .contains("eviction_router_drain_deadline_missed_total 1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_instances_are_ignored_and_api_errors_are_retried() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics.clone());
    let mut v: Value = serde_json::from_str(&fixture("aws/rebalance-recommendation.json")).unwrap();
    v["id"] = json!("foreign-1");
    v["detail"]["instance-id"] = json!("i-0notinthiscluster");
    v["resources"] = json!(["arn:aws:ec2:us-east-1b:instance/i-0notinthiscluster"]);
    let outcome = handle(&router, Provider::Aws, &v.to_string()).await;
    assert_eq!(
        outcome,
        Outcome::Ignored,
        "a foreign instance is ignored (and leaves the queue)"
    );
    assert!(metrics.encode().contains(
        "eviction_router_events_ignored_total{provider=\"aws\",reason=\"foreign_instance\"} 1"
    ));

    // The API server fails: the outcome is retry and nothing is lost; once it recovers the same
    // message is handled.
    fake.faults().fail_next("GET", "/api/v1/nodes", 20);
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
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canceled_maintenance_undoes_what_the_started_one_did() {
    let fake = FakeApiServer::new();
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-7", "labels": {}},
        "spec": {"providerID": "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/workers/providers/Microsoft.Compute/virtualMachines/worker-7"},
    }))
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let router = router(&fake, metrics);
    let mut v: Value =
        serde_json::from_str(&fixture("azure/scheduled-event-reboot.eventgrid.json")).unwrap();
    v["data"]["resourceInfo"]["properties"]["EventStatus"] = json!("Started");
    v["data"]["resourceInfo"]["properties"]["NotBefore"] = json!("");
    let outcome = handle(&router, Provider::Azure, &v.to_string()).await;
    assert_eq!(outcome, Outcome::Handled);
    let n = fake.get("nodes", None, "worker-7").unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);

    v["id"] = json!("canceled-notification");
    v["data"]["resourceInfo"]["properties"]["EventStatus"] = json!("Canceled");
    let outcome = handle(&router, Provider::Azure, &v.to_string()).await;
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
}

/// The real binary, with a kubeconfig pointing at the fake over HTTP: an interruption posted to
/// the ingest endpoint cordons and taints the right Node.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_acts_on_the_cluster_named_by_its_kubeconfig() {
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(node(NODE, &format!("aws:///us-east-1b/{INSTANCE}")))
        .unwrap();
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

/// Maintenance announced ahead: only the Event now; the taint, cordon and drain when the window
/// (less the lead) opens, from the schedule kept in the Node's annotation.
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
        mode: ClusterMode::Kubernetes,
        maintenance_lead_seconds: 0,
        ..ClusterConfig::default()
    };
    let cluster = Cluster::kubernetes(
        kube::Client::new(fake.service(), "default"),
        &config,
        metrics.clone(),
    );
    let router = Router::new(
        &RouterConfig::default(),
        cluster,
        Sinks::start(&[], metrics.clone()).unwrap(),
        metrics,
    );
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
    assert!(
        n["metadata"]["annotations"]["eviction-router/scheduled"]
            .as_str()
            .unwrap()
            .contains("um1pending01")
    );
    assert!(
        fake.list("events", Some("default"))
            .iter()
            .any(|e| e["reason"] == "ScheduledMaintenance")
    );

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
    assert!(
        n["metadata"]["annotations"]
            .get("eviction-router/scheduled")
            .is_none(),
        "the schedule is consumed"
    );
    assert_eq!(
        n["metadata"]["labels"]["eviction-router/draining"],
        "scheduled_maintenance"
    );
}

/// Two replicas contend for the Lease: one leads; when it stops, the other takes over.
#[tokio::test(flavor = "multi_thread")]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() {
    use eviction_router::cluster::lease::{self, LeaseConfig};
    let fake = FakeApiServer::new();
    let candidate = |identity: &str| {
        let api = kube::Api::namespaced(kube::Client::new(fake.service(), "default"), "default");
        let config = LeaseConfig {
            name: "eviction-router".into(),
            namespace: "default".into(),
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
        fake.get("leases", Some("default"), "eviction-router")
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
        .get("leases", Some("default"), "eviction-router")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    stop_b.cancel();
}

/// A standby answers with retry and never touches the cluster.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_does_not_act() {
    let fake = cluster_with_pods();
    let metrics = Arc::new(Metrics::new());
    let (_leader, standby) = tokio::sync::watch::channel(false);
    let router = router(&fake, metrics).with_active(standby);
    let before = fake.resource_version();
    let outcome = handle(
        &router,
        Provider::Aws,
        &spot_warning("itn-standby", Timestamp::now()),
    )
    .await;
    assert_eq!(outcome, Outcome::Retry);
    assert_eq!(fake.resource_version(), before);
}

/// `cluster.api_requests_per_second` limits the router's calls to the API server.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_request_rate_is_limited_as_configured() {
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(node(NODE, &format!("aws:///us-east-1b/{INSTANCE}")))
        .unwrap();
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let config = "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  api_requests_per_second: 2\n  leader_election:\n    enabled: false\nsinks: []\n";
    let router = crate::support::Router::start(config, &[("KUBECONFIG", kubeconfig.clone())]).await;
    // Let the Node list and watch take their share of the budget first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.clear_requests();
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(spot_warning("itn-limited", Timestamp::now()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let took = started.elapsed();
    let requests = fake.requests().len();
    assert!(
        requests >= 6,
        "an interruption costs several requests, saw {requests}"
    );
    // At 2 per second, N requests need at least (N - 2) / 2 seconds after the first burst of 2.
    let floor = Duration::from_millis(((requests as u64).saturating_sub(3)) * 500);
    assert!(
        took >= floor,
        "{requests} requests in {took:?}: the limit was not applied"
    );
    assert_eq!(router.terminate(), Some(0));
}
