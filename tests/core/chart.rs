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
