//! Peers and processes for the end-to-end tests. Every server listens on 127.0.0.1 and is killed
//! when its guard drops; every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");

/// A free port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A moto server (SQS, EventBridge) on a free loopback port.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): the AWS tests need moto's server mode: python3 -m pip install 'moto[server]'")
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let url = format!("{}/moto-api/", moto.endpoint);
        eventually(Duration::from_secs(30), "moto to answer", async || {
            http.get(&url).send().await.ok()
        })
        .await;
        moto
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }

    /// The environment a router process needs to reach this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A queue with a dead-letter queue, and an EventBridge rule for `aws.ec2` and the drill source
/// that targets it, as infra/aws sets them up.
pub struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub url: String,
}

impl Queue {
    pub async fn create(moto: &Moto, name: &str) -> Queue {
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let events = aws_sdk_eventbridge::Client::new(&config);
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap();
        let dlq_arn = queue_arn(&sqs, dlq.queue_url().unwrap()).await;
        let redrive =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string();
        let queue = sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                redrive,
            )
            .send()
            .await
            .unwrap();
        let url = queue.queue_url().unwrap().to_owned();
        let arn = queue_arn(&sqs, &url).await;
        let pattern =
            serde_json::json!({"source": ["aws.ec2", "eviction-router.drill"]}).to_string();
        events
            .put_rule()
            .name(format!("{name}-rule"))
            .event_pattern(pattern)
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(arn)
            .build()
            .unwrap();
        events
            .put_targets()
            .rule(format!("{name}-rule"))
            .targets(target)
            .send()
            .await
            .unwrap();
        Queue { sqs, events, url }
    }

    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages in the queue, visible and in flight.
    pub async fn depth(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().unwrap();
        let get = |a: &A| attrs.get(a).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(&A::ApproximateNumberOfMessages),
            get(&A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    out.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone()
}

/// A running `eviction-router run` process, its stdout lines arriving on a channel.
pub struct Router {
    child: Child,
    lines: mpsc::Receiver<String>,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub base: String,
    _dir: TempDir,
}

impl Router {
    /// Starts `run --config <config>` with `env`, and waits until `/healthz` answers.
    pub async fn start(config: &str, env: &[(&str, String)]) -> Router {
        let dir = TempDir::new();
        let path = dir.0.join("config.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        Router::spawn(&["--config", path.to_str().unwrap()], env, dir, None).await
    }

    /// [`Router::start`] with the soft and hard `RLIMIT_NOFILE` lowered to `nofile` (through
    /// the shell's `ulimit -n`, which the router then inherits).
    pub async fn start_with_nofile(config: &str, env: &[(&str, String)], nofile: u64) -> Router {
        let dir = TempDir::new();
        let path = dir.0.join("config.yaml");
        std::fs::write(&path, config).unwrap();
        Router::spawn(
            &["--config", path.to_str().unwrap()],
            env,
            dir,
            Some(nofile),
        )
        .await
    }

    /// Starts `run` with no configuration: the embedded default.
    pub async fn start_default() -> Router {
        Router::spawn(&[], &[], TempDir::new(), None).await
    }

    async fn spawn(
        args: &[&str],
        env: &[(&str, String)],
        dir: TempDir,
        nofile: Option<u64>,
    ) -> Router {
        let port = free_port();
        let mut command = match nofile {
            None => Command::new(BIN),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        let mut child = command
            .arg("run")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // A test may set RUST_LOG in `env` to read the router's logs with `Router::logs`.
            .env(
                "RUST_LOG",
                std::env::var("E2E_ROUTER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The logs are kept for `Router::logs` and passed on to the test's stderr.
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                keep.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let url = format!("{base}/healthz");
        eventually(
            Duration::from_secs(30),
            "the router to listen",
            async || http.get(&url).send().await.ok(),
        )
        .await;
        Router {
            child,
            lines,
            logs,
            base,
            _dir: dir,
        }
    }

    /// The router's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines (stderr) so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let rsp = reqwest::get(format!("{}/readyz", self.base)).await.unwrap();
        (rsp.status().as_u16(), rsp.text().await.unwrap())
    }

    /// The next stdout line as JSON, waiting at most `limit`.
    pub fn next_event(&self, limit: Duration) -> Option<serde_json::Value> {
        self.lines
            .recv_timeout(limit)
            .ok()
            .map(|l| serde_json::from_str(&l).unwrap())
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of `/metrics` that starts with `series`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM and waits at most `limit` for the exit: the exit code and how long it
    /// took, or `None` if the router still runs (it is killed when dropped).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<(Option<i32>, Duration)> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status.code(), start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process has exited, and with which code.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the router did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "er-e2e-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sample payload from tests/fixtures.
pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}

/// What a [`Receiver`] saw of one request.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: bytes::Bytes,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub content_type: Option<String>,
}

/// A local webhook receiver: answers the scripted statuses in order (then 200), after `delay`.
pub struct Receiver {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Vec<u16>, delay: Duration) -> Receiver {
        use axum::http::{HeaderMap, StatusCode};
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (s, q) = (seen.clone(), script.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let (s, q) = (s.clone(), q.clone());
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    s.lock().unwrap().push(Received {
                        body,
                        signature: header("x-eviction-router-signature"),
                        timestamp: header("x-eviction-router-timestamp"),
                        content_type: header("content-type"),
                    });
                    tokio::time::sleep(delay).await;
                    let status = q.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, seen, task }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig for the fake API server at `addr`, in a directory removed on drop.
pub fn kubeconfig_for(addr: std::net::SocketAddr) -> (TempDir, String) {
    let dir = TempDir::new();
    let path = dir.0.join("kubeconfig");
    std::fs::write(&path, fake_apiserver::kubeconfig(addr)).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// Handles one body through `router` now, returning the outcome.
pub async fn handle(
    router: &eviction_router::router::Router,
    provider: eviction_router::event::Provider,
    body: &str,
) -> eviction_router::ack::Outcome {
    let mut reports = Vec::new();
    router
        .handle_body(
            provider,
            body.as_bytes(),
            jiff::Timestamp::now(),
            None,
            &mut reports,
        )
        .await
}

/// A TCP proxy on 127.0.0.1 in front of `target` whose link can be cut: the port stops
/// listening and open connections close, as when the peer becomes unreachable, while the peer
/// keeps its state.
pub struct Link {
    pub port: u16,
    target: u16,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl Link {
    pub async fn start(target: u16) -> Link {
        let mut link = Link {
            port: free_port(),
            target,
            serving: None,
        };
        link.restore().await;
        link
    }

    pub fn cut(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }

    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let target = self.target;
        self.serving = Some(tokio::spawn(async move {
            // Connections live in this task's set: aborting it closes them all.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
    }
}
