//! Liveness and readiness: each source reports whether it can reach its queue; `/readyz` fails
//! once one has been failing for longer than the grace period, so a router that cannot receive
//! is visible rather than silently idle.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Component health, shared by the sources and the HTTP server.
#[derive(Debug)]
pub struct Health {
    grace: Duration,
    components: Mutex<BTreeMap<String, State>>,
}

#[derive(Debug, Clone)]
struct State {
    failing_since: Option<Instant>,
    last_error: Option<String>,
    /// This component's own grace, instead of the default one.
    grace: Option<Duration>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether every component is usable.
    pub ready: bool,
    /// One line per component.
    pub lines: Vec<String>,
}

impl Health {
    /// Components failing longer than `grace` make the router not ready.
    pub fn new(grace: Duration) -> Self {
        Health {
            grace,
            components: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers a component not yet known to work: counted as failing from now, so one that
    /// never connects turns the router not ready once the grace period has passed.
    pub fn register(&self, name: &str) {
        self.register_inner(name, None);
    }

    /// [`Health::register`] with a grace of the component's own.
    pub fn register_with_grace(&self, name: &str, grace: Duration) {
        self.register_inner(name, Some(grace));
    }

    fn register_inner(&self, name: &str, grace: Option<Duration>) {
        self.with(|c| {
            c.entry(name.to_owned()).or_insert(State {
                failing_since: Some(Instant::now()),
                last_error: Some("not yet connected".into()),
                grace,
            });
        });
    }

    /// Forgets a component (a source that stopped receiving, on a replica that stepped down).
    pub fn remove(&self, name: &str) {
        self.with(|c| {
            c.remove(name);
        });
    }

    /// The component works.
    pub fn ok(&self, name: &str) {
        self.with(|c| {
            let state = c.entry(name.to_owned()).or_insert(State {
                failing_since: None,
                last_error: None,
                grace: None,
            });
            state.failing_since = None;
            state.last_error = None;
        });
    }

    /// The component failed; it stays ready until it has failed for the grace period.
    pub fn failed(&self, name: &str, error: &dyn std::fmt::Display) {
        self.with(|c| {
            let state = c.entry(name.to_owned()).or_insert(State {
                failing_since: None,
                last_error: None,
                grace: None,
            });
            state.failing_since.get_or_insert_with(Instant::now);
            state.last_error = Some(error.to_string());
        });
    }

    /// The readiness at `now`.
    pub fn readiness(&self, now: Instant) -> Readiness {
        self.with(|c| {
            let mut ready = true;
            let mut lines = Vec::with_capacity(c.len());
            for (name, state) in c.iter() {
                match state.failing_since {
                    None => lines.push(format!("{name}: ok")),
                    Some(since) => {
                        let failing = now.saturating_duration_since(since);
                        let error = state.last_error.as_deref().unwrap_or("unknown error");
                        if failing >= state.grace.unwrap_or(self.grace) {
                            ready = false;
                            lines.push(format!(
                                "{name}: failing for {}s: {error}",
                                failing.as_secs()
                            ));
                        } else {
                            lines.push(format!(
                                "{name}: degraded for {}s: {error}",
                                failing.as_secs()
                            ));
                        }
                    }
                }
            }
            Readiness { ready, lines }
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, State>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        let mut guard = self.components.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_failing_past_the_grace_makes_the_router_not_ready() {
        let h = Health::new(Duration::from_secs(60));
        let t0 = Instant::now();
        h.ok("aws_sqs");
        assert!(h.readiness(t0).ready);
        h.failed("aws_sqs", &"connection refused");
        assert!(
            h.readiness(t0 + Duration::from_secs(30)).ready,
            "within the grace"
        );
        let r = h.readiness(t0 + Duration::from_secs(61));
        assert!(!r.ready);
        assert!(r.lines[0].contains("connection refused"), "{:?}", r.lines);
        h.ok("aws_sqs");
        assert!(h.readiness(t0 + Duration::from_secs(62)).ready);
    }

    #[test]
    fn a_component_with_its_own_grace_fails_readiness_sooner() {
        let h = Health::new(Duration::from_secs(60));
        let t0 = Instant::now();
        h.register_with_grace("kubernetes", Duration::from_secs(10));
        h.ok("kubernetes");
        h.ok("aws_sqs");
        h.failed("kubernetes", &"cannot reach the API server");
        h.failed("aws_sqs", &"refused");
        let r = h.readiness(t0 + Duration::from_secs(11));
        assert!(!r.ready);
        assert!(
            r.lines
                .iter()
                .any(|l| l.starts_with("kubernetes: failing for")),
            "{r:?}"
        );
        assert!(
            r.lines.iter().any(|l| l.starts_with("aws_sqs: degraded")),
            "the other keeps the default grace: {r:?}"
        );
        h.ok("kubernetes");
        assert!(h.readiness(t0 + Duration::from_secs(12)).ready);
    }

    #[test]
    fn a_registered_component_that_never_connects_becomes_not_ready() {
        let h = Health::new(Duration::from_secs(10));
        let t0 = Instant::now();
        h.register("gcp_pubsub");
        assert!(h.readiness(t0).ready);
        assert!(!h.readiness(t0 + Duration::from_secs(11)).ready);
    }
}
