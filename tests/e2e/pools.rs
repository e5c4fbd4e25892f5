//! Pool statistics kept by the real binary: placement on its events, the periodic `pool_stats`
//! event and gauges, and the state saved in a ConfigMap that a restarted router continues from.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{Router, eventually, fixture, kubeconfig_for};

const POOL: &str = "spot-a";

fn spot_node(name: &str, instance: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "eks.amazonaws.com/nodegroup": POOL,
            "eks.amazonaws.com/capacityType": "SPOT",
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": "us-east-1b",
            "topology.k8s.aws/zone-id": "use1-az2",
        }},
        "spec": {"providerID": format!("aws:///us-east-1b/{instance}")},
    })
}

fn interruption(id: &str, instance: &str) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = json!(id);
    v["time"] = json!(Timestamp::now().to_string());
    v["detail"]["instance-id"] = json!(instance);
    v["resources"] = json!([format!("arn:aws:ec2:us-east-1b:instance/{instance}")]);
    v.to_string()
}

async fn start(api: std::net::SocketAddr) -> (Router, crate::support::TempDir) {
    let (dir, kubeconfig) = kubeconfig_for(api);
    let config = "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n  make_before_break:\n    kinds: []\n  pool_stats:\n    interval_seconds: 1\n";
    let env = [
        ("KUBECONFIG", kubeconfig),
        ("POD_NAMESPACE", "eviction-router".to_owned()),
    ];
    (Router::start(config, &env).await, dir)
}

async fn post(router: &Router, body: String) {
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer, "{\"outcome\":\"handled\"}\n");
}

/// The next `pool_stats` event of the pool whose interruptions reach `n`, skipping the rest.
fn pool_stats_with(router: &Router, n: u64) -> Value {
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pool_stats event with {n} interruptions"
        );
        let Some(event) = router.next_event(Duration::from_secs(5)) else {
            continue;
        };
        if event["data"]["kind"] == "pool_stats"
            && event["data"]["details"]["stats"]["interruptions"] == json!(n)
        {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_statistics_are_published_saved_and_continued_by_the_next_router() {
    let (api, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .unwrap();
    for (name, instance) in [
        ("n1", "i-0b0100000000000b1"),
        ("n2", "i-0b0200000000000b2"),
        ("n3", "i-0b0300000000000b3"),
    ] {
        fake.insert(spot_node(name, instance)).unwrap();
    }
    fake.enforce_rbac(crate::cluster::chart_rbac());

    let (a, _dir) = start(api).await;
    post(&a, interruption("itn-a", "i-0b0100000000000b1")).await;
    let notice = eventually(
        Duration::from_secs(10),
        "the interruption on stdout",
        async || {
            a.next_event(Duration::from_secs(1))
                .filter(|e| e["data"]["kind"] == "interruption")
        },
    )
    .await;
    let details = &notice["data"]["details"];
    assert_eq!(details["pool"], POOL);
    assert_eq!(details["instance_type"], "m5.large");
    assert_eq!(details["zone_id"], "use1-az2");
    assert_eq!(details["capacity_type"], "spot");
    assert!(details["node_created_at"].is_string(), "{details}");

    let stats = pool_stats_with(&a, 1);
    assert_eq!(stats["type"], "eviction-router.pool_stats.v1");
    assert_eq!(stats["subject"], POOL);
    let capacity = &stats["data"]["details"]["capacity"];
    assert_eq!(capacity[0]["instance_type"], "m5.large", "{capacity}");
    assert_eq!(capacity[0]["zone_id"], "use1-az2", "{capacity}");
    assert_eq!(capacity[0]["nodes"], 3, "{capacity}");
    eventually(Duration::from_secs(10), "the gauge", async || {
        (a.metric(&format!(
            "eviction_router_pool_interruptions{{pool=\"{POOL}\"}}"
        ))
        .await
            == 1.0)
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the state saved", async || {
        let cm = fake.get(
            "configmaps",
            Some("eviction-router"),
            "eviction-router-pool-stats",
        )?;
        cm["binaryData"]["state.json.gz"].as_str().map(|_| ())
    })
    .await;
    // One more period: the save after the gauge is the one that holds the interruption.
    pool_stats_with(&a, 1);
    assert_eq!(a.terminate(), Some(0));

    // The next router loads the saved statistics and counts on from them.
    let (b, _dir_b) = start(api).await;
    post(&b, interruption("itn-b", "i-0b0200000000000b2")).await;
    let stats = pool_stats_with(&b, 2);
    assert_eq!(stats["data"]["details"]["stats"]["pool"], POOL);
    assert!(
        b.metric("eviction_router_pool_stats_io_total{op=\"load\",outcome=\"ok\"}")
            .await
            >= 1.0
    );
    assert!(
        fake.requests().iter().all(|r| r.status != 403),
        "RBAC refused a call: {:?}",
        fake.denied()
    );
    assert_eq!(b.terminate(), Some(0));
}
