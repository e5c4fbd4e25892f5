//! The metrics of ASG lifecycle actions: every `CompleteLifecycleAction` and
//! `RecordLifecycleActionHeartbeat` call by its outcome, written with its log line.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::cluster::lifecycle::{Answer, LifecycleAction, LifecycleError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallOutcome {
    call: &'static str,
    outcome: &'static str,
}

/// Registered by [`Metrics::new`].
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    calls: Family<CallOutcome, Counter>,
}

impl Lifecycle {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "lifecycle_calls",
            "ASG lifecycle calls by call (complete, heartbeat) and outcome (completed, no_active_action: the action was over already; unavailable, denied, refused, transport: failed, retried)",
            self.calls.clone(),
        );
    }
}

impl Metrics {
    /// The API answered a lifecycle call for the Node `node`.
    pub fn lifecycle_answer(
        &self,
        call: &'static str,
        answer: Answer,
        node: &str,
        action: &LifecycleAction,
    ) {
        let outcome = answer.as_str();
        self.lifecycle
            .calls
            .get_or_create(&CallOutcome { call, outcome })
            .inc();
        match (call, answer) {
            ("complete", Answer::Taken) => {
                tracing::info!(node = %node, instance = %action.instance_id, group = %action.group, hook = %action.hook, "Completed the ASG lifecycle action: the instance may terminate.")
            }
            ("complete", Answer::NoActiveAction) => {
                tracing::info!(node = %node, instance = %action.instance_id, group = %action.group, hook = %action.hook, "The ASG lifecycle action was already over (completed, timed out, or another token's); nothing to complete.")
            }
            (_, Answer::NoActiveAction) => {
                tracing::info!(node = %node, instance = %action.instance_id, group = %action.group, hook = %action.hook, "The ASG lifecycle action is over; no more heartbeats for it.")
            }
            _ => {
                tracing::debug!(node = %node, instance = %action.instance_id, "Recorded an ASG lifecycle heartbeat.")
            }
        }
    }

    /// A lifecycle call for the Node `node` failed (after the client's own retries).
    pub fn lifecycle_failed(&self, call: &'static str, error: &LifecycleError, node: &str) {
        self.lifecycle
            .calls
            .get_or_create(&CallOutcome {
                call,
                outcome: error.kind(),
            })
            .inc();
        tracing::warn!(node = %node, call, kind = error.kind(), error = %error, "An ASG lifecycle call failed; it is tried again.");
    }
}
