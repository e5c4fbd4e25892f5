//! An outage of the Kubernetes API server, made by cutting a TCP proxy in front of the fake API
//! server: `/readyz` turns 503 naming the API server, the leader steps down to standby instead of
//! exiting, and once the link is back it leads and acts again.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{Link, Router, eventually, fixture};

const NODE: &str = "ip-10-0-1-5.ec2.internal";
const INSTANCE: &str = "i-0b662ef9931388ba0";

fn spot_warning(id: &str) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = json!(id);
    v["time"] = json!(Timestamp::now().to_string());
    v.to_string()
}

async fn ingest(router: &Router, id: &str) -> (u16, String) {
    let rsp = reqwest::Client::new()
        .post(format!("{}/v1/ingest/aws", router.base))
        .timeout(Duration::from_secs(30))
        .body(spot_warning(id))
        .send()
        .await
        .unwrap();
    (rsp.status().as_u16(), rsp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_outage_fails_readiness_and_the_leader_steps_down_without_exiting() {
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .unwrap();
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
        "spec": {"providerID": format!("aws:///us-east-1b/{INSTANCE}")},
    }))
    .unwrap();
    fake.enforce_rbac(crate::cluster::chart_rbac());
    let mut link = Link::start(addr.port()).await;
    let proxied = std::net::SocketAddr::from(([127, 0, 0, 1], link.port));
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(proxied);
    let config = "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: true\n\
                  server:\n  kubernetes_readiness_grace_seconds: 2\n";
    let mut router = Router::start(
        config,
        &[
            ("KUBECONFIG", kubeconfig),
            ("POD_NAMESPACE", "eviction-router".into()),
            ("POD_NAME", "router-0".into()),
            ("RUST_LOG", "warn,eviction_router=info".into()),
        ],
    )
    .await;
    eventually(Duration::from_secs(20), "the router to lead", async || {
        let (status, body) = ingest(&router, "before").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(router.readyz().await.0, 200);

    link.cut();
    let body = eventually(Duration::from_secs(20), "/readyz to fail", async || {
        let (status, body) = router.readyz().await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("kubernetes: failing for")
            && body.contains(&format!("127.0.0.1:{}", link.port)),
        "{body}"
    );
    // The Lease cannot be renewed: after its renew deadline (10 s of a 15 s Lease) the leader
    // steps down, and stays up as a standby.
    eventually(Duration::from_secs(30), "the step-down", async || {
        router
            .logs()
            .iter()
            .any(|l| l.contains("Lost the leadership"))
            .then_some(())
    })
    .await;
    assert_eq!(
        ingest(&router, "during").await.0,
        503,
        "a standby answers retry"
    );
    assert!(
        router.exited().is_none(),
        "the router exited on losing the Lease"
    );

    link.restore().await;
    eventually(Duration::from_secs(20), "/readyz to recover", async || {
        (router.readyz().await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = eventually(Duration::from_secs(30), "leading again", async || {
        let answer = ingest(&router, "after").await;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"outcome\":\"handled\"}\n")
    );
    assert_eq!(
        fake.get("nodes", None, NODE).unwrap()["spec"]["unschedulable"],
        true
    );
    let (code, _) = router
        .terminate_within(Duration::from_secs(30))
        .expect("the router did not stop");
    assert_eq!(code, Some(0));
}
