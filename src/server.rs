//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, and, when their sources are configured,
//! `POST /v1/ingest/<provider>` and the Event Grid webhook `/v1/eventgrid`
//! ([`crate::providers::azure::eventgrid`]).
//!
//! Ingest answers with the message's outcome: 200 for handled or ignored, 400 for a malformed
//! body (poison), 413 over the size limit, 503 when it should be sent again (retry, or the router
//! is shutting down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router as Http;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            readiness_grace_seconds: 60,
        }
    }
}

/// `type: http_ingest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Component health for `/readyz`.
    pub health: Arc<Health>,
    /// Where ingested bodies go; `None` when `http_ingest` is not configured.
    pub ingest: Option<mpsc::Sender<Delivery>>,
    /// The Event Grid webhook; `None` when `azure_event_grid_webhook` is not configured.
    pub eventgrid: Option<EventGrid>,
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
        .route("/v1/ingest/{provider}", post(ingest))
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
    body: Bytes,
) -> Response {
    let Some(tx) = state.ingest else {
        return (
            StatusCode::NOT_FOUND,
            "the http_ingest source is not configured\n",
        )
            .into_response();
    };
    let provider = match provider.parse::<Provider>() {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    };
    let (delivery, pending) = Delivery::new(provider, body, Timestamp::now(), None);
    if tx.send(delivery).await.is_err() {
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
    let body = format!("{{\"outcome\":\"{}\"}}\n", outcome.as_str());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
