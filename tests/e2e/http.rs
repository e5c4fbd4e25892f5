//! The HTTP server of the real binary under hostile traffic: slow and idle connections, bodies
//! that never finish, more connections than file descriptors, requests without the ingest
//! token, and a SIGTERM while work is stuck. Every client and server is on 127.0.0.1.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BIN, Receiver, Router, TempDir, eventually, fixture};

/// HTTP ingest, dry run, stdout, with `server` settings of the test's own.
fn ingest_config(server: &str) -> String {
    format!(
        "sources:\n  - type: http_ingest\ncluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\nserver:\n{server}"
    )
}

fn addr(router: &Router) -> String {
    router.base.trim_start_matches("http://").to_owned()
}

/// Opens `n` connections to the router, each having sent `prefix` (maybe nothing).
async fn open(router: &Router, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    let addr = addr(router);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        if !prefix.is_empty() {
            s.write_all(prefix).await.unwrap();
        }
        conns.push(s);
    }
    conns
}

/// Whether the router closed `conn` within `limit` (the read ends or fails), and what it said
/// before closing.
async fn closed_within(mut conn: TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// GET `path` with a fresh connection and a short timeout: the status, or `None`.
async fn probe(router: &Router, path: &str) -> Option<u16> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let rsp = http
        .get(format!("{}{path}", router.base))
        .send()
        .await
        .ok()?;
    Some(rsp.status().as_u16())
}

/// POSTs a Spot warning to the ingest endpoint with a fresh connection: the status, or `None`.
async fn ingest(router: &Router, id: &str) -> Option<u16> {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    v["id"] = serde_json::json!(id);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let rsp = http
        .post(format!("{}/v1/ingest/aws", router.base))
        .body(v.to_string())
        .send()
        .await
        .ok()?;
    Some(rsp.status().as_u16())
}

/// This test process's soft limit on open files (`/proc/self/limits`), if it has one.
fn own_open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// 2,000 slowloris connections (a request head that never ends; fewer where this process may
/// not open that many): the probes and ingest keep answering at once, and every one of those
/// connections is closed, by eviction at the connection limit or by the header read timeout.
#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_closed_and_lock_out_no_one() {
    let n = own_open_files_limit().map_or(2000, |l| l.saturating_sub(256).clamp(200, 2000));
    let router = Router::start(
        &ingest_config("  max_connections: 64\n  header_read_timeout_seconds: 1\n"),
        &[],
    )
    .await;
    let slow = open(
        &router,
        n,
        b"POST /v1/ingest/aws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    )
    .await;
    for i in 0..5 {
        assert_eq!(probe(&router, "/healthz").await, Some(200), "healthz {i}");
        assert_eq!(probe(&router, "/readyz").await, Some(200), "readyz {i}");
        assert_eq!(ingest(&router, &format!("slowloris-{i}")).await, Some(200));
    }
    let started = Instant::now();
    let closed = futures::future::join_all(
        slow.into_iter()
            .map(|c| closed_within(c, Duration::from_secs(10))),
    )
    .await;
    let open_still = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open_still,
        0,
        "slowloris connections still open after {:?}",
        started.elapsed()
    );
    let evicted = router
        .metric("eviction_router_http_connections_closed_total{reason=\"evicted\"}")
        .await;
    let timed_out = router
        .metric("eviction_router_http_connections_closed_total{reason=\"header_timeout\"}")
        .await;
    assert!(
        evicted + timed_out >= 2000.0,
        "evicted {evicted}, timed out {timed_out}"
    );
    assert!(timed_out >= 1.0, "the header timeout closed none");
    assert_eq!(router.terminate(), Some(0));
}

/// 50 ingest requests whose chunked bodies never finish each get 408 once the body read
/// timeout passes, and their connections close.
#[tokio::test(flavor = "multi_thread")]
async fn unfinished_bodies_are_answered_408_and_closed() {
    let router = Router::start(&ingest_config("  body_read_timeout_seconds: 1\n"), &[]).await;
    let stuck = open(
        &router,
        50,
        b"POST /v1/ingest/aws HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"id\"\r\n",
    )
    .await;
    assert_eq!(probe(&router, "/healthz").await, Some(200));
    let answers = futures::future::join_all(
        stuck
            .into_iter()
            .map(|c| closed_within(c, Duration::from_secs(10))),
    )
    .await;
    for answer in answers {
        let answer = answer.expect("the connection was not closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(
        router
            .metric("eviction_router_ingest_requests_total{outcome=\"body_timeout\"}")
            .await,
        50.0
    );
    assert_eq!(router.terminate(), Some(0));
}

/// With `RLIMIT_NOFILE` at 256, 400 idle connections (more than the process may open) neither
/// make the probes time out nor stop ingest: the connection limit follows the file limit and
/// idle connections make room for the ones that send a request.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_past_the_file_limit_do_not_starve_the_probes() {
    let router =
        Router::start_with_nofile(&ingest_config("  max_connections: 512\n"), &[], 256).await;
    let idle = open(&router, 400, b"").await;
    for i in 0..10 {
        assert_eq!(probe(&router, "/healthz").await, Some(200), "healthz {i}");
        assert_eq!(probe(&router, "/readyz").await, Some(200), "readyz {i}");
        assert_eq!(
            ingest(&router, &format!("nofile-{i}")).await,
            Some(200),
            "ingest {i}"
        );
    }
    let open_now = router.metric("eviction_router_http_connections ").await;
    assert!(
        open_now <= 128.0,
        "{open_now} connections open with 256 files allowed"
    );
    drop(idle);
    assert_eq!(router.terminate(), Some(0));
}

/// With a `token`, ingest asks for `Authorization: Bearer <token>` and reads no body without
/// it; `check-config` refuses ingest beyond loopback without a token.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_needs_its_bearer_token() {
    const TOKEN: &str = "e2e-ingest-token-0123456789";
    let config = "sources:\n  - type: http_ingest\n    token: ${INGEST_TOKEN}\ncluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n";
    let router = Router::start(config, &[("INGEST_TOKEN", TOKEN.to_owned())]).await;
    let http = reqwest::Client::new();
    let body = fixture("aws/spot-interruption-warning.json");
    let post = async |auth: Option<&str>| {
        let mut request = http
            .post(format!("{}/v1/ingest/aws", router.base))
            .body(body.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let rsp = request.send().await.unwrap();
        (
            rsp.status().as_u16(),
            rsp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    assert_eq!(post(None).await, (401, Some("Bearer".into())));
    assert_eq!(post(Some("Bearer wrong-token-0123456789")).await.0, 401);
    assert_eq!(post(Some(TOKEN)).await.0, 401, "the scheme is required");
    assert_eq!(post(Some(&format!("Bearer {TOKEN}"))).await.0, 200);
    assert!(router.next_event(Duration::from_secs(5)).is_some());
    assert_eq!(
        router
            .metric("eviction_router_ingest_requests_total{outcome=\"unauthorized\"}")
            .await,
        3.0
    );
    // Refusals are sampled: one warning line for the three.
    let warned = router
        .logs()
        .iter()
        .filter(|l| l.contains("missing or wrong bearer token"))
        .count();
    assert_eq!(warned, 1);
    assert_eq!(router.terminate(), Some(0));

    let dir = TempDir::new();
    let path = dir.0.join("c.yaml");
    std::fs::write(
        &path,
        "sources:\n  - type: http_ingest\nserver:\n  listen: 0.0.0.0:8080\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`sources[0].token`"), "{stderr}");
    // `run --listen` beyond loopback is checked the same way.
    let out = std::process::Command::new(BIN)
        .args([
            "run",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A TCP server that accepts and never answers: its URL, and how many connections it took.
async fn black_hole() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (url, accepted, task)
}

/// SIGTERM while a message is stuck (its required sink never answers) and a request is
/// half-sent: the router still exits 0 within the grace period plus the shutdown tail.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_stuck_work_exits_within_the_grace() {
    let (hole, accepted, _hole) = black_hole().await;
    let config = format!(
        "sources:\n  - type: http_ingest\ncluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
         router:\n  shutdown_grace_seconds: 2\n\
         sinks:\n  - type: webhook\n    url: {hole}\n    required: true\n    timeout_seconds: 60\n"
    );
    let mut router = Router::start(&config, &[]).await;
    let base = router.base.clone();
    let stuck = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/v1/ingest/aws"))
            .body(fixture("aws/spot-interruption-warning.json"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let mut half = TcpStream::connect(addr(&router)).await.unwrap();
    half.write_all(
        b"POST /v1/ingest/aws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    // The stuck message reached its sink.
    eventually(
        Duration::from_secs(10),
        "the message in flight",
        async || (accepted.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()),
    )
    .await;
    let (code, took) = router
        .terminate_within(Duration::from_secs(15))
        .expect("the router did not stop");
    assert_eq!(code, Some(0));
    // grace 2 s + the 5 s tail, with room for a busy machine.
    assert!(took < Duration::from_secs(9), "stopped after {took:?}");
    let answered = stuck.await.unwrap();
    assert!(
        !matches!(answered, Ok(200)),
        "the stuck message was not acknowledged: {answered:?}"
    );
}

/// In `kubernetes` mode (the cluster's tasks hold the router), events queued for a best-effort
/// webhook sink are delivered before the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn queued_sink_events_are_flushed_at_shutdown_in_kubernetes_mode() {
    use fake_apiserver::FakeApiServer;
    let (addr, fake) = FakeApiServer::start_http().await.unwrap();
    let instances: Vec<String> = (0..5).map(|i| format!("i-0f1a2b3c4d5e6f70{i}")).collect();
    for (i, id) in instances.iter().enumerate() {
        fake.insert(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}")},
            "spec": {"providerID": format!("aws:///us-east-1b/{id}")},
        }))
        .unwrap();
    }
    fake.enforce_rbac(crate::cluster::chart_rbac());
    let (_dir, kubeconfig) = crate::support::kubeconfig_for(addr);
    let receiver = Receiver::start(vec![], Duration::from_secs(1)).await;
    let config = format!(
        "sources:\n  - type: http_ingest\ncluster:\n  mode: kubernetes\n  leader_election:\n    enabled: false\n\
         sinks:\n  - type: webhook\n    url: {}\n",
        receiver.url
    );
    let mut router = Router::start(&config, &[("KUBECONFIG", kubeconfig)]).await;
    let http = reqwest::Client::new();
    for (i, id) in instances.iter().enumerate() {
        let mut v: serde_json::Value =
            serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
        v["id"] = serde_json::json!(format!("flush-{i}"));
        v["detail"]["instance-id"] = serde_json::json!(id);
        v["resources"] = serde_json::json!([format!("arn:aws:ec2:us-east-1b:instance/{id}")]);
        let rsp = http
            .post(format!("{}/v1/ingest/aws", router.base))
            .body(v.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.text().await.unwrap(), "{\"outcome\":\"handled\"}\n");
    }
    assert!(
        receiver.count() < 5,
        "the sink delivered before the shutdown"
    );
    let (code, _) = router
        .terminate_within(Duration::from_secs(30))
        .expect("the router did not stop");
    assert_eq!(code, Some(0));
    assert_eq!(
        receiver.count(),
        5,
        "queued events were dropped at shutdown"
    );
}
