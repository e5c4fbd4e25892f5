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
    /// CloudEvents (binary mode by default) published to NATS JetStream.
    Nats(NatsSinkConfig),
    /// The live stream served as Server-Sent Events on `GET /v1/events`.
    Sse(SseSinkConfig),
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::config::tagged;
        let (ty, body) = tagged::split::<D>(d, &["stdout", "webhook", "nats", "sse"])?;
        Ok(match ty.as_str() {
            "stdout" => {
                tagged::empty::<D>(body)?;
                SinkConfig::Stdout
            }
            "webhook" => SinkConfig::Webhook(tagged::inner::<D, _>(body)?),
            "nats" => SinkConfig::Nats(tagged::inner::<D, _>(body)?),
            _ => SinkConfig::Sse(tagged::inner::<D, _>(body)?),
        })
    }
}

impl SinkConfig {
    /// Checks the sink's settings; on error, the offending key (relative to the sink) and what
    /// is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            SinkConfig::Stdout => Ok(()),
            SinkConfig::Webhook(w) => w.validate(),
            SinkConfig::Nats(n) => n.validate(),
            SinkConfig::Sse(s) => s.validate(),
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

/// How a NATS message carries the CloudEvent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsMode {
    /// The `data` object as the body, each context attribute as a `ce-` header.
    #[default]
    Binary,
    /// The whole event as a JSON body (`Content-Type: application/cloudevents+json`).
    Structured,
}

/// `tls:` of a NATS sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTlsConfig {
    /// Refuse a server that does not offer TLS (implied by a `tls://` URL).
    #[serde(default)]
    pub required: bool,
    /// PEM file of the CA certificates the server's certificate must chain to (instead of the
    /// system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `type: nats` sink: NATS JetStream.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL, or several separated by commas (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// This cluster's name: a subject token, and the `cluster` extension attribute of every
    /// event.
    pub cluster: String,
    /// First tokens of every subject: `<subject_prefix>.<cluster>.<provider>.<kind>`.
    #[serde(default = "defaults::nats_subject_prefix")]
    pub subject_prefix: String,
    /// `binary` (`ce-` headers, the data as the body) or `structured` (the whole event).
    #[serde(default)]
    pub mode: NatsMode,
    /// When true, a message is acknowledged only after JetStream acknowledged its events.
    #[serde(default)]
    pub required: bool,
    /// A `.creds` file (user JWT and NKey seed), as `nsc` writes it.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// A file holding an NKey seed (`SU...`).
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// A token (use `${VAR}`).
    #[serde(default)]
    pub token: Option<String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: NatsTlsConfig,
    /// How long one publish waits for JetStream's acknowledgement.
    #[serde(default = "defaults::nats_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Publish attempts per event, the first included (each with the same `Nats-Msg-Id`).
    #[serde(default = "defaults::nats_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter, up to 30 s.
    #[serde(default = "defaults::nats_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Events waiting for a best-effort sink before new ones are dropped.
    #[serde(default = "defaults::nats_queue_capacity")]
    pub queue_capacity: usize,
    /// Publishes of a best-effort sink awaiting their acknowledgement at once.
    #[serde(default = "defaults::nats_max_in_flight")]
    pub max_in_flight: usize,
    /// Timeout of one connection attempt.
    #[serde(default = "defaults::nats_connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
    /// How long the sink may be disconnected (or failing) before `/readyz` reports not ready.
    #[serde(default = "defaults::nats_readiness_grace_seconds")]
    pub readiness_grace_seconds: u64,
}

impl std::fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSinkConfig")
            .field("url", &self.url)
            .field("cluster", &self.cluster)
            .field("subject_prefix", &self.subject_prefix)
            .field("mode", &self.mode)
            .field("required", &self.required)
            .field("creds_file", &self.creds_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl NatsSinkConfig {
    /// The server URLs.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Checks the URLs, the subject prefix, the credentials and the ranges; on error, the
    /// offending key (relative to the sink) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        let urls = self.urls();
        if urls.is_empty() {
            return invalid("url", "must name at least one server");
        }
        for url in urls {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(("url".to_owned(), format!("`{url}`: {e}")));
            }
        }
        if self.cluster.trim().is_empty() {
            return invalid("cluster", "must not be empty");
        }
        if let Err(message) = crate::sinks::nats::check_prefix(&self.subject_prefix) {
            return Err(("subject_prefix".to_owned(), message));
        }
        let auth = [
            self.creds_file.is_some(),
            self.nkey_seed_file.is_some(),
            self.token.is_some(),
        ];
        if auth.iter().filter(|set| **set).count() > 1 {
            return invalid(
                "creds_file",
                "set at most one of creds_file, nkey_seed_file and token",
            );
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return invalid("token", "must not be empty");
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("tls.cert_file", "set cert_file and key_file together");
        }
        if !(1..=120_000).contains(&self.ack_timeout_ms) {
            return invalid("ack_timeout_ms", "must be 1 to 120000");
        }
        if !(1..=100).contains(&self.max_attempts) {
            return invalid("max_attempts", "must be 1 to 100");
        }
        if self.initial_backoff_ms > 60_000 {
            return invalid("initial_backoff_ms", "must be at most 60000");
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return invalid("queue_capacity", "must be 1 to 1000000");
        }
        if !(1..=10_000).contains(&self.max_in_flight) {
            return invalid("max_in_flight", "must be 1 to 10000");
        }
        if !(1..=300).contains(&self.connect_timeout_seconds) {
            return invalid("connect_timeout_seconds", "must be 1 to 300");
        }
        if self.readiness_grace_seconds > 86_400 {
            return invalid("readiness_grace_seconds", "must be at most 86400");
        }
        Ok(())
    }
}

/// `type: sse` sink: the live stream on `GET /v1/events`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseSinkConfig {
    /// The most recent events kept for `Last-Event-ID` resume.
    #[serde(default = "defaults::sse_ring_capacity")]
    pub ring_capacity: usize,
    /// Subscribers at once; more are answered 503.
    #[serde(default = "defaults::sse_max_subscribers")]
    pub max_subscribers: usize,
    /// Events queued for one subscriber; a subscriber that falls further behind is cut off
    /// (it may resume with `Last-Event-ID`).
    #[serde(default = "defaults::sse_subscriber_buffer")]
    pub subscriber_buffer: usize,
    /// A comment line after this long without an event, so that proxies keep the stream open
    /// and a client sees it is alive.
    #[serde(default = "defaults::sse_heartbeat_seconds")]
    pub heartbeat_seconds: u64,
    /// The bearer token a subscriber must present (use `${VAR}`); none: anyone who reaches the
    /// port may subscribe.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for SseSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseSinkConfig")
            .field("ring_capacity", &self.ring_capacity)
            .field("max_subscribers", &self.max_subscribers)
            .field("subscriber_buffer", &self.subscriber_buffer)
            .field("heartbeat_seconds", &self.heartbeat_seconds)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SseSinkConfig {
    /// Checks the ranges and the token; on error, the offending key (relative to the sink) and
    /// what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        if !(1..=1_000_000).contains(&self.ring_capacity) {
            return invalid("ring_capacity", "must be 1 to 1000000");
        }
        if !(1..=10_000).contains(&self.max_subscribers) {
            return invalid("max_subscribers", "must be 1 to 10000");
        }
        if !(1..=100_000).contains(&self.subscriber_buffer) {
            return invalid("subscriber_buffer", "must be 1 to 100000");
        }
        if !(1..=300).contains(&self.heartbeat_seconds) {
            return invalid("heartbeat_seconds", "must be 1 to 300");
        }
        match &self.token {
            Some(t) if t.len() < 16 => invalid("token", "must be at least 16 characters"),
            Some(t) if t.bytes().any(|b| !b.is_ascii_graphic()) => invalid(
                "token",
                "must be printable ASCII without spaces (it travels in an HTTP header)",
            ),
            _ => Ok(()),
        }
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
    pub fn nats_subject_prefix() -> String {
        "eviction-router".into()
    }
    pub fn nats_ack_timeout_ms() -> u64 {
        // async-nats waits 5 s for a publish ack when its context has no timeout of its own.
        5_000
    }
    pub fn nats_max_attempts() -> u32 {
        3
    }
    pub fn nats_initial_backoff_ms() -> u64 {
        100
    }
    pub fn nats_queue_capacity() -> usize {
        10_000
    }
    pub fn nats_max_in_flight() -> usize {
        256
    }
    pub fn nats_connect_timeout_seconds() -> u64 {
        // async-nats's own default.
        5
    }
    pub fn nats_readiness_grace_seconds() -> u64 {
        10
    }
    pub fn sse_ring_capacity() -> usize {
        1024
    }
    pub fn sse_max_subscribers() -> usize {
        32
    }
    pub fn sse_subscriber_buffer() -> usize {
        256
    }
    pub fn sse_heartbeat_seconds() -> u64 {
        15
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, NatsMode, SinkConfig};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, |name| {
            (name == "NATS_URL").then(|| "nats://127.0.0.1:4222".to_owned())
        })
    }

    #[test]
    fn the_nats_example_is_a_required_binary_sink_with_sse() {
        let text = include_str!("../../examples/config/nats.yaml");
        let c = parse(text).unwrap();
        let SinkConfig::Nats(n) = &c.sinks[0] else {
            panic!("not nats: {:?}", c.sinks)
        };
        assert_eq!(n.url, "nats://127.0.0.1:4222");
        assert!(n.required);
        assert_eq!(n.mode, NatsMode::Binary);
        assert_eq!(n.subject_prefix, "eviction-router");
        assert_eq!((n.ack_timeout_ms, n.max_attempts), (5_000, 3));
        let SinkConfig::Sse(s) = &c.sinks[1] else {
            panic!("not sse")
        };
        assert_eq!((s.ring_capacity, s.max_subscribers), (1024, 32));
    }

    #[test]
    fn nats_and_sse_errors_name_their_key() {
        let base = "sources:\n  - type: http_ingest\nsinks:\n";
        let cases = [
            (
                "  - type: nats\n    url: nats://a:4222\n    cluster: c\n    clusterr: x\n",
                "sinks[0].clusterr",
            ),
            ("  - type: nats\n    url: nats://a:4222\n", "cluster"),
            (
                "  - type: nats\n    url: ''\n    cluster: c\n",
                "sinks[0].url",
            ),
            (
                "  - type: nats\n    url: nats://a:4222\n    cluster: c\n    subject_prefix: a.*\n",
                "sinks[0].subject_prefix",
            ),
            (
                "  - type: nats\n    url: nats://a:4222\n    cluster: c\n    token: t\n    creds_file: /x\n",
                "sinks[0].creds_file",
            ),
            (
                "  - type: nats\n    url: nats://a:4222\n    cluster: c\n    ack_timeout_ms: 0\n",
                "sinks[0].ack_timeout_ms",
            ),
            (
                "  - type: nats\n    url: nats://a:4222\n    cluster: c\n    mode: weird\n",
                "sinks[0].mode",
            ),
            (
                "  - type: sse\n    max_subscribers: 300\n",
                "sinks[0].max_subscribers",
            ),
            ("  - type: sse\n  - type: sse\n", "sinks[1].type"),
            ("  - type: sse\n    token: short\n", "sinks[0].token"),
        ];
        for (sinks, key) in cases {
            let err = parse(&format!("{base}{sinks}")).unwrap_err().to_string();
            assert!(err.contains(key), "{sinks}: {err}");
        }
    }
}
