//! What to do to a Node for an event: docs/design.md §4 as a pure function from event to steps.
//! The Kubernetes executor and the dry run both take their steps from here.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::event::{EventData, Kind, Status};

/// Prefix of every taint and label key the router writes.
pub const KEY_PREFIX: &str = "eviction-router";
/// The label that marks a Node the router is draining; the value is the kind.
pub const DRAINING_LABEL: &str = "eviction-router/draining";

/// A taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
}

impl Effect {
    /// The Kubernetes spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Effect::NoSchedule => "NoSchedule",
            Effect::PreferNoSchedule => "PreferNoSchedule",
        }
    }
}

/// The type of a Kubernetes Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// One step of a plan. `at` is when the step is due; `None` means now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add (or keep) the taint `key:effect`.
    Taint {
        key: String,
        effect: Effect,
        at: Option<Timestamp>,
    },
    /// Set the label `key=value`.
    Label {
        key: &'static str,
        value: &'static str,
        at: Option<Timestamp>,
    },
    /// Mark the Node unschedulable.
    Cordon { at: Option<Timestamp> },
    /// Evict the Node's pods, finishing before `deadline` less the safety margin.
    Drain {
        at: Option<Timestamp>,
        deadline: Option<Timestamp>,
    },
    /// Record a Kubernetes Event on the Node.
    RecordEvent {
        reason: &'static str,
        event_type: EventType,
    },
    /// Undo: remove the taint `key`.
    Untaint { key: String },
    /// Undo: remove the label `key`.
    Unlabel { key: &'static str },
    /// Undo: mark the Node schedulable, unless something else also holds it.
    Uncordon,
}

impl Step {
    /// A bounded label for metrics (`action` of `eviction_router_actions_total`).
    pub const fn action(&self) -> &'static str {
        match self {
            Step::Taint { .. } => "taint",
            Step::Label { .. } => "label",
            Step::Cordon { .. } => "cordon",
            Step::Drain { .. } => "drain",
            Step::RecordEvent { .. } => "event",
            Step::Untaint { .. } => "untaint",
            Step::Unlabel { .. } => "unlabel",
            Step::Uncordon => "uncordon",
        }
    }
}

fn when(at: &Option<Timestamp>) -> String {
    at.map(|t| format!(" at {t}")).unwrap_or_default()
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Taint { key, effect, at } => {
                write!(f, "taint {key}:{}{}", effect.as_str(), when(at))
            }
            Step::Label { key, value, at } => write!(f, "label {key}={value}{}", when(at)),
            Step::Cordon { at } => write!(f, "cordon{}", when(at)),
            Step::Drain { at, deadline } => {
                write!(f, "drain{}", when(at))?;
                match deadline {
                    Some(d) => write!(f, " (deadline {d})"),
                    None => Ok(()),
                }
            }
            Step::RecordEvent { reason, event_type } => {
                write!(f, "record {event_type:?} event {reason}")
            }
            Step::Untaint { key } => write!(f, "remove taint {key}"),
            Step::Unlabel { key } => write!(f, "remove label {key}"),
            Step::Uncordon => write!(f, "uncordon"),
        }
    }
}

/// The taint key of a kind: `eviction-router/<kind>`.
pub fn taint_key(kind: Kind) -> String {
    format!("{KEY_PREFIX}/{}", kind.as_str())
}

/// Which actions one kind takes (`cluster.actions.<kind>` in the configuration). Undo steps are
/// never switched off: what may have been done is always undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    /// Taint the Node.
    pub taint: bool,
    /// Label and cordon the Node.
    pub cordon: bool,
    /// Drain the Node.
    pub drain: bool,
    /// Record a Kubernetes Event on the Node.
    pub event: bool,
}

impl Switches {
    const ALL: Switches = Switches {
        taint: true,
        cordon: true,
        drain: true,
        event: true,
    };

    fn allows(&self, step: &Step) -> bool {
        match step {
            Step::Taint { .. } => self.taint,
            Step::Label { .. } | Step::Cordon { .. } => self.cordon,
            Step::Drain { .. } => self.drain,
            Step::RecordEvent { .. } => self.event,
            Step::Untaint { .. } | Step::Unlabel { .. } | Step::Uncordon => true,
        }
    }
}

/// The actions per kind; the defaults are docs/design.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Actions {
    /// `interruption`: everything, now.
    pub interruption: Switches,
    /// `termination`: everything, now.
    pub termination: Switches,
    /// `scheduled_maintenance`: everything, at the window less the lead.
    pub scheduled_maintenance: Switches,
    /// `rebalance_recommendation`: a PreferNoSchedule taint and an Event only.
    pub rebalance_recommendation: Switches,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            interruption: Switches::ALL,
            termination: Switches::ALL,
            scheduled_maintenance: Switches::ALL,
            rebalance_recommendation: Switches {
                taint: true,
                cordon: false,
                drain: false,
                event: true,
            },
        }
    }
}

impl Actions {
    fn for_kind(&self, kind: Kind) -> Switches {
        match kind {
            Kind::Interruption => self.interruption,
            Kind::Termination => self.termination,
            Kind::ScheduledMaintenance => self.scheduled_maintenance,
            Kind::RebalanceRecommendation => self.rebalance_recommendation,
            Kind::ReplacementReady | Kind::PoolAtRisk | Kind::Failback | Kind::PoolStats => {
                Switches {
                    taint: false,
                    cordon: false,
                    drain: false,
                    event: false,
                }
            }
        }
    }
}

/// The steps for `event` under `actions`. Scheduled maintenance acts at `not_before − lead`
/// (now, if that has passed or the window is unknown); a canceled or completed maintenance undoes
/// what a scheduled one did.
pub fn plan(event: &EventData, lead: SignedDuration, actions: &Actions) -> Vec<Step> {
    let switches = actions.for_kind(event.kind);
    let mut steps = candidates(event, lead);
    steps.retain(|s| switches.allows(s));
    steps
}

fn candidates(event: &EventData, lead: SignedDuration) -> Vec<Step> {
    let key = taint_key(event.kind);
    match event.kind {
        Kind::Interruption | Kind::Termination => {
            let reason = if event.kind == Kind::Interruption {
                "SpotInterruption"
            } else {
                "InstanceTermination"
            };
            let value = event.kind.as_str();
            vec![
                Step::Taint {
                    key,
                    effect: Effect::NoSchedule,
                    at: None,
                },
                Step::Label {
                    key: DRAINING_LABEL,
                    value,
                    at: None,
                },
                Step::Cordon { at: None },
                Step::Drain {
                    at: None,
                    deadline: event.deadline,
                },
                Step::RecordEvent {
                    reason,
                    event_type: EventType::Warning,
                },
            ]
        }
        Kind::ScheduledMaintenance => match event.status {
            Some(Status::Canceled | Status::Completed) => vec![
                Step::Untaint { key },
                Step::Unlabel {
                    key: DRAINING_LABEL,
                },
                Step::Uncordon,
                Step::RecordEvent {
                    reason: "ScheduledMaintenance",
                    event_type: EventType::Normal,
                },
            ],
            _ => {
                let at = event.not_before.map(|nb| nb - lead);
                let value = event.kind.as_str();
                vec![
                    Step::RecordEvent {
                        reason: "ScheduledMaintenance",
                        event_type: EventType::Normal,
                    },
                    Step::Taint {
                        key,
                        effect: Effect::NoSchedule,
                        at,
                    },
                    Step::Label {
                        key: DRAINING_LABEL,
                        value,
                        at,
                    },
                    Step::Cordon { at },
                    Step::Drain {
                        at,
                        deadline: event.deadline,
                    },
                ]
            }
        },
        Kind::RebalanceRecommendation => vec![
            Step::Taint {
                key,
                effect: Effect::PreferNoSchedule,
                at: None,
            },
            Step::Label {
                key: DRAINING_LABEL,
                value: event.kind.as_str(),
                at: None,
            },
            Step::Cordon { at: None },
            Step::Drain {
                at: None,
                deadline: None,
            },
            Step::RecordEvent {
                reason: "RebalanceRecommendation",
                event_type: EventType::Normal,
            },
        ],
        Kind::ReplacementReady | Kind::PoolAtRisk | Kind::Failback | Kind::PoolStats => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Instance, Provider};

    fn data(kind: Kind, status: Option<Status>, not_before: Option<&str>) -> EventData {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let instance = Instance {
            id: "i-1".into(),
            name: None,
            provider_id: None,
            resource_id: None,
        };
        let mut d = EventData::new(Provider::Aws, kind, "x", instance, t);
        d.status = status;
        d.not_before = not_before.map(|s| s.parse().unwrap());
        d.deadline = d.not_before.or(Some(t + SignedDuration::from_secs(120)));
        d
    }

    fn actions(steps: &[Step]) -> Vec<&'static str> {
        steps.iter().map(Step::action).collect()
    }

    #[test]
    fn interruption_taints_labels_cordons_drains_now_and_warns() {
        let steps = plan(
            &data(Kind::Interruption, None, None),
            SignedDuration::from_mins(10),
            &Actions::default(),
        );
        assert_eq!(
            actions(&steps),
            ["taint", "label", "cordon", "drain", "event"]
        );
        assert!(
            steps.iter().all(|s| !s.to_string().contains(" at ")),
            "everything now"
        );
        assert_eq!(
            steps[0].to_string(),
            "taint eviction-router/interruption:NoSchedule"
        );
        assert!(matches!(
            steps[4],
            Step::RecordEvent {
                reason: "SpotInterruption",
                event_type: EventType::Warning
            }
        ));
    }

    #[test]
    fn rebalance_only_prefers_no_schedule() {
        let steps = plan(
            &data(Kind::RebalanceRecommendation, None, None),
            SignedDuration::ZERO,
            &Actions::default(),
        );
        assert_eq!(actions(&steps), ["taint", "event"]);
        assert!(matches!(
            steps[0],
            Step::Taint {
                effect: Effect::PreferNoSchedule,
                ..
            }
        ));
    }

    #[test]
    fn maintenance_acts_lead_before_the_window_and_cancel_undoes() {
        let d = data(
            Kind::ScheduledMaintenance,
            Some(Status::Scheduled),
            Some("2026-11-25T02:00:00Z"),
        );
        let steps = plan(&d, SignedDuration::from_mins(30), &Actions::default());
        assert_eq!(
            actions(&steps),
            ["event", "taint", "label", "cordon", "drain"]
        );
        assert_eq!(steps[3].to_string(), "cordon at 2026-11-25T01:30:00Z");
        let d = data(
            Kind::ScheduledMaintenance,
            Some(Status::Canceled),
            Some("2026-11-25T02:00:00Z"),
        );
        assert_eq!(
            actions(&plan(&d, SignedDuration::ZERO, &Actions::default())),
            ["untaint", "unlabel", "uncordon", "event"]
        );
    }

    #[test]
    fn actions_are_switched_per_kind() {
        let mut a = Actions::default();
        a.interruption.drain = false;
        a.rebalance_recommendation.cordon = true;
        let steps = plan(
            &data(Kind::Interruption, None, None),
            SignedDuration::ZERO,
            &a,
        );
        assert_eq!(actions(&steps), ["taint", "label", "cordon", "event"]);
        let steps = plan(
            &data(Kind::RebalanceRecommendation, None, None),
            SignedDuration::ZERO,
            &a,
        );
        assert_eq!(actions(&steps), ["taint", "label", "cordon", "event"]);
        a.scheduled_maintenance = Switches {
            taint: false,
            cordon: false,
            drain: false,
            event: false,
        };
        let d = data(Kind::ScheduledMaintenance, Some(Status::Canceled), None);
        assert_eq!(
            actions(&plan(&d, SignedDuration::ZERO, &a)),
            ["untaint", "unlabel", "uncordon"],
            "undo is never switched off"
        );
    }

    #[test]
    fn replacement_ready_needs_nothing() {
        assert!(
            plan(
                &data(Kind::ReplacementReady, None, None),
                SignedDuration::ZERO,
                &Actions::default()
            )
            .is_empty()
        );
    }
}
