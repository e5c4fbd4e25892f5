//! Throughput, latency and memory of the NATS JetStream sink: events POSTed to the release
//! router's HTTP ingest (dry-run cluster, one `required` nats sink) → a stream of three replicas
//! on a three-node JetStream cluster on 127.0.0.1. Each POST returns once JetStream acknowledged
//! the event, so the throughput is that of acknowledged publishes.
//!
//! Each run starts a fresh router and sends `BENCH_EVENTS` (default 10,000) events from 64
//! concurrent senders twice:
//! - saturated, as fast as they are taken: the throughput (events / wall time), the router-added
//!   latency (from the ingest request's arrival to its outcome, as the router logs it per message,
//!   `took_ms`) p50 / p99, which at saturation is mostly queueing behind 63 other senders, and the
//!   router's RSS: the idle figure (connected, before any event) and the peak during this phase,
//!   sampled every 50 ms from /proc;
//! - paced at [`PACED`] events/s (an open-loop offered load above the 2,000 of the target): the
//!   router-added latency p50 / p99 at that rate.
//!
//! Run: `cargo bench --bench nats` (needs `nats-server`: NATS_SERVER_BIN or the PATH).
//! `BENCH_RUNS` (default 3) runs. Everything listens on 127.0.0.1 and every loop is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{BIN, Kill, free_port, percentile};

const SENDERS: usize = 64;
/// The offered load of the paced phase, events/s: above the 2,000 of the target.
const PACED: f64 = 2_500.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A directory removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!(
        "er-bench-nats-{}-{name}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    Dir(dir)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn body(id: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/aws/spot-interruption-warning.json"
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).expect("JSON");
    v["id"] = id.into();
    v.to_string()
}

/// Sends `n` events named `<run>-<i>` from [`SENDERS`] senders, as fast as they are taken or,
/// with `rate`, event `i` not before `i / rate` s (an open-loop offered load); returns each
/// POST's round trip (ms) and the wall time. Panics unless every POST is answered 200.
async fn send(base: &str, run: &str, n: usize, rate: Option<f64>) -> (Vec<f64>, Duration) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (next, base, run) = (next.clone(), base.to_owned(), run.to_owned());
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return took;
                }
                if let Some(rate) = rate {
                    tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
                let body = body(&format!("{run}-{i}"));
                let t = Instant::now();
                let status = http
                    .post(format!("{base}/v1/ingest/aws"))
                    .timeout(Duration::from_secs(30))
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                assert_eq!(status, 200, "every event is handled");
                took.push(t.elapsed().as_secs_f64() * 1e3);
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a sender"));
    }
    let wall = started.elapsed();
    all.sort_by(f64::total_cmp);
    (all, wall)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe harness=false benches.
    }
    let n = env_or("BENCH_EVENTS", 10_000);
    let runs = env_or("BENCH_RUNS", 3);
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());

    // Three JetStream servers, routes on loopback.
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
        .collect();
    let mut servers = Vec::new();
    let mut stores = Vec::new();
    for (i, (port, route)) in ports.iter().enumerate() {
        let store = temp_dir(&format!("n{i}"));
        servers.push(Kill(
            Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js"])
                .args(["-sd", &store.0.display().to_string()])
                .args(["--server_name", &format!("n{i}"), "--cluster_name", "bench"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &routes.join(",")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server (NATS_SERVER_BIN or the PATH)"),
        ));
        stores.push(store);
    }
    let url = ports
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");

    // The documented stream, three replicas.
    let urls: Vec<&str> = url.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls)
        .await
        .expect("a NATS client");
    let js = async_nats::jetstream::new(client);
    let definition: async_nats::jetstream::stream::Config = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/nats/stream.json"
        ))
        .expect("examples/nats/stream.json"),
    )
    .expect("a stream definition");
    let mut created = None;
    for _ in 0..120 {
        if let Ok(s) = js.get_or_create_stream(definition.clone()).await {
            created = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut stream = created.expect("the stream within 60 s");

    println!(
        "{n} events per run, {SENDERS} senders, required nats sink, R3 stream on 3 nodes; a fresh router per run"
    );
    println!(
        "run | saturated: events/s | router-added p50 / p99 (ms) | at {PACED} events/s: router-added p50 / p99 (ms) | idle RSS (MiB) | peak RSS − idle (MiB)"
    );
    for run in 1..=runs {
        let dir = temp_dir("router");
        let config = dir.0.join("config.yaml");
        std::fs::write(
            &config,
            "sources:\n  - type: http_ingest\n\
             cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
             sinks:\n  - type: nats\n    url: ${NATS_URL}\n    cluster: bench\n    required: true\n",
        )
        .expect("the config");
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["run", "--config", &config.display().to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("NATS_URL", &url)
            .env("RUST_LOG", "warn,eviction_router::metrics=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the router starts");
        let pid = child.id();
        let (tx, settled) = mpsc::channel::<f64>();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "Settled a message."
                    && let Some(ms) = v["took_ms"].as_f64()
                {
                    let _ = tx.send(ms);
                }
            }
        });
        let router = Kill(child);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status() == 200
                && r.text().await.unwrap_or_default().contains("nats_sink: ok")
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "the router connected to NATS within 30 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_kib(pid);

        let before = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
        let peak = Arc::new(Mutex::new(0u64));
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            std::thread::spawn(move || {
                // Bounded: the runs end within minutes or the bench fails.
                for _ in 0..12_000 {
                    if !sampling.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let rss = rss_kib(pid);
                    let mut p = peak.lock().expect("peak");
                    *p = (*p).max(rss);
                    drop(p);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let (_, wall) = send(&base, &format!("run{run}"), n, None).await;
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = sampler.join();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut saturated: Vec<f64> = settled.try_iter().collect();
        saturated.sort_by(f64::total_cmp);
        assert_eq!(saturated.len(), n, "one settled line per message");
        let (_, paced_wall) = send(&base, &format!("paced{run}"), n, Some(PACED)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut paced: Vec<f64> = settled.try_iter().collect();
        paced.sort_by(f64::total_cmp);
        assert_eq!(paced.len(), n, "one settled line per message");
        assert!(
            paced_wall.as_secs_f64() < n as f64 / PACED * 1.1,
            "kept up with {PACED} events/s"
        );
        let after = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
        assert_eq!(after - before, 2 * n as u64, "every event stored once");
        let peak = *peak.lock().expect("peak");
        println!(
            "{run} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {:.1}",
            n as f64 / wall.as_secs_f64(),
            percentile(&saturated, 0.5),
            percentile(&saturated, 0.99),
            percentile(&paced, 0.5),
            percentile(&paced, 0.99),
            idle as f64 / 1024.0,
            (peak.saturating_sub(idle)) as f64 / 1024.0
        );
        drop(router);
        drop(dir);
    }
    drop(servers);
    drop(stores);
}
