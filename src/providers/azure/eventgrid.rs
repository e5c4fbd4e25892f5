//! The Event Grid webhook source: Event Grid pushes to `/v1/eventgrid` on the router's HTTP
//! server, in the Event Grid schema or CloudEvents 1.0, one event or an array.
//!
//! - Authentication: a shared secret in the `code` query parameter (how the Terraform builds the
//!   endpoint URL) or the `X-Eviction-Router-Secret` header (an Event Grid delivery property),
//!   compared in constant time. Anything else is 401, before the body is read.
//! - The validation handshakes: an Event Grid schema `SubscriptionValidationEvent` is answered
//!   with `{"validationResponse": code}`; the CloudEvents abuse protection `OPTIONS` request
//!   with `WebHook-Request-Origin` is answered with `WebHook-Allowed-Origin`.
//! - Status codes Event Grid acts on ("Event Grid message delivery and retry": a webhook's 400,
//!   401, 403 and 413 are not retried but dead-lettered, or dropped without a dead-letter
//!   destination; other failures are retried with backoff): 200 handled or ignored; 400
//!   malformed, also a batch with malformed elements once its valid ones were acted on (decision
//!   record 0009), and a body that broke off; 413 over the size limit; 408 a body that did not
//!   arrive in time; 503 retry and 429 when the router's queue is full.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::config::EventGridWebhookConfig;
use crate::ack::{Delivery, Outcome};
use crate::event::Provider;
use crate::metrics::Metrics;

/// The header that may carry the secret instead of the query parameter.
pub const SECRET_HEADER: &str = "x-eviction-router-secret";

/// What the webhook handlers share.
#[derive(Clone)]
pub struct EventGrid {
    tx: mpsc::Sender<Delivery>,
    secret: Arc<[u8; 32]>,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EventGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventGrid")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// The query string Event Grid calls with.
#[derive(Debug, serde::Deserialize)]
pub struct Params {
    code: Option<String>,
}

impl EventGrid {
    /// Deliveries go to `tx`.
    pub fn new(
        config: &EventGridWebhookConfig,
        tx: mpsc::Sender<Delivery>,
        body_timeout: std::time::Duration,
        metrics: Arc<Metrics>,
    ) -> EventGrid {
        EventGrid {
            tx,
            secret: Arc::new(Sha256::digest(config.secret.as_bytes()).into()),
            max_body_bytes: config.max_body_bytes,
            body_timeout,
            metrics,
        }
    }

    /// Whether the request presents the secret. Both sides are hashed first, so the comparison
    /// takes the same time whatever the length or content of the guess.
    fn authorized(&self, params: &Params, headers: &HeaderMap) -> bool {
        let presented = params
            .code
            .as_deref()
            .map(str::as_bytes)
            .or_else(|| headers.get(SECRET_HEADER).map(HeaderValue::as_bytes));
        let Some(presented) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest
            .iter()
            .zip(self.secret.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn refuse(&self, outcome: &'static str, status: StatusCode, message: &str) -> Response {
        self.metrics
            .webhook_request(outcome, status.as_u16(), message);
        (status, format!("{message}\n")).into_response()
    }
}

/// `POST /v1/eventgrid`.
pub async fn post(
    State(grid): State<Option<EventGrid>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(grid) = grid else {
        return (
            StatusCode::NOT_FOUND,
            "the azure_event_grid_webhook source is not configured\n",
        )
            .into_response();
    };
    if !grid.authorized(&params, &headers) {
        let mut rsp = grid.refuse(
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "missing or wrong secret",
        );
        // The body is not read: the connection cannot carry another request.
        rsp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return rsp;
    }
    let body = match crate::server::read_body(
        &headers,
        body,
        grid.max_body_bytes,
        grid.body_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            // 413 only for a body over the limit: Event Grid does not retry it. A body that did
            // not arrive in time (408) or broke off (400) is counted as what it is.
            let mut rsp = grid.refuse(e.kind(), e.status(), &e.to_string());
            rsp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return rsp;
        }
    };
    if let Some(code) = super::payload::validation_code(&body) {
        grid.metrics
            .webhook_request("validated", 200, "Event Grid schema handshake");
        let answer = serde_json::json!({ "validationResponse": code }).to_string();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer,
        )
            .into_response();
    }
    let (delivery, pending) = Delivery::new(Provider::Azure, body, Timestamp::now(), None);
    match grid.tx.try_send(delivery) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            // Event Grid retries 429 with backoff: better than holding its connection.
            let mut rsp = grid.refuse(
                "busy",
                StatusCode::TOO_MANY_REQUESTS,
                "the router's queue is full",
            );
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return rsp;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return grid.refuse(
                "retry",
                StatusCode::SERVICE_UNAVAILABLE,
                "the router is shutting down",
            );
        }
    }
    let outcome = pending.outcome().await;
    let status = match outcome {
        Outcome::Handled | Outcome::Ignored => StatusCode::OK,
        Outcome::Poison => StatusCode::BAD_REQUEST,
        Outcome::Retry => StatusCode::SERVICE_UNAVAILABLE,
    };
    grid.metrics
        .webhook_request(outcome.as_str(), status.as_u16(), "");
    let body = format!("{{\"outcome\":\"{}\"}}\n", outcome.as_str());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `OPTIONS /v1/eventgrid`: the CloudEvents webhook abuse protection handshake (CloudEvents
/// "HTTP 1.1 Web Hooks for Event Delivery", section 4.2), which Event Grid performs for
/// CloudEvents subscriptions.
pub async fn options(
    State(grid): State<Option<EventGrid>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let Some(grid) = grid else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !grid.authorized(&params, &headers) {
        return grid.refuse(
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "missing or wrong secret",
        );
    }
    let Some(origin) = headers.get("webhook-request-origin").cloned() else {
        return grid.refuse(
            "poison",
            StatusCode::BAD_REQUEST,
            "an OPTIONS request needs WebHook-Request-Origin",
        );
    };
    grid.metrics
        .webhook_request("validated", 200, "CloudEvents handshake");
    (
        StatusCode::OK,
        [
            ("webhook-allowed-origin", origin),
            ("webhook-allowed-rate", HeaderValue::from_static("*")),
            (
                header::ALLOW.as_str(),
                HeaderValue::from_static("POST, OPTIONS"),
            ),
        ],
    )
        .into_response()
}
