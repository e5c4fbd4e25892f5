//! `inject`: the fire drill for each cloud. The event bodies are built by pure functions (tested
//! below by normalising them); the senders are thin.

use std::path::PathBuf;

use super::{EXIT_IO, EXIT_MALFORMED, EXIT_OK};
use crate::providers::DRILL;

/// `eviction-router inject ...`
#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// The cloud.
    #[arg(long, short, value_parser = ["aws", "azure", "gcp"])]
    provider: String,
    /// AWS: the EC2 instance id. Azure: the VM's resource id (a standalone VM or a scale-set VM,
    /// `.../virtualMachineScaleSets/<vmss>/virtualMachines/<N>`). GCP: the numeric instance id.
    #[arg(long)]
    instance_id: String,
    /// `interruption` (every cloud), `rebalance_recommendation` (AWS) or
    /// `scheduled_maintenance` (Azure, GCP).
    #[arg(long, default_value = "interruption", value_parser = ["interruption", "rebalance_recommendation", "scheduled_maintenance"])]
    kind: String,
    /// AWS: the EventBridge bus the rules are on.
    #[arg(long, default_value = "default")]
    event_bus: String,
    /// AWS: the availability zone, which lands in the ARN (and the providerID). GCP: the
    /// instance's zone (required).
    #[arg(long)]
    zone: Option<String>,
    /// GCP: the instance name (required).
    #[arg(long)]
    instance_name: Option<String>,
    /// GCP: the logging sink's topic, `projects/<project>/topics/<topic>` (Terraform output
    /// `topic`).
    #[arg(long)]
    topic: Option<String>,
    /// GCP: the Pub/Sub endpoint; by default `PUBSUB_EMULATOR_HOST`, else Google's.
    #[arg(long)]
    endpoint: Option<String>,
    /// Azure: the router's configuration file; the drill goes to the queue of its
    /// `azure_service_bus` source, with the same authentication.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Runs the drill; returns the exit code.
pub(super) fn inject(args: InjectArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_IO;
        }
    };
    let kinds: &[&str] = match args.provider.as_str() {
        "aws" => &["interruption", "rebalance_recommendation"],
        _ => &["interruption", "scheduled_maintenance"],
    };
    if !kinds.contains(&args.kind.as_str()) {
        eprintln!(
            "error: --kind {} is not a drill for {}; use one of: {}",
            args.kind,
            args.provider,
            kinds.join(", ")
        );
        return EXIT_MALFORMED;
    }
    match args.provider.as_str() {
        #[cfg(feature = "aws")]
        "aws" => runtime.block_on(aws(&args)),
        #[cfg(feature = "azure")]
        "azure" => runtime.block_on(azure(&args)),
        #[cfg(feature = "gcp")]
        "gcp" => runtime.block_on(gcp(&args)),
        other => {
            eprintln!("error: this build has no `{other}` support");
            EXIT_IO
        }
    }
}

/// The AWS drill event's `detail-type`, `detail` and resource ARN for `kind`.
pub(crate) fn aws_drill(
    instance_id: &str,
    kind: &str,
    region: &str,
    zone: Option<&str>,
) -> (String, String, String) {
    let detail_type = match kind {
        "rebalance_recommendation" => "EC2 Instance Rebalance Recommendation",
        _ => "EC2 Spot Instance Interruption Warning",
    };
    let detail = if kind == "rebalance_recommendation" {
        serde_json::json!({ "instance-id": instance_id })
    } else {
        serde_json::json!({ "instance-id": instance_id, "instance-action": "terminate" })
    };
    // The real warning's ARN carries the zone in the region field; without one, the region.
    let arn = format!(
        "arn:aws:ec2:{}:instance/{instance_id}",
        zone.unwrap_or(region)
    );
    (detail_type.to_owned(), detail.to_string(), arn)
}

#[cfg(feature = "aws")]
async fn aws(args: &InjectArgs) -> u8 {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;

    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let (detail_type, detail, arn) =
        aws_drill(&args.instance_id, &args.kind, &region, args.zone.as_deref());
    let entry = PutEventsRequestEntry::builder()
        .source(DRILL)
        .detail_type(detail_type)
        .detail(detail)
        .resources(arn)
        .event_bus_name(&args.event_bus)
        .build();
    let client = aws_sdk_eventbridge::Client::new(&config);
    match client.put_events().entries(entry).send().await {
        Ok(out) if out.failed_entry_count() == 0 => {
            for e in out.entries() {
                println!(
                    "published drill event {} to bus {}",
                    e.event_id().unwrap_or("(no id)"),
                    args.event_bus
                );
            }
            EXIT_OK
        }
        Ok(out) => {
            for e in out.entries() {
                eprintln!(
                    "error: EventBridge rejected the drill event: {} {}",
                    e.error_code().unwrap_or_default(),
                    e.error_message().unwrap_or_default()
                );
            }
            EXIT_IO
        }
        Err(e) => {
            eprintln!(
                "error: PutEvents failed: {}",
                aws_sdk_eventbridge::error::DisplayErrorContext(e)
            );
            EXIT_IO
        }
    }
}

/// The Azure drill: a scheduled event (Preempt for an interruption, Reboot for maintenance) in
/// the Event Grid schema, for the VM `vm_id`, as Event Grid delivers it to Service Bus. `id` is
/// the event id, `now` its time.
pub(crate) fn azure_drill(
    vm_id: &str,
    kind: &str,
    id: &str,
    now: jiff::Timestamp,
) -> Result<String, String> {
    let parts: Vec<&str> = vm_id.trim_matches('/').split('/').collect();
    let is = |i: usize, name: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(name));
    let shape_ok = is(0, "subscriptions")
        && is(2, "resourceGroups")
        && is(4, "providers")
        && is(5, "Microsoft.Compute");
    // The scheduled event's scope and the name it gives the VM in `Resources`.
    let (scope, resource) = match parts.len() {
        8 if shape_ok && is(6, "virtualMachines") => (parts[..8].join("/"), parts[7].to_owned()),
        10 if shape_ok && is(6, "virtualMachineScaleSets") && is(8, "virtualMachines") => {
            (parts[..8].join("/"), format!("{}_{}", parts[7], parts[9]))
        }
        _ => {
            return Err(format!(
                "`{vm_id}` is not a VM resource id: expected /subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<vm> or .../virtualMachineScaleSets/<vmss>/virtualMachines/<n>"
            ));
        }
    };
    let subscription = parts[1];
    let (event_type, not_before) = match kind {
        "scheduled_maintenance" => ("Reboot", now + jiff::SignedDuration::from_mins(15)),
        _ => ("Preempt", now + jiff::SignedDuration::from_secs(30)),
    };
    let not_before = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&not_before)
        .map_err(|e| e.to_string())?;
    let scheduled = format!("/{scope}/providers/microsoft.maintenance/scheduledevents/{id}");
    let event = serde_json::json!({
        "id": id,
        "topic": DRILL,
        "subject": scheduled,
        "data": {
            "resourceInfo": {
                "id": scheduled,
                "name": id,
                "type": "microsoft.maintenance/scheduledEvents",
                "properties": {
                    "DurationInSeconds": -1,
                    "Description": "eviction-router fire drill",
                    "EventId": id,
                    "EventSource": "Platform",
                    "EventStatus": "Scheduled",
                    "EventType": event_type,
                    "NotBefore": not_before,
                    "Resources": [resource],
                    "ResourceType": "VirtualMachine",
                }
            },
            "apiVersion": "2024-07-01",
        },
        "eventType": crate::providers::azure::payload::SCHEDULED_EVENT_EMITTED,
        "dataVersion": "3.0",
        "metadataVersion": "1",
        "eventTime": now.to_string(),
        "subscriptionId": subscription,
    });
    Ok(event.to_string())
}

#[cfg(feature = "azure")]
async fn azure(args: &InjectArgs) -> u8 {
    let Some(path) = &args.config else {
        eprintln!(
            "error: --config is required for azure: the drill goes to the queue of the router's azure_service_bus source"
        );
        return EXIT_MALFORMED;
    };
    let config = match crate::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_CONFIG;
        }
    };
    let Some(sb) = config.sources.iter().find_map(|s| match s {
        crate::config::SourceConfig::AzureServiceBus(sb) => Some(sb),
        _ => None,
    }) else {
        eprintln!("error: {} has no azure_service_bus source", path.display());
        return super::EXIT_CONFIG;
    };
    let id = drill_id();
    let body = match azure_drill(&args.instance_id, &args.kind, &id, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_MALFORMED;
        }
    };
    let queue = match crate::sources::servicebus::rest::Queue::new(sb) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_CONFIG;
        }
    };
    match queue.send(&body, &id).await {
        Ok(()) => {
            println!(
                "sent drill event {id} to queue {} of namespace {}",
                sb.queue, sb.namespace
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: cannot send to the Service Bus queue: {e}");
            EXIT_IO
        }
    }
}

/// The GCP drill: a Cloud Audit LogEntry as the logging sink publishes it, marked with the
/// drill label. `insert_id` is its id, `now` its time.
pub(crate) fn gcp_drill(
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

#[cfg(feature = "gcp")]
async fn gcp(args: &InjectArgs) -> u8 {
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
    let entry = gcp_drill(
        project,
        zone,
        name,
        &args.instance_id,
        &args.kind,
        &id,
        jiff::Timestamp::now(),
    );
    let endpoint = crate::sources::pubsub::Endpoint::resolve(args.endpoint.as_deref(), |k| {
        std::env::var(k).ok()
    });
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

/// A unique id for a drill event.
fn drill_id() -> String {
    format!(
        "drill-{}-{:08x}",
        jiff::Timestamp::now().as_millisecond(),
        fastrand::u32(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Provider};

    /// The drill event, wrapped as EventBridge delivers it, normalises like the real one.
    #[test]
    fn the_aws_drill_normalises_as_the_real_kind_marked_drill() {
        for (kind, expected) in [
            ("interruption", Kind::Interruption),
            ("rebalance_recommendation", Kind::RebalanceRecommendation),
        ] {
            let (detail_type, detail, arn) =
                aws_drill("i-0123", kind, "eu-west-1", Some("eu-west-1a"));
            let body = serde_json::json!({
                "version": "0", "id": "d", "detail-type": detail_type, "source": DRILL,
                "time": "2026-11-23T10:00:00Z", "region": "eu-west-1", "resources": [arn],
                "detail": serde_json::from_str::<serde_json::Value>(&detail).unwrap(),
            });
            let parsed =
                crate::providers::normalize(Provider::Aws, body.to_string().as_bytes()).unwrap();
            let event = &parsed.events[0];
            assert_eq!(event.data.kind, expected);
            assert_eq!(event.data.details["drill"], true);
            assert_eq!(
                event.data.instance.provider_id.as_deref(),
                Some("aws:///eu-west-1a/i-0123")
            );
        }
    }

    #[test]
    fn the_azure_drill_names_the_vm_it_was_given() {
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let vmss = "/subscriptions/s1/resourceGroups/MC_rg_aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-1-vmss/virtualMachines/3";
        let vm =
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
        for (id, kind, expected, provider_id) in [
            (
                vmss,
                "interruption",
                Kind::Interruption,
                "azure:///subscriptions/s1/resourceGroups/mc_rg_aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-1-vmss/virtualMachines/3",
            ),
            (
                vm,
                "scheduled_maintenance",
                Kind::ScheduledMaintenance,
                "azure:///subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            ),
        ] {
            let body = azure_drill(id, kind, "e1", now).unwrap();
            let parsed = crate::providers::normalize(Provider::Azure, body.as_bytes()).unwrap();
            assert_eq!(parsed.events.len(), 1, "{body}");
            let event = &parsed.events[0];
            assert_eq!(event.data.kind, expected);
            assert_eq!(event.data.details["drill"], true);
            assert_eq!(
                event.data.instance.provider_id.as_deref(),
                Some(provider_id)
            );
            assert!(event.data.deadline.is_some() || event.data.not_before.is_some());
        }
        assert!(azure_drill("/subscriptions/s1/vm", "interruption", "e", now).is_err());
    }

    #[test]
    fn the_gcp_drill_normalises_like_a_sink_entry_marked_drill() {
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        for (kind, expected) in [
            ("interruption", Kind::Interruption),
            ("scheduled_maintenance", Kind::ScheduledMaintenance),
        ] {
            let body = gcp_drill("proj", "europe-west1-b", "gke-n1", "123", kind, "x1", now);
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
