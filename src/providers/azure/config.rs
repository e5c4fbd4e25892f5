//! The settings of the Azure sources (Service Bus, Event Grid webhook) and their validation.

use serde::Deserialize;

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

impl ServiceBusConfig {
    /// Checks names, authentication and ranges; on error, the offending key (relative to the
    /// source) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let is_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~/$".contains(c))
        };
        if !is_name(&self.namespace) || self.namespace.contains('/') {
            return Err((
                "namespace",
                "must be the namespace's short name, e.g. `my-namespace`",
            ));
        }
        if !is_name(&self.queue) {
            return Err(("queue", "must be a queue name"));
        }
        match (self.auth, &self.connection_string) {
            (ServiceBusAuth::Sas, None) => {
                return Err(("connection_string", "is required with auth: sas"));
            }
            (ServiceBusAuth::Sas, Some(cs)) => {
                if let Err(why) = ConnectionString::parse(cs) {
                    return Err(("connection_string", why));
                }
            }
            (ServiceBusAuth::WorkloadIdentity, _) => {}
        }
        if self.receivers == 0 || self.receivers > 64 {
            return Err(("receivers", "must be 1 to 64"));
        }
        if !(1..=230).contains(&self.wait_time_seconds) {
            return Err(("wait_time_seconds", "must be 1 to 230"));
        }
        for (k, url) in [
            ("endpoint", &self.endpoint),
            ("authority_host", &self.authority_host),
        ] {
            if let Some(url) = url
                && !url.starts_with("http://")
                && !url.starts_with("https://")
            {
                return Err((k, "must be an http(s) URL"));
            }
        }
        Ok(())
    }
}

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

impl EventGridWebhookConfig {
    /// Checks the secret and the body limit; on error, the offending key (relative to the
    /// source) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.secret.len() < 16 {
            return Err(("secret", "must be at least 16 characters"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(("max_body_bytes", "must be 1024 to 16777216"));
        }
        Ok(())
    }
}

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

mod defaults {
    pub fn receivers() -> usize {
        4
    }
    pub fn servicebus_wait_seconds() -> u64 {
        30
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
}
