//! The `sinks:` settings and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One stream sink, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// One JSON line per event on standard output.
    Stdout,
    /// CloudEvents (structured mode) POSTed to a URL.
    Webhook(WebhookSinkConfig),
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::config::tagged;
        let (ty, body) = tagged::split::<D>(d, &["stdout", "webhook"])?;
        if ty == "stdout" {
            tagged::empty::<D>(body)?;
            return Ok(SinkConfig::Stdout);
        }
        Ok(SinkConfig::Webhook(tagged::inner::<D, _>(body)?))
    }
}

impl SinkConfig {
    /// Checks the sink's settings; on error, the offending key (relative to the sink) and what
    /// is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            SinkConfig::Stdout => Ok(()),
            SinkConfig::Webhook(w) => w.validate(),
        }
    }
}

/// `type: webhook` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Where events are POSTed.
    pub url: String,
    /// When true, a message is acknowledged only after this sink accepted its events.
    #[serde(default)]
    pub required: bool,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding the HMAC-SHA256 signing key.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the HMAC-SHA256 signing key (a mounted Secret).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Header carrying `v1=<hex HMAC of "<timestamp>.<body>">`.
    #[serde(default = "defaults::signature_header")]
    pub signature_header: String,
    /// Header carrying the Unix time (seconds) the signature covers.
    #[serde(default = "defaults::timestamp_header")]
    pub timestamp_header: String,
    /// Per-attempt timeout.
    #[serde(default = "defaults::webhook_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Attempts per event, the first included.
    #[serde(default = "defaults::webhook_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter, up to 30 s.
    #[serde(default = "defaults::webhook_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Events waiting for delivery before a best-effort sink drops new ones.
    #[serde(default = "defaults::webhook_queue_capacity")]
    pub queue_capacity: usize,
}

impl WebhookSinkConfig {
    /// Checks the URL, the secret, the counts and the headers; on error, the offending key
    /// (relative to the sink) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, message: &str| (key.to_owned(), message.to_owned());
        let url = reqwest::Url::parse(&self.url).map_err(|e| ("url".to_owned(), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("url", "must be an http(s) URL"));
        }
        if self.secret_env.is_some() && self.secret_file.is_some() {
            return Err(invalid(
                "secret_env",
                "set secret_env or secret_file, not both",
            ));
        }
        for (key, name) in [
            ("signature_header", &self.signature_header),
            ("timestamp_header", &self.timestamp_header),
        ] {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(key, "is not a valid HTTP header name"));
            }
        }
        if self
            .signature_header
            .eq_ignore_ascii_case(&self.timestamp_header)
        {
            return Err(invalid(
                "timestamp_header",
                "must differ from signature_header",
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(invalid("queue_capacity", "must be 1 to 1000000"));
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err(invalid("timeout_seconds", "must be 1 to 300"));
        }
        if self.max_attempts > 100 {
            return Err(invalid("max_attempts", "must be 1 to 100"));
        }
        if self.initial_backoff_ms > 60_000 {
            return Err(invalid("initial_backoff_ms", "must be at most 60000"));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err((
                    format!("headers.{name}"),
                    "is not a valid HTTP header".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

mod defaults {
    pub fn signature_header() -> String {
        "X-Eviction-Router-Signature".into()
    }
    pub fn timestamp_header() -> String {
        "X-Eviction-Router-Timestamp".into()
    }
    pub fn webhook_timeout_seconds() -> u64 {
        5
    }
    pub fn webhook_max_attempts() -> u32 {
        6
    }
    pub fn webhook_initial_backoff_ms() -> u64 {
        200
    }
    pub fn webhook_queue_capacity() -> usize {
        1000
    }
}
