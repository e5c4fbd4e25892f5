//! `GET /v1/events` end to end: Server-Sent Events from the router process, resumed with
//! `Last-Event-ID`, filtered, kept open past the listener's idle timeout by heartbeats, bounded
//! in subscribers, and a slow client that cannot slow the router.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::nats::{ingest, interruption};
use crate::support::{Router, eventually, fixture};

/// One SSE event as a client sees it.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: serde_json::Value,
}

/// A minimal EventSource: reads the response chunk by chunk and splits it into events.
struct Client {
    rsp: reqwest::Response,
    buf: String,
    comments: Vec<String>,
}

impl Client {
    async fn connect(base: &str, query: &str, last: Option<&str>) -> Client {
        let mut req = reqwest::Client::new().get(format!("{base}/v1/events{query}"));
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last);
        }
        let rsp = req.send().await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(
            rsp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Client {
            rsp,
            buf: String::new(),
            comments: Vec::new(),
        }
    }

    /// The next event within `limit`; comments (heartbeats) are kept aside.
    async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        self.comments.push(c.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Some(Sse { id, event, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.rsp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }
}

fn config(extra_sink: &str, server: &str) -> String {
    format!(
        "sources:\n  - type: http_ingest\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
         sinks:\n  - type: sse\n{extra_sink}\
         server:\n  listen: 127.0.0.1:8080\n{server}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_with_last_event_id_sees_every_event_exactly_once() {
    let mut router = Router::start(
        &config(
            "    heartbeat_seconds: 1\n    max_subscribers: 2\n",
            "  idle_timeout_seconds: 1\n  max_connections: 8\n",
        ),
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut count = |e: &Sse| {
        *seen
            .entry(e.data["id"].as_str().unwrap().to_owned())
            .or_default() += 1
    };

    let mut client = Client::connect(&router.base, "", None).await;
    for n in 0..5 {
        assert_eq!(
            ingest(&http, &router.base, &interruption(&format!("a-{n}"))).await,
            200
        );
    }
    for n in 0..5 {
        let e = client.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.event, "eviction-router.interruption.v1");
        assert_eq!(e.data["specversion"], "1.0");
        assert_eq!(e.data["id"], format!("a-{n}"), "in order");
        count(&e);
    }
    // Idle for longer than the listener's idle timeout: heartbeats keep the stream, which the
    // listener counts as busy, open.
    assert!(client.next(Duration::from_millis(2500)).await.is_none());
    assert!(
        client.comments.iter().any(|c| c == "heartbeat"),
        "{:?}",
        client.comments
    );
    assert_eq!(ingest(&http, &router.base, &interruption("a-5")).await, 200);
    let e = client
        .next(Duration::from_secs(5))
        .await
        .expect("still open after the idle timeout");
    count(&e);
    let last = e.id;

    // The client goes away; events go on; it resumes from its last id.
    drop(client);
    for n in 6..10 {
        assert_eq!(
            ingest(&http, &router.base, &interruption(&format!("a-{n}"))).await,
            200
        );
    }
    let mut resumed = Client::connect(&router.base, "", Some(&last)).await;
    for n in 10..13 {
        assert_eq!(
            ingest(&http, &router.base, &interruption(&format!("a-{n}"))).await,
            200
        );
    }
    for _ in 6..13 {
        let e = resumed.next(Duration::from_secs(5)).await.unwrap();
        count(&e);
    }
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );
    assert_eq!(seen.len(), 13, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "every event once: {seen:?}");

    // Filters; and the subscriber limit (2): a third is refused.
    let mut rebalance = Client::connect(
        &router.base,
        "?kind=rebalance_recommendation&provider=aws",
        None,
    )
    .await;
    let third = http
        .get(format!("{}/v1/events", router.base))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(
        http.get(format!("{}/v1/events?kind=nope", router.base))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        ingest(&http, &router.base, &interruption("a-13")).await,
        200
    );
    assert_eq!(
        ingest(
            &http,
            &router.base,
            &fixture("aws/rebalance-recommendation.json")
        )
        .await,
        200
    );
    let e = rebalance.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e.data["data"]["kind"], "rebalance_recommendation");
    let e = resumed.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e.data["id"], "a-13");

    // SIGTERM with subscribers connected: the streams end and the router exits promptly, well
    // within its 20 s grace.
    let (code, took) = router
        .terminate_within(Duration::from_secs(15))
        .expect("the router stops");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // What was queued for it arrives, then the end of the stream (not a timeout).
    let ending = Instant::now();
    let mut rest = 0;
    while resumed.next(Duration::from_secs(5)).await.is_some() {
        rest += 1;
        assert!(rest <= 1, "only the rebalance event was left");
    }
    assert!(
        ending.elapsed() < Duration::from_secs(4),
        "the stream ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_slow_client_is_cut_off_without_slowing_the_router_or_other_subscribers() {
    let router = Router::start(&config("    subscriber_buffer: 8\n", ""), &[]).await;
    let http = reqwest::Client::new();
    let mut fast = Client::connect(&router.base, "", None).await;

    // A subscriber that never reads, with a small receive buffer so that it stalls quickly.
    let addr: std::net::SocketAddr = router.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /v1/events HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "two subscribers", async || {
        (router.metric("eviction_router_sse_subscribers").await == 2.0).then_some(())
    })
    .await;

    // Events until the slow one is cut off (bounded), the fast one reading along.
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Some(e) = fast.next(Duration::from_secs(3)).await {
            ids.push(e.data["id"].as_str().unwrap().to_owned());
        }
        ids
    });
    let slow_closed = "eviction_router_sse_subscribers_closed_total{reason=\"slow\"}";
    let mut latencies = Vec::new();
    let mut sent = 0;
    let started = Instant::now();
    while sent < 10_000 && started.elapsed() < Duration::from_secs(60) {
        let t = Instant::now();
        assert_eq!(
            ingest(&http, &router.base, &interruption(&format!("s-{sent}"))).await,
            200
        );
        latencies.push(t.elapsed());
        sent += 1;
        if sent % 100 == 0 && router.metric(slow_closed).await >= 1.0 {
            break;
        }
    }
    assert_eq!(
        router.metric(slow_closed).await,
        1.0,
        "the slow subscriber was cut off within {sent} events"
    );
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!("{sent} events until the slow subscriber was cut off; ingest p99 {p99:?}");
    assert!(
        p99 < Duration::from_millis(250),
        "the router was slowed: p99 {p99:?}"
    );

    // The fast subscriber got every event, in order.
    let fast_ids = reader.await.unwrap();
    let expected: Vec<String> = (0..sent).map(|n| format!("s-{n}")).collect();
    assert_eq!(fast_ids, expected);
    drop(slow);
}
