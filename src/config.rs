//! The user's configuration: a strict YAML file with `${ENV_VAR}` expansion.
//!
//! Every section rejects unknown keys, so a typo is an error that names the key rather than a
//! setting silently ignored. `docs/configuration.md` documents every key; `examples/` holds
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
pub use crate::sinks::config::{SinkConfig, WebhookSinkConfig};
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
        for (i, sink) in self.sinks.iter().enumerate() {
            if let Err((key, message)) = sink.validate() {
                return Err(ConfigError::invalid(format!("sinks[{i}].{key}"), message));
            }
        }
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
