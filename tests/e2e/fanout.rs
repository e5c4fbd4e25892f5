//! One message that names a huge number of instances, through the real binary acting on the
//! fake API server: at most `router.max_events_per_message` events are built and acted on, the
//! rest are counted, and the log holds one line for the message rather than one per event.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use serde_json::json;

use crate::support::Router;

const RG: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/MC_prod_aks";

/// A Preempt scheduled event naming `n` VMs of the Uniform scale set `v` (`v_<i>`), in the
/// Event Grid schema as Event Grid delivers it.
fn preempt_naming(n: usize) -> String {
    let resources: Vec<String> = (0..n).map(|i| format!("v_{i}")).collect();
    json!({
        "id": "fanout-1",
        "topic": "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590",
        "subject": format!("{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/v"),
        "eventType": "Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted",
        "eventTime": jiff::Timestamp::now().to_string(),
        "dataVersion": "3.0",
        "data": {"resourceInfo": {
            "id": format!("{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/v/providers/microsoft.maintenance/scheduledevents/e"),
            "location": "westeurope",
            "properties": {
                "EventId": "e", "EventType": "Preempt", "EventStatus": "Scheduled",
                "NotBefore": "", "Resources": resources,
            },
        }},
    })
    .to_string()
}

fn node(name: &str, vm: usize) -> serde_json::Value {
    let rg = RG.replace("MC_prod_aks", "mc_prod_aks");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"providerID": format!("azure://{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/{vm}")},
    })
}

/// The peak resident memory of a process, from `/proc/<pid>/status`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// A 1 MiB Azure scheduled event naming 96,167 VMs: 1,000 events (the default cap), the two
/// Nodes among them admitted, the one past the cap untouched, 95,167 counted as over the cap,
/// a handful of log lines, and memory far below the chart's 256 MiB limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_naming_96k_vms_becomes_at_most_the_cap() {
    let body = preempt_naming(96_167);
    assert!(body.len() <= 1024 * 1024, "{} bytes", body.len());
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    for (name, vm) in [("aks-v-0", 0), ("aks-v-1", 1), ("aks-v-50000", 50_000)] {
        fake.insert(node(name, vm)).unwrap();
    }
    fake.enforce_rbac(crate::cluster::chart_rbac());
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let config = "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\nsinks: []\n";
    let router = Router::start(
        config,
        &[("KUBECONFIG", kubeconfig), ("RUST_LOG", "info".into())],
    )
    .await;
    let before = router.logs().len();
    let rsp = reqwest::Client::new()
        .post(format!("{}/v1/ingest/azure", router.base))
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.text().await.unwrap(), "{\"outcome\":\"handled\"}\n");

    assert_eq!(
        router
            .metric("eviction_router_events_over_cap_total{provider=\"azure\"}")
            .await,
        95_167.0
    );
    assert_eq!(
        router
            .metric(
                "eviction_router_events_received_total{provider=\"azure\",kind=\"interruption\"}"
            )
            .await,
        1000.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_ignored_total{provider=\"azure\",reason=\"foreign_instance\"}")
            .await,
        998.0
    );
    for (name, cordoned) in [("aks-v-0", true), ("aks-v-1", true), ("aks-v-50000", false)] {
        let n = fake.get("nodes", None, name).unwrap();
        assert_eq!(n["spec"]["unschedulable"] == true, cordoned, "{name}: {n}");
    }
    let lines = router.logs().len() - before;
    assert!(lines < 50, "{lines} log lines for one message");
    let logs = router.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("Handled a message of many events")),
        "the summary line"
    );
    let peak = peak_rss_mib(router.pid());
    assert!(peak < 128, "peak RSS {peak} MiB");
    assert_eq!(router.terminate(), Some(0));
}
