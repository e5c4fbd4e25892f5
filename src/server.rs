//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, and, when their sources are configured,
//! `POST /v1/ingest/<provider>`, the Event Grid webhook `/v1/eventgrid`
//! ([`crate::providers::azure::eventgrid`]) and the live stream `GET /v1/events` ([`sse`]), on
//! the bounded listener of [`conn`].
//!
//! Ingest answers with the message's outcome: 200 for handled or ignored, 400 for a malformed
//! body (poison), 413 over the size limit, 503 when it should be sent again (retry, or the router
//! is shutting down). With a `token`, a request must carry `Authorization: Bearer <token>`;
//! without it, 401 before the body is read. A body must arrive within the body read timeout
//! (408 otherwise); a body that breaks off or is badly framed is 400.

pub mod conn;
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router as Http;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::ack::{Delivery, Outcome};
use crate::event::Provider;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::providers::MAX_MESSAGE_BYTES;
use crate::providers::azure::eventgrid::{self, EventGrid};

/// `server:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP server.
    pub listen: SocketAddr,
    /// How long a source may stay unhealthy before `/readyz` reports not ready.
    pub readiness_grace_seconds: u64,
    /// How long calls to the Kubernetes API server may fail before `/readyz` reports not ready.
    pub kubernetes_readiness_grace_seconds: u64,
    /// Connections open at once (further capped by the open-file limit).
    pub max_connections: usize,
    /// From accepting a connection to its first complete request head.
    pub header_read_timeout_seconds: u64,
    /// From a request head to the end of its body.
    pub body_read_timeout_seconds: u64,
    /// From a response to the next complete request head on a keep-alive connection.
    pub idle_timeout_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            readiness_grace_seconds: 60,
            kubernetes_readiness_grace_seconds: 10,
            max_connections: 512,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            idle_timeout_seconds: 60,
        }
    }
}

impl ServerConfig {
    /// Checks the ranges; on error, the offending key (relative to `server`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(("max_connections", "must be 1 to 65536"));
        }
        if !(1..=300).contains(&self.header_read_timeout_seconds) {
            return Err(("header_read_timeout_seconds", "must be 1 to 300"));
        }
        if !(1..=3_600).contains(&self.body_read_timeout_seconds) {
            return Err(("body_read_timeout_seconds", "must be 1 to 3600"));
        }
        if !(1..=3_600).contains(&self.idle_timeout_seconds) {
            return Err(("idle_timeout_seconds", "must be 1 to 3600"));
        }
        if self.readiness_grace_seconds > 86_400 {
            return Err(("readiness_grace_seconds", "must be at most 86400"));
        }
        if self.kubernetes_readiness_grace_seconds > 86_400 {
            return Err((
                "kubernetes_readiness_grace_seconds",
                "must be at most 86400",
            ));
        }
        Ok(())
    }

    /// The listener's bounds, the connection limit capped by the open-file limit `nofile`.
    pub fn limits(&self, nofile: Option<u64>) -> conn::Limits {
        conn::Limits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
        }
        .capped_by(nofile)
    }

    /// `body_read_timeout_seconds` as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_seconds)
    }
}

/// `type: http_ingest`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {
    /// The bearer token every request must carry (use `${VAR}`); required when the server
    /// listens beyond loopback.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for HttpIngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIngestConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HttpIngestConfig {
    /// The shortest token accepted, in bytes.
    pub const MIN_TOKEN_BYTES: usize = 16;

    /// Checks the token; on error, the offending key (relative to the source) and what is
    /// wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        match &self.token {
            Some(t) if t.len() < Self::MIN_TOKEN_BYTES => {
                Err(("token", "must be at least 16 characters"))
            }
            Some(t) if t.bytes().any(|b| !b.is_ascii_graphic()) => Err((
                "token",
                "must be printable ASCII without spaces (it travels in an HTTP header)",
            )),
            _ => Ok(()),
        }
    }
}

/// A shared secret kept as its SHA-256 digest, compared in constant time: both sides are hashed
/// first, so the comparison takes the same time whatever the length or content of the guess.
#[derive(Clone)]
pub struct Secret(Arc<[u8; 32]>);

impl Secret {
    /// The secret `value`.
    pub fn new(value: &[u8]) -> Secret {
        Secret(Arc::new(Sha256::digest(value).into()))
    }

    /// Whether `presented` is the secret.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The HTTP ingest source: where its bodies go, and the token it asks for.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// Where ingested bodies go.
    pub tx: mpsc::Sender<Delivery>,
    /// The bearer token, when one is configured.
    pub token: Option<Secret>,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit (by `Content-Length`, or as it arrived).
    #[error("the body exceeds {0} bytes")]
    TooLarge(usize),
    /// Not complete within the body read timeout.
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The client went away or framed the body badly (a broken chunked encoding, a short body).
    #[error("the body could not be read: {0}")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BodyError {
    /// The status to answer with: 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A bounded label: `too_large`, `body_timeout`, `broken_body`.
    pub fn kind(&self) -> &'static str {
        match self {
            BodyError::TooLarge(_) => "too_large",
            BodyError::Timeout(_) => "body_timeout",
            BodyError::Broken(_) => "broken_body",
        }
    }

    /// The answer: the status, `Connection: close` (what is left of the body is not read), and
    /// the reason.
    pub fn response(&self) -> Response {
        (
            self.status(),
            [(header::CONNECTION, HeaderValue::from_static("close"))],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`. A `Content-Length` over the
/// limit is refused before anything is read.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let collect = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        // `Limited` reports the limit as a `LengthLimitError` in its boxed error
        // (http-body-util 0.1, `limited.rs`); anything else came from the connection.
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(e)) => Err(BodyError::Broken(e)),
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Component health for `/readyz`.
    pub health: Arc<Health>,
    /// The HTTP ingest source; `None` when `http_ingest` is not configured.
    pub ingest: Option<Ingest>,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// The Event Grid webhook; `None` when `azure_event_grid_webhook` is not configured.
    pub eventgrid: Option<EventGrid>,
    /// The live stream of `GET /v1/events`; `None` when no `sse` sink is configured.
    pub events: Option<Arc<crate::sinks::EventHub>>,
}

impl FromRef<AppState> for Option<EventGrid> {
    fn from_ref(state: &AppState) -> Self {
        state.eventgrid.clone()
    }
}

/// The routes.
pub fn app(state: AppState) -> Http {
    Http::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/events", get(sse::events))
        // Its own body limit and timeout, checked after the token.
        .route(
            "/v1/ingest/{provider}",
            post(ingest).layer(DefaultBodyLimit::disable()),
        )
        // Its own body limit, checked after the secret.
        .route(
            "/v1/eventgrid",
            post(eventgrid::post)
                .options(eventgrid::options)
                .layer(DefaultBodyLimit::disable()),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.health.readiness(Instant::now());
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = if r.lines.is_empty() {
        "ok".to_owned()
    } else {
        r.lines.join("\n")
    };
    body.push('\n');
    (status, body).into_response()
}

async fn ingest(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(ingest) = state.ingest else {
        return (
            StatusCode::NOT_FOUND,
            "the http_ingest source is not configured\n",
        )
            .into_response();
    };
    if let Some(token) = &ingest.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|p| token.matches(p)) {
            state
                .metrics
                .ingest_request("unauthorized", StatusCode::UNAUTHORIZED.as_u16());
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
                    (header::CONNECTION, HeaderValue::from_static("close")),
                ],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    let provider = match provider.parse::<Provider>() {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    };
    let body = match read_body(&headers, body, MAX_MESSAGE_BYTES, state.body_read_timeout).await {
        Ok(body) => body,
        Err(e) => {
            state.metrics.ingest_request(e.kind(), e.status().as_u16());
            return e.response();
        }
    };
    let (delivery, pending) = Delivery::new(provider, body, Timestamp::now(), None);
    if ingest.tx.send(delivery).await.is_err() {
        state.metrics.ingest_request("retry", 503);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the router is shutting down\n",
        )
            .into_response();
    }
    let outcome = pending.outcome().await;
    let status = match outcome {
        Outcome::Handled | Outcome::Ignored => StatusCode::OK,
        Outcome::Poison => StatusCode::BAD_REQUEST,
        Outcome::Retry => StatusCode::SERVICE_UNAVAILABLE,
    };
    state
        .metrics
        .ingest_request(outcome.as_str(), status.as_u16());
    let body = format!("{{\"outcome\":\"{}\"}}\n", outcome.as_str());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
