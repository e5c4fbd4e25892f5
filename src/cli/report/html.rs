//! The report as one self-contained HTML page: inline CSS, SVG charts drawn here, and a few
//! lines of inline script (sortable tables, a legend that highlights a pool). Nothing is
//! fetched, so the page works offline and from a `file://` URL; nothing depends on the clock,
//! so the same stream gives the same page. The script writes nothing to the console: a check
//! in headless Chromium treats any console line as a failure.

use std::borrow::Cow;
use std::fmt::Write;

use jiff::Timestamp;

use super::Report;
use super::table::{duration, followed, notes, number, percent, quantiles};
use crate::analytics::{
    ALL, Comparison, LIFETIME_EDGES_SECONDS, OTHER, Phase, PoolStats, Quantiles, Rate, Stats,
    UNKNOWN, Verdict,
};

/// The Okabe–Ito palette (tells colours apart with every common colour-vision deficiency);
/// pools beyond it are drawn in [`GREY`] as one "other pools" series.
pub(super) const COLOURS: [&str; 7] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
];
/// "Other pools": those beyond the palette, and the overflow of the statistics' cap.
const GREY: &str = "#b8bcc4";
/// Events that name no pool.
const UNKNOWN_GREY: &str = "#6b7280";
/// At most this many bars in the series chart; buckets are merged to fit.
const MAX_BARS: usize = 120;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The pools drawn in their own colour: the busiest first.
struct Palette {
    /// (pool, colour) in legend order.
    pools: Vec<(String, &'static str)>,
}

impl Palette {
    fn of(stats: &Stats) -> Palette {
        let mut pools: Vec<&PoolStats> = stats
            .pools
            .iter()
            .filter(|p| p.stats.interruptions > 0 || p.recovery_seconds.replacement_ready.count > 0)
            .filter(|p| p.pool != UNKNOWN && p.pool != OTHER)
            .collect();
        pools.sort_by_key(|p| std::cmp::Reverse(p.stats.interruptions));
        Palette {
            pools: pools
                .iter()
                .zip(COLOURS)
                .map(|(p, c)| (p.pool.clone(), c))
                .collect(),
        }
    }

    /// The colour and legend slot of a pool; `None` for the pools drawn as "other pools".
    fn slot(&self, pool: &str) -> Option<(usize, &'static str)> {
        self.pools
            .iter()
            .position(|(p, _)| p == pool)
            .map(|i| (i, self.pools[i].1))
    }

    fn colour(&self, pool: &str) -> &'static str {
        match self.slot(pool) {
            Some((_, c)) => c,
            None if pool == UNKNOWN => UNKNOWN_GREY,
            None => GREY,
        }
    }

    fn key(&self, pool: &str) -> String {
        match self.slot(pool) {
            Some((i, _)) => format!("p{i}"),
            None if pool == UNKNOWN => "unknown".to_owned(),
            None => "other".to_owned(),
        }
    }

    fn label(&self, key: &str) -> &str {
        match key {
            "unknown" => "no pool named",
            "other" => "other pools",
            _ => self
                .pools
                .iter()
                .find(|(p, _)| self.key(p) == key)
                .map_or("other pools", |(p, _)| p.as_str()),
        }
    }
}

fn when(t: Timestamp, span_seconds: i64) -> String {
    let format = if span_seconds > 4 * 86_400 {
        "%b %d"
    } else {
        "%b %d %H:%M"
    };
    t.strftime(format).to_string()
}

/// Up to about five round steps covering `max`.
fn ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
        .max(1.0);
    let mut out = Vec::new();
    let mut v = 0.0;
    while v < max + step * 0.999 {
        out.push(v);
        v += step;
    }
    out
}

pub(super) fn render(report: &Report) -> String {
    let stats = &report.stats;
    let palette = Palette::of(stats);
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, stats);
    kpis(&mut h, stats, report);
    h.push_str("<section class=\"card\"><h2>Interruptions over time</h2>");
    legend(&mut h, &palette, stats);
    series_chart(&mut h, stats, &palette);
    h.push_str("</section>\n<section class=\"card\"><h2>Lifetime before the notice</h2>");
    h.push_str(
        "<p class=\"sub\">Node creation → interruption notice, per pool (dashed: p50 and p90).</p>",
    );
    lifetime_charts(&mut h, stats, &palette);
    h.push_str("</section>\n<section class=\"card\"><h2>Recovery latency by phase</h2>");
    h.push_str("<p class=\"sub\">From the notice: bar to p50, lighter to p90, whisker to p99 (log scale).</p>");
    recovery_chart(&mut h, stats, &palette);
    h.push_str("</section>\n");
    if report.has_published {
        h.push_str("<section class=\"card\"><h2>Observed vs published</h2>");
        h.push_str("<p class=\"sub\">Share of instances interrupted per month: the published band (grey) and the observed rate, 1 − e<sup>−730λ</sup> with λ interruptions per node-hour.</p>");
        published_chart(&mut h, stats, report);
        h.push_str("</section>\n");
    }
    pools_table(&mut h, stats, &palette);
    capacity_table(&mut h, report);
    notes_section(&mut h, stats);
    h.push_str(SCRIPT);
    h.push_str("</main></body></html>\n");
    h
}

fn head(h: &mut String, stats: &Stats) {
    let w = &stats.window;
    let span = match (&w.from, &w.to) {
        (Some(f), Some(t)) => format!("{f} → {t} ({:.1} h)", w.hours),
        _ => "no events".to_owned(),
    };
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Spot pool report</title><style>{CSS}</style></head>\
         <body><main><header><h1>Spot pool report</h1><p class=\"sub\">{} · eviction-router {}</p></header>\n",
        esc(&span),
        env!("CARGO_PKG_VERSION")
    );
}

fn kpis(h: &mut String, stats: &Stats, report: &Report) {
    let t = &stats.total.stats;
    let ready = &stats.total.recovery_seconds.replacement_ready;
    let items = [
        ("Spot node-hours", number(t.node_hours, 0)),
        ("Interruptions", t.interruptions.to_string()),
        (
            "per 1,000 node-hours",
            number(t.interruptions_per_1000_node_hours, 2),
        ),
        ("In bursts (3 min)", percent(t.burst_factor)),
        (
            "Rebalance → interruption ≤ 1 h",
            percent(t.rebalance.share_followed),
        ),
        (
            "Replacement Ready p50",
            ready.p50.map_or_else(|| "-".to_owned(), duration),
        ),
    ];
    h.push_str("<section class=\"kpis\">");
    for (label, value) in items {
        let _ = write!(
            h,
            "<div class=\"kpi\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
            esc(&value),
            esc(label)
        );
    }
    let _ = writeln!(
        h,
        "</section><p class=\"sub\">{} pools, {} instance types × zones, {} lines read{}.</p>",
        stats.pools.len(),
        stats.capacity.len(),
        report.lines.read,
        if report.lines.malformed > 0 {
            format!(", {} malformed", report.lines.malformed)
        } else {
            String::new()
        }
    );
}

fn legend(h: &mut String, palette: &Palette, stats: &Stats) {
    h.push_str("<div class=\"legend\">");
    for (pool, colour) in &palette.pools {
        let _ = write!(
            h,
            "<span class=\"item\" data-pool-key=\"{}\"><i style=\"background:{colour}\"></i>{}</span>",
            palette.key(pool),
            esc(pool)
        );
    }
    for (key, colour) in [("other", GREY), ("unknown", UNKNOWN_GREY)] {
        let drawn = stats
            .pools
            .iter()
            .any(|p| palette.key(&p.pool) == key && p.stats.interruptions > 0);
        if drawn {
            let _ = write!(
                h,
                "<span class=\"item\" data-pool-key=\"{key}\"><i style=\"background:{colour}\"></i>{}</span>",
                palette.label(key)
            );
        }
    }
    h.push_str("</div>");
}

fn series_chart(h: &mut String, stats: &Stats, palette: &Palette) {
    let charts = &stats.charts;
    let (Some(start), Some(first)) = (charts.start, charts.interruptions.first()) else {
        h.push_str("<p class=\"empty\">No interruptions in the stream.</p>");
        return;
    };
    let buckets = first.counts.len();
    let factor = buckets.div_ceil(MAX_BARS).max(1);
    let bars = buckets.div_ceil(factor);
    let width_s = charts.bucket_seconds * factor as i64;
    // Per series (a colour or "other"): merged counts.
    let mut series: Vec<(String, &'static str, Vec<u64>)> = Vec::new();
    for s in &charts.interruptions {
        let key = palette.key(&s.pool);
        let colour = palette.colour(&s.pool);
        let merged: Vec<u64> = s.counts.chunks(factor).map(|c| c.iter().sum()).collect();
        match series.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, counts)) => {
                for (a, b) in counts.iter_mut().zip(merged) {
                    *a += b;
                }
            }
            None => series.push((key, colour, merged)),
        }
    }
    series.sort_by_key(|(k, _, _)| (k == "other" || k == "unknown", k.clone()));
    let totals: Vec<u64> = (0..bars)
        .map(|i| {
            series
                .iter()
                .map(|(_, _, c)| c.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0) as f64;
    let ticks = ticks(max);
    let top = ticks.last().copied().unwrap_or(1.0).max(1.0);
    let (w, ht, left, right, up, down) = (1040.0, 300.0, 44.0, 12.0, 12.0, 40.0);
    let plot_w = w - left - right;
    let plot_h = ht - up - down;
    let bw = plot_w / bars as f64;
    let y = |v: f64| up + plot_h - v / top * plot_h;
    let _ = write!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"Interruptions per {} per pool\">",
        duration(width_s as f64)
    );
    for t in &ticks {
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t}</text>",
            w - right,
            y(*t),
            y(*t),
            left - 6.0,
            y(*t) + 4.0
        );
    }
    let span = width_s * bars as i64;
    for i in 0..bars {
        let x = left + i as f64 * bw;
        let from = start + jiff::SignedDuration::from_secs(width_s * i as i64);
        let to = from + jiff::SignedDuration::from_secs(width_s);
        let mut base = 0.0;
        for (key, colour, counts) in &series {
            let n = counts.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let (y0, y1) = (y(base), y(base + n as f64));
            base += n as f64;
            let name = palette.label(key);
            let _ = write!(
                h,
                "<rect data-pool=\"{key}\" x=\"{x:.2}\" y=\"{y1:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{colour}\">\
                 <title>{}: {n}, {} – {} UTC</title></rect>",
                (bw * 0.86).max(1.0),
                (y0 - y1).max(0.5),
                esc(name),
                from.strftime("%b %d %H:%M"),
                to.strftime("%H:%M")
            );
        }
    }
    let every = bars.div_ceil(8).max(1);
    for i in (0..bars).step_by(every) {
        let x = left + i as f64 * bw;
        let at = start + jiff::SignedDuration::from_secs(width_s * i as i64);
        let _ = write!(
            h,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            up + plot_h,
            up + plot_h + 5.0,
            up + plot_h + 18.0,
            when(at, span)
        );
    }
    let _ = write!(
        h,
        "<line class=\"axis\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
         <text class=\"tick\" x=\"{left}\" y=\"{:.1}\">interruptions per {} (UTC)</text></svg>",
        w - right,
        up + plot_h,
        up + plot_h,
        ht - 4.0,
        duration(width_s as f64)
    );
}

/// The x position (in bins) of `v` on the lifetime histogram.
fn bin_position(v: f64) -> f64 {
    let e = &LIFETIME_EDGES_SECONDS;
    match e.iter().rposition(|edge| v >= *edge) {
        Some(k) if k + 1 < e.len() => k as f64 + (v - e[k]) / (e[k + 1] - e[k]),
        Some(k) => k as f64 + 0.5,
        None => 0.0,
    }
}

fn lifetime_label(edge: f64) -> String {
    if edge == 0.0 {
        "0".to_owned()
    } else if edge < 3_600.0 {
        format!("{:.0}m", edge / 60.0)
    } else if edge < 86_400.0 {
        format!("{:.0}h", edge / 3_600.0)
    } else {
        format!("{:.0}d", edge / 86_400.0)
    }
}

fn lifetime_charts(h: &mut String, stats: &Stats, palette: &Palette) {
    let charts = &stats.charts.lifetimes;
    if charts.is_empty() {
        h.push_str(
            "<p class=\"empty\">No interruption names its Node's creation \
             (<code>details.node_created_at</code>), so lifetimes are unknown.</p>",
        );
        return;
    }
    h.push_str("<div class=\"grid2\">");
    for s in charts.iter().take(8) {
        let Some(pool) = stats.pools.iter().find(|p| p.pool == s.pool) else {
            continue;
        };
        let q = &pool.stats.lifetime_seconds;
        let colour = palette.colour(&s.pool);
        let key = palette.key(&s.pool);
        let (w, ht, left, right, up, down) = (500.0, 200.0, 30.0, 10.0, 40.0, 26.0);
        let bins = s.counts.len();
        let bw = (w - left - right) / bins as f64;
        let plot_h = ht - up - down;
        let max = s.counts.iter().copied().max().unwrap_or(0) as f64;
        let top = ticks(max).last().copied().unwrap_or(1.0).max(1.0);
        let _ = write!(
            h,
            "<svg class=\"chart small\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"Lifetimes in {}\">\
             <text class=\"title\" x=\"{left}\" y=\"16\">{} <tspan class=\"tick\">n = {} · p50 {} · p90 {}</tspan></text>",
            esc(&s.pool),
            esc(&s.pool),
            q.count,
            q.p50.map_or_else(|| "-".to_owned(), duration),
            q.p90.map_or_else(|| "-".to_owned(), duration)
        );
        for (k, n) in s.counts.iter().enumerate() {
            let bh = *n as f64 / top * plot_h;
            let x = left + k as f64 * bw;
            if *n > 0 {
                let _ = write!(
                    h,
                    "<rect data-pool=\"{key}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{colour}\"><title>{n}</title></rect>\
                     <text class=\"count\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>",
                    x + 1.0,
                    up + plot_h - bh,
                    bw - 2.0,
                    x + bw / 2.0,
                    up + plot_h - bh - 3.0
                );
            }
            let _ = write!(
                h,
                "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                ht - 8.0,
                lifetime_label(LIFETIME_EDGES_SECONDS[k])
            );
        }
        let _ = write!(
            h,
            "<line class=\"axis\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            w - right,
            up + plot_h,
            up + plot_h
        );
        // p50's label to the left of its line, p90's to the right: they never overlap.
        for (label, v, dx, anchor) in [("p50", q.p50, -3.0, "end"), ("p90", q.p90, 3.0, "start")] {
            if let Some(v) = v {
                let x = left + bin_position(v) * bw;
                let _ = write!(
                    h,
                    "<line class=\"marker\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                     <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{label}</text>",
                    up - 10.0,
                    up + plot_h,
                    x + dx,
                    up - 12.0
                );
            }
        }
        h.push_str("</svg>");
    }
    h.push_str("</div>");
}

/// The ticks of the log-scale axis: round durations.
const LOG_TICKS: [(f64, &str); 9] = [
    (0.01, "10ms"),
    (0.1, "0.1s"),
    (1.0, "1s"),
    (10.0, "10s"),
    (60.0, "1min"),
    (600.0, "10min"),
    (3_600.0, "1h"),
    (36_000.0, "10h"),
    (86_400.0, "1d"),
];

/// Log-scale x for seconds.
struct LogScale {
    lo: f64,
    hi: f64,
    x0: f64,
    x1: f64,
}

impl LogScale {
    fn x(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        self.x0 + (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln()) * (self.x1 - self.x0)
    }
}

fn recovery_chart(h: &mut String, stats: &Stats, palette: &Palette) {
    let mut rows: Vec<(&PoolStats, Phase, &Quantiles)> = Vec::new();
    let pools: Vec<&PoolStats> = stats
        .pools
        .iter()
        .filter(|p| palette.slot(&p.pool).is_some())
        .chain([&stats.total])
        .collect();
    for p in &pools {
        for phase in Phase::ALL {
            let q = p.recovery_seconds.get(phase);
            if q.count > 0 {
                rows.push((p, phase, q));
            }
        }
    }
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No recovery phases in the stream (<code>replacement_ready</code> events).</p>");
        return;
    }
    let smallest = rows.iter().filter_map(|r| r.2.p50).fold(f64::MAX, f64::min);
    let largest = rows.iter().filter_map(|r| r.2.p99).fold(1.0, f64::max);
    let lo = 10f64.powf(smallest.max(0.01).log10().floor()).min(1.0);
    let hi = LOG_TICKS
        .iter()
        .map(|(v, _)| *v)
        .find(|v| *v >= largest * 1.05)
        .unwrap_or(largest * 1.05);
    let row_h = 20.0;
    let gap = 12.0;
    let groups = rows
        .iter()
        .map(|r| r.0.pool.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (w, left, right, up) = (1040.0, 250.0, 250.0, 8.0);
    let ht = up + rows.len() as f64 * row_h + groups as f64 * gap + 30.0;
    let scale = LogScale {
        lo,
        hi,
        x0: left,
        x1: w - right,
    };
    let _ = write!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {ht:.0}\" role=\"img\" aria-label=\"Recovery latency by phase\">"
    );
    let bottom = ht - 24.0;
    for (v, label) in LOG_TICKS
        .iter()
        .filter(|(v, _)| *v >= lo * 0.999 && *v <= hi * 1.001)
    {
        let x = scale.x(*v);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{up}\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            bottom + 14.0
        );
    }
    let mut y = up;
    let mut last_pool = "";
    for (p, phase, q) in &rows {
        if p.pool != last_pool {
            if !last_pool.is_empty() {
                y += gap;
            }
            last_pool = &p.pool;
            let label = if p.pool == ALL {
                "all pools"
            } else {
                p.pool.as_str()
            };
            let _ = write!(
                h,
                "<text class=\"group\" x=\"4\" y=\"{:.1}\">{}</text>",
                y + 14.0,
                esc(label)
            );
        }
        let colour = if p.pool == ALL {
            "#4a5160"
        } else {
            palette.colour(&p.pool)
        };
        let key = if p.pool == ALL {
            "all".to_owned()
        } else {
            palette.key(&p.pool)
        };
        let (p50, p90, p99) = (
            q.p50.unwrap_or(lo),
            q.p90.unwrap_or(lo),
            q.p99.unwrap_or(lo),
        );
        let mid = y + row_h / 2.0;
        let x0 = scale.x(lo);
        let _ = write!(
            h,
            "<g data-pool=\"{key}\"><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line class=\"whisker\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{mid:.1}\" y2=\"{mid:.1}\" stroke=\"{colour}\"/>\
             <line class=\"whisker\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\"/>\
             <rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{colour}\"/>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{colour}\" opacity=\"0.4\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">p50 {} · p90 {} · p99 {} (n = {})</text>\
             <title>{}: {}</title></g>",
            left - 8.0,
            mid + 4.0,
            phase.as_str().replace('_', " "),
            scale.x(p90),
            scale.x(p99),
            scale.x(p99),
            scale.x(p99),
            mid - 5.0,
            mid + 5.0,
            mid - 6.0,
            (scale.x(p50) - x0).max(1.0),
            scale.x(p50),
            mid - 6.0,
            (scale.x(p90) - scale.x(p50)).max(0.0),
            w - right + 8.0,
            mid + 4.0,
            duration(p50),
            duration(p90),
            duration(p99),
            q.count,
            esc(&p.pool),
            phase.as_str()
        );
        y += row_h;
    }
    h.push_str("</svg>");
}

fn published_chart(h: &mut String, stats: &Stats, report: &Report) {
    let rows: Vec<(String, &Comparison)> = stats
        .capacity
        .iter()
        .zip(&report.published)
        .filter_map(|(c, p)| Some((format!("{} · {}", c.instance_type, c.zone), p.as_ref()?)))
        .collect();
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No instance type and zone of the stream matches a published rate.</p>");
        return;
    }
    let band = |r: &Rate| match *r {
        Rate::Value(v) => (v, Some(v)),
        Rate::Band { low, high } => (low, high),
    };
    let max = rows
        .iter()
        .map(|(_, c)| {
            let (lo, hi) = band(&c.published.rate);
            hi.unwrap_or(lo * 1.5)
                .max(c.observed_percent_per_month.unwrap_or(0.0))
        })
        .fold(5.0, f64::max);
    let top = ticks(max).last().copied().unwrap_or(max);
    let (w, left, right, row_h) = (1040.0, 230.0, 120.0, 24.0);
    let ht = rows.len() as f64 * row_h + 34.0;
    let x = |v: f64| left + v.clamp(0.0, top) / top * (w - left - right);
    let _ = write!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {ht:.0}\" role=\"img\" aria-label=\"Observed against published interruption rates\">"
    );
    let bottom = ht - 24.0;
    for t in ticks(max) {
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"4\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t}%</text>",
            x(t),
            x(t),
            x(t),
            bottom + 14.0
        );
    }
    for (i, (label, c)) in rows.iter().enumerate() {
        let y = 6.0 + i as f64 * row_h;
        let (lo, hi) = band(&c.published.rate);
        let (b0, b1) = (x(lo), hi.map_or(x(top), x));
        let colour = match c.verdict {
            Some(Verdict::Above) => "#d55e00",
            Some(Verdict::Below) => "#009e73",
            _ => "#0072b2",
        };
        let _ = write!(
            h,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{b0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"16\" fill=\"#d9dce1\"><title>published {}</title></rect>",
            left - 8.0,
            y + 12.0,
            esc(label),
            (b1 - b0).max(2.0),
            esc(&c.published.rate.to_string())
        );
        match c.observed_percent_per_month {
            Some(o) => {
                let _ = write!(
                    h,
                    "<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"6\" fill=\"{colour}\"/>\
                     <circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{colour}\"/>\
                     <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{o:.1}% · {}</text>",
                    y + 5.0,
                    (x(o) - left).max(0.0),
                    x(o),
                    y + 8.0,
                    w - right + 8.0,
                    y + 12.0,
                    c.verdict.map_or("", Verdict::as_str)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">no census</text>",
                    w - right + 8.0,
                    y + 12.0
                );
            }
        }
    }
    h.push_str("</svg>");
}

/// A cell: numbers sort by `sort`; text (no `sort`) is left-aligned and sorts as text.
fn cell(h: &mut String, text: &str, sort: Option<f64>) {
    match sort {
        Some(v) => {
            let _ = write!(h, "<td data-v=\"{v}\">{}</td>", esc(text));
        }
        None => {
            let _ = write!(h, "<td class=\"t\">{}</td>", esc(text));
        }
    }
}

fn common_cells(h: &mut String, g: &crate::analytics::GroupStats) {
    let d = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), duration);
    cell(h, &number(g.node_hours, 1), g.node_hours.or(Some(-1.0)));
    cell(
        h,
        &g.interruptions.to_string(),
        Some(g.interruptions as f64),
    );
    cell(
        h,
        &number(g.interruptions_per_1000_node_hours, 2),
        g.interruptions_per_1000_node_hours.or(Some(-1.0)),
    );
    let l = &g.lifetime_seconds;
    let lifetime = match l.count {
        0 => "-".to_owned(),
        _ => format!("{} / {}", d(l.p50), d(l.p90)),
    };
    cell(h, &lifetime, l.p50.or(Some(-1.0)));
    cell(
        h,
        &g.rebalance.recommendations.to_string(),
        Some(g.rebalance.recommendations as f64),
    );
    cell(h, &followed(g), g.rebalance.share_followed.or(Some(-1.0)));
    cell(h, &percent(g.burst_factor), g.burst_factor.or(Some(-1.0)));
}

const COMMON_HEADS: &str = "<th title=\"Spot node-hours from the census\">node-h</th>\
    <th title=\"interruptions (repeat notices not counted)\">intr.</th>\
    <th title=\"interruptions per 1,000 Spot node-hours\">/1k node-h</th>\
    <th title=\"Node creation to notice\">lifetime p50 / p90</th>\
    <th title=\"rebalance recommendations\">rebal.</th>\
    <th title=\"recommendations followed by an interruption within 1 h, of those decided\">followed ≤ 1 h</th>\
    <th title=\"interruptions within 3 min of another in the pool\">bursts</th>";

fn pools_table(h: &mut String, stats: &Stats, palette: &Palette) {
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Pools</h2><div class=\"scroll\"><table class=\"sortable\"><thead><tr>\
         <th class=\"t\">pool</th>{COMMON_HEADS}<th title=\"notice to replacement Node Ready\">ready p50 / p90 / p99</th></tr></thead><tbody>"
    );
    let row = |h: &mut String, p: &PoolStats, tag: &str| {
        let colour = palette.colour(&p.pool);
        let name = if p.pool == ALL {
            "all pools"
        } else {
            p.pool.as_str()
        };
        let swatch = if p.pool == ALL {
            String::new()
        } else {
            format!("<i class=\"sw\" style=\"background:{colour}\"></i>")
        };
        let _ = write!(h, "<tr><{tag} class=\"t\">{swatch}{}</{tag}>", esc(name));
        common_cells(h, &p.stats);
        let r = &p.recovery_seconds.replacement_ready;
        cell(h, &quantiles(r, true), r.p50.or(Some(-1.0)));
        h.push_str("</tr>");
    };
    for p in &stats.pools {
        row(h, p, "td");
    }
    h.push_str("</tbody><tfoot>");
    row(h, &stats.total, "th");
    h.push_str("</tfoot></table></div></section>\n");
}

fn capacity_table(h: &mut String, report: &Report) {
    let stats = &report.stats;
    let _ = write!(
        h,
        "<section class=\"card\"><h2>Instance types and zones</h2><div class=\"scroll\"><table class=\"sortable\"><thead><tr>\
         <th class=\"t\">instance type</th><th class=\"t\">zone</th>{COMMON_HEADS}<th title=\"pool_at_risk events: sibling shelters\">shelters</th>{}</tr></thead><tbody>",
        if report.has_published {
            "<th class=\"t\" title=\"published share interrupted per month\">published</th><th title=\"observed share interrupted per month\">observed</th><th class=\"t\">verdict</th>"
        } else {
            ""
        }
    );
    for (c, published) in stats.capacity.iter().zip(&report.published) {
        let zone = match (&c.zone_id, &c.zone_name) {
            (Some(id), Some(name)) if id != name => format!("{id} · {name}"),
            _ => c.zone.clone(),
        };
        h.push_str("<tr>");
        cell(h, &c.instance_type, None);
        cell(h, &zone, None);
        common_cells(h, &c.stats);
        cell(
            h,
            &c.pools_at_risk.to_string(),
            Some(c.pools_at_risk as f64),
        );
        if report.has_published {
            match published {
                Some(p) => {
                    cell(h, &p.published.rate.to_string(), None);
                    let o = p.observed_percent_per_month;
                    cell(
                        h,
                        &o.map_or_else(|| "-".to_owned(), |o| format!("{o:.1}%")),
                        o.or(Some(-1.0)),
                    );
                    let v = p.verdict.map_or("-", Verdict::as_str);
                    let _ = write!(
                        h,
                        "<td class=\"t\"><span class=\"badge {v}\">{v}</span></td>"
                    );
                }
                None => h.push_str("<td>-</td><td>-</td><td>-</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div></section>\n");
}

fn notes_section(h: &mut String, stats: &Stats) {
    h.push_str("<section class=\"card notes\"><h2>Reading this report</h2><ul>");
    for note in notes(stats) {
        let _ = write!(h, "<li>{}</li>", esc(&note));
    }
    h.push_str(DEFINITIONS);
    h.push_str("</ul></section>\n");
}

const DEFINITIONS: &str = "<li><b>Node-hours</b> integrate each pool's census (the Spot Nodes \
    per instance type and zone in its <code>pool_stats</code> events); a census holds until the \
    next, for at most 1 h.</li>\
    <li><b>Interruptions</b> count each instance once: a second notice within 1 h (Azure's \
    Preempt, then its VirtualMachinePreempted annotation) is a repeat.</li>\
    <li><b>Followed ≤ 1 h</b>: rebalance recommendations followed by an interruption of the same \
    instance within an hour, of those decided.</li>\
    <li><b>In bursts</b>: interruptions within 3 minutes of another in the same pool (or type and \
    zone).</li>\
    <li>Quantiles come from sketches with 1 % relative error; zones are AWS AZ IDs where the \
    events name them.</li>";

const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#f4f5f7;color:#1d2330;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
main{max-width:1100px;margin:0 auto;padding:20px 24px 40px}\
h1{font-size:26px;margin:8px 0 2px}h2{font-size:17px;margin:0 0 8px}\
.sub{color:#5b6474;margin:2px 0 10px}\
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(20,30,50,.1);padding:16px 20px;margin:16px 0}\
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:16px 0 4px}\
.kpi{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(20,30,50,.1);padding:12px 14px}\
.kpi .v{font-size:24px;font-weight:650}.kpi .l{color:#5b6474;font-size:12.5px}\
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:4px 0 8px}\
.legend .item{cursor:default;display:inline-flex;align-items:center;gap:6px}\
.legend i,.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px}\
svg.chart{width:100%;height:auto;display:block}\
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:10px 24px}\
.grid{stroke:#e6e8ec}.axis{stroke:#8a93a3}.marker{stroke:#1d2330;stroke-dasharray:3 3}\
.whisker{stroke-width:1.5}\
.tick{font-size:11px;fill:#5b6474}.count{font-size:10px;fill:#3a4252}.title{font-size:13px;font-weight:600;fill:#1d2330}\
.group{font-size:12.5px;font-weight:600;fill:#1d2330}\
.dim{opacity:.15}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:12.5px}\
th,td{padding:4px 6px;text-align:right;white-space:nowrap;border-bottom:1px solid #eceef1}\
th.t,td.t{text-align:left}\
thead th{cursor:pointer;color:#3a4252;font-weight:600;user-select:none;white-space:normal;vertical-align:bottom}\
thead th[aria-sort=ascending]::after{content:' ▲'}thead th[aria-sort=descending]::after{content:' ▼'}\
tfoot th{font-weight:600}\
.badge{padding:1px 8px;border-radius:10px;font-size:12px}\
.badge.above{background:#fbe3d6;color:#8a3300}.badge.within{background:#e3edf7;color:#0b4f80}\
.badge.below{background:#daf1e8;color:#035f45}\
.empty{color:#5b6474;font-style:italic}\
.notes li{margin:4px 0}code{font-size:12.5px}\
";

const SCRIPT: &str = "<script>\n(function () {\n\
  \"use strict\";\n\
  var each = function (list, f) { Array.prototype.forEach.call(list, f); };\n\
  each(document.querySelectorAll(\"table.sortable\"), function (table) {\n\
    var heads = table.tHead.rows[0].cells;\n\
    each(heads, function (th, col) {\n\
      th.addEventListener(\"click\", function () {\n\
        var body = table.tBodies[0];\n\
        var rows = Array.prototype.slice.call(body.rows);\n\
        var asc = th.getAttribute(\"aria-sort\") !== \"ascending\";\n\
        var value = function (row) {\n\
          var c = row.cells[col];\n\
          var v = c.getAttribute(\"data-v\");\n\
          return v === null ? c.textContent : parseFloat(v);\n\
        };\n\
        rows.sort(function (a, b) {\n\
          var x = value(a), y = value(b);\n\
          var d = typeof x === \"number\" && typeof y === \"number\" ? x - y : String(x).localeCompare(String(y));\n\
          return asc ? d : -d;\n\
        });\n\
        each(heads, function (h) { h.removeAttribute(\"aria-sort\"); });\n\
        th.setAttribute(\"aria-sort\", asc ? \"ascending\" : \"descending\");\n\
        rows.forEach(function (r) { body.appendChild(r); });\n\
      });\n\
    });\n\
  });\n\
  each(document.querySelectorAll(\"[data-pool-key]\"), function (item) {\n\
    var key = item.getAttribute(\"data-pool-key\");\n\
    item.addEventListener(\"mouseenter\", function () {\n\
      each(document.querySelectorAll(\"[data-pool]\"), function (el) {\n\
        if (el.getAttribute(\"data-pool\") !== key) { el.classList.add(\"dim\"); }\n\
      });\n\
    });\n\
    item.addEventListener(\"mouseleave\", function () {\n\
      each(document.querySelectorAll(\".dim\"), function (el) { el.classList.remove(\"dim\"); });\n\
    });\n\
  });\n\
  document.documentElement.setAttribute(\"data-ready\", \"1\");\n\
})();\n</script>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("spot-a"), "spot-a");
        assert_eq!(esc("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(ticks(3.0), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(37.0), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn lifetimes_are_placed_within_their_bin() {
        assert_eq!(bin_position(0.0), 0.0);
        assert_eq!(bin_position(450.0), 0.5);
        assert_eq!(bin_position(3_600.0), 3.0);
        assert_eq!(bin_position(2_000_000.0), 12.5);
    }
}
