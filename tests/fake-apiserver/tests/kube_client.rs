//! kube-rs against the in-process service.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
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
