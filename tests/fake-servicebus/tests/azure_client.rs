//! The client the product uses, `azure_messaging_servicebus` 0.21, against the fake. Its requests
//! go through an `azure_core::HttpClient` that sends them to the fake with scheme, host and port
//! replaced, path and query kept — the way the product points the client at a test namespace.

mod common;

use async_trait::async_trait;
use azure_core::headers::{HeaderName, HeaderValue, Headers};
use azure_core::{Body, HttpClient, Request, Response, StatusCode};
use azure_messaging_servicebus::service_bus::{
    BrokerProperties, QueueClient, SendMessageOptions, SettableBrokerProperties,
};
use common::{KEY, KEY_NAME, NAMESPACE, QUEUE, harness};
use fake_servicebus::QueueSettings;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Sends every request to `addr` over plain HTTP.
#[derive(Debug)]
struct Redirect {
    addr: SocketAddr,
    http: reqwest::Client,
}

#[async_trait]
impl HttpClient for Redirect {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let io = |e: reqwest::Error| azure_core::Error::new(azure_core::error::ErrorKind::Io, e);
        let url = format!("http://{}{}", self.addr, request.path_and_query());
        let method = reqwest::Method::from_bytes(request.method().to_string().as_bytes())
            .expect("an HTTP method");
        let mut outgoing = self.http.request(method, url);
        for (name, value) in request.headers().iter() {
            outgoing = outgoing.header(name.as_str(), value.as_str());
        }
        let body = match request.body() {
            Body::Bytes(bytes) => bytes.clone(),
            _ => panic!("the Service Bus client only sends byte bodies"),
        };
        let response = outgoing.body(body).send().await.map_err(io)?;
        let status = StatusCode::try_from(response.status().as_u16()).expect("a known status");
        let mut headers = Headers::new();
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                headers.insert(
                    HeaderName::from(name.as_str().to_string()),
                    HeaderValue::from(value.to_string()),
                );
            }
        }
        let bytes = response.bytes().await.map_err(io)?;
        let stream = futures::stream::iter(vec![Ok(bytes)]);
        Ok(Response::new(status, headers, Box::pin(stream)))
    }
}

fn client(addr: SocketAddr, key: &str) -> QueueClient {
    let http: Arc<dyn HttpClient> = Arc::new(Redirect {
        addr,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client"),
    });
    QueueClient::new(http, NAMESPACE, QUEUE, KEY_NAME, key.to_string()).expect("a queue client")
}

#[tokio::test]
async fn the_product_client_sends_locks_renews_abandons_and_completes() {
    let h = harness(QueueSettings::default()).await;
    let queue = client(h.addr, KEY);
    let options = SendMessageOptions {
        broker_properties: Some(SettableBrokerProperties {
            message_id: Some("evt-42".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    queue
        .send_message(r#"{"kind":"preempt"}"#, Some(options))
        .await
        .expect("Send Message");

    let locked = queue
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .expect("Peek-Lock");
    assert_eq!(u16::from(*locked.status()), 201);
    assert_eq!(locked.body(), r#"{"kind":"preempt"}"#);
    let properties = locked.broker_properties().expect("BrokerProperties parsed");
    assert_eq!(properties.delivery_count, 1);
    assert_eq!(properties.message_id, "evt-42");
    locked.renew_message_lock().await.expect("Renew-Lock");
    locked.unlock_message().await.expect("Unlock");
    assert_eq!(h.bus.active(QUEUE)[0].lock_renewals, 1);

    let again = queue
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .expect("Peek-Lock");
    let properties = again.broker_properties().expect("BrokerProperties parsed");
    assert_eq!(properties.delivery_count, 2);
    again.delete_message().await.expect("Delete Message");
    // The first lock went with the unlock.
    assert!(locked.delete_message().await.is_err());
    assert_eq!(h.bus.completed(QUEUE).len(), 1);
    assert!(h.bus.active(QUEUE).is_empty());

    let empty = queue
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .expect("Peek-Lock");
    assert_eq!(u16::from(*empty.status()), 204);
    assert!(empty.broker_properties().is_none());

    // Every request carried the client's own SAS token, and the fake took it.
    let log = h.bus.requests();
    assert!(log.iter().all(|r| r.auth == "sas"));
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 201, 200, 200, 201, 200, 404, 204]);
}

#[tokio::test]
async fn the_product_client_with_a_wrong_key_gets_401() {
    let h = harness(QueueSettings::default()).await;
    h.bus.send(QUEUE, "x");
    let queue = client(h.addr, "bm90LXRoZS1rZXk=");
    let error = queue
        .send_message("y", None)
        .await
        .expect_err("a wrong key is refused");
    assert!(
        matches!(
            error.kind(),
            azure_core::error::ErrorKind::HttpResponse {
                status: StatusCode::Unauthorized,
                ..
            }
        ),
        "{error:?}"
    );
    let locked = queue
        .peek_lock_message2(Some(Duration::from_secs(1)))
        .await
        .expect("an answer");
    assert_eq!(u16::from(*locked.status()), 401);
    assert_eq!(h.bus.active(QUEUE).len(), 1);
    assert!(!h.bus.active(QUEUE)[0].locked);
}

#[test]
fn the_reference_example_parses_with_the_client_type() {
    // The BrokerProperties of the example answer in "Peek-Lock Message (Non-Destructive Read)".
    let example = r#"{"DeliveryCount":1,"EnqueuedSequenceNumber":0,"EnqueuedTimeUtc":"Wed, 02 Jul 2014 01:32:27 GMT","Label":"M1","LockToken":"7da9cfd5-40d5-4bb1-8d64-ec5a52e1c547","LockedUntilUtc":"Wed, 02 Jul 2014 01:33:27 GMT","MessageId":"31907572164743c38741631acd554d6f","SequenceNumber":2,"State":"Active","TimeToLive":10}"#;
    let parsed: BrokerProperties = example.parse().expect("the client parses GMT dates");
    assert_eq!(parsed.locked_until_utc.unix_timestamp(), 1_404_264_807);
    assert_eq!(parsed.sequence_number, 2);
}

/// Pins the crate's decoding that the product's transport works around: 0.21 reads
/// `BrokerProperties.EnqueuedSequenceNumber` as an `i32` (`service_bus/mod.rs`, `struct
/// BrokerProperties`), so a 64-bit value fails the whole peek-lock, while `SequenceNumber` (an
/// `i64`) above 2^48 is read. A message is then locked and never handed out.
#[tokio::test]
async fn the_crate_fails_a_receive_whose_enqueued_sequence_number_exceeds_i32() {
    for (first, enqueued, ok) in [
        (1i64 << 48, false, true),
        ((1i64 << 31) + 5, true, false),
        ((1i64 << 48) + 5, true, false),
    ] {
        let h = harness(QueueSettings {
            first_sequence_number: first,
            enqueued_sequence_numbers: enqueued,
            ..QueueSettings::default()
        })
        .await;
        h.bus.send(QUEUE, "x");
        let queue = client(h.addr, KEY);
        let received = queue.peek_lock_message2(Some(Duration::from_secs(1))).await;
        assert_eq!(received.is_ok(), ok, "first {first}, enqueued {enqueued}");
        if let Ok(locked) = received {
            let properties = locked.broker_properties().expect("BrokerProperties parsed");
            assert_eq!(properties.sequence_number, first);
        }
        assert_eq!(h.bus.active(QUEUE)[0].sequence_number, first);
    }
}
