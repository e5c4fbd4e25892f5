//! The user's configuration: a strict YAML file with `${ENV_VAR}` expansion.
//!
//! Every section rejects unknown keys, so a typo is an error that names the key rather than a
//! setting silently ignored. `docs/configuration.md` documents every key; `examples/` holds
//! commented configurations. [`Config::embedded_default`] is what `run` uses with no file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::cluster::config::{ClusterConfig, ClusterMode, LeaderElectionConfig};

/// The configuration `run` uses when given none: HTTP ingest, a dry-run cluster, stdout.
pub const EMBEDDED_DEFAULT: &str = include_str!("../examples/config/default.yaml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `${VAR}` names an unset environment variable.
    #[error(
        "line {line}: environment variable `{name}` is not set (write `$${{` for a literal `${{`)"
    )]
    MissingEnv {
        /// The variable.
        name: String,
        /// 1-based line of the reference.
        line: usize,
    },
    /// A `${` is not closed on its line.
    #[error("line {line}: `${{` without a closing `}}`")]
    UnclosedEnv {
        /// 1-based line.
        line: usize,
    },
    /// The YAML does not match the schema (unknown key, wrong type, missing key).
    #[error("{0}")]
    Yaml(#[from] serde_norway::Error),
    /// A value is out of range or inconsistent with another.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The offending key, as a path (`sources[0].pollers`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where signals come from; at least one.
    pub sources: Vec<SourceConfig>,
    /// Delivery handling.
    #[serde(default)]
    pub router: RouterConfig,
    /// What is done to the cluster.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Where normalised events are published.
    #[serde(default = "default_sinks")]
    pub sinks: Vec<SinkConfig>,
    /// The HTTP server (metrics, probes, ingest).
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

fn default_sinks() -> Vec<SinkConfig> {
    vec![SinkConfig::Stdout]
}

/// One source of signals.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// An SQS queue fed by EventBridge rules.
    AwsSqs(SqsConfig),
    /// An Azure Service Bus queue fed by Event Grid.
    AzureServiceBus(ServiceBusConfig),
    /// A GCP Pub/Sub subscription fed by a logging sink.
    GcpPubsub(PubSubConfig),
    /// `POST /v1/ingest/<provider>` on the router's HTTP server.
    HttpIngest(HttpIngestConfig),
    /// Event Grid pushing to `/v1/eventgrid` on the router's HTTP server.
    AzureEventGridWebhook(EventGridWebhookConfig),
}

impl SourceConfig {
    /// The `type` as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::AwsSqs(_) => "aws_sqs",
            SourceConfig::AzureServiceBus(_) => "azure_service_bus",
            SourceConfig::GcpPubsub(_) => "gcp_pubsub",
            SourceConfig::HttpIngest(_) => "http_ingest",
            SourceConfig::AzureEventGridWebhook(_) => "azure_event_grid_webhook",
        }
    }
}

/// `type: aws_sqs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// The queue URL (Terraform output `queue_url`).
    pub queue_url: String,
    /// The region; by default the standard AWS resolution (env, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Concurrent long-polling receive loops.
    #[serde(default = "defaults::pollers")]
    pub pollers: usize,
    /// Messages per receive, 1 to 10.
    #[serde(default = "defaults::max_messages")]
    pub max_messages: i32,
    /// Long-poll wait, 0 to 20 seconds.
    #[serde(default = "defaults::wait_time_seconds")]
    pub wait_time_seconds: i32,
    /// Visibility timeout set on receipt and extended while a message is being handled.
    #[serde(default = "defaults::visibility_timeout_seconds")]
    pub visibility_timeout_seconds: i32,
}

/// `type: azure_service_bus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBusConfig {
    /// The namespace's short name (`<namespace>.servicebus.windows.net`).
    pub namespace: String,
    /// The queue.
    pub queue: String,
    /// `workload_identity` or `sas`.
    pub auth: ServiceBusAuth,
    /// With `auth: sas`, the connection string (use `${VAR}`).
    #[serde(default)]
    pub connection_string: Option<String>,
    /// Concurrent peek-lock receive loops (the REST protocol locks one message per request).
    #[serde(default = "defaults::receivers")]
    pub receivers: usize,
    /// How long one receive request waits for a message before the queue answers 204.
    #[serde(default = "defaults::servicebus_wait_seconds")]
    pub wait_time_seconds: u64,
    /// Sends every request to this base URL instead of `https://<namespace>.servicebus.windows.net`
    /// (a private endpoint or a local test server); path and query are kept.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// With `auth: workload_identity`: the Entra application (client) id; by default
    /// `AZURE_CLIENT_ID`, which the AKS workload identity webhook injects.
    #[serde(default)]
    pub client_id: Option<String>,
    /// With `auth: workload_identity`: the tenant; by default `AZURE_TENANT_ID`.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// With `auth: workload_identity`: the projected service account token; by default
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    #[serde(default)]
    pub token_file: Option<String>,
    /// With `auth: workload_identity`: the Entra authority; by default `AZURE_AUTHORITY_HOST`, else
    /// `https://login.microsoftonline.com/`.
    #[serde(default)]
    pub authority_host: Option<String>,
}

/// How the Service Bus source authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceBusAuth {
    /// Microsoft Entra workload identity (AKS).
    WorkloadIdentity,
    /// A shared access signature from a connection string.
    Sas,
}

/// `type: gcp_pubsub`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// `projects/<project>/subscriptions/<subscription>`.
    pub subscription: String,
    /// The Pub/Sub endpoint. By default `http://$PUBSUB_EMULATOR_HOST` when that variable is
    /// set (with anonymous credentials), else Google's endpoint with Application Default
    /// Credentials (GKE Workload Identity).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Flow control: messages leased to the router at once.
    #[serde(default = "defaults::max_outstanding_messages")]
    pub max_outstanding_messages: i64,
    /// The longest a message's lease is extended while it is being handled.
    #[serde(default = "defaults::max_lease_seconds")]
    pub max_lease_seconds: u64,
    /// How often the subscription is checked with a lightweight admin call; a failed check
    /// marks the source not ready and, once it passes again, reopens the stream.
    #[serde(default = "defaults::health_check_seconds")]
    pub health_check_seconds: u64,
}

/// `type: http_ingest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {}

/// `type: azure_event_grid_webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventGridWebhookConfig {
    /// The shared secret Event Grid presents, as the `code` query parameter or the
    /// `X-Eviction-Router-Secret` header (use `${VAR}`).
    pub secret: String,
    /// Larger bodies are refused with 413.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
}

/// `router:` — how deliveries are handled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Messages waiting for a handler before sources stop receiving.
    pub queue_capacity: usize,
    /// How long a handled `(source, id)` is remembered.
    pub dedupe_window_seconds: u64,
    /// How many handled ids are remembered at most.
    pub dedupe_capacity: usize,
    /// Longest a message may take; past it the outcome is retry.
    pub message_timeout_seconds: u64,
    /// On SIGTERM, how long in-flight messages may take before they are released.
    pub shutdown_grace_seconds: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            concurrency: 64,
            queue_capacity: 1024,
            dedupe_window_seconds: 600,
            dedupe_capacity: 100_000,
            message_timeout_seconds: 90,
            shutdown_grace_seconds: 20,
        }
    }
}

impl RouterConfig {
    /// `dedupe_window_seconds` as a duration.
    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_window_seconds)
    }

    /// `message_timeout_seconds` as a duration.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_secs(self.message_timeout_seconds)
    }

    /// `shutdown_grace_seconds` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

/// One stream sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// One JSON line per event on standard output.
    Stdout,
    /// CloudEvents (structured mode) POSTed to a URL.
    Webhook(WebhookSinkConfig),
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
    /// Header carrying `sha256=<hex HMAC of the body>`.
    #[serde(default = "defaults::signature_header")]
    pub signature_header: String,
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

/// `server:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP server.
    pub listen: SocketAddr,
    /// How long a source may stay unhealthy before `/readyz` reports not ready.
    pub readiness_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            readiness_grace_seconds: 60,
        }
    }
}

/// `log:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json`, `pretty`, or `auto` (pretty on a terminal, JSON otherwise).
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

mod defaults {
    pub fn pollers() -> usize {
        2
    }
    pub fn max_messages() -> i32 {
        10
    }
    pub fn wait_time_seconds() -> i32 {
        20
    }
    pub fn visibility_timeout_seconds() -> i32 {
        60
    }
    pub fn signature_header() -> String {
        "X-Eviction-Router-Signature".into()
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
    pub fn receivers() -> usize {
        4
    }
    pub fn servicebus_wait_seconds() -> u64 {
        30
    }
    pub fn max_outstanding_messages() -> i64 {
        100
    }
    pub fn max_lease_seconds() -> u64 {
        600
    }
    pub fn health_check_seconds() -> u64 {
        10
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
}

impl Config {
    /// Reads, expands and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, |name| std::env::var(name).ok())
    }

    /// The configuration `run` uses when given none.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(EMBEDDED_DEFAULT, |name| std::env::var(name).ok())
    }

    /// Expands `${VAR}` with `env`, parses and validates `text`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let expanded = expand_env(text, env)?;
        let config: Config = serde_norway::from_str(&expanded)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err((key, message)) = self.cluster.validate() {
            return Err(ConfigError::invalid(format!("cluster.{key}"), message));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::invalid(
                "sources",
                "at least one source is required",
            ));
        }
        for (i, source) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            match source {
                SourceConfig::AwsSqs(sqs) => {
                    if !sqs.queue_url.starts_with("http://")
                        && !sqs.queue_url.starts_with("https://")
                    {
                        return Err(ConfigError::invalid(
                            key("queue_url"),
                            "must be an http(s) URL",
                        ));
                    }
                    if sqs.pollers == 0 || sqs.pollers > 64 {
                        return Err(ConfigError::invalid(key("pollers"), "must be 1 to 64"));
                    }
                    if !(1..=10).contains(&sqs.max_messages) {
                        return Err(ConfigError::invalid(key("max_messages"), "must be 1 to 10"));
                    }
                    if !(0..=20).contains(&sqs.wait_time_seconds) {
                        return Err(ConfigError::invalid(
                            key("wait_time_seconds"),
                            "must be 0 to 20",
                        ));
                    }
                    if !(2..=43_200).contains(&sqs.visibility_timeout_seconds) {
                        return Err(ConfigError::invalid(
                            key("visibility_timeout_seconds"),
                            "must be 2 to 43200",
                        ));
                    }
                }
                SourceConfig::AzureServiceBus(sb) => {
                    let is_name = |s: &str| {
                        !s.is_empty()
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-._~/$".contains(c))
                    };
                    if !is_name(&sb.namespace) || sb.namespace.contains('/') {
                        return Err(ConfigError::invalid(
                            key("namespace"),
                            "must be the namespace's short name, e.g. `my-namespace`",
                        ));
                    }
                    if !is_name(&sb.queue) {
                        return Err(ConfigError::invalid(key("queue"), "must be a queue name"));
                    }
                    match (sb.auth, &sb.connection_string) {
                        (ServiceBusAuth::Sas, None) => {
                            return Err(ConfigError::invalid(
                                key("connection_string"),
                                "is required with auth: sas",
                            ));
                        }
                        (ServiceBusAuth::Sas, Some(cs)) => {
                            if let Err(why) = ConnectionString::parse(cs) {
                                return Err(ConfigError::invalid(key("connection_string"), why));
                            }
                        }
                        (ServiceBusAuth::WorkloadIdentity, _) => {}
                    }
                    if sb.receivers == 0 || sb.receivers > 64 {
                        return Err(ConfigError::invalid(key("receivers"), "must be 1 to 64"));
                    }
                    if !(1..=230).contains(&sb.wait_time_seconds) {
                        return Err(ConfigError::invalid(
                            key("wait_time_seconds"),
                            "must be 1 to 230",
                        ));
                    }
                    for (k, url) in [
                        ("endpoint", &sb.endpoint),
                        ("authority_host", &sb.authority_host),
                    ] {
                        if let Some(url) = url
                            && !url.starts_with("http://")
                            && !url.starts_with("https://")
                        {
                            return Err(ConfigError::invalid(key(k), "must be an http(s) URL"));
                        }
                    }
                }
                SourceConfig::GcpPubsub(ps) => {
                    let parts: Vec<&str> = ps.subscription.split('/').collect();
                    if parts.len() != 4
                        || parts[0] != "projects"
                        || parts[2] != "subscriptions"
                        || parts[1].is_empty()
                        || parts[3].is_empty()
                    {
                        return Err(ConfigError::invalid(
                            key("subscription"),
                            "must be projects/<project>/subscriptions/<subscription>",
                        ));
                    }
                    if let Some(url) = &ps.endpoint
                        && !url.starts_with("http://")
                        && !url.starts_with("https://")
                    {
                        return Err(ConfigError::invalid(
                            key("endpoint"),
                            "must be an http(s) URL",
                        ));
                    }
                    if !(1..=100_000).contains(&ps.max_outstanding_messages) {
                        return Err(ConfigError::invalid(
                            key("max_outstanding_messages"),
                            "must be 1 to 100000",
                        ));
                    }
                    if !(10..=86_400).contains(&ps.max_lease_seconds) {
                        return Err(ConfigError::invalid(
                            key("max_lease_seconds"),
                            "must be 10 to 86400",
                        ));
                    }
                    if !(1..=300).contains(&ps.health_check_seconds) {
                        return Err(ConfigError::invalid(
                            key("health_check_seconds"),
                            "must be 1 to 300",
                        ));
                    }
                }
                SourceConfig::HttpIngest(_) => {}
                SourceConfig::AzureEventGridWebhook(w) => {
                    if w.secret.len() < 16 {
                        return Err(ConfigError::invalid(
                            key("secret"),
                            "must be at least 16 characters",
                        ));
                    }
                    if !(1024..=16 * 1024 * 1024).contains(&w.max_body_bytes) {
                        return Err(ConfigError::invalid(
                            key("max_body_bytes"),
                            "must be 1024 to 16777216",
                        ));
                    }
                }
            }
        }
        let r = &self.router;
        if r.concurrency == 0 {
            return Err(ConfigError::invalid(
                "router.concurrency",
                "must be at least 1",
            ));
        }
        if r.queue_capacity == 0 {
            return Err(ConfigError::invalid(
                "router.queue_capacity",
                "must be at least 1",
            ));
        }
        if r.message_timeout_seconds == 0 {
            return Err(ConfigError::invalid(
                "router.message_timeout_seconds",
                "must be at least 1",
            ));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if let SinkConfig::Webhook(w) = sink {
                let key = |k: &str| format!("sinks[{i}].{k}");
                let url = reqwest::Url::parse(&w.url)
                    .map_err(|e| ConfigError::invalid(key("url"), e.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError::invalid(key("url"), "must be an http(s) URL"));
                }
                if w.secret_env.is_some() && w.secret_file.is_some() {
                    return Err(ConfigError::invalid(
                        key("secret_env"),
                        "set secret_env or secret_file, not both",
                    ));
                }
                if w.max_attempts == 0 {
                    return Err(ConfigError::invalid(
                        key("max_attempts"),
                        "must be at least 1",
                    ));
                }
                if w.queue_capacity == 0 {
                    return Err(ConfigError::invalid(
                        key("queue_capacity"),
                        "must be at least 1",
                    ));
                }
                for (name, value) in &w.headers {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(value).is_err()
                    {
                        return Err(ConfigError::invalid(
                            key(&format!("headers.{name}")),
                            "is not a valid HTTP header",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Replaces `${NAME}` with `env(NAME)`; `$${` stands for a literal `${`.
fn expand_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            if rest[..at].ends_with('$') {
                out.push_str(&rest[..at - 1]);
                out.push_str("${");
                rest = &rest[at + 2..];
                continue;
            }
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or(ConfigError::UnclosedEnv { line: n + 1 })?;
            let name = &after[..end];
            // A comment is not configuration: leave references in it alone.
            if out
                .rsplit('\n')
                .next()
                .is_some_and(|l| l.trim_start().starts_with('#'))
            {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            } else {
                let value = env(name).ok_or_else(|| ConfigError::MissingEnv {
                    name: name.to_owned(),
                    line: n + 1,
                })?;
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The parts of a Service Bus connection string the SAS signer needs
/// (`Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=<name>;SharedAccessKey=<key>`,
/// optionally `;EntityPath=<queue>`).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `Endpoint`.
    pub endpoint: String,
    /// `SharedAccessKeyName`.
    pub key_name: String,
    /// `SharedAccessKey`.
    pub key: String,
    /// `EntityPath`, when the key is scoped to one queue.
    pub entity_path: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ConnectionString {
    /// Parses `Key=Value;...`; the error says what is missing, never the key itself.
    pub fn parse(s: &str) -> Result<ConnectionString, &'static str> {
        let (mut endpoint, mut key_name, mut key, mut entity_path) = (None, None, None, None);
        for part in s.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err("must be `Key=Value` pairs separated by `;`");
            };
            let v = v.trim().to_owned();
            match k.trim() {
                "Endpoint" => endpoint = Some(v),
                "SharedAccessKeyName" => key_name = Some(v),
                "SharedAccessKey" => key = Some(v),
                "EntityPath" => entity_path = Some(v),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or("has no `Endpoint=`")?;
        if !endpoint.starts_with("sb://") {
            return Err("`Endpoint` must be an sb:// URL");
        }
        Ok(ConnectionString {
            endpoint,
            key_name: key_name.ok_or("has no `SharedAccessKeyName=`")?,
            key: key.ok_or("has no `SharedAccessKey=`")?,
            entity_path,
        })
    }

    /// The namespace's short name, from `sb://<namespace>.servicebus.windows.net/`.
    pub fn namespace(&self) -> Option<&str> {
        let host = self.endpoint.strip_prefix("sb://")?.split('/').next()?;
        host.split('.').next().filter(|n| !n.is_empty())
    }
}
