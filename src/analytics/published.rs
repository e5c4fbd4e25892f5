//! The clouds' published interruption rates, to set beside the observed ones.
//!
//! AWS's Spot Instance Advisor and Azure's Spot eviction rates publish, per instance type and
//! region, the share of instances interrupted in a month as a band (`<5%`, `5-10%`, ...,
//! `>20%`); GCP publishes none. The format read here is that, one row per (provider, instance
//! type, location), as CSV with a header line or as a JSON array of objects:
//!
//! ```text
//! provider,instance_type,location,interruption_rate,source
//! aws,m5.large,us-east-1,<5,spot-advisor 2026-11
//! aws,c5.2xlarge,use1-az4,10-15,
//! azure,Standard_D4s_v5,eastus,5-10,
//! ```
//!
//! - `location` is a zone (AWS AZ ID or zone name) or a region; the most specific row that
//!   matches wins (AZ ID, then zone name, then region). Matching ignores case.
//! - `interruption_rate` is a percentage of instances interrupted per month: a value (`7.5`),
//!   a band (`5-10`), `<5`, or `>20` (also `20+`); a `%` sign is allowed. JSON may give a number.
//! - `source` is optional free text; lines starting with `#` and blank lines are skipped.
//!
//! The observed side is put in the same unit: with λ interruptions per node-hour, the share of
//! instances interrupted within a month (730 h) is `1 − e^(−730λ)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::stats::CapacityStats;

/// Hours in a month, as the published monthly rates count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// A published rate: percent of instances interrupted per month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// One value.
    Value(f64),
    /// A band, `[low, high)`; `high` is `None` for an open band (`>20`).
    Band {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: Option<f64>,
    },
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Value(v) => write!(f, "{v}%"),
            Rate::Band { low, high: None } => write!(f, ">{low}%"),
            Rate::Band { low, high: Some(h) } if *low == 0.0 => write!(f, "<{h}%"),
            Rate::Band { low, high: Some(h) } => write!(f, "{low}-{h}%"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Rate {
    /// Parses `7.5`, `5-10`, `<5`, `>20`, `20+`, each with an optional `%`.
    pub fn parse(text: &str) -> Option<Rate> {
        let t = text.trim().trim_end_matches('%').trim();
        let num = |s: &str| {
            s.trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
        };
        let rate = if let Some(rest) = t.strip_prefix("<=").or_else(|| t.strip_prefix('<')) {
            Rate::Band {
                low: 0.0,
                high: Some(num(rest)?),
            }
        } else if let Some(rest) = t
            .strip_prefix(">=")
            .or_else(|| t.strip_prefix('>'))
            .or_else(|| t.strip_suffix('+'))
        {
            Rate::Band {
                low: num(rest)?,
                high: None,
            }
        } else if let Some((lo, hi)) = t.split_once('-').or_else(|| t.split_once('–')) {
            let (low, high) = (num(lo)?, num(hi)?);
            if low > high {
                return None;
            }
            Rate::Band {
                low,
                high: Some(high),
            }
        } else {
            Rate::Value(num(t)?)
        };
        Some(rate)
    }

    /// Where `observed` (percent per month) stands against this rate. A single value `v` is
    /// taken as the band `[v/2, 2v]`: observed rates of a few interruptions are that noisy.
    pub fn verdict(&self, observed: f64) -> Verdict {
        let (low, high) = match *self {
            Rate::Value(v) => (v / 2.0, Some(v * 2.0)),
            Rate::Band { low, high } => (low, high),
        };
        if observed < low {
            Verdict::Below
        } else if high.is_some_and(|h| observed > h) {
            Verdict::Above
        } else {
            Verdict::Within
        }
    }
}

/// Observed against published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fewer interruptions than published.
    Below,
    /// Within the published band.
    Within,
    /// More than published.
    Above,
}

impl Verdict {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Below => "below",
            Verdict::Within => "within",
            Verdict::Above => "above",
        }
    }
}

/// One published row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedRate {
    /// `aws`, `azure`, `gcp`.
    pub provider: String,
    /// The instance type (VM size, machine type).
    pub instance_type: String,
    /// A zone (AZ ID or name) or a region.
    pub location: String,
    /// Percent interrupted per month.
    pub rate: Rate,
    /// Free text: where the figure comes from.
    pub source: Option<String>,
}

/// A (type, zone) observed beside its published rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The published row that matched.
    pub published: PublishedRate,
    /// The observed share interrupted per month (percent), `null` without node-hours.
    pub observed_percent_per_month: Option<f64>,
    /// Where the observed share stands, `null` without node-hours.
    pub verdict: Option<Verdict>,
}

/// A file of published rates that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PublishedError {
    /// 1-based line (for JSON, the array element's position).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The published rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    rows: Vec<PublishedRate>,
}

#[derive(Deserialize)]
struct JsonRow {
    provider: String,
    instance_type: String,
    location: String,
    interruption_rate: serde_json::Value,
    #[serde(default)]
    source: Option<String>,
}

fn error(line: usize, message: impl Into<String>) -> PublishedError {
    PublishedError {
        line,
        message: message.into(),
    }
}

/// Splits one CSV record: commas, fields optionally in double quotes (`""` inside is a quote).
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field).trim().to_owned()),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field.trim().to_owned());
    Some(fields)
}

impl Published {
    /// The rows.
    pub fn rows(&self) -> &[PublishedRate] {
        &self.rows
    }

    /// Reads CSV (with a header) or a JSON array, told apart by the first character.
    pub fn parse(text: &str) -> Result<Published, PublishedError> {
        let text = text.trim_start_matches('\u{feff}');
        if text.trim_start().starts_with('[') {
            Published::parse_json(text)
        } else {
            Published::parse_csv(text)
        }
    }

    fn parse_json(text: &str) -> Result<Published, PublishedError> {
        let rows: Vec<JsonRow> =
            serde_json::from_str(text).map_err(|e| error(e.line(), e.to_string()))?;
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let rate_text = match &r.interruption_rate {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                let rate = Rate::parse(&rate_text).ok_or_else(|| {
                    error(
                        i + 1,
                        format!("`interruption_rate` `{rate_text}` is not a percentage or band"),
                    )
                })?;
                Ok(PublishedRate {
                    provider: r.provider,
                    instance_type: r.instance_type,
                    location: r.location,
                    rate,
                    source: r.source.filter(|s| !s.is_empty()),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Published { rows })
    }

    fn parse_csv(text: &str) -> Result<Published, PublishedError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((n, header)) = lines.next() else {
            return Ok(Published::default());
        };
        let header = csv_fields(header).ok_or_else(|| error(n, "unbalanced quotes"))?;
        let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let required = ["provider", "instance_type", "location", "interruption_rate"];
        let mut at = [0; 4];
        for (slot, name) in at.iter_mut().zip(required) {
            *slot = column(name).ok_or_else(|| {
                error(
                    n,
                    format!(
                        "the header has no `{name}` column (expected {})",
                        required.join(",")
                    ),
                )
            })?;
        }
        let source = column("source");
        let mut rows = Vec::new();
        for (n, line) in lines {
            let fields = csv_fields(line).ok_or_else(|| error(n, "unbalanced quotes"))?;
            let get = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
            for (i, name) in at.iter().zip(required) {
                if get(*i).is_empty() {
                    return Err(error(n, format!("`{name}` is empty")));
                }
            }
            let rate_text = get(at[3]);
            let rate = Rate::parse(rate_text).ok_or_else(|| {
                error(
                    n,
                    format!("`interruption_rate` `{rate_text}` is not a percentage or band"),
                )
            })?;
            rows.push(PublishedRate {
                provider: get(at[0]).to_owned(),
                instance_type: get(at[1]).to_owned(),
                location: get(at[2]).to_owned(),
                rate,
                source: source.map(get).filter(|s| !s.is_empty()).map(str::to_owned),
            });
        }
        Ok(Published { rows })
    }

    /// The most specific row for a (type, zone): matched on its AZ ID, then its zone's name,
    /// then its region.
    pub fn find(&self, c: &CapacityStats) -> Option<&PublishedRate> {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let candidates = [
            c.zone_id.as_deref(),
            c.zone_name.as_deref(),
            c.region.as_deref(),
        ];
        candidates.into_iter().flatten().find_map(|location| {
            self.rows.iter().find(|r| {
                same(&r.instance_type, &c.instance_type)
                    && same(&r.location, location)
                    && c.provider.as_deref().is_none_or(|p| same(&r.provider, p))
            })
        })
    }

    /// A (type, zone) observed beside its published rate, if one matches.
    pub fn compare(&self, c: &CapacityStats) -> Option<Comparison> {
        let published = self.find(c)?.clone();
        let observed = observed_percent_per_month(c);
        Some(Comparison {
            verdict: observed.map(|o| published.rate.verdict(o)),
            observed_percent_per_month: observed.map(|o| (o * 100.0).round() / 100.0),
            published,
        })
    }
}

/// The observed share of instances interrupted within a month (percent): `1 − e^(−730λ)`.
pub fn observed_percent_per_month(c: &CapacityStats) -> Option<f64> {
    let hours = c.stats.node_hours.filter(|h| *h > 0.0)?;
    let lambda = c.stats.interruptions as f64 / hours;
    Some(100.0 * (1.0 - (-HOURS_PER_MONTH * lambda).exp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_bands_parse() {
        assert_eq!(Rate::parse("7.5"), Some(Rate::Value(7.5)));
        assert_eq!(Rate::parse(" 7.5 % "), Some(Rate::Value(7.5)));
        let band = |low, high| Some(Rate::Band { low, high });
        assert_eq!(Rate::parse("<5"), band(0.0, Some(5.0)));
        assert_eq!(Rate::parse("<5%"), band(0.0, Some(5.0)));
        assert_eq!(Rate::parse("5-10"), band(5.0, Some(10.0)));
        assert_eq!(Rate::parse("5%-10%"), band(5.0, Some(10.0)));
        assert_eq!(Rate::parse(">20"), band(20.0, None));
        assert_eq!(Rate::parse("20+"), band(20.0, None));
        for bad in ["", "high", "10-5", "150", "-3", "<"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
        assert_eq!(Rate::parse("5-10").unwrap().to_string(), "5-10%");
        assert_eq!(Rate::parse("<5").unwrap().to_string(), "<5%");
        assert_eq!(Rate::parse(">20").unwrap().to_string(), ">20%");
    }

    #[test]
    fn verdicts() {
        let band = Rate::parse("5-10").unwrap();
        assert_eq!(band.verdict(2.0), Verdict::Below);
        assert_eq!(band.verdict(7.0), Verdict::Within);
        assert_eq!(band.verdict(12.0), Verdict::Above);
        assert_eq!(Rate::parse(">20").unwrap().verdict(90.0), Verdict::Within);
        assert_eq!(Rate::Value(10.0).verdict(19.0), Verdict::Within);
        assert_eq!(Rate::Value(10.0).verdict(21.0), Verdict::Above);
    }

    #[test]
    fn csv_with_quotes_comments_and_columns_in_any_order() {
        let text = "# exported 2026-11\n\
                    location,provider,interruption_rate,instance_type,source\n\
                    us-east-1,aws,<5,m5.large,\"advisor, trailing month\"\n\
                    \n\
                    use1-az4,aws,10-15%,c5.2xlarge,\n";
        let p = Published::parse(text).unwrap();
        assert_eq!(p.rows().len(), 2);
        assert_eq!(
            p.rows()[0].source.as_deref(),
            Some("advisor, trailing month")
        );
        assert_eq!(p.rows()[1].location, "use1-az4");
        assert_eq!(p.rows()[1].source, None);
    }

    #[test]
    fn json_arrays_take_numbers_or_strings() {
        let text = r#"[{"provider":"azure","instance_type":"Standard_D4s_v5","location":"eastus","interruption_rate":"5-10"},
                      {"provider":"aws","instance_type":"m5.large","location":"us-east-1","interruption_rate":3}]"#;
        let p = Published::parse(text).unwrap();
        assert_eq!(p.rows()[1].rate, Rate::Value(3.0));
    }

    #[test]
    fn errors_name_the_line() {
        let e = Published::parse("provider,instance_type,location\naws,m5.large,x\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("interruption_rate"), "{e}");
        let e = Published::parse(
            "provider,instance_type,location,interruption_rate\n\naws,m5.large,us-east-1,often\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("often"), "{e}");
        assert!(Published::parse("[{\"provider\": 1}]").is_err());
    }
}
