//! Pool statistics kept by the router: which Spot pools hold, from the cluster's own events.
//!
//! Every event the router publishes is observed ([`PoolStats::observe`]) by the pure
//! [`crate::analytics`] module. Every `interval_seconds` the leader
//!
//! 1. takes a census of the Spot Nodes in its cache by pool and (instance type, zone);
//! 2. publishes one `pool_stats` event per pool with Spot Nodes (its census and statistics);
//! 3. sets the `pool_*` gauges (one series per pool, at most [`MAX_POOLS`] pools, the rest
//!    under `(other)`);
//! 4. saves the statistics, gzipped, in the ConfigMap `config_map` of its namespace.
//!
//! A new leader (after a restart or a failover) loads that ConfigMap before it counts anything;
//! events published meanwhile wait in a bounded buffer (1,000; more are dropped from the statistics and logged). What was observed after the last save
//! is lost with the leader: at most one interval.
//!
//! RBAC (the chart's `pool-stats` Role): `get` and `patch` on that ConfigMap, `create` on
//! ConfigMaps, in the router's namespace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::kubernetes::Ctx;
use crate::analytics::{self, Analytics, Census};
use crate::event::{Event, EventData, Instance, Kind, Provider};

/// Pools that become a label value (and are kept apart in the statistics); the rest are
/// `(other)`. The same bound as the recovery metrics' pool label.
pub const MAX_POOLS: usize = crate::metrics::MAX_POOLS;
/// The key of the state in the ConfigMap's `binaryData`.
pub const STATE_KEY: &str = "state.json.gz";
/// Events held while the saved statistics are loaded (a load takes one request; a refused one
/// is retried after [`LOAD_RETRY`], doubled per failure up to the interval); more are dropped
/// (and their number logged once a load succeeds), so that a router that cannot
/// read its ConfigMap holds a bounded few hundred kilobytes.
const MAX_BUFFERED: usize = 1_000;
/// How long a failed load first waits before it is tried again (doubled per failure, up to the
/// interval: a ConfigMap the RBAC refuses is not asked for every few seconds for ever).
const LOAD_RETRY: Duration = Duration::from_secs(5);

/// `cluster.pool_stats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolStatsConfig {
    /// Keep the statistics, publish `pool_stats` and the `pool_*` gauges.
    pub enabled: bool,
    /// How often the leader takes its census, publishes and saves (well under the hour a census
    /// holds for node-hours).
    pub interval_seconds: u64,
    /// The ConfigMap, in the router's namespace, that keeps the statistics.
    pub config_map: String,
}

impl Default for PoolStatsConfig {
    fn default() -> Self {
        PoolStatsConfig {
            enabled: true,
            interval_seconds: 300,
            config_map: "eviction-router-pool-stats".into(),
        }
    }
}

impl PoolStatsConfig {
    /// Checks what serde cannot: `Err((key under pool_stats., what is wrong))`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=3_600).contains(&self.interval_seconds) {
            return Err((
                "interval_seconds",
                "must be 1 to 3600 (a census holds for an hour at most)",
            ));
        }
        if self.config_map.is_empty() || self.config_map.len() > 253 {
            return Err((
                "config_map",
                "must be a ConfigMap name (1 to 253 characters)",
            ));
        }
        Ok(())
    }
}

/// The statistics' bounds in the router: a few hundred kilobytes at most, saved.
fn bounds() -> analytics::Config {
    analytics::Config {
        max_pools: MAX_POOLS,
        max_capacity_pools: 64,
        max_tracked_instances: 5_000,
        max_series_buckets: 128,
        ..analytics::Config::default()
    }
}

#[derive(Debug)]
struct State {
    stats: Analytics,
    /// Whether the saved statistics were loaded (only then are events counted).
    loaded: bool,
    held: Vec<Event>,
    dropped: u64,
}

/// The router's pool statistics. See the [module docs](self).
#[derive(Debug)]
pub struct PoolStats {
    config: PoolStatsConfig,
    namespace: String,
    state: Mutex<State>,
}

impl PoolStats {
    /// Empty until the leader loads the saved statistics.
    pub fn new(config: PoolStatsConfig, namespace: String) -> PoolStats {
        PoolStats {
            config,
            namespace,
            state: Mutex::new(State {
                stats: Analytics::new(bounds()),
                loaded: false,
                held: Vec::new(),
                dropped: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data; a panic elsewhere cannot leave it half-updated in a way that matters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Observes an event the router published (its own `pool_stats` are not counted again).
    pub fn observe(&self, event: &Event) {
        if event.data.kind == Kind::PoolStats {
            return;
        }
        let mut state = self.lock();
        if state.loaded {
            state.stats.observe_event(event);
        } else if state.held.len() < MAX_BUFFERED {
            state.held.push(event.clone());
        } else {
            state.dropped += 1;
        }
    }

    /// Leads: loads, then every interval takes the census, publishes, and saves; standing by
    /// forgets the statistics (the next leader loads what was saved).
    pub(crate) async fn run(self: Arc<Self>, ctx: Arc<Ctx>, mut active: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.interval_seconds);
        loop {
            while !*active.borrow_and_update() {
                if active.changed().await.is_err() {
                    return;
                }
            }
            let mut wait = LOAD_RETRY;
            let mut version = loop {
                match self.load(&ctx).await {
                    Ok(version) => break version,
                    Err(e) => {
                        ctx.metrics.pool_stats_io("load", "error");
                        tracing::warn!(config_map = %self.config.config_map, namespace = %self.namespace, retry_in_s = wait.as_secs(), error = %e, "Cannot load the saved pool statistics; the statistics wait for it.");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            _ = active.changed() => {}
                        }
                        wait = (wait * 2).min(every.max(LOAD_RETRY));
                        if !*active.borrow() {
                            break None;
                        }
                    }
                }
            };
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while *active.borrow() {
                tokio::select! {
                    _ = tick.tick() => version = self.round(&ctx, version).await,
                    changed = active.changed() => if changed.is_err() { return },
                }
            }
            let mut state = self.lock();
            state.loaded = false;
            state.stats = Analytics::new(bounds());
            tracing::info!("Standing by: the pool statistics are left to the next leader.");
        }
    }

    fn api(&self, ctx: &Ctx) -> Api<ConfigMap> {
        // The lowest of the budget's priorities: statistics never hold an admit.
        Api::namespaced(ctx.clients.drain.clone(), &self.namespace)
    }

    /// Loads the saved statistics (none saved: empty) and counts the events held meanwhile.
    /// Returns the ConfigMap's resourceVersion.
    async fn load(&self, ctx: &Ctx) -> Result<Option<String>, kube::Error> {
        let found = self.api(ctx).get_opt(&self.config.config_map).await?;
        let version = found
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone());
        let saved = found
            .as_ref()
            .and_then(|c| c.binary_data.as_ref())
            .and_then(|d| d.get(STATE_KEY));
        let stats = match saved {
            None => {
                ctx.metrics.pool_stats_io("load", "empty");
                Analytics::new(bounds())
            }
            Some(bytes) => match Analytics::restore(bounds(), &bytes.0) {
                Ok(stats) => {
                    ctx.metrics.pool_stats_io("load", "ok");
                    tracing::info!(config_map = %self.config.config_map, bytes = bytes.0.len(), pools = stats.pools().count(), "Loaded the saved pool statistics.");
                    stats
                }
                Err(e) => {
                    ctx.metrics.pool_stats_io("load", e.kind());
                    tracing::warn!(config_map = %self.config.config_map, error = %e, "The saved pool statistics cannot be read; starting them over (the next save replaces them).");
                    Analytics::new(bounds())
                }
            },
        };
        let mut state = self.lock();
        state.stats = stats;
        for event in std::mem::take(&mut state.held) {
            state.stats.observe_event(&event);
        }
        if state.dropped > 0 {
            tracing::warn!(
                dropped = state.dropped,
                "Events published while the pool statistics loaded were too many to hold; some are not counted."
            );
            state.dropped = 0;
        }
        state.loaded = true;
        Ok(version)
    }

    /// One period: census, events, gauges, save. Returns the ConfigMap's resourceVersion.
    async fn round(&self, ctx: &Ctx, version: Option<String>) -> Option<String> {
        let now = Timestamp::now();
        let census = census(ctx);
        let (events, stats, saved) = {
            let mut state = self.lock();
            let gone: Vec<String> = state
                .stats
                .pools()
                .filter(|p| !census.contains_key(*p))
                .map(str::to_owned)
                .collect();
            for pool in gone {
                state.stats.census(now, &pool, &[]);
            }
            let mut events = Vec::new();
            for (pool, place) in &census {
                let rows: Vec<Census<'_>> = place
                    .rows
                    .iter()
                    .map(|((instance_type, zone, zone_id), nodes)| Census {
                        instance_type: Some(instance_type),
                        zone: Some(zone),
                        zone_id: zone_id.as_deref(),
                        nodes: *nodes,
                    })
                    .collect();
                state.stats.census(now, pool, &rows);
                if let (Some(provider), Some(details)) =
                    (place.provider, state.stats.pool_stats(pool, now))
                {
                    events.push(pool_stats_event(pool, provider, now, details));
                }
            }
            (events, state.stats.stats(now), state.stats.save())
        };
        ctx.metrics.pool_stats(&stats.pools);
        for event in events {
            let _ = ctx.emitted.send(super::Emitted::PoolStats(event));
        }
        match saved {
            Ok(bytes) => self.save(ctx, version, bytes).await,
            Err(e) => {
                ctx.metrics.pool_stats_io("save", e.kind());
                tracing::warn!(error = %e, "Cannot save the pool statistics; they are kept in memory.");
                version
            }
        }
    }

    /// Writes `bytes` to the ConfigMap: a patch on the version last seen, or a create.
    async fn save(&self, ctx: &Ctx, version: Option<String>, bytes: Vec<u8>) -> Option<String> {
        let api = self.api(ctx);
        let name = &self.config.config_map;
        let data = json!({ STATE_KEY: ByteString(bytes.clone()) });
        let result = match &version {
            Some(v) => {
                // The version last seen is a precondition: a second writer (an old leader
                // that has not noticed yet) is refused with a 409 instead of overwritten.
                let patch = json!({
                    "metadata": { "resourceVersion": v },
                    "binaryData": data,
                });
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            None => {
                let map = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "eviction-router".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    binary_data: Some(BTreeMap::from([(STATE_KEY.to_owned(), ByteString(bytes))])),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &map).await
            }
        };
        match result {
            Ok(saved) => {
                ctx.metrics.pool_stats_io("save", "ok");
                saved.metadata.resource_version
            }
            Err(e) => {
                let status = match &e {
                    kube::Error::Api(s) => s.code,
                    _ => 0,
                };
                ctx.metrics.pool_stats_io("save", "error");
                tracing::warn!(config_map = %name, status, error = %e, "Cannot save the pool statistics; the next period tries again.");
                // A conflict or a ConfigMap made meanwhile: read its version for the next try.
                match api.get_opt(name).await {
                    Ok(found) => found.and_then(|c| c.metadata.resource_version),
                    Err(_) => version,
                }
            }
        }
    }
}

/// One pool's Spot Nodes.
#[derive(Debug, Default)]
struct Place {
    provider: Option<Provider>,
    /// (instance type, zone, zone id) → Nodes.
    rows: BTreeMap<(String, String, Option<String>), u32>,
}

/// The Spot Nodes of the cache by pool and (type, zone). Nodes with no pool, type or zone are
/// left out.
fn census(ctx: &Ctx) -> BTreeMap<String, Place> {
    let mut pools: BTreeMap<String, Place> = BTreeMap::new();
    for name in ctx.cache.names() {
        let Some(view) = ctx.cache.get(&name) else {
            continue;
        };
        let p = &view.placement;
        let (Some(pool), Some(instance_type), Some(zone)) =
            (p.pool_name(), &p.instance_type, &p.zone)
        else {
            continue;
        };
        if !p.spot {
            continue;
        }
        let place = pools.entry(pool.to_owned()).or_default();
        place.provider = place.provider.or(p.provider);
        *place
            .rows
            .entry((instance_type.clone(), zone.clone(), p.zone_id.clone()))
            .or_insert(0) += 1;
    }
    pools
}

/// The `pool_stats` event of `pool` (docs/report.md has its shape).
fn pool_stats_event(
    pool: &str,
    provider: Provider,
    now: Timestamp,
    details: analytics::PoolStatsDetails,
) -> Event {
    let instance = Instance {
        id: pool.to_owned(),
        name: None,
        provider_id: None,
        resource_id: None,
    };
    let mut data = EventData::new(provider, Kind::PoolStats, "pool_stats", instance, now);
    data.not_before = details.since;
    data.not_after = Some(now);
    data.details = details.to_details();
    Event::new(format!("pool_stats/{pool}/{now}"), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{Observation, Phase, Signal};

    /// The bounds hold the saved state under [`analytics::MAX_STATE_BYTES`] even at their worst:
    /// every pool and (type, zone) key used, every sketch spread over seconds to a month, the
    /// instances remembered at their cap, a month of series.
    #[test]
    fn the_saved_state_fits_its_config_map_with_every_bound_reached() {
        let mut stats = Analytics::new(bounds());
        let t0 = Timestamp::from_second(1_795_392_000).unwrap();
        let pools: Vec<String> = (0..MAX_POOLS + 8).map(|i| format!("pool-{i}")).collect();
        let types: Vec<String> = (0..80).map(|i| format!("m{i}.large")).collect();
        let instances: Vec<String> = (0..20_000).map(|i| format!("i-{i:017x}")).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (i, instance) in instances.iter().enumerate() {
            let r = next();
            let at = t0 + jiff::SignedDuration::from_secs((i as i64) * 130);
            let pool = &pools[(r % pools.len() as u64) as usize];
            let instance_type = &types[((r >> 8) % types.len() as u64) as usize];
            // Lifetimes from a second to a month, log-uniform: every sketch bucket in use.
            let lifetime = 1.0 * (2_600_000f64).powf(((r >> 16) % 10_000) as f64 / 10_000.0);
            let mut rebalance = Observation::new(Signal::Rebalance, at, instance);
            rebalance.pool = Some(pool);
            rebalance.instance_type = Some(instance_type);
            rebalance.zone = Some("us-east-1a");
            rebalance.capacity_type = Some("spot");
            stats.observe(&rebalance);
            let mut notice = rebalance.clone();
            notice.signal = Signal::Interruption;
            notice.at = at + jiff::SignedDuration::from_secs(((r >> 40) % 3_000) as i64);
            notice.node_created_at =
                Some(notice.at - jiff::SignedDuration::from_secs_f64(lifetime));
            stats.observe(&notice);
            let mut ready = Observation::new(Signal::ReplacementReady, notice.at, instance);
            ready.pool = Some(pool);
            for (k, phase) in [
                Phase::Cordoned,
                Phase::Drained,
                Phase::ReplacementReady,
                Phase::PodsRunning,
            ]
            .into_iter()
            .enumerate()
            {
                ready
                    .phases
                    .set(phase, lifetime.min(3_600.0) / (4 - k) as f64);
            }
            stats.observe(&ready);
            if i % 500 == 0 {
                for pool in &pools {
                    stats.census(
                        at,
                        pool,
                        &[analytics::Census {
                            instance_type: Some(instance_type),
                            zone: Some("us-east-1a"),
                            zone_id: Some("use1-az4"),
                            nodes: 40,
                        }],
                    );
                }
            }
        }
        let saved = stats.save().unwrap();
        assert!(
            saved.len() < analytics::MAX_STATE_BYTES / 2,
            "{} bytes saved",
            saved.len()
        );
        let restored = Analytics::restore(bounds(), &saved).unwrap();
        let end = t0 + jiff::SignedDuration::from_hours(24 * 31);
        assert_eq!(restored.stats(end), stats.stats(end));
    }
}
