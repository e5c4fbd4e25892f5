//! The GCP fire drill: an audit LogEntry, published to the logging sink's topic.

use super::pubsub::Endpoint;
use crate::cli::inject::{InjectArgs, drill_id};
use crate::cli::{EXIT_IO, EXIT_MALFORMED, EXIT_OK};
use crate::providers::DRILL;

/// The GCP drill: a Cloud Audit LogEntry as the logging sink publishes it, marked with the
/// drill label. `insert_id` is its id, `now` its time.
pub(crate) fn log_entry(
    project: &str,
    zone: &str,
    instance_name: &str,
    instance_id: &str,
    kind: &str,
    insert_id: &str,
    now: jiff::Timestamp,
) -> String {
    let resource_name = format!("projects/{project}/zones/{zone}/instances/{instance_name}");
    let (method, metadata, status) = match kind {
        "scheduled_maintenance" => (
            "compute.instances.upcomingMaintenance",
            serde_json::json!({
                "maintenanceStatus": "PENDING",
                "type": "SCHEDULED",
                "canReschedule": true,
                "windowStartTime": (now + jiff::SignedDuration::from_hours(1)).to_string(),
                "windowEndTime": (now + jiff::SignedDuration::from_hours(2)).to_string(),
            }),
            "Maintenance is scheduled for this instance.",
        ),
        _ => (
            "compute.instances.preempted",
            serde_json::Value::Null,
            "Instance was preempted.",
        ),
    };
    let mut payload = serde_json::json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "status": { "message": status },
        "authenticationInfo": { "principalEmail": "system@google.com" },
        "serviceName": "compute.googleapis.com",
        "methodName": method,
        "resourceName": resource_name,
        "request": { "@type": format!("type.googleapis.com/{method}") },
    });
    if !metadata.is_null() {
        payload["metadata"] = metadata;
    }
    serde_json::json!({
        "protoPayload": payload,
        "insertId": insert_id,
        "resource": {
            "type": "gce_instance",
            "labels": { "instance_id": instance_id, "project_id": project, "zone": zone }
        },
        "timestamp": now.to_string(),
        "severity": "INFO",
        "logName": format!("projects/{project}/logs/cloudaudit.googleapis.com%2Fsystem_event"),
        "labels": { DRILL: "true" },
        "operation": {
            "id": format!("systemevent-{insert_id}"),
            "producer": method,
            "first": true,
            "last": true
        },
        "receiveTimestamp": now.to_string(),
    })
    .to_string()
}

/// Publishes the drill LogEntry for `args` to the logging sink's topic; returns the exit code.
pub(crate) async fn send(args: &InjectArgs) -> u8 {
    use google_cloud_pubsub::client::Publisher;
    use google_cloud_pubsub::model::Message;

    let (Some(topic), Some(zone), Some(name)) = (&args.topic, &args.zone, &args.instance_name)
    else {
        eprintln!("error: gcp needs --topic, --zone and --instance-name");
        return EXIT_MALFORMED;
    };
    let project = match topic.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "topics", t] if !project.is_empty() && !t.is_empty() => project,
        _ => {
            eprintln!("error: --topic must be projects/<project>/topics/<topic>");
            return EXIT_MALFORMED;
        }
    };
    let id = drill_id();
    let entry = log_entry(
        project,
        zone,
        name,
        &args.instance_id,
        &args.kind,
        &id,
        jiff::Timestamp::now(),
    );
    let endpoint = Endpoint::resolve(args.endpoint.as_deref(), |k| std::env::var(k).ok());
    let mut builder = Publisher::builder(topic.clone());
    if let Some(url) = endpoint.url() {
        builder = builder.with_endpoint(url);
    }
    if let Some(credentials) = endpoint.credentials() {
        builder = builder.with_credentials(credentials);
    }
    let publisher = match builder.build().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot set up the Pub/Sub publisher for {endpoint}: {e}");
            return EXIT_IO;
        }
    };
    let published = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        publisher.publish(Message::new().set_data(entry)),
    )
    .await;
    match published {
        Ok(Ok(message_id)) => {
            println!("published drill LogEntry {id} to {topic} as message {message_id}");
            EXIT_OK
        }
        Ok(Err(e)) => {
            eprintln!("error: cannot publish to {topic}: {e}");
            EXIT_IO
        }
        Err(_) => {
            eprintln!("error: publishing to {topic} at {endpoint} did not finish within 30 s");
            EXIT_IO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Provider};

    #[test]
    fn the_gcp_drill_normalises_like_a_sink_entry_marked_drill() {
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        for (kind, expected) in [
            ("interruption", Kind::Interruption),
            ("scheduled_maintenance", Kind::ScheduledMaintenance),
        ] {
            let body = log_entry("proj", "europe-west1-b", "gke-n1", "123", kind, "x1", now);
            let parsed = crate::providers::normalize(Provider::Gcp, body.as_bytes()).unwrap();
            let event = &parsed.events[0];
            assert_eq!(event.data.kind, expected);
            assert_eq!(event.id, "x1");
            assert_eq!(event.data.instance.id, "123");
            assert_eq!(event.data.details["drill"], true);
            assert_eq!(
                event.data.instance.provider_id.as_deref(),
                Some("gce://proj/europe-west1-b/gke-n1")
            );
        }
    }
}
