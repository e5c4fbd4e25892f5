//! Latency harness: events put on an EventBridge bus (moto) → SQS → the real router binary →
//! stdout, measuring
//! - router-added latency: from the SQS receive returning to the message's outcome (after the
//!   event was written to stdout), as the router itself logs it per message;
//! - end to end: from just before `PutEvents` to the event line arriving on stdout.
//!
//! Run: `cargo bench --bench pipeline` (needs `moto_server`). `BENCH_EVENTS` (default 500) sets
//! the events per run; 3 measured runs follow a warm-up. Everything listens on 127.0.0.1 and every
//! loop is bounded.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kill, Router, free_port};

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe harness=false benches.
    }
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let port = free_port();
    let _moto = Kill(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server on PATH (python3 -m pip install 'moto[server]')"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "b", "b", None, None, "b",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let mut queue_url = None;
    for _ in 0..200 {
        if let Ok(out) = sqs.create_queue().queue_name("bench").send().await {
            queue_url = out.queue_url;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queue_url = queue_url.expect("moto answers within 20 s");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .expect("attributes")[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("bench")
        .event_pattern(r#"{"source":["eviction-router.drill"]}"#)
        .send()
        .await
        .expect("rule");
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("q")
        .arn(arn)
        .build()
        .expect("target");
    events
        .put_targets()
        .rule("bench")
        .targets(target)
        .send()
        .await
        .expect("target");

    let dir = std::env::temp_dir().join(format!("er-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_path = dir.join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "sources:\n  - type: aws_sqs\n    queue_url: {queue_url}\n    pollers: 4\n    wait_time_seconds: 1\n\
             cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\nlog:\n  format: json\n"
        ),
    )
    .expect("config");
    let router = Router::start(
        &config_path,
        &[
            ("AWS_ENDPOINT_URL", endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "b".into()),
            ("AWS_SECRET_ACCESS_KEY", "b".into()),
            ("AWS_REGION", "us-east-1".into()),
        ],
    );

    println!("events per run: {n}; router: 4 pollers, concurrency 64, dry run, stdout sink");
    println!(
        "run | router-added p50 / p99 (ms) | end-to-end p50 / p99 (ms) | throughput (events/s) | time in PutEvents (s of total)"
    );
    for run in 0..4 {
        let count = if run == 0 { 50 } else { n };
        let mut put_at: HashMap<String, Instant> = HashMap::new();
        let started = Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .map(|i| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .source("eviction-router.drill")
                        .detail_type("EC2 Spot Instance Interruption Warning")
                        .detail(format!(
                            r#"{{"instance-id":"i-{run:02}{i:015}","instance-action":"terminate"}}"#
                        ))
                        .build()
                })
                .collect();
            let t = Instant::now();
            let out = events
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .expect("PutEvents");
            for e in out.entries() {
                if let Some(id) = e.event_id() {
                    put_at.insert(id.to_owned(), t);
                }
            }
        }
        let put_phase = started.elapsed().as_secs_f64();
        let (e2e, added, done) = router.measure(&put_at);
        let elapsed = done.duration_since(started).as_secs_f64();
        if run == 0 {
            continue;
        }
        println!(
            "{run} | {} | {:.0} | {put_phase:.1} of {elapsed:.1}",
            common::row(&added, &e2e),
            count as f64 / elapsed
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
