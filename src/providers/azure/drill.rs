//! The Azure fire drill: a scheduled event, sent to the queue of the Service Bus source.

use super::servicebus::rest::Queue;
use crate::cli::inject::{InjectArgs, drill_id};
use crate::cli::{EXIT_CONFIG, EXIT_IO, EXIT_MALFORMED, EXIT_OK};
use crate::config::{Config, SourceConfig};
use crate::providers::DRILL;

/// The Azure drill: a scheduled event (Preempt for an interruption, Reboot for maintenance) in
/// the Event Grid schema, for the VM `vm_id`, as Event Grid delivers it to Service Bus. `id` is
/// the event id, `now` its time.
pub(crate) fn scheduled_event(
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
        "eventType": super::payload::SCHEDULED_EVENT_EMITTED,
        "dataVersion": "3.0",
        "metadataVersion": "1",
        "eventTime": now.to_string(),
        "subscriptionId": subscription,
    });
    Ok(event.to_string())
}

/// Sends the drill event for `args` to the queue of the `azure_service_bus` source of
/// `--config`; returns the exit code.
pub(crate) async fn send(args: &InjectArgs) -> u8 {
    let Some(path) = &args.config else {
        eprintln!(
            "error: --config is required for azure: the drill goes to the queue of the router's azure_service_bus source"
        );
        return EXIT_MALFORMED;
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let Some(sb) = config.sources.iter().find_map(|s| match s {
        SourceConfig::AzureServiceBus(sb) => Some(sb),
        _ => None,
    }) else {
        eprintln!("error: {} has no azure_service_bus source", path.display());
        return EXIT_CONFIG;
    };
    let id = drill_id();
    let body = match scheduled_event(&args.instance_id, &args.kind, &id, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_MALFORMED;
        }
    };
    let queue = match Queue::new(sb) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Provider};

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
            let body = scheduled_event(id, kind, "e1", now).unwrap();
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
        assert!(scheduled_event("/subscriptions/s1/vm", "interruption", "e", now).is_err());
    }
}
