//! Simulation tests: each builds a small cluster and waits, with a bound, for what should follow.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use serde_json::json;
use std::time::Duration;

use super::*;
use crate::{FakeApiServer, Rbac};

const GI: i64 = 1 << 30;
const WAIT: Duration = Duration::from_secs(20);

fn fast() -> SimConfig {
    SimConfig {
        tick: Duration::from_millis(10),
        launch_delay: Duration::from_millis(150),
        boot_delay: Duration::from_millis(150),
        scan_interval: Duration::from_millis(40),
        pod_start_delay: Duration::from_millis(30),
        ..SimConfig::default()
    }
}

fn node_size(millis: i64) -> Resources {
    Resources::new(millis, 4 * GI, 20)
}

fn per_pod(millis: i64) -> Resources {
    Resources::new(millis, GI / 4, 0)
}

/// Polls `f` every 10 ms until it answers, failing after `WAIT`.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pods_of(fake: &FakeApiServer, app: &str) -> Vec<Value> {
    fake.list("pods", None)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

fn node_of(p: &Value) -> String {
    str_at(p, "/spec/nodeName").to_string()
}

/// The pods of `app` once `n` of them run.
async fn running_pods(fake: &FakeApiServer, app: &str, n: usize) -> Vec<Value> {
    until(&format!("{n} running {app} pods"), || {
        let pods: Vec<Value> = pods_of(fake, app).into_iter().filter(running).collect();
        (pods.len() >= n).then_some(pods)
    })
    .await
}

fn scans(sim: &Sim) -> u64 {
    lock(&sim.inner.state).scans
}

/// Waits for the autoscaler to scan `n` more times.
async fn scans_pass(sim: &Sim, n: u64) {
    let from = scans(sim);
    until("autoscaler scans", || {
        (scans(sim) >= from + n).then_some(())
    })
    .await;
}

async fn call(fake: &FakeApiServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = kube::Client::new(fake.service(), "default");
    let body = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn priority_class(name: &str, value: i64) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
           "metadata": {"name": name}, "value": value})
}

#[tokio::test]
async fn scheduler_filters_on_taints_selectors_affinity_and_fit() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(
        PoolSpec::new("spot", node_size(2000), 1)
            .label("capacity", "spot")
            .taint(json!({"key": "spot", "value": "true", "effect": "NoSchedule"})),
    );
    sim.add_pool(
        PoolSpec::new("od", node_size(1000), 1)
            .label("capacity", "on-demand")
            .label("topology.kubernetes.io/zone", "us-east-1b"),
    );
    let spot = sim.add_nodes("spot", 1).remove(0);
    let od = sim.add_nodes("od", 1).remove(0);

    let node = fake.get("nodes", None, &od).unwrap();
    let provider = str_at(&node, "/spec/providerID");
    assert!(provider.starts_with("aws:///us-east-1b/i-"), "{provider}");
    assert_eq!(provider.len(), "aws:///us-east-1b/i-".len() + 17);
    assert!(!str_at(&node, "/metadata/creationTimestamp").is_empty());
    assert_eq!(
        node["metadata"]["labels"]["eks.amazonaws.com/nodegroup"],
        "od"
    );
    assert_eq!(node["status"]["allocatable"]["cpu"], "1");

    let mut tolerant = WorkloadSpec::new("default", "tolerant", 2, per_pod(100));
    tolerant.tolerations = vec![json!({"key": "spot", "operator": "Exists"})];
    tolerant
        .node_selector
        .insert("capacity".into(), "spot".into());
    sim.add_workload(tolerant);
    let mut picky = WorkloadSpec::new("default", "picky", 1, per_pod(200));
    picky.tolerations = vec![json!({"operator": "Exists"})];
    picky.affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}]}]}}});
    sim.add_workload(picky);

    for p in running_pods(&fake, "tolerant", 2).await {
        assert_eq!(node_of(&p), spot);
    }
    let picky = running_pods(&fake, "picky", 1).await;
    assert_eq!(node_of(&picky[0]), od);

    // 800m left on the on-demand Node: one 500m pod fits, the second fits nowhere.
    sim.add_workload(WorkloadSpec::new("default", "plain", 2, per_pod(500)));
    let placed = running_pods(&fake, "plain", 1).await;
    assert_eq!(node_of(&placed[0]), od);
    let message = until("an Unschedulable pod", || {
        pods_of(&fake, "plain").into_iter().find_map(|p| {
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")?;
            Some(c["message"].as_str()?.to_string())
        })
    })
    .await;
    assert_eq!(
        message,
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {spot: true}."
    );
    let report = sim.report();
    assert_eq!(report.bindings.len(), 4, "{:?}", report.bindings);
    assert!(report.bindings_to_doomed().is_empty());
    // Both pools are at max_nodes: nothing is launched.
    assert!(report.launches.is_empty());
}

#[tokio::test]
async fn prefer_no_schedule_taints_steer_pods_away() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(4000), 2));
    let names = sim.add_nodes("pool", 2);
    let mut soft = fake.get("nodes", None, &names[0]).unwrap();
    soft["spec"]["taints"] =
        json!([{"key": "eviction-router/rebalance", "effect": "PreferNoSchedule"}]);
    fake.update(soft).unwrap();

    sim.add_workload(WorkloadSpec::new("default", "web", 3, per_pod(100)));
    for p in running_pods(&fake, "web", 3).await {
        assert_eq!(node_of(&p), names[1]);
    }
    // Tolerated, the taint no longer counts and the least allocated Node wins.
    let mut spread = WorkloadSpec::new("default", "spread", 1, per_pod(100));
    spread.tolerations = vec![json!({"key": "eviction-router/rebalance", "operator": "Exists"})];
    sim.add_workload(spread);
    let p = running_pods(&fake, "spread", 1).await;
    assert_eq!(node_of(&p[0]), names[0]);
}

#[tokio::test]
async fn a_default_priority_pod_preempts_a_negative_priority_placeholder() {
    let fake = FakeApiServer::new();
    fake.insert(priority_class("placeholder", -10)).unwrap();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(1000), 1));
    let node = sim.add_nodes("pool", 1).remove(0);
    let mut placeholder = WorkloadSpec::new("default", "placeholder", 1, per_pod(800));
    placeholder.priority_class_name = Some("placeholder".into());
    sim.add_workload(placeholder);
    let held = running_pods(&fake, "placeholder", 1).await;
    assert_eq!(
        held[0]["spec"]["priority"], -10,
        "admission resolved the class"
    );
    assert_eq!(held[0]["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    sim.add_workload(WorkloadSpec::new("default", "app", 1, per_pod(800)));
    let app = running_pods(&fake, "app", 1).await;
    assert_eq!(node_of(&app[0]), node);
    assert_eq!(app[0]["spec"]["priority"], 0);

    let report = sim.report();
    let preempted: Vec<&Disruption> = report
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Preempted)
        .collect();
    assert_eq!(preempted.len(), 1, "{:?}", report.disruptions);
    assert_eq!(preempted[0].pod, str_at(&held[0], "/metadata/name"));
    assert_eq!(preempted[0].workload, "placeholder");
    assert_eq!(preempted[0].node.as_deref(), Some(node.as_str()));
    // The placeholder's replacement waits: it fits nowhere and preempts nobody.
    let waiting = until("the placeholder's replacement", || {
        pods_of(&fake, "placeholder")
            .into_iter()
            .find(|p| p["status"]["conditions"][0]["reason"] == "Unschedulable")
    })
    .await;
    assert!(node_of(&waiting).is_empty());
    assert_eq!(report.open_gaps().len(), 1);
}

#[tokio::test]
async fn priority_admission_resolves_classes_and_refuses_like_the_apiserver() {
    let fake = FakeApiServer::new();
    let pod = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
    };
    let post = "/api/v1/namespaces/default/pods";

    let (code, body) = call(
        &fake,
        "POST",
        post,
        pod("p1", json!({"priorityClassName": "nope"})),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "pods \"p1\" is forbidden: no PriorityClass with name nope was found"
    );
    let mut generated = pod("", json!({"priorityClassName": "nope"})).unwrap();
    generated["metadata"] = json!({"generateName": "web-"});
    let (code, body) = call(&fake, "POST", post, Some(generated)).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some("pods \"web-\" is forbidden: no PriorityClass with name nope was found")
        )
    );

    let (code, _) = call(
        &fake,
        "POST",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        Some(priority_class("high", 1000)),
    )
    .await;
    assert_eq!(code, 201);
    let (code, created) = call(
        &fake,
        "POST",
        post,
        pod("p2", json!({"priorityClassName": "high"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["priority"], 1000);
    assert_eq!(created["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let class = fake.get("priorityclasses", None, "high").unwrap();
    assert_eq!(
        class["preemptionPolicy"], "PreemptLowerPriority",
        "defaulted"
    );

    let (code, body) = call(
        &fake,
        "POST",
        post,
        pod("p3", json!({"priorityClassName": "high", "priority": 5})),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods \"p3\" is forbidden: the integer value of priority (5) must not be provided in pod \
         spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
    let (code, body) = call(
        &fake,
        "POST",
        post,
        pod(
            "p4",
            json!({"priorityClassName": "high", "priority": 1000,
                                             "preemptionPolicy": "Never"}),
        ),
    )
    .await;
    assert_eq!(code, 403);
    assert!(body["message"].as_str().unwrap().contains(
        "the string value of PreemptionPolicy (Never) must not be provided in pod spec; \
         priority admission controller computed PreemptLowerPriority"
    ));

    let (_, system) = call(
        &fake,
        "POST",
        "/api/v1/namespaces/kube-system/pods",
        pod(
            "dns",
            json!({"priorityClassName": "system-cluster-critical"}),
        ),
    )
    .await;
    assert_eq!(system["spec"]["priority"], 2_000_000_000);
    let (_, none) = call(&fake, "POST", post, pod("p5", json!({}))).await;
    assert_eq!(none["spec"]["priority"], 0);
    assert!(none["spec"].get("priorityClassName").is_none());

    // One global default, which then applies to pods naming no class.
    let mut default = priority_class("batch", -5);
    default["globalDefault"] = json!(true);
    default["preemptionPolicy"] = json!("Never");
    let (code, _) = call(
        &fake,
        "POST",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        Some(default),
    )
    .await;
    assert_eq!(code, 201);
    let (_, defaulted) = call(&fake, "POST", post, pod("p6", json!({}))).await;
    assert_eq!(
        (
            defaulted["spec"]["priorityClassName"].as_str(),
            defaulted["spec"]["priority"].as_i64(),
            defaulted["spec"]["preemptionPolicy"].as_str()
        ),
        (Some("batch"), Some(-5), Some("Never"))
    );
    let mut second = priority_class("other", 1);
    second["globalDefault"] = json!(true);
    let (code, body) = call(
        &fake,
        "POST",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        Some(second),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass batch is already \
         marked as default. Only one default can exist"
    );
    let (code, body) = call(
        &fake,
        "POST",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        Some(priority_class("huge", 2_000_000_000)),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));

    // The store methods are the test's own access: no admission.
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "raw"},
                       "spec": {"priorityClassName": "nope"}}),
    )
    .unwrap();

    // A workload naming a missing class gets no pods, and the report says why.
    let sim = fake.simulate(fast());
    let mut w = WorkloadSpec::new("default", "orphan", 1, per_pod(100));
    w.priority_class_name = Some("missing".into());
    sim.add_workload(w);
    assert!(pods_of(&fake, "orphan").is_empty());
    let errors = sim.report().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("default/orphan: pods \"orphan-"),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("is forbidden: no PriorityClass with name missing was found"));
}

#[tokio::test]
async fn an_evicted_pod_is_replaced_and_its_gap_measured() {
    let fake = FakeApiServer::new();
    let cfg = fast();
    let start_delay = cfg.pod_start_delay;
    let sim = fake.simulate(cfg);
    sim.add_pool(PoolSpec::new("pool", node_size(4000), 2));
    sim.add_nodes("pool", 2);
    let mut w = WorkloadSpec::new("default", "web", 2, per_pod(100));
    w.labels.insert("tier".into(), "front".into());
    sim.add_workload(w);
    let before = running_pods(&fake, "web", 2).await;
    let victim = str_at(&before[0], "/metadata/name").to_string();
    assert!(
        victim.starts_with("web-") && victim.len() == "web-".len() + 5,
        "{victim}"
    );
    let labels = &before[0]["metadata"]["labels"];
    assert_eq!(
        (labels["app"].as_str(), labels["tier"].as_str()),
        (Some("web"), Some("front"))
    );
    assert!(labels["pod-template-hash"].is_string());
    let owner = &before[0]["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["controller"].as_bool()),
        (Some("ReplicaSet"), Some(true))
    );

    let pods: Api<Pod> = Api::default_namespaced(kube::Client::new(fake.service(), "default"));
    pods.evict(&victim, &EvictParams::default()).await.unwrap();
    let gap = until("the replacement to run", || {
        sim.report()
            .disruptions
            .into_iter()
            .find(|d| d.restored_at.is_some())
    })
    .await;
    assert_eq!(
        (gap.pod.as_str(), gap.ending, gap.was_running),
        (victim.as_str(), Ending::Evicted, true)
    );
    let replacement = gap.replacement.clone().unwrap();
    assert_ne!(replacement, victim);
    let now = pods_of(&fake, "web");
    assert_eq!(now.len(), 2);
    assert!(
        now.iter()
            .any(|p| p["metadata"]["name"] == replacement.as_str() && running(p))
    );
    assert!(gap.unavailability().unwrap() >= start_delay);
    let report = sim.report();
    assert_eq!(report.unavailability(), vec![gap.unavailability().unwrap()]);
    assert!(report.open_gaps().is_empty());
    assert_eq!(report.bindings.len(), 3);
}

#[tokio::test]
async fn budgets_follow_their_pods_and_refuse_an_eviction_that_would_break_them() {
    let fake = FakeApiServer::new();
    // Slow enough that the first eviction's replacement cannot be Ready before the second.
    let sim = fake.simulate(SimConfig {
        pod_start_delay: Duration::from_millis(500),
        ..fast()
    });
    sim.add_pool(PoolSpec::new("pool", node_size(4000), 1));
    sim.add_nodes("pool", 1);
    sim.add_workload(WorkloadSpec::new("default", "web", 3, per_pod(100)));
    let selector: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    sim.add_pdb("default", "web", selector, 2);
    let fresh = fake
        .get("poddisruptionbudgets", Some("default"), "web")
        .unwrap();
    assert_eq!(fresh["status"]["desiredHealthy"], 2);
    assert_eq!(fresh["status"]["observedGeneration"], 1);

    let pdb = until("the budget to allow one disruption", || {
        let pdb = fake.get("poddisruptionbudgets", Some("default"), "web")?;
        (pdb["status"]["disruptionsAllowed"] == 1).then_some(pdb)
    })
    .await;
    let s = &pdb["status"];
    assert_eq!(
        (s["currentHealthy"].as_i64(), s["expectedPods"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(s["conditions"][0]["reason"], "SufficientPods");

    let pods: Api<Pod> = Api::default_namespaced(kube::Client::new(fake.service(), "default"));
    let running = running_pods(&fake, "web", 3).await;
    let name = |i: usize| str_at(&running[i], "/metadata/name").to_string();
    pods.evict(&name(0), &EvictParams::default()).await.unwrap();
    let refused = pods
        .evict(&name(1), &EvictParams::default())
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 429, "{status:?}");
            let cause = &status.details.unwrap().causes[0].message;
            assert!(
                cause.starts_with("The disruption budget web needs 2 healthy pods"),
                "{cause}"
            );
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    // The replacement runs and the budget allows one again; nothing was violated.
    until("the budget to recover", || {
        let pdb = fake.get("poddisruptionbudgets", Some("default"), "web")?;
        (pdb["status"]["disruptionsAllowed"] == 1 && sim.report().open_gaps().is_empty())
            .then_some(())
    })
    .await;
    let report = sim.report();
    assert!(
        report.pdb_violations.is_empty(),
        "{:?}",
        report.pdb_violations
    );
    assert_eq!(report.disruptions.len(), 1);
}

#[tokio::test]
async fn the_autoscaler_launches_a_node_that_boots_before_the_pod_runs() {
    let fake = FakeApiServer::new();
    let cfg = fast();
    let (launch, boot) = (cfg.launch_delay, cfg.boot_delay);
    let sim = fake.simulate(cfg);
    sim.add_pool(PoolSpec::new("small", node_size(1000), 3).priority(1));
    sim.add_pool(PoolSpec::new("big", node_size(8000), 3).priority(10));
    sim.add_workload(WorkloadSpec::new("default", "web", 1, per_pod(500)));
    let pod = running_pods(&fake, "web", 1).await.remove(0);
    // The Node was created NotReady and tainted: its ADDED change in the store's history.
    let booting = fake
        .shared
        .store()
        .changes_after(0)
        .unwrap()
        .into_iter()
        .find(|c| c.kind == ChangeKind::Added && c.def.is(resources::nodes()))
        .unwrap()
        .object;
    let taints = booting["spec"]["taints"].as_array().unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready"),
        "{booting}"
    );
    assert_eq!(booting["status"]["conditions"][0]["status"], "False");
    assert_eq!(
        booting["metadata"]["labels"]["eks.amazonaws.com/nodegroup"], "big",
        "priority expander"
    );
    let report = sim.report();
    assert_eq!(report.launches.len(), 1, "{:?}", report.launches);
    let l = &report.launches[0];
    assert_eq!(
        (l.pool.as_str(), l.name.as_str()),
        ("big", node_of(&pod).as_str())
    );
    let (created, ready) = (l.created_at.unwrap(), l.ready_at.unwrap());
    assert!(created - l.requested_at >= launch, "{l:?}");
    assert!(ready - created >= boot, "{l:?}");
    let binding = report.bindings.iter().find(|b| b.node == l.name).unwrap();
    assert!(binding.at >= ready);
    let node = fake.get("nodes", None, &l.name).unwrap();
    assert!(node["spec"]["taints"].as_array().unwrap().is_empty());
    assert_eq!(node["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn expendable_pods_do_not_scale_up_and_the_cutoff_itself_does() {
    let fake = FakeApiServer::new();
    fake.insert(priority_class("below", -11)).unwrap();
    fake.insert(priority_class("cutoff", -10)).unwrap();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(1000), 3));
    let mut cold = WorkloadSpec::new("default", "cold", 1, per_pod(600));
    cold.priority_class_name = Some("below".into());
    sim.add_workload(cold);
    until("the expendable pod to be Unschedulable", || {
        pods_of(&fake, "cold")
            .into_iter()
            .find(|p| p["status"]["conditions"][0]["reason"] == "Unschedulable")
    })
    .await;
    scans_pass(&sim, 3).await;
    assert!(sim.report().launches.is_empty());

    let mut warm = WorkloadSpec::new("default", "warm", 1, per_pod(600));
    warm.priority_class_name = Some("cutoff".into());
    sim.add_workload(warm);
    running_pods(&fake, "warm", 1).await;
    assert_eq!(sim.report().launches.len(), 1);
}

#[tokio::test]
async fn max_nodes_bounds_a_scale_up() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(1000), 2));
    sim.add_workload(WorkloadSpec::new("default", "big", 4, per_pod(700)));
    running_pods(&fake, "big", 2).await;
    scans_pass(&sim, 3).await;
    let report = sim.report();
    assert_eq!(report.launches.len(), 2, "{:?}", report.launches);
    assert_eq!(fake.list("nodes", None).len(), 2);
    let pending = pods_of(&fake, "big")
        .into_iter()
        .filter(|p| !running(p))
        .count();
    assert_eq!(pending, 2);
}

#[tokio::test]
async fn capacity_buffers_are_404_until_served_then_their_demand_adds_nodes() {
    let fake = FakeApiServer::new();
    let path = "/apis/autoscaling.x-k8s.io/v1beta1/namespaces/default/capacitybuffers";
    let (code, body) = call(&fake, "GET", path, None).await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (_, groups) = call(&fake, "GET", "/apis", None).await;
    let names = |g: &Value| -> Vec<String> {
        g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!names(&groups).contains(&"autoscaling.x-k8s.io".to_string()));
    assert!(names(&groups).contains(&"scheduling.k8s.io".to_string()));
    assert_eq!(
        call(&fake, "GET", "/apis/autoscaling.x-k8s.io/v1beta1", None)
            .await
            .0,
        404
    );

    fake.serve_capacity_buffers("v1beta1");
    fake.serve_capacity_buffers("v1alpha1");
    let (_, groups) = call(&fake, "GET", "/apis", None).await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "autoscaling.x-k8s.io")
        .unwrap()
        .clone();
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    assert_eq!(group["versions"].as_array().unwrap().len(), 2);
    let (code, list) = call(&fake, "GET", "/apis/autoscaling.x-k8s.io/v1beta1", None).await;
    assert_eq!(code, 200);
    let kinds: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(kinds, ["capacitybuffers", "capacitybuffers/status"]);

    let template = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "chunk"},
        "template": {"metadata": {"labels": {"app": "buffer"}},
                     "spec": {"containers": [{"name": "c", "image": "pause",
                              "resources": {"requests": {"cpu": "600m", "memory": "256Mi"}}}]}}});
    let (code, _) = call(
        &fake,
        "POST",
        "/api/v1/namespaces/default/podtemplates",
        Some(template),
    )
    .await;
    assert_eq!(code, 201);
    let buffer = json!({"apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer",
        "metadata": {"name": "spare"}, "spec": {"podTemplateRef": {"name": "chunk"}, "replicas": 2},
        "status": {"replicas": 99}});
    let (code, created) = call(&fake, "POST", path, Some(buffer)).await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created.get("status").is_none(),
        "status is dropped on create: {created}"
    );
    assert_eq!(created["metadata"]["generation"], 1);

    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(1000), 5));
    until("two Ready Nodes for the buffer", || {
        let report = sim.report();
        (report
            .launches
            .iter()
            .filter(|l| l.ready_at.is_some())
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let status = fake
        .get("capacitybuffers", Some("default"), "spare")
        .unwrap()["status"]
        .clone();
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["podTemplateRef"]["name"], "chunk");
    assert_eq!(
        status["provisioningStrategy"],
        "buffer.x-k8s.io/active-capacity"
    );
    let conditions = status["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ReadyForProvisioning" && c["status"] == "True")
    );
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Provisioning" && c["reason"] == "FakePodsInjected")
    );
    // The free room now holds the buffer: no more Nodes.
    scans_pass(&sim, 3).await;
    assert_eq!(sim.report().launches.len(), 2);
    assert!(
        fake.list("pods", None).is_empty(),
        "buffer pods are never created"
    );
}

#[tokio::test]
async fn capacity_buffers_are_authorized_like_any_resource() {
    let fake = FakeApiServer::new();
    fake.serve_capacity_buffers("v1");
    let user = "system:serviceaccount:router:router";
    let rbac = Rbac::from_manifests(
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: r}}
rules: [{{apiGroups: [''], resources: [pods], verbs: [list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: r}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}
subjects: [{{kind: User, name: '{user}'}}]
"
        ),
        user,
    )
    .unwrap();
    fake.enforce_rbac(rbac);
    let (code, body) = call(
        &fake,
        "GET",
        "/apis/autoscaling.x-k8s.io/v1/capacitybuffers",
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert!(body["message"].as_str().unwrap().contains(
        "cannot list resource \"capacitybuffers\" in API group \"autoscaling.x-k8s.io\" at the cluster scope"),
        "{body}");
    let (code, _) = call(
        &fake,
        "GET",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(call(&fake, "GET", "/api/v1/pods", None).await.0, 200);
}

#[tokio::test]
async fn a_terminated_node_takes_its_pods_and_workloads_recreate_them() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(1000), 2));
    let names = sim.add_nodes("pool", 2);
    sim.add_workload(WorkloadSpec::new("default", "web", 2, per_pod(600)));
    let selector: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    sim.add_pdb("default", "web", selector, 2);
    let before = running_pods(&fake, "web", 2).await;
    until("the budget to be met", || {
        let pdb = fake.get("poddisruptionbudgets", Some("default"), "web")?;
        (pdb["status"]["currentHealthy"] == 2).then_some(())
    })
    .await;
    let lost = before.iter().find(|p| node_of(p) == names[0]).unwrap();
    let lost_name = str_at(lost, "/metadata/name").to_string();

    sim.mark_doomed(&names[0]);
    sim.terminate_node(&names[0]);
    assert!(fake.get("nodes", None, &names[0]).is_none());
    assert!(fake.get("pods", Some("default"), &lost_name).is_none());
    assert_eq!(pods_of(&fake, "web").len(), 2, "replaced at once");

    // No room left: the autoscaler brings the pool back to two Nodes.
    let gap = until("the lost pod's replacement to run", || {
        sim.report()
            .disruptions
            .into_iter()
            .find(|d| d.restored_at.is_some())
    })
    .await;
    assert_eq!(
        (gap.pod.as_str(), gap.ending),
        (lost_name.as_str(), Ending::NodeTerminated)
    );
    assert_eq!(gap.node.as_deref(), Some(names[0].as_str()));
    let report = sim.report();
    assert_eq!(report.launches.len(), 1);
    assert_eq!(
        gap.replacement_node.as_deref(),
        Some(report.launches[0].name.as_str())
    );
    assert!(gap.unavailability().unwrap() >= fast().launch_delay + fast().boot_delay);
    assert!(report.bindings_to_doomed().is_empty());
    assert_eq!(report.doomed.len(), 1);
    until("the violation to close", || {
        let report = sim.report();
        let v = report.pdb_violations.first()?.clone();
        v.restored_at.is_some().then_some(v)
    })
    .await;
    let report = sim.report();
    assert_eq!(report.pdb_violations.len(), 1);
    let v = &report.pdb_violations[0];
    assert_eq!((v.current_healthy, v.desired_healthy), (1, 2));
    assert_eq!(v.causes, [Ending::NodeTerminated]);
    assert!(report.violations_without_node_loss().is_empty());
}

#[tokio::test]
async fn bindings_to_doomed_nodes_are_flagged() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(4000), 1));
    let node = sim.add_nodes("pool", 1).remove(0);
    sim.add_workload(WorkloadSpec::new("default", "early", 1, per_pod(100)));
    running_pods(&fake, "early", 1).await;
    sim.mark_doomed(&node);
    sim.add_workload(WorkloadSpec::new("default", "late", 1, per_pod(100)));
    running_pods(&fake, "late", 1).await;
    let report = sim.report();
    let doomed = report.bindings_to_doomed();
    assert_eq!(doomed.len(), 1, "{:?}", report.bindings);
    assert!(doomed[0].pod.starts_with("late-"));
    assert_eq!(doomed[0].node, node);
}

#[tokio::test]
async fn pods_stay_pending_on_a_not_ready_node_and_the_sim_stops() {
    let fake = FakeApiServer::new();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cold"},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
                   "conditions": [{"type": "Ready", "status": "False"}]}}),
    )
    .unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pinned", "namespace": "default"},
        "spec": {"nodeName": "cold", "containers": [{"name": "c"}]},
        "status": {"phase": "Pending"}}))
        .unwrap();
    let sim = fake.simulate(fast());
    scans_pass(&sim, 3).await;
    assert_eq!(
        fake.get("pods", Some("default"), "pinned").unwrap()["status"]["phase"],
        "Pending"
    );

    let mut node = fake.get("nodes", None, "cold").unwrap();
    node["status"]["conditions"][0]["status"] = json!("True");
    fake.update(node).unwrap();
    until("the pinned pod to run", || {
        running(&fake.get("pods", Some("default"), "pinned")?).then_some(())
    })
    .await;

    sim.stop();
    let rv = fake.resource_version();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"},
                       "spec": {"containers": [{"name": "c"}]}}),
    )
    .unwrap();
    tokio::time::sleep(fast().tick * 5).await;
    assert_eq!(fake.resource_version(), rv + 1, "nothing runs after stop");
}

#[tokio::test]
async fn discovery_serves_priority_classes_and_pod_templates() {
    let fake = FakeApiServer::new();
    let (_, core) = call(&fake, "GET", "/api/v1", None).await;
    let has = |list: &Value, name: &str| {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == name)
    };
    assert!(has(&core, "podtemplates"));
    let (code, scheduling) = call(&fake, "GET", "/apis/scheduling.k8s.io/v1", None).await;
    assert_eq!(code, 200);
    assert!(has(&scheduling, "priorityclasses"));
    let classes: Vec<String> = fake
        .list("priorityclasses", None)
        .iter()
        .map(|c| str_at(c, "/metadata/name").to_string())
        .collect();
    assert_eq!(classes, ["system-cluster-critical", "system-node-critical"]);
    let node_critical = fake
        .get("priorityclasses", None, "system-node-critical")
        .unwrap();
    assert_eq!(node_critical["value"], 2_000_001_000);
}

#[tokio::test]
async fn a_deletion_lost_to_history_compaction_is_still_noticed() {
    let fake = FakeApiServer::new();
    let sim = fake.simulate(fast());
    sim.add_pool(PoolSpec::new("pool", node_size(4000), 1));
    sim.add_nodes("pool", 1);
    sim.add_workload(WorkloadSpec::new("default", "web", 1, per_pod(100)));
    let pod = running_pods(&fake, "web", 1).await.remove(0);
    let name = str_at(&pod, "/metadata/name").to_string();

    // More writes than the history keeps, before the simulation looks again.
    fake.faults().set_watch_retention(1);
    fake.delete("pods", Some("default"), &name).unwrap();
    for n in ["x", "y"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
            .unwrap();
    }
    let gap = until("the replacement to run", || {
        sim.report()
            .disruptions
            .into_iter()
            .find(|d| d.restored_at.is_some())
    })
    .await;
    assert_eq!(
        (gap.pod.as_str(), gap.ending),
        (name.as_str(), Ending::Deleted)
    );
}
