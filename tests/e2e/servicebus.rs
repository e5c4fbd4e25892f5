//! The Azure Service Bus source against the in-repo fake of the Service Bus REST runtime protocol
//! (tests/fake-servicebus): peek-lock → router → stdout / cluster / webhook, and every outcome's
//! effect on the queue (complete, abandon and redelivery, dead-lettering), lock renewal, errors
//! that must not be silent, and both kinds of authentication (SAS and Entra workload identity).
//!
//! Everything here is verified against the fake, not against Azure: the fake's own tests
//! (tests/fake-servicebus/tests) keep it honest against the REST reference.

#![cfg(feature = "azure")]

use std::time::Duration;

use fake_servicebus::{FakeServiceBus, MessageView, QueueSettings};
use serde_json::Value;

use crate::support::{Router, eventually, fixture};

const NAMESPACE: &str = "evr-test";
const QUEUE: &str = "events";
const KEY_NAME: &str = "router";
const KEY: &str = "ZTJlLXNlcnZpY2VidXMta2V5LW5vdC1hLXNlY3JldA==";

/// The VM the scheduled-event fixture preempts (`Resources: ["aks-spot-12345678-vmss_3"]`).
const PREEMPTED_VM: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/MC_prod-rg_prod-aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3";
/// Its providerID: the resource group lowercased, as the Azure cloud provider writes it.
const PREEMPTED_PROVIDER_ID: &str = "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/mc_prod-rg_prod-aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3";
/// The event id of the scheduled-event fixture, as normalised: `<id>/<VM name>`.
const PREEMPT_EVENT_ID: &str = "7c1d5d3e-1f2a-4b6c-9d8e-0f1a2b3c4d5e/aks-spot-12345678-vmss_3";

/// A fake namespace with the SAS key and one queue, served on a free loopback port; returns the
/// fake and its endpoint (`http://127.0.0.1:PORT`).
async fn service_bus(settings: QueueSettings) -> (FakeServiceBus, String) {
    let fake = FakeServiceBus::new(NAMESPACE);
    fake.create_queue(QUEUE, settings);
    fake.add_sas_key(KEY_NAME, KEY);
    let addr = fake.start().await.unwrap();
    (fake, format!("http://{addr}"))
}

/// The router configuration for the Service Bus source at `endpoint`, with SAS key `key`,
/// reading `queue`; `extra` is appended (top-level sections).
fn config(endpoint: &str, queue: &str, key: &str, extra: &str) -> String {
    format!(
        "sources:\n  - type: azure_service_bus\n    namespace: {NAMESPACE}\n    queue: {queue}\n    auth: sas\n    \
         connection_string: \"Endpoint=sb://{NAMESPACE}.servicebus.windows.net/;SharedAccessKeyName={KEY_NAME};SharedAccessKey={key}\"\n    \
         endpoint: {endpoint}\n    receivers: 2\n    wait_time_seconds: 1\n\
         server:\n  readiness_grace_seconds: 1\n\
         log:\n  format: json\n{extra}"
    )
}

/// `cluster:` for a dry run.
const DRY_RUN: &str = "cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n";

/// Waits until `n` messages were completed and none is left in the queue; returns the
/// completed ones.
async fn completed(fake: &FakeServiceBus, n: usize) -> Vec<MessageView> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} message(s) completed and the queue empty"),
        async || {
            let done = fake.completed(QUEUE);
            (done.len() >= n && fake.active(QUEUE).is_empty()).then_some(done)
        },
    )
    .await
}

/// The router's next stdout event, waited for off the runtime's worker threads: the fakes this
/// test talks to are served by them.
fn next_event(router: &Router, limit: Duration) -> Option<Value> {
    tokio::task::block_in_place(|| router.next_event(limit))
}

/// Stops the router with SIGTERM (it settles its messages with the fake meanwhile) and returns
/// its exit code.
fn stop(router: Router) -> Option<i32> {
    tokio::task::block_in_place(|| router.terminate())
}

/// The next `n` events printed, in id order (two receivers: arrival order is not fixed).
fn events(router: &Router, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..n)
        .map(|i| {
            next_event(router, Duration::from_secs(20))
                .unwrap_or_else(|| panic!("event {} of {n} on stdout", i + 1))
        })
        .collect();
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    out
}

/// A Preempt scheduled event and a `VirtualMachinePreempted` annotation, as Event Grid delivers
/// them to the queue, come out as normalised interruption events on stdout, and both messages
/// are completed at their first delivery: the queue is empty.
#[tokio::test(flavor = "multi_thread")]
async fn events_from_the_queue_are_normalised_printed_and_completed() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let router = Router::start(&config(&endpoint, QUEUE, KEY, DRY_RUN), &[]).await;
    fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );
    fake.send(QUEUE, fixture("azure/health-preempted.eventgrid.json"));

    let printed = events(&router, 2);
    let (preempt, annotation) = (&printed[0], &printed[1]);
    assert_eq!(preempt["id"], PREEMPT_EVENT_ID, "{preempt}");
    assert_eq!(preempt["type"], "eviction-router.interruption.v1");
    assert_eq!(preempt["data"]["kind"], "interruption");
    assert_eq!(preempt["data"]["provider"], "azure");
    assert_eq!(preempt["data"]["instance"]["id"], PREEMPTED_VM);
    assert_eq!(
        preempt["data"]["instance"]["provider_id"],
        PREEMPTED_PROVIDER_ID
    );
    assert_eq!(
        preempt["data"]["account"],
        "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
    );
    assert_eq!(
        preempt["data"]["details"]["scheduled_event_type"],
        "Preempt"
    );

    assert_eq!(
        annotation["id"], "c3e5a7c9-1e3a-4c5e-8a7c-9e1b3d5f7a9c",
        "{annotation}"
    );
    assert_eq!(annotation["type"], "eviction-router.interruption.v1");
    assert_eq!(annotation["data"]["kind"], "interruption");
    assert_eq!(annotation["data"]["provider"], "azure");
    assert_eq!(
        annotation["data"]["instance"]["provider_id"],
        PREEMPTED_PROVIDER_ID.replace("virtualMachines/3", "virtualMachines/5")
    );
    assert_eq!(
        annotation["data"]["details"]["annotation_name"],
        "VirtualMachinePreempted"
    );

    let done = completed(&fake, 2).await;
    assert_eq!(done.len(), 2, "{done:?}");
    for m in &done {
        assert_eq!(
            m.delivery_count, 1,
            "completed at the first delivery: {m:?}"
        );
    }
    assert!(fake.dead_letters(QUEUE).is_empty());
    assert!(
        next_event(&router, Duration::from_millis(500)).is_none(),
        "more than two events were printed"
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"handled\"}")
            .await,
        2.0
    );
    assert_eq!(
        router
            .metric(
                "eviction_router_events_received_total{provider=\"azure\",kind=\"interruption\"}"
            )
            .await,
        2.0
    );
    assert_eq!(stop(router), Some(0));
}

/// An AKS Node of the scale set, named as AKS names them, with the providerID of VM `n`.
fn aks_node(n: u32) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": format!("aks-spot-12345678-vmss00000{n}"),
            "labels": {"kubernetes.azure.com/scalesetpriority": "spot"},
        },
        "spec": {"providerID": PREEMPTED_PROVIDER_ID.replace("virtualMachines/3", &format!("virtualMachines/{n}"))},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// The keys of a Node's taints.
fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A fake API server (over HTTP) with the Nodes of VMs 3 and 4, and the `cluster:` section and
/// environment a router needs to act on it.
async fn cluster() -> (
    fake_apiserver::FakeApiServer,
    crate::support::TempDir,
    String,
    Vec<(&'static str, String)>,
) {
    let (addr, api) = fake_apiserver::FakeApiServer::start_http().await.unwrap();
    api.enforce_rbac(crate::cluster::chart_rbac());
    api.insert(aks_node(3)).unwrap();
    api.insert(aks_node(4)).unwrap();
    let (dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let section =
        "cluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n".to_owned();
    (api, dir, section, vec![("KUBECONFIG", kubeconfig)])
}

/// `eviction-router inject --provider azure --config <config> --instance-id <vm> [args]`, run
/// off the test's runtime threads (the fakes are served by them).
async fn inject(config: &str, vm: &str, args: &[&str]) -> std::process::Output {
    let mut argv: Vec<String> = [
        "inject",
        "--provider",
        "azure",
        "--config",
        config,
        "--instance-id",
        vm,
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::support::BIN)
            .args(&argv)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `config` written to a file in a new directory (removed on drop), for the CLI.
fn config_file(config: &str) -> (crate::support::TempDir, String) {
    let dir = crate::support::TempDir::new();
    let path = dir.0.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// The whole path into the cluster: the Preempt scheduled event from the queue cordons and
/// taints the Node whose providerID is the preempted scale-set VM's, and only that Node; the
/// printed event names it. Then the `inject` fire drill, sent by the CLI with the router's own
/// configuration file, reaches the router through the same queue and acts on the other Node,
/// marked as a drill.
#[tokio::test(flavor = "multi_thread")]
async fn a_preempt_event_cordons_and_taints_its_aks_node_and_the_drill_does_too() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let (api, _kube_dir, section, env) = cluster().await;
    let config = config(&endpoint, QUEUE, KEY, &section);
    let router = Router::start(&config, &env).await;

    fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );
    let event = next_event(&router, Duration::from_secs(20)).expect("the event on stdout");
    assert_eq!(event["id"], PREEMPT_EVENT_ID);
    assert_eq!(
        event["data"]["node"]["name"], "aks-spot-12345678-vmss000003",
        "{event}"
    );
    let node = api
        .get("nodes", None, "aks-spot-12345678-vmss000003")
        .unwrap();
    assert_eq!(node["spec"]["unschedulable"], true, "cordoned: {node}");
    assert!(
        taint_keys(&node).contains(&"eviction-router/interruption".to_owned()),
        "tainted: {node}"
    );
    let other = api
        .get("nodes", None, "aks-spot-12345678-vmss000004")
        .unwrap();
    assert!(
        other["spec"]["unschedulable"].is_null() && taint_keys(&other).is_empty(),
        "the other Node was touched: {other}"
    );
    completed(&fake, 1).await;

    // The drill, through the real CLI and the same configuration file.
    let (_dir, path) = config_file(&config);
    let vm4 = PREEMPTED_VM.replace("virtualMachines/3", "virtualMachines/4");
    let out = inject(&path, &vm4, &[]).await;
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("sent drill event ")
            && said.contains(&format!("to queue {QUEUE} of namespace {NAMESPACE}")),
        "{said}"
    );
    let drill = next_event(&router, Duration::from_secs(20)).expect("the drill event on stdout");
    assert_eq!(drill["data"]["details"]["drill"], true, "{drill}");
    assert_eq!(drill["data"]["kind"], "interruption");
    assert_eq!(
        drill["data"]["instance"]["provider_id"],
        PREEMPTED_PROVIDER_ID.replace("virtualMachines/3", "virtualMachines/4")
    );
    assert_eq!(
        drill["data"]["node"]["name"],
        "aks-spot-12345678-vmss000004"
    );
    let other = api
        .get("nodes", None, "aks-spot-12345678-vmss000004")
        .unwrap();
    assert_eq!(
        other["spec"]["unschedulable"], true,
        "cordoned by the drill: {other}"
    );
    assert!(taint_keys(&other).contains(&"eviction-router/interruption".to_owned()));
    let done = completed(&fake, 2).await;
    assert!(done.iter().all(|m| m.delivery_count == 1), "{done:?}");
    assert!(
        fake.requests().iter().all(|r| r.auth == "sas"),
        "the router and the CLI both sign with the connection string's key"
    );
    assert_eq!(stop(router), Some(0));
}

/// The router's JSON log lines (flattened events) with this message.
fn log_lines(router: &Router, message: &str) -> Vec<Value> {
    router
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

/// A transient cluster failure (the API server answers 500 to the first Node PATCH) makes the
/// outcome retry: the message is abandoned, redelivered at once with DeliveryCount 2, handled
/// then, and completed; the retry is counted and the redelivery shows in the router's logs.
#[tokio::test(flavor = "multi_thread")]
async fn a_transient_cluster_failure_abandons_the_message_and_its_redelivery_is_handled() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let (api, _kube_dir, section, mut env) = cluster().await;
    env.push(("RUST_LOG", "info".into()));
    api.faults()
        .fail_next("PATCH", "/api/v1/nodes/aks-spot-12345678-vmss000003", 1);
    let router = Router::start(&config(&endpoint, QUEUE, KEY, &section), &env).await;
    let id = fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );

    let done = completed(&fake, 1).await;
    assert_eq!(done[0].message_id, id);
    assert_eq!(
        done[0].delivery_count, 2,
        "abandoned once, then completed at the redelivery: {done:?}"
    );
    let event = next_event(&router, Duration::from_secs(10)).expect("the event on stdout");
    assert_eq!(
        event["data"]["node"]["name"],
        "aks-spot-12345678-vmss000003"
    );
    assert!(
        next_event(&router, Duration::from_millis(500)).is_none(),
        "printed twice"
    );
    let node = api
        .get("nodes", None, "aks-spot-12345678-vmss000003")
        .unwrap();
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    assert!(
        router
            .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"retry\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"handled\"}")
            .await,
        1.0
    );
    // The abandon is a PUT on the message's lock (Unlock Message).
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.starts_with(&format!("/{QUEUE}/messages/"))),
        "no Unlock Message request: {:?}",
        fake.requests()
    );
    // The log lines are read from the router's stderr by another thread: wait for them.
    let redelivery = async || {
        let settled = log_lines(&router, "Settled a message.");
        settled
            .iter()
            .any(|l| {
                l["attempt"] == 2 && l["outcome"] == "handled" && l["message_id"] == id.as_str()
            })
            .then_some(settled)
    };
    let settled = eventually(
        Duration::from_secs(10),
        "a \"Settled a message.\" log line with \"attempt\":2",
        redelivery,
    )
    .await;
    assert!(
        settled.iter().any(|l| l["attempt"] == 1
            && l["outcome"] == "retry"
            && l["message_id"] == id.as_str()),
        "the first delivery is logged as retry: {settled:?}"
    );
    assert_eq!(stop(router), Some(0));
}

/// A body that is not JSON is poison: abandoned at each delivery, never completed, until the
/// queue's MaxDeliveryCount (3 here) moves it to the dead-letter queue with
/// `MaxDeliveryCountExceeded`, where an operator can inspect it. Each delivery is counted as
/// invalid.
#[tokio::test(flavor = "multi_thread")]
async fn poison_is_abandoned_until_the_queue_dead_letters_it() {
    let (fake, endpoint) = service_bus(QueueSettings {
        max_delivery_count: 3,
        ..QueueSettings::default()
    })
    .await;
    let router = Router::start(&config(&endpoint, QUEUE, KEY, DRY_RUN), &[]).await;
    let id = fake.send(QUEUE, "not json");

    let dead = eventually(
        Duration::from_secs(30),
        "the message dead-lettered",
        async || {
            let dead = fake.dead_letters(QUEUE);
            (!dead.is_empty()).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, id);
    assert_eq!(dead[0].body, b"not json");
    assert_eq!(
        dead[0].dead_letter_reason.as_deref(),
        Some(fake_servicebus::MAX_DELIVERY_COUNT_EXCEEDED)
    );
    assert_eq!(dead[0].delivery_count, 3, "{dead:?}");
    assert!(fake.active(QUEUE).is_empty());
    assert!(fake.completed(QUEUE).is_empty(), "poison was completed");
    // The router settles the third delivery just before the fake dead-letters it.
    eventually(
        Duration::from_secs(10),
        "three poison outcomes",
        async || {
            let n = router
                .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"poison\"}")
                .await;
            (n >= 3.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"azure\"}")
            .await,
        3.0
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"poison\"}")
            .await,
        3.0
    );
    assert!(
        next_event(&router, Duration::from_millis(300)).is_none(),
        "poison was printed"
    );
    assert_eq!(stop(router), Some(0));
}

/// While a slow required sink holds a message up (5 s) longer than its lock lasts (2 s), the
/// router renews the lock: the message is not redelivered while in flight, is completed at its
/// first delivery, and is printed and delivered to the sink exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn the_lock_is_renewed_while_a_slow_required_sink_holds_the_message() {
    let (fake, endpoint) = service_bus(QueueSettings {
        lock_duration: Duration::from_secs(2),
        ..QueueSettings::default()
    })
    .await;
    let receiver = crate::support::Receiver::start(vec![], Duration::from_secs(5)).await;
    let extra = format!(
        "{DRY_RUN}sinks:\n  - type: stdout\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 10\n    max_attempts: 1\n",
        receiver.url
    );
    let router = Router::start(&config(&endpoint, QUEUE, KEY, &extra), &[]).await;
    let id = fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );

    let done = completed(&fake, 1).await;
    assert_eq!(done[0].message_id, id);
    assert_eq!(
        done[0].delivery_count, 1,
        "the lock ran out and the message was redelivered: {done:?}"
    );
    assert!(
        done[0].lock_renewals >= 1,
        "the lock was never renewed: {done:?}"
    );
    let renewals = fake
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with(&format!("/{QUEUE}/messages/"))
                && !r.path.ends_with("/head")
        })
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert!(
        !renewals.is_empty() && renewals.iter().all(|s| *s == 200),
        "Renew-Lock requests and their statuses: {renewals:?}"
    );
    assert_eq!(receiver.count(), 1, "delivered to the sink more than once");
    let event = next_event(&router, Duration::from_secs(5)).expect("the event on stdout");
    assert_eq!(event["id"], PREEMPT_EVENT_ID);
    // Longer than a lock: a redelivery would show now.
    assert!(
        next_event(&router, Duration::from_secs(3)).is_none(),
        "printed twice"
    );
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        router
            .metric("eviction_router_source_errors_total{provider=\"azure\",stage=\"renew_lock\"}")
            .await,
        0.0
    );
    assert_eq!(stop(router), Some(0));
}

/// Waits until `/readyz` answers 503; returns its body.
async fn not_ready(router: &Router) -> String {
    eventually(
        Duration::from_secs(20),
        "/readyz to answer 503",
        async || {
            let (status, body) = router.readyz().await;
            (status == 503).then_some(body)
        },
    )
    .await
}

/// The source's receive errors so far.
async fn receive_errors(router: &Router) -> f64 {
    router
        .metric("eviction_router_source_errors_total{provider=\"azure\",stage=\"receive\"}")
        .await
}

/// A SAS key the namespace does not know is refused with 401 at every receive, and that is an
/// error the operator sees, not an idle router: `/readyz` fails naming the source and the
/// status, and the errors are counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_sas_key_makes_the_router_not_ready() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let wrong = "d3Jvbmcta2V5LXRoZS1uYW1lc3BhY2UtZG9lcy1ub3Qta25vdw==";
    let router = Router::start(&config(&endpoint, QUEUE, wrong, DRY_RUN), &[]).await;
    fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );

    let body = not_ready(&router).await;
    assert!(
        body.contains("azure_service_bus: failing") && body.contains("unauthorized (401)"),
        "{body}"
    );
    assert!(receive_errors(&router).await > 0.0);
    let requests = fake.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.status == 401 && r.auth == "sas"),
        "{requests:?}"
    );
    assert_eq!(
        fake.active(QUEUE).len(),
        1,
        "the message stays in the queue"
    );
    assert!(next_event(&router, Duration::from_millis(300)).is_none());
    assert_eq!(stop(router), Some(0));
}

/// A queue that does not exist answers 410 Gone to every receive: `/readyz` fails naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_does_not_exist_makes_the_router_not_ready() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let router = Router::start(&config(&endpoint, "no-such-queue", KEY, DRY_RUN), &[]).await;

    let body = not_ready(&router).await;
    assert!(
        body.contains("azure_service_bus: failing") && body.contains("gone (410)"),
        "{body}"
    );
    assert!(receive_errors(&router).await > 0.0);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.status == 410 && r.path.starts_with("/no-such-queue/")),
        "{:?}",
        fake.requests()
    );
    assert_eq!(stop(router), Some(0));
}

/// A namespace that answers 503 to everything for a while: the errors are counted and the
/// router turns not ready; once the service is back the router is ready again and a message
/// sent afterwards is handled.
#[tokio::test(flavor = "multi_thread")]
async fn the_source_recovers_after_the_service_was_unavailable() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let router = Router::start(&config(&endpoint, QUEUE, KEY, DRY_RUN), &[]).await;
    eventually(Duration::from_secs(20), "ready and connected", async || {
        let (status, body) = router.readyz().await;
        (status == 200 && body.contains("azure_service_bus: ok")).then_some(())
    })
    .await;

    fake.fail_all(Some(503));
    let body = not_ready(&router).await;
    assert!(body.contains("throttled (503)"), "{body}");
    let errors = receive_errors(&router).await;
    assert!(errors > 0.0);

    fake.clear_faults();
    eventually(Duration::from_secs(60), "ready again", async || {
        let (status, body) = router.readyz().await;
        (status == 200 && body.contains("azure_service_bus: ok")).then_some(())
    })
    .await;
    let id = fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );
    let event = next_event(&router, Duration::from_secs(20))
        .expect("the event on stdout after the recovery");
    assert_eq!(event["id"], PREEMPT_EVENT_ID);
    let done = completed(&fake, 1).await;
    assert_eq!(done[0].message_id, id);
    assert!(receive_errors(&router).await >= errors);
    assert_eq!(stop(router), Some(0));
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "5f8c6f2e-8a4b-4d3c-9e1f-0a1b2c3d4e5f";
/// The projected service account token (a JWT in shape only; nothing here verifies it).
const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImUyZSJ9.eyJpc3MiOiJodHRwczovL29pZGMuZTJlLnRlc3QiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZXZpY3Rpb24tcm91dGVyOmV2aWN0aW9uLXJvdXRlciIsImF1ZCI6ImFwaTovL0F6dXJlQURUb2tlbkV4Y2hhbmdlIn0.c2lnbmF0dXJl";
/// The access token the fake Entra issues and the fake namespace accepts.
const ACCESS_TOKEN: &str = "e2e-entra-access-token-for-servicebus";

/// A tiny fake of the Microsoft Entra token endpoint, for the one exchange workload identity
/// makes, as documented in "Microsoft identity platform and the OAuth 2.0 client credentials
/// flow", section "Third case: Access token request with a federated credential" (the request
/// Microsoft Entra Workload ID / workload identity federation makes on AKS, the assertion being
/// the projected service account token): `POST /{tenant}/oauth2/v2.0/token` with
/// the form fields `client_id`, `scope`, `client_assertion_type =
/// urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `client_assertion` (the projected
/// token) and `grant_type = client_credentials`; the answer is `{"token_type": "Bearer",
/// "expires_in": ..., "access_token": ...}`, and a refusal is 400 with `error` and
/// `error_description`. Every field is checked; nothing about the assertion is verified beyond
/// its being the file's content.
struct Entra {
    /// The authority host (`http://127.0.0.1:PORT/`).
    url: String,
    /// One line per token request: `ok`, or why it was refused.
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Entra {
    async fn start() -> Entra {
        use axum::extract::Path;
        use axum::http::{HeaderMap, StatusCode, header};
        use std::collections::HashMap;
        let calls: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(
                move |Path(tenant): Path<String>, headers: HeaderMap, body: String| {
                    let seen = seen.clone();
                    async move {
                        let form: HashMap<String, String> =
                            url::form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect();
                        let field = |k: &str| form.get(k).map(String::as_str);
                        let content_type = headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok());
                        let problem = if tenant != TENANT {
                            Some(format!("unknown tenant {tenant}"))
                        } else if content_type != Some("application/x-www-form-urlencoded") {
                            Some(format!("content type {content_type:?}"))
                        } else if field("grant_type") != Some("client_credentials") {
                            Some(format!("grant_type {:?}", field("grant_type")))
                        } else if field("client_id") != Some(CLIENT_ID) {
                            Some(format!("client_id {:?}", field("client_id")))
                        } else if field("scope") != Some("https://servicebus.azure.net/.default") {
                            Some(format!("scope {:?}", field("scope")))
                        } else if field("client_assertion_type")
                            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                        {
                            Some(format!(
                                "client_assertion_type {:?}",
                                field("client_assertion_type")
                            ))
                        } else if field("client_assertion") != Some(FEDERATED_TOKEN) {
                            Some(format!("client_assertion {:?}", field("client_assertion")))
                        } else {
                            None
                        };
                        seen.lock()
                            .unwrap()
                            .push(problem.clone().unwrap_or_else(|| "ok".into()));
                        let json = [(header::CONTENT_TYPE, "application/json")];
                        match problem {
                            None => (
                                StatusCode::OK,
                                json,
                                serde_json::json!({
                                    "token_type": "Bearer",
                                    "expires_in": 3599,
                                    "access_token": ACCESS_TOKEN,
                                })
                                .to_string(),
                            ),
                            Some(why) => (
                                StatusCode::BAD_REQUEST,
                                json,
                                serde_json::json!({
                                    "error": "invalid_request",
                                    "error_description": why,
                                })
                                .to_string(),
                            ),
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Entra { url, calls, task }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for Entra {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The router configuration for the Service Bus source at `endpoint` with workload identity,
/// its settings left to the environment the AKS webhook injects.
fn workload_identity_config(endpoint: &str) -> String {
    format!(
        "sources:\n  - type: azure_service_bus\n    namespace: {NAMESPACE}\n    queue: {QUEUE}\n    auth: workload_identity\n    \
         endpoint: {endpoint}\n    receivers: 2\n    wait_time_seconds: 1\n\
         server:\n  readiness_grace_seconds: 1\n{DRY_RUN}"
    )
}

/// The variables the AKS workload identity webhook injects, with the fake Entra's address as
/// the authority.
fn workload_identity_env(
    token_file: &std::path::Path,
    entra: &Entra,
    client_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_CLIENT_ID", client_id.to_owned()),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AZURE_AUTHORITY_HOST", entra.url.clone()),
    ]
}

/// Workload identity end to end: the router exchanges the federated token file for an Entra
/// access token (once: it is cached), and every Service Bus request carries it as a bearer
/// token instead of a SAS; the namespace knows no SAS key at all, and the message is handled
/// and completed.
#[tokio::test(flavor = "multi_thread")]
async fn workload_identity_authenticates_every_request_with_an_entra_token() {
    let fake = FakeServiceBus::new(NAMESPACE);
    fake.create_queue(QUEUE, QueueSettings::default());
    fake.add_bearer_token(ACCESS_TOKEN);
    let endpoint = format!("http://{}", fake.start().await.unwrap());
    let entra = Entra::start().await;
    let dir = crate::support::TempDir::new();
    let token_file = dir.0.join("azure-identity-token");
    // The kubelet's file ends with no newline, but a trailing one must not matter.
    std::fs::write(&token_file, format!("{FEDERATED_TOKEN}\n")).unwrap();
    let router = Router::start(
        &workload_identity_config(&endpoint),
        &workload_identity_env(&token_file, &entra, CLIENT_ID),
    )
    .await;
    let id = fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );

    let event = next_event(&router, Duration::from_secs(20)).expect("the event on stdout");
    assert_eq!(event["id"], PREEMPT_EVENT_ID);
    let done = completed(&fake, 1).await;
    assert_eq!(done[0].message_id, id);
    assert_eq!(done[0].delivery_count, 1);
    let requests = fake.requests();
    assert!(
        requests.iter().any(|r| r.method == "DELETE"),
        "no Delete Message request: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.auth == "bearer"),
        "a request without the bearer token: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.status != 401),
        "a bearer request was refused: {requests:?}"
    );
    assert_eq!(
        entra.calls(),
        vec!["ok".to_owned()],
        "one token exchange, accepted, then the cached token"
    );
    let (status, body) = router.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stop(router), Some(0));
}

/// An identity Entra refuses (here an unknown client id) is an error the operator sees: no
/// request reaches Service Bus without a token, and `/readyz` fails with Entra's answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_workload_identity_makes_the_router_not_ready() {
    let fake = FakeServiceBus::new(NAMESPACE);
    fake.create_queue(QUEUE, QueueSettings::default());
    fake.add_bearer_token(ACCESS_TOKEN);
    let endpoint = format!("http://{}", fake.start().await.unwrap());
    let entra = Entra::start().await;
    let dir = crate::support::TempDir::new();
    let token_file = dir.0.join("azure-identity-token");
    std::fs::write(&token_file, FEDERATED_TOKEN).unwrap();
    let router = Router::start(
        &workload_identity_config(&endpoint),
        &workload_identity_env(&token_file, &entra, "not-the-registered-client"),
    )
    .await;
    fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );

    let body = not_ready(&router).await;
    assert!(
        body.contains("azure_service_bus: failing")
            && body.contains("the Entra token endpoint answered 400: invalid_request"),
        "{body}"
    );
    assert!(receive_errors(&router).await > 0.0);
    let calls = entra.calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c.starts_with("client_id")),
        "{calls:?}"
    );
    assert!(
        fake.requests().is_empty(),
        "a request went to Service Bus without a token: {:?}",
        fake.requests()
    );
    assert_eq!(fake.active(QUEUE).len(), 1);
    assert_eq!(stop(router), Some(0));
}

/// A message that is not actionable (an availability change) and a second copy of an event
/// already handled (Event Grid delivers at least once) are completed, not abandoned, and
/// nothing is printed for them.
#[tokio::test(flavor = "multi_thread")]
async fn ignored_and_duplicate_messages_are_completed_and_not_printed() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let router = Router::start(&config(&endpoint, QUEUE, KEY, DRY_RUN), &[]).await;
    let spot = fixture("azure/scheduled-event-preempt.eventgrid.json");
    fake.send(QUEUE, spot.clone());
    let event = next_event(&router, Duration::from_secs(20)).expect("the event on stdout");
    assert_eq!(event["id"], PREEMPT_EVENT_ID);
    // Settled first: a copy received while the original is still being handled is asked to be
    // redelivered instead (the router's in-flight check), which is not what this test is about.
    completed(&fake, 1).await;
    fake.send(QUEUE, spot);
    fake.send(
        QUEUE,
        fixture("azure/availability-status-changed.eventgrid.json"),
    );

    let done = completed(&fake, 3).await;
    assert!(done.iter().all(|m| m.delivery_count == 1), "{done:?}");
    assert!(
        next_event(&router, Duration::from_millis(500)).is_none(),
        "an ignored message was printed"
    );
    assert_eq!(
        router
            .metric("eviction_router_messages_total{provider=\"azure\",outcome=\"ignored\"}")
            .await,
        2.0
    );
    assert_eq!(
        router
            .metric("eviction_router_events_ignored_total{provider=\"azure\",reason=\"duplicate\"}")
            .await,
        1.0
    );
    assert_eq!(stop(router), Some(0));
}

/// On SIGTERM, a message still in flight when the shutdown grace period ends is abandoned, so
/// it is available again at once rather than after its (60 s) lock runs out; it is not
/// completed.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_handling_abandons_the_message() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    // A receiver slower than the shutdown grace period keeps the message in flight.
    let receiver = crate::support::Receiver::start(vec![], Duration::from_secs(20)).await;
    let extra = format!(
        "{DRY_RUN}router:\n  shutdown_grace_seconds: 1\nsinks:\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 30\n",
        receiver.url
    );
    let router = Router::start(&config(&endpoint, QUEUE, KEY, &extra), &[]).await;
    let id = fake.send(
        QUEUE,
        fixture("azure/scheduled-event-preempt.eventgrid.json"),
    );
    eventually(
        Duration::from_secs(20),
        "the message in flight",
        async || (receiver.count() == 1).then_some(()),
    )
    .await;
    let active = fake.active(QUEUE);
    assert!(active.len() == 1 && active[0].locked, "{active:?}");

    let started = std::time::Instant::now();
    assert_eq!(stop(router), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    let active = fake.active(QUEUE);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].message_id, id);
    assert!(!active[0].locked, "still locked: not abandoned: {active:?}");
    assert!(fake.completed(QUEUE).is_empty());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.status == 200),
        "no Unlock Message: {:?}",
        fake.requests()
    );
}

/// Backpressure: with the router's queue full (`concurrency: 1`, `queue_capacity: 1`, a slow
/// required sink), a receiver holding a locked message waits for room before handing it over.
/// Its lock (2 s) must not run out meanwhile: every message is completed at its first delivery
/// and reaches the sink once.
#[tokio::test(flavor = "multi_thread")]
async fn locks_are_kept_while_a_message_waits_for_room_in_the_router() {
    let (fake, endpoint) = service_bus(QueueSettings {
        lock_duration: Duration::from_secs(2),
        ..QueueSettings::default()
    })
    .await;
    let receiver = crate::support::Receiver::start(vec![], Duration::from_secs(3)).await;
    let extra = format!(
        "{DRY_RUN}router:\n  concurrency: 1\n  queue_capacity: 1\n\
         sinks:\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 10\n    max_attempts: 1\n",
        receiver.url
    );
    let router = Router::start(&config(&endpoint, QUEUE, KEY, &extra), &[]).await;
    let spot: Value =
        serde_json::from_str(&fixture("azure/scheduled-event-preempt.eventgrid.json")).unwrap();
    for n in 0..4 {
        let mut body = spot.clone();
        body["id"] = Value::String(format!("e2e-backpressure-{n}"));
        fake.send(QUEUE, body.to_string());
    }

    let done = eventually(
        Duration::from_secs(60),
        "4 messages completed and the queue empty",
        async || {
            let done = fake.completed(QUEUE);
            (done.len() >= 4 && fake.active(QUEUE).is_empty()).then_some(done)
        },
    )
    .await;
    let summary: Vec<(String, u32, u32)> = done
        .iter()
        .map(|m| (m.message_id.clone(), m.delivery_count, m.lock_renewals))
        .collect();
    let lost_locks = router
        .metric("eviction_router_source_errors_total{provider=\"azure\",stage=\"complete\"}")
        .await;
    // The lock is renewed from the receive on, also while the message waits for room in the
    // router's queue: it is never delivered twice, and no complete finds its lock gone.
    assert!(
        done.iter().all(|m| m.delivery_count == 1) && lost_locks == 0.0,
        "a lock ran out while its message waited for room in the router, and the message was \
         delivered again; (message id, delivery count, lock renewals): {summary:?}; \
         failed completes: {lost_locks}"
    );
    assert_eq!(receiver.count(), 4);
    assert_eq!(stop(router), Some(0));
}

/// The maintenance drill: `inject --kind scheduled_maintenance` sends a Reboot scheduled event
/// fifteen minutes ahead, which the router prints as scheduled maintenance of that VM, marked as
/// a drill.
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduled_maintenance_drill_is_handled_as_maintenance() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    let config = config(&endpoint, QUEUE, KEY, DRY_RUN);
    let router = Router::start(&config, &[]).await;
    let (_dir, path) = config_file(&config);
    let before = jiff::Timestamp::now();
    let out = inject(&path, PREEMPTED_VM, &["--kind", "scheduled_maintenance"]).await;
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let event = next_event(&router, Duration::from_secs(20)).expect("the drill on stdout");
    assert_eq!(
        event["type"], "eviction-router.scheduled_maintenance.v1",
        "{event}"
    );
    assert_eq!(event["data"]["action"], "reboot");
    assert_eq!(event["data"]["details"]["drill"], true);
    assert_eq!(event["data"]["details"]["scheduled_event_type"], "Reboot");
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        PREEMPTED_PROVIDER_ID
    );
    let not_before: jiff::Timestamp = event["data"]["not_before"]
        .as_str()
        .expect("not_before")
        .parse()
        .unwrap();
    let ahead = not_before.duration_since(before);
    assert!(
        ahead > jiff::SignedDuration::from_mins(14) && ahead <= jiff::SignedDuration::from_mins(16),
        "not_before {not_before} is not fifteen minutes ahead"
    );
    let done = completed(&fake, 1).await;
    assert_eq!(done[0].delivery_count, 1);
    assert_eq!(stop(router), Some(0));
}

/// The drill does not fail silently: when the namespace refuses the key, or the queue does not
/// exist, `inject` exits non-zero and says why, and nothing is enqueued.
#[tokio::test(flavor = "multi_thread")]
async fn inject_reports_a_refused_key_and_a_missing_queue() {
    let (fake, endpoint) = service_bus(QueueSettings::default()).await;
    for (config, expected) in [
        (
            config(&endpoint, QUEUE, "d3Jvbmcta2V5", DRY_RUN),
            "unauthorized (401)",
        ),
        (
            config(&endpoint, "no-such-queue", KEY, DRY_RUN),
            "gone (410)",
        ),
    ] {
        let (_dir, path) = config_file(&config);
        let out = inject(&path, PREEMPTED_VM, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot send to the Service Bus queue") && stderr.contains(expected),
            "{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(fake.active(QUEUE).is_empty());
    let sends: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .map(|r| r.status)
        .collect();
    assert_eq!(sends, vec![401, 410]);
}

/// Sequence numbers are 64-bit, and partitioned entities carry the partition in the top bits:
/// messages whose `EnqueuedSequenceNumber` is above 2^31 or above 2^48 are received, handled and
/// completed (the crate reads that field as an `i32`; the transport drops a value it cannot
/// hold, see `transport::safe_broker_properties`).
#[tokio::test(flavor = "multi_thread")]
async fn messages_with_64_bit_sequence_numbers_are_received_and_completed() {
    for first in [(1i64 << 31) + 1, (1i64 << 48) + 7] {
        let (fake, endpoint) = service_bus(QueueSettings {
            first_sequence_number: first,
            enqueued_sequence_numbers: true,
            ..QueueSettings::default()
        })
        .await;
        let router = Router::start(&config(&endpoint, QUEUE, KEY, DRY_RUN), &[]).await;
        fake.send(
            QUEUE,
            fixture("azure/scheduled-event-preempt.eventgrid.json"),
        );
        let event = next_event(&router, Duration::from_secs(20)).expect("the event on stdout");
        assert_eq!(event["data"]["kind"], "interruption");
        let done = completed(&fake, 1).await;
        assert_eq!(done[0].sequence_number, first);
        assert_eq!(
            router
                .metric("eviction_router_source_errors_total{provider=\"azure\",stage=\"receive\"}")
                .await,
            0.0,
            "no receive failed"
        );
        assert_eq!(router.terminate(), Some(0));
    }
}
