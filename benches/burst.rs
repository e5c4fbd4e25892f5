//! Burst harness: a whole pool reclaimed at once, on the router's DEFAULT cluster settings
//! (200 requests/s, burst 300, leader election on, kube's own retry policy) against the fake API
//! server over HTTP on 127.0.0.1, with the chart's rendered RBAC enforced, real-shaped Nodes
//! (4 ReplicaSet pods each) and PodDisruptionBudgets.
//!
//! Two scenarios, each run `BENCH_RUNS` times (default 3) with a fresh server and router:
//!
//! - **pool**: `BENCH_NODES` Nodes cached (default 5000); `BENCH_BURST` of them (default 1000)
//!   get a Spot warning each, from 64 concurrent clients on HTTP ingest. Measured: the time from
//!   the first notice until every notified Node is tainted and cordoned (all, and the median
//!   Node), API requests per Node besides evictions once every drain is done, evictions sent
//!   before the last notified Node was cordoned (from the order of the API server's request
//!   log), RSS idle (cache synced) and at its peak during the burst; then 200 notices one at a
//!   time, whose ingest answer comes after the admit: receive → Node cordoned, p50 and p99.
//! - **pdb**: 300 Nodes with 4 pods each, one pod on each of 100 of them under a budget that
//!   allows no disruption; the notices were sent 90 s before they arrive (deadline in 30 s, a
//!   late but real shape). Measured: all cordoned, every message answered `handled`, and the
//!   100 `DrainIncomplete` (drain annotation `incomplete`) after `deadline − margin`.
//!
//! Run: `cargo bench --bench burst` (`BENCH_ONLY=pool` or `pdb` runs one scenario).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, Rbac};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");
const USER: &str = "system:serviceaccount:eviction-router:eviction-router";
const PODS_PER_NODE: usize = 4;

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

fn spot_warning(i: usize, sent_ago: i64) -> String {
    let time = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(sent_ago);
    json!({
        "version": "0", "id": format!("burst-{i}-{}", fastrand::u64(..)), "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012", "time": time.to_string(),
        "region": "us-east-1", "resources": [format!("arn:aws:ec2:us-east-1b:instance/i-{i:017}")],
        "detail": {"instance-id": format!("i-{i:017}"), "instance-action": "terminate"},
    })
    .to_string()
}

fn node_name(i: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.ec2.internal",
        i / 65536,
        (i / 256) % 256,
        i % 256
    )
}

/// A cluster of `nodes` Nodes; the first `with_pods` carry 4 pods each; the first `blocked` of
/// those have one pod under a budget that allows no disruption.
fn seed(fake: &FakeApiServer, nodes: usize, with_pods: usize, blocked: usize) {
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .expect("namespace");
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .expect("namespace");
    for i in 0..nodes {
        let name = node_name(i);
        fake.insert(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "karpenter.sh/nodepool": "spot", "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "m5.large", "topology.kubernetes.io/zone": "us-east-1b"}},
            "spec": {"providerID": format!("aws:///us-east-1b/i-{i:017}"),
                     "taints": [{"key": "team.example/dedicated", "value": "web", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "29"}},
        }))
        .expect("a node");
        if i >= with_pods {
            continue;
        }
        for p in 0..PODS_PER_NODE {
            let app = if i < blocked && p == 0 {
                format!("db-{i}")
            } else {
                "web".to_owned()
            };
            fake.insert(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{app}-{i}-{p}"), "namespace": "shop", "labels": {"app": app},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": "rs", "controller": true}]},
                "spec": {"nodeName": name, "terminationGracePeriodSeconds": 30,
                         "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .expect("a pod");
        }
        if i < blocked {
            fake.insert(json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": format!("db-{i}"), "namespace": "shop"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": format!("db-{i}")}}},
                "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1},
            }))
            .expect("a budget");
        }
    }
}

struct Running {
    fake: FakeApiServer,
    router: Kill,
    base: String,
    http: reqwest::Client,
    dir: std::path::PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.router.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The release binary on the default configuration (HTTP ingest added, no sinks), against
/// `fake` with the chart's RBAC, ready and leading.
async fn start(fake: FakeApiServer, addr: std::net::SocketAddr) -> Running {
    let manifests = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/manifests/eviction-router.yaml"
    );
    let yaml = std::fs::read_to_string(manifests).expect("the rendered chart");
    fake.enforce_rbac(Rbac::from_manifests(&yaml, USER).expect("the chart's RBAC"));
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
    // `BENCH_CLUSTER` adds keys under `cluster:` (one per line, e.g. `  api_requests_per_second: 0`)
    // for a side figure with a default changed; the reported figures run without it.
    let extra = std::env::var("BENCH_CLUSTER").unwrap_or_default();
    writeln!(
        f,
        "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n{extra}\nsinks: []\nlog:\n  format: json"
    )
    .expect("config");
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
        .env("POD_NAMESPACE", "eviction-router")
        .env("POD_NAME", "eviction-router-0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("BENCH_ROUTER_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("the router's log")),
            None => Stdio::null(),
        })
        .spawn()
        .expect("the router starts");
    let running = Running {
        fake,
        router: Kill(child),
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        dir,
    };
    // Ready means the Node cache synced; leading means the Lease is ours.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = running
            .http
            .get(format!("{}/readyz", running.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let leads = running
            .fake
            .get("leases", Some("eviction-router"), "eviction-router")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "eviction-router-0");
        if ready && leads {
            break;
        }
        assert!(Instant::now() < deadline, "the router did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the budget refill after the first list.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running
}

fn cordoned(n: &Value) -> bool {
    n["spec"]["unschedulable"] == true
        && n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter().any(|t| t["key"] == "eviction-router/interruption")
                && t.iter().any(|t| t["key"] == "team.example/dedicated")
        })
}

/// The drain annotation's state and time.
fn drain_state(n: &Value) -> Option<(String, jiff::Timestamp)> {
    let v: Value =
        serde_json::from_str(n["metadata"]["annotations"]["eviction-router/drain"].as_str()?)
            .ok()?;
    Some((
        v["state"].as_str()?.to_owned(),
        v["at"].as_str()?.parse().ok()?,
    ))
}

/// Sends notices for Nodes `0..n` from 64 clients; returns every ingest answer.
async fn send_all(r: &Running, n: usize, sent_ago: i64) -> Vec<String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (http, base, next) = (r.http.clone(), r.base.clone(), next.clone());
        clients.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return answers;
                }
                let answer = http
                    .post(format!("{base}/v1/ingest/aws"))
                    .body(spot_warning(i, sent_ago))
                    .send()
                    .await
                    .expect("ingest");
                answers.push(answer.text().await.unwrap_or_default());
            }
        });
    }
    let mut all = Vec::new();
    while let Some(answers) = clients.join_next().await {
        all.extend(answers.expect("a client"));
    }
    all
}

/// Polls the store every 20 ms until every Node `0..n` is cordoned; returns each Node's time
/// (from `started`) and the peak RSS seen meanwhile. Runs beside the senders.
async fn watch_cordons(
    fake: FakeApiServer,
    pid: u32,
    n: usize,
    started: Instant,
) -> (Vec<f64>, f64) {
    let mut at = vec![f64::NAN; n];
    let mut left = n;
    let mut peak = 0f64;
    let deadline = started + Duration::from_secs(120);
    while left > 0 {
        for (i, t) in at.iter_mut().enumerate() {
            if t.is_nan()
                && fake
                    .get("nodes", None, &node_name(i))
                    .is_some_and(|n| cordoned(&n))
            {
                *t = started.elapsed().as_secs_f64();
                left -= 1;
            }
        }
        peak = peak.max(rss_mib(pid));
        assert!(
            Instant::now() < deadline,
            "{left} Nodes not cordoned after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (at, peak)
}

async fn wait_drains(
    fake: &FakeApiServer,
    n: usize,
    limit: Duration,
) -> Vec<(String, jiff::Timestamp)> {
    let deadline = Instant::now() + limit;
    loop {
        let states: Vec<Option<(String, jiff::Timestamp)>> = (0..n)
            .map(|i| {
                fake.get("nodes", None, &node_name(i))
                    .and_then(|n| drain_state(&n))
            })
            .collect();
        if states.iter().all(Option::is_some) {
            return states.into_iter().flatten().collect();
        }
        let left = states.iter().filter(|s| s.is_none()).count();
        assert!(
            Instant::now() < deadline,
            "{left} drains not recorded within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[derive(Debug)]
struct Pool {
    all: f64,
    median: f64,
    per_node: f64,
    early_evictions: usize,
    idle: f64,
    peak: f64,
    drained: f64,
    single_p50_ms: f64,
    single_p99_ms: f64,
}

async fn pool(nodes: usize, burst: usize) -> Pool {
    let (addr, fake) = FakeApiServer::start_http()
        .await
        .expect("the fake API server starts");
    seed(&fake, nodes, burst, 0);
    let r = start(fake.clone(), addr).await;
    let idle = rss_mib(r.pid());
    fake.clear_requests();
    let started = Instant::now();
    let watcher = tokio::spawn(watch_cordons(fake.clone(), r.pid(), burst, started));
    let answers = send_all(&r, burst, 0).await;
    let (mut at, peak) = watcher.await.expect("the cordon watch");
    let handled = answers.iter().filter(|a| a.contains("handled")).count();
    assert_eq!(
        handled,
        burst,
        "answers: {:?}",
        &answers[..answers.len().min(5)]
    );
    eprintln!(
        "  cordoned in {:.2} s; RSS idle {idle:.1} MiB, peak while cordoning {peak:.1} MiB; draining",
        started.elapsed().as_secs_f64()
    );
    let states = wait_drains(&fake, burst, Duration::from_secs(300)).await;
    let drained = started.elapsed().as_secs_f64();
    assert!(
        states.iter().all(|(s, _)| s == "done"),
        "a drain did not finish"
    );

    // From the request log, in the order the API server served it.
    let log = fake.requests();
    let mut first_patch = std::collections::HashMap::new();
    for (i, rec) in log.iter().enumerate() {
        if rec.method == "PATCH"
            && let Some(node) = rec.path.strip_prefix("/api/v1/nodes/")
        {
            first_patch.entry(node.to_owned()).or_insert(i);
        }
    }
    let last_admit = (0..burst)
        .filter_map(|i| first_patch.get(&node_name(i)).copied())
        .max()
        .expect("admits");
    let early_evictions = log[..last_admit]
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .count();
    let besides_evictions = log
        .iter()
        .filter(|r| {
            !r.path.ends_with("/eviction")
                && !r.query.contains("watch")
                && !r.path.contains("/leases")
        })
        .count();
    let per_node = besides_evictions as f64 / burst as f64;
    if std::env::var_os("BENCH_BREAKDOWN").is_some() {
        // What the requests besides evictions were, by method and resource.
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for r in log.iter().filter(|r| {
            !r.path.ends_with("/eviction")
                && !r.query.contains("watch")
                && !r.path.contains("/leases")
        }) {
            let resource: Vec<&str> = r
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .filter(|s| {
                    !s.starts_with("ip-") && !s.starts_with("node-") && !s.starts_with("pod-")
                })
                .collect();
            *kinds
                .entry(format!("{} {}", r.method, resource.join("/")))
                .or_default() += 1;
        }
        eprintln!("requests besides evictions: {kinds:#?}");
    }
    let all = at.iter().copied().fold(0f64, f64::max);
    let med = median(&mut at);

    // One notice at a time on Nodes without pods: the ingest answers once the patch landed.
    let mut single = Vec::new();
    for i in burst..(burst + 200).min(nodes) {
        let t = Instant::now();
        let answer = r
            .http
            .post(format!("{}/v1/ingest/aws", r.base))
            .body(spot_warning(i, 0))
            .send()
            .await
            .expect("ingest")
            .text()
            .await
            .unwrap_or_default();
        single.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(answer.contains("handled"), "{answer}");
    }
    Pool {
        all,
        median: med,
        per_node,
        early_evictions,
        idle,
        peak,
        drained,
        single_p50_ms: percentile(&mut single, 0.50),
        single_p99_ms: percentile(&mut single, 0.99),
    }
}

#[derive(Debug)]
struct Pdb {
    all: f64,
    handled: usize,
    incomplete: usize,
    incomplete_after_stop: bool,
    ended: f64,
}

async fn pdb() -> Pdb {
    const NODES: usize = 300;
    const BLOCKED: usize = 100;
    // The notice was sent 90 s ago: the deadline is 30 s away, the drain stops 10 s before it.
    const SENT_AGO: i64 = 90;
    let (addr, fake) = FakeApiServer::start_http()
        .await
        .expect("the fake API server starts");
    seed(&fake, NODES, NODES, BLOCKED);
    let r = start(fake.clone(), addr).await;
    let started = Instant::now();
    // Every notice is sent after this, so every drain's stop (deadline − the 10 s margin) is
    // no earlier than this.
    let earliest_stop =
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120 - SENT_AGO - 10);
    let watcher = tokio::spawn(watch_cordons(fake.clone(), r.pid(), NODES, started));
    let answers = send_all(&r, NODES, SENT_AGO).await;
    let (at, _) = watcher.await.expect("the cordon watch");
    let handled = answers.iter().filter(|a| a.contains("handled")).count();
    let states = wait_drains(&fake, NODES, Duration::from_secs(120)).await;
    let ended = started.elapsed().as_secs_f64();
    let incomplete = states.iter().filter(|(s, _)| s == "incomplete").count();
    let incomplete_after_stop = states
        .iter()
        .filter(|(s, _)| s == "incomplete")
        .all(|(_, at)| *at >= earliest_stop);
    // The Events follow the drain records in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = fake
            .list("events", Some("default"))
            .iter()
            .filter(|e| e["reason"] == "DrainIncomplete")
            .count();
        if events == incomplete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{events} DrainIncomplete Events for {incomplete} incomplete drains"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Pdb {
        all: at.iter().copied().fold(0f64, f64::max),
        handled,
        incomplete,
        incomplete_after_stop,
        ended,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nodes = env_usize("BENCH_NODES", 5000);
    let burst = env_usize("BENCH_BURST", 1000).min(nodes);
    let runs = env_usize("BENCH_RUNS", 3);
    println!(
        "pool: {nodes} Nodes cached, {burst} notified ({PODS_PER_NODE} pods each), 64 clients; default settings, chart RBAC"
    );
    println!(
        "run | all cordoned (s) | median Node (s) | requests/Node besides evictions | evictions before the last cordon | all drained (s) | RSS idle / peak (MiB) | one notice p50 / p99 (ms)"
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for run in (1..=runs).filter(|_| only.is_empty() || only == "pool") {
        let p = pool(nodes, burst).await;
        println!(
            "{run} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1}",
            p.all,
            p.median,
            p.per_node,
            p.early_evictions,
            p.drained,
            p.idle,
            p.peak,
            p.single_p50_ms,
            p.single_p99_ms
        );
    }
    println!(
        "pdb: 300 Nodes x {PODS_PER_NODE} pods, 100 with a PDB-blocked pod, notices 90 s late"
    );
    println!(
        "run | all cordoned (s) | handled | DrainIncomplete | ended at or after deadline - margin | all drains recorded (s)"
    );
    for run in (1..=runs).filter(|_| only.is_empty() || only == "pdb") {
        let p = pdb().await;
        println!(
            "{run} | {:.2} | {} | {} | {} | {:.1}",
            p.all, p.handled, p.incomplete, p.incomplete_after_stop, p.ended
        );
    }
}
