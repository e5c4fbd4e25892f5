//! Groups, lifecycle hooks and lifecycle actions, and the clock rules of the Amazon EC2 Auto
//! Scaling User Guide ("Amazon EC2 Auto Scaling lifecycle hooks", "Keeping instances in a wait
//! state"), evaluated lazily: every call and every inspection first ends the actions whose time
//! ran out, at the instant it ran out.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// `HeartbeatTimeout` when a hook names none: "The default is 3600 seconds (1 hour)."
/// (PutLifecycleHook, API reference).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest `HeartbeatTimeout`: "The range is from 30 to 7200 seconds." (PutLifecycleHook).
/// The fake enforces the maximum but not the 30-second minimum, so tests can run in milliseconds.
pub const MAX_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(7200);

/// "The maximum time, in seconds, that an instance can remain in a wait state. The maximum is
/// 172800 seconds (48 hours) or 100 times HeartbeatTimeout, whichever is smaller."
/// (`GlobalTimeout`, LifecycleHook data type, API reference).
pub const MAX_GLOBAL_TIMEOUT: Duration = Duration::from_secs(172_800);

/// What the group does with the instance when an action ends: `CONTINUE` or `ABANDON`
/// ("You can specify either CONTINUE or ABANDON.", CompleteLifecycleAction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LifecycleResult {
    Continue,
    Abandon,
}

impl LifecycleResult {
    /// The wire value, `CONTINUE` or `ABANDON`.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleResult::Continue => "CONTINUE",
            LifecycleResult::Abandon => "ABANDON",
        }
    }

    /// Parses the wire value. Case-sensitive: the reference pages spell the values in capitals
    /// only; whether the service accepts other spellings is not confirmed.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "CONTINUE" => Some(LifecycleResult::Continue),
            "ABANDON" => Some(LifecycleResult::Abandon),
            _ => None,
        }
    }
}

/// The transition a hook pauses ("Valid values: autoscaling:EC2_INSTANCE_LAUNCHING |
/// autoscaling:EC2_INSTANCE_TERMINATING", LifecycleHook data type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    Launching,
    Terminating,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Launching => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Transition::Terminating => "autoscaling:EC2_INSTANCE_TERMINATING",
        }
    }
}

/// A lifecycle hook. Build one with [`Hook::terminating`] (or [`Hook::launching`]) and change
/// fields with struct update syntax:
///
/// ```
/// use fake_autoscaling::{Hook, LifecycleResult};
/// use std::time::Duration;
///
/// let hook = Hook {
///     heartbeat_timeout: Duration::from_millis(300),
///     default_result: LifecycleResult::Continue,
///     ..Hook::terminating("drain")
/// };
/// assert_eq!(hook.effective_global_timeout(), Duration::from_secs(30));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub transition: Transition,
    /// How long an action waits for a heartbeat or a completion. Any length up to
    /// [`MAX_HEARTBEAT_TIMEOUT`]; milliseconds are fine (the service's 30 s minimum is not
    /// enforced).
    pub heartbeat_timeout: Duration,
    /// The result an action ends with when its time runs out. "DefaultResult ... The default
    /// value is ABANDON." (PutLifecycleHook); the CloudFormation user guide once said CONTINUE
    /// and was corrected (github.com/awsdocs/aws-cloudformation-user-guide issue 248: "it went
    /// with ABANDON").
    pub default_result: LifecycleResult,
    /// Shortens the global timeout below the service's `min(100 × heartbeat_timeout, 48 h)`
    /// ([`Hook::effective_global_timeout`]), for tests that want to reach it quickly. The
    /// service computes it and has no such setting; `None` (the default) uses its rule.
    pub global_timeout: Option<Duration>,
}

impl Hook {
    /// A `autoscaling:EC2_INSTANCE_TERMINATING` hook with the service's defaults: heartbeat
    /// timeout 3600 s, default result `ABANDON`.
    pub fn terminating(name: &str) -> Self {
        Hook {
            name: name.to_string(),
            transition: Transition::Terminating,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            default_result: LifecycleResult::Abandon,
            global_timeout: None,
        }
    }

    /// A `autoscaling:EC2_INSTANCE_LAUNCHING` hook with the same defaults.
    pub fn launching(name: &str) -> Self {
        Hook {
            transition: Transition::Launching,
            ..Hook::terminating(name)
        }
    }

    /// The longest an action can wait: "48 hours or 100 times the heartbeat timeout, whichever
    /// is smaller" (User Guide, "Keeping instances in a wait state"), or
    /// [`Hook::global_timeout`] when that is set.
    pub fn effective_global_timeout(&self) -> Duration {
        let service = self
            .heartbeat_timeout
            .saturating_mul(100)
            .min(MAX_GLOBAL_TIMEOUT);
        self.global_timeout.unwrap_or(service)
    }

    /// Panics on settings the service would refuse or the fake cannot model.
    fn check(&self) {
        assert!(
            !self.name.is_empty()
                && self.name.len() <= 255
                && self.name.chars().all(is_hook_name_char),
            "fake-autoscaling: a lifecycle hook name is 1 to 255 of [A-Za-z0-9-_/], not {:?}",
            self.name
        );
        assert!(
            !self.heartbeat_timeout.is_zero() && self.heartbeat_timeout <= MAX_HEARTBEAT_TIMEOUT,
            "fake-autoscaling: HeartbeatTimeout must be above zero and at most 7200 s, not {:?}",
            self.heartbeat_timeout
        );
        if let Some(global) = self.global_timeout {
            let service = self
                .heartbeat_timeout
                .saturating_mul(100)
                .min(MAX_GLOBAL_TIMEOUT);
            assert!(
                !global.is_zero() && global <= service,
                "fake-autoscaling: global_timeout {global:?} is above the service's {service:?} \
                 (min(100 × heartbeat timeout, 48 h)); it may only shorten it"
            );
        }
    }
}

/// `LifecycleHookName` is "Pattern: [A-Za-z0-9\-_\/]+" (API reference).
pub(crate) fn is_hook_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/')
}

/// Where an action stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionState {
    /// The instance waits (`Terminating:Wait` or `Pending:Wait`).
    Pending,
    /// Ended by CompleteLifecycleAction with this result.
    Completed { result: LifecycleResult },
    /// Its heartbeat or global timeout passed; it ended with the hook's default result ("the
    /// Auto Scaling group takes when the lifecycle hook timeout elapses", DefaultResult).
    TimedOut { result: LifecycleResult },
}

/// One lifecycle action as a test sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionView {
    pub token: String,
    pub instance_id: String,
    pub group: String,
    pub hook: String,
    pub transition: Transition,
    pub state: ActionState,
    /// Successful RecordLifecycleActionHeartbeat calls.
    pub heartbeats: u32,
    pub started_at: Instant,
    pub last_heartbeat_at: Option<Instant>,
    /// When the action times out unless it is completed or heartbeated again: the last
    /// heartbeat (or the start) plus the heartbeat timeout, never past [`Self::global_deadline`].
    pub heartbeat_deadline: Instant,
    /// The start plus the hook's global timeout.
    pub global_deadline: Instant,
    /// When the action ended: the completion, or the deadline that passed.
    pub completed_at: Option<Instant>,
}

impl ActionView {
    /// The instance's lifecycle state for this action, as DescribeAutoScalingInstances names
    /// them: `Terminating:Wait` then `Terminating:Proceed` ("If the instance is terminating,
    /// both ABANDON and CONTINUE allow the instance to terminate", User Guide, "Add lifecycle
    /// hooks"); for a launch, `Pending:Wait`, then `Pending:Proceed` on CONTINUE or
    /// `Terminating` on ABANDON ("ABANDON indicates that your custom actions were unsuccessful,
    /// and that Auto Scaling can terminate the instance").
    pub fn lifecycle_state(&self) -> &'static str {
        match (self.transition, self.state) {
            (Transition::Terminating, ActionState::Pending) => "Terminating:Wait",
            (Transition::Terminating, _) => "Terminating:Proceed",
            (Transition::Launching, ActionState::Pending) => "Pending:Wait",
            (
                Transition::Launching,
                ActionState::Completed { result } | ActionState::TimedOut { result },
            ) => match result {
                LifecycleResult::Continue => "Pending:Proceed",
                LifecycleResult::Abandon => "Terminating",
            },
        }
    }

    /// The result the action ended with, however it ended.
    pub fn result(&self) -> Option<LifecycleResult> {
        match self.state {
            ActionState::Pending => None,
            ActionState::Completed { result } | ActionState::TimedOut { result } => Some(result),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    /// The group's id in its ARN (`autoScalingGroup:<uuid>:autoScalingGroupName/<name>`).
    pub(crate) uuid: String,
    pub(crate) tags: BTreeMap<String, String>,
    hooks: Vec<Hook>,
}

#[derive(Debug)]
struct Action {
    token: String,
    instance_id: String,
    group: String,
    hook: String,
    transition: Transition,
    heartbeat_timeout: Duration,
    default_result: LifecycleResult,
    started_at: Instant,
    last_heartbeat_at: Option<Instant>,
    heartbeat_deadline: Instant,
    global_deadline: Instant,
    heartbeats: u32,
    state: ActionState,
    completed_at: Option<Instant>,
}

impl Action {
    fn view(&self) -> ActionView {
        ActionView {
            token: self.token.clone(),
            instance_id: self.instance_id.clone(),
            group: self.group.clone(),
            hook: self.hook.clone(),
            transition: self.transition,
            state: self.state,
            heartbeats: self.heartbeats,
            started_at: self.started_at,
            last_heartbeat_at: self.last_heartbeat_at,
            heartbeat_deadline: self.heartbeat_deadline,
            global_deadline: self.global_deadline,
            completed_at: self.completed_at,
        }
    }

    /// Ends the action with the hook's default result if a deadline has passed. The heartbeat
    /// deadline is never later than the global one, so it is the one to compare.
    fn expire(&mut self, now: Instant) {
        if self.state == ActionState::Pending && now >= self.heartbeat_deadline {
            self.state = ActionState::TimedOut {
                result: self.default_result,
            };
            self.completed_at = Some(self.heartbeat_deadline);
        }
    }
}

/// The answer to a call naming no active action: "No active Lifecycle Action found with token
/// <token>" when a token was given, else "... with instance ID <id>" (both quoted from the
/// service's ValidationError in public reports: spacelift-io/terraform-aws-spacelift-workerpool-on-ec2
/// pull 197 for the token, convox/rack issue 2432 and kubernetes/kops issue 16582 for the
/// instance ID).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoActiveAction(pub(crate) String);

impl NoActiveAction {
    fn new(token: Option<&str>, instance_id: Option<&str>) -> Self {
        NoActiveAction(match (token, instance_id) {
            (Some(token), _) => format!("No active Lifecycle Action found with token {token}"),
            (None, Some(id)) => format!("No active Lifecycle Action found with instance ID {id}"),
            // Refused by parameter validation before any lookup.
            (None, None) => "No active Lifecycle Action found".to_string(),
        })
    }
}

/// Every group, hook and action.
#[derive(Debug, Default)]
pub(crate) struct Model {
    groups: BTreeMap<String, Group>,
    actions: Vec<Action>,
}

impl Model {
    /// Ends every action whose time ran out by `now`.
    pub(crate) fn sweep(&mut self, now: Instant) {
        for action in &mut self.actions {
            action.expire(now);
        }
    }

    pub(crate) fn add_group(&mut self, name: &str, tags: &[(&str, &str)], uuid: String) {
        assert!(
            !name.is_empty() && name.chars().count() <= 1600,
            "fake-autoscaling: an Auto Scaling group name is 1 to 1600 characters, not {name:?}"
        );
        let group = self.groups.entry(name.to_string()).or_insert(Group {
            uuid,
            tags: BTreeMap::new(),
            hooks: Vec::new(),
        });
        for (key, value) in tags {
            group.tags.insert((*key).to_string(), (*value).to_string());
        }
    }

    pub(crate) fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Adds a hook, or replaces the one of the same name (PutLifecycleHook "Creates or updates
    /// a lifecycle hook"). Actions already started keep the settings they started with.
    pub(crate) fn add_hook(&mut self, group: &str, hook: Hook) {
        hook.check();
        let Some(g) = self.groups.get_mut(group) else {
            panic!("fake-autoscaling has no Auto Scaling group called {group:?}");
        };
        g.hooks.retain(|h| h.name != hook.name);
        g.hooks.push(hook);
    }

    /// Puts `instance_id` in the hook's wait state with `token`.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        group: &str,
        hook: &str,
        instance_id: &str,
        token: String,
    ) {
        self.sweep(now);
        let Some(g) = self.groups.get(group) else {
            panic!("fake-autoscaling has no Auto Scaling group called {group:?}");
        };
        let Some(h) = g.hooks.iter().find(|h| h.name == hook) else {
            panic!("fake-autoscaling: group {group:?} has no lifecycle hook called {hook:?}");
        };
        assert!(
            !instance_id.is_empty() && instance_id.chars().count() <= 19,
            "fake-autoscaling: an instance ID is 1 to 19 characters (InstanceId, \
             XmlStringMaxLen19), not {instance_id:?}"
        );
        assert!(
            token.len() == 36,
            "fake-autoscaling: a LifecycleActionToken is 36 characters (min and max 36), \
             not {token:?}"
        );
        assert!(
            self.actions.iter().all(|a| a.token != token),
            "fake-autoscaling: the token {token} is already in use"
        );
        assert!(
            !self.actions.iter().any(|a| {
                a.state == ActionState::Pending
                    && a.group == group
                    && a.hook == hook
                    && a.instance_id == instance_id
            }),
            "fake-autoscaling: {instance_id} already waits on hook {hook:?} of {group:?}"
        );
        let global_deadline = now + h.effective_global_timeout();
        let heartbeat_deadline = (now + h.heartbeat_timeout).min(global_deadline);
        self.actions.push(Action {
            token,
            instance_id: instance_id.to_string(),
            group: group.to_string(),
            hook: hook.to_string(),
            transition: h.transition,
            heartbeat_timeout: h.heartbeat_timeout,
            default_result: h.default_result,
            started_at: now,
            last_heartbeat_at: None,
            heartbeat_deadline,
            global_deadline,
            heartbeats: 0,
            state: ActionState::Pending,
            completed_at: None,
        });
    }

    /// The pending action of `group`'s `hook` named by the token and/or the instance ID. With
    /// both, the action must match both; the fake then answers with the token message (what the
    /// service does when the two disagree is not confirmed).
    fn active(
        &mut self,
        now: Instant,
        group: &str,
        hook: &str,
        token: Option<&str>,
        instance_id: Option<&str>,
    ) -> Result<&mut Action, NoActiveAction> {
        self.sweep(now);
        self.actions
            .iter_mut()
            .find(|a| {
                a.state == ActionState::Pending
                    && a.group == group
                    && a.hook == hook
                    && token.is_none_or(|t| a.token == t)
                    && instance_id.is_none_or(|i| a.instance_id == i)
                    && (token.is_some() || instance_id.is_some())
            })
            .ok_or_else(|| NoActiveAction::new(token, instance_id))
    }

    /// CompleteLifecycleAction: "Completes the lifecycle action for the specified token or
    /// instance with the specified result." A second call finds no active action.
    pub(crate) fn complete(
        &mut self,
        now: Instant,
        group: &str,
        hook: &str,
        token: Option<&str>,
        instance_id: Option<&str>,
        result: LifecycleResult,
    ) -> Result<(), NoActiveAction> {
        let action = self.active(now, group, hook, token, instance_id)?;
        action.state = ActionState::Completed { result };
        action.completed_at = Some(now);
        Ok(())
    }

    /// RecordLifecycleActionHeartbeat: "This extends the timeout by the length of time defined
    /// using the PutLifecycleHook API call." From now, not from the old deadline: "if the
    /// timeout value is one hour, and you call this command after 30 minutes, the instance
    /// remains in a wait state for an additional hour, or a total of 90 minutes" (User Guide),
    /// and never past the global timeout.
    pub(crate) fn heartbeat(
        &mut self,
        now: Instant,
        group: &str,
        hook: &str,
        token: Option<&str>,
        instance_id: Option<&str>,
    ) -> Result<(), NoActiveAction> {
        let action = self.active(now, group, hook, token, instance_id)?;
        action.heartbeat_deadline = (now + action.heartbeat_timeout).min(action.global_deadline);
        action.last_heartbeat_at = Some(now);
        action.heartbeats += 1;
        Ok(())
    }

    pub(crate) fn actions(&self) -> Vec<ActionView> {
        self.actions.iter().map(Action::view).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "bcd2f1b8-9a78-44d3-8a7a-4dd07d7cf635";
    const OTHER: &str = "aaaaaaaa-9a78-44d3-8a7a-4dd07d7cf635";

    fn model(heartbeat_ms: u64) -> Model {
        let mut m = Model::default();
        m.add_group("asg", &[("team", "infra")], "uuid".into());
        m.add_hook(
            "asg",
            Hook {
                heartbeat_timeout: Duration::from_millis(heartbeat_ms),
                ..Hook::terminating("drain")
            },
        );
        m
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn global_timeout_is_the_smaller_of_100_heartbeats_and_48_hours() {
        assert_eq!(
            Hook::terminating("h").effective_global_timeout(),
            Duration::from_secs(172_800)
        );
        let short = Hook {
            heartbeat_timeout: Duration::from_secs(30),
            ..Hook::terminating("h")
        };
        assert_eq!(short.effective_global_timeout(), Duration::from_secs(3000));
        let shortened = Hook {
            global_timeout: Some(ms(5)),
            ..short
        };
        assert_eq!(shortened.effective_global_timeout(), ms(5));
        assert_eq!(
            Hook::terminating("h").default_result,
            LifecycleResult::Abandon
        );
    }

    #[test]
    fn complete_then_nothing_active() {
        let t0 = Instant::now();
        let mut m = model(1000);
        m.start(t0, "asg", "drain", "i-1", TOKEN.into());
        assert_eq!(
            m.complete(
                t0,
                "asg",
                "drain",
                Some(TOKEN),
                None,
                LifecycleResult::Continue
            ),
            Ok(())
        );
        assert_eq!(
            m.complete(
                t0,
                "asg",
                "drain",
                Some(TOKEN),
                None,
                LifecycleResult::Continue
            ),
            Err(NoActiveAction(format!(
                "No active Lifecycle Action found with token {TOKEN}"
            )))
        );
        let view = &m.actions()[0];
        assert_eq!(
            view.state,
            ActionState::Completed {
                result: LifecycleResult::Continue
            }
        );
        assert_eq!(view.lifecycle_state(), "Terminating:Proceed");
    }

    #[test]
    fn lookups_match_group_hook_token_and_instance() {
        let t0 = Instant::now();
        let mut m = model(1000);
        m.start(t0, "asg", "drain", "i-1", TOKEN.into());
        let no = |token: Option<&str>, id: Option<&str>| Err(NoActiveAction::new(token, id));
        assert_eq!(
            m.heartbeat(t0, "asg", "drain", Some(OTHER), None),
            no(Some(OTHER), None)
        );
        assert_eq!(
            m.heartbeat(t0, "asg", "drain", Some(TOKEN), Some("i-2")),
            no(Some(TOKEN), Some("i-2"))
        );
        assert_eq!(
            m.heartbeat(t0, "other", "drain", None, Some("i-1")),
            no(None, Some("i-1"))
        );
        assert_eq!(
            m.heartbeat(t0, "asg", "other", None, Some("i-1")),
            no(None, Some("i-1"))
        );
        assert_eq!(m.heartbeat(t0, "asg", "drain", None, Some("i-1")), Ok(()));
        assert_eq!(
            m.heartbeat(t0, "asg", "drain", Some(TOKEN), Some("i-1")),
            Ok(())
        );
        assert_eq!(m.actions()[0].heartbeats, 2);
    }

    #[test]
    fn heartbeats_extend_from_now_and_stop_at_the_global_deadline() {
        let t0 = Instant::now();
        let mut m = model(100); // global: 10 s
        m.start(t0, "asg", "drain", "i-1", TOKEN.into());
        assert_eq!(m.actions()[0].heartbeat_deadline, t0 + ms(100));
        assert_eq!(m.actions()[0].global_deadline, t0 + ms(10_000));
        // Heartbeat every 90 ms: the action outlives many heartbeat timeouts...
        let mut now = t0;
        while now + ms(90) < t0 + ms(10_000) {
            now += ms(90);
            assert_eq!(m.heartbeat(now, "asg", "drain", Some(TOKEN), None), Ok(()));
            let view = &m.actions()[0];
            assert_eq!(
                view.heartbeat_deadline,
                (now + ms(100)).min(t0 + ms(10_000))
            );
        }
        // ...but not the global timeout.
        m.sweep(t0 + ms(10_000));
        let view = &m.actions()[0];
        assert_eq!(
            view.state,
            ActionState::TimedOut {
                result: LifecycleResult::Abandon
            }
        );
        assert_eq!(view.completed_at, Some(t0 + ms(10_000)));
    }

    #[test]
    fn expiry_is_at_the_deadline_not_when_observed() {
        let t0 = Instant::now();
        let mut m = model(100);
        m.start(t0, "asg", "drain", "i-1", TOKEN.into());
        m.sweep(t0 + ms(99));
        assert_eq!(m.actions()[0].state, ActionState::Pending);
        assert_eq!(
            m.complete(
                t0 + ms(5000),
                "asg",
                "drain",
                None,
                Some("i-1"),
                LifecycleResult::Continue
            ),
            Err(NoActiveAction::new(None, Some("i-1")))
        );
        let view = &m.actions()[0];
        assert_eq!(view.completed_at, Some(t0 + ms(100)));
        assert_eq!(view.result(), Some(LifecycleResult::Abandon));
        // The instance may wait on the hook again.
        m.start(t0 + ms(5000), "asg", "drain", "i-1", OTHER.into());
        assert_eq!(m.actions().len(), 2);
    }

    #[test]
    fn launch_states() {
        let mut view = ActionView {
            token: TOKEN.into(),
            instance_id: "i-1".into(),
            group: "g".into(),
            hook: "h".into(),
            transition: Transition::Launching,
            state: ActionState::Pending,
            heartbeats: 0,
            started_at: Instant::now(),
            last_heartbeat_at: None,
            heartbeat_deadline: Instant::now(),
            global_deadline: Instant::now(),
            completed_at: None,
        };
        assert_eq!(view.lifecycle_state(), "Pending:Wait");
        view.state = ActionState::TimedOut {
            result: LifecycleResult::Abandon,
        };
        assert_eq!(view.lifecycle_state(), "Terminating");
        view.state = ActionState::Completed {
            result: LifecycleResult::Continue,
        };
        assert_eq!(view.lifecycle_state(), "Pending:Proceed");
    }

    #[test]
    #[should_panic(expected = "at most 7200 s")]
    fn heartbeat_timeouts_above_the_service_maximum_are_refused() {
        model(7_200_001);
    }

    #[test]
    #[should_panic(expected = "may only shorten it")]
    fn global_timeouts_above_the_service_rule_are_refused() {
        let mut m = Model::default();
        m.add_group("asg", &[], "uuid".into());
        m.add_hook(
            "asg",
            Hook {
                heartbeat_timeout: ms(10),
                global_timeout: Some(ms(1001)),
                ..Hook::terminating("drain")
            },
        );
    }
}
