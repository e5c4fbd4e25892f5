//! Pure normalisers: one raw message body as the queue delivers it → normalised events.
//!
//! No I/O, no async, no SDK: [`normalize`] takes bytes and returns [`Parsed`] or a
//! [`ParseError`]. Valid input that asks nothing of us (an unknown event type, a state we do not
//! act on, a test notification) is [`Ignored`], never an error; only malformed bytes are errors.

pub mod aws;
pub mod azure;
pub mod gcp;
mod wire;

use std::fmt;

use crate::event::{Event, Provider};

/// The largest message body a normaliser accepts. SQS caps messages at 256 KiB and Event Grid
/// events at 1 MiB; anything larger is not a cloud signal.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The most events one message becomes by default (`router.max_events_per_message`). One 1 MiB
/// Azure scheduled event can name some 96,000 VMs, an AWS Health event some 26,000 instances;
/// no real notice covers more than a pool.
pub const DEFAULT_MAX_EVENTS: usize = 1000;
/// The marker of an `inject` fire drill: the EventBridge source (AWS), the Event Grid `topic` or
/// CloudEvents `source` (Azure), the LogEntry label key set to `"true"` (GCP). Drill events are
/// normalised like the real ones and carry `details.drill = true`.
pub const DRILL: &str = "eviction-router.drill";

/// What a message body normalised to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The normalised events, in the order the message named them.
    pub events: Vec<Event>,
    /// What the message held that is valid but not actionable.
    pub ignored: Vec<Ignored>,
    /// Events the message named beyond the cap on events per message: not built, counted.
    pub dropped: usize,
    /// Elements of a batch (an Event Grid array) that are malformed; the others were read.
    pub invalid: Vec<Invalid>,
}

/// A malformed element of a batch whose other elements are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// [`ParseError::kind`].
    pub kind: &'static str,
    /// What is wrong with it.
    pub error: String,
}

impl Invalid {
    fn of(index: usize, e: &ParseError) -> Invalid {
        Invalid {
            index,
            kind: e.kind(),
            error: e.to_string(),
        }
    }
}

impl Parsed {
    /// One event.
    pub fn event(event: Event) -> Self {
        Parsed {
            events: vec![event],
            ..Parsed::default()
        }
    }

    /// Nothing actionable, for one reason.
    pub fn ignored(reason: IgnoreReason, detail: impl Into<String>) -> Self {
        Parsed {
            ignored: vec![Ignored {
                reason,
                detail: detail.into(),
            }],
            ..Parsed::default()
        }
    }

    /// Appends another parse's events, ignored entries and counts (for batches).
    pub fn extend(&mut self, other: Parsed) {
        self.events.extend(other.events);
        self.ignored.extend(other.ignored);
        self.dropped += other.dropped;
        self.invalid.extend(other.invalid);
    }

    /// The events of a message that named `events` of which at most `limit` are built.
    pub(crate) fn capped(events: Vec<Event>, named: usize) -> Parsed {
        Parsed {
            dropped: named - events.len(),
            events,
            ..Parsed::default()
        }
    }
}

/// A valid input that produced no event, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Bounded reason, used as a metric label.
    pub reason: IgnoreReason,
    /// Human detail for the log line (the event type, the state, ...).
    pub detail: String,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// Why a valid message was not turned into an event. A bounded set: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The provider's event type is not one the router maps.
    UnknownType,
    /// A known type in a state or category the router does not act on.
    NotActionable,
    /// A provider test message (ASG `autoscaling:TEST_NOTIFICATION`).
    TestNotification,
    /// An Event Grid subscription validation handshake.
    SubscriptionValidation,
    /// The event names no instance the router could act on.
    NoInstance,
    /// A batch with no entries.
    EmptyBatch,
    /// The instance is not a Node of this cluster (set by the router, not the normalisers).
    ForeignInstance,
    /// Already handled within the dedupe window (set by the router).
    Duplicate,
}

impl IgnoreReason {
    /// Every reason.
    pub const ALL: &'static [IgnoreReason] = &[
        IgnoreReason::UnknownType,
        IgnoreReason::NotActionable,
        IgnoreReason::TestNotification,
        IgnoreReason::SubscriptionValidation,
        IgnoreReason::NoInstance,
        IgnoreReason::EmptyBatch,
        IgnoreReason::ForeignInstance,
        IgnoreReason::Duplicate,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::UnknownType => "unknown_type",
            IgnoreReason::NotActionable => "not_actionable",
            IgnoreReason::TestNotification => "test_notification",
            IgnoreReason::SubscriptionValidation => "subscription_validation",
            IgnoreReason::NoInstance => "no_instance",
            IgnoreReason::EmptyBatch => "empty_batch",
            IgnoreReason::ForeignInstance => "foreign_instance",
            IgnoreReason::Duplicate => "duplicate",
        }
    }
}

/// Why a message body could not be normalised. Such a message can never succeed: it is poison.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is empty.
    #[error("the message body is empty")]
    Empty,
    /// The body is larger than [`MAX_MESSAGE_BYTES`]; it was not parsed.
    #[error("the message body is {size} bytes, over the {limit}-byte limit; not parsed")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON (truncated, invalid UTF-8, nested too deeply, ...).
    #[error("the message body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The body is JSON but not of the shape the provider sends (a wrong type, say).
    #[error("the message body does not have the expected shape: {0}")]
    Shape(#[source] serde_json::Error),
    /// A field the mapping needs is missing or empty.
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
    /// A field has a value the mapping cannot use.
    #[error("field `{field}` has an invalid value `{value}`: {reason}")]
    InvalidValue {
        /// The field, as a JSON path.
        field: &'static str,
        /// The offending value (truncated).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ParseError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLarge { .. } => "too_large",
            ParseError::Json(_) => "json",
            ParseError::Shape(_) => "shape",
            ParseError::MissingField(_) => "missing_field",
            ParseError::InvalidValue { .. } => "invalid_value",
        }
    }

    /// Classifies a serde_json error: syntax and EOF errors are `Json`, type errors `Shape`.
    pub(crate) fn from_json(err: serde_json::Error) -> Self {
        match err.classify() {
            serde_json::error::Category::Data => ParseError::Shape(err),
            _ => ParseError::Json(err),
        }
    }

    pub(crate) fn invalid(field: &'static str, value: &str, reason: impl fmt::Display) -> Self {
        let mut value: String = value.chars().take(120).collect();
        if value.is_empty() {
            value.push_str("(empty)");
        }
        ParseError::InvalidValue {
            field,
            value,
            reason: reason.to_string(),
        }
    }
}

/// Normalises one message body from `provider`, into at most [`DEFAULT_MAX_EVENTS`] events.
///
/// Rejects empty and oversized bodies before parsing. Never panics, whatever the bytes.
pub fn normalize(provider: Provider, body: &[u8]) -> Result<Parsed, ParseError> {
    normalize_with(provider, body, DEFAULT_MAX_EVENTS)
}

/// [`normalize`] into at most `max_events` events: a message that names more instances has
/// only the first `max_events` built, the rest counted in [`Parsed::dropped`], so that one
/// message cannot cost memory and log lines by the hundred thousand.
pub fn normalize_with(
    provider: Provider,
    body: &[u8],
    max_events: usize,
) -> Result<Parsed, ParseError> {
    check_size(body)?;
    match provider {
        Provider::Aws => aws::payload::parse_with(body, max_events),
        Provider::Azure => azure::payload::parse_with(body, max_events),
        Provider::Gcp => gcp::payload::parse(body),
    }
}

fn check_size(body: &[u8]) -> Result<(), ParseError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge {
            size: body.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_bodies_are_rejected_before_parsing() {
        for provider in Provider::ALL {
            for body in [&b""[..], b"  \n\t"] {
                let err = normalize(*provider, body).unwrap_err();
                assert_eq!(err.kind(), "empty", "{provider}: {err}");
            }
        }
    }

    #[test]
    fn oversized_bodies_are_rejected_with_their_size() {
        let body = vec![b' '; MAX_MESSAGE_BYTES + 1];
        for provider in Provider::ALL {
            let err = normalize(*provider, &body).unwrap_err();
            assert_eq!(err.kind(), "too_large");
            assert!(
                err.to_string()
                    .contains(&(MAX_MESSAGE_BYTES + 1).to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn syntax_and_shape_errors_are_told_apart() {
        let err = normalize(Provider::Aws, b"{\"id\": ").unwrap_err();
        assert_eq!(err.kind(), "json", "{err}");
        let err = normalize(Provider::Aws, b"{\"id\": [5]}").unwrap_err();
        assert_eq!(err.kind(), "shape", "{err}");
    }

    #[test]
    fn ignore_reasons_are_distinct_labels() {
        let mut labels: Vec<_> = IgnoreReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), IgnoreReason::ALL.len());
    }
}
