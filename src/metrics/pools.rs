//! The pool statistics as gauges ([`crate::cluster::stats`]): one series per pool and figure,
//! set each period from the statistics. Bounded: the statistics keep at most
//! [`super::MAX_POOLS`] pools apart (the rest are `(other)`), so at most 33 pools × 26 series
//! (6 figures, 2 lifetime quantiles, 4 phases × 3 quantiles, plus node counts) exist. Pools that
//! have gone are removed at the next period. Per (instance type, zone) figures are not labels
//! here: they are in the `pool_stats` events and the `report`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::analytics::{PoolStats, Quantiles};

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolQuantile {
    pool: String,
    quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolPhaseQuantile {
    pool: String,
    phase: &'static str,
    quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcome {
    op: &'static str,
    outcome: &'static str,
}

/// Registered by [`Metrics::new`].
#[derive(Debug, Default)]
pub(super) struct Pools {
    node_hours: Family<PoolLabel, FloatGauge>,
    interruptions: Family<PoolLabel, FloatGauge>,
    rate: Family<PoolLabel, FloatGauge>,
    burst_factor: Family<PoolLabel, FloatGauge>,
    rebalance_followed: Family<PoolLabel, FloatGauge>,
    lifetime: Family<PoolQuantile, FloatGauge>,
    recovery: Family<PoolPhaseQuantile, FloatGauge>,
    io: Family<OpOutcome, Counter>,
}

impl Pools {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "pool_spot_node_hours",
            "Spot node-hours observed in the pool since its statistics began (the census integrated over time)",
            self.node_hours.clone(),
        );
        r.register(
            "pool_interruptions",
            "Interruptions of the pool's Spot Nodes since its statistics began (repeat notices not counted)",
            self.interruptions.clone(),
        );
        r.register(
            "pool_interruptions_per_1000_node_hours",
            "Interruptions per 1,000 Spot node-hours",
            self.rate.clone(),
        );
        r.register(
            "pool_burst_factor",
            "Share of the pool's interruptions within 3 minutes of another",
            self.burst_factor.clone(),
        );
        r.register(
            "pool_rebalance_followed_ratio",
            "Share of rebalance recommendations followed by an interruption of the instance within 1 h",
            self.rebalance_followed.clone(),
        );
        r.register(
            "pool_lifetime_seconds",
            "Spot Node lifetime, creation to notice, by quantile (0.5, 0.9)",
            self.lifetime.clone(),
        );
        r.register(
            "pool_recovery_seconds",
            "Notice to each recovery phase (cordoned, drained, replacement_ready, pods_running), by quantile (0.5, 0.9, 0.99)",
            self.recovery.clone(),
        );
        r.register(
            "pool_stats_io",
            "Loads and saves of the pool statistics' ConfigMap, by op (load, save) and outcome",
            self.io.clone(),
        );
    }
}

fn set(family: &Family<PoolLabel, FloatGauge>, pool: &str, value: Option<f64>) {
    if let Some(v) = value {
        family
            .get_or_create(&PoolLabel {
                pool: pool.to_owned(),
            })
            .set(v);
    }
}

impl Metrics {
    /// Sets the pool gauges from the statistics of every pool (those not listed are removed).
    pub fn pool_stats(&self, pools: &[PoolStats]) {
        let p = &self.pools;
        for family in [
            &p.node_hours,
            &p.interruptions,
            &p.rate,
            &p.burst_factor,
            &p.rebalance_followed,
        ] {
            family.clear();
        }
        p.lifetime.clear();
        p.recovery.clear();
        for pool in pools {
            let name = pool.pool.as_str();
            let s = &pool.stats;
            set(&p.node_hours, name, s.node_hours);
            set(&p.interruptions, name, Some(s.interruptions as f64));
            set(&p.rate, name, s.interruptions_per_1000_node_hours);
            set(&p.burst_factor, name, s.burst_factor);
            set(&p.rebalance_followed, name, s.rebalance.share_followed);
            let quantiles = |q: &Quantiles| [("0.5", q.p50), ("0.9", q.p90), ("0.99", q.p99)];
            for (quantile, v) in quantiles(&s.lifetime_seconds).into_iter().take(2) {
                if let Some(v) = v {
                    p.lifetime
                        .get_or_create(&PoolQuantile {
                            pool: name.to_owned(),
                            quantile,
                        })
                        .set(v);
                }
            }
            let r = &pool.recovery_seconds;
            for (phase, q) in [
                ("cordoned", &r.cordoned),
                ("drained", &r.drained),
                ("replacement_ready", &r.replacement_ready),
                ("pods_running", &r.pods_running),
            ] {
                for (quantile, v) in quantiles(q) {
                    if let Some(v) = v {
                        p.recovery
                            .get_or_create(&PoolPhaseQuantile {
                                pool: name.to_owned(),
                                phase,
                                quantile,
                            })
                            .set(v);
                    }
                }
            }
        }
    }

    /// A load or save of the statistics' ConfigMap ended with `outcome`.
    pub fn pool_stats_io(&self, op: &'static str, outcome: &'static str) {
        self.pools
            .io
            .get_or_create(&OpOutcome { op, outcome })
            .inc();
    }
}
