//! ASG lifecycle hooks: an instance held in `Terminating:Wait` by a termination hook goes only
//! when the hook's action is completed or times out (the hook's heartbeat timeout, 1 h by
//! default). The reconciler completes it (`CONTINUE`) once the drain of its Node has ended —
//! done, or stopped at its deadline — and sends heartbeats while the drain runs.
//!
//! Pure here: which events carry an action ([`LifecycleAction::of`]), the record of a completed
//! one kept on the Node ([`LifecycleState`], so a restart or a new leader never completes it
//! twice), and the interface to the cloud ([`Lifecycle`]), implemented for AWS in
//! `providers::aws::lifecycle`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::{Event, Kind, Provider};

/// The record of the completed action, on the Node.
pub const LIFECYCLE_ANNOTATION: &str = "eviction-router/lifecycle";

/// `cluster.asg_lifecycle`: completing the ASG termination hooks of drained Nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Complete the lifecycle action (`CONTINUE`) once the Node's drain has ended. On by
    /// default; off leaves the hook to time out (or to something else).
    pub complete: bool,
    /// Send `RecordLifecycleActionHeartbeat` this often while the drain runs; 0 sends none. Keep
    /// it under the hook's heartbeat timeout (300 s fits the default of 3,600 s; the minimum a
    /// hook takes is 30 s).
    pub heartbeat_interval_seconds: u64,
    /// The region of the Auto Scaling API when the event names none (a hook posted straight
    /// to SQS); by default the standard AWS resolution (environment, profile, IMDS).
    pub region: Option<String>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            complete: true,
            heartbeat_interval_seconds: 300,
            region: None,
        }
    }
}

impl LifecycleConfig {
    /// The heartbeat interval, `None` for no heartbeats.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat_interval_seconds > 0)
            .then(|| Duration::from_secs(self.heartbeat_interval_seconds))
    }
}

/// A lifecycle action to complete: what `CompleteLifecycleAction` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    /// `AutoScalingGroupName`.
    pub group: String,
    /// `LifecycleHookName`.
    pub hook: String,
    /// `LifecycleActionToken`, when the notification carried one.
    pub token: Option<String>,
    /// `InstanceId`.
    pub instance_id: String,
    /// The region the event came from, if it says.
    pub region: Option<String>,
}

impl LifecycleAction {
    /// The action of an AWS termination from an ASG lifecycle hook (the normaliser puts the
    /// hook, token and group in `details`); `None` for any other event, or one without a hook
    /// name or group (nothing could be completed).
    pub fn of(event: &Event) -> Option<LifecycleAction> {
        let data = &event.data;
        if data.provider != Provider::Aws || data.kind != Kind::Termination {
            return None;
        }
        let text = |key: &str| {
            data.details
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(LifecycleAction {
            group: text("auto_scaling_group_name")?,
            hook: text("lifecycle_hook_name")?,
            token: text("lifecycle_action_token"),
            instance_id: data.instance.id.clone(),
            region: data.region.clone(),
        })
    }
}

/// What the Auto Scaling API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The call was taken: the action is completed (or its heartbeat recorded).
    Taken,
    /// No such action is active any more (`ValidationError: No active Lifecycle Action
    /// found`): it was completed already, timed out, or the token is not the current one.
    /// Nothing is left to do.
    NoActiveAction,
}

impl Answer {
    /// A bounded name, for the record and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Taken => "completed",
            Answer::NoActiveAction => "no_active_action",
        }
    }
}

/// Why a lifecycle call failed; the reconciler retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The API refused it for throttling, or failed on its side, after the client's own
    /// retries.
    #[error("the Auto Scaling API is unavailable or throttling ({code}): {message}")]
    Unavailable {
        /// The error code (`Throttling`, `InternalFailure`, `ServiceUnavailable`, ...).
        code: String,
        /// Its message.
        message: String,
    },
    /// The credentials may not do it (`AccessDenied`: the group lacks the tag the IAM policy
    /// is scoped to, or the role lacks the action).
    #[error("not allowed to {call} ({code}): {message}")]
    Denied {
        /// The call.
        call: &'static str,
        /// The error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// Any other answer (a missing hook or group, a bad parameter).
    #[error("{call} was refused ({code}): {message}")]
    Refused {
        /// The call.
        call: &'static str,
        /// The error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// No answer: the connection, the credentials chain, a timeout.
    #[error("cannot reach the Auto Scaling API: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl LifecycleError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LifecycleError::Unavailable { .. } => "unavailable",
            LifecycleError::Denied { .. } => "denied",
            LifecycleError::Refused { .. } => "refused",
            LifecycleError::Transport(_) => "transport",
        }
    }
}

/// A boxed future of a lifecycle call.
pub type Call<'a> = Pin<Box<dyn Future<Output = Result<Answer, LifecycleError>> + Send + 'a>>;

/// The cloud's lifecycle API.
pub trait Lifecycle: Send + Sync + std::fmt::Debug {
    /// `CompleteLifecycleAction` with `CONTINUE`.
    fn complete<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a>;
    /// `RecordLifecycleActionHeartbeat`.
    fn heartbeat<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a>;
}

/// The completed action, kept on the Node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleState {
    /// The id of the event whose action it was.
    #[serde(rename = "for")]
    pub for_event: String,
    /// `completed`, or `no_active_action` when there was none to complete.
    pub outcome: String,
    /// When.
    pub at: Timestamp,
}

impl LifecycleState {
    /// The record of `answer` for `for_event` at `at`.
    pub fn new(for_event: &str, answer: Answer, at: Timestamp) -> LifecycleState {
        LifecycleState {
            for_event: for_event.to_owned(),
            outcome: answer.as_str().to_owned(),
            at,
        }
    }

    /// The merge patch that records it.
    pub fn patch(&self) -> Value {
        let value = serde_json::to_string(self).unwrap_or_default();
        json!({ "metadata": { "annotations": { LIFECYCLE_ANNOTATION: value } } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::aws::payload;

    fn parsed(fixture: &str) -> Event {
        let path = format!(
            "{}/tests/fixtures/aws/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        let mut parsed = payload::parse(&bytes).unwrap();
        assert_eq!(parsed.events.len(), 1, "{fixture}: {parsed:?}");
        parsed.events.remove(0)
    }

    #[test]
    fn the_hook_of_an_eventbridge_lifecycle_event_is_read_from_its_details() {
        let action = LifecycleAction::of(&parsed("asg-terminate-lifecycle.json")).unwrap();
        assert_eq!(
            action,
            LifecycleAction {
                group: "testt1.demo-0a20f32c.kops.sh".into(),
                hook: "cluster-termination-handler".into(),
                token: Some("0befcbdb-6ecd-498a-9ff7-ae9b54447cd6".into()),
                instance_id: "i-0633ac2b0d9769723".into(),
                region: Some("us-east-1".into()),
            }
        );
    }

    #[test]
    fn a_hook_posted_straight_to_sqs_has_an_action_too() {
        let action = LifecycleAction::of(&parsed("asg-lifecycle-direct-to-sqs.json")).unwrap();
        assert!(action.token.is_some());
        assert!(!action.group.is_empty() && !action.hook.is_empty());
    }

    #[test]
    fn other_events_have_no_action() {
        for fixture in [
            "spot-interruption-warning.json",
            "state-change-terminated.json",
            "rebalance-recommendation.json",
        ] {
            assert_eq!(LifecycleAction::of(&parsed(fixture)), None, "{fixture}");
        }
        // A termination whose details lost the group cannot be completed.
        let mut event = parsed("asg-terminate-lifecycle.json");
        event.data.details.remove("auto_scaling_group_name");
        assert_eq!(LifecycleAction::of(&event), None);
    }

    #[test]
    fn the_record_round_trips_through_its_annotation() {
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let state = LifecycleState::new("e1", Answer::NoActiveAction, at);
        let patch = state.patch();
        let text = patch["metadata"]["annotations"][LIFECYCLE_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(serde_json::from_str::<LifecycleState>(text).unwrap(), state);
        assert!(text.contains(r#""for":"e1""#) && text.contains("no_active_action"));
    }

    #[test]
    fn no_heartbeats_at_zero() {
        let config = LifecycleConfig {
            heartbeat_interval_seconds: 0,
            ..LifecycleConfig::default()
        };
        assert_eq!(config.heartbeat_interval(), None);
        assert_eq!(
            LifecycleConfig::default().heartbeat_interval(),
            Some(Duration::from_secs(300))
        );
    }
}
