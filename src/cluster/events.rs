//! Kubernetes Events on Nodes, through kube-runtime's `Recorder` (one `create` per new Event, a
//! `patch` when the same Event repeats within its cache window).
//!
//! RBAC: `events.k8s.io` `events` create, patch.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};

use super::plan::EventType;
use crate::event::Event;

/// Events are written by the events client, at the budget's Event priority.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    /// Events being written at once: one waiting for the budget holds its whole request, a
    /// burst of a thousand would hold a thousand; waiting here costs a few bytes.
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many Events are written at once.
const IN_FLIGHT: usize = 32;

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

/// The Node an Event is about: name and uid, from the cache (no read of the Node).
pub fn node_ref(name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid: uid.map(str::to_owned),
        ..ObjectReference::default()
    }
}

/// The note of an Event about `event`, unless one is given.
pub fn note_of(event: &Event) -> String {
    let d = &event.data;
    let deadline = d
        .deadline
        .map(|t| format!(", deadline {t}"))
        .unwrap_or_default();
    format!(
        "{} {} for {} ({}{deadline}; event {})",
        d.provider, d.kind, d.instance.id, d.provider_event, event.id
    )
}

impl Events {
    /// Events reported as `reporter`, written through `client`.
    pub fn new(client: kube::Client, reporter: Reporter) -> Events {
        Events {
            recorder: Recorder::new(client, reporter),
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Records one Event on the Node `node` about `event`.
    pub async fn record(
        &self,
        node: &ObjectReference,
        event: &Event,
        reason: &str,
        event_type: EventType,
        note: Option<String>,
    ) -> Result<(), kube::Error> {
        let _permit = self.in_flight.acquire().await;
        let note = note.unwrap_or_else(|| note_of(event));
        let kube_event = KubeEvent {
            type_: match event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: reason.to_owned(),
            // events.k8s.io/v1 rejects a note over 1 kB.
            note: Some(note.chars().take(1024).collect()),
            action: event.data.kind.as_str().to_owned(),
            secondary: None,
        };
        self.recorder.publish(&kube_event, node).await
    }
}
