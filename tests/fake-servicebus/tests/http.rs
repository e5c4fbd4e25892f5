//! The fake over real HTTP, request by request, as the REST reference describes each operation.

mod common;

use azure_messaging_servicebus::service_bus::BrokerProperties;
use common::{Harness, KEY, KEY_NAME, NAMESPACE, QUEUE, harness, header, token};
use fake_servicebus::{MAX_DELIVERY_COUNT_EXCEEDED, QueueSettings, sas_token, sas_token_for};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

fn settings(lock_secs: u64, max_delivery_count: u32) -> QueueSettings {
    QueueSettings {
        lock_duration: Duration::from_secs(lock_secs),
        max_delivery_count,
        ..QueueSettings::default()
    }
}

/// Parses `BrokerProperties` with the client's own type (PascalCase JSON, RFC 2822 dates).
fn properties(response: &reqwest::Response) -> BrokerProperties {
    header(response, "brokerproperties")
        .parse()
        .expect("BrokerProperties parses as azure_messaging_servicebus parses it")
}

/// Peek-locks one message and returns its properties and lock location.
async fn lock_one(h: &Harness, queue_path: &str) -> (BrokerProperties, String, String) {
    let response = h.peek_lock(queue_path, 1).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let properties = properties(&response);
    let location = header(&response, "location");
    let body = response.text().await.expect("a body");
    (properties, location, body)
}

#[tokio::test]
async fn send_peek_lock_complete_and_gone() {
    let h = harness(QueueSettings::default()).await;
    let url = h.url("/jobs/messages");
    let response = h
        .http
        .post(&url)
        .header("authorization", token(QUEUE))
        .header("content-type", "application/json")
        .header(
            "brokerproperties",
            r#"{"MessageId":"evt-1","Label":"spot"}"#,
        )
        .body(r#"{"kind":"preempt"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);

    let before = OffsetDateTime::now_utc();
    let response = h.peek_lock(QUEUE, 1).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "content-type"), "application/json");
    let raw = header(&response, "brokerproperties");
    assert!(raw.contains(r#""Label":"spot""#), "{raw}");
    let p = properties(&response);
    assert_eq!(p.delivery_count, 1);
    assert_eq!(p.message_id, "evt-1");
    assert_eq!(p.sequence_number, 1);
    assert_eq!(p.state, "Active");
    assert_eq!(p.enqueued_sequence_number, Some(0));
    assert_eq!(p.lock_token.len(), 36);
    let lock_left = p.locked_until_utc - before;
    assert!(
        lock_left > time::Duration::seconds(55) && lock_left <= time::Duration::seconds(61),
        "LockedUntilUtc {} is about a minute after {before}",
        p.locked_until_utc
    );
    let enqueued = p.enqueued_time_utc.expect("EnqueuedTimeUtc");
    assert!((enqueued - before).abs() < time::Duration::seconds(5));
    let location = header(&response, "location");
    assert_eq!(
        location,
        format!(
            "https://{NAMESPACE}.servicebus.windows.net/jobs/messages/1/{}",
            p.lock_token
        )
    );
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"kind":"preempt"}"#
    );
    assert!(h.bus.active(QUEUE)[0].locked);

    // Delete Message: 200, then the lock is gone (404) and so is the message.
    assert_eq!(
        h.settle(Method::DELETE, &location).await.status(),
        StatusCode::OK
    );
    let again = h.settle(Method::DELETE, &location).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let body = again.text().await.expect("body");
    assert!(
        body.starts_with("<Error><Code>404</Code><Detail>The lock supplied is invalid."),
        "{body}"
    );
    assert!(h.bus.active(QUEUE).is_empty());
    let completed = h.bus.completed(QUEUE);
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].message_id, "evt-1");
    assert_eq!(completed[0].body, br#"{"kind":"preempt"}"#);
    assert_eq!(h.peek_lock(QUEUE, 0).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn empty_queue_answers_204_after_the_timeout() {
    let h = harness(QueueSettings::default()).await;
    let started = Instant::now();
    let response = h.peek_lock(QUEUE, 1).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(response.bytes().await.expect("body").is_empty());
    let log = h.bus.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/jobs/messages/head");
    assert_eq!(log[0].query.as_deref(), Some("timeout=1"));
    assert_eq!((log[0].status, log[0].auth), (204, "sas"));
}

#[tokio::test]
async fn a_waiting_peek_lock_is_woken_by_a_send() {
    let h = harness(QueueSettings::default()).await;
    let started = Instant::now();
    let waiting = tokio::spawn({
        let url = h.url("/jobs/messages/head?timeout=30");
        let http = h.http.clone();
        async move {
            http.post(url)
                .header("authorization", token(QUEUE))
                .send()
                .await
                .expect("peek-lock")
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.send(QUEUE, "wake up").await.status(), StatusCode::CREATED);
    let response = waiting.await.expect("the waiting task");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(response.text().await.expect("body"), "wake up");
}

#[tokio::test]
async fn abandon_redelivers_with_the_next_delivery_count() {
    let h = harness(QueueSettings::default()).await;
    h.bus.send(QUEUE, "first");
    h.bus.send(QUEUE, "second");
    let (p1, location, body) = lock_one(&h, QUEUE).await;
    assert_eq!((p1.delivery_count, body.as_str()), (1, "first"));
    assert_eq!(
        h.settle(Method::PUT, &location).await.status(),
        StatusCode::OK
    );
    // Back at the head of the queue, in sequence order, under a new lock.
    let (p2, _, body) = lock_one(&h, QUEUE).await;
    assert_eq!((p2.delivery_count, body.as_str()), (2, "first"));
    assert_ne!(p2.lock_token, p1.lock_token);
    assert_eq!(
        h.settle(Method::PUT, &location).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_expired_lock_redelivers_the_message() {
    let h = harness(settings(1, 10)).await;
    h.bus.send(QUEUE, "slow");
    let (p1, location, _) = lock_one(&h, QUEUE).await;
    let started = Instant::now();
    // The waiting peek-lock is woken when the lock runs out.
    let (p2, _, body) = {
        let response = h.peek_lock(QUEUE, 10).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        (
            properties(&response),
            (),
            response.text().await.expect("body"),
        )
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((p2.delivery_count, body.as_str()), (2, "slow"));
    assert_ne!(p1.lock_token, p2.lock_token);
    // The first lock is no longer good for anything.
    for method in [Method::DELETE, Method::PUT, Method::POST] {
        assert_eq!(
            h.settle(method, &location).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn max_delivery_count_moves_the_message_to_the_dead_letter_queue() {
    let h = harness(settings(60, 2)).await;
    let id = h.bus.send(QUEUE, "poison");
    for delivery in 1..=2 {
        let (p, location, _) = lock_one(&h, QUEUE).await;
        assert_eq!(p.delivery_count, delivery);
        assert_eq!(
            h.settle(Method::PUT, &location).await.status(),
            StatusCode::OK
        );
    }
    assert!(h.bus.active(QUEUE).is_empty());
    let dead = h.bus.dead_letters(QUEUE);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, id);
    assert_eq!(
        dead[0].dead_letter_reason.as_deref(),
        Some(MAX_DELIVERY_COUNT_EXCEEDED)
    );
    assert_eq!(h.peek_lock(QUEUE, 0).await.status(), StatusCode::NO_CONTENT);

    // The dead-letter subqueue serves peek-locks too.
    let response = h.peek_lock("jobs/$DeadLetterQueue", 1).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "deadletterreason"),
        "\"MaxDeliveryCountExceeded\""
    );
    let p = properties(&response);
    assert_eq!((p.delivery_count, p.message_id.as_str()), (3, id.as_str()));
    let location = header(&response, "location");
    assert!(
        location.contains("/jobs/$deadletterqueue/messages/"),
        "{location}"
    );
    assert_eq!(
        h.settle(Method::DELETE, &location).await.status(),
        StatusCode::OK
    );
    assert!(h.bus.dead_letters(QUEUE).is_empty());
    assert_eq!(h.bus.completed(QUEUE).len(), 1);
}

#[tokio::test]
async fn renew_lock_carries_the_lock_past_its_first_expiry() {
    let h = harness(settings(4, 10)).await;
    h.bus.send(QUEUE, "long job");
    let (_, location, _) = lock_one(&h, QUEUE).await;
    let locked_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.settle(Method::POST, &location).await.status(),
        StatusCode::OK
    );
    // Past the first expiry (at most 4 s after `locked_at`), well before the renewed one (at
    // least 6 s after it).
    tokio::time::sleep_until((locked_at + Duration::from_millis(4500)).into()).await;
    let active = h.bus.active(QUEUE);
    assert!(active[0].locked);
    assert_eq!(active[0].lock_renewals, 1);
    assert_eq!(h.peek_lock(QUEUE, 0).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        h.settle(Method::DELETE, &location).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn credentials_are_checked() {
    let h = harness(QueueSettings::default()).await;
    h.bus.add_bearer_token("entra-id-token");
    let url = h.url("/jobs/messages");
    let in_an_hour = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let queue_uri = format!("https://{NAMESPACE}.servicebus.windows.net/jobs");
    let refused = [
        (None, "MalformedToken"),
        (
            Some(sas_token_for(
                &queue_uri,
                KEY_NAME,
                "not-the-key",
                in_an_hour,
            )),
            "InvalidSignature",
        ),
        (
            Some(sas_token_for(&queue_uri, "NoSuchRule", KEY, in_an_hour)),
            "InvalidSignature",
        ),
        (
            Some(sas_token_for(&queue_uri, KEY_NAME, KEY, in_an_hour - 7200)),
            "ExpiredToken",
        ),
        (Some(token("other-queue")), "InvalidAudience"),
        (
            Some(sas_token(
                "other-namespace",
                QUEUE,
                KEY_NAME,
                KEY,
                Duration::from_secs(60),
            )),
            "InvalidAudience",
        ),
        (Some("Bearer forged".to_string()), "Unauthorized"),
    ];
    for (authorization, code) in refused {
        let response = h
            .request(Method::POST, &url, authorization.as_deref(), "x")
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{code}");
        let body = response.text().await.expect("body");
        assert!(
            body.starts_with(&format!("<Error><Code>401</Code><Detail>{code}")),
            "{body}"
        );
        assert!(body.contains("TrackingId:"), "{body}");
    }
    assert!(h.bus.active(QUEUE).is_empty());

    // A namespace-wide token and a registered bearer token are good.
    let namespace_wide = sas_token_for(
        &format!("https://{NAMESPACE}.servicebus.windows.net/"),
        KEY_NAME,
        KEY,
        in_an_hour,
    );
    for authorization in [namespace_wide.as_str(), "Bearer entra-id-token"] {
        let response = h
            .request(Method::POST, &url, Some(authorization), "x")
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(h.bus.active(QUEUE).len(), 2);
    let presented: Vec<&str> = h.bus.requests().iter().map(|r| r.auth).collect();
    assert_eq!(
        presented,
        [
            "none", "sas", "sas", "sas", "sas", "sas", "bearer", "sas", "bearer"
        ]
    );
}

#[tokio::test]
async fn an_unknown_queue_is_gone() {
    let h = harness(QueueSettings::default()).await;
    let nope = token("nope");
    let head = h.url("/nope/messages/head?timeout=1");
    let response = h.request(Method::POST, &head, Some(&nope), "").await;
    assert_eq!(response.status(), StatusCode::GONE);
    let body = response.text().await.expect("body");
    assert!(
        body.starts_with("<Error><Code>410</Code><Detail>Specified queue or subscription"),
        "{body}"
    );
    let send = h.url("/nope/messages");
    let response = h.request(Method::POST, &send, Some(&nope), "x").await;
    assert_eq!(response.status(), StatusCode::GONE);
    let lock = h.url("/nope/messages/1/7da9cfd5-40d5-4bb1-8d64-ec5a52e1c547");
    for method in [Method::DELETE, Method::PUT, Method::POST] {
        let response = h.request(method, &lock, Some(&nope), "").await;
        assert_eq!(response.status(), StatusCode::GONE);
    }
    // Authorization comes first: no token, no answer about the queue.
    let response = h.request(Method::POST, &head, None, "").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_requests() {
    let h = harness(QueueSettings::default()).await;
    let jobs = token(QUEUE);
    let bad_timeout = h.url("/jobs/messages/head?timeout=soon");
    let response = h.request(Method::POST, &bad_timeout, Some(&jobs), "").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = h
        .http
        .post(h.url("/jobs/messages"))
        .header("authorization", &jobs)
        .header("brokerproperties", "not json")
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let dead_letter_send = h.url("/jobs/$DeadLetterQueue/messages");
    let response = h
        .request(Method::POST, &dead_letter_send, Some(&jobs), "x")
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = h
        .request(Method::GET, &h.url("/jobs/messages"), Some(&jobs), "")
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = h
        .request(Method::GET, &h.url("/jobs"), Some(&jobs), "")
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(h.bus.active(QUEUE).is_empty());
}

#[tokio::test]
async fn receive_and_delete() {
    let h = harness(QueueSettings::default()).await;
    let id = h.bus.send_with_id(QUEUE, "evt-9", "once");
    assert_eq!(id, "evt-9");
    let url = h.url("/jobs/messages/head?timeout=1");
    let response = h
        .request(Method::DELETE, &url, Some(&token(QUEUE)), "")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let raw = header(&response, "brokerproperties");
    assert!(!raw.contains("LockToken"), "{raw}");
    assert!(response.headers().get("location").is_none());
    assert_eq!(response.text().await.expect("body"), "once");
    assert_eq!(h.bus.completed(QUEUE)[0].message_id, "evt-9");
    let response = h
        .request(Method::DELETE, &url, Some(&token(QUEUE)), "")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn injected_faults() {
    let h = harness(QueueSettings::default()).await;
    h.bus.fail_next(503, 2);
    for _ in 0..2 {
        let response = h.send(QUEUE, "x").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.text().await.expect("body");
        assert!(body.starts_with("<Error><Code>503</Code>"), "{body}");
    }
    assert_eq!(h.send(QUEUE, "x").await.status(), StatusCode::CREATED);

    h.bus.fail_next_matching("POST", "/messages/head", 429, 1);
    assert_eq!(h.send(QUEUE, "y").await.status(), StatusCode::CREATED);
    assert_eq!(
        h.peek_lock(QUEUE, 1).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(h.peek_lock(QUEUE, 1).await.status(), StatusCode::CREATED);

    h.bus.fail_all(Some(500));
    for _ in 0..3 {
        assert_eq!(
            h.peek_lock(QUEUE, 1).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    h.bus.fail_all(None);
    assert_eq!(h.peek_lock(QUEUE, 1).await.status(), StatusCode::CREATED);

    h.bus.fail_next(401, 5);
    h.bus.clear_faults();
    assert_eq!(h.send(QUEUE, "z").await.status(), StatusCode::CREATED);
    let statuses: Vec<u16> = h.bus.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [503, 503, 201, 201, 429, 201, 500, 500, 500, 201, 201]
    );
    h.bus.clear_requests();
    assert!(h.bus.requests().is_empty());
}

#[tokio::test]
async fn stop_answers_waiting_receives_and_closes_the_listener() {
    let h = harness(QueueSettings::default()).await;
    let waiting = tokio::spawn({
        let url = h.url("/jobs/messages/head?timeout=30");
        let http = h.http.clone();
        async move {
            http.post(url)
                .header("authorization", token(QUEUE))
                .send()
                .await
                .expect("peek-lock")
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    h.bus.stop();
    let response = waiting.await.expect("the waiting task");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(refused(&h).await, "the listener closes after stop()");

    // A new server on the same namespace keeps the queue.
    h.bus.send(QUEUE, "kept");
    let addr = h.bus.start().await.expect("restart");
    let url = format!("http://{addr}/jobs/messages/head?timeout=1");
    let response = h.request(Method::POST, &url, Some(&token(QUEUE)), "").await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let h = harness(QueueSettings::default()).await;
    let Harness { bus, addr, http } = h;
    let clone = bus.clone();
    drop(bus);
    let h = Harness {
        bus: clone.clone(),
        addr,
        http: http.clone(),
    };
    assert_eq!(
        h.send(QUEUE, "still up").await.status(),
        StatusCode::CREATED
    );
    drop(h);
    drop(clone);
    let h = Harness {
        bus: fake_servicebus::FakeServiceBus::new("unrelated"),
        addr,
        http,
    };
    assert!(
        refused(&h).await,
        "the listener closes with the last handle"
    );
}

/// Whether connections to the harness's address are refused within a few seconds.
async fn refused(h: &Harness) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(h.addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
