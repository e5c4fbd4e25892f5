//! The wire form of the NATS sink, pure: subjects with escaped tokens, `Nats-Msg-Id`, and the
//! CloudEvent as a binary-mode or structured-mode message, and back ([`decode`]).

use std::borrow::Cow;

use async_nats::HeaderMap;
use async_nats::header::HeaderValue;
use bytes::Bytes;

use crate::event::{DATA_CONTENT_TYPE, Event, SPEC_VERSION};
use crate::sinks::config::NatsMode;

/// The content type of a structured-mode message.
pub const CONTENT_TYPE_STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";
/// The CloudEvents extension attribute naming the cluster.
pub const CLUSTER_ATTRIBUTE: &str = "cluster";

/// One subject token: `.`, `*`, `>`, `%`, whitespace and control characters percent-encoded
/// (`m5.large` → `m5%2Elarge`), so that a value can never add a token or become a wildcard; an
/// empty value is `_`. Reversible: `%` itself is encoded.
pub fn escape_token(value: &str) -> Cow<'_, str> {
    if value.is_empty() {
        return Cow::Borrowed("_");
    }
    let special =
        |c: char| matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() || c.is_control();
    if !value.chars().any(special) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if special(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Checks a subject prefix: one or more tokens separated by `.`, none empty, no wildcards, no
/// whitespace.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!("`{prefix}` has an empty token"));
        }
        if token == "*" || token == ">" || token.contains(['*', '>']) {
            return Err(format!("`{prefix}` holds a wildcard"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{prefix}` holds whitespace"));
        }
    }
    Ok(())
}

/// The subject of `event`: `<prefix>.<cluster>.<provider>.<kind>`, every token after the prefix
/// escaped ([`escape_token`]).
pub fn subject(prefix: &str, cluster: &str, event: &Event) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        escape_token(cluster),
        escape_token(event.data.provider.as_str()),
        escape_token(event.data.kind.as_str()),
    )
}

/// The `Nats-Msg-Id` of `event`: its dedupe key, `<source>/<id>`. A source has exactly three
/// segments (`/<provider>/<account>/<region>`), so the join cannot be ambiguous.
pub fn message_id(event: &Event) -> String {
    format!("{}/{}", event.source(), event.id)
}

/// A header value from any text: CR and LF (which the protocol cannot carry, and async-nats
/// panics on) become `%0D` and `%0A`.
pub fn header_value(text: &str) -> HeaderValue {
    let text = if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace('\r', "%0D").replace('\n', "%0A"))
    } else {
        Cow::Borrowed(text)
    };
    text.parse().unwrap_or_default()
}

/// The headers and body of `event` in `mode`, for `cluster`.
pub fn encode(event: &Event, cluster: &str, mode: NatsMode) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        header_value(&message_id(event)),
    );
    match mode {
        NatsMode::Binary => {
            let source = event.source();
            let time = event.time().to_string();
            for (name, value) in [
                ("ce-specversion", SPEC_VERSION),
                ("ce-id", event.id.as_str()),
                ("ce-source", source.as_str()),
                ("ce-type", event.cloud_event_type()),
                ("ce-subject", event.subject()),
                ("ce-time", time.as_str()),
                ("ce-cluster", cluster),
                ("Content-Type", DATA_CONTENT_TYPE),
            ] {
                headers.insert(name, header_value(value));
            }
            // Plain data with string keys: serialising cannot fail.
            let body = serde_json::to_vec(&event.data).unwrap_or_else(|_| b"{}".to_vec());
            (headers, Bytes::from(body))
        }
        NatsMode::Structured => {
            headers.insert("Content-Type", header_value(CONTENT_TYPE_STRUCTURED));
            let mut value = serde_json::to_value(event).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert(CLUSTER_ATTRIBUTE.into(), cluster.into());
            }
            let body = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
            (headers, Bytes::from(body))
        }
    }
}

/// The structured-mode JSON of a message this sink published, in either mode: a binary-mode
/// message's `ce-` headers become the attributes and its body the `data`. `None` when the
/// message is not a CloudEvent (no `ce-specversion` and a body that is not a JSON object).
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<serde_json::Value> {
    use serde_json::{Map, Value};
    if let Some(headers) = headers
        && headers.get("ce-specversion").is_some()
    {
        let mut object = Map::new();
        let mut attrs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(name, values)| {
                let name = AsRef::<str>::as_ref(name).to_ascii_lowercase();
                let attr = name.strip_prefix("ce-")?.to_owned();
                Some((attr, values.first()?.as_str().to_owned()))
            })
            .collect();
        attrs.sort();
        for (attr, value) in attrs {
            object.insert(attr, Value::String(value));
        }
        if let Some(ct) = headers.get("Content-Type") {
            object.insert(
                "datacontenttype".into(),
                Value::String(ct.as_str().to_owned()),
            );
        }
        let data = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        object.insert("data".into(), data);
        return Some(Value::Object(object));
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}
