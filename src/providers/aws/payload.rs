//! AWS: an SQS message body (an EventBridge envelope, or an ASG lifecycle hook posted straight to
//! SQS) → normalised events. Pure: bytes in, [`Parsed`] out.
//!
//! The mapping is docs/design.md §3.1. `details` carries, per kind:
//! - drill events (source `eviction-router.drill`): `"drill": true`;
//! - AWS Health: `health_event_arn`, `event_type_code`, `status_code`;
//! - ASG lifecycle actions: `lifecycle_hook_name`, `lifecycle_action_token`,
//!   `auto_scaling_group_name`, `lifecycle_transition`;
//! - state changes: `state`.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{Action, Event, EventData, Instance, Kind, Provider, Status};
use crate::providers::wire::{
    self, Str, loose, non_blank, optional_time, owned, required, required_time,
};
use crate::providers::{IgnoreReason, ParseError, Parsed};

/// The EventBridge source the `inject` fire drill publishes under (`aws.*` sources are reserved).
pub const DRILL_SOURCE: &str = crate::providers::DRILL;

/// Notice AWS gives before a Spot (or interruptible Capacity Reservation) instance is reclaimed.
pub const INTERRUPTION_NOTICE: SignedDuration = SignedDuration::from_secs(120);

const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
const CAPACITY_RESERVATION_INTERRUPTION: &str =
    "EC2 Capacity Reservation Instance Interruption Warning";
const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
const HEALTH: &str = "AWS Health Event";
const ASG_TERMINATE: &str = "EC2 Instance-terminate Lifecycle Action";
const ASG_TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
const ASG_TEST: &str = "autoscaling:TEST_NOTIFICATION";

/// One SQS body: an EventBridge envelope, or the fields of a lifecycle hook sent straight to SQS.
/// Both shapes are read in one pass; which fields are present tells them apart.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(rename = "detail-type", borrow)]
    detail_type: Option<Str<'a>>,
    #[serde(borrow)]
    source: Option<Str<'a>>,
    #[serde(borrow)]
    account: Option<Str<'a>>,
    #[serde(borrow)]
    time: Option<Str<'a>>,
    #[serde(borrow)]
    region: Option<Str<'a>>,
    #[serde(borrow, default)]
    resources: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    detail: Option<Box<Detail<'a>>>,

    // An ASG lifecycle hook whose notification target is the queue itself: these two fields
    // tell it apart; the rest of it is read by `direct_lifecycle` when it is one.
    #[serde(
        rename = "LifecycleTransition",
        borrow,
        deserialize_with = "loose",
        default
    )]
    lifecycle_transition: Option<Str<'a>>,
    #[serde(rename = "Event", borrow, deserialize_with = "loose", default)]
    asg_event: Option<Str<'a>>,
}

/// The `detail` of every event type the mapping reads, united so the body is parsed in one pass.
/// Every field is loose: another event type's `detail` may use the same name for another type,
/// and such a message must still come out as ignored, not as an error.
/// An ASG lifecycle hook message sent straight to SQS (or its test notification).
#[derive(Deserialize)]
struct DirectHook<'a> {
    #[serde(rename = "LifecycleTransition", borrow)]
    lifecycle_transition: Option<Str<'a>>,
    #[serde(rename = "Event", borrow)]
    asg_event: Option<Str<'a>>,
    #[serde(rename = "EC2InstanceId", borrow)]
    ec2_instance_id: Option<Str<'a>>,
    #[serde(rename = "LifecycleHookName", borrow)]
    lifecycle_hook_name: Option<Str<'a>>,
    #[serde(rename = "LifecycleActionToken", borrow)]
    lifecycle_action_token: Option<Str<'a>>,
    #[serde(rename = "AutoScalingGroupName", borrow)]
    auto_scaling_group_name: Option<Str<'a>>,
    #[serde(rename = "RequestId", borrow)]
    request_id: Option<Str<'a>>,
    #[serde(rename = "Time", borrow)]
    time: Option<Str<'a>>,
    #[serde(rename = "AccountId", borrow)]
    account_id: Option<Str<'a>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Detail<'a> {
    // EC2 interruption, rebalance and state-change notices.
    #[serde(rename = "instance-id", borrow, deserialize_with = "loose")]
    instance_id: Option<Str<'a>>,
    #[serde(rename = "instance-action", borrow, deserialize_with = "loose")]
    instance_action: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    state: Option<Str<'a>>,

    // AWS Health.
    #[serde(rename = "eventArn", borrow, deserialize_with = "loose")]
    event_arn: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose")]
    service: Option<Str<'a>>,
    #[serde(rename = "eventTypeCode", borrow, deserialize_with = "loose")]
    event_type_code: Option<Str<'a>>,
    #[serde(rename = "eventTypeCategory", borrow, deserialize_with = "loose")]
    event_type_category: Option<Str<'a>>,
    #[serde(rename = "statusCode", borrow, deserialize_with = "loose")]
    status_code: Option<Str<'a>>,
    #[serde(rename = "startTime", borrow, deserialize_with = "loose")]
    start_time: Option<Str<'a>>,
    #[serde(rename = "endTime", borrow, deserialize_with = "loose")]
    end_time: Option<Str<'a>>,
    #[serde(rename = "availabilityZone", borrow, deserialize_with = "loose")]
    availability_zone: Option<Str<'a>>,
    /// Parsed only for Health events.
    #[serde(rename = "affectedEntities", borrow)]
    affected_entities: Option<&'a RawValue>,

    // ASG lifecycle actions.
    #[serde(rename = "EC2InstanceId", borrow, deserialize_with = "loose")]
    ec2_instance_id: Option<Str<'a>>,
    #[serde(rename = "LifecycleHookName", borrow, deserialize_with = "loose")]
    lifecycle_hook_name: Option<Str<'a>>,
    #[serde(rename = "LifecycleActionToken", borrow, deserialize_with = "loose")]
    lifecycle_action_token: Option<Str<'a>>,
    #[serde(rename = "AutoScalingGroupName", borrow, deserialize_with = "loose")]
    auto_scaling_group_name: Option<Str<'a>>,
    #[serde(rename = "LifecycleTransition", borrow, deserialize_with = "loose")]
    lifecycle_transition: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Entity<'a> {
    #[serde(rename = "entityValue", borrow)]
    entity_value: Option<Str<'a>>,
}

/// The envelope fields every EventBridge-borne event shares.
struct Envelope<'a> {
    id: Str<'a>,
    source: Str<'a>,
    detail_type: Str<'a>,
    account: Option<String>,
    region: Option<String>,
    time: Timestamp,
    resources: Vec<Str<'a>>,
}

/// Normalises one SQS message body.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    parse_with(bytes, crate::providers::DEFAULT_MAX_EVENTS)
}

/// [`parse`] into at most `max_events` events (an AWS Health event names many instances).
pub fn parse_with(bytes: &[u8], max_events: usize) -> Result<Parsed, ParseError> {
    let body: Body<'_> = wire::from_slice(bytes)?;
    if body.detail_type.is_none()
        && (body.lifecycle_transition.is_some() || body.asg_event.is_some())
    {
        return direct_lifecycle(wire::from_slice(bytes)?);
    }
    let envelope = Envelope {
        id: required("id", body.id)?,
        source: required("source", body.source)?,
        detail_type: required("detail-type", body.detail_type)?,
        account: owned(&body.account),
        region: owned(&body.region),
        time: required_time("time", body.time)?,
        resources: body.resources.unwrap_or_default(),
    };
    let detail = body.detail.ok_or(ParseError::MissingField("detail"))?;
    let drill = &*envelope.source == DRILL_SOURCE;
    let source = if drill { "aws.ec2" } else { &*envelope.source };
    let mut parsed = match (source, &*envelope.detail_type) {
        ("aws.ec2", SPOT_INTERRUPTION | CAPACITY_RESERVATION_INTERRUPTION) => {
            ec2(&envelope, detail, Kind::Interruption)?
        }
        ("aws.ec2", REBALANCE) => ec2(&envelope, detail, Kind::RebalanceRecommendation)?,
        ("aws.ec2", STATE_CHANGE) => ec2(&envelope, detail, Kind::Termination)?,
        ("aws.health", HEALTH) => health(&envelope, detail, max_events)?,
        ("aws.autoscaling", ASG_TERMINATE) => asg_in_envelope(&envelope, detail)?,
        (source, detail_type) => {
            return Ok(Parsed::ignored(
                IgnoreReason::UnknownType,
                format!("source `{source}`, detail-type `{detail_type}`"),
            ));
        }
    };
    if drill {
        for event in &mut parsed.events {
            event.data.details.insert("drill".into(), Value::Bool(true));
        }
    }
    Ok(parsed)
}

/// Spot / Capacity Reservation interruption warnings, rebalance recommendations, state changes.
fn ec2(env: &Envelope<'_>, detail: Box<Detail<'_>>, kind: Kind) -> Result<Parsed, ParseError> {
    let instance_id = required("detail.instance-id", detail.instance_id)?;
    let mut details = Map::new();
    let (action, deadline) = match kind {
        Kind::Interruption => {
            let action = match non_blank(detail.instance_action) {
                Some(a) => instance_action(&a)?,
                None => Action::Terminate,
            };
            (Some(action), Some(env.time + INTERRUPTION_NOTICE))
        }
        Kind::Termination => {
            let state = required("detail.state", detail.state)?;
            let action = match &*state {
                "stopping" | "stopped" => Action::Stop,
                "shutting-down" | "terminated" => Action::Terminate,
                other => {
                    return Ok(Parsed::ignored(
                        IgnoreReason::NotActionable,
                        format!("EC2 instance state `{other}`"),
                    ));
                }
            };
            details.insert("state".into(), Value::String(state.into_owned()));
            (Some(action), Some(env.time))
        }
        _ => (None, None),
    };
    let mut event = event_for(env, kind, &instance_id, None);
    event.action = action;
    event.deadline = deadline;
    event.details = details;
    Ok(Parsed::event(Event::new(env.id.to_string(), event)))
}

fn instance_action(value: &str) -> Result<Action, ParseError> {
    match value {
        "terminate" => Ok(Action::Terminate),
        "stop" => Ok(Action::Stop),
        "hibernate" => Ok(Action::Hibernate),
        other => Err(ParseError::invalid(
            "detail.instance-action",
            other,
            "expected terminate, stop or hibernate",
        )),
    }
}

/// AWS Health scheduled changes for EC2: one event per affected instance.
fn health(
    env: &Envelope<'_>,
    detail: Box<Detail<'_>>,
    max_events: usize,
) -> Result<Parsed, ParseError> {
    let service = detail.service.as_deref().unwrap_or_default();
    let category = detail.event_type_category.as_deref().unwrap_or_default();
    if service != "EC2" || category != "scheduledChange" {
        return Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("AWS Health event of service `{service}`, category `{category}`"),
        ));
    }
    let not_before = optional_time("detail.startTime", detail.start_time)?;
    let not_after = optional_time("detail.endTime", detail.end_time)?;
    let status = match detail.status_code.as_deref() {
        Some("upcoming") => Some(Status::Scheduled),
        Some("open") => Some(Status::Started),
        Some("closed") => Some(Status::Completed),
        _ => None,
    };
    let code = detail.event_type_code.as_deref().unwrap_or_default();
    let action = health_action(code);

    // Instances are named in affectedEntities; older events carry them only in `resources`.
    let entities: Vec<Entity<'_>> = match detail.affected_entities {
        Some(raw) => wire::from_raw(raw)?,
        None => Vec::new(),
    };
    let mut instances: Vec<&str> = entities
        .iter()
        .filter_map(|e| e.entity_value.as_deref())
        .filter(|v| is_instance_id(v))
        .collect();
    if instances.is_empty() {
        instances = env
            .resources
            .iter()
            .map(|r| wire::last_segment(r))
            .filter(|v| is_instance_id(v))
            .collect();
    }
    instances.dedup();
    if instances.is_empty() {
        return Ok(Parsed::ignored(
            IgnoreReason::NoInstance,
            format!("AWS Health event `{code}` names no EC2 instance"),
        ));
    }

    let mut details = Map::new();
    insert_opt(&mut details, "health_event_arn", &detail.event_arn);
    insert_opt(&mut details, "event_type_code", &detail.event_type_code);
    insert_opt(&mut details, "status_code", &detail.status_code);
    let zone = owned(&detail.availability_zone);
    let named = instances.len();
    let events = instances
        .into_iter()
        .take(max_events)
        .map(|instance_id| {
            let mut data = event_for(env, Kind::ScheduledMaintenance, instance_id, zone.clone());
            data.status = status;
            data.action = action;
            data.not_before = not_before;
            data.not_after = not_after;
            data.deadline = not_before;
            data.details = details.clone();
            Event::new(wire::concat(&[&env.id, "/", instance_id]), data)
        })
        .collect();
    Ok(Parsed::capped(events, named))
}

/// What a Health event type code says will happen to the instance, where it says so.
fn health_action(code: &str) -> Option<Action> {
    if code.contains("REBOOT") {
        Some(Action::Reboot)
    } else if code.contains("RETIREMENT") || code.contains("STOP") {
        Some(Action::Stop)
    } else {
        None
    }
}

fn is_instance_id(value: &str) -> bool {
    value.starts_with("i-") && value.len() > 2
}

/// An ASG terminate lifecycle action delivered through EventBridge.
fn asg_in_envelope(env: &Envelope<'_>, detail: Box<Detail<'_>>) -> Result<Parsed, ParseError> {
    let transition = detail
        .lifecycle_transition
        .as_deref()
        .unwrap_or(ASG_TERMINATING);
    if transition != ASG_TERMINATING {
        return Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("lifecycle transition `{transition}`"),
        ));
    }
    let instance_id = required("detail.EC2InstanceId", detail.ec2_instance_id)?;
    let mut data = event_for(env, Kind::Termination, &instance_id, None);
    data.action = Some(Action::Terminate);
    data.details = lifecycle_details(
        &detail.lifecycle_hook_name,
        &detail.lifecycle_action_token,
        &detail.auto_scaling_group_name,
        transition,
    );
    Ok(Parsed::event(Event::new(env.id.to_string(), data)))
}

/// An ASG lifecycle hook whose notification target is the SQS queue itself (no envelope).
fn direct_lifecycle(body: DirectHook<'_>) -> Result<Parsed, ParseError> {
    if body.asg_event.as_deref() == Some(ASG_TEST) {
        return Ok(Parsed::ignored(
            IgnoreReason::TestNotification,
            "Auto Scaling test notification",
        ));
    }
    let transition = required("LifecycleTransition", body.lifecycle_transition)?;
    if &*transition != ASG_TERMINATING {
        return Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("lifecycle transition `{}`", &*transition),
        ));
    }
    let id = required("RequestId", body.request_id)?;
    let instance_id = required("EC2InstanceId", body.ec2_instance_id)?;
    let time = required_time("Time", body.time)?;
    let instance = Instance {
        id: instance_id.into_owned(),
        name: None,
        provider_id: None,
        resource_id: None,
    };
    let mut data = EventData::new(
        Provider::Aws,
        Kind::Termination,
        ASG_TERMINATING,
        instance,
        time,
    );
    data.account = owned(&body.account_id);
    data.action = Some(Action::Terminate);
    data.details = lifecycle_details(
        &body.lifecycle_hook_name,
        &body.lifecycle_action_token,
        &body.auto_scaling_group_name,
        &transition,
    );
    Ok(Parsed::event(Event::new(id.into_owned(), data)))
}

fn lifecycle_details(
    hook: &Option<Str<'_>>,
    token: &Option<Str<'_>>,
    group: &Option<Str<'_>>,
    transition: &str,
) -> Map<String, Value> {
    let mut details = Map::new();
    insert_opt(&mut details, "lifecycle_hook_name", hook);
    insert_opt(&mut details, "lifecycle_action_token", token);
    insert_opt(&mut details, "auto_scaling_group_name", group);
    details.insert(
        "lifecycle_transition".into(),
        Value::String(transition.to_owned()),
    );
    details
}

fn insert_opt(details: &mut Map<String, Value>, key: &str, value: &Option<Str<'_>>) {
    if let Some(v) = owned(value) {
        details.insert(key.to_owned(), Value::String(v));
    }
}

/// The `data` skeleton for one instance of an enveloped event: account, region, the instance's
/// ARN from `resources`, and the zone and providerID when the ARN carries the zone.
fn event_for(env: &Envelope<'_>, kind: Kind, instance_id: &str, zone: Option<String>) -> EventData {
    let arn = env.resources.iter().find(|r| {
        r.strip_suffix(instance_id)
            .is_some_and(|p| p.ends_with("instance/"))
    });
    let zone = zone.or_else(|| arn.and_then(|a| zone_of_arn(a, env.region.as_deref())));
    let instance = Instance {
        id: instance_id.to_owned(),
        name: None,
        provider_id: zone
            .as_deref()
            .map(|z| wire::concat(&["aws:///", z, "/", instance_id])),
        resource_id: arn.map(|a| a.to_string()),
    };
    let mut data = EventData::new(
        Provider::Aws,
        kind,
        env.detail_type.to_string(),
        instance,
        env.time,
    );
    data.account = env.account.clone();
    data.region = env.region.clone();
    data.zone = zone;
    data
}

/// The availability zone in an instance ARN's region field (`arn:aws:ec2:us-east-1b:instance/…`,
/// as the Spot warning sends it). A plain region there is not a zone.
fn zone_of_arn(arn: &str, region: Option<&str>) -> Option<String> {
    let field = arn.split(':').nth(3).filter(|f| !f.is_empty())?;
    let is_zone = match region {
        Some(region) => field.len() > region.len() && field.starts_with(region),
        None => field.ends_with(|c: char| c.is_ascii_lowercase()),
    };
    is_zone.then(|| field.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_comes_from_the_arn_only_when_it_is_a_zone() {
        let spot = "arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0";
        assert_eq!(
            zone_of_arn(spot, Some("us-east-1")).as_deref(),
            Some("us-east-1b")
        );
        assert_eq!(zone_of_arn(spot, None).as_deref(), Some("us-east-1b"));
        let state = "arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111";
        assert_eq!(zone_of_arn(state, Some("us-east-1")), None);
        assert_eq!(zone_of_arn(state, None), None);
        let local = "arn:aws:ec2:us-west-2-lax-1a:instance/i-1";
        assert_eq!(
            zone_of_arn(local, Some("us-west-2")).as_deref(),
            Some("us-west-2-lax-1a")
        );
    }

    #[test]
    fn health_codes_map_to_actions() {
        assert_eq!(
            health_action("AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED"),
            Some(Action::Reboot)
        );
        assert_eq!(
            health_action("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"),
            Some(Action::Stop)
        );
        assert_eq!(
            health_action("AWS_EC2_DEDICATED_HOST_NETWORK_MAINTENANCE_SCHEDULED"),
            None
        );
    }

    #[test]
    fn unknown_instance_action_is_an_error_not_a_guess() {
        let body = br#"{"id":"x","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning",
            "time":"2026-01-01T00:00:00Z","detail":{"instance-id":"i-1","instance-action":"explode"}}"#;
        let err = parse(body).unwrap_err();
        assert_eq!(err.kind(), "invalid_value");
    }

    #[test]
    fn an_unmapped_type_reusing_field_names_with_other_types_is_ignored_not_rejected() {
        let body = br#"{"id":"x","source":"aws.ecs","detail-type":"ECS Task State Change",
            "time":"2026-01-01T00:00:00Z","detail":{"state":{"desired":"STOPPED"},
            "affectedEntities":"n/a","instance-id":42,"service":["a"]}}"#;
        let parsed = parse(body).unwrap();
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::UnknownType);
    }

    #[test]
    fn launching_lifecycle_is_not_actionable() {
        let body =
            br#"{"LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING","EC2InstanceId":"i-1",
            "RequestId":"r","Time":"2022-01-31T23:07:47.872Z"}"#;
        let parsed = parse(body).unwrap();
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::NotActionable);
    }

    #[test]
    fn a_health_event_naming_26k_instances_becomes_the_cap_and_a_count() {
        let entities: Vec<String> = (0..26_201u64)
            .map(|i| format!(r#"{{"entityValue":"i-{i:017x}"}}"#))
            .collect();
        let body = format!(
            r#"{{"id":"h","detail-type":"AWS Health Event","source":"aws.health","time":"2026-11-20T08:00:00Z",
            "region":"eu-central-1","resources":[],"detail":{{"service":"EC2","eventTypeCategory":"scheduledChange",
            "eventTypeCode":"AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED","startTime":"2026-11-26T02:00:00Z",
            "affectedEntities":[{}]}}}}"#,
            entities.join(",")
        );
        assert!(
            body.len() <= crate::providers::MAX_MESSAGE_BYTES,
            "{}",
            body.len()
        );
        let parsed = parse_with(body.as_bytes(), 1000).unwrap();
        assert_eq!((parsed.events.len(), parsed.dropped), (1000, 25_201));
        let all = parse_with(body.as_bytes(), 100_000).unwrap();
        assert_eq!((all.events.len(), all.dropped), (26_201, 0));
    }
}
