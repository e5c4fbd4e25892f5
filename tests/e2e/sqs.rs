//! The SQS source against moto: EventBridge → SQS → router → stdout / webhook, and every outcome's
//! effect on the queue.

use std::process::Command;
use std::time::Duration;

use crate::support::{BIN, Moto, Queue, Receiver, Router, eventually, fixture};

fn config(queue_url: &str, visibility: u32, extra: &str) -> String {
    format!(
        "sources:\n  - type: aws_sqs\n    queue_url: {queue_url}\n    pollers: 2\n    wait_time_seconds: 1\n    visibility_timeout_seconds: {visibility}\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
         server:\n  readiness_grace_seconds: 1\n\
         log:\n  format: json\n{extra}"
    )
}

async fn drained(queue: &Queue) {
    eventually(
        Duration::from_secs(20),
        "the queue to be empty",
        async || (queue.depth().await == (0, 0)).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_through_eventbridge_are_normalised_printed_and_deleted() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "drill").await;
    let router = Router::start(&config(&queue.url, 30, ""), &moto.env()).await;

    // The fire drill, through the real CLI and EventBridge.
    let out = Command::new(BIN)
        .args([
            "inject",
            "--provider",
            "aws",
            "--instance-id",
            "i-0e2e0000000000001",
            "--zone",
            "us-east-1b",
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("published drill event "));

    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the drill event on stdout");
    assert_eq!(event["type"], "eviction-router.interruption.v1");
    assert_eq!(event["subject"], "i-0e2e0000000000001");
    assert_eq!(event["data"]["details"]["drill"], true);
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "aws:///us-east-1b/i-0e2e0000000000001"
    );
    assert_eq!(
        event["data"]["account"],
        serde_json::Value::Null,
        "moto omits the account"
    );

    // A real-shaped aws.ec2 event put on the bus by the SDK.
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("aws.ec2")
        .detail_type("EC2 Instance State-change Notification")
        .detail(r#"{"instance-id":"i-0e2e0000000000002","state":"shutting-down"}"#)
        .build();
    queue
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .unwrap();
    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the state change on stdout");
    assert_eq!(event["type"], "eviction-router.termination.v1");
    assert_eq!(event["data"]["action"], "terminate");

    drained(&queue).await;
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"handled\"}")
            .await,
        2.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_received_total{provider=\"aws\",kind=\"interruption\"}")
            .await,
        1.0
    );
    let metrics = router.metrics().await;
    assert!(metrics.contains("eviction_router_event_delivery_lag_seconds_count{provider=\"aws\",kind=\"termination\"} 1"), "{metrics}");
    assert_eq!(router.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_is_deleted_and_counted_and_duplicates_are_handled_once() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "poison").await;
    let router = Router::start(&config(&queue.url, 30, ""), &moto.env()).await;
    let spot = fixture("aws/spot-interruption-warning.json");
    queue.send("this is not JSON").await;
    queue.send(&spot).await;
    queue.send(&spot).await;

    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the event once");
    assert_eq!(event["id"], "1e5527d7-bb36-4607-3370-4164db56a40e");
    drained(&queue).await;
    assert!(
        router.next_event(Duration::from_millis(500)).is_none(),
        "a duplicate was printed"
    );
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"aws\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"poison\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_ignored_total{provider=\"aws\",reason=\"duplicate\"}")
            .await,
        1.0
    );
    assert_eq!(router.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_required_webhook_makes_the_message_redelivered_until_it_is_accepted() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "retry").await;
    // The receiver refuses twice, then accepts.
    let receiver = Receiver::start(vec![503, 503], Duration::ZERO).await;
    let sinks = format!(
        "sinks:\n  - type: webhook\n    url: {}\n    required: true\n    max_attempts: 1\n    secret_env: E2E_WEBHOOK_KEY\n",
        receiver.url
    );
    let mut env = moto.env();
    env.push(("E2E_WEBHOOK_KEY", "s3cr3t-key-of-e2e-tests".into()));
    let router = Router::start(&config(&queue.url, 2, &sinks), &env).await;
    queue
        .send(&fixture("aws/rebalance-recommendation.json"))
        .await;

    drained(&queue).await;
    // Two retries (each a redelivery after the 2 s visibility timeout), then one acceptance:
    // exactly three deliveries, as the outcomes promise, all of the same signed body.
    assert_eq!(receiver.count(), 3);
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"retry\"}")
            .await,
        2.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"handled\"}")
            .await,
        1.0
    );
    let seen = receiver.seen.lock().unwrap().clone();
    for r in &seen {
        assert_eq!(r.body, seen[0].body);
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json; charset=utf-8")
        );
        // Each attempt is signed with its own timestamp, which the signature covers.
        let verified = eviction_router::sinks::webhook::verify(
            b"s3cr3t-key-of-e2e-tests",
            r.timestamp.as_deref().unwrap(),
            r.signature.as_deref().unwrap(),
            &r.body,
            jiff::Timestamp::now().as_second(),
            eviction_router::sinks::webhook::TOLERANCE,
        );
        assert_eq!(verified, Ok(()), "signature verifies");
    }
    let event: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(event["type"], "eviction-router.rebalance_recommendation.v1");
    assert_eq!(router.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_handling_returns_the_message_to_the_queue() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "sigterm").await;
    // A receiver slower than the shutdown grace period keeps the message in flight.
    let receiver = Receiver::start(vec![], Duration::from_secs(20)).await;
    let extra = format!(
        "router:\n  shutdown_grace_seconds: 1\nsinks:\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 30\n",
        receiver.url
    );
    let router = Router::start(&config(&queue.url, 60, &extra), &moto.env()).await;
    queue
        .send(&fixture("aws/spot-interruption-warning.json"))
        .await;
    eventually(
        Duration::from_secs(20),
        "the message to be in flight",
        async || (receiver.count() == 1).then_some(()),
    )
    .await;
    assert_eq!(queue.depth().await, (0, 1));

    let started = std::time::Instant::now();
    assert_eq!(router.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    // Released, not left to its 60 s visibility timeout: visible again at once.
    eventually(
        Duration::from_secs(5),
        "the message to be visible again",
        async || (queue.depth().await == (1, 0)).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_queue_is_counted_and_makes_the_router_not_ready() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "unreachable").await;
    let router = Router::start(&config(&queue.url, 30, ""), &moto.env()).await;
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", router.base);
    eventually(Duration::from_secs(20), "ready and connected", async || {
        let r = http.get(&readyz).send().await.ok()?;
        let ok = r.status() == 200;
        (ok && r.text().await.ok()?.contains("aws_sqs: ok")).then_some(())
    })
    .await;

    drop(moto);
    let body = eventually(Duration::from_secs(60), "not ready", async || {
        let r = http.get(&readyz).send().await.ok()?;
        if r.status() == 503 {
            r.text().await.ok()
        } else {
            None
        }
    })
    .await;
    assert!(
        body.contains("aws_sqs: failing") && body.contains("Connection refused"),
        "{body}"
    );
    assert!(
        router
            .metric("eviction_router_source_errors_total{provider=\"aws\",stage=\"receive\"}")
            .await
            >= 1.0
    );
    assert_eq!(router.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn visibility_is_extended_while_a_slow_message_is_handled() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "slow").await;
    // Handling takes 5 s; the visibility timeout is 2 s. Without extension the message would
    // reappear and be received again while the first delivery is still in flight.
    let receiver = Receiver::start(vec![], Duration::from_secs(5)).await;
    let sinks = format!(
        "sinks:\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 10\n",
        receiver.url
    );
    let router = Router::start(&config(&queue.url, 2, &sinks), &moto.env()).await;
    queue
        .send(&fixture("aws/spot-interruption-warning.json"))
        .await;
    drained(&queue).await;
    assert_eq!(
        receiver.count(),
        1,
        "the message was redelivered while in flight"
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"handled\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"retry\"}")
            .await,
        0.0
    );
    assert_eq!(router.terminate(), Some(0));
}

/// The whole path: EventBridge → SQS (moto) → the router binary → the cluster (the fake API
/// server over HTTP): the drill cordons the Node, and the message leaves the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_through_sqs_cordons_the_node_in_the_cluster() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "cluster").await;
    let (addr, fake) = fake_apiserver::FakeApiServer::start_http().await.unwrap();
    fake.enforce_rbac(crate::cluster::chart_rbac());
    fake.insert(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "ip-10-1-1-1.ec2.internal"},
        "spec": {"providerID": "aws:///us-east-1b/i-0e2e00000000000c1"},
    }))
    .unwrap();
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let mut env = moto.env();
    env.push(("KUBECONFIG", kubeconfig.clone()));
    let config = format!(
        "sources:\n  - type: aws_sqs\n    queue_url: {}\n    wait_time_seconds: 1\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n",
        queue.url
    );
    let router = Router::start(&config, &env).await;
    let out = Command::new(BIN)
        .args([
            "inject",
            "--provider",
            "aws",
            "--instance-id",
            "i-0e2e00000000000c1",
            "--zone",
            "us-east-1b",
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(20), "the Node cordoned", async || {
        let n = fake.get("nodes", None, "ip-10-1-1-1.ec2.internal")?;
        (n["spec"]["unschedulable"] == true).then_some(())
    })
    .await;
    drained(&queue).await;
    let event = router
        .next_event(Duration::from_secs(5))
        .expect("the event on stdout");
    assert_eq!(event["data"]["node"]["name"], "ip-10-1-1-1.ec2.internal");
    assert_eq!(router.terminate(), Some(0));
}

/// A standby (another replica holds the Lease) does not receive from the queue and stays ready.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_leaves_the_queue_to_the_leader_and_stays_ready() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "standby").await;
    let (addr, fake) = fake_apiserver::FakeApiServer::start_http().await.unwrap();
    fake.insert(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}))
        .unwrap();
    fake.enforce_rbac(crate::cluster::chart_rbac());
    let renewed = jiff::Timestamp::now().to_string();
    fake.insert(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "eviction-router", "namespace": "eviction-router"},
        "spec": {"holderIdentity": "the-other-replica", "leaseDurationSeconds": 3600, "renewTime": renewed},
    }))
    .unwrap();
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let mut env = moto.env();
    env.push(("KUBECONFIG", kubeconfig.clone()));
    env.push(("POD_NAMESPACE", "eviction-router".into()));
    env.push(("POD_NAME", "this-replica".into()));
    let config = format!(
        "sources:\n  - type: aws_sqs\n    queue_url: {}\n    wait_time_seconds: 1\ncluster:\n  mode: kubernetes\nserver:\n  readiness_grace_seconds: 1\n",
        queue.url
    );
    let router = Router::start(&config, &env).await;
    queue
        .send(&fixture("aws/spot-interruption-warning.json"))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        queue.depth().await,
        (1, 0),
        "a standby received from the queue"
    );
    let ready = reqwest::get(format!("{}/readyz", router.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let lease = fake
        .get("leases", Some("eviction-router"), "eviction-router")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "the-other-replica");
    assert!(
        fake.requests().iter().all(|r| r.status != 403),
        "RBAC refused a call"
    );
    assert_eq!(router.terminate(), Some(0));
}

/// A message whose outcome is retry comes back after `retry_visibility_seconds`, not after the
/// whole visibility timeout (60 s here): during an outage of a required step, catch-up starts as
/// soon as the step works again.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_message_comes_back_after_the_retry_visibility() {
    let moto = Moto::start().await;
    let queue = Queue::create(&moto, "retry-soon").await;
    let receiver = Receiver::start(vec![503], Duration::ZERO).await;
    let sinks = format!(
        "sinks:\n  - type: webhook\n    url: {}\n    required: true\n    max_attempts: 1\n",
        receiver.url
    );
    let config = config(&queue.url, 60, &sinks).replace(
        "    visibility_timeout_seconds: 60\n",
        "    visibility_timeout_seconds: 60\n    retry_visibility_seconds: 1\n",
    );
    let router = Router::start(&config, &moto.env()).await;
    queue
        .send(&fixture("aws/spot-interruption-warning.json"))
        .await;
    eventually(Duration::from_secs(20), "the first attempt", async || {
        (receiver.count() == 1).then_some(())
    })
    .await;
    let refused = std::time::Instant::now();
    eventually(Duration::from_secs(15), "the redelivery", async || {
        (receiver.count() == 2).then_some(())
    })
    .await;
    assert!(
        refused.elapsed() < Duration::from_secs(15),
        "came back after {:?}",
        refused.elapsed()
    );
    drained(&queue).await;
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"aws\",outcome=\"handled\"}")
            .await,
        1.0
    );
    assert_eq!(router.terminate(), Some(0));
}
