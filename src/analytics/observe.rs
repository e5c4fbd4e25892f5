//! One normalised event as the statistics read it: an [`Observation`], built from an
//! [`Event`] (the live side) or straight from one JSON line of the stream (the `report` command)
//! without building the event or a `serde_json::Value`.
//!
//! The router's stream does not yet carry everything the statistics want. What they read, and
//! where from:
//!
//! | field | from |
//! |---|---|
//! | pool | `details.pool` (on `replacement_ready` since it exists; on the other kinds once the router adds it from the Node's pool label) |
//! | instance type | `details.instance_type` (from the Node's labels; `pool_at_risk` has always carried it) |
//! | zone | `details.zone_id` (AWS AZ ID, the same in every account), else `details.zone` (the Node's zone label), else `data.zone` |
//! | capacity type | `details.capacity_type`: an event whose value is not `spot` is left out |
//! | Node creation | `details.node_created_at` (RFC 3339): lifetimes need it |
//! | recovery phases | `details.latency_seconds` of `replacement_ready` (notice → Ready), and `details.phases` (`{"cordoned": s, "drained": s, ...}`, seconds from the notice) when present |
//! | census | `pool_stats` events: `details.pool` and `details.capacity` (`[{"instance_type", "zone", "zone_id", "nodes"}]`) |
//!
//! Every one of them is optional and read leniently: a value of another type is skipped, never
//! an error, as the normalisers treat provider payloads.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::event::{Event, Kind};

/// What an event is, for the statistics; the stream's `data.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `interruption`: Spot capacity reclaimed.
    Interruption,
    /// `rebalance_recommendation`: elevated risk.
    Rebalance,
    /// `scheduled_maintenance`.
    Maintenance,
    /// `termination`.
    Termination,
    /// `replacement_ready`: a replacement Node became Ready (carries its pool and latency).
    ReplacementReady,
    /// `pool_at_risk`: the router sheltered a (type, zone) pool.
    PoolAtRisk,
    /// `pool_stats`: the router's periodic statistics, whose census the report integrates.
    PoolStats,
}

impl Signal {
    /// The signal of a `data.kind`, or `None` for a kind the statistics do not know.
    pub fn from_kind(kind: &str) -> Option<Signal> {
        Some(match kind {
            "interruption" => Signal::Interruption,
            "rebalance_recommendation" => Signal::Rebalance,
            "scheduled_maintenance" => Signal::Maintenance,
            "termination" => Signal::Termination,
            "replacement_ready" => Signal::ReplacementReady,
            "pool_at_risk" => Signal::PoolAtRisk,
            "pool_stats" => Signal::PoolStats,
            _ => return None,
        })
    }

    /// The signal of a kind, or `None` for one the statistics do not count (`failback`).
    fn of(kind: Kind) -> Option<Signal> {
        Some(match kind {
            Kind::Interruption => Signal::Interruption,
            Kind::RebalanceRecommendation => Signal::Rebalance,
            Kind::ScheduledMaintenance => Signal::Maintenance,
            Kind::Termination => Signal::Termination,
            Kind::ReplacementReady => Signal::ReplacementReady,
            Kind::PoolAtRisk => Signal::PoolAtRisk,
            Kind::PoolStats => Signal::PoolStats,
            Kind::Failback => return None,
        })
    }
}

/// A recovery phase, timed from the notice (the phases of `recovery_phase_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// The Node was cordoned.
    Cordoned,
    /// Its drain ended.
    Drained,
    /// A replacement Node of the pool became Ready.
    ReplacementReady,
    /// Every evicted pod's controller had a pod Running again.
    PodsRunning,
}

impl Phase {
    /// Every phase, in the order a recovery reaches them.
    pub const ALL: [Phase; 4] = [
        Phase::Cordoned,
        Phase::Drained,
        Phase::ReplacementReady,
        Phase::PodsRunning,
    ];

    /// The name, as in `details.phases` and the metric's `phase` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Cordoned => "cordoned",
            Phase::Drained => "drained",
            Phase::ReplacementReady => "replacement_ready",
            Phase::PodsRunning => "pods_running",
        }
    }

    /// The phase of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }

    const fn slot(self) -> usize {
        self as usize
    }
}

/// Seconds from the notice to each phase, where known (NaN inside for unknown: half the
/// size of `Option`s, and the report moves one per line).
#[derive(Debug, Clone, Copy)]
pub struct Phases([f64; 4]);

impl Default for Phases {
    fn default() -> Self {
        Phases([f64::NAN; 4])
    }
}

impl PartialEq for Phases {
    fn eq(&self, other: &Phases) -> bool {
        Phase::ALL.iter().all(|p| self.get(*p) == other.get(*p))
    }
}

impl Phases {
    /// The time to `phase`, if known.
    pub fn get(&self, phase: Phase) -> Option<f64> {
        let s = self.0[phase.slot()];
        (!s.is_nan()).then_some(s)
    }

    /// Records the time to `phase` (a NaN records nothing).
    pub fn set(&mut self, phase: Phase, seconds: f64) {
        if !seconds.is_nan() {
            self.0[phase.slot()] = seconds;
        }
    }

    /// The known phases, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Phase, f64)> + '_ {
        Phase::ALL
            .into_iter()
            .filter_map(|p| self.get(p).map(|s| (p, s)))
    }
}

/// One row of a `pool_stats` census: how many Spot Nodes of a (type, zone) the pool had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census<'a> {
    /// The instance type, if known.
    pub instance_type: Option<&'a str>,
    /// The zone's name (the Node's zone label).
    pub zone: Option<&'a str>,
    /// The AWS AZ ID, where known.
    pub zone_id: Option<&'a str>,
    /// Spot Nodes at the census's time.
    pub nodes: u32,
}

/// One event as the statistics read it. Strings borrow from the event or the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    /// What it is.
    pub signal: Signal,
    /// `data.occurred_at`.
    pub at: Timestamp,
    /// `data.provider`.
    pub provider: Option<&'a str>,
    /// `data.account` (AZ names map to AZ IDs per AWS account).
    pub account: Option<&'a str>,
    /// `data.region`.
    pub region: Option<&'a str>,
    /// The zone's name: `details.zone`, else `data.zone`.
    pub zone: Option<&'a str>,
    /// `details.zone_id` (AWS AZ ID).
    pub zone_id: Option<&'a str>,
    /// `data.instance.id`.
    pub instance: &'a str,
    /// `details.pool`.
    pub pool: Option<&'a str>,
    /// `details.instance_type`.
    pub instance_type: Option<&'a str>,
    /// `details.capacity_type` (`spot`, `on_demand`, ...).
    pub capacity_type: Option<&'a str>,
    /// `details.node_created_at`.
    pub node_created_at: Option<Timestamp>,
    /// Recovery phases: `details.latency_seconds` as `replacement_ready`, and `details.phases`.
    pub phases: Phases,
    /// The census of a `pool_stats` event (`details.capacity`).
    pub census: Vec<Census<'a>>,
}

impl<'a> Observation<'a> {
    /// A bare observation: every optional field `None`.
    pub fn new(signal: Signal, at: Timestamp, instance: &'a str) -> Observation<'a> {
        Observation {
            signal,
            at,
            provider: None,
            account: None,
            region: None,
            zone: None,
            zone_id: None,
            instance,
            pool: None,
            instance_type: None,
            capacity_type: None,
            node_created_at: None,
            phases: Phases::default(),
            census: Vec::new(),
        }
    }

    /// The observation of a normalised event (the router's own, on the live side); `None` for
    /// a kind the statistics do not count.
    pub fn of_event(event: &'a Event) -> Option<Observation<'a>> {
        let data = &event.data;
        let d = &data.details;
        let text = |key: &str| d.get(key).and_then(Value::as_str);
        let mut obs = Observation::new(Signal::of(data.kind)?, data.occurred_at, &data.instance.id);
        obs.provider = Some(data.provider.as_str());
        obs.account = data.account.as_deref();
        obs.region = data.region.as_deref();
        obs.zone = text("zone").or(data.zone.as_deref());
        obs.zone_id = text("zone_id");
        obs.pool = text("pool");
        obs.instance_type = text("instance_type");
        obs.capacity_type = text("capacity_type");
        obs.node_created_at = text("node_created_at").and_then(parse_time);
        if let Some(s) = d.get("latency_seconds").and_then(Value::as_f64) {
            obs.phases.set(Phase::ReplacementReady, s);
        }
        if let Some(Value::Object(phases)) = d.get("phases") {
            for (name, v) in phases {
                if let (Some(p), Some(s)) = (Phase::from_name(name), v.as_f64()) {
                    obs.phases.set(p, s);
                }
            }
        }
        if let Some(Value::Array(rows)) = d.get("capacity") {
            obs.census = rows.iter().filter_map(census_of_value).collect();
        }
        Some(obs)
    }
}

fn census_of_value(row: &Value) -> Option<Census<'_>> {
    let row: &Map<String, Value> = row.as_object()?;
    let text = |key: &str| row.get(key).and_then(Value::as_str);
    Some(Census {
        instance_type: text("instance_type"),
        zone: text("zone"),
        zone_id: text("zone_id"),
        nodes: u32::try_from(row.get("nodes")?.as_u64()?).ok()?,
    })
}

/// A line of the stream that cannot be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not the shape of a normalised event (a required field missing or of the
    /// wrong type).
    #[error("not a normalised event: {0}")]
    Shape(#[source] serde_json::Error),
    /// `data.occurred_at` is not an RFC 3339 timestamp.
    #[error("`data.occurred_at` is not an RFC 3339 timestamp: `{0}`")]
    Time(String),
    /// The line is not UTF-8.
    #[error("not UTF-8: {0}")]
    Utf8(#[source] std::str::Utf8Error),
}

impl LineError {
    /// A short, bounded name of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::Shape(_) => "shape",
            LineError::Time(_) => "time",
            LineError::Utf8(_) => "utf8",
        }
    }
}

/// One line of the stream, parsed: keep it alive while its [`Observation`] is used.
#[derive(Debug)]
pub struct Line<'a>(WireLine<'a>);

impl<'a> Line<'a> {
    /// Parses one JSON line (a structured-mode CloudEvent as the router writes it). Only the
    /// fields the statistics read are looked at; the rest is skipped.
    pub fn parse(bytes: &'a [u8]) -> Result<Line<'a>, LineError> {
        // One UTF-8 check of the whole line, then serde_json's `str` reader, which checks no
        // string again: faster than `from_slice`, which checks each key and value it returns.
        let text = std::str::from_utf8(bytes).map_err(LineError::Utf8)?;
        Line::parse_str(text)
    }

    /// [`Line::parse`] of a line known to be UTF-8.
    ///
    /// The router writes `data` last, after the envelope's string attributes. When the line
    /// has that shape, only the `data` object is parsed (the envelope is a quarter of the
    /// bytes, and nothing in it is read); otherwise, or when that fails, the whole line is.
    pub fn parse_str(text: &'a str) -> Result<Line<'a>, LineError> {
        if let Some(data) = data_object(text)
            && let Ok(data) = serde_json::from_str::<WireData<'a>>(data)
        {
            return Ok(Line(WireLine { data }));
        }
        serde_json::from_str(text)
            .map(Line)
            .map_err(LineError::Shape)
    }

    /// The observation, or `Ok(None)` for a kind the statistics do not know. It borrows the
    /// line.
    pub fn observation(&self) -> Result<Option<Observation<'_>>, LineError> {
        self.build(|s| Ok::<_, Infallible>(&**s))
            .map_err(|e| match e {
                Build::Line(e) => e,
                Build::Text(never) => match never {},
            })
    }

    /// The observation borrowing only the bytes the line was parsed from, so that it outlives
    /// the `Line` (the report parses on other threads than it observes): `Ok(Err(Escaped))`
    /// when a string it reads had JSON escapes (then use [`Line::observation`]).
    pub fn detached_observation(
        &self,
    ) -> Result<Result<Option<Observation<'a>>, Escaped>, LineError> {
        match self.build(|s| match &s.0 {
            Cow::Borrowed(b) => Ok(*b),
            Cow::Owned(_) => Err(Escaped),
        }) {
            Ok(obs) => Ok(Ok(obs)),
            Err(Build::Text(escaped)) => Ok(Err(escaped)),
            Err(Build::Line(e)) => Err(e),
        }
    }

    fn build<'s, 'o, E>(
        &'s self,
        text: impl Fn(&'s Str<'a>) -> Result<&'o str, E>,
    ) -> Result<Option<Observation<'o>>, Build<E>> {
        let opt = |v: &'s Option<Str<'a>>| v.as_ref().map(&text).transpose().map_err(Build::Text);
        let data = &self.0.data;
        let Some(signal) = Signal::from_kind(&data.kind) else {
            return Ok(None);
        };
        let at = parse_time(&data.occurred_at)
            .ok_or_else(|| Build::Line(LineError::Time(data.occurred_at.to_string())))?;
        let mut obs = Observation::new(signal, at, text(&data.instance.id).map_err(Build::Text)?);
        obs.provider = opt(&data.provider)?;
        obs.account = opt(&data.account)?;
        obs.region = opt(&data.region)?;
        obs.zone = opt(&data.zone)?;
        let Some(d) = &data.details.0 else {
            return Ok(Some(obs));
        };
        obs.zone = opt(&d.zone)?.or(obs.zone);
        obs.zone_id = opt(&d.zone_id)?;
        obs.pool = opt(&d.pool)?;
        obs.instance_type = opt(&d.instance_type)?;
        obs.capacity_type = opt(&d.capacity_type)?;
        obs.node_created_at = d.node_created_at.as_deref().and_then(parse_time);
        if let Some(Number(s)) = d.latency_seconds {
            obs.phases.set(Phase::ReplacementReady, s);
        }
        if let Some(phases) = &d.phases.0 {
            for (p, v) in Phase::ALL.into_iter().zip(phases.slots()) {
                if let Some(Number(s)) = v {
                    obs.phases.set(p, s);
                }
            }
        }
        if let Some(rows) = &d.capacity.0 {
            for r in rows.iter().filter_map(|r| r.0.as_ref()) {
                let Some(nodes) = r.nodes.and_then(Number::count) else {
                    continue;
                };
                obs.census.push(Census {
                    instance_type: opt(&r.instance_type)?,
                    zone: opt(&r.zone)?,
                    zone_id: opt(&r.zone_id)?,
                    nodes,
                });
            }
        }
        Ok(Some(obs))
    }
}

/// A string the observation reads had JSON escapes, so it cannot borrow the raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped;

/// Why [`Line::build`] gave no observation: the line, or a string `text` would not give.
enum Build<E> {
    Line(LineError),
    Text(E),
}

/// The text of the `data` object of a line that ends with it: from the line's second `{`,
/// when the key before it is `"data"`, to the line's last `}`. A CloudEvent's attributes
/// before `data` are scalars, so its second `{` is `data`'s unless a string holds one, and
/// then the key check fails and the caller parses the whole line; if `data` is not the last
/// member, the slice is not one JSON value and the caller parses the whole line too.
fn data_object(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if bytes[end] != b'}' || bytes.first() != Some(&b'{') {
        return None;
    }
    let open = 1 + find_byte(&bytes[1..end], b'{')?;
    let key = bytes[..open]
        .trim_ascii_end()
        .strip_suffix(b":")?
        .trim_ascii_end();
    let before = key.strip_suffix(b"\"data\"")?.trim_ascii_end();
    if !matches!(before.last(), Some(b',' | b'{')) {
        return None;
    }
    // Both ends are ASCII bytes of a `str`, so they are char boundaries.
    text.get(open..end)
}

/// The first `byte` in `bytes`, a word at a time (std's own memchr is not public, and a
/// byte-by-byte scan is a large part of reading a stream).
pub fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let pattern = ONES * u64::from(byte);
    // Non-zero when a byte of `word` is `byte` (the "has a zero byte" test on `word ^
    // pattern`: it may flag bytes after the first match too, never misses one).
    let found = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut at = 0;
    // Four words per step: one branch per 32 bytes.
    for chunk in bytes.chunks_exact(32) {
        if found(&chunk[..8]) | found(&chunk[8..16]) | found(&chunk[16..24]) | found(&chunk[24..])
            != 0
        {
            break;
        }
        at += 32;
    }
    for chunk in bytes[at..].chunks_exact(8) {
        if found(chunk) != 0 {
            break;
        }
        at += 8;
    }
    bytes[at..].iter().position(|b| *b == byte).map(|i| at + i)
}

/// Parses an RFC 3339 timestamp; the common `YYYY-MM-DDTHH:MM:SS[.fraction]Z` form without
/// jiff's general parser (it is most of the report's time per line otherwise).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    fast_utc(s.as_bytes()).or_else(|| s.parse().ok())
}

fn fast_utc(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut nanos = 0i64;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        let frac = rest.strip_prefix(b".")?;
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        nanos = num(20..20 + frac.len())? * 10i64.pow(9 - frac.len() as u32);
    }
    // Days from civil (H. Hinnant's algorithm); the day must exist in its month.
    let days_in_month = match mo {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > days_in_month {
        return None;
    }
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Timestamp::new(days * 86_400 + h * 3_600 + mi * 60 + sec, nanos as i32).ok()
}

// --- the wire form: only the fields read, each lenient -----------------------------------------

#[derive(Debug, Deserialize)]
struct WireLine<'a> {
    #[serde(borrow)]
    data: WireData<'a>,
}

#[derive(Debug, Deserialize)]
struct WireData<'a> {
    #[serde(borrow)]
    kind: Str<'a>,
    #[serde(borrow, default, deserialize_with = "loose")]
    provider: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "loose")]
    account: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "loose")]
    region: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "loose")]
    zone: Option<Str<'a>>,
    #[serde(borrow)]
    instance: WireInstance<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow, default)]
    details: Loose<WireDetails<'a>, false>,
}

#[derive(Debug, Deserialize)]
struct WireInstance<'a> {
    #[serde(borrow)]
    id: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireDetails<'a> {
    #[serde(borrow, deserialize_with = "loose")]
    pool: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    instance_type: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    zone: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    zone_id: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    capacity_type: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    node_created_at: Option<Str<'a>>,
    #[serde(deserialize_with = "loose_number")]
    latency_seconds: Option<Number>,
    phases: Loose<WirePhases, false>,
    #[serde(borrow)]
    capacity: Loose<Vec<Loose<WireCensus<'a>, false>>, true>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WirePhases {
    #[serde(deserialize_with = "loose_number")]
    cordoned: Option<Number>,
    #[serde(deserialize_with = "loose_number")]
    drained: Option<Number>,
    #[serde(deserialize_with = "loose_number")]
    replacement_ready: Option<Number>,
    #[serde(deserialize_with = "loose_number")]
    pods_running: Option<Number>,
}

impl WirePhases {
    /// In the order of [`Phase::ALL`].
    fn slots(&self) -> [Option<Number>; 4] {
        [
            self.cordoned,
            self.drained,
            self.replacement_ready,
            self.pods_running,
        ]
    }
}

#[derive(Debug, Deserialize)]
struct WireCensus<'a> {
    #[serde(borrow, default, deserialize_with = "loose")]
    instance_type: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "loose")]
    zone: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "loose")]
    zone_id: Option<Str<'a>>,
    #[serde(default, deserialize_with = "loose_number")]
    nodes: Option<Number>,
}

/// A JSON number (as f64).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Number(f64);

impl Number {
    /// The number as a count: a non-negative integer that fits a `u32`.
    fn count(self) -> Option<u32> {
        let n = self.0;
        (n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX)).then_some(n as u32)
    }
}

/// A string borrowed from the line when it has no escapes, owned otherwise. (The normalisers
/// have their own, private to them; this one is the statistics' copy.)
#[derive(Debug, Clone, PartialEq, Eq)]
struct Str<'a>(Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Answers `Ok(None)`-like values for the JSON kinds a loose field skips.
macro_rules! skip {
    ($none:expr; $($what:ident),*) => {
        $(skip!(@one $what, $none);)*
    };
    (@one str, $none:expr) => {
        fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> { Ok($none) }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($none) }
    };
    (@one num, $none:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($none) }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($none) }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($none) }
    };
    (@one other, $none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($none) }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($none) }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($none) }
    };
    (@one seq, $none:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
    (@one map, $none:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(V)
    }
}

/// A string field that skips any other JSON value as `None`.
fn loose<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Str<'a>>, D::Error> {
    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Option<Str<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        skip!(None; num, other, seq, map);

        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Borrowed(v))))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v.to_owned()))))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v))))
        }
    }

    d.deserialize_any(V)
}

/// A number field that skips any other JSON value as `None`.
fn loose_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Number>, D::Error> {
    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Option<Number>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        skip!(None; str, other, seq, map);

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Number(v as f64)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Number(v as f64)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Number(v)))
        }
    }

    d.deserialize_any(V)
}

/// A field read as `T` when it is an array (`SEQ`) or an object (not `SEQ`); any other JSON
/// value is skipped as `None`.
#[derive(Debug)]
struct Loose<T, const SEQ: bool>(Option<T>);

impl<T, const SEQ: bool> Default for Loose<T, SEQ> {
    fn default() -> Self {
        Loose(None)
    }
}

impl<'de, T: Deserialize<'de>, const SEQ: bool> Deserialize<'de> for Loose<T, SEQ> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const SEQ: bool>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const SEQ: bool> Visitor<'de> for V<T, SEQ> {
            type Value = Loose<T, SEQ>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            skip!(Loose(None); str, num, other);

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                if SEQ {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(Loose(None));
                }
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Loose(Some(t)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                if !SEQ {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Loose(None));
                }
                T::deserialize(SeqAccessDeserializer::new(seq)).map(|t| Loose(Some(t)))
            }
        }

        d.deserialize_any(V::<T, SEQ>(PhantomData))
    }
}

#[cfg(test)]
mod tests;
