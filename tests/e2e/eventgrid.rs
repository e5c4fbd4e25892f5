//! The Event Grid webhook (`/v1/eventgrid` on the router's HTTP server) through the real binary:
//! both validation handshakes, the shared secret checked before anything else, the status codes
//! Event Grid acts on, and events in either schema, single or batched, printed on stdout.
//!
//! Event Grid itself is not in the loop: the requests are shaped as its documentation and the
//! fixtures (tests/fixtures/azure) show them.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Router, fixture};

const SECRET: &str = "e2e-event-grid-shared-secret";

/// `/v1/eventgrid` with the shared secret and a 4 KiB body limit, dry run, stdout.
async fn router() -> Router {
    router_with("").await
}

/// [`router`] with `extra` (top-level sections) appended to its configuration.
async fn router_with(extra: &str) -> Router {
    let config = format!(
        "sources:\n  - type: azure_event_grid_webhook\n    secret: \"{SECRET}\"\n    max_body_bytes: 4096\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\n\
         log:\n  format: json\n{extra}"
    );
    Router::start(&config, &[]).await
}

/// An answer of the webhook.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends `method /v1/eventgrid{query}` to the router at `base` with `headers` and `body`.
async fn call(
    base: &str,
    method: reqwest::Method,
    query: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}/v1/eventgrid{query}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let rsp = request.send().await.unwrap();
    Answer {
        status: rsp.status().as_u16(),
        headers: rsp.headers().clone(),
        body: rsp.text().await.unwrap(),
    }
}

/// `POST /v1/eventgrid?code=<secret>` with an Event Grid JSON body.
async fn post(router: &Router, body: impl Into<reqwest::Body>) -> Answer {
    call(
        &router.base,
        reqwest::Method::POST,
        &format!("?code={SECRET}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// The webhook requests counted with this outcome.
async fn requests(router: &Router, outcome: &str) -> f64 {
    router
        .metric(&format!(
            "eviction_router_webhook_requests_total{{outcome=\"{outcome}\"}}"
        ))
        .await
}

/// The Event Grid schema handshake: a `SubscriptionValidationEvent` posted with the secret in
/// `?code=` (as the subscription's endpoint URL carries it) is answered 200 with
/// `{"validationResponse": <its validationCode>}`, and is not an event.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_grid_schema_handshake_echoes_the_validation_code() {
    let router = router().await;
    let answer = post(
        &router,
        fixture("azure/subscription-validation.eventgrid.json"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.json(),
        serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    assert!(
        router.next_event(Duration::from_millis(300)).is_none(),
        "the handshake was printed"
    );
    assert_eq!(requests(&router, "validated").await, 1.0);
    assert_eq!(router.terminate(), Some(0));
}

/// The CloudEvents abuse-protection handshake Event Grid performs for a CloudEvents
/// subscription ("HTTP 1.1 Web Hooks for Event Delivery", section 4.2): `OPTIONS` with
/// `WebHook-Request-Origin` (here with the secret as the `X-Eviction-Router-Secret` delivery
/// header) is answered 200 with `WebHook-Allowed-Origin` naming that origin; without the origin
/// header it is a bad request.
#[tokio::test(flavor = "multi_thread")]
async fn the_cloudevents_handshake_allows_the_requesting_origin() {
    let router = router().await;
    let answer = call(
        &router.base,
        reqwest::Method::OPTIONS,
        "",
        &[
            ("webhook-request-origin", "eventgrid.azure.net"),
            ("x-eviction-router-secret", SECRET),
        ],
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("webhook-allowed-origin"),
        Some("eventgrid.azure.net"),
        "{answer:?}"
    );
    assert!(
        answer.header("allow").is_some_and(|a| a.contains("POST")),
        "{answer:?}"
    );
    assert_eq!(requests(&router, "validated").await, 1.0);

    let answer = call(
        &router.base,
        reqwest::Method::OPTIONS,
        "",
        &[("x-eviction-router-secret", SECRET)],
        "",
    )
    .await;
    assert_eq!(answer.status, 400, "no WebHook-Request-Origin: {answer:?}");
    assert!(answer.header("webhook-allowed-origin").is_none());
    assert_eq!(requests(&router, "validated").await, 1.0);
    assert!(router.next_event(Duration::from_millis(300)).is_none());
    assert_eq!(router.terminate(), Some(0));
}

/// A wrong or missing secret is 401 for `POST` and `OPTIONS`, in the query or the header,
/// before the body is even read (an oversized body with a wrong secret is 401, not 413); no
/// handshake is answered and nothing is printed.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_secret_is_refused() {
    let router = router().await;
    let spot = fixture("azure/scheduled-event-preempt.eventgrid.json");
    let validation = fixture("azure/subscription-validation.eventgrid.json");
    let origin = ("webhook-request-origin", "eventgrid.azure.net");
    let wrong_header = ("x-eviction-router-secret", "not-the-shared-secret");
    // What, method, query, headers, body.
    type Case<'a> = (
        &'a str,
        reqwest::Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
    );
    let cases: Vec<Case> = vec![
        (
            "POST, no secret",
            reqwest::Method::POST,
            "",
            vec![],
            spot.clone(),
        ),
        (
            "POST, wrong code",
            reqwest::Method::POST,
            "?code=not-the-shared-secret",
            vec![],
            spot.clone(),
        ),
        (
            "POST, a prefix of the secret",
            reqwest::Method::POST,
            "?code=e2e-event-grid",
            vec![],
            spot.clone(),
        ),
        (
            "POST, wrong header",
            reqwest::Method::POST,
            "",
            vec![wrong_header],
            spot.clone(),
        ),
        (
            "POST, the handshake with a wrong code",
            reqwest::Method::POST,
            "?code=wrong",
            vec![],
            validation,
        ),
        (
            "POST, oversized with a wrong code",
            reqwest::Method::POST,
            "?code=wrong",
            vec![],
            "x".repeat(16 * 1024),
        ),
        (
            "OPTIONS, no secret",
            reqwest::Method::OPTIONS,
            "",
            vec![origin],
            String::new(),
        ),
        (
            "OPTIONS, wrong header",
            reqwest::Method::OPTIONS,
            "",
            vec![origin, wrong_header],
            String::new(),
        ),
        (
            "OPTIONS, wrong code",
            reqwest::Method::OPTIONS,
            "?code=wrong",
            vec![origin],
            String::new(),
        ),
    ];
    let n = cases.len();
    for (what, method, query, headers, body) in cases {
        let answer = call(&router.base, method, query, &headers, body).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert!(
            answer.header("webhook-allowed-origin").is_none(),
            "{what}: {answer:?}"
        );
        assert!(!answer.body.contains("validationResponse"), "{what}");
    }
    assert!(
        router.next_event(Duration::from_millis(500)).is_none(),
        "a refused request was printed"
    );
    assert_eq!(requests(&router, "unauthorized").await, n as f64);
    assert_eq!(requests(&router, "validated").await, 0.0);
    assert_eq!(requests(&router, "too_large").await, 0.0);
    assert_eq!(router.terminate(), Some(0));
}

/// The status codes Event Grid acts on, for each kind of body, with the secret right: too large
/// is 413 and malformed is 400 (Event Grid dead-letters both without retrying), an array of
/// events (Event Grid schema) and a single CloudEvents event are 200 and their actionable events
/// are printed, the same events again are acknowledged and not printed twice.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_answered_with_the_status_event_grid_acts_on() {
    let router = router().await;

    // Larger than max_body_bytes (4096), even if it is valid JSON.
    let mut big: Value =
        serde_json::from_str(&fixture("azure/scheduled-event-preempt.eventgrid.json")).unwrap();
    big["data"]["resourceInfo"]["properties"]["Description"] = Value::String("x".repeat(4096));
    let answer = post(&router, big.to_string()).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(requests(&router, "too_large").await, 1.0);

    let answer = post(&router, "{\"truncated\": ").await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "poison"}));
    assert_eq!(requests(&router, "poison").await, 1.0);
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"azure\"}")
            .await,
        1.0
    );
    assert!(router.next_event(Duration::from_millis(300)).is_none());

    // A batch: the Preempt scheduled event is printed; the availability change is not actionable.
    let batch = fixture("azure/webhook-batch.eventgrid.json");
    let answer = post(&router, batch.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "handled"}));
    let event = router
        .next_event(Duration::from_secs(10))
        .expect("the batch's event on stdout");
    assert_eq!(
        event["id"],
        "7c1d5d3e-1f2a-4b6c-9d8e-0f1a2b3c4d5e/aks-spot-12345678-vmss_3"
    );
    assert_eq!(event["type"], "eviction-router.interruption.v1");
    assert_eq!(event["data"]["provider"], "azure");
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/mc_prod-rg_prod-aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3"
    );
    assert!(
        router.next_event(Duration::from_millis(300)).is_none(),
        "the availability change was printed"
    );
    assert_eq!(
        router
            .metric(
                "eviction_router_events_ignored_total{provider=\"azure\",reason=\"not_actionable\"}"
            )
            .await,
        1.0
    );

    // A single CloudEvents event, as a CloudEvents subscription delivers it, with the secret
    // as the delivery header.
    let answer = call(
        &router.base,
        reqwest::Method::POST,
        "",
        &[
            (
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            ),
            ("x-eviction-router-secret", SECRET),
        ],
        fixture("azure/scheduled-event-preempt.cloudevents.json"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "handled"}));
    let event = router
        .next_event(Duration::from_secs(10))
        .expect("the CloudEvents event on stdout");
    assert_eq!(
        event["id"],
        "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b/spot-vm-1"
    );
    assert_eq!(event["data"]["kind"], "interruption");
    assert_eq!(event["data"]["status"], "started");
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/spot-rg/providers/Microsoft.Compute/virtualMachines/spot-vm-1"
    );
    assert_eq!(requests(&router, "handled").await, 2.0);

    // Event Grid delivers at least once: the same batch again is acknowledged, not printed.
    let answer = post(&router, batch).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "ignored"}));
    assert!(
        router.next_event(Duration::from_millis(500)).is_none(),
        "a duplicate was printed"
    );
    assert_eq!(requests(&router, "ignored").await, 1.0);
    assert_eq!(requests(&router, "unauthorized").await, 0.0);
    assert_eq!(router.terminate(), Some(0));
}

/// `max_body_bytes` is the largest body accepted: a body of exactly 4096 bytes is read and
/// answered (200), one byte more is 413.
#[tokio::test(flavor = "multi_thread")]
async fn the_body_limit_admits_exactly_max_body_bytes() {
    let router = router().await;
    let body = fixture("azure/availability-status-changed.eventgrid.json");
    let pad = |len: usize| format!("{body:<len$}");
    assert_eq!(pad(4096).len(), 4096);
    let answer = post(&router, pad(4096)).await;
    assert_eq!(answer.status, 200, "4096 bytes: {answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "ignored"}));
    let answer = post(&router, pad(4097)).await;
    assert_eq!(answer.status, 413, "4097 bytes: {answer:?}");
    assert_eq!(requests(&router, "too_large").await, 1.0);
    assert_eq!(router.terminate(), Some(0));
}

/// A required step that fails (a required webhook sink answering 500) makes the answer 503,
/// which Event Grid retries with backoff; the retry, once the sink accepts, is 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_required_sink_answers_503_so_event_grid_retries() {
    let receiver = crate::support::Receiver::start(vec![500], Duration::ZERO).await;
    let router = router_with(&format!(
        "sinks:\n  - type: webhook\n    url: {}\n    required: true\n    max_attempts: 1\n",
        receiver.url
    ))
    .await;
    let body = fixture("azure/scheduled-event-preempt.cloudevents.json");
    let answer = post(&router, body.clone()).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "retry"}));
    assert_eq!(requests(&router, "retry").await, 1.0);
    assert_eq!(receiver.count(), 1);

    // Event Grid's retry: the same event, not a duplicate since it was not handled.
    let answer = post(&router, body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "handled"}));
    assert_eq!(receiver.count(), 2);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen[0].body, seen[1].body, "the same event both times");
    assert_eq!(requests(&router, "handled").await, 1.0);
    assert_eq!(router.terminate(), Some(0));
}

/// When the router's queue is full the webhook does not hold Event Grid's connection: it
/// answers 429 with `Retry-After`, which Event Grid retries with backoff. Here one delivery is
/// being handled (a slow required sink, `concurrency: 1`), one waits for a handler and one
/// fills the queue (`queue_capacity: 1`); later ones are refused until there is room again.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_429_with_retry_after() {
    let receiver = crate::support::Receiver::start(vec![], Duration::from_secs(2)).await;
    let router = router_with(&format!(
        "router:\n  concurrency: 1\n  queue_capacity: 1\n\
         sinks:\n  - type: webhook\n    url: {}\n    required: true\n    timeout_seconds: 10\n",
        receiver.url
    ))
    .await;
    // Distinct events, so that none is held back as a duplicate of another.
    let event = |n: usize| {
        let mut v: Value =
            serde_json::from_str(&fixture("azure/scheduled-event-preempt.cloudevents.json"))
                .unwrap();
        v["id"] = Value::String(format!("e2e-busy-{n}"));
        v.to_string()
    };
    let send = |n: usize| {
        let (base, body) = (router.base.clone(), event(n));
        tokio::spawn(async move {
            let secret = format!("?code={SECRET}");
            call(&base, reqwest::Method::POST, &secret, &[], body).await
        })
    };
    let first = send(0);
    crate::support::eventually(
        Duration::from_secs(10),
        "the first event at the sink",
        async || (receiver.count() == 1).then_some(()),
    )
    .await;
    // Sent one after the other, each left time to reach the router (which of them is refused
    // depends on when the dispatcher takes one from the queue; how many does not).
    let mut later = Vec::new();
    for n in 1..=4 {
        later.push(send(n));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.await.unwrap().status, 200);
    let mut statuses = Vec::new();
    for task in later {
        let answer = task.await.unwrap();
        if answer.status == 429 {
            assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
        }
        statuses.push(answer.status);
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        vec![200, 200, 429, 429],
        "one waits for the handler, one is queued, the rest are refused"
    );
    assert_eq!(requests(&router, "busy").await, 2.0);
    assert_eq!(requests(&router, "handled").await, 3.0);
    assert_eq!(receiver.count(), 3);
    assert_eq!(router.terminate(), Some(0));
}

/// A batch with a malformed element among valid ones (decision record 0009): the valid events
/// are acted on and printed, the malformed one is counted, and the answer is 400 so that Event
/// Grid dead-letters the delivery instead of retrying it (with its default of one event per
/// delivery, exactly the bad event). Redelivered, the valid ones are duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_batch_acts_on_the_valid_events_and_answers_400() {
    let config = format!(
        "sources:\n  - type: azure_event_grid_webhook\n    secret: \"{SECRET}\"\n\
         cluster:\n  mode: dry_run\n  leader_election:\n    enabled: false\nlog:\n  format: json\n"
    );
    let router = Router::start(&config, &[]).await;
    let preempt: Value =
        serde_json::from_str(&fixture("azure/scheduled-event-preempt.eventgrid.json")).unwrap();
    let annotated: Value =
        serde_json::from_str(&fixture("azure/health-preempted.eventgrid.json")).unwrap();
    let mut broken = preempt.clone();
    broken["id"] = Value::String("e2e-broken".into());
    broken["eventTime"] = Value::String("not a time".into());
    let batch = Value::Array(vec![preempt, Value::from(42), broken, annotated]).to_string();
    let answer = post(&router, batch).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json(), serde_json::json!({"outcome": "poison"}));
    let mut ids = Vec::new();
    while let Some(event) = router.next_event(Duration::from_secs(2)) {
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2, "both valid events are printed: {ids:?}");
    assert!(ids[0].starts_with("7c1d5d3e-"), "{ids:?}");
    assert_eq!(
        router
            .metric("eviction_router_events_invalid_total{provider=\"azure\"}")
            .await,
        2.0,
        "each malformed element is counted"
    );
    assert_eq!(requests(&router, "poison").await, 1.0);
    let warned = router
        .logs()
        .iter()
        .filter(|l| l.contains("Rejected malformed elements of a batch"))
        .count();
    assert_eq!(warned, 1, "one line for the batch");
    assert_eq!(router.terminate(), Some(0));
}

/// A body that breaks off (the client goes away before its `Content-Length`) or has broken
/// chunked framing is a broken body (400, `broken_body`), not `too_large`.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_body_is_not_counted_as_too_large() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let router = router().await;
    let addr = router.base.trim_start_matches("http://").to_owned();
    let head = |extra: &str| {
        format!("POST /v1/eventgrid?code={SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
    };
    // Short body, then the client closes its side.
    let mut short = tokio::net::TcpStream::connect(&addr).await.unwrap();
    short
        .write_all(format!("{}[{{\"id\":", head("Content-Length: 1000\r\n")).as_bytes())
        .await
        .unwrap();
    short.shutdown().await.unwrap();
    // A chunk size that is not hex.
    let mut chunked = tokio::net::TcpStream::connect(&addr).await.unwrap();
    chunked
        .write_all(
            format!(
                "{}zz\r\nnot a chunk\r\n",
                head("Transfer-Encoding: chunked\r\n")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(10), chunked.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    crate::support::eventually(Duration::from_secs(10), "both counted", async || {
        (requests(&router, "broken_body").await == 2.0).then_some(())
    })
    .await;
    assert_eq!(requests(&router, "too_large").await, 0.0);
    assert_eq!(router.terminate(), Some(0));
}

/// A flood of requests with a wrong secret is refused one by one and counted, but logged once
/// per interval, with the number held back.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_secrets_are_counted_but_logged_sparingly() {
    let router = router().await;
    for _ in 0..50 {
        let answer = call(
            &router.base,
            reqwest::Method::POST,
            "?code=guess",
            &[],
            "{}",
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    assert_eq!(requests(&router, "unauthorized").await, 50.0);
    let warned = router
        .logs()
        .iter()
        .filter(|l| l.contains("Refused an Event Grid webhook request"))
        .count();
    assert_eq!(warned, 1, "one warning for the flood");
    assert_eq!(router.terminate(), Some(0));
}
