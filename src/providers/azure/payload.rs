//! Azure: one Event Grid event (Service Bus body) or an array of them (webhook body), in the
//! Event Grid schema or CloudEvents 1.0 → normalised events. Pure: bytes in, [`Parsed`] out.
//!
//! The mapping is docs/design.md §3.2. `details` carries, per signal:
//! - scheduled events: `scheduled_event_id`, `scheduled_event_type`, `event_source`,
//!   `duration_seconds`, `description`;
//! - Resource Health annotations: `annotation_name`, `reason`, `context`, `category`.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::{Action, Event, EventData, Instance, Kind, Provider, Status};
use crate::providers::wire::{
    self, Str, loose, loose_i64, loose_object, loose_strings, non_blank, optional_time, owned,
    required,
};
use crate::providers::{IgnoreReason, ParseError, Parsed};

/// Event type of a VM scheduled event surfaced through Event Grid.
pub const SCHEDULED_EVENT_EMITTED: &str =
    "Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted";
/// Event type of a Resource Health annotation.
pub const RESOURCE_ANNOTATED: &str =
    "Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated";
/// Event type of a Resource Health availability change (not acted on).
pub const AVAILABILITY_STATUS_CHANGED: &str =
    "Microsoft.ResourceNotifications.HealthResources.AvailabilityStatusChanged";
/// Event type of the Event Grid webhook validation handshake.
pub const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// One Event Grid event in either schema. Event Grid names fields `eventType`/`eventTime`,
/// CloudEvents `type`/`time`; both are read in one pass.
#[derive(Deserialize)]
struct GridEvent<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(rename = "eventType", borrow)]
    event_type: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    ce_type: Option<Str<'a>>,
    #[serde(rename = "eventTime", borrow)]
    event_time: Option<Str<'a>>,
    #[serde(rename = "time", borrow)]
    ce_time: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Str<'a>>,
    /// Event Grid schema: the publisher's topic.
    #[serde(borrow, deserialize_with = "loose", default)]
    topic: Option<Str<'a>>,
    /// CloudEvents: the publisher.
    #[serde(borrow, deserialize_with = "loose", default)]
    source: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose_object", default)]
    data: Option<Data<'a>>,
}

/// The `data` of the event types the mapping reads, united so the body is parsed in one pass.
/// Every field is loose: other event types may use these names for other types, and such an
/// event must still come out as ignored, not as an error.
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(
        rename = "resourceInfo",
        borrow,
        deserialize_with = "loose_object",
        default
    )]
    resource_info: Option<Box<ResourceInfo<'a>>>,
    #[serde(rename = "validationCode", borrow, deserialize_with = "loose", default)]
    validation_code: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ResourceInfo<'a> {
    #[serde(borrow, deserialize_with = "loose", default)]
    id: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose", default)]
    location: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose_object", default)]
    properties: Option<Box<Properties<'a>>>,
}

/// The union of the properties of scheduled events and of health annotations.
#[derive(Deserialize)]
struct Properties<'a> {
    // Scheduled events (PascalCase, as the Instance Metadata Service spells them).
    #[serde(rename = "EventId", borrow, deserialize_with = "loose", default)]
    event_id: Option<Str<'a>>,
    #[serde(rename = "EventType", borrow, deserialize_with = "loose", default)]
    event_type: Option<Str<'a>>,
    #[serde(rename = "EventStatus", borrow, deserialize_with = "loose", default)]
    event_status: Option<Str<'a>>,
    #[serde(rename = "EventSource", borrow, deserialize_with = "loose", default)]
    event_source: Option<Str<'a>>,
    #[serde(rename = "NotBefore", borrow, deserialize_with = "loose", default)]
    not_before: Option<Str<'a>>,
    #[serde(rename = "DurationInSeconds", default, deserialize_with = "loose_i64")]
    duration_in_seconds: Option<i64>,
    #[serde(rename = "Description", borrow, deserialize_with = "loose", default)]
    description: Option<Str<'a>>,
    #[serde(
        rename = "Resources",
        borrow,
        deserialize_with = "loose_strings",
        default
    )]
    resources: Option<Vec<Str<'a>>>,

    // Resource Health annotations (camelCase).
    #[serde(
        rename = "targetResourceId",
        borrow,
        deserialize_with = "loose",
        default
    )]
    target_resource_id: Option<Str<'a>>,
    #[serde(rename = "occurredTime", borrow, deserialize_with = "loose", default)]
    occurred_time: Option<Str<'a>>,
    #[serde(rename = "annotationName", borrow, deserialize_with = "loose", default)]
    annotation_name: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose", default)]
    reason: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose", default)]
    context: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "loose", default)]
    category: Option<Str<'a>>,
}

/// Normalises one Service Bus body or webhook body: a single event or an array of events.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    parse_with(bytes, crate::providers::DEFAULT_MAX_EVENTS)
}

/// [`parse`] into at most `max_events` events, counted over the whole batch.
///
/// In an array, each element is read on its own: a malformed one is listed in
/// [`Parsed::invalid`] and the others are still normalised (Event Grid gives one answer for a
/// whole batch; decision record 0009). Only when no element is valid is the body an error (the
/// first element's), as is a body that is not a JSON array of values at all.
pub fn parse_with(bytes: &[u8], max_events: usize) -> Result<Parsed, ParseError> {
    if !wire::is_array(bytes) {
        return one(wire::from_slice(bytes)?, max_events);
    }
    let batch: Vec<&serde_json::value::RawValue> = wire::from_slice(bytes)?;
    if batch.is_empty() {
        return Ok(Parsed::ignored(
            IgnoreReason::EmptyBatch,
            "an empty array of events",
        ));
    }
    let mut parsed = Parsed::default();
    let mut first_error = None;
    let mut valid = 0;
    for (index, raw) in batch.into_iter().enumerate() {
        let left = max_events.saturating_sub(parsed.events.len());
        match wire::from_raw::<GridEvent<'_>>(raw).and_then(|event| one(event, left)) {
            Ok(element) => {
                valid += 1;
                parsed.extend(element);
            }
            Err(e) => {
                parsed
                    .invalid
                    .push(crate::providers::Invalid::of(index, &e));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if valid == 0 => Err(e),
        _ => Ok(parsed),
    }
}

/// The validation code of an Event Grid `SubscriptionValidationEvent`, if `bytes` is one (as a
/// single event or the first of an array). The webhook answers it with `validationResponse`.
pub fn validation_code(bytes: &[u8]) -> Option<String> {
    let event: GridEvent<'_> = if wire::is_array(bytes) {
        let batch: Vec<GridEvent<'_>> = serde_json::from_slice(bytes).ok()?;
        batch.into_iter().next()?
    } else {
        serde_json::from_slice(bytes).ok()?
    };
    let ty = event.event_type.or(event.ce_type)?;
    if &*ty != SUBSCRIPTION_VALIDATION {
        return None;
    }
    owned(&event.data?.validation_code)
}

fn one(event: GridEvent<'_>, max_events: usize) -> Result<Parsed, ParseError> {
    let drill = [&event.topic, &event.source]
        .iter()
        .any(|f| f.as_deref() == Some(crate::providers::DRILL));
    let mut parsed = by_type(event, max_events)?;
    if drill {
        for event in &mut parsed.events {
            event.data.details.insert("drill".into(), Value::Bool(true));
        }
    }
    Ok(parsed)
}

fn by_type(mut event: GridEvent<'_>, max_events: usize) -> Result<Parsed, ParseError> {
    let ty = required(
        "eventType",
        event.event_type.take().or(event.ce_type.take()),
    )?;
    match &*ty {
        SCHEDULED_EVENT_EMITTED => scheduled_event(event, &ty, max_events),
        RESOURCE_ANNOTATED if max_events == 0 => {
            // Still read, so that a malformed one is told apart; its one event is over the cap.
            annotation(event, &ty).map(|p| Parsed::capped(Vec::new(), p.events.len()))
        }
        RESOURCE_ANNOTATED => annotation(event, &ty),
        SUBSCRIPTION_VALIDATION => Ok(Parsed::ignored(
            IgnoreReason::SubscriptionValidation,
            "Event Grid subscription validation handshake",
        )),
        AVAILABILITY_STATUS_CHANGED => Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("event type `{}`", &*ty),
        )),
        other => Ok(Parsed::ignored(
            IgnoreReason::UnknownType,
            format!("event type `{other}`"),
        )),
    }
}

fn data_of<'a>(event: &mut GridEvent<'a>) -> Result<Box<ResourceInfo<'a>>, ParseError> {
    let data = event.data.take().ok_or(ParseError::MissingField("data"))?;
    data.resource_info
        .ok_or(ParseError::MissingField("data.resourceInfo"))
}

fn event_time(event: &GridEvent<'_>) -> Result<Timestamp, ParseError> {
    wire::required_time(
        "eventTime",
        event.event_time.clone().or_else(|| event.ce_time.clone()),
    )
}

/// A VM scheduled event: one normalised event per VM it names.
fn scheduled_event(
    mut event: GridEvent<'_>,
    ty: &str,
    max_events: usize,
) -> Result<Parsed, ParseError> {
    let info = data_of(&mut event)?;
    let props = info
        .properties
        .ok_or(ParseError::MissingField("data.resourceInfo.properties"))?;
    let scope = required("data.resourceInfo.id", info.id)?;
    let scope = ResourceId::parse(&scope).ok_or_else(|| {
        ParseError::invalid("data.resourceInfo.id", &scope, "not an ARM resource id")
    })?;
    let id = required("id", event.id.clone())?;
    let occurred_at = event_time(&event)?;
    let event_type = required("data.resourceInfo.properties.EventType", props.event_type)?;
    let status = match non_blank(props.event_status).as_deref() {
        None => None,
        Some(s) => Some(scheduled_status(s)?),
    };
    let not_before = optional_time("data.resourceInfo.properties.NotBefore", props.not_before)?;
    let (kind, action) = match &*event_type {
        "Preempt" => (Kind::Interruption, None),
        "Terminate" => (Kind::Termination, Some(Action::Delete)),
        "Reboot" => (Kind::ScheduledMaintenance, Some(Action::Reboot)),
        "Redeploy" => (Kind::ScheduledMaintenance, Some(Action::Redeploy)),
        "Freeze" => (Kind::ScheduledMaintenance, Some(Action::Freeze)),
        other => {
            return Ok(Parsed::ignored(
                IgnoreReason::NotActionable,
                format!("scheduled event type `{other}`"),
            ));
        }
    };
    let vms: Vec<Str<'_>> = props
        .resources
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !r.trim().is_empty())
        .collect();
    if vms.is_empty() {
        return Ok(Parsed::ignored(
            IgnoreReason::NoInstance,
            "scheduled event names no VM",
        ));
    }

    let mut details = Map::new();
    put(&mut details, "scheduled_event_id", &props.event_id);
    details.insert(
        "scheduled_event_type".into(),
        Value::String(event_type.to_string()),
    );
    put(&mut details, "event_source", &props.event_source);
    if let Some(d) = props.duration_in_seconds {
        details.insert("duration_seconds".into(), Value::from(d));
    }
    put(&mut details, "description", &props.description);

    // Once started, NotBefore is blank: the disruption is now.
    let starts = not_before.unwrap_or(occurred_at);
    let not_after = props
        .duration_in_seconds
        .filter(|d| *d > 0)
        .map(|d| starts + SignedDuration::from_secs(d));
    let region = owned(&info.location);
    let events = vms
        .iter()
        .take(max_events)
        .map(|vm| {
            let vm_id = scope.vm_id(vm);
            let mut data =
                EventData::new(Provider::Azure, kind, ty, instance(&vm_id, vm), occurred_at);
            data.status = status;
            data.account = Some(scope.subscription.to_owned());
            data.region = region.clone();
            data.action = action;
            if kind == Kind::ScheduledMaintenance {
                data.not_before = not_before;
                data.not_after = not_after;
            }
            data.deadline = Some(starts);
            data.details = details.clone();
            Event::new(wire::concat(&[&id, "/", vm]), data)
        })
        .collect();
    Ok(Parsed::capped(events, vms.len()))
}

fn scheduled_status(value: &str) -> Result<Status, ParseError> {
    match value {
        "Scheduled" => Ok(Status::Scheduled),
        "Started" => Ok(Status::Started),
        "Completed" => Ok(Status::Completed),
        "Canceled" | "Cancelled" => Ok(Status::Canceled),
        other => Err(ParseError::invalid(
            "data.resourceInfo.properties.EventStatus",
            other,
            "expected Scheduled, Started, Completed or Canceled",
        )),
    }
}

/// A Resource Health annotation on a VM.
fn annotation(mut event: GridEvent<'_>, ty: &str) -> Result<Parsed, ParseError> {
    let info = data_of(&mut event)?;
    let props = info
        .properties
        .ok_or(ParseError::MissingField("data.resourceInfo.properties"))?;
    let name = required(
        "data.resourceInfo.properties.annotationName",
        props.annotation_name,
    )?;
    let Some(class) = classify_annotation(&name) else {
        return Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("resource annotation `{}`", &*name),
        ));
    };
    let target = non_blank(props.target_resource_id)
        .or_else(|| non_blank(event.subject.clone()))
        .ok_or(ParseError::MissingField(
            "data.resourceInfo.properties.targetResourceId",
        ))?;
    let scope = ResourceId::parse(&target).ok_or_else(|| {
        ParseError::invalid(
            "data.resourceInfo.properties.targetResourceId",
            &target,
            "not an ARM resource id",
        )
    })?;
    let id = required("id", event.id.clone())?;
    let occurred_at = match non_blank(props.occurred_time) {
        Some(t) => wire::parse_time("data.resourceInfo.properties.occurredTime", &t)?,
        None => event_time(&event)?,
    };
    let vm_name = scope.vm_name();
    let mut data = EventData::new(
        Provider::Azure,
        class.kind,
        ty,
        instance(&target, &vm_name),
        occurred_at,
    );
    data.status = class.status;
    data.account = Some(scope.subscription.to_owned());
    data.region = owned(&info.location);
    data.action = class.action;
    if class.kind == Kind::Interruption {
        // The annotation is written after the VM was preempted: the capacity is already gone.
        data.deadline = Some(occurred_at);
    }
    let mut details = Map::new();
    details.insert("annotation_name".into(), Value::String(name.to_string()));
    put(&mut details, "reason", &props.reason);
    put(&mut details, "context", &props.context);
    put(&mut details, "category", &props.category);
    data.details = details;
    Ok(Parsed::event(Event::new(id.into_owned(), data)))
}

struct AnnotationClass {
    kind: Kind,
    status: Option<Status>,
    action: Option<Action>,
}

/// Which Resource Health VM annotations the router acts on: the Spot preemption, and planned
/// maintenance or degraded hardware. User-initiated reboots and deallocations, and unplanned
/// failures already over, are not actionable.
fn classify_annotation(name: &str) -> Option<AnnotationClass> {
    if name == "VirtualMachinePreempted" {
        return Some(AnnotationClass {
            kind: Kind::Interruption,
            status: Some(Status::Started),
            action: None,
        });
    }
    let planned = name.contains("PlannedMaintenance") || name.contains("DegradedHardware");
    if !planned {
        return None;
    }
    let status = if name.contains("Scheduled") {
        Some(Status::Scheduled)
    } else if name.contains("Initiated") || name.contains("Started") {
        Some(Status::Started)
    } else {
        None
    };
    let action = if name.contains("Migration") {
        Some(Action::Migrate)
    } else if name.contains("Redeploy") {
        Some(Action::Redeploy)
    } else if name.contains("Reboot") {
        Some(Action::Reboot)
    } else {
        None
    };
    Some(AnnotationClass {
        kind: Kind::ScheduledMaintenance,
        status,
        action,
    })
}

/// The instance of a VM resource id: the id as given, and the providerID Kubernetes uses
/// (`azure://` + the id with the resource-group segment lowercased).
fn instance(vm_id: &str, vm_name: &str) -> Instance {
    Instance {
        id: vm_id.to_owned(),
        name: Some(vm_name.to_owned()),
        provider_id: Some(provider_id(vm_id)),
        resource_id: None,
    }
}

/// `azure://` + the resource id with the resource-group segment lowercased, which is the form
/// the Azure cloud provider writes into `Node.spec.providerID`.
pub fn provider_id(vm_id: &str) -> String {
    let mut out = String::with_capacity(vm_id.len() + 8);
    out.push_str("azure://");
    let mut lower_next = false;
    for (i, segment) in vm_id.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if lower_next {
            out.extend(segment.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            out.push_str(segment);
        }
        lower_next = segment.eq_ignore_ascii_case("resourceGroups");
    }
    out
}

/// The parts of an ARM resource id the mapping needs.
struct ResourceId<'a> {
    subscription: &'a str,
    resource_group: &'a str,
    /// What follows the resource group, e.g. `providers/Microsoft.Compute/virtualMachines/vm1`.
    tail: &'a str,
}

impl<'a> ResourceId<'a> {
    fn parse(id: &'a str) -> Option<Self> {
        let mut parts = id.trim_start_matches('/').splitn(5, '/');
        if !parts.next()?.eq_ignore_ascii_case("subscriptions") {
            return None;
        }
        let subscription = parts.next().filter(|s| !s.is_empty())?;
        if !parts.next()?.eq_ignore_ascii_case("resourceGroups") {
            return None;
        }
        let resource_group = parts.next().filter(|s| !s.is_empty())?;
        let tail = parts.next().unwrap_or_default();
        Some(ResourceId {
            subscription,
            resource_group,
            tail,
        })
    }

    /// The full id of a VM named in a scheduled event's `Resources`: a Uniform scale-set
    /// instance `<vmss>_<N>` lives at `virtualMachineScaleSets/<vmss>/virtualMachines/<N>`;
    /// anything else is a standalone (or Flexible scale-set) VM.
    fn vm_id(&self, vm: &str) -> String {
        let base = [
            "/subscriptions/",
            self.subscription,
            "/resourceGroups/",
            self.resource_group,
            "/providers/Microsoft.Compute",
        ];
        let mut id =
            String::with_capacity(base.iter().map(|p| p.len()).sum::<usize>() + vm.len() + 48);
        base.iter().for_each(|part| id.push_str(part));
        match uniform_instance(vm) {
            Some((vmss, n)) => {
                id.push_str("/virtualMachineScaleSets/");
                id.push_str(vmss);
                id.push_str("/virtualMachines/");
                id.push_str(n);
            }
            None => {
                id.push_str("/virtualMachines/");
                id.push_str(vm);
            }
        }
        id
    }

    /// The VM's name: `<vmss>_<N>` for a scale-set instance, the last segment otherwise.
    fn vm_name(&self) -> String {
        let t: Vec<&str> = self.tail.split('/').collect();
        let find = |key: &str| t.iter().position(|s| s.eq_ignore_ascii_case(key));
        if let (Some(i), Some(j)) = (find("virtualMachineScaleSets"), find("virtualMachines"))
            && let (Some(vmss), Some(n)) = (t.get(i + 1), t.get(j + 1))
        {
            return format!("{vmss}_{n}");
        }
        if let Some(j) = find("virtualMachines")
            && let Some(name) = t.get(j + 1)
        {
            return (*name).to_owned();
        }
        t.last().copied().unwrap_or(self.resource_group).to_owned()
    }
}

fn uniform_instance(vm: &str) -> Option<(&str, &str)> {
    let (vmss, n) = vm.rsplit_once('_')?;
    (!vmss.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then_some((vmss, n))
}

fn put(details: &mut Map<String, Value>, key: &str, value: &Option<Str<'_>>) {
    if let Some(v) = owned(value) {
        details.insert(key.to_owned(), Value::String(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_id_lowercases_only_the_resource_group() {
        let id = "/subscriptions/S-1/resourceGroups/MC_RG_Cluster/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-123-vmss/virtualMachines/7";
        assert_eq!(
            provider_id(id),
            "azure:///subscriptions/S-1/resourceGroups/mc_rg_cluster/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-123-vmss/virtualMachines/7"
        );
    }

    #[test]
    fn uniform_scale_set_names_split_on_the_last_underscore() {
        assert_eq!(uniform_instance("myvmss_12"), Some(("myvmss", "12")));
        assert_eq!(uniform_instance("my_vmss_3"), Some(("my_vmss", "3")));
        assert_eq!(uniform_instance("vm_a"), None);
        assert_eq!(uniform_instance("_3"), None);
        assert_eq!(uniform_instance("plainvm"), None);
    }

    #[test]
    fn vm_names_come_from_the_target_id() {
        let id = ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/4").unwrap();
        assert_eq!(id.vm_name(), "v_4");
        let id = ResourceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
        )
        .unwrap();
        assert_eq!(id.vm_name(), "vm1");
        assert!(ResourceId::parse("/subscriptions/s").is_none());
        assert!(ResourceId::parse("not/an/id").is_none());
    }

    #[test]
    fn annotation_classes() {
        assert_eq!(
            classify_annotation("VirtualMachinePreempted").unwrap().kind,
            Kind::Interruption
        );
        let c = classify_annotation("VirtualMachineMigrationScheduledForDegradedHardware").unwrap();
        assert_eq!(
            (c.kind, c.status, c.action),
            (
                Kind::ScheduledMaintenance,
                Some(Status::Scheduled),
                Some(Action::Migrate)
            )
        );
        let c = classify_annotation("VirtualMachineRebootInitiatedForPlannedMaintenance").unwrap();
        assert_eq!(
            (c.status, c.action),
            (Some(Status::Started), Some(Action::Reboot))
        );
        assert!(classify_annotation("VirtualMachineDeallocationInitiated").is_none());
        assert!(classify_annotation("VirtualMachineRebootInitiatedByControlPlane").is_none());
    }

    #[test]
    fn validation_code_is_found_in_single_and_array_bodies() {
        let one = br#"{"id":"1","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2026-01-01T00:00:00Z","data":{"validationCode":"ABC","validationUrl":"https://x"}}"#;
        assert_eq!(validation_code(one).as_deref(), Some("ABC"));
        let mut arr = b"[".to_vec();
        arr.extend_from_slice(one);
        arr.push(b']');
        assert_eq!(validation_code(&arr).as_deref(), Some("ABC"));
        assert_eq!(validation_code(b"[]"), None);
        assert_eq!(validation_code(b"{\"eventType\":\"other\"}"), None);
    }

    /// A Preempt scheduled event naming `n` VMs of the Uniform scale set `v` (`v_<i>`).
    fn preempt_naming(n: usize) -> String {
        let resources: Vec<String> = (0..n).map(|i| format!("\"v_{i}\"")).collect();
        format!(
            r#"{{"id":"big","eventType":"{SCHEDULED_EVENT_EMITTED}","eventTime":"2026-11-23T10:00:02Z",
            "data":{{"resourceInfo":{{"id":"/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachineScaleSets/v/providers/microsoft.maintenance/scheduledevents/e",
            "properties":{{"EventType":"Preempt","EventStatus":"Scheduled","NotBefore":"Mon, 23 Nov 2026 10:00:30 GMT","Resources":[{}]}}}}}}}}"#,
            resources.join(",")
        )
    }

    #[test]
    fn a_scheduled_event_naming_96k_vms_becomes_the_cap_and_a_count() {
        let body = preempt_naming(96_167);
        assert!(
            body.len() <= crate::providers::MAX_MESSAGE_BYTES,
            "{}",
            body.len()
        );
        let parsed = parse_with(body.as_bytes(), 1000).unwrap();
        assert_eq!(parsed.events.len(), 1000);
        assert_eq!(parsed.dropped, 95_167);
        assert_eq!(parsed.events[999].id, "big/v_999");
        // The cap counts across a batch.
        let batch = format!("[{},{}]", preempt_naming(600), preempt_naming(600));
        let parsed = parse_with(batch.as_bytes(), 1000).unwrap();
        assert_eq!((parsed.events.len(), parsed.dropped), (1000, 200));
    }

    #[test]
    fn a_batch_with_malformed_elements_keeps_the_valid_ones() {
        let good = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/azure/scheduled-event-preempt.eventgrid.json"
        ))
        .unwrap();
        let wrong_type = r#"{"id": 5, "eventType": ["x"]}"#;
        let missing = format!(
            r#"{{"id":"m","eventType":"{SCHEDULED_EVENT_EMITTED}","eventTime":"2026-11-23T10:00:02Z"}}"#
        );
        let body = format!("[{good}, {wrong_type}, \"text\", {missing}]");
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!(parsed.events.len(), 1, "the valid element is read");
        let invalid: Vec<(usize, &str)> =
            parsed.invalid.iter().map(|i| (i.index, i.kind)).collect();
        assert_eq!(invalid, [(1, "shape"), (2, "shape"), (3, "missing_field")]);
        // No valid element: the body is malformed, as one bad event is.
        let err = parse(format!("[{wrong_type}]").as_bytes()).unwrap_err();
        assert_eq!(err.kind(), "shape");
        // Not an array of values at all: malformed.
        assert_eq!(parse(b"[{\"id\": ").unwrap_err().kind(), "json");
    }
}
