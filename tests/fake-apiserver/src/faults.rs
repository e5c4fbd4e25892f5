//! Fault injection and the request log.

use http::Method;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Shared;
use crate::error::ApiError;

/// One request as the fake saw it, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when there is none).
    pub query: String,
    pub content_type: Option<String>,
    /// The HTTP status the fake answered (200 for a watch that started).
    pub status: u16,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    InternalError,
    Throttle { retry_after_secs: u64 },
}

#[derive(Debug)]
struct Rule {
    method: Option<Method>,
    path_prefix: String,
    remaining: u32,
    action: Action,
}

#[derive(Debug, Default)]
struct State {
    latency: Duration,
    rules: Vec<Rule>,
    log: Vec<RequestRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState(Mutex<State>);

impl FaultState {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latency to add, and an injected failure if a rule matches this request.
    pub(crate) fn before(&self, method: &Method, path: &str) -> (Duration, Option<ApiError>) {
        let mut state = self.lock();
        let latency = state.latency;
        let rule = state.rules.iter_mut().find(|r| {
            r.remaining > 0
                && r.method.as_ref().is_none_or(|m| m == method)
                && path.starts_with(&r.path_prefix)
        });
        let injected = rule.map(|r| {
            r.remaining -= 1;
            match r.action {
                Action::InternalError => ApiError::internal("injected fault"),
                // apiserver: API priority and fairness answers 429 with Retry-After
                // (k8s.io/apiserver/pkg/server/filters/maxinflight.go tooManyRequests).
                Action::Throttle { retry_after_secs } => ApiError::too_many_requests(
                    "Too many requests, please try again later.",
                    retry_after_secs,
                    Vec::new(),
                ),
            }
        });
        state.rules.retain(|r| r.remaining > 0);
        (latency, injected)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        self.lock().log.push(record);
    }

    pub(crate) fn log(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    pub(crate) fn clear_log(&self) {
        self.lock().log.clear();
    }
}

/// Runtime fault injection for one [`crate::FakeApiServer`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

fn parse_method(method: &str) -> Option<Method> {
    match method {
        "" | "*" => None,
        m => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok(),
    }
}

impl Faults {
    /// Delays every later request (including the start of a watch) by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.lock().latency = latency;
    }

    /// The next `n` requests with this method (`"*"` for any) whose path starts with
    /// `path_prefix` fail with 500 InternalError.
    pub fn fail_next(&self, method: &str, path_prefix: &str, n: u32) {
        self.add(method, path_prefix, n, Action::InternalError);
    }

    /// The next `n` matching requests answer 429 TooManyRequests with `Retry-After`.
    pub fn throttle_next(&self, method: &str, path_prefix: &str, n: u32, retry_after: Duration) {
        let retry_after_secs = retry_after.as_secs().max(1);
        self.add(
            method,
            path_prefix,
            n,
            Action::Throttle { retry_after_secs },
        );
    }

    fn add(&self, method: &str, path_prefix: &str, n: u32, action: Action) {
        let rule = Rule {
            method: parse_method(method),
            path_prefix: path_prefix.to_string(),
            remaining: n,
            action,
        };
        self.shared.faults.lock().rules.push(rule);
    }

    /// Ends every open watch stream (the response body finishes), as a restarted apiserver or a
    /// broken connection would; clients re-watch from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.watch_epoch.send_modify(|e| *e += 1);
    }

    /// How many changes the fake retains for watches. A watch from an RV older than the
    /// retained history gets a 410 Gone (reason Expired) ERROR event. 0 keeps none.
    pub fn set_watch_retention(&self, changes: usize) {
        self.shared.store().set_retention(changes);
        // Wake watches so the ones now behind the history see the 410.
        self.shared.changes.send_modify(|_| {});
    }

    /// Removes latency and every pending failure rule.
    pub fn clear(&self) {
        let mut state = self.shared.faults.lock();
        state.latency = Duration::ZERO;
        state.rules.clear();
    }
}
