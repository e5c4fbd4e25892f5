//! Latency harness for the GCP path: LogEntries published to a Pub/Sub emulator topic (as a
//! logging sink does) → the real router binary's streaming pull → stdout, measuring
//! - router-added latency: from the message leaving the stream (pulled) to its outcome, after
//!   the event was written to stdout, as the router itself logs it per message;
//! - end to end: from just before the publish request to the event line on stdout.
//!
//! Run: `cargo bench --bench pubsub` (needs the Pub/Sub emulator: the Debian package
//! google-cloud-cli-pubsub-emulator, or `PUBSUB_EMULATOR_BIN`). `BENCH_EVENTS` (default 500)
//! sets the events per run; 3 measured runs follow a warm-up. By default events are published
//! in batches of 10 as fast as the emulator takes them (a burst: router-added latency then
//! includes waiting for a handler); `BENCH_PACE_MS=N` publishes them one by one, N ms apart
//! (per-message latency). Everything listens on 127.0.0.1 and every loop is bounded.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Kill, Router, free_port};

const EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

async fn put(http: &reqwest::Client, url: &str, body: &str) -> reqwest::Response {
    http.put(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the emulator answers")
}

fn entry(insert_id: &str, instance: usize) -> String {
    serde_json::json!({
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": {"message": "Instance was preempted."},
            "serviceName": "compute.googleapis.com",
            "methodName": "compute.instances.preempted",
            "resourceName": format!("projects/bench/zones/europe-west1-b/instances/gke-spot-{instance}"),
        },
        "insertId": insert_id,
        "resource": {"type": "gce_instance", "labels": {
            "instance_id": format!("{}", 9_000_000_000_000u64 + instance as u64),
            "project_id": "bench", "zone": "europe-west1-b"}},
        "timestamp": jiff::Timestamp::now().to_string(),
        "logName": "projects/bench/logs/cloudaudit.googleapis.com%2Fsystem_event",
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe harness=false benches.
    }
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let pace: u64 = std::env::var("BENCH_PACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let batch = if pace > 0 { 1 } else { 10 };
    let port = free_port();
    let bin = std::env::var("PUBSUB_EMULATOR_BIN").unwrap_or_else(|_| EMULATOR.into());
    let _emulator = Kill(
        Command::new(&bin)
            .args(["--host=127.0.0.1", &format!("--port={port}")])
            .env("JAVA_OPTS", "-Xms32m -Xmx384m -XX:+UseSerialGC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the Pub/Sub emulator (google-cloud-cli-pubsub-emulator or PUBSUB_EMULATOR_BIN)",
            ),
    );
    let base = format!("http://127.0.0.1:{port}/v1/projects/bench");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..240 {
        if http.get(format!("{base}/topics")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(up, "the emulator answers within 60 s");
    put(&http, &format!("{base}/topics/events"), "{}").await;
    put(
        &http,
        &format!("{base}/subscriptions/router"),
        r#"{"topic": "projects/bench/topics/events", "ackDeadlineSeconds": 60}"#,
    )
    .await;

    let dir = std::env::temp_dir().join(format!("er-bench-pubsub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_path = dir.join("config.yaml");
    std::fs::write(
        &config_path,
        "sources:\n  - type: gcp_pubsub\n    subscription: projects/bench/subscriptions/router\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\nlog:\n  format: json\n",
    )
    .expect("config");
    let router = Router::start(
        &config_path,
        &[("PUBSUB_EMULATOR_HOST", format!("127.0.0.1:{port}"))],
    );

    println!(
        "events per run: {n}, {}; router: 1 stream, 100 outstanding, concurrency 64, dry run, stdout sink",
        if pace > 0 {
            format!("one every {pace} ms")
        } else {
            "published in batches of 10 as fast as possible".to_owned()
        }
    );
    println!(
        "run | router-added p50 / p99 (ms) | end-to-end p50 / p99 (ms) | throughput (events/s)"
    );
    for run in 0..4 {
        let count = if run == 0 { 50 } else { n };
        let mut published_at: HashMap<String, Instant> = HashMap::new();
        let started = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(batch) {
            if pace > 0 {
                tokio::time::sleep(Duration::from_millis(pace)).await;
            }
            let messages: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| {
                    let id = format!("r{run}-{i}");
                    serde_json::json!({"data": base64::engine::general_purpose::STANDARD.encode(entry(&id, *i))})
                })
                .collect();
            let t = Instant::now();
            let rsp = http
                .post(format!("{base}/topics/events:publish"))
                .header("content-type", "application/json")
                .body(serde_json::json!({ "messages": messages }).to_string())
                .send()
                .await
                .expect("publish");
            assert!(rsp.status().is_success(), "publish: {}", rsp.status());
            for i in chunk {
                published_at.insert(format!("r{run}-{i}"), t);
            }
        }
        let (e2e, added, done) = router.measure(&published_at);
        let elapsed = done.duration_since(started).as_secs_f64();
        if run == 0 {
            continue;
        }
        println!(
            "{run} | {} | {:.0}",
            common::row(&added, &e2e),
            count as f64 / elapsed
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
