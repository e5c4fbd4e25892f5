//! Per-pool Spot statistics from the normalised stream: pure, fed one event at a time, bounded.
//!
//! [`Analytics`] reads [`Observation`]s (from an [`Event`] with [`Analytics::observe_event`], or
//! from a JSON line with [`Line::parse`]) and a census of Spot Nodes ([`Analytics::census`], or
//! the census carried by `pool_stats` events), and answers a [`Stats`] snapshot at any time: for
//! each pool, and for each (instance type, zone) with the zone as AWS AZ ID where known,
//!
//! - Spot node-hours observed (the census integrated over time: a census holds until the next
//!   one, for at most [`Config::census_max_gap`]) and interruptions per 1,000 node-hours;
//! - lifetime from Node creation to the notice (p50, p90), where the event names the creation;
//! - rebalance recommendations and the share followed by an interruption of the same instance
//!   within [`Config::rebalance_horizon`] (1 h), with the lead time;
//! - the burst factor: the share of interruptions within [`Config::burst_window`] (3 min) of
//!   another in the same pool (or the same type and zone);
//! - recovery latency by phase (p50, p90, p99), per pool;
//! - the interruptions over time per pool (for charts).
//!
//! The same instance is interrupted once: a second notice within [`Config::repeat_window`]
//! (Azure sends a Preempt scheduled event and later a `VirtualMachinePreempted` annotation) is
//! counted as a repeat, not as an interruption.
//!
//! **Bounded memory.** Quantiles come from [`Sketch`]es (1 % relative error, at most ~1,400
//! buckets each); the pools and (type, zone) keys are capped ([`Config::max_pools`],
//! [`Config::max_capacity_pools`]; later names are counted under [`OTHER`]); the instances
//! remembered for pairing rebalances and repeats are those of the last hour, pruned every
//! [`PRUNE_EVERY_MS`] of stream time and capped ([`Config::max_tracked_instances`]); the series
//! has at most [`Config::max_series_buckets`] buckets per pool, coarsened as the stream grows;
//! bursts keep only the last hour. Nothing grows with the number of events.
//!
//! **Feeding it live.** The cluster side calls [`Analytics::observe_event`] for every event it
//! publishes, [`Analytics::census`] every period with each pool's Spot Nodes by (type, zone),
//! [`Analytics::phase`] when a notice reaches a recovery phase, and
//! [`Analytics::pool_stats`] to get the `details` of each pool's periodic `pool_stats` event.

mod burst;
mod observe;
mod published;
mod sketch;
mod state;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use burst::Bursts;

pub use observe::{
    Census, Escaped, Line, LineError, Observation, Phase, Phases, Signal, find_byte, parse_time,
};
pub use published::{
    Comparison, HOURS_PER_MONTH, Published, PublishedError, PublishedRate, Rate, Verdict,
    observed_percent_per_month,
};
pub use sketch::Sketch;
pub use state::{MAX_STATE_BYTES, StateError};
pub use stats::{
    ALL, CapacityStats, CensusRow, Charts, EventCounts, GroupStats, LIFETIME_EDGES_SECONDS,
    PoolSeries, PoolStats, PoolStatsDetails, Quantiles, RebalanceStats, RecoveryStats, Stats,
    Window,
};

/// The pool (or type, or zone) of an event that does not name it.
pub const UNKNOWN: &str = "(unknown)";
/// Where names beyond the caps are counted. Neither this nor [`UNKNOWN`] can be a Kubernetes
/// label value, so they never collide with a real pool.
pub const OTHER: &str = "(other)";
/// How often (in stream time) the instances remembered are pruned.
pub const PRUNE_EVERY_MS: i64 = 10 * 60 * 1000;

/// The series' bucket widths, in ms: each divides the next, so coarsening is exact.
const SERIES_WIDTHS_MS: [i64; 9] = [
    60_000,
    300_000,
    900_000,
    3_600_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    604_800_000,
];

/// FxHash (rustc's own): a few instructions for a short key, where SipHash is a tenth of a
/// report's time. Unkeyed, so keys chosen to collide would slow the maps down: every map here
/// is capped, and its keys are the names and instance ids of the cluster's own Nodes (the
/// router publishes no event for an instance that is not one).
#[derive(Debug, Clone, Copy, Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// The statistics' settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interruptions this close to another of the same pool are in a burst (3 min).
    pub burst_window: SignedDuration,
    /// A rebalance recommendation followed by an interruption of the instance within this is
    /// "followed" (1 h).
    pub rebalance_horizon: SignedDuration,
    /// A second interruption notice for an instance within this is a repeat (1 h).
    pub repeat_window: SignedDuration,
    /// A census counts for at most this long after it was taken (1 h; the router's
    /// `pool_stats` period should be well under it).
    pub census_max_gap: SignedDuration,
    /// Distinct pools kept by name (256); the rest are [`OTHER`].
    pub max_pools: usize,
    /// Distinct (instance type, zone) kept (1,024); the rest are [`OTHER`].
    pub max_capacity_pools: usize,
    /// Instances remembered at once for pairing and repeats (200,000).
    pub max_tracked_instances: usize,
    /// Buckets of the series per pool (512).
    pub max_series_buckets: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            burst_window: SignedDuration::from_mins(3),
            rebalance_horizon: SignedDuration::from_hours(1),
            repeat_window: SignedDuration::from_hours(1),
            census_max_gap: SignedDuration::from_hours(1),
            max_pools: 256,
            max_capacity_pools: 1_024,
            max_tracked_instances: 200_000,
            max_series_buckets: 512,
        }
    }
}

/// The accumulators of one pool or one (type, zone).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Group {
    interruptions: u64,
    lifetime: Sketch,
    rebalances: u64,
    followed: u64,
    not_followed: u64,
    lead: Sketch,
    bursts: Bursts,
    terminations: u64,
    maintenance: u64,
    at_risk: u64,
    node_hours: f64,
    censused: bool,
    phases: [Sketch; 4],
    /// Bucket start (ms) → interruptions; pools only.
    series: BTreeMap<i64, u64>,
}

/// What is known of a (type, zone) besides its key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CapacityMeta {
    instance_type: Box<str>,
    zone: Box<str>,
    zone_id: Option<Box<str>>,
    zone_name: Option<Box<str>>,
    region: Option<Box<str>>,
    provider: Option<Box<str>>,
}

/// Named groups, capped.
#[derive(Debug, Serialize, Deserialize)]
struct Groups {
    names: Vec<Box<str>>,
    /// Rebuilt from `names` when restored.
    #[serde(skip)]
    index: FxMap<Box<str>, u32>,
    groups: Vec<Group>,
    named: usize,
    /// From the configuration when restored.
    #[serde(skip)]
    max: usize,
}

impl Groups {
    fn new(max: usize) -> Groups {
        Groups {
            names: Vec::new(),
            index: FxMap::default(),
            groups: Vec::new(),
            named: 0,
            max,
        }
    }

    /// The id of `name`, made if new; [`OTHER`] once `max` names are kept.
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let sentinel = name == UNKNOWN || name == OTHER;
        if !sentinel && self.named >= self.max {
            return self.id(OTHER);
        }
        if !sentinel {
            self.named += 1;
        }
        let id = self.groups.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), id);
        self.groups.push(Group::default());
        id
    }

    fn get(&mut self, id: u32) -> &mut Group {
        &mut self.groups[id as usize]
    }
}

/// Where capacity sits: the parts of a (type, zone) key and what is known of it.
#[derive(Debug, Clone, Copy)]
struct Place<'a> {
    account: Option<&'a str>,
    instance_type: Option<&'a str>,
    zone: Option<&'a str>,
    zone_id: Option<&'a str>,
    region: Option<&'a str>,
    provider: Option<&'a str>,
}

/// A rebalance recommendation waiting for an interruption.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Pending {
    at: i64,
    pool: u32,
    cap: u32,
}

/// What is remembered of one instance.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Tracked {
    rebalance: Option<Pending>,
    interrupted_at: Option<i64>,
}

/// The last census of one (pool, type-zone) pair.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CensusState {
    at: i64,
    nodes: u32,
}

/// Events read, by what became of them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    by_signal: [u64; 7],
    unknown_kind: u64,
    not_spot: u64,
    repeats: u64,
    untracked: u64,
}

/// Most (account, zone name) → AZ ID mappings kept.
const MAX_ZONES: usize = 4_096;
/// Most (pool, type-zone) pairs whose census is kept.
const MAX_CENSUS_PAIRS: usize = 16_384;

/// The statistics of a stream so far. See the [module docs](self).
#[derive(Debug, Serialize, Deserialize)]
pub struct Analytics {
    /// Given again when restored ([`Analytics::restore`]).
    #[serde(skip)]
    config: Config,
    pools: Groups,
    capacity: Groups,
    cap_meta: Vec<CapacityMeta>,
    instances: FxMap<Box<str>, Tracked>,
    #[serde(with = "state::pairs")]
    census: FxMap<(u32, u32), CensusState>,
    /// `account \x1f zone name` → AZ ID, as events gave them.
    zone_ids: FxMap<Box<str>, Box<str>>,
    counts: Counts,
    /// The series' bucket width (ms).
    width: i64,
    oldest: Option<i64>,
    newest: i64,
    last_prune: i64,
    /// Scratch.
    #[serde(skip)]
    key: String,
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics::new(Config::default())
    }
}

fn ms(d: SignedDuration) -> i64 {
    d.as_millis() as i64
}

impl Analytics {
    /// Empty statistics.
    pub fn new(config: Config) -> Analytics {
        Analytics {
            pools: Groups::new(config.max_pools),
            capacity: Groups::new(config.max_capacity_pools),
            config,
            cap_meta: Vec::new(),
            instances: FxMap::default(),
            census: FxMap::default(),
            zone_ids: FxMap::default(),
            counts: Counts::default(),
            width: SERIES_WIDTHS_MS[0],
            oldest: None,
            newest: i64::MIN,
            last_prune: i64::MIN,
            key: String::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Observes one normalised event (kinds the statistics do not count are skipped).
    pub fn observe_event(&mut self, event: &Event) {
        if let Some(obs) = Observation::of_event(event) {
            self.observe(&obs);
        }
    }

    /// Observes one event of the stream, in about the order they happened (disorder up to the
    /// windows' sizes is harmless).
    pub fn observe(&mut self, obs: &Observation<'_>) {
        let t = obs.at.as_millisecond();
        self.counts.by_signal[obs.signal as usize] += 1;
        self.extend_timeline(t);
        let not_spot = obs
            .capacity_type
            .is_some_and(|c| !c.eq_ignore_ascii_case("spot"));
        match obs.signal {
            Signal::Interruption
            | Signal::Rebalance
            | Signal::Termination
            | Signal::Maintenance
                if not_spot =>
            {
                self.counts.not_spot += 1;
            }
            Signal::Interruption => self.interruption(obs, t),
            Signal::Rebalance => self.rebalance(obs, t),
            Signal::Termination => {
                let (p, c) = self.keys(obs);
                self.pools.get(p).terminations += 1;
                self.capacity.get(c).terminations += 1;
            }
            Signal::Maintenance => {
                let (p, c) = self.keys(obs);
                self.pools.get(p).maintenance += 1;
                self.capacity.get(c).maintenance += 1;
            }
            Signal::ReplacementReady => {
                let p = self.pools.id(obs.pool.unwrap_or(UNKNOWN));
                let group = self.pools.get(p);
                for (phase, seconds) in obs.phases.iter() {
                    group.phases[phase as usize].add(seconds);
                }
            }
            Signal::PoolAtRisk => {
                let c = self.capacity_key(obs);
                self.capacity.get(c).at_risk += 1;
            }
            Signal::PoolStats => {
                let pool = obs.pool.unwrap_or(UNKNOWN);
                self.census_at(t, pool, &obs.census, obs);
            }
        }
        self.prune();
    }

    /// Records that `pool` had `rows` Spot Nodes by (type, zone) at `at`; a pair the census no
    /// longer lists has none. Node-hours are the censuses integrated over time.
    pub fn census(&mut self, at: Timestamp, pool: &str, rows: &[Census<'_>]) {
        let t = at.as_millisecond();
        self.extend_timeline(t);
        let bare = Observation::new(Signal::PoolStats, at, "");
        self.census_at(t, pool, rows, &bare);
    }

    /// Counts a line of a kind the statistics do not know (the report skips it).
    pub fn note_unknown_kind(&mut self) {
        self.counts.unknown_kind += 1;
    }

    /// Records that a notice of `pool` reached `phase` `seconds` after it occurred.
    pub fn phase(&mut self, pool: &str, phase: Phase, seconds: f64) {
        let p = self.pools.id(pool);
        self.pools.get(p).phases[phase as usize].add(seconds);
    }

    /// The pool and (type, zone) ids of an event.
    fn keys(&mut self, obs: &Observation<'_>) -> (u32, u32) {
        let p = self.pools.id(obs.pool.unwrap_or(UNKNOWN));
        (p, self.capacity_key(obs))
    }

    fn capacity_key(&mut self, obs: &Observation<'_>) -> u32 {
        self.capacity_at(&Place {
            account: obs.account,
            instance_type: obs.instance_type,
            zone: obs.zone,
            zone_id: obs.zone_id,
            region: obs.region,
            provider: obs.provider,
        })
    }

    fn capacity_at(&mut self, at: &Place<'_>) -> u32 {
        // An event that names the zone but not its AZ ID (a `pool_at_risk`, an older router's
        // notice) is keyed by the ID other events of the account gave that zone.
        let learned: Option<Box<str>> = match (at.zone_id, at.zone) {
            (Some(id), Some(name)) => {
                self.learn_zone(at.account, name, id);
                None
            }
            (None, Some(name)) => {
                self.zone_key(at.account, name);
                self.zone_ids.get(self.key.as_str()).cloned()
            }
            _ => None,
        };
        let zone_id = at.zone_id.or(learned.as_deref());
        let c = self.capacity_id(at.instance_type, zone_id.or(at.zone));
        let meta = &mut self.cap_meta[c as usize];
        if meta.zone_id.is_none() {
            meta.zone_id = zone_id.map(Into::into);
        }
        if meta.zone_name.is_none() {
            meta.zone_name = at.zone.map(Into::into);
        }
        if meta.region.is_none() {
            meta.region = at.region.map(Into::into);
        }
        if meta.provider.is_none() {
            meta.provider = at.provider.map(Into::into);
        }
        c
    }

    fn zone_key(&mut self, account: Option<&str>, zone: &str) {
        self.key.clear();
        self.key.push_str(account.unwrap_or(""));
        self.key.push('\u{1f}');
        self.key.push_str(zone);
    }

    fn learn_zone(&mut self, account: Option<&str>, zone: &str, id: &str) {
        self.zone_key(account, zone);
        if !self.zone_ids.contains_key(self.key.as_str()) && self.zone_ids.len() < MAX_ZONES {
            self.zone_ids.insert(self.key.as_str().into(), id.into());
        }
    }

    fn capacity_id(&mut self, instance_type: Option<&str>, zone: Option<&str>) -> u32 {
        let (ty, zone) = (instance_type.unwrap_or(UNKNOWN), zone.unwrap_or(UNKNOWN));
        self.key.clear();
        self.key.push_str(ty);
        self.key.push('\u{1f}');
        self.key.push_str(zone);
        let c = self.capacity.id(&self.key);
        if c as usize >= self.cap_meta.len() {
            let other = self.capacity.names[c as usize].as_ref() == OTHER;
            let (ty, zone) = if other { (OTHER, OTHER) } else { (ty, zone) };
            self.cap_meta.push(CapacityMeta {
                instance_type: ty.into(),
                zone: zone.into(),
                ..CapacityMeta::default()
            });
        }
        c
    }

    fn extend_timeline(&mut self, t: i64) {
        self.newest = self.newest.max(t);
        let oldest = self.oldest.map_or(t, |o| o.min(t));
        self.oldest = Some(oldest);
        let max = self.config.max_series_buckets.max(1) as i64;
        while self.newest.div_euclid(self.width) - oldest.div_euclid(self.width) >= max {
            let next = SERIES_WIDTHS_MS
                .iter()
                .copied()
                .find(|w| *w > self.width)
                .unwrap_or(self.width * 2);
            self.width = next;
            for group in &mut self.pools.groups {
                let old = std::mem::take(&mut group.series);
                for (start, n) in old {
                    *group
                        .series
                        .entry(start.div_euclid(next) * next)
                        .or_default() += n;
                }
            }
        }
    }

    fn interruption(&mut self, obs: &Observation<'_>, t: i64) {
        let (p, c) = self.keys(obs);
        let mut tracked = self.tracked(obs.instance);
        if let Some(t0) = tracked.interrupted_at
            && (t - t0).abs() <= ms(self.config.repeat_window)
        {
            self.counts.repeats += 1;
            return;
        }
        tracked.interrupted_at = Some(t);
        if let Some(r) = tracked.rebalance.take() {
            self.decide(r, Some(t));
        }
        self.remember(obs.instance, tracked);

        let window = ms(self.config.burst_window);
        let horizon = window + ms(self.config.repeat_window);
        let lifetime = obs
            .node_created_at
            .map(|created| (t - created.as_millisecond()) as f64 / 1e3);
        let bucket = t.div_euclid(self.width) * self.width;
        let newest = self.newest;
        for (groups, id) in [(&mut self.pools, p), (&mut self.capacity, c)] {
            let g = groups.get(id);
            g.interruptions += 1;
            g.bursts.add(t, window, horizon, newest);
            if let Some(l) = lifetime {
                g.lifetime.add(l);
            }
        }
        *self.pools.get(p).series.entry(bucket).or_default() += 1;
    }

    fn rebalance(&mut self, obs: &Observation<'_>, t: i64) {
        let (p, c) = self.keys(obs);
        let mut tracked = self.tracked(obs.instance);
        if let Some(r) = tracked.rebalance {
            if t - r.at <= ms(self.config.rebalance_horizon) {
                self.counts.repeats += 1;
                return;
            }
            self.decide(r, None);
        }
        self.pools.get(p).rebalances += 1;
        self.capacity.get(c).rebalances += 1;
        let pending = Pending {
            at: t,
            pool: p,
            cap: c,
        };
        match tracked.interrupted_at {
            // Interrupted already (the stream's order is not the signals' order): decided now.
            Some(ti) if (ti - t).abs() <= ms(self.config.repeat_window) => {
                self.decide(pending, Some(ti));
                tracked.rebalance = None;
            }
            _ => tracked.rebalance = Some(pending),
        }
        self.remember(obs.instance, tracked);
    }

    /// Settles a recommendation: followed when the instance was interrupted at or after it
    /// within the horizon.
    fn decide(&mut self, r: Pending, interrupted: Option<i64>) {
        let horizon = ms(self.config.rebalance_horizon);
        let lead = interrupted
            .map(|ti| ti - r.at)
            .filter(|lead| (0..=horizon).contains(lead));
        for (groups, id) in [(&mut self.pools, r.pool), (&mut self.capacity, r.cap)] {
            let g = groups.get(id);
            match lead {
                Some(lead) => {
                    g.followed += 1;
                    g.lead.add(lead as f64 / 1e3);
                }
                None => g.not_followed += 1,
            }
        }
    }

    fn tracked(&self, instance: &str) -> Tracked {
        self.instances.get(instance).copied().unwrap_or_default()
    }

    fn remember(&mut self, instance: &str, tracked: Tracked) {
        if let Some(slot) = self.instances.get_mut(instance) {
            *slot = tracked;
        } else if self.instances.len() < self.config.max_tracked_instances {
            self.instances.insert(instance.into(), tracked);
        } else {
            self.counts.untracked += 1;
        }
    }

    /// Every [`PRUNE_EVERY_MS`] of stream time: settles the recommendations whose horizon has
    /// passed and forgets interruptions older than the repeat window.
    fn prune(&mut self) {
        if self.newest.saturating_sub(self.last_prune) < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune = self.newest;
        let newest = self.newest;
        let horizon = ms(self.config.rebalance_horizon) + PRUNE_EVERY_MS;
        let repeat = ms(self.config.repeat_window) + PRUNE_EVERY_MS;
        let (pools, capacity) = (&mut self.pools, &mut self.capacity);
        self.instances.retain(|_, tracked| {
            if let Some(r) = tracked.rebalance
                && newest - r.at > horizon
            {
                pools.get(r.pool).not_followed += 1;
                capacity.get(r.cap).not_followed += 1;
                tracked.rebalance = None;
            }
            if tracked
                .interrupted_at
                .is_some_and(|t0| newest - t0 > repeat)
            {
                tracked.interrupted_at = None;
            }
            tracked.rebalance.is_some() || tracked.interrupted_at.is_some()
        });
    }

    fn census_at(&mut self, t: i64, pool: &str, rows: &[Census<'_>], obs: &Observation<'_>) {
        let p = self.pools.id(pool);
        let max_gap = ms(self.config.census_max_gap);
        // This census's count per (type, zone); a pair listed twice is summed.
        let mut now: Vec<(u32, u32)> = Vec::with_capacity(rows.len());
        for row in rows {
            let c = self.capacity_at(&Place {
                account: obs.account,
                instance_type: row.instance_type,
                zone: row.zone,
                zone_id: row.zone_id,
                region: obs.region,
                provider: obs.provider,
            });
            match now.iter_mut().find(|(id, _)| *id == c) {
                Some((_, n)) => *n = n.saturating_add(row.nodes),
                None => now.push((c, row.nodes)),
            }
        }
        let mut pairs: Vec<u32> = self
            .census
            .keys()
            .filter(|(pool, _)| *pool == p)
            .map(|(_, c)| *c)
            .collect();
        for (c, _) in &now {
            if !pairs.contains(c) {
                pairs.push(*c);
            }
        }
        for c in pairs {
            let nodes = now.iter().find(|(id, _)| *id == c).map_or(0, |(_, n)| *n);
            let state = self.census.get(&(p, c)).copied();
            if let Some(last) = state {
                if t < last.at {
                    continue; // an older census than the one kept: it changes nothing
                }
                let hours = f64::from(last.nodes) * (t - last.at).min(max_gap) as f64 / 3.6e6;
                self.pools.get(p).node_hours += hours;
                self.capacity.get(c).node_hours += hours;
            } else if self.census.len() >= MAX_CENSUS_PAIRS {
                self.counts.untracked += 1;
                continue;
            }
            self.census.insert((p, c), CensusState { at: t, nodes });
            self.pools.get(p).censused = true;
            self.capacity.get(c).censused = true;
        }
    }
}

#[cfg(test)]
mod tests;
