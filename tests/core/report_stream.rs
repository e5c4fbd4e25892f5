//! A deterministic generator of the router's normalised stream, for the `report` tests and its
//! benchmark (`benches/report.rs` includes this file): Spot pools on AWS, Azure and GCP whose
//! Nodes are interrupted at a base rate and in bursts, AWS rebalance recommendations (most
//! followed by the interruption, some false alarms), Azure's second notice for the same VM,
//! replacements becoming Ready, sibling shelters, a few terminations and maintenance notices,
//! and each pool's periodic `pool_stats` event with its census.
//!
//! Events are written as the router writes them: the normalised [`Event`] with the details the
//! router adds once it resolved the Node (`pool`, `instance_type`, `zone`, `zone_id`,
//! `capacity_type`, `node_created_at`); `replacement_ready` and `pool_at_risk` come from the
//! cluster's own builders; `pool_stats` details from [`Analytics::pool_stats`], fed with the
//! same events, as the cluster side will. A share of events (`legacy_share`) is written without
//! the router's details, as a router before them did.
//!
//! The randomness is a SplitMix64 of the seed, so the same scenario always gives the same bytes.

#![allow(dead_code)] // The tests and the benchmark use different parts.

use std::collections::BTreeMap;
use std::io::{self, Write};

use eviction_router::analytics::{Analytics, Census, PoolStatsDetails};
use eviction_router::cluster::replacement::{Pending, Replacement};
use eviction_router::cluster::shelter;
use eviction_router::event::{Action, Event, EventData, Instance, Kind, NodeRef, Provider, Status};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

/// One (instance type, zone) of a pool.
#[derive(Debug, Clone)]
pub struct Cap {
    pub instance_type: &'static str,
    pub zone: &'static str,
    pub zone_id: Option<&'static str>,
    pub nodes: usize,
}

/// A Spot pool.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub provider: Provider,
    pub account: &'static str,
    pub region: &'static str,
    pub capacity: Vec<Cap>,
    /// Base interruptions per node-hour.
    pub hazard: f64,
    /// Bursts per day, each of 3–6 Nodes of one (type, zone) within about 2 minutes.
    pub bursts_per_day: f64,
    /// Share of interruptions preceded by a rebalance recommendation (AWS only).
    pub rebalance_share: f64,
    /// Rebalance recommendations per day not followed by an interruption (AWS only).
    pub false_rebalances_per_day: f64,
    /// Median notice → replacement Ready, seconds.
    pub replacement_median: f64,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub start: Timestamp,
    pub hours: u32,
    pub pools: Vec<PoolSpec>,
    /// The `pool_stats` period, minutes.
    pub stats_every_mins: u32,
    /// Share of notices written without the router's details.
    pub legacy_share: f64,
    /// Stop after this many events.
    pub max_events: Option<usize>,
}

fn cap(
    instance_type: &'static str,
    zone: &'static str,
    zone_id: Option<&'static str>,
    nodes: usize,
) -> Cap {
    Cap {
        instance_type,
        zone,
        zone_id,
        nodes,
    }
}

impl Scenario {
    /// The recorded stream of `tests/fixtures/report/`: four pools on three clouds, 24 hours.
    pub fn fixture() -> Scenario {
        Scenario {
            seed: 20_261_123,
            start: "2026-11-23T00:00:00Z".parse().expect("a timestamp"),
            hours: 24,
            pools: vec![
                PoolSpec {
                    name: "spot-general".into(),
                    provider: Provider::Aws,
                    account: "123456789012",
                    region: "us-east-1",
                    capacity: vec![
                        cap("m5.large", "us-east-1a", Some("use1-az4"), 14),
                        cap("m5.large", "us-east-1b", Some("use1-az6"), 12),
                        cap("m5a.large", "us-east-1a", Some("use1-az4"), 10),
                    ],
                    hazard: 0.03,
                    bursts_per_day: 1.5,
                    rebalance_share: 0.8,
                    false_rebalances_per_day: 6.0,
                    replacement_median: 95.0,
                },
                PoolSpec {
                    name: "spot-batch".into(),
                    provider: Provider::Aws,
                    account: "123456789012",
                    region: "us-east-1",
                    capacity: vec![
                        cap("c5.2xlarge", "us-east-1b", Some("use1-az6"), 16),
                        cap("c5.2xlarge", "us-east-1c", Some("use1-az1"), 12),
                    ],
                    hazard: 0.045,
                    bursts_per_day: 5.0,
                    rebalance_share: 0.5,
                    false_rebalances_per_day: 2.0,
                    replacement_median: 140.0,
                },
                PoolSpec {
                    name: "aks-spot".into(),
                    provider: Provider::Azure,
                    account: "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
                    region: "westeurope",
                    capacity: vec![
                        cap("Standard_D4s_v5", "westeurope-1", None, 10),
                        cap("Standard_D4s_v5", "westeurope-2", None, 10),
                    ],
                    hazard: 0.035,
                    bursts_per_day: 2.0,
                    rebalance_share: 0.0,
                    false_rebalances_per_day: 0.0,
                    replacement_median: 180.0,
                },
                PoolSpec {
                    name: "gke-spot".into(),
                    provider: Provider::Gcp,
                    account: "prod-project",
                    region: "europe-west1",
                    capacity: vec![
                        cap("e2-standard-4", "europe-west1-b", None, 12),
                        cap("e2-standard-4", "europe-west1-c", None, 12),
                    ],
                    hazard: 0.04,
                    bursts_per_day: 3.0,
                    rebalance_share: 0.0,
                    false_rebalances_per_day: 0.0,
                    replacement_median: 75.0,
                },
            ],
            stats_every_mins: 30,
            legacy_share: 0.04,
            max_events: None,
        }
    }

    /// The benchmark's stream: twelve larger pools, as long as it takes to write `events`.
    pub fn bench(events: usize) -> Scenario {
        let base = Scenario::fixture();
        let mut pools = Vec::new();
        for i in 0..3 {
            for p in &base.pools {
                let mut p = p.clone();
                p.name = format!("{}-{i}", p.name);
                for c in &mut p.capacity {
                    c.nodes *= 12;
                }
                p.false_rebalances_per_day *= 12.0;
                p.bursts_per_day *= 6.0;
                pools.push(p);
            }
        }
        Scenario {
            seed: 7,
            hours: 24 * 365,
            pools,
            stats_every_mins: 10,
            max_events: Some(events),
            ..base
        }
    }
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.u64() % n.max(1) as u64) as usize
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Poisson by inversion (small means only).
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, self.f64());
        while p > limit {
            k += 1;
            p *= self.f64();
        }
        k
    }

    /// Log-normal around `median` with a spread of `sigma`.
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box–Muller.
        let (u1, u2) = (self.f64().max(1e-12), self.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * z).exp()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(4),
            self.hex(4),
            self.hex(12)
        )
    }
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    instance: Instance,
    created: Timestamp,
    doomed: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Interrupt {
        pool: usize,
        cap: usize,
        node: String,
    },
    Rebalance {
        pool: usize,
        cap: usize,
        node: String,
    },
    Repeat {
        pool: usize,
        event: Box<Event>,
    },
    Ready {
        pool: usize,
        cap: usize,
        event: Box<Event>,
        node: Box<Node>,
        lat: f64,
    },
    Shelter {
        pool: usize,
        cap: usize,
        event: Box<Event>,
    },
}

struct Sim<'s, W: Write> {
    s: &'s Scenario,
    rng: Rng,
    nodes: Vec<Vec<Vec<Node>>>,
    queue: BTreeMap<(i64, u64), Step>,
    seq: u64,
    sheltered_until: BTreeMap<(usize, usize), Timestamp>,
    analytics: Analytics,
    out: W,
    written: usize,
    counter: u64,
}

fn secs(s: f64) -> SignedDuration {
    SignedDuration::from_millis((s * 1000.0) as i64)
}

/// Writes the scenario's stream as JSON lines; returns how many events.
pub fn write(s: &Scenario, out: impl Write) -> io::Result<usize> {
    let mut sim = Sim {
        s,
        rng: Rng(s.seed),
        nodes: Vec::new(),
        queue: BTreeMap::new(),
        seq: 0,
        sheltered_until: BTreeMap::new(),
        analytics: Analytics::default(),
        out,
        written: 0,
        counter: 0,
    };
    for (p, pool) in s.pools.iter().enumerate() {
        let mut caps = Vec::new();
        for (c, cp) in pool.capacity.iter().enumerate() {
            let mut nodes = Vec::new();
            for _ in 0..cp.nodes {
                let age = sim.rng.range(600.0, 72.0 * 3600.0);
                let created = s.start - secs(age);
                nodes.push(sim.new_node(p, c, created));
            }
            caps.push(nodes);
        }
        sim.nodes.push(caps);
    }
    let minutes = i64::from(s.hours) * 60;
    for m in 0..minutes {
        let t0 = s.start + SignedDuration::from_mins(m);
        if m % i64::from(s.stats_every_mins) == 0 {
            for p in 0..s.pools.len() {
                sim.pool_stats(p, t0)?;
            }
        }
        sim.plan_minute(t0);
        let until = (t0 + SignedDuration::from_mins(1)).as_millisecond();
        while let Some(entry) = sim.queue.first_entry() {
            if entry.key().0 >= until {
                break;
            }
            let ((at, _), action) = entry.remove_entry();
            let at = Timestamp::from_millisecond(at).expect("a time in range");
            sim.act(at, action)?;
        }
        if sim.full() {
            break;
        }
    }
    sim.out.flush()?;
    Ok(sim.written)
}

impl<W: Write> Sim<'_, W> {
    fn schedule(&mut self, at: Timestamp, action: Step) {
        self.seq += 1;
        self.queue.insert((at.as_millisecond(), self.seq), action);
    }

    fn new_node(&mut self, p: usize, c: usize, created: Timestamp) -> Node {
        self.counter += 1;
        let pool = &self.s.pools[p];
        let zone = pool.capacity[c].zone;
        let n = self.counter;
        let (name, instance) = match pool.provider {
            Provider::Aws => {
                let id = format!("i-0{}", self.rng.hex(16));
                let name = format!(
                    "ip-10-{}-{}-{}.ec2.internal",
                    self.rng.below(256),
                    self.rng.below(256),
                    1 + self.rng.below(254)
                );
                let instance = Instance {
                    provider_id: Some(format!("aws:///{zone}/{id}")),
                    resource_id: Some(format!("arn:aws:ec2:{zone}:instance/{id}")),
                    name: None,
                    id,
                };
                (name, instance)
            }
            Provider::Azure => {
                let vmss = format!("aks-{}-12345678-vmss", pool.name);
                let rg = "MC_prod-rg_prod-aks_westeurope";
                let path = |rg: &str| {
                    format!(
                        "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{n}",
                        pool.account
                    )
                };
                let instance = Instance {
                    id: path(rg),
                    name: Some(format!("{vmss}_{n}")),
                    provider_id: Some(format!("azure://{}", path(&rg.to_lowercase()))),
                    resource_id: None,
                };
                (format!("{vmss}{n:06}"), instance)
            }
            Provider::Gcp => {
                let name = format!("gke-prod-{}-5b909138-{}", pool.name, self.rng.hex(4));
                let instance = Instance {
                    id: format!(
                        "{}",
                        1_000_000_000_000_000_000 + self.rng.u64() % 8_000_000_000_000_000_000
                    ),
                    provider_id: Some(format!("gce://{}/{zone}/{name}", pool.account)),
                    resource_id: Some(format!(
                        "projects/{}/zones/{zone}/instances/{name}",
                        pool.account
                    )),
                    name: Some(name.clone()),
                };
                (name, instance)
            }
        };
        Node {
            name,
            instance,
            created,
            doomed: false,
        }
    }

    /// Picks a Node of (p, c) not already doomed, and dooms it.
    fn doom(&mut self, p: usize, c: usize) -> Option<String> {
        let free: Vec<usize> = (0..self.nodes[p][c].len())
            .filter(|i| !self.nodes[p][c][*i].doomed)
            .collect();
        if free.is_empty() {
            return None;
        }
        let i = free[self.rng.below(free.len())];
        self.nodes[p][c][i].doomed = true;
        Some(self.nodes[p][c][i].name.clone())
    }

    fn plan_minute(&mut self, t0: Timestamp) {
        for p in 0..self.s.pools.len() {
            let pool = self.s.pools[p].clone();
            for c in 0..pool.capacity.len() {
                let n = self.nodes[p][c].len() as f64;
                for _ in 0..self.rng.poisson(n * pool.hazard / 60.0) {
                    let Some(node) = self.doom(p, c) else { break };
                    let at = t0 + secs(self.rng.range(0.0, 60.0));
                    if self.rng.chance(pool.rebalance_share) {
                        let lead = self.rng.range(120.0, 50.0 * 60.0);
                        let rebalance = Step::Rebalance {
                            pool: p,
                            cap: c,
                            node: node.clone(),
                        };
                        self.schedule(at, rebalance);
                        self.schedule(
                            at + secs(lead),
                            Step::Interrupt {
                                pool: p,
                                cap: c,
                                node,
                            },
                        );
                    } else {
                        self.schedule(
                            at,
                            Step::Interrupt {
                                pool: p,
                                cap: c,
                                node,
                            },
                        );
                    }
                }
                // Scale a little every half hour: Nodes come and go without events.
                if t0.as_second() % 1800 == 0 && self.rng.chance(0.3) {
                    let base = pool.capacity[c].nodes;
                    if self.nodes[p][c].len() < base + base / 4 && self.rng.chance(0.5) {
                        let node = self.new_node(p, c, t0);
                        self.nodes[p][c].push(node);
                    } else if self.nodes[p][c].len() > base.saturating_sub(base / 4).max(1) {
                        let i = self.rng.below(self.nodes[p][c].len());
                        if !self.nodes[p][c][i].doomed {
                            self.nodes[p][c].swap_remove(i);
                        }
                    }
                }
            }
            for _ in 0..self.rng.poisson(pool.bursts_per_day / 1440.0) {
                let c = self.rng.below(pool.capacity.len());
                let size = 3 + self.rng.below(4);
                let start = t0 + secs(self.rng.range(0.0, 60.0));
                for _ in 0..size {
                    let Some(node) = self.doom(p, c) else { break };
                    let at = start + secs(self.rng.range(0.0, 150.0));
                    self.schedule(
                        at,
                        Step::Interrupt {
                            pool: p,
                            cap: c,
                            node,
                        },
                    );
                }
            }
            for _ in 0..self.rng.poisson(pool.false_rebalances_per_day / 1440.0) {
                let c = self.rng.below(pool.capacity.len());
                let len = self.nodes[p][c].len();
                if len > 0 {
                    let node = self.nodes[p][c][self.rng.below(len)].name.clone();
                    let at = t0 + secs(self.rng.range(0.0, 60.0));
                    self.schedule(
                        at,
                        Step::Rebalance {
                            pool: p,
                            cap: c,
                            node,
                        },
                    );
                }
            }
        }
    }

    fn find(&self, p: usize, c: usize, name: &str) -> Option<usize> {
        self.nodes[p][c].iter().position(|n| n.name == name)
    }

    fn full(&self) -> bool {
        self.s.max_events.is_some_and(|max| self.written >= max)
    }

    fn emit(&mut self, event: &Event) -> io::Result<()> {
        if self.full() {
            return Ok(());
        }
        self.analytics.observe_event(event);
        writeln!(self.out, "{}", event.to_json_line())?;
        self.written += 1;
        Ok(())
    }

    /// The router's details for a notice about `node`, unless this one is written as a router
    /// before them did.
    fn routed(&mut self, data: &mut EventData, p: usize, c: usize, node: &Node) {
        if self.rng.chance(self.s.legacy_share) {
            return;
        }
        let pool = &self.s.pools[p];
        let cp = &pool.capacity[c];
        data.node = Some(NodeRef {
            name: node.name.clone(),
        });
        let d = &mut data.details;
        d.insert("pool".into(), pool.name.clone().into());
        d.insert("instance_type".into(), cp.instance_type.into());
        d.insert("zone".into(), cp.zone.into());
        if let Some(id) = cp.zone_id {
            d.insert("zone_id".into(), id.into());
        }
        d.insert("capacity_type".into(), "spot".into());
        d.insert("node_created_at".into(), json!(node.created));
    }

    fn notice(&mut self, at: Timestamp, p: usize, c: usize, node: &Node, kind: Kind) -> Event {
        let pool = &self.s.pools[p];
        let zone = pool.capacity[c].zone;
        let (provider_event, id) = match (pool.provider, kind) {
            (Provider::Aws, Kind::RebalanceRecommendation) => {
                ("EC2 Instance Rebalance Recommendation", self.rng.uuid())
            }
            (Provider::Aws, _) => ("EC2 Spot Instance Interruption Warning", self.rng.uuid()),
            (Provider::Azure, _) => (
                "Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted",
                format!(
                    "{}/{}",
                    self.rng.uuid(),
                    node.instance.name.clone().unwrap_or_default()
                ),
            ),
            (Provider::Gcp, _) => (
                "compute.instances.preempted",
                format!("-{}", self.rng.hex(12)),
            ),
        };
        let mut data = EventData::new(
            pool.provider,
            kind,
            provider_event,
            node.instance.clone(),
            at,
        );
        data.account = Some(pool.account.into());
        data.region = Some(pool.region.into());
        match pool.provider {
            Provider::Aws => {
                data.zone = Some(zone.into());
                if kind == Kind::Interruption {
                    data.action = Some(Action::Terminate);
                    data.deadline = Some(at + SignedDuration::from_secs(120));
                }
            }
            Provider::Azure => {
                data.status = Some(Status::Scheduled);
                data.deadline = Some(at + SignedDuration::from_secs(30));
                let d = &mut data.details;
                d.insert("duration_seconds".into(), json!(-1));
                d.insert("event_source".into(), "Platform".into());
                d.insert("scheduled_event_id".into(), self.rng.uuid().into());
                d.insert("scheduled_event_type".into(), "Preempt".into());
            }
            Provider::Gcp => {
                data.zone = Some(zone.into());
                data.deadline = Some(at + SignedDuration::from_secs(30));
                let op = format!("systemevent-{}", at.as_millisecond());
                data.details.insert("operation_id".into(), op.into());
            }
        }
        self.routed(&mut data, p, c, node);
        Event::new(id, data)
    }

    fn act(&mut self, at: Timestamp, action: Step) -> io::Result<()> {
        match action {
            Step::Rebalance {
                pool: p,
                cap: c,
                node,
            } => {
                if let Some(i) = self.find(p, c, &node) {
                    let n = self.nodes[p][c][i].clone();
                    let e = self.notice(at, p, c, &n, Kind::RebalanceRecommendation);
                    self.emit(&e)?;
                }
            }
            Step::Interrupt {
                pool: p,
                cap: c,
                node,
            } => {
                let Some(i) = self.find(p, c, &node) else {
                    return Ok(());
                };
                let n = self.nodes[p][c].swap_remove(i);
                let e = self.notice(at, p, c, &n, Kind::Interruption);
                self.emit(&e)?;
                let pool = &self.s.pools[p];
                if pool.provider == Provider::Azure && self.rng.chance(0.6) {
                    let later = at + secs(self.rng.range(20.0, 45.0));
                    self.schedule(
                        later,
                        Step::Repeat {
                            pool: p,
                            event: Box::new(e.clone()),
                        },
                    );
                }
                let lat = self
                    .rng
                    .lognormal(pool.replacement_median, 0.35)
                    .clamp(20.0, 900.0);
                let created = at + secs(lat - self.rng.range(25.0, 50.0));
                let mut new = self.new_node(p, c, created);
                new.created = created;
                let ready = Step::Ready {
                    pool: p,
                    cap: c,
                    event: Box::new(e.clone()),
                    node: Box::new(new),
                    lat,
                };
                self.schedule(at + secs(lat), ready);
                let key = (p, c);
                if self.sheltered_until.get(&key).is_none_or(|u| *u <= at) {
                    self.sheltered_until
                        .insert(key, at + SignedDuration::from_mins(5));
                    self.schedule(
                        at + secs(1.5),
                        Step::Shelter {
                            pool: p,
                            cap: c,
                            event: Box::new(e),
                        },
                    );
                }
            }
            Step::Repeat { pool: p, event } => {
                // Azure's Resource Health annotation for the same VM, after the Preempt.
                let mut data = event.data.clone();
                data.provider_event =
                    "Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated".into();
                data.status = Some(Status::Started);
                data.region = None;
                data.occurred_at = at;
                data.deadline = Some(at);
                for k in [
                    "duration_seconds",
                    "event_source",
                    "scheduled_event_id",
                    "scheduled_event_type",
                ] {
                    data.details.remove(k);
                }
                data.details
                    .insert("annotation_name".into(), "VirtualMachinePreempted".into());
                data.details.insert("category".into(), "Unplanned".into());
                data.details
                    .insert("context".into(), "Platform Initiated".into());
                data.details.insert("reason".into(), "Spot Eviction".into());
                let _ = p;
                let id = self.rng.uuid();
                self.emit(&Event::new(id, data))?;
            }
            Step::Ready {
                pool: p,
                cap: c,
                event,
                node,
                lat,
            } => {
                let pool = self.s.pools[p].name.clone();
                let replacement = Replacement {
                    pending: Pending {
                        node: event
                            .data
                            .node
                            .as_ref()
                            .map(|n| n.name.clone())
                            .unwrap_or_default(),
                        provider_id: event.data.instance.provider_id.clone(),
                        pool,
                        event: (*event).clone(),
                        cordoned_at: None,
                        drained_at: None,
                    },
                    node: node.name.clone(),
                    provider_id: node.instance.provider_id.clone(),
                    created_at: at,
                    ready_at: at,
                };
                let mut e = replacement.to_event();
                // The recorded stream's phases are its own (a share without, as older routers
                // wrote them).
                e.data.details.remove("phases");
                if !self.rng.chance(self.s.legacy_share) {
                    let cordoned = self.rng.range(0.05, 1.5);
                    let drained = (lat * self.rng.range(0.4, 0.9)).max(cordoned + 5.0);
                    let phases =
                        json!({ "cordoned": round3(cordoned), "drained": round3(drained) });
                    e.data.details.insert("phases".into(), phases);
                }
                self.emit(&e)?;
                self.nodes[p][c].push(*node);
            }
            Step::Shelter {
                pool: p,
                cap: c,
                event,
            } => {
                let cp = &self.s.pools[p].capacity[c];
                let key = (cp.instance_type.to_owned(), cp.zone.to_owned());
                let siblings = self.nodes[p][c].len();
                let e = shelter::pool_at_risk(
                    &event,
                    &key,
                    at + SignedDuration::from_mins(5),
                    siblings,
                );
                self.emit(&e)?;
            }
        }
        Ok(())
    }

    fn pool_stats(&mut self, p: usize, at: Timestamp) -> io::Result<()> {
        let pool = self.s.pools[p].clone();
        let rows: Vec<Census<'_>> = pool
            .capacity
            .iter()
            .zip(&self.nodes[p])
            .map(|(cp, nodes)| Census {
                instance_type: Some(cp.instance_type),
                zone: Some(cp.zone),
                zone_id: cp.zone_id,
                nodes: nodes.len() as u32,
            })
            .collect();
        self.analytics.census(at, &pool.name, &rows);
        let Some(details) = self.analytics.pool_stats(&pool.name, at) else {
            return Ok(());
        };
        if self.full() {
            return Ok(());
        }
        let line = PoolStatsLine::new(&pool, at, &details);
        writeln!(
            self.out,
            "{}",
            serde_json::to_string(&line).map_err(io::Error::other)?
        )?;
        self.written += 1;
        Ok(())
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A `pool_stats` event as the cluster side will write it: the normalised envelope with kind
/// `pool_stats`, the pool as the subject, and [`PoolStatsDetails`] as `details`.
#[derive(Serialize)]
struct PoolStatsLine<'a> {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: &'static str,
    subject: &'a str,
    time: Timestamp,
    datacontenttype: &'static str,
    data: PoolStatsData<'a>,
}

#[derive(Serialize)]
struct PoolStatsData<'a> {
    schema_version: u32,
    kind: &'static str,
    status: Option<()>,
    provider: Provider,
    provider_event: &'static str,
    account: &'a str,
    region: &'a str,
    zone: Option<()>,
    instance: Instance,
    action: Option<()>,
    occurred_at: Timestamp,
    not_before: Option<Timestamp>,
    not_after: Option<Timestamp>,
    deadline: Option<()>,
    node: Option<()>,
    details: Value,
}

impl<'a> PoolStatsLine<'a> {
    fn new(pool: &'a PoolSpec, at: Timestamp, details: &PoolStatsDetails) -> Self {
        PoolStatsLine {
            specversion: "1.0",
            id: format!("pool_stats/{}/{at}", pool.name),
            source: format!("/{}/{}/{}", pool.provider, pool.account, pool.region),
            ty: "eviction-router.pool_stats.v1",
            subject: &pool.name,
            time: at,
            datacontenttype: "application/json",
            data: PoolStatsData {
                schema_version: 1,
                kind: "pool_stats",
                status: None,
                provider: pool.provider,
                provider_event: "pool_stats",
                account: pool.account,
                region: pool.region,
                zone: None,
                instance: Instance {
                    id: pool.name.clone(),
                    name: None,
                    provider_id: None,
                    resource_id: None,
                },
                action: None,
                occurred_at: at,
                not_before: details.since,
                not_after: Some(at),
                deadline: None,
                node: None,
                details: Value::Object(details.to_details()),
            },
        }
    }
}
