//! Wire helpers the normalisers share: borrowed strings, lenient timestamps, JSON entry points.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use jiff::Timestamp;
use jiff::fmt::rfc2822;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::ParseError;

/// Visitor methods answering `Ok(None)` for the kinds of JSON value a loose field skips.
macro_rules! skip_as_none {
    (strings) => {
        fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
    (scalars) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
    (seq) => {
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    };
    (map) => {
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    };
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
///
/// `Option<Cow<str>>` never borrows under serde's derive; this newtype does, which keeps the
/// typed parse cheaper than a generic `Value` parse. Numbers are accepted and kept as their
/// decimal text (GCP instance ids arrive as strings, but some tools re-emit them as numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Str<'_> {
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
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

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
        }

        deserializer.deserialize_any(StrVisitor)
    }
}

/// For `#[serde(deserialize_with = "loose", default)]` on an `Option<Str>` field of a struct that
/// unites the fields of several payload shapes: a string (or number) is kept, any other JSON value
/// is skipped as `None`. A field another event type spells with another type is then no reason
/// to reject a message the mapping would ignore anyway.
pub(crate) fn loose<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Str<'a>>, D::Error> {
    struct LooseVisitor;

    impl<'de> Visitor<'de> for LooseVisitor {
        type Value = Option<Str<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        skip_as_none!(scalars);

        skip_as_none!(seq);

        skip_as_none!(map);

        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Borrowed(v))))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v.to_owned()))))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v))))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v.to_string()))))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Str(Cow::Owned(v.to_string()))))
        }
    }

    deserializer.deserialize_any(LooseVisitor)
}

/// For `#[serde(deserialize_with = "loose_strings", default)]` on an `Option<Vec<Str>>` field:
/// the strings of an array (other elements skipped); any other value is `None`.
pub(crate) fn loose_strings<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Str<'a>>>, D::Error> {
    struct Element<'a>(Option<Str<'a>>);

    impl<'de: 'a, 'a> Deserialize<'de> for Element<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            loose(d).map(Element)
        }
    }

    struct SeqVisitor;

    impl<'de> Visitor<'de> for SeqVisitor {
        type Value = Option<Vec<Str<'de>>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        skip_as_none!(strings);

        skip_as_none!(scalars);

        skip_as_none!(map);

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
            while let Some(Element(item)) = seq.next_element()? {
                out.extend(item);
            }
            Ok(Some(out))
        }
    }

    deserializer.deserialize_any(SeqVisitor)
}

/// Like [`loose`], for an integer that may also arrive as a numeric string.
pub(crate) fn loose_i64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Ok(loose(deserializer)?.and_then(|s| s.trim().parse().ok()))
}

/// For `#[serde(deserialize_with = "loose_object", default)]` on an `Option<T>` field: a JSON
/// object is parsed as `T` (and its errors stand); any other value is skipped as `None`.
pub(crate) fn loose_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        skip_as_none!(strings);

        skip_as_none!(scalars);

        skip_as_none!(seq);

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    deserializer.deserialize_any(ObjectVisitor(std::marker::PhantomData))
}

/// Parses `bytes` as `T`, classifying serde_json's error.
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ParseError> {
    serde_json::from_slice(bytes).map_err(ParseError::from_json)
}

/// Parses a nested raw value as `T`.
pub(crate) fn from_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, ParseError> {
    serde_json::from_str(raw.get()).map_err(ParseError::from_json)
}

/// Whether the first non-blank byte opens a JSON array.
pub(crate) fn is_array(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// The value of a required string field, rejecting absence and blank strings.
pub(crate) fn required<'a>(
    field: &'static str,
    value: Option<Str<'a>>,
) -> Result<Str<'a>, ParseError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ParseError::MissingField(field)),
    }
}

/// `None` for absent and blank strings.
pub(crate) fn non_blank(value: Option<Str<'_>>) -> Option<Str<'_>> {
    value.filter(|v| !v.trim().is_empty())
}

/// An owned copy of an optional string, blank as `None`.
pub(crate) fn owned(value: &Option<Str<'_>>) -> Option<String> {
    value
        .as_ref()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.to_string())
}

/// Parses a provider timestamp: RFC 3339 (any offset, any precision), RFC 1123 / RFC 2822
/// (`Sat, 05 Jun 2016 15:10:09 GMT`, weekday checked leniently because published samples get it
/// wrong), or an ISO date-time without offset, read as UTC.
pub(crate) fn parse_time(field: &'static str, value: &str) -> Result<Timestamp, ParseError> {
    let s = value.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    const RFC2822: rfc2822::DateTimeParser = rfc2822::DateTimeParser::new().relaxed_weekday(true);
    if let Ok(ts) = RFC2822.parse_timestamp(s) {
        return Ok(ts);
    }
    match s.parse::<jiff::civil::DateTime>() {
        Ok(dt) => dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| ParseError::invalid(field, value, e)),
        Err(_) => Err(ParseError::invalid(
            field,
            value,
            "not an RFC 3339 or RFC 1123 timestamp",
        )),
    }
}

/// A required timestamp field.
pub(crate) fn required_time(
    field: &'static str,
    value: Option<Str<'_>>,
) -> Result<Timestamp, ParseError> {
    let v = required(field, value)?;
    parse_time(field, &v)
}

/// An optional timestamp field; absent or blank (Azure's `NotBefore` once started) is `None`.
pub(crate) fn optional_time(
    field: &'static str,
    value: Option<Str<'_>>,
) -> Result<Option<Timestamp>, ParseError> {
    non_blank(value).map(|v| parse_time(field, &v)).transpose()
}

/// The concatenation of `parts`, allocated once (cheaper than `format!` on the hot path).
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The text after the last `/`, or the whole string.
pub(crate) fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_in_any_precision_and_offset() {
        let a = parse_time("t", "2024-02-22T01:39:48.3385828Z").unwrap();
        let b = parse_time("t", "2024-02-22T01:39:48.3385828+00:00").unwrap();
        assert_eq!(a, b);
        let c = parse_time("t", "2024-02-22T03:39:48.3385828+02:00").unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn parses_rfc1123_even_with_a_wrong_weekday() {
        // 2016-06-05 was a Sunday; the AWS sample says Saturday.
        let ts = parse_time("t", "Sat, 05 Jun 2016 15:10:09 GMT").unwrap();
        assert_eq!(ts.to_string(), "2016-06-05T15:10:09Z");
        let ts = parse_time("t", "05 Jun 2016 15:10:09 +0200").unwrap();
        assert_eq!(ts.to_string(), "2016-06-05T13:10:09Z");
    }

    #[test]
    fn reads_an_offsetless_datetime_as_utc() {
        let ts = parse_time("t", "2025-09-19T18:29:47").unwrap();
        assert_eq!(ts.to_string(), "2025-09-19T18:29:47Z");
    }

    #[test]
    fn rejects_garbage_with_the_field_name() {
        let err = parse_time("detail.startTime", "tomorrow-ish").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("detail.startTime") && msg.contains("tomorrow-ish"),
            "{msg}"
        );
    }

    #[test]
    fn borrowed_strings_borrow_and_escaped_ones_own() {
        let s: Str<'_> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(s.0, Cow::Borrowed("plain")));
        let s: Str<'_> = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(&*s, "a\"b");
        let s: Str<'_> = serde_json::from_str("1844488190000000000").unwrap();
        assert_eq!(&*s, "1844488190000000000");
    }

    #[test]
    fn loose_fields_keep_strings_and_skip_everything_else() {
        #[derive(serde::Deserialize)]
        struct T<'a> {
            #[serde(borrow, deserialize_with = "loose", default)]
            a: Option<Str<'a>>,
        }
        let t: T<'_> = serde_json::from_str(r#"{"a":"x"}"#).unwrap();
        assert_eq!(t.a.as_deref(), Some("x"));
        for other in [
            r#"{"a":{"b":[1,2]}}"#,
            r#"{"a":[{"c":1}]}"#,
            r#"{"a":null}"#,
            r#"{"a":true}"#,
            "{}",
        ] {
            let t: T<'_> = serde_json::from_str(other).unwrap();
            assert!(t.a.is_none(), "{other}");
        }
    }
}
