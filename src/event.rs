//! The normalised event: the public contract every source produces and every sink consumes.
//!
//! An [`Event`] is a structured-mode CloudEvents 1.0 object whose `data` is an [`EventData`].
//! It is plain data: no handles, no closures, nothing that cannot be serialised and compared.
//! Optional fields serialise as `null`, never go missing. Adding a field is compatible; renaming or
//! removing one bumps [`SCHEMA_VERSION`] and the `type` suffix. `docs/schema/event.v1.json` is the
//! JSON Schema of this module and the golden tests hold the two together.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version of the `data` object; also the `.vN` suffix of the CloudEvents `type`.
pub const SCHEMA_VERSION: u32 = 1;
/// The CloudEvents specification version this crate writes.
pub const SPEC_VERSION: &str = "1.0";
/// The `datacontenttype` of every event.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// Declares a field-less enum with its wire names, `as_str`, `Display`, `FromStr` and `ALL`, so
/// the spelling lives in one place for serde, metrics labels and the CLI alike.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling, also used as a metric label.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        what: stringify!($name),
                        value: s.to_owned(),
                        expected: &[$($wire),+],
                    }),
                }
            }
        }
    };
}

/// A string that names no variant of one of this module's enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {}", expected.join(", "))]
pub struct UnknownVariant {
    /// The enum's name.
    pub what: &'static str,
    /// The rejected value.
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

wire_enum! {
    /// The cloud an event came from.
    Provider {
        /// Amazon Web Services.
        Aws => "aws",
        /// Microsoft Azure.
        Azure => "azure",
        /// Google Cloud.
        Gcp => "gcp",
    }
}

wire_enum! {
    /// What happens to the capacity.
    Kind {
        /// Capacity reclaim imminent or under way (Spot interruption, preemption).
        Interruption => "interruption",
        /// Elevated risk of interruption, no deadline.
        RebalanceRecommendation => "rebalance_recommendation",
        /// Planned maintenance with a window.
        ScheduledMaintenance => "scheduled_maintenance",
        /// Stop, terminate or host failure not covered by the kinds above.
        Termination => "termination",
        /// Emitted by the router itself when a replacement Node became Ready.
        ReplacementReady => "replacement_ready",
        /// Emitted by the router itself when it shelters the Spot siblings of an interrupted
        /// Node (same instance type and zone) for a window.
        PoolAtRisk => "pool_at_risk",
        /// Emitted by the router itself when it moved (or tried to move) an owner's pods from
        /// on-demand back to Spot.
        Failback => "failback",
        /// Emitted by the router itself every period: a Spot pool's census and statistics.
        PoolStats => "pool_stats",
    }
}

wire_enum! {
    /// Lifecycle of an event, where the provider has one.
    Status {
        /// Announced, not begun.
        Scheduled => "scheduled",
        /// Under way.
        Started => "started",
        /// Over.
        Completed => "completed",
        /// Called off: undo what `scheduled` did.
        Canceled => "canceled",
    }
}

wire_enum! {
    /// What the provider will do to the instance.
    Action {
        /// The instance is terminated.
        Terminate => "terminate",
        /// The instance is stopped.
        Stop => "stop",
        /// The instance is hibernated.
        Hibernate => "hibernate",
        /// The VM is deallocated (Azure).
        Deallocate => "deallocate",
        /// The VM is deleted (Azure).
        Delete => "delete",
        /// The instance is rebooted.
        Reboot => "reboot",
        /// The VM is moved to another host (Azure).
        Redeploy => "redeploy",
        /// The VM is paused for a few seconds (Azure).
        Freeze => "freeze",
        /// The VM is live-migrated.
        Migrate => "migrate",
        /// The instance is restarted after a failure.
        Restart => "restart",
    }
}

impl Kind {
    /// The CloudEvents `type` of this kind: `eviction-router.<kind>.v1`.
    pub const fn cloud_event_type(self) -> &'static str {
        match self {
            Kind::Interruption => "eviction-router.interruption.v1",
            Kind::RebalanceRecommendation => "eviction-router.rebalance_recommendation.v1",
            Kind::ScheduledMaintenance => "eviction-router.scheduled_maintenance.v1",
            Kind::Termination => "eviction-router.termination.v1",
            Kind::ReplacementReady => "eviction-router.replacement_ready.v1",
            Kind::PoolAtRisk => "eviction-router.pool_at_risk.v1",
            Kind::Failback => "eviction-router.failback.v1",
            Kind::PoolStats => "eviction-router.pool_stats.v1",
        }
    }
}

/// The instance an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// AWS instance id; Azure VM ARM resource id; GCP numeric instance id.
    pub id: String,
    /// The instance name where the provider has one distinct from the id (GCP, Azure).
    pub name: Option<String>,
    /// The exact Kubernetes `Node.spec.providerID`, when the event alone determines it.
    pub provider_id: Option<String>,
    /// The provider's full resource name (AWS ARN, GCP resource name), when given.
    pub resource_id: Option<String>,
}

/// The Node an event was resolved to by the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// `metadata.name` of the Node.
    pub name: String,
}

/// The `data` of a normalised event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What happens to the capacity.
    pub kind: Kind,
    /// Lifecycle state, or `None` where the provider has no lifecycle.
    pub status: Option<Status>,
    /// The cloud.
    pub provider: Provider,
    /// The provider's own name for the signal (detail-type, event type, method name).
    pub provider_event: String,
    /// AWS account, Azure subscription or GCP project.
    pub account: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Availability zone.
    pub zone: Option<String>,
    /// The affected instance.
    pub instance: Instance,
    /// What the provider will do to the instance.
    pub action: Option<Action>,
    /// When the provider says the signal happened.
    pub occurred_at: Timestamp,
    /// Start of a maintenance window.
    pub not_before: Option<Timestamp>,
    /// End of a maintenance window.
    pub not_after: Option<Timestamp>,
    /// When the capacity is expected to be gone.
    pub deadline: Option<Timestamp>,
    /// The Node the router resolved the instance to; `None` out of the normaliser.
    pub node: Option<NodeRef>,
    /// Provider extras the router needs later, documented per provider.
    pub details: Map<String, Value>,
}

impl EventData {
    /// A new `data` object with every optional field `None` and no details.
    pub fn new(
        provider: Provider,
        kind: Kind,
        provider_event: impl Into<String>,
        instance: Instance,
        occurred_at: Timestamp,
    ) -> Self {
        EventData {
            schema_version: SCHEMA_VERSION,
            kind,
            status: None,
            provider,
            provider_event: provider_event.into(),
            account: None,
            region: None,
            zone: None,
            instance,
            action: None,
            occurred_at,
            not_before: None,
            not_after: None,
            deadline: None,
            node: None,
            details: Map::new(),
        }
    }

    /// The CloudEvents `source`: `/<provider>/<account or ->/<region or ->`.
    pub fn cloud_event_source(&self) -> String {
        let parts = [
            "/",
            self.provider.as_str(),
            "/",
            self.account.as_deref().unwrap_or("-"),
            "/",
            self.region.as_deref().unwrap_or("-"),
        ];
        parts.concat()
    }
}

/// A normalised event: a structured-mode CloudEvents 1.0 object.
///
/// Only `id` and `data` are stored. The envelope's other attributes are derived from `data` when
/// the event is serialised (`source`, `type`, `subject`, `time`) or are constants
/// (`specversion`, `datacontenttype`), so they cannot drift from the data they describe;
/// deserialising checks that they agree with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The provider's own event id; `(source, id)` is the dedupe key.
    pub id: String,
    /// The payload.
    pub data: EventData,
}

/// The wire form of [`Event`].
#[derive(Serialize, Deserialize)]
struct Envelope<S, D> {
    specversion: S,
    id: S,
    source: S,
    #[serde(rename = "type")]
    ty: S,
    subject: S,
    time: Timestamp,
    datacontenttype: S,
    data: D,
}

impl Serialize for Event {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let source = self.source();
        Envelope {
            specversion: SPEC_VERSION,
            id: &self.id,
            source: &source,
            ty: self.cloud_event_type(),
            subject: self.subject(),
            time: self.time(),
            datacontenttype: DATA_CONTENT_TYPE,
            data: &self.data,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Envelope::<String, EventData>::deserialize(deserializer)?;
        let event = Event {
            id: wire.id,
            data: wire.data,
        };
        let mismatch = |attr: &str, got: &str, want: &str| {
            D::Error::custom(format_args!(
                "`{attr}` is `{got}` but data implies `{want}`"
            ))
        };
        if wire.specversion != SPEC_VERSION {
            return Err(mismatch("specversion", &wire.specversion, SPEC_VERSION));
        }
        if wire.ty != event.cloud_event_type() {
            return Err(mismatch("type", &wire.ty, event.cloud_event_type()));
        }
        if wire.subject != event.subject() {
            return Err(mismatch("subject", &wire.subject, event.subject()));
        }
        if wire.source != event.source() {
            return Err(mismatch("source", &wire.source, &event.source()));
        }
        if wire.time != event.time() {
            return Err(mismatch(
                "time",
                &wire.time.to_string(),
                &event.time().to_string(),
            ));
        }
        Ok(event)
    }
}

impl Event {
    /// Wraps `data` in its CloudEvents envelope.
    pub fn new(id: impl Into<String>, data: EventData) -> Self {
        Event {
            id: id.into(),
            data,
        }
    }

    /// The CloudEvents `source`: `/<provider>/<account or ->/<region or ->`.
    pub fn source(&self) -> String {
        self.data.cloud_event_source()
    }

    /// The CloudEvents `type`: `eviction-router.<kind>.v1`.
    pub fn cloud_event_type(&self) -> &'static str {
        self.data.kind.cloud_event_type()
    }

    /// The CloudEvents `subject`: the instance id.
    pub fn subject(&self) -> &str {
        &self.data.instance.id
    }

    /// The CloudEvents `time`: when the signal occurred.
    pub fn time(&self) -> Timestamp {
        self.data.occurred_at
    }

    /// One line of JSON, as the stdout sink and the CLI print it.
    pub fn to_json_line(&self) -> String {
        // Serialising plain data with string keys cannot fail; fall back to an empty object
        // rather than panic should that ever change.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let instance = Instance {
            id: "i-0b662ef9931388ba0".into(),
            name: None,
            provider_id: Some("aws:///us-east-1b/i-0b662ef9931388ba0".into()),
            resource_id: Some("arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0".into()),
        };
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut data = EventData::new(
            Provider::Aws,
            Kind::Interruption,
            "EC2 Spot Instance Interruption Warning",
            instance,
            at,
        );
        data.account = Some("123456789012".into());
        data.region = Some("us-east-1".into());
        data.zone = Some("us-east-1b".into());
        data.action = Some(Action::Terminate);
        data.deadline = Some(at + jiff::SignedDuration::from_secs(120));
        Event::new("1e5527d7-bb36-4607-3370-4164db56a40e", data)
    }

    #[test]
    fn serialises_exactly_as_the_design_example() {
        let expected = serde_json::json!({
          "specversion": "1.0",
          "id": "1e5527d7-bb36-4607-3370-4164db56a40e",
          "source": "/aws/123456789012/us-east-1",
          "type": "eviction-router.interruption.v1",
          "subject": "i-0b662ef9931388ba0",
          "time": "2026-11-23T10:00:00Z",
          "datacontenttype": "application/json",
          "data": {
            "schema_version": 1,
            "kind": "interruption",
            "status": null,
            "provider": "aws",
            "provider_event": "EC2 Spot Instance Interruption Warning",
            "account": "123456789012",
            "region": "us-east-1",
            "zone": "us-east-1b",
            "instance": {
              "id": "i-0b662ef9931388ba0",
              "name": null,
              "provider_id": "aws:///us-east-1b/i-0b662ef9931388ba0",
              "resource_id": "arn:aws:ec2:us-east-1b:instance/i-0b662ef9931388ba0"
            },
            "action": "terminate",
            "occurred_at": "2026-11-23T10:00:00Z",
            "not_before": null,
            "not_after": null,
            "deadline": "2026-11-23T10:02:00Z",
            "node": null,
            "details": {}
          }
        });
        assert_eq!(serde_json::to_value(sample()).unwrap(), expected);
    }

    #[test]
    fn cloud_event_types_follow_kind_and_schema_version() {
        for kind in Kind::ALL {
            let expected = format!("eviction-router.{kind}.v{SCHEMA_VERSION}");
            assert_eq!(kind.cloud_event_type(), expected);
        }
    }

    #[test]
    fn round_trips_through_json() {
        let event = sample();
        let line = event.to_json_line();
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn missing_source_parts_become_dashes() {
        let mut event = sample();
        event.data.account = None;
        event.data.region = None;
        assert_eq!(event.source(), "/aws/-/-");
    }

    #[test]
    fn envelope_attributes_that_contradict_the_data_are_rejected() {
        let good = serde_json::to_value(sample()).unwrap();
        for (attr, bad) in [
            ("type", "eviction-router.termination.v1"),
            ("subject", "i-other"),
            ("source", "/aws/1/eu-west-1"),
            ("time", "2026-11-23T10:00:01Z"),
            ("specversion", "0.3"),
        ] {
            let mut v = good.clone();
            v[attr] = serde_json::Value::String(bad.into());
            let err = serde_json::from_value::<Event>(v).unwrap_err().to_string();
            assert!(err.contains(attr), "{attr}: {err}");
        }
    }

    #[test]
    fn wire_enums_parse_their_own_spelling_and_reject_others() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), *kind);
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>().unwrap(), *action);
        }
        let err = "Interruption".parse::<Kind>().unwrap_err();
        assert!(
            err.to_string().contains("expected one of: interruption"),
            "{err}"
        );
    }

    #[test]
    fn fractional_seconds_survive_and_stay_utc() {
        let at: Timestamp = "2024-02-22T01:39:48.3385828+00:00".parse().unwrap();
        assert_eq!(
            serde_json::to_value(at).unwrap(),
            serde_json::json!("2024-02-22T01:39:48.3385828Z")
        );
    }
}
