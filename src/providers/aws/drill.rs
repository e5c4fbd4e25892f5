//! The AWS fire drill: a Spot warning or rebalance recommendation, published to EventBridge.

use crate::cli::inject::InjectArgs;
use crate::cli::{EXIT_IO, EXIT_OK};
use crate::providers::DRILL;

/// The AWS drill event's `detail-type`, `detail` and resource ARN for `kind`.
pub(crate) fn event_fields(
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

/// Publishes the drill event for `args` through EventBridge; returns the exit code.
pub(crate) async fn send(args: &InjectArgs) -> u8 {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;

    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let (detail_type, detail, arn) =
        event_fields(&args.instance_id, &args.kind, &region, args.zone.as_deref());
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
                event_fields("i-0123", kind, "eu-west-1", Some("eu-west-1a"));
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
}
