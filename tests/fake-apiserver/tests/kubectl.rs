//! The real `kubectl` against the `fake-apiserver` binary over HTTP.
//!
//! kubectl must be on PATH; without it these tests fail (they never skip).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `fake-apiserver` binary with its scratch directory.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    async fn start(seed: Value) -> Server {
        Server::start_with(seed, &[]).await
    }

    /// Starts the binary with more flags after `--seed` and `--kubeconfig`.
    async fn start_with(seed: Value, flags: &[&str]) -> Server {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("fake-apiserver-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("seed.json"),
            serde_json::to_vec_pretty(&seed).unwrap(),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(dir.join("seed.json"))
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the fake-apiserver binary");
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("fake-apiserver prints its address within 20s")
        .unwrap();
        let addr: std::net::SocketAddr = first.trim().parse().expect("first line is the address");
        assert!(addr.ip().is_loopback());
        Server { child, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Runs kubectl with a deadline; returns its output whatever the exit status.
    async fn kubectl(&self, args: &[&str], deadline: Duration) -> Output {
        kubectl_in(&self.kubeconfig(), &self.dir.join("cache"), args, deadline).await
    }

    /// Runs kubectl and requires success.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, Duration::from_secs(30)).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

async fn kubectl_in(kubeconfig: &Path, cache: &Path, args: &[&str], deadline: Duration) -> Output {
    let child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("kubectl was not found on PATH; these tests need the real kubectl binary")
        }
        Err(e) => panic!("could not run kubectl: {e}"),
    };
    tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {deadline:?}"))
        .unwrap()
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str, ns: &str, node: &str, owner_kind: &str, owner: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner,
                                          "uid": "00000000-0000-4000-8000-000000000001", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "scratch", "emptyDir": {}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

#[tokio::test]
async fn get_cordon_taint_uncordon() {
    let server = Server::start(json!({"apiVersion": "v1", "kind": "List",
                                      "items": [node("node-a"), node("node-b")]}))
    .await;
    let nodes = server.ok(&["get", "nodes"]).await;
    assert!(
        nodes.contains("node-a") && nodes.contains("node-b"),
        "{nodes}"
    );

    let unschedulable = |out: String| out.contains("\"unschedulable\":true");

    assert!(
        server
            .ok(&["cordon", "node-a"])
            .await
            .contains("node/node-a cordoned")
    );
    let got = server
        .ok(&["get", "node", "node-a", "-o", "jsonpath={.spec}"])
        .await;
    assert!(unschedulable(got.clone()), "{got}");

    assert!(
        server
            .ok(&["taint", "nodes", "node-a", "k=v:NoSchedule"])
            .await
            .contains("tainted")
    );
    let taints = server
        .ok(&["get", "node", "node-a", "-o", "jsonpath={.spec.taints}"])
        .await;
    let taints: Value = serde_json::from_str(&taints).unwrap();
    assert_eq!(
        taints,
        json!([{"effect": "NoSchedule", "key": "k", "value": "v"}])
    );

    assert!(
        server
            .ok(&["uncordon", "node-a"])
            .await
            .contains("uncordoned")
    );
    let got = server
        .ok(&["get", "node", "node-a", "-o", "jsonpath={.spec}"])
        .await;
    assert!(
        !unschedulable(got.clone()) && got.contains("NoSchedule"),
        "{got}"
    );

    assert!(
        server
            .ok(&["taint", "nodes", "node-a", "k=v:NoSchedule-"])
            .await
            .contains("untainted")
    );
    let got = server
        .ok(&["get", "node", "node-a", "-o", "jsonpath={.spec}"])
        .await;
    assert!(!got.contains("taints"), "{got}");
}

#[tokio::test]
async fn drain_respects_a_pod_disruption_budget() {
    let seed = json!({"apiVersion": "v1", "kind": "List", "items": [
        node("node-a"),
        node("node-b"),
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "agent", "namespace": "kube-system"},
         "spec": {"selector": {"matchLabels": {"app": "agent"}}}},
        pod("agent-x", "kube-system", "node-a", "DaemonSet", "agent", json!({"app": "agent"})),
        pod("web-1", "default", "node-a", "ReplicaSet", "web", json!({"app": "web"})),
        pod("api-1", "default", "node-a", "ReplicaSet", "api", json!({"app": "api"})),
        pod("web-2", "default", "node-b", "ReplicaSet", "web", json!({"app": "web"})),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "web", "namespace": "default"},
         "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
         "status": {"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2,
                    "desiredHealthy": 2, "expectedPods": 2}},
    ]});
    let server = Server::start(seed).await;
    let drain = [
        "drain",
        "node-a",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
    ];

    // Blocked: kubectl reports the budget, retries every 5s, and gives up at its timeout.
    let mut args = drain.to_vec();
    args.push("--timeout=8s");
    let out = server.kubectl(&args, Duration::from_secs(40)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should time out\n{stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"evicting pods/"web-1" -n "default""#),
        "{stderr}"
    );
    assert!(stderr.contains("global timeout reached: 8s"), "{stderr}");
    // The unprotected pod went; the protected one and the DaemonSet pod stayed.
    let pods = server.ok(&["get", "pods", "-A", "-o", "name"]).await;
    assert!(
        !pods.contains("pod/api-1") && pods.contains("pod/web-1") && pods.contains("pod/agent-x"),
        "{pods}"
    );
    let unschedulable = server
        .ok(&[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.spec.unschedulable}",
        ])
        .await;
    assert_eq!(unschedulable, "true");

    // The disruption controller would raise the budget; kubectl patches its status instead.
    server
        .ok(&[
            "patch",
            "pdb",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"disruptionsAllowed":1}}"#,
        ])
        .await;
    let mut args = drain.to_vec();
    args.push("--timeout=20s");
    let out = server.kubectl(&args, Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drain failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pod/web-1 evicted") && stdout.contains("node/node-a drained"),
        "{stdout}"
    );

    let pods = server.ok(&["get", "pods", "-A", "-o", "name"]).await;
    assert!(
        !pods.contains("pod/web-1") && pods.contains("pod/web-2") && pods.contains("pod/agent-x"),
        "{pods}"
    );
    let allowed = server
        .ok(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ])
        .await;
    assert_eq!(allowed, "0");
}

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/manifests/eviction-router.yaml"
);
const ROUTER: &str = "system:serviceaccount:eviction-router:eviction-router";

#[tokio::test]
async fn rbac_flags_authorize_kubectl_as_the_chart_service_account() {
    let seed = json!({"apiVersion": "v1", "kind": "List", "items": [
        node("node-a"),
        pod("web-1", "default", "node-a", "ReplicaSet", "web", json!({"app": "web"})),
    ]});
    let server = Server::start_with(seed, &["--rbac", CHART, "--as", ROUTER]).await;
    assert!(server.ok(&["get", "nodes"]).await.contains("node-a"));
    assert!(server.ok(&["get", "pods"]).await.contains("web-1"));
    // cordon reads the node and patches it: both granted.
    assert!(
        server
            .ok(&["cordon", "node-a"])
            .await
            .contains("node/node-a cordoned")
    );

    let refused = |out: Output| {
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let deadline = Duration::from_secs(30);
    let stderr = refused(server.kubectl(&["delete", "pod", "web-1"], deadline).await);
    assert!(
        stderr.contains(&format!(
            "Error from server (Forbidden): pods \"web-1\" is forbidden: User \"{ROUTER}\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        )),
        "{stderr}"
    );
    let stderr = refused(
        server
            .kubectl(&["delete", "node", "node-a"], deadline)
            .await,
    );
    assert!(
        stderr.contains(&format!(
            "Error from server (Forbidden): nodes \"node-a\" is forbidden: User \"{ROUTER}\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"
        )),
        "{stderr}"
    );
    // Nothing was deleted.
    let names = server.ok(&["get", "nodes,pods", "-o", "name"]).await;
    assert!(
        names.contains("node/node-a") && names.contains("pod/web-1"),
        "{names}"
    );
}

#[tokio::test]
async fn rbac_needs_a_user() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .args(["--rbac", CHART])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rbac and --as go together"));
    let out = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .args(["--rbac", "/nonexistent/rbac.yaml", "--as", ROUTER])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rbac.yaml"));
}
