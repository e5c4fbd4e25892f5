//! `demo`: the bundled samples of all three clouds through the real router, in-process.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::{EXIT_IO, EXIT_OK};
use crate::ack::Outcome;
use crate::cluster::{Applied, Cluster};
use crate::config::{ClusterConfig, LogFormat, RouterConfig, SinkConfig};
use crate::event::Provider;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::sinks::Sinks;
use crate::telemetry;

macro_rules! sample {
    ($provider:ident, $file:literal) => {
        (
            Provider::$provider,
            $file,
            include_bytes!(concat!("../../examples/events/", $file)).as_slice(),
        )
    };
}

/// The samples under `examples/events/`, compiled in so the demo runs from anywhere.
const SAMPLES: &[(Provider, &str, &[u8])] = &[
    sample!(Aws, "aws/spot-interruption-warning.json"),
    sample!(Aws, "aws/rebalance-recommendation.json"),
    sample!(Aws, "aws/state-change-terminated.json"),
    sample!(Aws, "aws/asg-terminate-lifecycle.json"),
    sample!(Aws, "aws/health-scheduled-change-multi.json"),
    sample!(Azure, "azure/scheduled-event-preempt.eventgrid.json"),
    sample!(Azure, "azure/health-preempted.eventgrid.json"),
    sample!(Azure, "azure/scheduled-event-emitted.eventgrid.json"),
    sample!(Azure, "azure/scheduled-event-reboot.eventgrid.json"),
    sample!(Gcp, "gcp/preempted.logentry.json"),
    sample!(Gcp, "gcp/host-error.logentry.json"),
    sample!(Gcp, "gcp/upcoming-maintenance-pending.logentry.json"),
    // The same notification pushed twice, as Pub/Sub push may: handled once.
    sample!(Gcp, "gcp/preempted.pubsub-push.json"),
];

pub(super) fn demo() -> u8 {
    telemetry::init(LogFormat::Pretty, "warn");
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
    runtime.block_on(run())
}

async fn run() -> u8 {
    let metrics = Arc::new(Metrics::new());
    let cluster = Cluster::dry_run(&ClusterConfig::default());
    let sinks = match Sinks::start(&[SinkConfig::Stdout], metrics.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_IO;
        }
    };
    let router = Router::new(&RouterConfig::default(), cluster, sinks, metrics);
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (provider, name, body) in SAMPLES {
        let mut reports = Vec::new();
        let outcome = router
            .handle_body(*provider, body, Timestamp::now(), None, &mut reports)
            .await;
        *outcomes.entry(outcome.as_str()).or_default() += 1;
        eprintln!("{name}: {}", outcome.as_str());
        if outcome == Outcome::Ignored && reports.is_empty() {
            eprintln!("    nothing to do (duplicate or not actionable)");
        }
        for report in reports {
            *kinds.entry(report.event.data.kind.as_str()).or_default() += 1;
            let Applied::Planned(steps) = report.applied else {
                continue;
            };
            let d = &report.event.data;
            eprintln!(
                "    {} {} on {}",
                d.provider,
                d.kind,
                d.instance.name.as_deref().unwrap_or(&d.instance.id)
            );
            for step in steps {
                eprintln!("      would {step}");
            }
        }
    }
    let messages: usize = outcomes.values().sum();
    let events: usize = kinds.values().sum();
    let by_outcome: Vec<String> = outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let by_kind: Vec<String> = kinds.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "demo: {messages} messages ({}), {events} events ({})",
        by_outcome.join(", "),
        by_kind.join(", ")
    );
    router.close(std::time::Duration::from_secs(1)).await;
    EXIT_OK
}
