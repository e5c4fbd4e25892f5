//! The user's configuration: a strict YAML file with `${ENV_VAR}` expansion.
//!
//! The file is parsed first and `${VAR}` is expanded inside string values afterwards, so a
//! variable's value is only ever text: a newline, a ` #` or a quote in a secret stays in the
//! secret instead of ending it or writing another key. Every section rejects unknown keys, and
//! every error names the exact key path (`sources[0].pollers`), so a typo is an error that names
//! the key rather than a setting silently ignored. `docs/configuration.md` documents every key; `examples/` holds
//! commented configurations. [`Config::embedded_default`] is what `run` uses with no file.
//!
//! Each component's settings and their validation live with the component (a source's with its
//! cloud under [`crate::providers`], the router's, the sinks', the server's, the log's) and are
//! re-exported here; this module composes them and prefixes the key each one names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::cluster::config::{ClusterConfig, ClusterMode, LeaderElectionConfig};
pub use crate::providers::aws::config::SqsConfig;
pub use crate::providers::azure::config::{
    ConnectionString, EventGridWebhookConfig, ServiceBusAuth, ServiceBusConfig,
};
pub use crate::providers::gcp::config::PubSubConfig;
pub use crate::router::config::RouterConfig;
pub use crate::server::{HttpIngestConfig, ServerConfig};
pub use crate::sinks::config::{
    NatsMode, NatsSinkConfig, NatsTlsConfig, SinkConfig, SseSinkConfig, WebhookSinkConfig,
};
pub use crate::telemetry::{LogConfig, LogFormat};

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
    #[error("`{key}`: environment variable `{name}` is not set (write `$${{` for a literal `${{`)")]
    MissingEnv {
        /// The variable.
        name: String,
        /// The key whose value names it.
        key: String,
    },
    /// A `${` is not closed in its value.
    #[error("`{key}`: `${{` without a closing `}}` (write `$${{` for a literal `${{`)")]
    UnclosedEnv {
        /// The key whose value holds it.
        key: String,
    },
    /// The text is not YAML.
    #[error("{0}")]
    Yaml(#[from] serde_norway::Error),
    /// The YAML does not match the schema (unknown key, wrong type, missing key).
    #[error("`{key}`: {message}")]
    Schema {
        /// Where, as a path (`sources[0].pollers`; `.` for the whole file).
        key: String,
        /// What is wrong.
        message: String,
    },
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

/// One source of signals, chosen by its `type` ([`tagged`] reads it, so that an error inside an
/// entry names its key).
#[derive(Debug, Clone)]
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

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const TYPES: &[&str] = &[
            "aws_sqs",
            "azure_service_bus",
            "gcp_pubsub",
            "http_ingest",
            "azure_event_grid_webhook",
        ];
        let (ty, body) = tagged::split::<D>(d, TYPES)?;
        Ok(match ty.as_str() {
            "aws_sqs" => SourceConfig::AwsSqs(tagged::inner::<D, _>(body)?),
            "azure_service_bus" => SourceConfig::AzureServiceBus(tagged::inner::<D, _>(body)?),
            "gcp_pubsub" => SourceConfig::GcpPubsub(tagged::inner::<D, _>(body)?),
            "http_ingest" => SourceConfig::HttpIngest(tagged::inner::<D, _>(body)?),
            _ => SourceConfig::AzureEventGridWebhook(tagged::inner::<D, _>(body)?),
        })
    }
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

    /// Checks the source's settings; on error, the offending key (relative to the source) and
    /// what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        match self {
            SourceConfig::AwsSqs(sqs) => sqs.validate(),
            SourceConfig::AzureServiceBus(sb) => sb.validate(),
            SourceConfig::GcpPubsub(ps) => ps.validate(),
            SourceConfig::HttpIngest(h) => h.validate(),
            SourceConfig::AzureEventGridWebhook(w) => w.validate(),
        }
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

    /// Parses `text`, expands `${VAR}` in its string values with `env`, and validates it.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut value: serde_norway::Value = serde_norway::from_str(text)?;
        expand_values(&mut value, &env, &mut String::new())?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(schema_error)?;
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
            if let Err((key, message)) = source.validate() {
                return Err(ConfigError::invalid(format!("sources[{i}].{key}"), message));
            }
        }
        if let Err((key, message)) = self.router.validate() {
            return Err(ConfigError::invalid(format!("router.{key}"), message));
        }
        if let Err((key, message)) = self.server.validate() {
            return Err(ConfigError::invalid(format!("server.{key}"), message));
        }
        if let Err((key, message)) = cluster_bounds(&self.cluster) {
            return Err(ConfigError::invalid(format!("cluster.{key}"), message));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if let Err((key, message)) = sink.validate() {
                return Err(ConfigError::invalid(format!("sinks[{i}].{key}"), message));
            }
        }
        sse_bounds(&self.sinks, &self.server)?;
        Ok(())
    }
}

impl Config {
    /// Checks what depends on the address the server finally listens on (after `run --listen`):
    /// HTTP ingest beyond loopback needs a bearer token, since anyone who reaches the port could
    /// otherwise make the router drain any Node.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.server.listen.ip().is_loopback() {
            return Ok(());
        }
        for (i, source) in self.sources.iter().enumerate() {
            if let SourceConfig::HttpIngest(h) = source
                && h.token.is_none()
            {
                return Err(ConfigError::invalid(
                    format!("sources[{i}].token"),
                    format!(
                        "is required when the server listens beyond loopback ({}): every request to /v1/ingest must then carry `Authorization: Bearer <token>`",
                        self.server.listen
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One `sse` sink at most, and its subscribers (busy connections that are never evicted) at
/// most half of `server.max_connections`, so that probes, scrapes and ingest always find room.
fn sse_bounds(sinks: &[SinkConfig], server: &ServerConfig) -> Result<(), ConfigError> {
    let mut seen = false;
    for (i, sink) in sinks.iter().enumerate() {
        let SinkConfig::Sse(sse) = sink else { continue };
        if seen {
            return Err(ConfigError::invalid(
                format!("sinks[{i}].type"),
                "only one sse sink may be configured",
            ));
        }
        seen = true;
        if sse.max_subscribers > server.max_connections / 2 {
            return Err(ConfigError::invalid(
                format!("sinks[{i}].max_subscribers"),
                format!(
                    "must be at most half of server.max_connections ({}): every subscriber holds a connection",
                    server.max_connections
                ),
            ));
        }
    }
    Ok(())
}

/// The upper bounds of the cluster's durations, which `run` turns into timestamps and timers:
/// past them a value is a typo, and near `u64::MAX` it would overflow the arithmetic.
fn cluster_bounds(c: &ClusterConfig) -> Result<(), (&'static str, &'static str)> {
    const DAY: u64 = 86_400;
    if c.maintenance_lead_seconds > 30 * DAY {
        return Err((
            "maintenance_lead_seconds",
            "must be at most 2592000 (30 days)",
        ));
    }
    if c.replacement_timeout_seconds > 7 * DAY {
        return Err((
            "replacement_timeout_seconds",
            "must be at most 604800 (7 days)",
        ));
    }
    if c.drain_margin_seconds > 3_600 {
        return Err(("drain_margin_seconds", "must be at most 3600"));
    }
    if c.drain_timeout_seconds > DAY {
        return Err(("drain_timeout_seconds", "must be at most 86400"));
    }
    Ok(())
}

/// A deserialisation error, with the key path that `serde_path_to_error` tracked and the one a
/// tagged entry ([`tagged`]) adds inside it.
fn schema_error(e: serde_path_to_error::Error<serde_norway::Error>) -> ConfigError {
    let outer = e.path().to_string();
    let message = e.inner().to_string();
    let (key, message) = match tagged::unnest(&message) {
        Some((inner, message)) if outer == "." => (inner.to_owned(), message.to_owned()),
        Some((inner, message)) => (format!("{outer}.{inner}"), message.to_owned()),
        None => (outer, message),
    };
    ConfigError::Schema { key, message }
}

/// Expands `${NAME}` in every string value of `value` (not in mapping keys), `path` being the
/// key path of `value` for errors.
fn expand_values(
    value: &mut serde_norway::Value,
    env: &impl Fn(&str) -> Option<String>,
    path: &mut String,
) -> Result<(), ConfigError> {
    use serde_norway::Value;
    match value {
        Value::String(s) if s.contains("${") => {
            *s = expand_env(s, env, path)?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_values(item, env, path)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k.as_str() {
                    Some(k) => path.push_str(k),
                    None => path.push('?'),
                }
                expand_values(v, env, path)?;
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => expand_values(&mut tagged.value, env, path)?,
        _ => {}
    }
    Ok(())
}

/// Replaces `${NAME}` with `env(NAME)` in one value; `$${` stands for a literal `${`. The result
/// is not expanded again.
fn expand_env(
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or_else(|| ConfigError::UnclosedEnv {
            key: key.to_owned(),
        })?;
        let name = &after[..end];
        let value = env(name).ok_or_else(|| ConfigError::MissingEnv {
            name: name.to_owned(),
            key: key.to_owned(),
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Entries chosen by a `type` key (sources, sinks): read as YAML first, the `type` taken out,
/// the rest deserialised as the type's settings with its own key path, which the error carries
/// so that it can name `sources[0].pollers` rather than `sources[0]` (serde's internally tagged
/// enums buffer the entry and lose the path inside it).
pub(crate) mod tagged {
    use serde::Deserialize;
    use serde::de::Error as _;
    use serde_norway::Value;

    /// Separates the inner key path from the message in an error that crosses an entry.
    const NEST: char = '\u{1f}';

    /// The entry's `type`, one of `types`, and its other keys.
    pub(crate) fn split<'de, D: serde::Deserializer<'de>>(
        d: D,
        types: &'static [&'static str],
    ) -> Result<(String, Value), D::Error> {
        let value = Value::deserialize(d)?;
        let Value::Mapping(mut map) = value else {
            return Err(D::Error::custom("expected a mapping with a `type`"));
        };
        let ty = match map.remove("type") {
            Some(Value::String(ty)) => ty,
            Some(_) => return Err(D::Error::custom("`type` must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        if !types.contains(&ty.as_str()) {
            return Err(D::Error::unknown_variant(&ty, types));
        }
        Ok((ty, Value::Mapping(map)))
    }

    /// The entry's settings, an error naming the key inside the entry.
    pub(crate) fn inner<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
        body: Value,
    ) -> Result<T, D::Error> {
        serde_path_to_error::deserialize(body).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                D::Error::custom(e.inner())
            } else {
                D::Error::custom(format!("{NEST}{path}{NEST}{}", e.inner()))
            }
        })
    }

    /// An entry with no settings (`type: stdout`).
    pub(crate) fn empty<'de, D: serde::Deserializer<'de>>(body: Value) -> Result<(), D::Error> {
        match body {
            Value::Mapping(map) if map.is_empty() => Ok(()),
            Value::Mapping(map) => {
                let key = map
                    .keys()
                    .next()
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned();
                Err(D::Error::custom(format!(
                    "unknown field `{key}`, there are no fields"
                )))
            }
            _ => Err(D::Error::custom("expected a mapping")),
        }
    }

    /// The inner path and the message of an error made by [`inner`].
    pub(crate) fn unnest(message: &str) -> Option<(&str, &str)> {
        let rest = message.strip_prefix(NEST)?;
        rest.split_once(NEST)
    }
}

#[cfg(test)]
mod tests;
