//! Burst harness: a whole pool reclaimed at once. The fake API server (over HTTP on 127.0.0.1)
//! holds `BENCH_NODES` Nodes (default 5000); the release router binary (`cluster.mode:
//! kubernetes`, HTTP ingest, no leader election, rate limits off) receives `BENCH_BURST`
//! interruptions (default 1000, one per Node) from 64 concurrent clients, and the harness measures
//! the time until every one of those Nodes is cordoned and tainted, and the router's RSS idle
//! (Node cache synced) and after the burst.
//!
//! Run: `cargo bench --bench burst`. Three measured runs, each with a fresh server and router.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spot_warning(i: usize) -> String {
    json!({
        "version": "0", "id": format!("burst-{i}"), "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012", "time": jiff::Timestamp::now().to_string(),
        "region": "us-east-1", "resources": [format!("arn:aws:ec2:us-east-1b:instance/i-{i:017}")],
        "detail": {"instance-id": format!("i-{i:017}"), "instance-action": "terminate"},
    })
    .to_string()
}

async fn run_once(nodes: usize, burst: usize) -> (f64, f64, f64) {
    let (addr, fake) = FakeApiServer::start_http()
        .await
        .expect("the fake API server starts");
    for i in 0..nodes {
        fake.insert(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}"), "labels": {"karpenter.sh/nodepool": "spot", "kubernetes.io/hostname": format!("node-{i}")}},
            "spec": {"providerID": format!("aws:///us-east-1b/i-{i:017}")},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a node");
    }
    let dir = std::env::temp_dir().join(format!(
        "er-burst-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, fake_apiserver::kubeconfig(addr)).expect("kubeconfig");
    let config = dir.join("config.yaml");
    let mut f = std::fs::File::create(&config).expect("config");
    writeln!(f, "sources:\n  - type: http_ingest\nrouter:\n  concurrency: 256\n  queue_capacity: 4096\ncluster:\n  mode: kubernetes\n  api_requests_per_second: 0\n  leader_election:\n    enabled: false\nsinks: []\nlog:\n  format: json").expect("config");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(BIN)
        .args([
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the router starts");
    let pid = child.id();
    let _router = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the Node cache sync (the first event would wait for it anyway), then settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (http, base, next) = (http.clone(), base.clone(), next.clone());
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= burst {
                    return;
                }
                let r = http
                    .post(format!("{base}/v1/ingest/aws"))
                    .body(spot_warning(i))
                    .send()
                    .await
                    .expect("ingest");
                assert!(r.status().is_success(), "ingest answered {}", r.status());
            }
        });
    }
    while clients.join_next().await.is_some() {}
    // Every answer came after its Node was acted on; confirm against the store.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = (0..burst)
            .filter(|i| {
                fake.get("nodes", None, &format!("node-{i}"))
                    .is_some_and(|n| {
                        n["spec"]["unschedulable"] == true
                            && n["spec"]["taints"].as_array().is_some_and(|t| {
                                t.iter().any(|t| t["key"] == "eviction-router/interruption")
                            })
                    })
            })
            .count();
        if done == burst || Instant::now() > deadline {
            assert_eq!(
                done, burst,
                "not every Node was cordoned and tainted within 60 s"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = rss_mib(pid);
    let _ = std::fs::remove_dir_all(&dir);
    (elapsed, idle, after)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nodes = env_usize("BENCH_NODES", 5000);
    let burst = env_usize("BENCH_BURST", 1000).min(nodes);
    println!(
        "nodes cached: {nodes}; burst: {burst} interruptions from 64 clients; fake API server over HTTP"
    );
    println!(
        "run | all cordoned and tainted (s) | RSS idle, cache synced (MiB) | RSS after the burst (MiB)"
    );
    for run in 1..=3 {
        let (elapsed, idle, after) = run_once(nodes, burst).await;
        println!("{run} | {elapsed:.2} | {idle:.1} | {after:.1}");
    }
}
