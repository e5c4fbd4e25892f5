//! The rendered chart (`deploy/manifests/`, kept fresh by `deploy/render.sh --check`) against
//! what the router promises: the kubelet waits longer than the router takes to stop.

use std::time::Duration;

use eviction_router::service::SHUTDOWN_TAIL;
use serde_norway::Value;

fn manifests() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/manifests/eviction-router.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .collect()
}

/// The router stops within `shutdown_grace_seconds` + [`SHUTDOWN_TAIL`]; the pod's
/// `terminationGracePeriodSeconds` leaves 5 s beyond that before the kubelet's SIGKILL.
#[test]
fn the_pod_grace_outlasts_the_routers_shutdown() {
    let docs = manifests();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let termination = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["config.yaml"].is_string())
        .unwrap();
    let config: Value =
        serde_norway::from_str(config["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let grace = config["router"]["shutdown_grace_seconds"].as_u64().unwrap();
    let stops_within = Duration::from_secs(grace) + SHUTDOWN_TAIL;
    assert!(
        Duration::from_secs(termination) >= stops_within + Duration::from_secs(5),
        "terminationGracePeriodSeconds {termination} s leaves no margin after the router's {stops_within:?}"
    );
}

/// The chart with the nats sink and SSE on (`ci/stream-values.yaml`, rendered by
/// `deploy/render.sh` into `tests/fixtures/chart/stream.yaml`): the router accepts its config,
/// the Secret's files are mounted where the config names them, the token arrives as the variable
/// the config expands, and the NetworkPolicy lets the router reach the NATS port.
#[test]
fn the_stream_rendering_configures_nats_and_sse_the_router_accepts() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chart/stream.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .collect();
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["config.yaml"].is_string())
        .unwrap()["data"]["config.yaml"]
        .as_str()
        .unwrap();
    let parsed = eviction_router::config::Config::parse(config, |name| {
        (name == "NATS_TOKEN").then(|| "a-token".to_owned())
    })
    .unwrap();
    use eviction_router::config::SinkConfig;
    let nats = parsed
        .sinks
        .iter()
        .find_map(|s| match s {
            SinkConfig::Nats(n) => Some(n),
            _ => None,
        })
        .expect("a nats sink");
    assert!(nats.required);
    assert_eq!(nats.token.as_deref(), Some("a-token"));
    assert_eq!(nats.urls().len(), 3);
    assert!(parsed.sinks.iter().any(|s| matches!(s, SinkConfig::Sse(_))));

    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "nats")
        .expect("the nats Secret is mounted");
    assert_eq!(mount["mountPath"], "/etc/eviction-router/nats");
    let ca = nats.tls.ca_file.as_ref().unwrap();
    assert!(ca.starts_with("/etc/eviction-router/nats"), "{ca:?}");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "nats")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "eviction-router-nats");
    assert!(
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "NATS_TOKEN" && e["valueFrom"]["secretKeyRef"]["key"] == "token")
    );
    let policy = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
    let egress = serde_norway::to_string(&policy["spec"]["egress"]).unwrap();
    assert!(egress.contains("port: 4222"), "{egress}");
}
