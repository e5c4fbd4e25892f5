//! The queue operations the source needs, over `azure_messaging_servicebus` 0.21 (the legacy
//! REST crate). Everything crate-specific stays here, so an AMQP client can replace it without
//! touching the source loop or the router.
//!
//! The crate turns no status of a peek-lock into an error (an empty queue is `Ok` with 204, and
//! so are 401 and 410), so every status is checked here: docs/design.md §6 and the Service Bus
//! REST reference ("Peek-Lock Message (Non-Destructive Read)": 201 message, 204 none, 401
//! unauthorized, 410 queue does not exist, 403 quota exceeded, 429/503 throttled).

use std::sync::Arc;
use std::time::Duration;

use azure_messaging_servicebus::service_bus::{
    PeekLockResponse, QueueClient, SendMessageOptions, SettableBrokerProperties,
};

use super::transport::{EntraToken, Transport};
use crate::providers::azure::config::{ConnectionString, ServiceBusAuth, ServiceBusConfig};

/// A Service Bus call that failed. `kind()` is the metric-safe name.
#[derive(Debug, thiserror::Error)]
pub enum ServiceBusError {
    /// 401: the SAS key or the Entra token was refused.
    #[error("unauthorized (401): the SAS key or Entra token was refused{0}")]
    Unauthorized(Detail),
    /// 403: the identity lacks the rights, or a quota is exceeded.
    #[error(
        "forbidden (403): missing rights (Azure Service Bus Data Receiver/Sender) or quota exceeded{0}"
    )]
    Forbidden(Detail),
    /// 404: the namespace or the message lock is unknown.
    #[error("not found (404){0}")]
    NotFound(Detail),
    /// 410: the queue does not exist.
    #[error("gone (410): the queue does not exist{0}")]
    Gone(Detail),
    /// 429 or 503: throttled or busy.
    #[error("throttled ({0}){1}")]
    Throttled(u16, Detail),
    /// Another 5xx.
    #[error("server error ({0}){1}")]
    Server(u16, Detail),
    /// A status the protocol does not use here.
    #[error("unexpected status {0}{1}")]
    Unexpected(u16, Detail),
    /// A 201 without the headers that make it a locked message.
    #[error("a received message has no BrokerProperties or Location header")]
    MissingLock,
    /// The request did not complete (connection, timeout, token, malformed headers).
    #[error("{0}")]
    Transport(String),
}

impl ServiceBusError {
    /// A bounded label.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceBusError::Unauthorized(_) => "unauthorized",
            ServiceBusError::Forbidden(_) => "forbidden",
            ServiceBusError::NotFound(_) => "not_found",
            ServiceBusError::Gone(_) => "gone",
            ServiceBusError::Throttled(..) => "throttled",
            ServiceBusError::Server(..) => "server",
            ServiceBusError::Unexpected(..) => "unexpected",
            ServiceBusError::MissingLock => "missing_lock",
            ServiceBusError::Transport(_) => "transport",
        }
    }

    /// The error for an HTTP status that is not a success.
    pub fn from_status(status: u16, body: &str) -> ServiceBusError {
        let detail = Detail::of(body);
        match status {
            401 => ServiceBusError::Unauthorized(detail),
            403 => ServiceBusError::Forbidden(detail),
            404 => ServiceBusError::NotFound(detail),
            410 => ServiceBusError::Gone(detail),
            429 | 503 => ServiceBusError::Throttled(status, detail),
            500..=599 => ServiceBusError::Server(status, detail),
            _ => ServiceBusError::Unexpected(status, detail),
        }
    }

    fn from_core(e: azure_core::Error) -> ServiceBusError {
        match e.kind() {
            azure_core::error::ErrorKind::HttpResponse { status, error_code } => {
                ServiceBusError::from_status(
                    u16::from(*status),
                    error_code.as_deref().unwrap_or(""),
                )
            }
            _ => ServiceBusError::Transport(chain(&e)),
        }
    }
}

/// The first line of the service's explanation, if it gave one.
#[derive(Debug, Default)]
pub struct Detail(Option<String>);

impl Detail {
    fn of(body: &str) -> Detail {
        let line: String = body.trim().chars().take(300).collect();
        Detail((!line.is_empty()).then_some(line))
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(d) => write!(f, ": {d}"),
            None => Ok(()),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// Why the queue client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The connection string is malformed.
    #[error("connection_string {0}")]
    ConnectionString(&'static str),
    /// Workload identity is not configured.
    #[error(transparent)]
    Token(#[from] super::transport::TokenError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Transport(#[from] super::transport::TransportError),
    /// The crate refused the settings.
    #[error("cannot create the Service Bus client: {0}")]
    Client(String),
}

/// One queue, reached through the REST crate.
#[derive(Debug, Clone)]
pub struct Queue {
    client: QueueClient,
    wait: Duration,
}

/// A message under peek-lock.
pub struct Locked {
    /// The body as sent.
    pub body: String,
    /// `MessageId`.
    pub message_id: String,
    /// `DeliveryCount`: 1 at the first delivery.
    pub delivery_count: u32,
    /// How long the lock lasts from the receive on.
    pub lock_duration: Duration,
    lock: PeekLockResponse,
}

impl std::fmt::Debug for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("message_id", &self.message_id)
            .field("delivery_count", &self.delivery_count)
            .field("lock_duration", &self.lock_duration)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// A client for the configured queue and authentication.
    pub fn new(config: &ServiceBusConfig) -> Result<Queue, SetupError> {
        let wait = Duration::from_secs(config.wait_time_seconds);
        let token = match config.auth {
            ServiceBusAuth::WorkloadIdentity => Some(Arc::new(EntraToken::new(
                config.client_id.as_deref(),
                config.tenant_id.as_deref(),
                config.token_file.as_deref(),
                config.authority_host.as_deref(),
                |k| std::env::var(k).ok(),
            )?)),
            ServiceBusAuth::Sas => None,
        };
        // The crate always signs a SAS header; with workload identity the transport replaces it
        // by the bearer token, so the key is never used.
        let (key_name, key) = match (&config.auth, &config.connection_string) {
            (ServiceBusAuth::Sas, Some(cs)) => {
                let cs = ConnectionString::parse(cs).map_err(SetupError::ConnectionString)?;
                (cs.key_name, cs.key)
            }
            (ServiceBusAuth::Sas, None) => {
                return Err(SetupError::ConnectionString("is required with auth: sas"));
            }
            (ServiceBusAuth::WorkloadIdentity, _) => ("entra".to_owned(), "unused".to_owned()),
        };
        let transport = Transport::new(
            config.endpoint.as_deref(),
            token,
            wait + Duration::from_secs(15),
        )?;
        let client = QueueClient::new(
            Arc::new(transport),
            config.namespace.clone(),
            config.queue.clone(),
            key_name,
            key,
        )
        .map_err(|e| SetupError::Client(chain(&e)))?;
        Ok(Queue { client, wait })
    }

    /// Waits up to the configured time for a message and locks it; `None` when the queue
    /// stayed empty (204).
    pub async fn receive(&self) -> Result<Option<Locked>, ServiceBusError> {
        let rsp = self
            .client
            .peek_lock_message2(Some(self.wait))
            .await
            .map_err(ServiceBusError::from_core)?;
        let status = u16::from(*rsp.status());
        match status {
            201 | 200 => {}
            204 => return Ok(None),
            _ => return Err(ServiceBusError::from_status(status, &rsp.body())),
        }
        let props = rsp
            .broker_properties()
            .ok_or(ServiceBusError::MissingLock)?;
        let until_ns = props.locked_until_utc.unix_timestamp_nanos();
        let left_ns = until_ns - jiff::Timestamp::now().as_nanosecond();
        let lock_duration =
            Duration::from_nanos(u64::try_from(left_ns).unwrap_or(0)).max(Duration::from_secs(1));
        Ok(Some(Locked {
            body: rsp.body(),
            message_id: props.message_id,
            delivery_count: u32::try_from(props.delivery_count).unwrap_or(0),
            lock_duration,
            lock: rsp,
        }))
    }

    /// Completes (deletes) a locked message.
    pub async fn complete(&self, locked: &Locked) -> Result<(), ServiceBusError> {
        locked
            .lock
            .delete_message()
            .await
            .map(drop)
            .map_err(ServiceBusError::from_core)
    }

    /// Abandons (unlocks) a locked message: it is redelivered at once, `DeliveryCount` + 1, and
    /// moves to the dead-letter queue once the count passes the queue's MaxDeliveryCount.
    pub async fn abandon(&self, locked: &Locked) -> Result<(), ServiceBusError> {
        locked
            .lock
            .unlock_message()
            .await
            .map_err(ServiceBusError::from_core)
    }

    /// Renews the lock for another lock duration.
    pub async fn renew(&self, locked: &Locked) -> Result<(), ServiceBusError> {
        locked
            .lock
            .renew_message_lock()
            .await
            .map_err(ServiceBusError::from_core)
    }

    /// Sends a message (the `inject` drill).
    pub async fn send(&self, body: &str, message_id: &str) -> Result<(), ServiceBusError> {
        let options = SendMessageOptions {
            content_type: Some("application/json".into()),
            broker_properties: Some(SettableBrokerProperties {
                message_id: Some(message_id.to_owned()),
                ..Default::default()
            }),
            custom_properties: None,
        };
        self.client
            .send_message(body, Some(options))
            .await
            .map_err(ServiceBusError::from_core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_to_a_named_error() {
        for (status, kind) in [
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (410, "gone"),
            (429, "throttled"),
            (503, "throttled"),
            (500, "server"),
            (302, "unexpected"),
        ] {
            assert_eq!(
                ServiceBusError::from_status(status, "").kind(),
                kind,
                "{status}"
            );
        }
        let e = ServiceBusError::from_status(410, "<Error><Code>410</Code></Error>\n");
        assert_eq!(
            e.to_string(),
            "gone (410): the queue does not exist: <Error><Code>410</Code></Error>"
        );
    }
}
