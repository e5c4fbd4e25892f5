//! Recovery harness: a Spot pool reclaimed in the fake API server's cluster simulation, with make
//! before break and sibling shelter on (the defaults) and off, in the same run; and failback
//! after Spot returns, on and off.
//!
//! The router runs in process on its default cluster settings (200 requests/s, burst 300,
//! kube's own retry policy: the clients are built from a kubeconfig as in production) against
//! the fake over HTTP on 127.0.0.1, with the chart's rendered RBAC enforced. Time is scaled
//! down tenfold: a 120 s notice is 12 s, a 30 s Node launch 3 s, a 10 s autoscaler scan 1 s, a
//! 30 s grace period 3 s, the 10 s drain margin 1 s.
//!
//! - **reclaim**: a 50-Node Spot pool (m5.large, one zone; 3 pods of 600m on each, 150 pods of
//!   5 workloads) is reclaimed within 6 s (60 s), each Node terminated at its deadline, while a
//!   50-Node on-demand pool has room for a third of the pods. Measured per mode: per-pod
//!   unavailability (evicted or killed → its replacement Running) p50 and p99, notice → every
//!   pod Running again, pods Running again after their Node's deadline, pods bound to a Node
//!   that had received its notice, placeholders left once the settle time passed.
//! - **failback**: 20 pods that prefer Spot run on on-demand during a Spot outage; Spot returns.
//!   Measured with failback on and off: on-demand pod-seconds over the hour (scaled: 360 s)
//!   after Spot returns (the run lasts until the moves end, then the rest of the hour is counted
//!   at the pods' final placement), PDB violations, pods moved more than once.
//!
//! Run: `cargo bench --bench recovery` (`BENCH_RUNS`, default 3; `BENCH_ONLY=reclaim|failback`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eviction_router::ack::Outcome;
use eviction_router::cluster::Cluster;
use eviction_router::cluster::config::{ClusterConfig, MakeBeforeBreakConfig, ShelterConfig};
use eviction_router::cluster::failback::FailbackConfig;
use eviction_router::config::RouterConfig;
use eviction_router::event::Provider;
use eviction_router::metrics::Metrics;
use eviction_router::router::Router;
use eviction_router::sinks::Sinks;
use fake_apiserver::sim::{Ending, PoolSpec, Resources, SimConfig, WorkloadSpec};
use fake_apiserver::{FakeApiServer, Rbac};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const USER: &str = "system:serviceaccount:eviction-router:eviction-router";
const NAMESPACE: &str = "eviction-router";
const GI: i64 = 1 << 30;
/// Real seconds per simulated second.
const SCALE: f64 = 10.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rbac(file: &str) -> Rbac {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(path).expect("the rendered chart");
    Rbac::from_manifests(&yaml, USER).expect("the chart's RBAC")
}

fn pool(name: &str, capacity: &str, max: usize, priority: i32) -> PoolSpec {
    PoolSpec::new(name, Resources::new(2000, 8 * GI, 29), max)
        .label("eks.amazonaws.com/capacityType", capacity)
        .label("node.kubernetes.io/instance-type", "m5.large")
        .label("topology.kubernetes.io/zone", "us-east-1a")
        .priority(priority)
}

fn sim_config() -> SimConfig {
    SimConfig {
        launch_delay: Duration::from_secs(3),
        boot_delay: Duration::from_millis(500),
        scan_interval: Duration::from_secs(1),
        pod_start_delay: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

async fn serve() -> (std::net::SocketAddr, FakeApiServer) {
    let (addr, fake) = FakeApiServer::start_http()
        .await
        .expect("the fake API server");
    for ns in [NAMESPACE, "shop"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .expect("a namespace");
    }
    fake.insert(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "eviction-router-placeholder"}, "value": -10, "preemptionPolicy": "Never",
    }))
    .expect("the placeholder PriorityClass");
    (addr, fake)
}

/// The router on production's client stack, from the fake's kubeconfig.
async fn router(
    addr: std::net::SocketAddr,
    config: &ClusterConfig,
    metrics: Arc<Metrics>,
) -> Router {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&fake_apiserver::kubeconfig(addr))
        .expect("the fake's kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client configuration");
    // The service's own readiness: every API call reports to it (as `run` sets it up).
    let health = Arc::new(eviction_router::health::Health::new(Duration::from_secs(
        60,
    )));
    let clients = Cluster::clients_from(client_config, config, health, Duration::from_secs(10))
        .expect("the clients");
    let (_, active) = tokio::sync::watch::channel(true);
    let cluster = Cluster::kubernetes(clients, config, metrics.clone(), active.clone());
    let sinks = Sinks::start(&[], metrics.clone()).expect("no sinks");
    Router::new(&RouterConfig::default(), cluster, sinks, metrics).with_active(active)
}

fn warning(fake: &FakeApiServer, id: &str, node: &str, notice: SignedDuration) -> String {
    let n = fake.get("nodes", None, node).expect("the Node");
    let pid = n["spec"]["providerID"].as_str().unwrap_or_default();
    let instance = pid.rsplit('/').next().unwrap_or_default();
    let zone = pid.split('/').nth(3).unwrap_or_default();
    json!({
        "version": "0", "id": id, "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012",
        "time": (Timestamp::now() + notice - SignedDuration::from_secs(120)).to_string(),
        "region": "us-east-1", "resources": [format!("arn:aws:ec2:{zone}:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"},
    })
    .to_string()
}

async fn handle(router: &Router, body: &str) -> Outcome {
    let mut reports = Vec::new();
    router
        .handle_body(
            Provider::Aws,
            body.as_bytes(),
            Timestamp::now(),
            None,
            &mut reports,
        )
        .await
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

fn running_in(fake: &FakeApiServer, ns: &str) -> usize {
    fake.list("pods", Some(ns))
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count()
}

fn placeholders(fake: &FakeApiServer) -> usize {
    fake.list("pods", Some(NAMESPACE)).len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Simulated seconds.
fn sim_s(d: Duration) -> f64 {
    d.as_secs_f64() * SCALE
}

struct Reclaim {
    p50: Duration,
    p99: Duration,
    all_running: Duration,
    late: usize,
    onto_doomed: usize,
    onto_later: usize,
    left: usize,
    pods: usize,
}

const SPOT_NODES: usize = 50;
const PODS_PER_NODE: usize = 3;

async fn reclaim(proactive: bool) -> Reclaim {
    let (addr, fake) = serve().await;
    let sim = fake.simulate(sim_config());
    sim.add_pool(pool("spot", "SPOT", SPOT_NODES * 3, 10));
    sim.add_pool(pool("od", "ON_DEMAND", 50, 1));
    let spot = sim.add_nodes("spot", SPOT_NODES);
    let od = sim.add_nodes("od", 50);
    // The on-demand pool is two-thirds full: room for one 600m pod on each of its 50 Nodes.
    let mut filler = WorkloadSpec::new("shop", "filler", 100, Resources::new(700, GI, 0));
    filler.node_selector = BTreeMap::from([("eks.amazonaws.com/nodegroup".into(), "od".into())]);
    sim.add_workload(filler);
    wait_until(Duration::from_secs(60), || running_in(&fake, "shop") == 100).await;
    for w in 0..5 {
        let mut web = WorkloadSpec::new(
            "shop",
            &format!("web-{w}"),
            SPOT_NODES * PODS_PER_NODE / 5,
            Resources::new(600, GI, 0),
        );
        web.termination_grace_period_seconds = 3;
        // Spot preferred: the pods fill the Spot Nodes and leave the on-demand room free.
        web.affinity = json!({"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [
                {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}]}}]}});
        sim.add_workload(web);
    }
    let pods = SPOT_NODES * PODS_PER_NODE;
    wait_until(Duration::from_secs(60), || {
        running_in(&fake, "shop") == 100 + pods
    })
    .await;
    let _ = od;
    fake.enforce_rbac(rbac("deploy/manifests/eviction-router.yaml"));
    let config = ClusterConfig {
        drain_margin_seconds: 1,
        namespace: Some(NAMESPACE.into()),
        make_before_break: MakeBeforeBreakConfig {
            kinds: if proactive {
                MakeBeforeBreakConfig::default().kinds
            } else {
                Vec::new()
            },
            settle_seconds: 3,
            ..MakeBeforeBreakConfig::default()
        },
        shelter: ShelterConfig {
            enabled: proactive,
            window_seconds: 30,
            ..ShelterConfig::default()
        },
        ..ClusterConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let router = router(addr, &config, metrics).await;
    // The Node cache syncs before the first notice.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 50 notices over 6 s; each Node is taken at its deadline, 12 s after its notice.
    let first = sim.started().elapsed();
    let notice = SignedDuration::from_secs(12);
    let mut deadlines = BTreeMap::new();
    for (i, node) in spot.iter().enumerate() {
        let at = Duration::from_millis(6000 * i as u64 / SPOT_NODES as u64);
        let now = sim.started().elapsed() - first;
        if at > now {
            tokio::time::sleep(at - now).await;
        }
        sim.mark_doomed(node);
        let body = warning(&fake, &format!("reclaim-{i}"), node, notice);
        assert_eq!(handle(&router, &body).await, Outcome::Handled, "a notice");
        deadlines.insert(
            node.clone(),
            sim.started().elapsed() + Duration::from_secs(12),
        );
        let sim_ = sim.clone();
        let node = node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(12)).await;
            sim_.terminate_node(&node);
        });
    }
    // Every reclaimed Node is gone (its deadline passed), then every pod runs again.
    let last = deadlines.values().max().copied().unwrap_or_default();
    let now = sim.started().elapsed();
    if last > now {
        tokio::time::sleep(last - now + Duration::from_millis(500)).await;
    }
    wait_until(Duration::from_secs(90), || {
        running_in(&fake, "shop") == 100 + pods && sim.report().open_gaps().is_empty()
    })
    .await;
    let report = sim.report();
    let spot_pods: Vec<_> = report
        .disruptions
        .iter()
        .filter(|d| {
            d.workload.starts_with("web-")
                && d.was_running
                && d.node.as_ref().is_some_and(|n| deadlines.contains_key(n))
        })
        .collect();
    let mut gaps: Vec<Duration> = spot_pods
        .iter()
        .filter_map(|d| d.unavailability())
        .collect();
    gaps.sort();
    let all_running = spot_pods
        .iter()
        .filter_map(|d| d.restored_at)
        .max()
        .unwrap_or_default()
        .saturating_sub(first);
    let late = spot_pods
        .iter()
        .filter(|d| {
            let deadline = d
                .node
                .as_ref()
                .and_then(|n| deadlines.get(n))
                .copied()
                .unwrap_or_default();
            d.restored_at.is_none_or(|r| r > deadline) || d.ending == Ending::NodeTerminated
        })
        .count();
    let onto_doomed = report.bindings_to_doomed().len();
    // Bindings, after the first notice, to a Spot Node that received its own notice later: the
    // siblings that shelter keeps pods off.
    let onto_later = report
        .bindings
        .iter()
        .filter(|b| b.at >= first && !b.to_doomed && deadlines.contains_key(&b.node))
        .count();
    // Settle (3 s) and a sweep (5 s) later, nothing of the router's is left.
    wait_until(Duration::from_secs(15), || placeholders(&fake) == 0).await;
    let left = placeholders(&fake);
    drop(router);
    sim.stop();
    Reclaim {
        p50: percentile(&gaps, 0.5),
        p99: percentile(&gaps, 0.99),
        all_running,
        late,
        onto_doomed,
        onto_later,
        left,
        pods: spot_pods.len(),
    }
}

struct Failback {
    od_pod_seconds: f64,
    moved: usize,
    twice: usize,
    violations: usize,
}

const FAILBACK_PODS: usize = 20;
/// The hour after Spot returns, in simulated time.
const HOUR: Duration = Duration::from_secs(360);

async fn failback(on: bool) -> Failback {
    let (addr, fake) = serve().await;
    let sim = fake.simulate(sim_config());
    // A Spot outage: only on-demand capacity.
    sim.add_pool(pool("od", "ON_DEMAND", 20, 1));
    for w in 0..2 {
        let name = format!("web-{w}");
        let mut web =
            WorkloadSpec::new("shop", &name, FAILBACK_PODS / 2, Resources::new(600, GI, 0));
        web.affinity = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [
            {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}]}}]}});
        sim.add_workload(web);
        sim.add_pdb(
            "shop",
            &name,
            BTreeMap::from([("app".into(), name.clone())]),
            (FAILBACK_PODS / 2 - 2) as i64,
        );
    }
    wait_until(Duration::from_secs(60), || {
        running_in(&fake, "shop") == FAILBACK_PODS
    })
    .await;
    fake.enforce_rbac(rbac("tests/fixtures/chart/all-features.yaml"));
    let config = ClusterConfig {
        namespace: Some(NAMESPACE.into()),
        failback: FailbackConfig {
            enabled: on,
            // 30 s and 10 s simulated (the defaults are 900 s and 30 s; shortened so that the
            // run fits the hour it measures).
            dwell_seconds: 3,
            interval_seconds: 1,
            ..FailbackConfig::default()
        },
        ..ClusterConfig::default()
    };
    // The leader has watched for a whole dwell when Spot returns.
    let metrics = Arc::new(Metrics::new());
    let router = router(addr, &config, metrics.clone()).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Spot returns.
    sim.add_pool(pool("spot", "SPOT", 20, 10));
    let back = sim.started().elapsed();
    let on_spot = |fake: &FakeApiServer| {
        let spot: Vec<String> = fake
            .list("nodes", None)
            .iter()
            .filter(|n| n["metadata"]["labels"]["eks.amazonaws.com/capacityType"] == "SPOT")
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        fake.list("pods", Some("shop"))
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| spot.contains(&n.to_owned()))
            })
            .count()
    };
    // Integrate the pods on on-demand, sampled every 100 ms, until every pod is on Spot (with
    // failback) or for 30 s (without: nothing moves them); the rest of the hour at the last count.
    let mut od_pod_seconds = 0.0;
    let mut last = Instant::now();
    let limit = if on {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    };
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let od = FAILBACK_PODS.saturating_sub(on_spot(&fake));
        od_pod_seconds += od as f64 * sim_s(last.elapsed());
        last = Instant::now();
        if od == 0 || started.elapsed() > limit {
            break;
        }
    }
    let elapsed = sim.started().elapsed() - back;
    let od_now = FAILBACK_PODS.saturating_sub(on_spot(&fake));
    od_pod_seconds += od_now as f64 * sim_s(HOUR.saturating_sub(elapsed));
    let report = sim.report();
    let moved = report
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Evicted)
        .count();
    // A pod moved twice would show its replacement evicted again.
    let replacements: Vec<&str> = report
        .disruptions
        .iter()
        .filter_map(|d| d.replacement.as_deref())
        .collect();
    let twice = report
        .disruptions
        .iter()
        .filter(|d| d.ending == Ending::Evicted && replacements.contains(&d.pod.as_str()))
        .count();
    let violations = report.violations_without_node_loss().len();
    drop(router);
    sim.stop();
    Failback {
        od_pod_seconds,
        moved,
        twice,
        violations,
    }
}

fn summary(xs: &mut [f64]) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "{:.2} ({:.2}–{:.2})",
        xs[xs.len() / 2],
        xs[0],
        xs[xs.len() - 1]
    )
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // As the binary does: several TLS stacks are linked; name the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runs = env_usize("BENCH_RUNS", 3);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "reclaim" {
        println!(
            "reclaim: {SPOT_NODES} Spot Nodes x {PODS_PER_NODE} pods reclaimed within 60 s, on-demand room for a third; times in simulated seconds (x{SCALE})"
        );
        println!(
            "run | mode | pods | unavailability p50 / p99 (s) | notice -> all Running (s) | Running after the deadline | bound to noticed Nodes | bound to Nodes noticed later | placeholders left"
        );
        let mut on_p50 = Vec::new();
        let mut off_p50 = Vec::new();
        for run in 1..=runs {
            for proactive in [true, false] {
                let r = reclaim(proactive).await;
                let mode = if proactive {
                    "make-before-break + shelter"
                } else {
                    "off"
                };
                println!(
                    "{run} | {mode} | {} | {:.1} / {:.1} | {:.1} | {} | {} | {} | {}",
                    r.pods,
                    sim_s(r.p50),
                    sim_s(r.p99),
                    sim_s(r.all_running),
                    r.late,
                    r.onto_doomed,
                    r.onto_later,
                    r.left
                );
                if proactive {
                    on_p50.push(sim_s(r.p50))
                } else {
                    off_p50.push(sim_s(r.p50))
                }
            }
        }
        println!(
            "p50 unavailability, median (min–max): on {} s, off {} s",
            summary(&mut on_p50),
            summary(&mut off_p50)
        );
    }
    if only.is_empty() || only == "failback" {
        println!(
            "failback: {FAILBACK_PODS} pods that prefer Spot on on-demand, Spot returns; on-demand pod-seconds over the hour after (simulated, x{SCALE})"
        );
        println!("run | failback | on-demand pod-seconds | moved | moved twice | PDB violations");
        let mut reduction = Vec::new();
        for run in 1..=runs {
            let with = failback(true).await;
            let without = failback(false).await;
            for (label, f) in [("on", &with), ("off", &without)] {
                println!(
                    "{run} | {label} | {:.0} | {} | {} | {}",
                    f.od_pod_seconds, f.moved, f.twice, f.violations
                );
            }
            reduction.push(100.0 * (1.0 - with.od_pod_seconds / without.od_pod_seconds.max(1.0)));
        }
        println!(
            "on-demand pod-hours saved by failback, median (min–max): {} %",
            summary(&mut reduction)
        );
    }
}
