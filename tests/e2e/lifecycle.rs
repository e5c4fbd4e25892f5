//! ASG termination lifecycle hooks: the real binary drains the Node and completes the hook's
//! action on the fake Auto Scaling API (`tests/fake-autoscaling`), heartbeating while a
//! PodDisruptionBudget holds the drain; the chart's RBAC enforced by the fake API server, the
//! IAM scoped by a tag on the group as `infra/aws` writes it.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use fake_autoscaling::{ActionState, FakeAutoScaling, Fault, Hook, LifecycleResult};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{Router, eventually, fixture, kubeconfig_for};

const GROUP: &str = "nodes-spot-a";
const HOOK: &str = "drain-before-terminate";
const TAG: (&str, &str) = ("kubernetes.io/cluster/prod", "owned");
/// Another group in the IAM scope, whose hook waits 10 minutes.
const PATIENT: &str = "nodes-spot-b";

/// The fake API server with the release namespace, the chart's RBAC, and one Node per instance.
async fn cluster(instances: &[&str]) -> (std::net::SocketAddr, FakeApiServer) {
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    fake.insert(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "eviction-router"}}),
    )
    .unwrap();
    for id in instances {
        fake.insert(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(id), "labels": {"eks.amazonaws.com/nodegroup": GROUP}},
            "spec": {"providerID": format!("aws:///us-east-1b/{id}")},
        }))
        .unwrap();
    }
    fake.enforce_rbac(crate::cluster::chart_rbac());
    (addr, fake)
}

fn node_name(instance: &str) -> String {
    format!("ip-{instance}.ec2.internal")
}

/// The Auto Scaling API with the group (tagged as the IAM policy requires) and its hook, whose
/// actions time out `heartbeat_timeout` after their start or last heartbeat.
async fn autoscaling(heartbeat_timeout: Duration) -> (String, FakeAutoScaling) {
    let asg = FakeAutoScaling::new("us-east-1");
    asg.add_access_key("AKIDROUTER");
    asg.add_group(GROUP, &[TAG]);
    asg.add_group("untagged", &[]);
    asg.add_group(PATIENT, &[TAG]);
    for (group, heartbeat_timeout) in [
        (GROUP, heartbeat_timeout),
        ("untagged", heartbeat_timeout),
        (PATIENT, Duration::from_secs(600)),
    ] {
        asg.add_hook(
            group,
            Hook {
                heartbeat_timeout,
                ..Hook::terminating(HOOK)
            },
        );
    }
    asg.require_group_tag(TAG.0, TAG.1);
    let addr = asg.start().await.unwrap();
    (format!("http://{addr}"), asg)
}

/// The EventBridge lifecycle action for `instance` of `group` with `token`, now.
fn lifecycle_event(id: &str, group: &str, instance: &str, token: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture("aws/asg-terminate-lifecycle.json")).unwrap();
    v["id"] = json!(id);
    v["time"] = json!(Timestamp::now().to_string());
    v["detail"]["AutoScalingGroupName"] = json!(group);
    v["detail"]["LifecycleHookName"] = json!(HOOK);
    v["detail"]["EC2InstanceId"] = json!(instance);
    v["detail"]["LifecycleActionToken"] = json!(token);
    v.to_string()
}

async fn start_router(
    api: std::net::SocketAddr,
    asg: &str,
    heartbeat: u64,
) -> (Router, crate::support::TempDir) {
    let (dir, kubeconfig) = kubeconfig_for(api);
    let config = format!(
        "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n  asg_lifecycle:\n    heartbeat_interval_seconds: {heartbeat}\n"
    );
    let env = [
        ("KUBECONFIG", kubeconfig),
        ("POD_NAMESPACE", "eviction-router".to_owned()),
        ("AWS_ENDPOINT_URL_AUTO_SCALING", asg.to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDROUTER".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    (Router::start(&config, &env).await, dir)
}

async fn post(router: &Router, body: String) -> String {
    reqwest::Client::new()
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn lifecycle_record(fake: &FakeApiServer, node: &str) -> Option<Value> {
    let n = fake.get("nodes", None, node)?;
    let text = n["metadata"]["annotations"]["eviction-router/lifecycle"].as_str()?;
    serde_json::from_str(text).ok()
}

fn completions(asg: &FakeAutoScaling) -> usize {
    asg.requests()
        .iter()
        .filter(|r| r.action.as_deref() == Some("CompleteLifecycleAction") && r.status == 200)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hook_is_kept_alive_while_a_budget_holds_the_drain_then_completed_once() {
    const INSTANCE: &str = "i-0a1100000000000a1";
    const LATER: &str = "i-0a1200000000000a2";
    let (api, fake) = cluster(&[INSTANCE, LATER]).await;
    let node = node_name(INSTANCE);
    fake.insert(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u"}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    fake.insert(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1},
    }))
    .unwrap();
    let (asg_url, asg) = autoscaling(Duration::from_secs(4)).await;
    let token = asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let (router, _dir) = start_router(api, &asg_url, 1).await;

    let answer = post(&router, lifecycle_event("lc-1", GROUP, INSTANCE, &token)).await;
    assert_eq!(answer, "{\"outcome\":\"handled\"}\n");
    // The budget holds the drain past the hook's 4 s heartbeat timeout (six heartbeats, one a
    // second): heartbeats keep the instance waiting.
    let start = std::time::Instant::now();
    while asg.action(&token).unwrap().heartbeats < 6 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no six heartbeats: {:?}\n{:?}\n{:?}",
            asg.actions(),
            asg.requests(),
            fake.get("nodes", None, &node)
                .map(|n| n["metadata"]["annotations"].clone()),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = asg.action(&token).unwrap();
    assert_eq!(held.state, ActionState::Pending, "{held:?}");
    assert_eq!(completions(&asg), 0, "completed while the drain ran");

    // The budget lets the pod go: the drain ends, the action is completed with CONTINUE.
    let mut budget = fake
        .get("poddisruptionbudgets", Some("default"), "db")
        .unwrap();
    budget["status"]["disruptionsAllowed"] = json!(1);
    fake.update(budget).unwrap();
    eventually(
        Duration::from_secs(20),
        "the action completed",
        async || matches!(asg.action(&token)?.state, ActionState::Completed { .. }).then_some(()),
    )
    .await;
    assert_eq!(
        asg.action(&token).unwrap().state,
        ActionState::Completed {
            result: LifecycleResult::Continue
        }
    );
    let record = eventually(
        Duration::from_secs(10),
        "the record on the Node",
        async || lifecycle_record(&fake, &node),
    )
    .await;
    assert_eq!(
        (record["for"].as_str(), record["outcome"].as_str()),
        (Some("lc-1"), Some("completed"))
    );
    let complete = asg
        .requests()
        .into_iter()
        .find(|r| r.action.as_deref() == Some("CompleteLifecycleAction"))
        .unwrap();
    assert_eq!(complete.param("LifecycleActionToken"), Some(token.as_str()));
    assert_eq!(complete.param("InstanceId"), Some(INSTANCE));
    assert_eq!(complete.param("AutoScalingGroupName"), Some(GROUP));
    assert_eq!(
        router
            .metric(
                "eviction_router_lifecycle_calls_total{call=\"complete\",outcome=\"completed\"}"
            )
            .await,
        1.0
    );
    assert_eq!(router.terminate(), Some(0));

    // A new router (a restart, or the next leader) reads the record and completes nothing.
    let (router, _dir2) = start_router(api, &asg_url, 1).await;
    // Another Node's hook, completed by the new router: by then it had looked at every Node
    // (all of them at its first list), the first one included.
    let later = asg.start_lifecycle_action(PATIENT, HOOK, LATER);
    let answer = post(&router, lifecycle_event("lc-2", PATIENT, LATER, &later)).await;
    assert_eq!(answer, "{\"outcome\":\"handled\"}\n");
    eventually(
        Duration::from_secs(20),
        "the second action completed",
        async || matches!(asg.action(&later)?.state, ActionState::Completed { .. }).then_some(()),
    )
    .await;
    let first = asg
        .requests()
        .iter()
        .filter(|r| r.action.as_deref() == Some("CompleteLifecycleAction"))
        .filter(|r| r.param("InstanceId") == Some(INSTANCE))
        .count();
    assert_eq!(first, 1, "the first action was completed again");
    assert_eq!(completions(&asg), 2);
    assert!(
        fake.requests().iter().all(|r| r.status != 403),
        "RBAC refused a call: {:?}",
        fake.denied()
    );
    assert_eq!(router.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_a_stale_token_is_recorded_and_an_untagged_group_is_refused() {
    const RETRIED: &str = "i-0a2200000000000a2";
    const STALE: &str = "i-0a3300000000000a3";
    const UNTAGGED: &str = "i-0a4400000000000a4";
    let (api, fake) = cluster(&[RETRIED, STALE, UNTAGGED]).await;
    // Long enough that no action times out while the client and the reconciler retry.
    let (asg_url, asg) = autoscaling(Duration::from_secs(600)).await;
    let retried = asg.start_lifecycle_action(GROUP, HOOK, RETRIED);
    let current = asg.start_lifecycle_action(GROUP, HOOK, STALE);
    let untagged = asg.start_lifecycle_action("untagged", HOOK, UNTAGGED);
    // Four 500s: the client's three attempts fail, the reconciler tries again.
    asg.fail_next_for("CompleteLifecycleAction", Fault::InternalFailure, 4);
    let (router, _dir) = start_router(api, &asg_url, 0).await;

    assert_eq!(
        post(
            &router,
            lifecycle_event("lc-retried", GROUP, RETRIED, &retried)
        )
        .await,
        "{\"outcome\":\"handled\"}\n"
    );
    eventually(
        Duration::from_secs(60),
        "the retried action completed",
        async || matches!(asg.action(&retried)?.state, ActionState::Completed { .. }).then_some(()),
    )
    .await;
    assert!(
        router
            .metric(
                "eviction_router_lifecycle_calls_total{call=\"complete\",outcome=\"unavailable\"}"
            )
            .await
            >= 1.0
    );

    // A notice whose token is not the instance's current action: nothing to complete, and the
    // current action is left alone.
    assert_eq!(
        post(
            &router,
            lifecycle_event(
                "lc-stale",
                GROUP,
                STALE,
                "00000000-0000-4000-8000-000000000000"
            )
        )
        .await,
        "{\"outcome\":\"handled\"}\n"
    );
    let record = eventually(Duration::from_secs(20), "the stale record", async || {
        lifecycle_record(&fake, &node_name(STALE))
    })
    .await;
    assert_eq!(record["outcome"], "no_active_action", "{record}");
    assert!(!matches!(
        asg.action(&current).unwrap().state,
        ActionState::Completed { .. }
    ));

    // A group outside the IAM scope: refused, counted, and tried again (never recorded).
    assert_eq!(
        post(
            &router,
            lifecycle_event("lc-untagged", "untagged", UNTAGGED, &untagged)
        )
        .await,
        "{\"outcome\":\"handled\"}\n"
    );
    eventually(Duration::from_secs(20), "two refusals", async || {
        (router
            .metric("eviction_router_lifecycle_calls_total{call=\"complete\",outcome=\"denied\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    assert!(lifecycle_record(&fake, &node_name(UNTAGGED)).is_none());
    assert!(!matches!(
        asg.action(&untagged).unwrap().state,
        ActionState::Completed { .. }
    ));
    assert_eq!(router.terminate(), Some(0));
}
