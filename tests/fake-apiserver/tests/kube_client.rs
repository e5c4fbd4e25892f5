//! kube-rs against the in-process service.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use fake_apiserver::{Attributes, FakeApiServer, Rbac};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::time::Duration;

fn client(fake: &FakeApiServer) -> Client {
    Client::new(fake.service(), "default")
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn node(name: &str, labels: Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

/// A running, ready pod on `node` owned by a ReplicaSet.
fn running_pod(name: &str, node: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn pdb(name: &str, selector: Value, allowed: i64) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": selector},
        "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                   "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
    })
}

#[tokio::test]
async fn nodes_list_get_patch_and_optimistic_concurrency() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));
    let pp = PostParams::default();
    let a = nodes
        .create(&pp, &node("node-a", json!({"pool": "spot"})))
        .await
        .unwrap();
    nodes
        .create(&pp, &node("node-b", json!({"pool": "on-demand"})))
        .await
        .unwrap();
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());

    let dup = nodes
        .create(&pp, &node("node-a", json!({})))
        .await
        .unwrap_err();
    let dup = api_status(dup);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let all = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let spot = nodes
        .list(&ListParams::default().labels("pool=spot"))
        .await
        .unwrap();
    assert_eq!(spot.items.len(), 1);
    assert_eq!(spot.items[0].metadata.name.as_deref(), Some("node-a"));
    assert_eq!(
        nodes
            .list(&ListParams::default().labels("pool!=spot"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        nodes
            .list(&ListParams::default().labels("pool"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let by_name = nodes
        .list(&ListParams::default().fields("metadata.name=node-b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let pp = PatchParams::default();
    let merged = nodes
        .patch(
            "node-a",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"draining": "true"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["draining"], "true");
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["pool"], "spot");

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/taints", "value": [{"key": "spot", "value": "reclaim", "effect": "NoSchedule"}]},
        {"op": "add", "path": "/spec/unschedulable", "value": true},
        {"op": "replace", "path": "/metadata/labels/pool", "value": "spot-reclaimed"},
    ]))
    .unwrap();
    let patched = nodes
        .patch("node-a", &pp, &Patch::<()>::Json(ops))
        .await
        .unwrap();
    let spec = patched.spec.clone().unwrap();
    assert_eq!(spec.unschedulable, Some(true));
    assert_eq!(spec.taints.unwrap()[0].key, "spot");

    let failing: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/spec/unschedulable", "value": false}]),
    )
    .unwrap();
    let err = api_status(
        nodes
            .patch("node-a", &pp, &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    let smp = nodes
        .patch(
            "node-a",
            &pp,
            &Patch::Strategic(json!({"spec": {"unschedulable": null}})),
        )
        .await
        .unwrap();
    assert_eq!(smp.spec.as_ref().unwrap().unschedulable, None);

    // A replace carrying the resourceVersion it read wins once; the stale copy then conflicts.
    let mut fresh = nodes.get("node-a").await.unwrap();
    let mut stale = fresh.clone();
    fresh
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("round".into(), "1".into());
    let replaced = nodes
        .replace("node-a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        fresh.metadata.resource_version
    );
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("round".into(), "2".into());
    let conflict = api_status(
        nodes
            .replace("node-a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("the object has been modified"),
        "{}",
        conflict.message
    );

    let missing = api_status(nodes.get("node-z").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "nodes \"node-z\" not found");
}

#[tokio::test]
async fn pods_across_namespaces_by_node_and_status_subresource() {
    let fake = FakeApiServer::new();
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}))
        .unwrap();
    fake.insert(running_pod("a", "node-a", json!({"app": "a"})))
        .unwrap();
    let mut other = running_pod("b", "node-a", json!({"app": "b"}));
    other["metadata"]["namespace"] = json!("apps");
    fake.insert(other).unwrap();
    fake.insert(running_pod("c", "node-b", json!({"app": "c"})))
        .unwrap();

    let pods: Api<Pod> = Api::all(client(&fake));
    let on_a = pods
        .list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await
        .unwrap();
    let mut names: Vec<_> = on_a
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let bad = api_status(
        pods.list(&ListParams::default().fields("spec.bogus=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);

    // A pod created over the API starts Pending whatever status it carried; status writes go
    // through the status subresource, and a main-resource write cannot change status.
    let ns: Api<Pod> = Api::default_namespaced(client(&fake));
    let body: Pod = serde_json::from_value(running_pod("d", "node-a", json!({}))).unwrap();
    let created = ns.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let running = json!({"status": {"phase": "Running"}});
    let ignored = ns
        .patch("d", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .unwrap();
    assert_eq!(ignored.status.unwrap().phase.as_deref(), Some("Pending"));
    let applied = ns
        .patch_status("d", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .unwrap();
    assert_eq!(applied.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn eviction_honours_pod_disruption_budgets() {
    let fake = FakeApiServer::new();
    fake.insert(running_pod("web-1", "node-a", json!({"app": "web"})))
        .unwrap();
    fake.insert(running_pod("web-2", "node-a", json!({"app": "web"})))
        .unwrap();
    fake.insert(pdb("web", json!({"matchLabels": {"app": "web"}}), 0))
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client(&fake));
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client(&fake));

    let blocked = api_status(
        pods.evict("web-1", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (blocked.code, blocked.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert_eq!(
        blocked.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let causes = blocked.details.unwrap().causes;
    assert!(
        causes[0]
            .message
            .contains("The disruption budget web needs 1 healthy pods"),
        "{causes:?}"
    );
    assert!(pods.get("web-1").await.is_ok());

    // The disruption controller would recompute the budget; the test plays its part.
    let raise = json!({"status": {"disruptionsAllowed": 1}});
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(&raise))
        .await
        .unwrap();
    let ok = pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(ok.is_success());
    assert_eq!(api_status(pods.get("web-1").await.unwrap_err()).code, 404);
    let budget = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(budget.disruptions_allowed, Some(0));
    assert!(budget.disrupted_pods.unwrap().contains_key("web-1"));

    // Spent again: the next eviction is refused.
    let again = api_status(
        pods.evict("web-2", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(again.code, 429);

    // Two budgets over one pod: the apiserver refuses with a 500.
    fake.insert(pdb(
        "web-too",
        json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        5,
    ))
    .unwrap();
    let two = api_status(
        pods.evict("web-2", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(two.code, 500);
    assert!(two.message.contains("more than one PodDisruptionBudget"));

    // A Pending pod is deleted without consulting budgets.
    let mut pending = running_pod("web-3", "node-a", json!({"app": "web"}));
    pending["status"] = json!({"phase": "Pending"});
    fake.insert(pending).unwrap();
    pods.evict("web-3", &EvictParams::default()).await.unwrap();
    assert!(fake.get("pods", Some("default"), "web-3").is_none());

    let missing = api_status(
        pods.evict("nope", &EvictParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn watcher_sees_changes_and_relists_after_410() {
    let fake = FakeApiServer::new();
    fake.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}))
        .unwrap();
    let nodes: Api<Node> = Api::all(client(&fake));
    let mut stream = watcher(nodes.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watcher event within 10s")
            .expect("watcher stream does not end")
    };
    assert!(matches!(next().await.unwrap(), watcher::Event::Init));
    assert!(
        matches!(next().await.unwrap(), watcher::Event::InitApply(n) if n.metadata.name.as_deref() == Some("node-a"))
    );
    assert!(matches!(next().await.unwrap(), watcher::Event::InitDone));

    nodes
        .create(&PostParams::default(), &node("node-b", json!({})))
        .await
        .unwrap();
    assert!(
        matches!(next().await.unwrap(), watcher::Event::Apply(n) if n.metadata.name.as_deref() == Some("node-b"))
    );
    let label = json!({"metadata": {"labels": {"spot": "reclaim"}}});
    nodes
        .patch("node-a", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    match next().await.unwrap() {
        watcher::Event::Apply(n) => assert_eq!(n.metadata.labels.unwrap()["spot"], "reclaim"),
        other => panic!("expected Apply, got {other:?}"),
    }

    // Keep no history: the next write compacts past the watcher's resourceVersion.
    fake.faults().set_watch_retention(0);
    nodes.delete("node-b", &Default::default()).await.unwrap();
    match next().await {
        Err(watcher::Error::WatchError(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 watch error, got {other:?}"),
    }
    fake.faults().set_watch_retention(1000);
    assert!(matches!(next().await.unwrap(), watcher::Event::Init));
    match next().await.unwrap() {
        watcher::Event::InitApply(n) => assert_eq!(n.metadata.name.as_deref(), Some("node-a")),
        other => panic!("expected InitApply(node-a), got {other:?}"),
    }
    assert!(matches!(next().await.unwrap(), watcher::Event::InitDone));
}

#[tokio::test]
async fn events_k8s_io_and_leases() {
    let fake = FakeApiServer::new();
    let client = client(&fake);
    let node = fake
        .insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}))
        .unwrap();
    let node: Node = serde_json::from_value(node).unwrap();

    let recorder = Recorder::new(client.clone(), "eviction-router".into());
    let event = Event {
        type_: EventType::Warning,
        reason: "SpotInterruption".into(),
        note: Some("reclaim in 2m".into()),
        action: "Cordon".into(),
        secondary: None,
    };
    let reference = node.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    // The second identical event becomes a series: a merge patch of the first.
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<K8sEvent> = Api::default_namespaced(client.clone());
    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason.as_deref(), Some("SpotInterruption"));
    assert_eq!(listed[0].series.as_ref().map(|s| s.count), Some(2));

    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "eviction-router"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut got = leases.get("eviction-router").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    got.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let renewed = leases
        .replace("eviction-router", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_eq!(renewed.spec.unwrap().holder_identity.as_deref(), Some("b"));
    // A second candidate that read before the renewal loses.
    let mut rival = created.clone();
    rival.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let lost = api_status(
        leases
            .replace("eviction-router", &PostParams::default(), &rival)
            .await
            .unwrap_err(),
    );
    assert_eq!(lost.code, 409);
}

#[tokio::test]
async fn kube_client_over_http_from_a_kubeconfig() {
    // kube's `rustls-tls` feature selects no crypto provider, and a workspace build can enable
    // two, so the process has to choose one before building an HTTP(S) client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    assert!(addr.ip().is_loopback());
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&fake_apiserver::kubeconfig(addr)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client);

    let mut events = nodes
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    nodes
        .create(&PostParams::default(), &node("node-a", json!({})))
        .await
        .unwrap();
    let added = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    match added {
        Some(Ok(kube::api::WatchEvent::Added(n))) => {
            assert_eq!(n.metadata.name.as_deref(), Some("node-a"))
        }
        other => panic!("expected ADDED over HTTP, got {other:?}"),
    }
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(fake.get("nodes", None, "node-a").is_some());
}

/// The service account the chart runs the router as.
const ROUTER: &str = "system:serviceaccount:eviction-router:eviction-router";

/// The RBAC the Helm chart renders, as the router's service account holds it.
fn chart_rbac() -> Rbac {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/manifests/eviction-router.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    Rbac::from_manifests(&yaml, ROUTER).unwrap()
}

async fn raw(client: &Client, request: http::Request<Vec<u8>>) -> (u16, Value) {
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = response.status().as_u16();
    let body = response.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_charts_rbac_allows_what_the_router_does_and_no_more() {
    let fake = FakeApiServer::new();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .unwrap();
    fake.insert(running_pod("web-1", "n1", json!({"app": "web"})))
        .unwrap();
    fake.insert(running_pod("web-2", "n1", json!({"app": "web"})))
        .unwrap();
    fake.enforce_rbac(chart_rbac());
    let client = client(&fake);

    // Nodes: read, watch and patch (taint, cordon) — but not replace.
    let nodes: Api<Node> = Api::all(client.clone());
    let n1 = nodes.get("n1").await.unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let rv = n1.metadata.resource_version.clone().unwrap();
    let mut watch = nodes
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let taint = json!({"spec": {"taints": [{"key": "spot", "effect": "NoSchedule"}]}});
    nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    let modified = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap();
    assert!(
        matches!(modified, Some(Ok(kube::api::WatchEvent::Modified(_)))),
        "{modified:?}"
    );
    let put = api_status(
        nodes
            .replace("n1", &PostParams::default(), &n1)
            .await
            .unwrap_err(),
    );
    let message = format!(
        "nodes \"n1\" is forbidden: User \"{ROUTER}\" cannot update resource \"nodes\" in API group \"\" at the cluster scope"
    );
    assert_eq!((put.code, put.reason.as_str()), (403, "Forbidden"));
    assert_eq!(put.message, message);
    // The body is the apiserver's Status, field for field.
    let request = http::Request::put("/api/v1/nodes/n1")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&n1).unwrap())
        .unwrap();
    assert_eq!(
        raw(&client, request).await,
        (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": message, "reason": "Forbidden",
                   "details": {"name": "n1", "kind": "nodes"}, "code": 403})
        )
    );
    // The node status subresource is not granted either.
    let status = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let denied = api_status(
        nodes
            .patch_status("n1", &PatchParams::default(), &status)
            .await
            .unwrap_err(),
    );
    assert!(
        denied
            .message
            .contains("cannot patch resource \"nodes/status\" in API group \"\""),
        "{}",
        denied.message
    );

    // Pods: list everywhere and evict, never delete.
    let all_pods: Api<Pod> = Api::all(client.clone());
    let on_n1 = ListParams::default().fields("spec.nodeName=n1");
    assert_eq!(all_pods.list(&on_n1).await.unwrap().items.len(), 2);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let delete = api_status(
        pods.delete("web-2", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        delete.message,
        format!(
            "pods \"web-2\" is forbidden: User \"{ROUTER}\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        )
    );
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(fake.get("pods", Some("default"), "web-1").is_none());

    // events.k8s.io Events: create, then patch into a series.
    let recorder = Recorder::new(client.clone(), "eviction-router".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "Cordoned".into(),
        note: None,
        action: "Cordon".into(),
        secondary: None,
    };
    let reference = n1.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    // Leases: create any in the release namespace; get and update only the election's own.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "eviction-router");
    let lease = |name: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name},
                                      "spec": {"holderIdentity": "a"}}))
        .unwrap()
    };
    let pp = PostParams::default();
    leases.create(&pp, &lease("eviction-router")).await.unwrap();
    let mut mine = leases.get("eviction-router").await.unwrap();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("eviction-router", &pp, &mine).await.unwrap();
    // create cannot be limited to a name, so another lease can be made but not read back.
    let other = leases.create(&pp, &lease("other")).await.unwrap();
    assert_eq!(api_status(leases.get("other").await.unwrap_err()).code, 403);
    let update = api_status(leases.replace("other", &pp, &other).await.unwrap_err());
    assert_eq!(
        update.message,
        format!(
            "leases.coordination.k8s.io \"other\" is forbidden: User \"{ROUTER}\" cannot update resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"eviction-router\""
        )
    );
    let elsewhere: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let create = api_status(
        elsewhere
            .create(&pp, &lease("eviction-router"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        create.message,
        format!(
            "leases.coordination.k8s.io is forbidden: User \"{ROUTER}\" cannot create resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"kube-node-lease\""
        )
    );
    assert_eq!(create.details.unwrap().group, "coordination.k8s.io");
    assert_eq!(
        api_status(elsewhere.get("eviction-router").await.unwrap_err()).code,
        403
    );

    // Exactly the refused requests are listed, and logged with their 403.
    let denied: Vec<String> = fake
        .denied()
        .iter()
        .map(|d| {
            let a = &d.attributes;
            let sub = if a.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", a.subresource)
            };
            format!("{} {}{sub} {}/{}", a.verb, a.resource, a.namespace, a.name)
        })
        .collect();
    assert_eq!(
        denied,
        [
            "update nodes /n1",
            "update nodes /n1",
            "patch nodes/status /n1",
            "delete pods default/web-2",
            "get leases eviction-router/other",
            "update leases eviction-router/other",
            "create leases kube-node-lease/",
            "get leases kube-node-lease/eviction-router",
        ]
    );
    assert!(fake.denied().iter().all(|d| d.request.status == 403));
    let forbidden = fake.requests().iter().filter(|r| r.status == 403).count();
    assert_eq!(forbidden, denied.len());
    // The store methods are the test's own access and are not authorized.
    assert!(
        fake.get("leases", Some("kube-node-lease"), "eviction-router")
            .is_none()
    );
    assert!(fake.get("pods", Some("default"), "web-2").is_some());

    // The same policy, asked directly.
    let rbac = chart_rbac();
    assert!(rbac.allows(&Attributes::resource("patch", "", "nodes").named("n1")));
    assert!(!rbac.allows(&Attributes::resource("update", "", "nodes").named("n1")));
    let eviction = Attributes::resource("create", "", "pods")
        .with_subresource("eviction")
        .in_namespace("default")
        .named("p");
    assert!(rbac.allows(&eviction));
    assert!(!rbac.allows(&Attributes::resource("create", "", "pods").in_namespace("default")));

    fake.stop_enforcing_rbac();
    nodes
        .replace(
            "n1",
            &PostParams::default(),
            &nodes.get("n1").await.unwrap(),
        )
        .await
        .unwrap();
    fake.clear_requests();
    assert!(fake.denied().is_empty());
}

#[tokio::test]
async fn evictions_record_the_grace_period_the_apiserver_would_see() {
    let fake = FakeApiServer::new();
    for name in ["a", "b", "c"] {
        fake.insert(running_pod(name, "n1", json!({"app": name})))
            .unwrap();
    }
    let pods: Api<Pod> = Api::default_namespaced(client(&fake));

    // kube-core 5 writes `delete_options` (snake_case): the apiserver drops it as unknown.
    let seven = DeleteParams {
        grace_period_seconds: Some(7),
        ..DeleteParams::default()
    };
    let params = EvictParams {
        delete_options: Some(seven),
        ..EvictParams::default()
    };
    pods.evict("a", &params).await.unwrap();

    // A policy/v1 Eviction carries `deleteOptions`, which is honoured.
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some("b".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(7),
            ..DeleteOptions::default()
        }),
    };
    let status: kube::core::Status = pods
        .create_subresource("eviction", "b", &PostParams::default(), &eviction)
        .await
        .unwrap();
    assert!(status.is_success());

    // Refused evictions are not recorded.
    fake.insert(pdb("c", json!({"matchLabels": {"app": "c"}}), 0))
        .unwrap();
    assert_eq!(
        api_status(pods.evict("c", &EvictParams::default()).await.unwrap_err()).code,
        429
    );

    let records = fake.evictions();
    let seen: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.namespace.as_str(),
                r.name.as_str(),
                r.grace_period_seconds,
            )
        })
        .collect();
    assert_eq!(seen, [("default", "a", None), ("default", "b", Some(7))]);
    assert_eq!(records[0].delete_options, Value::Null);
    assert_eq!(records[1].delete_options, json!({"gracePeriodSeconds": 7}));
    assert!(records[0].at <= records[1].at && !records[1].dry_run);
    // Graceful termination is not modelled: the pods are gone at once.
    assert!(fake.get("pods", Some("default"), "b").is_none());
}

#[tokio::test]
async fn merge_patch_resource_version_is_a_precondition_and_lists_are_replaced() {
    let fake = FakeApiServer::new();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                       "spec": {"taints": [{"key": "a", "effect": "NoSchedule"},
                                           {"key": "b", "effect": "NoExecute"}]}}),
    )
    .unwrap();
    let nodes: Api<Node> = Api::all(client(&fake));
    let read = nodes.get("n1").await.unwrap();
    let read_rv = read.metadata.resource_version.clone().unwrap();
    let label = json!({"metadata": {"labels": {"x": "1"}}});
    let pp = PatchParams::default();
    nodes.patch("n1", &pp, &Patch::Merge(&label)).await.unwrap();

    let taints = |rv: &str| {
        json!({"metadata": {"resourceVersion": rv},
               "spec": {"taints": [{"key": "spot", "effect": "NoSchedule"}]}})
    };
    let stale = api_status(
        nodes
            .patch("n1", &pp, &Patch::Merge(taints(&read_rv)))
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on nodes \"n1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let unchanged = fake.get("nodes", None, "n1").unwrap();
    assert_eq!(unchanged["spec"]["taints"].as_array().unwrap().len(), 2);

    let current = nodes.get("n1").await.unwrap();
    let current_rv = current.metadata.resource_version.unwrap();
    let patched = nodes
        .patch("n1", &pp, &Patch::Merge(taints(&current_rv)))
        .await
        .unwrap();
    let taint_keys: Vec<String> = patched
        .spec
        .unwrap()
        .taints
        .unwrap()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(taint_keys, ["spot"]);
    assert_ne!(patched.metadata.resource_version.unwrap(), current_rv);
}

#[tokio::test]
async fn pdb_refusals_carry_retry_after_only_while_the_budget_is_being_processed() {
    let fake = FakeApiServer::new();
    fake.insert(running_pod("web-1", "n1", json!({"app": "web"})))
        .unwrap();
    fake.insert(pdb("web", json!({"matchLabels": {"app": "web"}}), 0))
        .unwrap();
    let client = client(&fake);
    let evict = || {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "web-1", "namespace": "default"}});
        http::Request::post("/api/v1/namespaces/default/pods/web-1/eviction")
            .header("content-type", "application/json")
            .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    // No disruption allowed: 429 without Retry-After, as the apiserver answers
    // (NewTooManyRequests(..., 0) in eviction.go checkAndDecrement).
    let response = client.send(evict()).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    // A budget whose spec changed since its status was computed: 429 with Retry-After: 10.
    let mut pdb = fake
        .get("poddisruptionbudgets", Some("default"), "web")
        .unwrap();
    pdb["spec"]["minAvailable"] = json!(0);
    pdb["status"]["disruptionsAllowed"] = json!(1);
    let pdb = fake.update(pdb).unwrap();
    assert_eq!(pdb["metadata"]["generation"], 2);
    let response = client.send(evict()).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "10");
}

/// `limit` and `continue` page a list, as the watcher's initial list asks (500 a page).
#[tokio::test]
async fn lists_are_paged_with_limit_and_continue() {
    let fake = FakeApiServer::new();
    for i in 0..5 {
        fake.insert(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("n{i}")}}),
        )
        .unwrap();
    }
    let nodes: Api<Node> = Api::all(client(&fake));
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = ListParams::default().limit(2);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = nodes.list(&params).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|n| n.metadata.name.clone().unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"]);
    let bad = nodes
        .list(&ListParams::default().limit(2).continue_token("nonsense"))
        .await
        .unwrap_err();
    assert_eq!(api_status(bad).code, 400);
}

/// core validation: a ConfigMap holds at most 1 MiB (`data` and `binaryData` together) and
/// `binaryData` is base64; a patch is checked like a create, and its resourceVersion is a
/// precondition.
#[tokio::test]
async fn config_maps_are_refused_past_1_mib_and_patched_on_their_version() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;
    let fake = FakeApiServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(client(&fake), "default");
    let map = |bytes: Vec<u8>| ConfigMap {
        metadata: ObjectMeta {
            name: Some("state".into()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([("s".to_owned(), ByteString(bytes))])),
        ..Default::default()
    };
    let too_big = cms
        .create(&PostParams::default(), &map(vec![7; 1024 * 1024 + 1]))
        .await
        .unwrap_err();
    let status = api_status(too_big);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    assert!(status.message.contains("Too long"), "{}", status.message);

    let made = cms
        .create(&PostParams::default(), &map(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(made.binary_data.unwrap()["s"].0, vec![1, 2, 3]);
    let version = made.metadata.resource_version.unwrap();
    let patch = |rv: &str, data: Value| json!({"metadata": {"resourceVersion": rv}, "binaryData": {"s": data}});
    let patched = cms
        .patch(
            "state",
            &PatchParams::default(),
            &Patch::Merge(patch(&version, json!("BAUG"))),
        )
        .await
        .unwrap();
    assert_eq!(patched.binary_data.unwrap()["s"].0, vec![4, 5, 6]);
    let stale = cms
        .patch(
            "state",
            &PatchParams::default(),
            &Patch::Merge(patch(&version, json!("BwgJ"))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(stale).code, 409);
    let current = cms
        .get("state")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let bad = cms
        .patch(
            "state",
            &PatchParams::default(),
            &Patch::Merge(patch(&current, json!("not base64!"))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_status(bad).code, 400);
}
