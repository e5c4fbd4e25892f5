//! The embedded default (`run` with no configuration): HTTP ingest → dry run → stdout; and the
//! configuration checks.

use std::process::Command;
use std::time::Duration;

use crate::support::{BIN, Router, TempDir, fixture};

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_ingests_over_http_and_answers_with_the_outcome() {
    let router = Router::start_default().await;
    let http = reqwest::Client::new();
    let post = async |provider: &str, body: String| {
        let r = http
            .post(format!("{}/v1/ingest/{provider}", router.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };

    let (status, body) = post("gcp", fixture("gcp/preempted.pubsub-push.json")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"outcome\":\"handled\"}\n")
    );
    let event = router
        .next_event(Duration::from_secs(10))
        .expect("the event on stdout");
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "gce://mock-project/europe-west1-c/mock-instance-spot-3706-5b909138-nr65"
    );

    // The same entry again (bare this time): a duplicate, acknowledged and not printed.
    assert_eq!(
        post("gcp", fixture("gcp/preempted.logentry.json")).await.1,
        "{\"outcome\":\"ignored\"}\n"
    );
    assert_eq!(
        post("aws", fixture("aws/state-change-pending.json"))
            .await
            .1,
        "{\"outcome\":\"ignored\"}\n"
    );
    assert_eq!(
        post("azure", "{\"truncated\": ".into()).await,
        (400, "{\"outcome\":\"poison\"}\n".into())
    );
    assert_eq!(post("oracle", "{}".into()).await.0, 404);
    // The router answers 413 as soon as the body passes its limit and closes the connection
    // without reading the rest: the client may see that close while it is still writing. The
    // counter says the router refused it either way.
    let huge = "x".repeat(2 * 1024 * 1024);
    match http
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(huge)
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_eq!(
        router
            .metric("eviction_router_ingest_requests_total{outcome=\"too_large\"}")
            .await,
        1.0
    );
    assert!(
        router.next_event(Duration::from_millis(300)).is_none(),
        "only one event was printed"
    );

    assert_eq!(
        router
            .metric("eviction_router_events_received_total{provider=\"gcp\",kind=\"interruption\"}")
            .await,
        2.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_ignored_total{provider=\"gcp\",reason=\"duplicate\"}")
            .await,
        1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"azure\"}")
            .await,
        1.0
    );
    let ready = reqwest::get(format!("{}/readyz", router.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(router.terminate(), Some(0));
}

fn check_config(text: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = TempDir::new();
    let path = dir.0.join("c.yaml");
    std::fs::write(&path, text).unwrap();
    Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_examples_and_the_chart_and_names_bad_keys() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("examples/config")).unwrap() {
        let path = entry.unwrap().path();
        let out = check_config(
            &std::fs::read_to_string(&path).unwrap(),
            &[
                (
                    "EVICTION_ROUTER_SQS_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/1/q",
                ),
                ("WEBHOOK_SECRET", "k"),
                ("NATS_URL", "nats://127.0.0.1:4222"),
            ],
        );
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The configuration the Helm chart renders into its ConfigMap is one the router accepts.
    let manifests =
        std::fs::read_to_string(root.join("deploy/manifests/eviction-router.yaml")).unwrap();
    let mut found = 0;
    for doc in serde_norway::Deserializer::from_str(&manifests) {
        let value = <serde_norway::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if value["kind"] == "ConfigMap"
            && let Some(config) = value["data"]["config.yaml"].as_str()
        {
            let out = check_config(config, &[]);
            assert!(
                out.status.success(),
                "the chart's config: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            found += 1;
        }
    }
    assert_eq!(
        found, 1,
        "the rendered manifests hold the router's ConfigMap"
    );

    let out = check_config(
        "sources:\n  - type: aws_sqs\n    queue_url: https://q\n    pollerz: 2\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pollerz"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_pushes_every_cloud_through_the_router() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let providers: std::collections::BTreeSet<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["provider"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(providers.len(), 3);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("would cordon") && stderr.contains("would drain"),
        "{stderr}"
    );
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("demo: ") && summary.contains("1 ignored"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{} events", stdout.lines().count())),
        "{summary}"
    );
}

/// A webhook sink whose signing key is empty (or too short to be a key) stops `run` at start
/// instead of signing with it.
#[test]
fn an_empty_webhook_signing_key_stops_the_router_at_start() {
    let dir = TempDir::new();
    let path = dir.0.join("c.yaml");
    std::fs::write(
        &path,
        "sources:\n  - type: http_ingest\ncluster:\n  mode: dry_run\nsinks:\n  - type: webhook\n    url: http://127.0.0.1:9/hook\n    secret_env: E2E_EMPTY_KEY\nserver:\n  listen: 127.0.0.1:0\n",
    )
    .unwrap();
    for key in ["", "short"] {
        let out = Command::new(BIN)
            .args(["run", "--config", path.to_str().unwrap()])
            .env("E2E_EMPTY_KEY", key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key:?}: {stderr}");
        assert!(stderr.contains("must be at least 16"), "{stderr}");
    }
}

/// The largest values `check-config` accepts are ones `run` honours: the router starts, its
/// workers handle a message, and it stops; one beyond is refused naming its key.
#[tokio::test(flavor = "multi_thread")]
async fn the_largest_accepted_values_run() {
    let config = "sources:\n  - type: http_ingest\n\
        router:\n  concurrency: 10000\n  queue_capacity: 1000000\n  dedupe_capacity: 10000000\n  \
        dedupe_window_seconds: 604800\n  message_timeout_seconds: 86400\n  shutdown_grace_seconds: 3600\n  \
        max_events_per_message: 100000\n\
        cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n  maintenance_lead_seconds: 2592000\n  \
        replacement_timeout_seconds: 604800\n\
        sinks:\n  - type: stdout\n  - type: webhook\n    url: http://127.0.0.1:9/hook\n    queue_capacity: 1000000\n    \
        timeout_seconds: 300\n    max_attempts: 1\n\
        server:\n  listen: 127.0.0.1:0\n  max_connections: 65536\n  header_read_timeout_seconds: 300\n  body_read_timeout_seconds: 3600\n  \
        idle_timeout_seconds: 3600\n  readiness_grace_seconds: 86400\n";
    let out = check_config(config, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let router = Router::start(config, &[]).await;
    let rsp = reqwest::Client::new()
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(fixture("aws/spot-interruption-warning.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.text().await.unwrap(), "{\"outcome\":\"handled\"}\n");
    assert!(router.next_event(Duration::from_secs(10)).is_some());
    assert_eq!(router.terminate(), Some(0));

    let out = check_config(
        &config.replace(
            "queue_capacity: 1000000\n  dedupe",
            "queue_capacity: 1000001\n  dedupe",
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`router.queue_capacity`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
