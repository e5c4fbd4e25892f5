//! GCP: a Cloud Audit `LogEntry` as a logging sink publishes it to Pub/Sub (the message data),
//! or wrapped in the Pub/Sub push envelope → normalised events. Pure: bytes in, [`Parsed`] out.
//!
//! The mapping is docs/design.md §3.3. `details` carries, for maintenance, `maintenance_type`
//! (SCHEDULED, UNSCHEDULED) and `can_reschedule` where the entry has them, and for every entry
//! the `operation_id` of the system event.
//!
//! A LogEntry with a `textPayload` or `jsonPayload` instead of a `protoPayload` is not an audit
//! log entry (a sink filter broader than the one `infra/gcp` writes lets such entries through):
//! it is ignored as `unknown_type`, not rejected.

use std::fmt;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::event::{Event, EventData, Instance, Kind, Provider, Status};
use crate::providers::wire::{self, Str, non_blank, optional_time, owned, required, required_time};
use crate::providers::{IgnoreReason, ParseError, Parsed};

/// Notice GCP gives a Spot or preemptible VM; the audit entry marks its start.
pub const PREEMPTION_NOTICE: SignedDuration = SignedDuration::from_secs(30);

const PREEMPTED: &str = "compute.instances.preempted";
const TERMINATE_ON_HOST_MAINTENANCE: &str = "compute.instances.terminateOnHostMaintenance";
const HOST_ERROR: &str = "compute.instances.hostError";
const UPCOMING_MAINTENANCE: &str = "compute.instances.upcomingMaintenance";
const UPCOMING_INFRA_MAINTENANCE: &str = "compute.instances.upcomingInfraMaintenance";
const MIGRATE_ON_HOST_MAINTENANCE: &str = "compute.instances.migrateOnHostMaintenance";
const AUTOMATIC_RESTART: &str = "compute.instances.automaticRestart";
/// The status message of the entry that closes a maintenance window.
const MAINTENANCE_COMPLETED: &str = "Maintenance window has completed";

/// A LogEntry, or a push envelope around one: `message` is present only in the latter.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    message: Option<PushMessage<'a>>,

    #[serde(rename = "insertId", borrow)]
    insert_id: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    resource: Option<Resource<'a>>,
    #[serde(rename = "protoPayload", borrow)]
    proto_payload: Option<AuditLog<'a>>,
    /// The payload of a text entry: not an audit log.
    #[serde(rename = "textPayload", borrow)]
    text_payload: Option<Str<'a>>,
    /// Whether the entry has a `jsonPayload` object (its content is not read): not an audit log.
    #[serde(rename = "jsonPayload", deserialize_with = "json_object", default)]
    json_payload: Option<()>,
    #[serde(rename = "logName", borrow, deserialize_with = "wire::loose", default)]
    log_name: Option<Str<'a>>,
    #[serde(borrow)]
    operation: Option<Operation<'a>>,
    #[serde(borrow, deserialize_with = "wire::loose_object", default)]
    labels: Option<EntryLabels<'a>>,
}

/// The LogEntry's own labels: only the drill marker is read.
#[derive(Deserialize)]
struct EntryLabels<'a> {
    #[serde(
        rename = "eviction-router.drill",
        borrow,
        deserialize_with = "wire::loose",
        default
    )]
    drill: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct PushMessage<'a> {
    #[serde(borrow)]
    data: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Str<'a>>,
    #[serde(borrow)]
    labels: Option<Labels<'a>>,
}

#[derive(Deserialize)]
struct Labels<'a> {
    #[serde(borrow)]
    instance_id: Option<Str<'a>>,
    #[serde(borrow)]
    project_id: Option<Str<'a>>,
    #[serde(borrow)]
    zone: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct AuditLog<'a> {
    #[serde(rename = "methodName", borrow)]
    method_name: Option<Str<'a>>,
    #[serde(rename = "resourceName", borrow)]
    resource_name: Option<Str<'a>>,
    #[serde(borrow)]
    status: Option<RpcStatus<'a>>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct RpcStatus<'a> {
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(rename = "maintenanceStatus", borrow)]
    maintenance_status: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    ty: Option<Str<'a>>,
    #[serde(rename = "windowStartTime", borrow)]
    window_start_time: Option<Str<'a>>,
    #[serde(rename = "windowEndTime", borrow)]
    window_end_time: Option<Str<'a>>,
    #[serde(rename = "canReschedule")]
    can_reschedule: Option<bool>,
}

#[derive(Deserialize)]
struct Operation<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
}

/// Normalises one Pub/Sub message data (a LogEntry) or push body (an envelope around one).
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let entry: Entry<'_> = wire::from_slice(bytes)?;
    match entry.message {
        Some(message) => {
            let data = required("message.data", message.data)?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| ParseError::invalid("message.data", &data, e))?;
            let inner: Entry<'_> = wire::from_slice(&decoded)?;
            if inner.message.is_some() {
                return Err(ParseError::invalid(
                    "message.data",
                    "{\"message\": ...}",
                    "a push envelope inside a push envelope",
                ));
            }
            log_entry(inner)
        }
        None => log_entry(entry),
    }
}

fn log_entry(entry: Entry<'_>) -> Result<Parsed, ParseError> {
    let Some(payload) = entry.proto_payload else {
        return not_audit_log(&entry);
    };
    let method = required("protoPayload.methodName", payload.method_name)?;
    let kind = match &*method {
        PREEMPTED => Kind::Interruption,
        TERMINATE_ON_HOST_MAINTENANCE | HOST_ERROR => Kind::Termination,
        UPCOMING_MAINTENANCE | UPCOMING_INFRA_MAINTENANCE => Kind::ScheduledMaintenance,
        MIGRATE_ON_HOST_MAINTENANCE | AUTOMATIC_RESTART => {
            return Ok(Parsed::ignored(
                IgnoreReason::NotActionable,
                format!("method `{}`", &*method),
            ));
        }
        other => {
            return Ok(Parsed::ignored(
                IgnoreReason::UnknownType,
                format!("method `{other}`"),
            ));
        }
    };
    if let Some(ty) = entry.resource.as_ref().and_then(|r| r.ty.as_deref())
        && ty != "gce_instance"
    {
        return Ok(Parsed::ignored(
            IgnoreReason::NotActionable,
            format!("resource type `{ty}`"),
        ));
    }
    let id = required("insertId", entry.insert_id)?;
    let occurred_at = required_time("timestamp", entry.timestamp)?;
    let labels = entry.resource.and_then(|r| r.labels);
    let (label_id, label_project, label_zone) = match labels {
        Some(l) => (l.instance_id, l.project_id, l.zone),
        None => (None, None, None),
    };
    let instance_id = required("resource.labels.instance_id", label_id)?;
    let resource_name = non_blank(payload.resource_name);
    let path = resource_name
        .as_deref()
        .map(ResourcePath::parse)
        .unwrap_or_default();
    let project = owned(&label_project).or_else(|| path.project.map(str::to_owned));
    let zone = owned(&label_zone).or_else(|| path.zone.map(str::to_owned));
    let name = path.instance.map(str::to_owned);
    let provider_id = match (&project, &zone, &name) {
        (Some(p), Some(z), Some(n)) => Some(wire::concat(&["gce://", p, "/", z, "/", n])),
        _ => None,
    };
    let instance = Instance {
        id: instance_id.into_owned(),
        name,
        provider_id,
        resource_id: resource_name.map(Str::into_owned),
    };
    let mut data = EventData::new(
        Provider::Gcp,
        kind,
        method.to_string(),
        instance,
        occurred_at,
    );
    data.region = zone.as_deref().and_then(region_of_zone).map(str::to_owned);
    data.account = project;
    data.zone = zone;
    let mut details = Map::new();
    if let Some(op) = entry.operation.and_then(|o| owned(&o.id)) {
        details.insert("operation_id".into(), Value::String(op));
    }
    match kind {
        Kind::Interruption => data.deadline = Some(occurred_at + PREEMPTION_NOTICE),
        Kind::Termination => data.deadline = Some(occurred_at),
        _ => {
            let status_message = payload.status.and_then(|s| s.message);
            maintenance(&mut data, &mut details, payload.metadata, status_message)?;
        }
    }
    if entry
        .labels
        .and_then(|l| l.drill)
        .is_some_and(|d| &*d == "true")
    {
        details.insert("drill".into(), Value::Bool(true));
    }
    data.details = details;
    Ok(Parsed::event(Event::new(id.into_owned(), data)))
}

/// An entry without `protoPayload`. A text or JSON entry (a container's stdout, a firewall log,
/// ...) is valid but not an audit log: ignored, with its log named so that an operator can narrow
/// the sink's filter. An object with none of the three payloads is no LogEntry: malformed.
fn not_audit_log(entry: &Entry<'_>) -> Result<Parsed, ParseError> {
    let payload = if entry.text_payload.is_some() {
        "textPayload"
    } else if entry.json_payload.is_some() {
        "jsonPayload"
    } else {
        return Err(ParseError::MissingField("protoPayload"));
    };
    let log: String = entry
        .log_name
        .as_deref()
        .unwrap_or("(none)")
        .chars()
        .take(200)
        .collect();
    Ok(Parsed::ignored(
        IgnoreReason::UnknownType,
        format!("not an audit log entry: `{payload}` of log `{log}`"),
    ))
}

/// For `#[serde(deserialize_with = "json_object", default)]`: `Some(())` for a JSON object (its
/// members skipped unread), `None` for `null`; any other value is the wrong type.
fn json_object<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
    struct ObjectVisitor;

    impl<'de> Visitor<'de> for ObjectVisitor {
        type Value = Option<()>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(Some(()))
        }
    }

    deserializer.deserialize_any(ObjectVisitor)
}

/// Window, status and type of an upcoming-maintenance entry.
fn maintenance(
    data: &mut EventData,
    details: &mut Map<String, Value>,
    metadata: Option<Metadata<'_>>,
    status_message: Option<Str<'_>>,
) -> Result<(), ParseError> {
    let completed = status_message.is_some_and(|m| m.contains(MAINTENANCE_COMPLETED));
    let Some(md) = metadata else {
        data.status = completed.then_some(Status::Completed);
        return Ok(());
    };
    data.not_before = optional_time(
        "protoPayload.metadata.windowStartTime",
        md.window_start_time,
    )?;
    data.not_after = optional_time("protoPayload.metadata.windowEndTime", md.window_end_time)?;
    data.deadline = data.not_before;
    data.status = if completed {
        Some(Status::Completed)
    } else {
        match md.maintenance_status.as_deref() {
            Some("PENDING") => Some(Status::Scheduled),
            Some("ONGOING") => Some(Status::Started),
            Some("COMPLETED") => Some(Status::Completed),
            Some("CANCELED" | "CANCELLED") => Some(Status::Canceled),
            _ => None,
        }
    };
    if let Some(ty) = owned(&md.ty) {
        details.insert("maintenance_type".into(), Value::String(ty));
    }
    if let Some(can) = md.can_reschedule {
        details.insert("can_reschedule".into(), Value::Bool(can));
    }
    Ok(())
}

/// `projects/<p>/zones/<z>/instances/<name>`, read loosely.
#[derive(Default)]
struct ResourcePath<'a> {
    project: Option<&'a str>,
    zone: Option<&'a str>,
    instance: Option<&'a str>,
}

impl<'a> ResourcePath<'a> {
    fn parse(name: &'a str) -> Self {
        let mut path = ResourcePath::default();
        let mut parts = name.split('/');
        while let Some(key) = parts.next() {
            let value = parts.next().filter(|v| !v.is_empty());
            match key {
                "projects" => path.project = value,
                "zones" => path.zone = value,
                "instances" => path.instance = value,
                _ => {}
            }
        }
        path
    }
}

/// `europe-west1-c` → `europe-west1`.
fn region_of_zone(zone: &str) -> Option<&str> {
    zone.rsplit_once('-')
        .map(|(region, _)| region)
        .filter(|r| !r.is_empty())
}

/// The instant an entry's timestamp denotes; exposed for the Pub/Sub source's lag metric.
pub fn entry_time(bytes: &[u8]) -> Option<Timestamp> {
    #[derive(Deserialize)]
    struct OnlyTime<'a> {
        #[serde(borrow)]
        timestamp: Option<Str<'a>>,
    }
    let t: OnlyTime<'_> = serde_json::from_slice(bytes).ok()?;
    wire::parse_time("timestamp", &t.timestamp?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths_parse_loosely() {
        let p = ResourcePath::parse("projects/p1/zones/us-east1-d/instances/node-a");
        assert_eq!(
            (p.project, p.zone, p.instance),
            (Some("p1"), Some("us-east1-d"), Some("node-a"))
        );
        let p = ResourcePath::parse("instances/x");
        assert_eq!((p.project, p.instance), (None, Some("x")));
        let p = ResourcePath::parse("projects//zones");
        assert_eq!((p.project, p.zone), (None, None));
    }

    #[test]
    fn regions_drop_the_zone_letter() {
        assert_eq!(region_of_zone("europe-west1-c"), Some("europe-west1"));
        assert_eq!(region_of_zone("nodash"), None);
    }

    #[test]
    fn bad_base64_in_a_push_envelope_is_an_error() {
        let err = parse(br#"{"message":{"data":"%%%"},"subscription":"s"}"#).unwrap_err();
        assert_eq!(err.kind(), "invalid_value", "{err}");
    }

    #[test]
    fn text_and_json_entries_are_ignored_as_not_audit_logs() {
        let text = br#"{"insertId":"1x2y3z","textPayload":"GET /healthz 200\n",
            "resource":{"type":"k8s_container","labels":{"project_id":"p1","location":"europe-west1",
            "cluster_name":"c1","namespace_name":"default","pod_name":"web-1","container_name":"web"}},
            "timestamp":"2026-01-01T00:00:00.123456789Z","severity":"INFO",
            "logName":"projects/p1/logs/stdout","receiveTimestamp":"2026-01-01T00:00:01Z"}"#;
        let parsed = parse(text).unwrap();
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.ignored.len(), 1);
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::UnknownType);
        assert!(
            parsed.ignored[0].detail.contains("textPayload")
                && parsed.ignored[0].detail.contains("projects/p1/logs/stdout"),
            "{}",
            parsed.ignored[0]
        );

        let json = br#"{"insertId":"4a","jsonPayload":{"message":"hi","nested":{"a":[1,2]}},
            "resource":{"type":"gce_instance","labels":{"instance_id":"1","zone":"us-east1-d"}},
            "timestamp":"2026-01-01T00:00:00Z"}"#;
        let parsed = parse(json).unwrap();
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::UnknownType);
        assert!(parsed.ignored[0].detail.contains("jsonPayload"));
        assert!(parsed.ignored[0].detail.contains("(none)"));

        // Wrapped in a push envelope, the same.
        let data = base64::engine::general_purpose::STANDARD.encode(&json[..]);
        let push =
            format!(r#"{{"message":{{"data":"{data}","messageId":"1"}},"subscription":"s"}}"#);
        let parsed = parse(push.as_bytes()).unwrap();
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::UnknownType);
    }

    #[test]
    fn entries_that_are_no_log_entry_or_have_payloads_of_the_wrong_type_are_malformed() {
        for (body, kind) in [
            (
                &br#"{"insertId":"x","timestamp":"2026-01-01T00:00:00Z"}"#[..],
                "missing_field",
            ),
            (br#"{}"#, "missing_field"),
            (
                br#"{"protoPayload":null,"jsonPayload":null}"#,
                "missing_field",
            ),
            (
                br#"{"protoPayload":"compute.instances.preempted"}"#,
                "shape",
            ),
            (br#"{"protoPayload":{"methodName":["x"]}}"#, "shape"),
            (br#"{"textPayload":{"a":1}}"#, "shape"),
            (br#"{"jsonPayload":"text"}"#, "shape"),
            (br#"{"jsonPayload":[1]}"#, "shape"),
            (br#"["not", "an", "object"]"#, "shape"),
            (br#"42"#, "shape"),
            (br#"{"textPayload":"#, "json"),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.kind(), kind, "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn non_instance_resources_are_not_actionable() {
        let body =
            br#"{"insertId":"x","timestamp":"2026-01-01T00:00:00Z","resource":{"type":"gce_disk"},
            "protoPayload":{"methodName":"compute.instances.hostError"}}"#;
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.ignored[0].reason, IgnoreReason::NotActionable);
    }
}
