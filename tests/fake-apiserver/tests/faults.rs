//! Fault injection: 500s, 429 + Retry-After, latency, dropped watches, 410 Gone, request log.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::time::{Duration, Instant};

fn client(fake: &FakeApiServer) -> Client {
    Client::new(fake.service(), "default")
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn next_requests_fail_with_500_then_recover() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));
    fake.faults().fail_next("GET", "/api/v1/nodes", 2);
    // Other methods and paths are untouched.
    nodes
        .create(&PostParams::default(), &node("node-a"))
        .await
        .unwrap();
    Api::<Node>::all(client(&fake))
        .get("node-a")
        .await
        .unwrap_err();
    assert_eq!(
        code(nodes.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let statuses: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/nodes"))
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("POST".into(), 201),
            ("GET".into(), 500),
            ("GET".into(), 500),
            ("GET".into(), 200)
        ]
    );
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let fake = FakeApiServer::new();
    let client = client(&fake);
    fake.faults().throttle_next(
        "*",
        "/api/v1/namespaces/default/pods",
        1,
        Duration::from_secs(7),
    );
    let request = || {
        http::Request::get("/api/v1/namespaces/default/pods")
            .body(kube::client::Body::empty())
            .unwrap()
    };
    let throttled = client.send(request()).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    let body = http_body_util_collect(throttled.into_body()).await;
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 7);
    assert_eq!(client.send(request()).await.unwrap().status(), 200);
}

async fn http_body_util_collect(mut body: kube::client::Body) -> Vec<u8> {
    use http_body::Body as _;
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
        }
    }
    out
}

#[tokio::test]
async fn latency_applies_to_every_request() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));
    fake.faults().set_latency(Duration::from_millis(300));
    let start = Instant::now();
    nodes.list(&ListParams::default()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    fake.faults().clear();
    let start = Instant::now();
    nodes.list(&ListParams::default()).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(300));
}

fn watches(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .count()
}

#[tokio::test]
async fn dropped_watches_end_and_the_watcher_rewatches() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));

    let raw = nodes.watch(&WatchParams::default(), "0").await.unwrap();
    let mut raw = raw.boxed();
    // The watcher is polled from its own task so it opens its watch while the test waits.
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut stream = watcher(nodes.clone(), watcher::Config::default()).boxed();
    let forward = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    assert!(matches!(
        within("Init", events.recv()).await,
        Some(Ok(watcher::Event::Init))
    ));
    assert!(matches!(
        within("InitDone", events.recv()).await,
        Some(Ok(watcher::Event::InitDone))
    ));
    within("the watch request", async {
        while watches(&fake) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    fake.faults().drop_watches();
    assert!(within("the raw watch to end", raw.next()).await.is_none());

    nodes
        .create(&PostParams::default(), &node("node-a"))
        .await
        .unwrap();
    match within("Apply", events.recv()).await {
        Some(Ok(watcher::Event::Apply(n))) => {
            assert_eq!(n.metadata.name.as_deref(), Some("node-a"))
        }
        other => panic!("expected Apply(node-a), got {other:?}"),
    }
    // It resumed with a new watch from its resourceVersion instead of relisting.
    let lists = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && !r.query.contains("watch"))
        .count();
    assert_eq!((lists, watches(&fake)), (1, 3), "{:#?}", fake.requests());
    forward.abort();
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_gone() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));
    let first = nodes
        .create(&PostParams::default(), &node("node-a"))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    fake.faults().set_watch_retention(1);
    nodes
        .create(&PostParams::default(), &node("node-b"))
        .await
        .unwrap();
    nodes
        .create(&PostParams::default(), &node("node-c"))
        .await
        .unwrap();

    let mut stream = nodes
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match within("the ERROR event", stream.next()).await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(within("the stream to end", stream.next()).await.is_none());

    // From the latest RV the watch works.
    let latest = fake.resource_version().to_string();
    let mut stream = nodes
        .watch(&WatchParams::default(), &latest)
        .await
        .unwrap()
        .boxed();
    nodes.delete("node-b", &Default::default()).await.unwrap();
    match within("DELETED", stream.next()).await {
        Some(Ok(WatchEvent::Deleted(n))) => assert_eq!(n.metadata.name.as_deref(), Some("node-b")),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn request_log_records_patch_content_types() {
    let fake = FakeApiServer::new();
    let nodes: Api<Node> = Api::all(client(&fake));
    nodes
        .create(&PostParams::default(), &node("node-a"))
        .await
        .unwrap();
    fake.clear_requests();
    let pp = PatchParams::default();
    nodes
        .patch(
            "node-a",
            &pp,
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "node-a",
            &pp,
            &Patch::Merge(json!({"spec": {"unschedulable": null}})),
        )
        .await
        .unwrap();
    let apply = PatchParams::apply("eviction-router");
    let err = nodes
        .patch(
            "node-a",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node"})),
        )
        .await;
    assert_eq!(code(err.unwrap_err()), 415);
    let types: Vec<Option<String>> = fake
        .requests()
        .into_iter()
        .map(|r| r.content_type)
        .collect();
    assert_eq!(
        types,
        [
            Some("application/strategic-merge-patch+json".to_string()),
            Some("application/merge-patch+json".to_string()),
            Some("application/apply-patch+yaml".to_string()),
        ]
    );
}
