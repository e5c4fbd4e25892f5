//! `GET /v1/events`: the normalised stream as Server-Sent Events, from the SSE sink's
//! [`EventHub`].
//!
//! - `?kind=interruption,termination` and `?provider=aws,gcp` filter (an unknown value is 400).
//! - Each event is `id: <boot>-<seq>`, `event: <CloudEvents type>`, `data: <structured JSON>`; a
//!   client that reconnects with `Last-Event-ID` (or `?last_event_id=`) gets what it missed
//!   from the ring, then the live events, each once. A resume from before the ring starts with
//!   a comment saying how many events it missed.
//! - A comment line (`: heartbeat`) after `heartbeat_seconds` without an event.
//! - At most `max_subscribers` at once; beyond, 503 with `Retry-After`. The response is marked
//!   [`LongLived`]: the listener counts the connection as busy while it streams, so neither the
//!   idle timeout nor eviction at the connection limit ends it, and the limit of subscribers
//!   (at most half of `server.max_connections`) leaves room for probes and ingest.
//! - A subscriber that falls `subscriber_buffer` events behind is cut off (its stream ends; it
//!   may resume); publishing never waits for a subscriber.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::conn::LongLived;
use crate::event::{Kind, Provider};
use crate::sinks::sse::{EventHub, Filter, Item, SubscribeError, Subscription};

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Comma-separated kinds; none: all.
    pub kind: Option<String>,
    /// Comma-separated providers; none: all.
    pub provider: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    pub last_event_id: Option<String>,
}

fn list<T: std::str::FromStr>(value: Option<&str>) -> Result<Vec<T>, T::Err> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// The handler.
pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(hub) = state.events else {
        return (StatusCode::NOT_FOUND, "the sse sink is not configured\n").into_response();
    };
    if let Some(token) = hub.token() {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|p| token.matches(p)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    let filter = match (
        list::<Kind>(query.kind.as_deref()),
        list::<Provider>(query.provider.as_deref()),
    ) {
        (Ok(kinds), Ok(providers)) => Filter { kinds, providers },
        (Err(e), _) => return (StatusCode::BAD_REQUEST, format!("kind: {e}\n")).into_response(),
        (_, Err(e)) => {
            return (StatusCode::BAD_REQUEST, format!("provider: {e}\n")).into_response();
        }
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let subscription = match hub.subscribe(filter, last.as_deref()) {
        Ok(s) => s,
        Err(e @ (SubscribeError::Full(_) | SubscribeError::Closed)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
                format!("{e}\n"),
            )
                .into_response();
        }
    };
    let mut response = (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Tells nginx-style proxies not to buffer the stream.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(stream(hub, subscription)),
    )
        .into_response();
    response.extensions_mut().insert(LongLived);
    response
}

fn frame(hub: &EventHub, item: &Item) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        hub.event_id(item),
        item.ty,
        item.json
    ))
}

struct Streaming {
    hub: Arc<EventHub>,
    sub: Subscription,
    opening: Option<Bytes>,
}

/// The frames: an opening comment (with the reconnect delay and any gap), the backlog, then the
/// live events and heartbeats until the subscription ends.
fn stream(
    hub: Arc<EventHub>,
    sub: Subscription,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut opening = String::from(": eviction-router events\nretry: 2000\n");
    if sub.missed > 0 {
        opening.push_str(&format!(
            ": {} events were older than the ring and are missed\n",
            sub.missed
        ));
    }
    opening.push('\n');
    let state = Streaming {
        hub,
        sub,
        opening: Some(Bytes::from(opening)),
    };
    futures::stream::unfold(state, |mut s| async move {
        if let Some(opening) = s.opening.take() {
            return Some((Ok(opening), s));
        }
        if !s.sub.backlog.is_empty() {
            // A few events per frame: the backlog can be a whole ring.
            let mut out = Vec::new();
            let batch: VecDeque<_> = s.sub.backlog.drain(..s.sub.backlog.len().min(64)).collect();
            for item in batch {
                out.extend_from_slice(&frame(&s.hub, &item));
            }
            return Some((Ok(Bytes::from(out)), s));
        }
        let heartbeat = s.hub.heartbeat;
        tokio::select! {
            item = s.sub.live.recv() => {
                let item = item?;
                let bytes = frame(&s.hub, &item);
                Some((Ok(bytes), s))
            }
            _ = tokio::time::sleep(heartbeat) => {
                if s.sub.hub_closed() {
                    return None;
                }
                Some((Ok(Bytes::from_static(b": heartbeat\n\n")), s))
            }
        }
    })
}
