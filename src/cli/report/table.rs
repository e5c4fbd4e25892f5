//! The report as plain-text tables, for a terminal.

use std::fmt::Write;

use super::Report;
use crate::analytics::{GroupStats, OTHER, Quantiles, Stats, UNKNOWN};

/// A duration for people: `0.4s`, `95s`, `12min`, `5.2h`, `3.1d`.
pub(super) fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1}s")
    } else if seconds < 120.0 {
        format!("{seconds:.0}s")
    } else if seconds < 7_200.0 {
        format!("{:.0}min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1}h", seconds / 3_600.0)
    } else {
        format!("{:.1}d", seconds / 86_400.0)
    }
}

/// A share as a percentage: `42%`.
pub(super) fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.0}%", s * 100.0))
}

/// A number with up to `decimals` decimals, or `-`.
pub(super) fn number(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.decimals$}"))
}

/// `p50 / p90` (or with p99), or `-` when empty.
pub(super) fn quantiles(q: &Quantiles, p99: bool) -> String {
    let d = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), duration);
    match (q.count, p99) {
        (0, _) => "-".to_owned(),
        (_, false) => format!("{} / {}", d(q.p50), d(q.p90)),
        (_, true) => format!("{} / {} / {}", d(q.p50), d(q.p90), d(q.p99)),
    }
}

/// `followed/decided (share)`.
pub(super) fn followed(g: &GroupStats) -> String {
    let r = &g.rebalance;
    let decided = r.followed + r.not_followed;
    if decided == 0 {
        return "-".to_owned();
    }
    format!("{} ({}/{decided})", percent(r.share_followed), r.followed)
}

/// Left-aligned columns separated by two spaces; the first row is the header.
fn columns(out: &mut String, rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn common(g: &GroupStats) -> [String; 7] {
    [
        number(g.node_hours, 1),
        g.interruptions.to_string(),
        number(g.interruptions_per_1000_node_hours, 2),
        quantiles(&g.lifetime_seconds, false),
        g.rebalance.recommendations.to_string(),
        followed(g),
        percent(g.burst_factor),
    ]
}

const COMMON: [&str; 7] = [
    "NODE-H",
    "INTR",
    "/1K NODE-H",
    "LIFETIME P50 / P90",
    "REBAL",
    "FOLLOWED <=1H",
    "BURST",
];

fn summary(out: &mut String, stats: &Stats, report: &Report) {
    let w = &stats.window;
    let e = &stats.events;
    let when = match (&w.from, &w.to) {
        (Some(f), Some(t)) => format!("{f} .. {t} ({:.1} h)", w.hours),
        _ => "no events".to_owned(),
    };
    let _ = writeln!(out, "Spot pools, {when}");
    let _ = writeln!(
        out,
        "{} interruptions, {} rebalance recommendations, {} replacements ready, {} terminations, \
         {} maintenance, {} shelters, {} censuses; {} repeat notices, {} not Spot, {} of unknown \
         kinds, {} malformed lines",
        e.interruption,
        e.rebalance_recommendation,
        e.replacement_ready,
        e.termination,
        e.scheduled_maintenance,
        e.pool_at_risk,
        e.pool_stats,
        e.repeat_notices,
        e.not_spot,
        e.unknown_kind,
        report.lines.malformed,
    );
}

pub(super) fn render(report: &Report) -> String {
    let stats = &report.stats;
    let mut out = String::new();
    summary(&mut out, stats, report);
    out.push('\n');

    let mut rows = vec![
        std::iter::once("POOL")
            .chain(COMMON)
            .chain(["READY P50 / P90 / P99"])
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    ];
    for p in stats.pools.iter().chain([&stats.total]) {
        let mut row = vec![p.pool.clone()];
        row.extend(common(&p.stats));
        row.push(quantiles(&p.recovery_seconds.replacement_ready, true));
        rows.push(row);
    }
    columns(&mut out, &rows);
    out.push('\n');

    let mut header: Vec<String> = ["INSTANCE TYPE", "ZONE"]
        .into_iter()
        .chain(COMMON)
        .map(str::to_owned)
        .collect();
    if report.has_published {
        header.extend(["PUBLISHED/MO", "OBSERVED/MO", "VERDICT"].map(str::to_owned));
    }
    let mut rows = vec![header];
    for (c, published) in stats.capacity.iter().zip(&report.published) {
        let zone = match (&c.zone_id, &c.zone_name) {
            (Some(id), Some(name)) if id != name => format!("{id} ({name})"),
            _ => c.zone.clone(),
        };
        let mut row = vec![c.instance_type.clone(), zone];
        row.extend(common(&c.stats));
        if report.has_published {
            match published {
                Some(p) => row.extend([
                    p.published.rate.to_string(),
                    p.observed_percent_per_month
                        .map_or_else(|| "-".to_owned(), |o| format!("{o:.1}%")),
                    p.verdict.map_or("-", |v| v.as_str()).to_owned(),
                ]),
                None => row.extend(["-", "-", "-"].map(str::to_owned)),
            }
        }
        rows.push(row);
    }
    columns(&mut out, &rows);
    out.push('\n');

    let mut rows = vec![
        [
            "RECOVERY (notice ->)",
            "CORDONED",
            "DRAINED",
            "REPLACEMENT READY",
            "PODS RUNNING",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for p in stats.pools.iter().chain([&stats.total]) {
        let r = &p.recovery_seconds;
        let q = |q: &Quantiles| match q.count {
            0 => "-".to_owned(),
            n => format!("{} (n={n})", quantiles(q, true)),
        };
        rows.push(vec![
            p.pool.clone(),
            q(&r.cordoned),
            q(&r.drained),
            q(&r.replacement_ready),
            q(&r.pods_running),
        ]);
    }
    columns(&mut out, &rows);

    let notes = notes(stats);
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "note: {note}");
        }
    }
    out
}

/// What the stream could not tell, in sentences.
pub(super) fn notes(stats: &Stats) -> Vec<String> {
    let mut notes = Vec::new();
    let uncounted: Vec<&str> = stats
        .pools
        .iter()
        .filter(|p| p.stats.node_hours.is_none() && p.stats.interruptions > 0)
        .filter(|p| p.pool != UNKNOWN && p.pool != OTHER)
        .map(|p| p.pool.as_str())
        .collect();
    if !uncounted.is_empty() {
        notes.push(format!(
            "no census (pool_stats events) for {}: their node-hours and rates are unknown",
            uncounted.join(", ")
        ));
    }
    let t = &stats.total.stats;
    let without = t.interruptions - t.lifetime_seconds.count;
    if without > 0 {
        notes.push(format!(
            "{without} of {} interruptions name no Node creation (details.node_created_at): \
             they are not in the lifetimes",
            t.interruptions
        ));
    }
    if let Some(unknown) = stats.pools.iter().find(|p| p.pool == UNKNOWN) {
        notes.push(format!(
            "{} interruptions and {} recommendations name no pool (details.pool): a router \
             that had not resolved the Node, or one from before that field",
            unknown.stats.interruptions, unknown.stats.rebalance.recommendations
        ));
    }
    if t.rebalance.undecided > 0 {
        notes.push(format!(
            "{} rebalance recommendations are younger than the 1 h horizon at the end of the \
             stream: not counted as followed or not",
            t.rebalance.undecided
        ));
    }
    notes
}
