//! Watch streams: newline-delimited `{"type": …, "object": …}` JSON events.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Shared;
use crate::error::ApiError;
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind};

/// A parsed watch request.
#[derive(Debug)]
pub(crate) struct WatchRequest {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` for an unset or "0" resourceVersion: start with the current state.
    pub from: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
}

impl WatchRequest {
    fn matches(&self, obj: &Value) -> bool {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.namespace.as_deref().is_none_or(|want| want == ns)
            && self.labels.matches_object(obj)
            && self.fields.matches(obj)
    }

    /// The event a change produces for this watch, if any.
    // watch: an object entering the selector is ADDED, one leaving it is DELETED
    // (k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go convertToWatchEvent).
    fn event_for(&self, change: &Change) -> Option<Value> {
        if !change.def.is(self.def) {
            return None;
        }
        let now = change.kind != ChangeKind::Deleted && self.matches(&change.object);
        let before = match change.kind {
            ChangeKind::Added => false,
            ChangeKind::Deleted => self.matches(&change.object),
            ChangeKind::Modified => change.previous.as_ref().is_some_and(|p| self.matches(p)),
        };
        let kind = match (before, now) {
            (false, true) => "ADDED",
            (true, true) => "MODIFIED",
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        Some(event(kind, &change.object))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event(
            "BOOKMARK",
            &json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": metadata}),
        )
    }
}

fn event(kind: &str, object: &Value) -> Value {
    json!({"type": kind, "object": object})
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn expired(requested: u64, oldest: u64) -> Value {
    // watch: a too-old resourceVersion yields 410 Gone / reason Expired as an ERROR event
    // (k8s.io/apiserver/pkg/storage/etcd3/watcher.go, "too old resource version").
    let status = ApiError::expired(format!("too old resource version: {requested} ({oldest})"));
    event("ERROR", &status.to_status())
}

pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let mut changes = shared.changes.subscribe();
    let mut epochs = shared.watch_epoch.subscribe();
    changes.borrow_and_update();
    epochs.borrow_and_update();

    tokio::spawn(async move {
        let deadline = Instant::now() + req.timeout;
        let (mut last, initial) = {
            let store = shared.store();
            match req.from {
                // watch: resourceVersion unset or "0" starts with synthetic ADDED events for
                // the current state (k8s.io/apiserver/pkg/storage/cacher/cacher.go).
                None => {
                    let objs = store.list(req.def, req.namespace.as_deref());
                    let added = objs.into_iter().filter(|o| req.matches(o));
                    (store.rv(), added.map(|o| event("ADDED", o)).collect())
                }
                Some(rv) if rv < store.compacted_rv() => {
                    (rv, vec![expired(rv, store.compacted_rv() + 1)])
                }
                Some(rv) => (rv, Vec::new()),
            }
        };
        let failed = initial.first().is_some_and(|e| e["type"] == "ERROR");
        for ev in initial {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        if failed {
            return;
        }
        // watch: sendInitialEvents ends the initial state with an annotated bookmark (KEP-3157).
        if req.send_initial_events && tx.send(line(&req.bookmark(last, true))).await.is_err() {
            return;
        }
        loop {
            let batch = {
                let store = shared.store();
                let batch = store.changes_after(last);
                if batch.is_ok() {
                    let seen = store.rv();
                    (batch, seen)
                } else {
                    (batch, last)
                }
            };
            match batch {
                (Err(compacted), _) => {
                    let _ = tx.send(line(&expired(last, compacted + 1))).await;
                    return;
                }
                (Ok(list), seen) => {
                    for change in &list {
                        if let Some(ev) = req.event_for(change)
                            && tx.send(line(&ev)).await.is_err()
                        {
                            return;
                        }
                    }
                    last = seen;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = epochs.changed() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    // watch: the apiserver sends a bookmark before it ends a watch on timeout
                    // (cacher.go, bookmarks near the timeout), if the client allowed bookmarks.
                    if req.bookmarks {
                        let _ = tx.send(line(&req.bookmark(last, false))).await;
                    }
                    return;
                }
            }
        }
    });

    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|item| item.map(Ok::<Bytes, Infallible>))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
