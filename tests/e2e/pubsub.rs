//! The GCP Pub/Sub source end to end: the real binary against the real Pub/Sub emulator
//! (`cloud-pubsub-emulator`, started by each test on 127.0.0.1), LogEntries published as a
//! logging sink would, acks and nacks, the dead-letter policy, an unreachable and a restarted
//! emulator, and the GKE Nodes the events resolve to.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

use crate::support::{BIN, Link, Router, eventually, fixture, free_port, kubeconfig_for};

const PROJECT: &str = "evr-test";
/// Where the Debian package google-cloud-cli-pubsub-emulator installs the emulator's own script.
const DEFAULT_EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

/// The Pub/Sub emulator (a JVM; the script `exec`s it, so the child is the server).
pub struct Emulator {
    child: Option<Child>,
    pub port: u16,
    http: reqwest::Client,
}

impl Emulator {
    /// The emulator `.ci/run` started (`PUBSUB_EMULATOR_HOST`), else a new one. Tests sharing
    /// it use their own topic and subscription names.
    pub async fn shared() -> Emulator {
        let port = std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .and_then(|h| h.rsplit(':').next()?.parse().ok());
        match port {
            Some(port) => Emulator {
                child: None,
                port,
                http: reqwest::Client::new(),
            },
            None => Emulator::start().await,
        }
    }

    /// Starts an emulator on a free port and waits until it answers.
    pub async fn start() -> Emulator {
        let mut emulator = Emulator {
            child: None,
            port: free_port(),
            http: reqwest::Client::new(),
        };
        emulator.restart().await;
        emulator
    }

    /// Starts (again) on the same port; an emulator keeps nothing across restarts.
    pub async fn restart(&mut self) {
        let bin = std::env::var("PUBSUB_EMULATOR_BIN").unwrap_or_else(|_| DEFAULT_EMULATOR.into());
        let child = Command::new(&bin)
            .args(["--host=127.0.0.1", &format!("--port={}", self.port)])
            .env("JAVA_OPTS", "-Xms32m -Xmx256m -XX:+UseSerialGC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the Pub/Sub emulator `{bin}` ({e}): install the Debian package google-cloud-cli-pubsub-emulator, or set PUBSUB_EMULATOR_BIN")
            });
        self.child = Some(child);
        let url = self.url("/v1/projects/evr-test/topics");
        let http = self.http.clone();
        eventually(
            Duration::from_secs(60),
            "the Pub/Sub emulator to answer",
            async || {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await;
    }

    /// Kills the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `host:port`, the form of `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `body` to the emulator's REST API and returns its JSON answer; anything but
    /// success fails the test.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates `topic`, a dead-letter topic, and `subscription` on `topic` whose dead-letter
    /// policy moves a message after `max_attempts` deliveries (which also makes Pub/Sub count
    /// `delivery_attempt`). Returns the subscription's full name.
    pub async fn create(&self, topic: &str, subscription: &str, max_attempts: u32) -> String {
        for t in [topic.to_owned(), format!("{topic}-dead")] {
            let path = format!("/v1/projects/{PROJECT}/topics/{t}");
            self.call(reqwest::Method::PUT, &path, json!({})).await;
        }
        let name = format!("projects/{PROJECT}/subscriptions/{subscription}");
        let body = json!({
            "topic": format!("projects/{PROJECT}/topics/{topic}"),
            "ackDeadlineSeconds": 10,
            "deadLetterPolicy": {
                "deadLetterTopic": format!("projects/{PROJECT}/topics/{topic}-dead"),
                "maxDeliveryAttempts": max_attempts,
            },
        });
        self.call(reqwest::Method::PUT, &format!("/v1/{name}"), body)
            .await;
        name
    }

    /// A plain subscription on an existing topic.
    pub async fn subscribe(&self, topic: &str, subscription: &str) -> String {
        let name = format!("projects/{PROJECT}/subscriptions/{subscription}");
        let body = json!({"topic": format!("projects/{PROJECT}/topics/{topic}")});
        self.call(reqwest::Method::PUT, &format!("/v1/{name}"), body)
            .await;
        name
    }

    /// Publishes `data` to `topic` as a logging sink does (the LogEntry JSON as message data).
    pub async fn publish(&self, topic: &str, data: &str) -> String {
        let body = json!({"messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": {"logging.googleapis.com/timestamp": "2026-11-23T10:00:00Z"},
        }]});
        let path = format!("/v1/projects/{PROJECT}/topics/{topic}:publish");
        let r = self.call(reqwest::Method::POST, &path, body).await;
        r["messageIds"][0].as_str().unwrap().to_owned()
    }

    /// Pulls what is available on `subscription` now (without acking).
    pub async fn pull(&self, subscription: &str) -> Vec<Value> {
        let body = json!({"maxMessages": 10, "returnImmediately": true});
        let path = format!("/v1/{subscription}:pull");
        let r = self.call(reqwest::Method::POST, &path, body).await;
        r["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(subscription: &str, cluster: &str) -> String {
    format!(
        "sources:\n  - type: gcp_pubsub\n    subscription: {subscription}\n    health_check_seconds: 1\nserver:\n  readiness_grace_seconds: 1\n{cluster}"
    )
}

const DRY_RUN: &str = "cluster:\n  mode: dry_run\n";

/// A LogEntry from the fixtures with its own insertId, instance id and name.
fn entry(fixture_path: &str, insert_id: &str, instance_id: &str, name: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture(fixture_path)).unwrap();
    v["insertId"] = json!(insert_id);
    v["resource"]["labels"]["instance_id"] = json!(instance_id);
    v["resource"]["labels"]["project_id"] = json!(PROJECT);
    v["resource"]["labels"]["zone"] = json!("europe-west1-c");
    v["protoPayload"]["resourceName"] = json!(format!(
        "projects/{PROJECT}/zones/europe-west1-c/instances/{name}"
    ));
    v.to_string()
}

/// No message is left on the subscription: every one was acked.
async fn assert_drained(emulator: &Emulator, subscription: &str) {
    for _ in 0..3 {
        let left = emulator.pull(subscription).await;
        assert!(left.is_empty(), "messages were not acked: {left:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Preempted and upcomingMaintenance entries, as a logging sink publishes them, are
/// normalised, printed and acked; a poison message is acked (not dead-lettered) and counted.
#[tokio::test(flavor = "multi_thread")]
async fn sink_entries_are_normalised_printed_and_acked_and_poison_is_counted() {
    let emulator = Emulator::shared().await;
    let sub = emulator.create("sink-events", "sink-router", 5).await;
    let dead = emulator
        .subscribe("sink-events-dead", "sink-dead-watch")
        .await;
    let router = Router::start(
        &config(&sub, DRY_RUN),
        &[("PUBSUB_EMULATOR_HOST", emulator.host())],
    )
    .await;
    emulator
        .publish(
            "sink-events",
            &entry("gcp/preempted.logentry.json", "p-1", "1001", "gke-spot-a"),
        )
        .await;
    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the preemption on stdout");
    assert_eq!(event["type"], "eviction-router.interruption.v1");
    assert_eq!(event["data"]["instance"]["id"], "1001");
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "gce://evr-test/europe-west1-c/gke-spot-a"
    );
    emulator
        .publish(
            "sink-events",
            &entry(
                "gcp/upcoming-maintenance-pending.logentry.json",
                "m-1",
                "1002",
                "gke-spot-b",
            ),
        )
        .await;
    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the maintenance on stdout");
    assert_eq!(event["type"], "eviction-router.scheduled_maintenance.v1");
    assert_eq!(event["data"]["status"], "scheduled");
    assert!(event["data"]["not_before"].is_string());

    emulator.publish("sink-events", "not a LogEntry").await;
    eventually(
        Duration::from_secs(20),
        "the poison to be counted",
        async || {
            (router
                .metric("eviction_router_messages_total{provider=\"gcp\",outcome=\"poison\"}")
                .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"gcp\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"gcp\",outcome=\"handled\"}")
            .await,
        2.0
    );
    assert_eq!(router.terminate(), Some(0));
    // Acked: nothing comes back, and nothing was dead-lettered.
    assert_drained(&emulator, &sub).await;
    assert!(
        emulator.pull(&dead).await.is_empty(),
        "nothing dead-lettered"
    );
}

fn gke_node(name: &str, instance_id: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"cloud.google.com/gke-nodepool": "spot"},
            "annotations": {"container.googleapis.com/instance_id": instance_id},
        },
        "spec": {"providerID": format!("gce://{PROJECT}/europe-west1-c/{name}")},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// With the cluster: the `inject --provider gcp` drill and a sink entry cordon the right GKE
/// Node, by the instance-id annotation; an entry for an earlier incarnation of a Node recreated
/// under the same name (another instance id) acts on nothing. A transient API failure nacks the
/// message, and Pub/Sub redelivers it with `delivery_attempt` 2.
#[tokio::test(flavor = "multi_thread")]
async fn entries_cordon_the_right_gke_node_and_a_nack_is_redelivered() {
    let emulator = Emulator::shared().await;
    let sub = emulator.create("gke-events", "gke-router", 5).await;
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.enforce_rbac(crate::cluster::chart_rbac());
    fake.insert(gke_node("gke-spot-a", "2001")).unwrap();
    fake.insert(gke_node("gke-spot-b", "2002")).unwrap();
    fake.insert(gke_node("gke-spot-c", "2003")).unwrap();
    let (_dir, kubeconfig) = kubeconfig_for(addr);
    let cluster = "cluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n";
    let router = Router::start(
        &config(&sub, cluster),
        &[
            ("PUBSUB_EMULATOR_HOST", emulator.host()),
            ("KUBECONFIG", kubeconfig.clone()),
            ("RUST_LOG", "info".into()),
        ],
    )
    .await;
    let cordoned =
        |name: &str| fake.get("nodes", None, name).unwrap()["spec"]["unschedulable"] == true;

    // The drill, through the real CLI.
    let out = Command::new(BIN)
        .args([
            "inject",
            "--provider",
            "gcp",
            "--topic",
            &format!("projects/{PROJECT}/topics/gke-events"),
            "--zone",
            "europe-west1-c",
            "--instance-name",
            "gke-spot-a",
            "--instance-id",
            "2001",
        ])
        .env("PUBSUB_EMULATOR_HOST", emulator.host())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = router
        .next_event(Duration::from_secs(20))
        .expect("the drill on stdout");
    assert_eq!(event["data"]["details"]["drill"], true);
    assert_eq!(event["data"]["node"]["name"], "gke-spot-a");
    assert!(cordoned("gke-spot-a"));

    // gke-spot-b was recreated: 2002 is the live incarnation, 1999 the preempted one.
    emulator
        .publish(
            "gke-events",
            &entry("gcp/preempted.logentry.json", "old-1", "1999", "gke-spot-b"),
        )
        .await;
    eventually(
        Duration::from_secs(20),
        "the stale entry to be ignored",
        async || {
            (router
                .metric(
                    "eviction_router_events_ignored_total{provider=\"gcp\",reason=\"foreign_instance\"}",
                )
                .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    assert!(
        !cordoned("gke-spot-b"),
        "an earlier incarnation's entry must not act on the recreated Node"
    );

    // The API server fails once: nack, redelivery with delivery_attempt 2, then handled.
    fake.faults()
        .fail_next("PATCH", "/api/v1/nodes/gke-spot-c", 1);
    emulator
        .publish(
            "gke-events",
            &entry(
                "gcp/preempted.logentry.json",
                "retry-1",
                "2003",
                "gke-spot-c",
            ),
        )
        .await;
    eventually(
        Duration::from_secs(30),
        "gke-spot-c to be cordoned",
        async || cordoned("gke-spot-c").then_some(()),
    )
    .await;
    assert!(
        router
            .metric("eviction_router_messages_total{provider=\"gcp\",outcome=\"retry\"}")
            .await
            >= 1.0
    );
    let redelivered = eventually(
        Duration::from_secs(10),
        "the redelivery in the logs",
        async || {
            router
                .logs()
                .into_iter()
                .find(|l| l.contains("Settled a message.") && l.contains("\"attempt\":2"))
        },
    )
    .await;
    assert!(
        redelivered.contains("\"outcome\":\"handled\""),
        "{redelivered}"
    );
    assert_eq!(router.terminate(), Some(0));
    assert_drained(&emulator, &sub).await;
}

/// The stream never stalls silently: when the endpoint becomes unreachable the router turns
/// not ready (naming the source) and counts the failed checks; messages published meanwhile
/// are all received once it is reachable again. A killed and restarted emulator is
/// reconnected to as well.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_or_restarted_emulator_is_detected_and_nothing_is_lost() {
    const ATTEMPTS: u32 = 10;
    let mut emulator = Emulator::start().await;
    // Every lease of a message pushed into a connection that died counts as a delivery
    // attempt; this test is about the outage, not the dead-letter policy, so it allows more.
    let sub = emulator.create("events", "router", ATTEMPTS).await;
    let mut link = Link::start(emulator.port).await;
    let router = Router::start(
        &config(&sub, DRY_RUN),
        &[("PUBSUB_EMULATOR_HOST", format!("127.0.0.1:{}", link.port))],
    )
    .await;
    emulator
        .publish(
            "events",
            &entry("gcp/preempted.logentry.json", "before", "3001", "n1"),
        )
        .await;
    let event = router
        .next_event(Duration::from_secs(20))
        .expect("first event");
    assert_eq!(event["id"], "before");
    eventually(Duration::from_secs(10), "ready", async || {
        (router.readyz().await.0 == 200).then_some(())
    })
    .await;

    link.cut();
    let (status, body) = eventually(Duration::from_secs(30), "not ready", async || {
        let r = router.readyz().await;
        (r.0 == 503).then_some(r)
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("gcp_pubsub"), "{body}");
    // An outage, not one slow answer: two failed checks in a row.
    eventually(Duration::from_secs(20), "two failed checks", async || {
        (router
            .metric("eviction_router_source_errors_total{provider=\"gcp\",stage=\"health_check\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    emulator
        .publish(
            "events",
            &entry("gcp/preempted.logentry.json", "during", "3002", "n2"),
        )
        .await;
    link.restore().await;
    eventually(Duration::from_secs(15), "ready again", async || {
        (router.readyz().await.0 == 200).then_some(())
    })
    .await;
    emulator
        .publish(
            "events",
            &entry("gcp/preempted.logentry.json", "after-outage", "3004", "n4"),
        )
        .await;
    // Both arrive. The stream is replaced as soon as the watchdog sees Pub/Sub again; the
    // emulator may have pushed the message published during the outage into the stream that
    // died (it learns a stream is gone only when a write fails), and then it comes back when
    // its lease lapses, after the stream's ack deadline (10 s): late, but not lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut received = Vec::new();
    while received.len() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = router
            .next_event(left)
            .unwrap_or_else(|| panic!("only {received:?} after the outage"));
        received.push(event["id"].as_str().unwrap().to_owned());
    }
    received.sort();
    assert_eq!(received, ["after-outage", "during"]);
    eventually(Duration::from_secs(15), "ready again", async || {
        (router.readyz().await.0 == 200).then_some(())
    })
    .await;

    // Killed: not ready; restarted (empty, as emulators are) and set up again: received.
    emulator.kill();
    eventually(
        Duration::from_secs(30),
        "not ready after the kill",
        async || (router.readyz().await.0 == 503).then_some(()),
    )
    .await;
    emulator.restart().await;
    emulator.create("events", "router", ATTEMPTS).await;
    eventually(
        Duration::from_secs(30),
        "ready after the restart",
        async || (router.readyz().await.0 == 200).then_some(()),
    )
    .await;
    emulator
        .publish(
            "events",
            &entry("gcp/preempted.logentry.json", "after", "3003", "n3"),
        )
        .await;
    // The subscription is created again only now: until then the stream fails (not found) and
    // is opened again after the source's backoff.
    let event = router
        .next_event(Duration::from_secs(90))
        .expect("an event after the restart");
    assert_eq!(event["id"], "after");
    assert_eq!(router.terminate(), Some(0));
}
