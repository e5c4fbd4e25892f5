//! Snapshots: [`Stats`] (everything, for the report) and [`PoolStatsDetails`] (one pool, the
//! `details` of its periodic `pool_stats` event). Plain data with serde, rounded to what the
//! sketches can tell (three significant digits), so that golden files are stable.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Analytics, CapacityMeta, Group, OTHER, Phase, Signal, UNKNOWN, ms};
use crate::analytics::sketch::Sketch;

/// The edges (seconds) of the lifetime histograms in [`Charts`]: 0, 15 min, 30 min, 1 h, 2 h,
/// 4 h, 8 h, 12 h, 1 d, 2 d, 4 d, 7 d, 14 d; the last range has no upper bound.
pub const LIFETIME_EDGES_SECONDS: [f64; 13] = [
    0.0,
    900.0,
    1_800.0,
    3_600.0,
    7_200.0,
    14_400.0,
    28_800.0,
    43_200.0,
    86_400.0,
    172_800.0,
    345_600.0,
    604_800.0,
    1_209_600.0,
];

/// Quantiles of a distribution (seconds), `null` when it is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Quantiles {
    fn of(s: &Sketch) -> Quantiles {
        let q = |q| s.quantile(q).map(significant);
        Quantiles {
            count: s.count(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
        }
    }
}

/// Rebalance recommendations and what followed them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebalanceStats {
    /// Recommendations (one per instance while it waits for its interruption).
    pub recommendations: u64,
    /// Followed by an interruption of the same instance within the horizon (1 h).
    pub followed: u64,
    /// Not followed within the horizon.
    pub not_followed: u64,
    /// Still within their horizon at the snapshot.
    pub undecided: u64,
    /// `followed / (followed + not_followed)`.
    pub share_followed: Option<f64>,
    /// Recommendation → interruption, for those followed.
    pub lead_seconds: Quantiles,
}

/// The statistics of one pool or one (type, zone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// Spot node-hours from the census; `null` without one.
    pub node_hours: Option<f64>,
    /// Interruptions (repeat notices for an instance not counted).
    pub interruptions: u64,
    /// Interruptions per 1,000 Spot node-hours; `null` without a census.
    pub interruptions_per_1000_node_hours: Option<f64>,
    /// Node creation → notice, for the interruptions that name the creation.
    pub lifetime_seconds: Quantiles,
    /// Rebalance recommendations.
    pub rebalance: RebalanceStats,
    /// Interruptions within the burst window (3 min) of another.
    pub interruptions_in_bursts: u64,
    /// `interruptions_in_bursts / interruptions`.
    pub burst_factor: Option<f64>,
    /// Terminations (not interruptions).
    pub terminations: u64,
    /// Scheduled maintenance notices.
    pub scheduled_maintenance: u64,
}

/// Time from the notice to each recovery phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryStats {
    /// Notice → cordoned.
    pub cordoned: Quantiles,
    /// Notice → drain ended.
    pub drained: Quantiles,
    /// Notice → replacement Node Ready.
    pub replacement_ready: Quantiles,
    /// Notice → every evicted pod running again.
    pub pods_running: Quantiles,
}

impl RecoveryStats {
    /// The quantiles of `phase`.
    pub fn get(&self, phase: Phase) -> &Quantiles {
        match phase {
            Phase::Cordoned => &self.cordoned,
            Phase::Drained => &self.drained,
            Phase::ReplacementReady => &self.replacement_ready,
            Phase::PodsRunning => &self.pods_running,
        }
    }
}

/// One pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStats {
    /// The pool's name, or `(unknown)` / `(other)`.
    pub pool: String,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: GroupStats,
    /// Recovery latency by phase.
    pub recovery_seconds: RecoveryStats,
}

/// One (instance type, zone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityStats {
    /// The cloud, where an event said.
    pub provider: Option<String>,
    /// The region, where an event said.
    pub region: Option<String>,
    /// The instance type, or `(unknown)` / `(other)`.
    pub instance_type: String,
    /// The key's zone: the AZ ID where known, else the zone's name.
    pub zone: String,
    /// The AWS AZ ID, where known.
    pub zone_id: Option<String>,
    /// The zone's name, where known.
    pub zone_name: Option<String>,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: GroupStats,
    /// `pool_at_risk` events (sibling shelters) of this type and zone.
    pub pools_at_risk: u64,
}

/// The span of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// The earliest event.
    pub from: Option<Timestamp>,
    /// The snapshot's time (the latest event, for a report).
    pub to: Option<Timestamp>,
    /// `to − from`, in hours.
    pub hours: f64,
}

/// What became of the events observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventCounts {
    /// Events observed, by kind.
    pub interruption: u64,
    /// Rebalance recommendations.
    pub rebalance_recommendation: u64,
    /// Scheduled maintenance.
    pub scheduled_maintenance: u64,
    /// Terminations.
    pub termination: u64,
    /// Replacements Ready.
    pub replacement_ready: u64,
    /// Sibling shelters.
    pub pool_at_risk: u64,
    /// Census snapshots.
    pub pool_stats: u64,
    /// Lines of a kind the statistics do not know (skipped).
    pub unknown_kind: u64,
    /// Events whose `details.capacity_type` is not `spot` (left out).
    pub not_spot: u64,
    /// Second notices for an instance already interrupted, or recommended (not counted again).
    pub repeat_notices: u64,
    /// Events past the caps of instances or census pairs remembered (counted, not paired).
    pub untracked: u64,
}

/// One pool's interruptions per bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSeries {
    /// The pool.
    pub pool: String,
    /// Per bucket, from [`Charts::start`].
    pub counts: Vec<u64>,
}

/// What the charts draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charts {
    /// The width of a bucket of the series.
    pub bucket_seconds: i64,
    /// The start of the first bucket.
    pub start: Option<Timestamp>,
    /// Interruptions per bucket, per pool with any.
    pub interruptions: Vec<PoolSeries>,
    /// Lifetimes per pool in the ranges of [`LIFETIME_EDGES_SECONDS`].
    pub lifetimes: Vec<PoolSeries>,
}

/// A snapshot of the statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The span observed.
    pub window: Window,
    /// The events.
    pub events: EventCounts,
    /// Every pool together (`(all)`); its rate is over the pools with a census.
    pub total: PoolStats,
    /// Per pool, by name (`(unknown)` and `(other)` last).
    pub pools: Vec<PoolStats>,
    /// Per (instance type, zone), by type then zone.
    pub capacity: Vec<CapacityStats>,
    /// Series and histograms for charts.
    pub charts: Charts,
}

/// One row of a `pool_stats` census.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CensusRow {
    /// The instance type.
    pub instance_type: Option<String>,
    /// The zone's name.
    pub zone: Option<String>,
    /// The AWS AZ ID.
    pub zone_id: Option<String>,
    /// Spot Nodes.
    pub nodes: u32,
}

/// The `details` of a `pool_stats` event: the pool, its last census, its statistics since the
/// statistics began. The census is what a `report` over the stream integrates into node-hours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatsDetails {
    /// The pool.
    pub pool: String,
    /// When the statistics began (the first event observed).
    pub since: Option<Timestamp>,
    /// Spot Nodes by (type, zone), at the last census.
    pub capacity: Vec<CensusRow>,
    /// The statistics.
    pub stats: PoolStats,
}

impl PoolStatsDetails {
    /// As the `details` object of an event.
    pub fn to_details(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // Plain data with string keys always serialises to an object.
            _ => Map::new(),
        }
    }
}

/// The name of every pool together in [`Stats::total`].
pub const ALL: &str = "(all)";

/// Rounds to three significant digits: what a 1 % sketch can tell.
fn significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 3 - x.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round_to(part as f64 / whole as f64, 3))
}

fn time(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

/// Names sorted, with the sentinels last.
fn order(name: &str) -> (bool, &str) {
    (name == UNKNOWN || name == OTHER, name)
}

impl Analytics {
    /// The pools seen so far, by name.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.pools.names.iter().map(|n| n.as_ref())
    }

    /// The time of the latest event observed.
    pub fn latest(&self) -> Option<Timestamp> {
        self.oldest.and_then(|_| time(self.newest))
    }

    /// A snapshot at `at` (now, live; the latest event, for a report): censuses hold until
    /// `at` (at most the gap), recommendations younger than the horizon are undecided.
    pub fn stats(&self, at: Timestamp) -> Stats {
        let t = at.as_millisecond();
        let (pool_hours, cap_hours) = self.node_hours_at(t);
        let (pool_open, cap_open) = self.open_rebalances(t);

        let mut pools: Vec<PoolStats> = (0..self.pools.groups.len())
            .map(|i| self.pool_stats_of(i, pool_hours[i], pool_open[i]))
            .collect();
        pools.sort_by(|a, b| order(&a.pool).cmp(&order(&b.pool)));

        let mut capacity: Vec<CapacityStats> = self
            .capacity
            .groups
            .iter()
            .zip(&self.cap_meta)
            .enumerate()
            .map(|(i, (g, meta))| capacity_stats(g, meta, cap_hours[i], cap_open[i]))
            .collect();
        capacity.sort_by(|a, b| {
            (order(&a.instance_type), order(&a.zone))
                .cmp(&(order(&b.instance_type), order(&b.zone)))
        });

        let c = &self.counts;
        let by = |s: Signal| c.by_signal[s as usize];
        let from = self.oldest;
        let to = from.map(|_| t.max(self.newest));
        Stats {
            window: Window {
                from: from.and_then(time),
                to: to.and_then(time),
                hours: match (from, to) {
                    (Some(f), Some(t)) => round_to((t - f) as f64 / 3.6e6, 2),
                    _ => 0.0,
                },
            },
            events: EventCounts {
                interruption: by(Signal::Interruption),
                rebalance_recommendation: by(Signal::Rebalance),
                scheduled_maintenance: by(Signal::Maintenance),
                termination: by(Signal::Termination),
                replacement_ready: by(Signal::ReplacementReady),
                pool_at_risk: by(Signal::PoolAtRisk),
                pool_stats: by(Signal::PoolStats),
                unknown_kind: c.unknown_kind,
                not_spot: c.not_spot,
                repeat_notices: c.repeats,
                untracked: c.untracked,
            },
            charts: self.charts(&pools),
            total: self.total(&pool_hours, &pool_open),
            pools,
            capacity,
        }
    }

    /// The `details` of `pool`'s `pool_stats` event at `at`, or `None` for a pool never seen.
    pub fn pool_stats(&self, pool: &str, at: Timestamp) -> Option<PoolStatsDetails> {
        let &id = self.pools.index.get(pool)?;
        let i = id as usize;
        let t = at.as_millisecond();
        let (pool_hours, _) = self.node_hours_at(t);
        let (pool_open, _) = self.open_rebalances(t);
        let mut capacity: Vec<CensusRow> = self
            .census
            .iter()
            .filter(|((p, _), _)| *p == id)
            .map(|((_, c), state)| {
                let meta = &self.cap_meta[*c as usize];
                let known = |s: &str| (s != UNKNOWN && s != OTHER).then(|| s.to_owned());
                CensusRow {
                    instance_type: known(&meta.instance_type),
                    zone: meta.zone_name.as_deref().map(str::to_owned),
                    zone_id: meta.zone_id.as_deref().map(str::to_owned),
                    nodes: state.nodes,
                }
            })
            .collect();
        capacity.sort_by(|a, b| {
            (&a.instance_type, &a.zone_id, &a.zone).cmp(&(&b.instance_type, &b.zone_id, &b.zone))
        });
        Some(PoolStatsDetails {
            pool: pool.to_owned(),
            since: self.oldest.and_then(time),
            capacity,
            stats: self.pool_stats_of(i, pool_hours[i], pool_open[i]),
        })
    }

    fn pool_stats_of(&self, i: usize, hours: f64, open: (u64, u64)) -> PoolStats {
        let g = &self.pools.groups[i];
        pool_stats_from(&self.pools.names[i], g, hours, open)
    }

    /// Every pool together: distributions merged, node-hours and the rate over the pools with
    /// a census only.
    fn total(&self, pool_hours: &[f64], pool_open: &[(u64, u64)]) -> PoolStats {
        let mut all = Group::default();
        let (mut hours, mut censused_interruptions, mut in_bursts) = (0.0, 0, 0);
        let mut open = (0, 0);
        for (i, g) in self.pools.groups.iter().enumerate() {
            all.interruptions += g.interruptions;
            all.lifetime.merge(&g.lifetime);
            all.rebalances += g.rebalances;
            all.followed += g.followed;
            all.not_followed += g.not_followed;
            all.lead.merge(&g.lead);
            all.terminations += g.terminations;
            all.maintenance += g.maintenance;
            for (a, b) in all.phases.iter_mut().zip(&g.phases) {
                a.merge(b);
            }
            if g.censused {
                all.censused = true;
                hours += pool_hours[i];
                censused_interruptions += g.interruptions;
            }
            in_bursts += g.bursts.in_bursts();
            open.0 += pool_open[i].0;
            open.1 += pool_open[i].1;
        }
        let mut total = pool_stats_from(ALL, &all, hours, open);
        let stats = &mut total.stats;
        stats.interruptions_in_bursts = in_bursts;
        stats.burst_factor = share(in_bursts, all.interruptions);
        stats.interruptions_per_1000_node_hours =
            (hours > 0.0).then(|| significant(censused_interruptions as f64 * 1000.0 / hours));
        total
    }

    /// Node-hours per pool and per (type, zone), with each census held until `t`.
    fn node_hours_at(&self, t: i64) -> (Vec<f64>, Vec<f64>) {
        let mut pools: Vec<f64> = self.pools.groups.iter().map(|g| g.node_hours).collect();
        let mut caps: Vec<f64> = self.capacity.groups.iter().map(|g| g.node_hours).collect();
        let max_gap = ms(self.config.census_max_gap);
        for ((p, c), state) in &self.census {
            let held = (t - state.at).clamp(0, max_gap) as f64;
            let hours = f64::from(state.nodes) * held / 3.6e6;
            pools[*p as usize] += hours;
            caps[*c as usize] += hours;
        }
        (pools, caps)
    }

    /// Per pool and per (type, zone): recommendations still waiting at `t` that are
    /// (undecided, past their horizon).
    #[allow(clippy::type_complexity)]
    fn open_rebalances(&self, t: i64) -> (Vec<(u64, u64)>, Vec<(u64, u64)>) {
        let mut pools = vec![(0, 0); self.pools.groups.len()];
        let mut caps = vec![(0, 0); self.capacity.groups.len()];
        let horizon = ms(self.config.rebalance_horizon);
        for r in self.instances.values().filter_map(|t| t.rebalance) {
            let expired = t - r.at > horizon;
            for slot in [&mut pools[r.pool as usize], &mut caps[r.cap as usize]] {
                if expired {
                    slot.1 += 1;
                } else {
                    slot.0 += 1;
                }
            }
        }
        (pools, caps)
    }

    fn charts(&self, pools: &[PoolStats]) -> Charts {
        let w = self.width;
        let first = self.oldest.map(|o| o.div_euclid(w) * w);
        let buckets = match first {
            Some(f) => ((self.newest - f).div_euclid(w) + 1).max(1) as usize,
            None => 0,
        };
        let mut interruptions = Vec::new();
        let mut lifetimes = Vec::new();
        for p in pools {
            let Some(&id) = self.pools.index.get(p.pool.as_str()) else {
                continue;
            };
            let g = &self.pools.groups[id as usize];
            if let Some(f) = first
                && !g.series.is_empty()
            {
                let mut counts = vec![0; buckets];
                for (start, n) in &g.series {
                    let at = (start - f).div_euclid(w);
                    if let Some(slot) = usize::try_from(at).ok().and_then(|a| counts.get_mut(a)) {
                        *slot += n;
                    }
                }
                interruptions.push(PoolSeries {
                    pool: p.pool.clone(),
                    counts,
                });
            }
            if g.lifetime.count() > 0 {
                lifetimes.push(PoolSeries {
                    pool: p.pool.clone(),
                    counts: g.lifetime.histogram(&LIFETIME_EDGES_SECONDS),
                });
            }
        }
        Charts {
            bucket_seconds: w / 1000,
            start: first.and_then(time),
            interruptions,
            lifetimes,
        }
    }
}

fn pool_stats_from(name: &str, g: &Group, hours: f64, open: (u64, u64)) -> PoolStats {
    let phase = |p: Phase| Quantiles::of(&g.phases[p as usize]);
    PoolStats {
        pool: name.to_owned(),
        stats: group_stats(g, hours, open),
        recovery_seconds: RecoveryStats {
            cordoned: phase(Phase::Cordoned),
            drained: phase(Phase::Drained),
            replacement_ready: phase(Phase::ReplacementReady),
            pods_running: phase(Phase::PodsRunning),
        },
    }
}

fn group_stats(g: &Group, hours: f64, (undecided, expired): (u64, u64)) -> GroupStats {
    let node_hours = g.censused.then(|| round_to(hours, 1));
    let not_followed = g.not_followed + expired;
    GroupStats {
        node_hours,
        interruptions: g.interruptions,
        interruptions_per_1000_node_hours: node_hours
            .filter(|_| hours > 0.0)
            .map(|_| significant(g.interruptions as f64 * 1000.0 / hours)),
        lifetime_seconds: Quantiles::of(&g.lifetime),
        rebalance: RebalanceStats {
            recommendations: g.rebalances,
            followed: g.followed,
            not_followed,
            undecided,
            share_followed: share(g.followed, g.followed + not_followed),
            lead_seconds: Quantiles::of(&g.lead),
        },
        interruptions_in_bursts: g.bursts.in_bursts(),
        burst_factor: share(g.bursts.in_bursts(), g.interruptions),
        terminations: g.terminations,
        scheduled_maintenance: g.maintenance,
    }
}

fn capacity_stats(g: &Group, meta: &CapacityMeta, hours: f64, open: (u64, u64)) -> CapacityStats {
    let owned = |s: &Option<Box<str>>| s.as_deref().map(str::to_owned);
    CapacityStats {
        provider: owned(&meta.provider),
        region: owned(&meta.region),
        instance_type: meta.instance_type.to_string(),
        zone: meta.zone.to_string(),
        zone_id: owned(&meta.zone_id),
        zone_name: owned(&meta.zone_name),
        stats: group_stats(g, hours, open),
        pools_at_risk: g.at_risk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(significant(95.345), 95.3);
        assert_eq!(significant(12_345.0), 12_300.0);
        assert_eq!(significant(0.012_345), 0.0123);
        assert_eq!(significant(100.0), 100.0);
        assert_eq!(significant(0.0), 0.0);
    }
}
