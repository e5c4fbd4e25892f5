//! The HTTP front: routes, the `Authorization` check, the answers of each runtime operation, and
//! the request log. Operation names and statuses are those of the Service Bus REST reference
//! ("Service Bus Runtime REST", learn.microsoft.com/rest/api/servicebus), one page per
//! operation, cited where each answer is built.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::auth::{self, percent_decode};
use crate::broker::{Broker, Delivery, LockError, Message, NewMessage, NoQueue, Sub};
use crate::{RequestRecord, Shared};

/// The receive wait when the request names none. Not confirmed against the service; the
/// reference pages give the `timeout` parameter without a default.
pub(crate) const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// "Set to application/atom+xml;type=entry;charset=utf-8." (the Content-Type response header of
/// "Peek-Lock Message (Non-Destructive Read)"); the fake uses it for a message sent without a
/// Content-Type.
const ATOM_ENTRY: &str = "application/atom+xml;type=entry;charset=utf-8";

/// Broker properties a sender may set and the fake echoes back unchanged ("Message properties"
/// in the REST reference lists the settable ones). `MessageId` and `TimeToLive` are handled on
/// their own; `ScheduledEnqueueTimeUtc` is echoed but not honoured.
const ECHOED_PROPERTIES: &[&str] = &[
    "CorrelationId",
    "SessionId",
    "Label",
    "ReplyTo",
    "To",
    "ScheduledEnqueueTimeUtc",
    "ReplyToSessionId",
    "PartitionKey",
];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = auth::presented(authorization);
    let injected = shared.faults().take(method.as_str(), &path);
    let response = match injected {
        Some(status) => error(
            status_code(status),
            format!(
                "The test asked for this status (fake-servicebus fault injection). {}",
                tracking(&shared, &path)
            ),
        ),
        None => serve(&shared, &method, &path, query.as_deref(), &headers, body).await,
    };
    shared.record(RequestRecord {
        method: method.to_string(),
        path,
        query,
        status: response.status().as_u16(),
        auth: presented,
    });
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What a request addresses: `{queue}[/$DeadLetterQueue]/messages[/head | /{id}/{lockToken}]`.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    queue: String,
    sub: Sub,
    op: Op,
}

#[derive(Debug, PartialEq, Eq)]
enum Op {
    /// `/messages`
    Messages,
    /// `/messages/head`
    Head,
    /// `/messages/{messageId|sequenceNumber}/{lockToken}`
    Locked { id: String, lock_token: String },
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let n = segments.len();
    let is = |i: usize, word: &str| segments[i].eq_ignore_ascii_case(word);
    let (end, op) = if n >= 2 && is(n - 1, "messages") {
        (n - 1, Op::Messages)
    } else if n >= 3 && is(n - 2, "messages") && is(n - 1, "head") {
        (n - 2, Op::Head)
    } else if n >= 4 && is(n - 3, "messages") {
        let op = Op::Locked {
            id: segments[n - 2].clone(),
            lock_token: segments[n - 1].clone(),
        };
        (n - 3, op)
    } else {
        return None;
    };
    let mut entity = &segments[..end];
    // "Path to the dead-letter queue": `<queue path>/$deadletterqueue` ("Overview of Service
    // Bus dead-letter queues").
    let sub = match entity.split_last() {
        Some((last, rest)) if last.eq_ignore_ascii_case("$deadletterqueue") => {
            entity = rest;
            Sub::DeadLetter
        }
        _ => Sub::Main,
    };
    if entity.is_empty() || entity.iter().any(String::is_empty) {
        return None;
    }
    Some(Route {
        queue: entity.join("/"),
        sub,
        op,
    })
}

async fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    // Authorization comes before the entity lookup, so a caller without rights cannot learn
    // which entities exist (the Service Bus client team on github.com/Azure/azure-sdk-for-net
    // issue 44734: "the service performs authorization before it checks for the existence of
    // an entity").
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(detail) = shared.authorize(authorization, path) {
        return error(
            StatusCode::UNAUTHORIZED,
            format!("{detail} {}", tracking(shared, path)),
        );
    }
    let Some(route) = route(path) else {
        // Not a runtime operation on a queue (management operations, topics' own paths, ...).
        // The fake's own answer; the service serves more than the fake does.
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "fake-servicebus serves only queue runtime operations. {}",
                tracking(shared, path)
            ),
        );
    };
    match (&route.op, method.as_str()) {
        (Op::Messages, "POST") => send(shared, &route, path, headers, body),
        (Op::Head, "POST") => peek_lock(shared, &route, path, query).await,
        (Op::Head, "DELETE") => receive_and_delete(shared, &route, path, query).await,
        (Op::Locked { id, lock_token }, "DELETE" | "PUT" | "POST") => {
            settle(shared, &route, path, method, id, lock_token)
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "fake-servicebus does not serve {method} here. {}",
                tracking(shared, path)
            ),
        ),
    }
}

/// Send Message. "201 Message successfully sent to queue or topic.", "400 Bad request.",
/// "410 Specified queue or topic doesn't exist." ("Send Message", REST reference).
fn send(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if route.sub == Sub::DeadLetter {
        // "messages can only be submitted via the dead-letter operation of the parent entity"
        // ("Overview of Service Bus dead-letter queues"). The status the service gives a send
        // to a dead-letter queue is not confirmed; 400 is the fake's choice.
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "A dead-letter queue accepts no sends. {}",
                tracking(shared, path)
            ),
        );
    }
    let new = match new_message(headers, body) {
        Ok(new) => new,
        Err(detail) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{detail} {}", tracking(shared, path)),
            );
        }
    };
    match shared.with_broker(|b| b.send(&route.queue, new)) {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(NoQueue) => gone(shared, path),
    }
}

/// Reads the message a Send Message request carries: the body, its Content-Type, and the
/// JSON `BrokerProperties` header ("JSON-encoded set of BrokeredMessage properties", "Send
/// Message").
fn new_message(headers: &HeaderMap, body: Bytes) -> Result<NewMessage, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut new = NewMessage {
        id: None,
        body: body.to_vec(),
        content_type,
        time_to_live: None,
        properties: Map::new(),
    };
    let Some(raw) = headers.get("brokerproperties") else {
        return Ok(new);
    };
    let parsed: Value = raw
        .to_str()
        .ok()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or("The BrokerProperties header is not JSON.")?;
    let Value::Object(properties) = parsed else {
        return Err("The BrokerProperties header is not a JSON object.".to_string());
    };
    for (name, value) in properties {
        match name.as_str() {
            "MessageId" => match value {
                Value::String(id) if !id.is_empty() => new.id = Some(id),
                _ => return Err("BrokerProperties.MessageId must be a non-empty string.".into()),
            },
            "TimeToLive" => match value.as_f64() {
                Some(ttl) if ttl > 0.0 => new.time_to_live = Some(ttl),
                _ => return Err("BrokerProperties.TimeToLive must be a positive number.".into()),
            },
            other if ECHOED_PROPERTIES.contains(&other) => {
                new.properties.insert(name, value);
            }
            // System properties a sender cannot set are ignored.
            _ => {}
        }
    }
    Ok(new)
}

/// The `timeout` query parameter in seconds ("Peek-Lock Message (Non-Destructive Read)",
/// "Receive and Delete Message"). A value that is not a whole number of seconds is a "400 Bad
/// request.".
fn receive_timeout(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(query) = query else {
        return Ok(None);
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "timeout" {
            return value
                .parse::<u64>()
                .map(|secs| Some(Duration::from_secs(secs)))
                .map_err(|_| format!("The timeout {value:?} is not a number of seconds."));
        }
    }
    Ok(None)
}

/// Waits up to `timeout` for `take` to find something in the queue: a send, an unlock or a lock
/// running out anywhere in the queue wakes the wait at once. `Ok(None)` when the time is up or
/// the fake is stopping.
async fn wait_for<T>(
    shared: &Shared,
    queue: &str,
    timeout: Duration,
    mut take: impl FnMut(&mut Broker, Instant) -> Result<Option<T>, NoQueue>,
) -> Result<Option<T>, NoQueue> {
    let deadline = Instant::now() + timeout;
    let mut stopped = shared.stop_signal();
    loop {
        // Registered before looking, so a change between the look and the wait still wakes us.
        let mut changed = std::pin::pin!(shared.changed.notified());
        changed.as_mut().enable();
        let (taken, next_expiry) = shared.with_broker(|b| {
            let taken = take(b, Instant::now());
            (taken, b.next_expiry(queue))
        });
        if let Some(found) = taken? {
            return Ok(Some(found));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        let wake = next_expiry.map_or(deadline, |expiry| expiry.min(deadline));
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep_until(wake.into()) => {}
            // The fake is stopping: answer now rather than hold the connection open.
            _ = stopped.changed() => return Ok(None),
        }
    }
}

/// The wait a receive asked for (default [`DEFAULT_RECEIVE_TIMEOUT`]), capped by
/// [`crate::FakeServiceBus::set_max_receive_wait`]; a malformed `timeout` is "400 Bad request.".
fn receive_wait(
    shared: &Shared,
    path: &str,
    query: Option<&str>,
) -> Result<Duration, Box<Response>> {
    match receive_timeout(query) {
        Ok(timeout) => Ok(timeout
            .unwrap_or(DEFAULT_RECEIVE_TIMEOUT)
            .min(shared.max_receive_wait())),
        Err(detail) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{detail} {}", tracking(shared, path)),
        ))),
    }
}

/// Peek-Lock Message (Non-Destructive Read): "201 Message successfully retrieved and locked.",
/// "204 No messages available within the specified timeout period.", "400 Bad request.",
/// "410 Specified queue or subscription doesn't exist.".
async fn peek_lock(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    query: Option<&str>,
) -> Response {
    let timeout = match receive_wait(shared, path, query) {
        Ok(timeout) => timeout,
        Err(response) => return *response,
    };
    let received = wait_for(shared, &route.queue, timeout, |b, now| {
        b.receive(&route.queue, route.sub, now)
    })
    .await;
    match received {
        Err(NoQueue) => gone(shared, path),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(delivery)) => locked(shared, route, &delivery),
    }
}

/// The `BrokerProperties` of a delivered message, with the field names and formats of the
/// service's example answer in "Peek-Lock Message (Non-Destructive Read)":
/// `{"DeliveryCount":1,"EnqueuedSequenceNumber":0,"EnqueuedTimeUtc":"Wed, 02 Jul 2014 01:32:27 GMT",
/// "Label":"M1","LockToken":"7da9cfd5-...","LockedUntilUtc":"Wed, 02 Jul 2014 01:33:27 GMT",
/// "MessageId":"31907572164743c38741631acd554d6f","SequenceNumber":2,"State":"Active","TimeToLive":10}`.
/// `EnqueuedSequenceNumber` is 0 there as here, unless the queue reports the 64-bit sequence
/// numbers there (`QueueSettings::enqueued_sequence_numbers`). Dead-lettered messages report
/// `State` "Active" too (not confirmed).
fn broker_properties(message: &Message, lock: Option<(&str, SystemTime)>) -> String {
    let mut properties = message.properties.clone();
    properties.insert("DeliveryCount".into(), message.delivery_count.into());
    properties.insert(
        "EnqueuedSequenceNumber".into(),
        message.enqueued_sequence_number.into(),
    );
    properties.insert(
        "EnqueuedTimeUtc".into(),
        http_date(message.enqueued_at).into(),
    );
    properties.insert("MessageId".into(), message.id.clone().into());
    properties.insert("SequenceNumber".into(), message.sequence_number.into());
    properties.insert("State".into(), "Active".into());
    properties.insert("TimeToLive".into(), message.time_to_live.into());
    if let Some((token, until)) = lock {
        properties.insert("LockToken".into(), token.into());
        properties.insert("LockedUntilUtc".into(), http_date(until).into());
    }
    Value::Object(properties).to_string()
}

/// The 201 answer to a peek-lock: the body, `BrokerProperties`, and `Location`, the URI of the
/// locked message that the client then uses to unlock, renew or delete it ("Peek-Lock Message
/// (Non-Destructive Read)", response headers). It is absolute, on the namespace's real host (the
/// client follows it as given), with the queue's lowercased path and the sequence number, as in
/// that page's example
/// (`Location: https://your-namespace.servicebus.windows.net/httpclientsamplequeue/messages/2/7da9cfd5-...`).
fn locked(shared: &Shared, route: &Route, delivery: &Delivery) -> Response {
    let message = &delivery.message;
    let entity = match route.sub {
        Sub::Main => route.queue.to_ascii_lowercase(),
        Sub::DeadLetter => format!("{}/$deadletterqueue", route.queue.to_ascii_lowercase()),
    };
    let location = format!(
        "https://{}/{entity}/messages/{}/{}",
        shared.host, message.sequence_number, delivery.lock_token
    );
    let properties = broker_properties(
        message,
        Some((delivery.lock_token.as_str(), delivery.locked_until)),
    );
    message_response(StatusCode::CREATED, message, properties, Some(location))
}

fn message_response(
    status: StatusCode,
    message: &Message,
    properties: String,
    location: Option<String>,
) -> Response {
    let mut response = (status, Body::from(message.body.clone())).into_response();
    let headers = response.headers_mut();
    let content_type = message.content_type.as_deref().unwrap_or(ATOM_ENTRY);
    insert(headers, header::CONTENT_TYPE.as_str(), content_type);
    insert(headers, "brokerproperties", &properties);
    if let Some(location) = location {
        insert(headers, header::LOCATION.as_str(), &location);
    }
    // Custom properties travel as headers whose values are JSON ("Priority: \"High\"" in the
    // Peek-Lock example). The fake keeps no custom properties but these two, which the broker
    // adds to dead-lettered messages ("Overview of Service Bus dead-letter queues").
    if let Some((reason, description)) = &message.dead_letter {
        insert(
            headers,
            "deadletterreason",
            &Value::from(reason.as_str()).to_string(),
        );
        insert(
            headers,
            "deadlettererrordescription",
            &Value::from(description.as_str()).to_string(),
        );
    }
    response
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Receive and Delete Message (Destructive Read): "200 Message successfully retrieved and
/// deleted.", "204 No messages available within the specified timeout period.", "400 Bad
/// request.", "410 Specified queue or subscription doesn't exist.". Waits like a peek-lock; the
/// message counts as completed in [`crate::FakeServiceBus::completed`].
async fn receive_and_delete(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    query: Option<&str>,
) -> Response {
    let timeout = match receive_wait(shared, path, query) {
        Ok(timeout) => timeout,
        Err(response) => return *response,
    };
    let received = wait_for(shared, &route.queue, timeout, |b, _| {
        b.receive_and_delete(&route.queue, route.sub)
    })
    .await;
    match received {
        Err(NoQueue) => gone(shared, path),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(message)) => {
            let properties = broker_properties(&message, None);
            message_response(StatusCode::OK, &message, properties, None)
        }
    }
}

/// Delete Message (DELETE), Unlock Message (PUT) and Renew-Lock for a Message (POST) on the lock
/// URI. Each page lists "200" for success, "404 No message was found with the specified
/// MessageId or LockToken." and "410 Specified queue or subscription doesn't exist.".
fn settle(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    method: &Method,
    id: &str,
    lock_token: &str,
) -> Response {
    let now = Instant::now();
    let outcome = shared.with_broker(|b| match method.as_str() {
        "DELETE" => b.complete(&route.queue, route.sub, id, lock_token),
        "PUT" => b.abandon(&route.queue, route.sub, id, lock_token),
        _ => b
            .renew(&route.queue, route.sub, id, lock_token, now)
            .map(|_| ()),
    });
    match outcome {
        Ok(()) => StatusCode::OK.into_response(),
        Err(LockError::NoQueue) => gone(shared, path),
        // The client libraries report the service's MessageLockLost error with this sentence;
        // its wording in a REST answer's Detail is not confirmed.
        Err(LockError::NoLock) => error(
            StatusCode::NOT_FOUND,
            format!(
                "The lock supplied is invalid. Either the lock expired, or the message has \
                 already been removed from the queue. {}",
                tracking(shared, path)
            ),
        ),
    }
}

/// 410 for an unknown queue. Every runtime page the fake serves lists "410 Specified queue or
/// subscription doesn't exist." (Send Message: "Specified queue or topic doesn't exist.").
fn gone(shared: &Shared, path: &str) -> Response {
    error(
        StatusCode::GONE,
        format!(
            "Specified queue or subscription does not exist. {}",
            tracking(shared, path)
        ),
    )
}

/// The service's error body: `<Error><Code>401</Code><Detail>...</Detail></Error>` (as quoted
/// in github.com/sandrinodimattia/RedDog issue 4 and github.com/Azure/azure-service-bus-dotnet
/// issue 603).
fn error(status: StatusCode, detail: String) -> Response {
    let body = format!(
        "<Error><Code>{}</Code><Detail>{}</Detail></Error>",
        status.as_u16(),
        xml_escape(&detail)
    );
    let mut response = (status, body).into_response();
    insert(
        response.headers_mut(),
        header::CONTENT_TYPE.as_str(),
        "application/xml; charset=utf-8",
    );
    response
}

/// The tail the service puts on every error detail:
/// `TrackingId:..., SystemTracker:<host>:<entity>, Timestamp:...`.
fn tracking(shared: &Shared, path: &str) -> String {
    let timestamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S");
    format!(
        "TrackingId:{}, SystemTracker:{}:{}, Timestamp:{timestamp}",
        crate::broker::lock_token(),
        shared.host,
        percent_decode(path.trim_start_matches('/'))
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// RFC 2822 / RFC 9110 date in GMT, e.g. `Wed, 02 Jul 2014 01:32:27 GMT`, the format of
/// `EnqueuedTimeUtc` and `LockedUntilUtc` in the service's examples. Fractions of a second are
/// dropped, so `LockedUntilUtc` is never later than the real expiry.
pub(crate) fn http_date(time: SystemTime) -> String {
    let timestamp =
        jiff::Timestamp::try_from(time).expect("the system clock is within jiff's range");
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&timestamp)
        .expect("a timestamp after 1970 prints as RFC 9110")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &str) -> Option<(String, Sub, Op)> {
        route(path).map(|r| (r.queue, r.sub, r.op))
    }

    #[test]
    fn routes() {
        assert_eq!(
            op("/jobs/messages"),
            Some(("jobs".into(), Sub::Main, Op::Messages))
        );
        assert_eq!(
            op("/jobs/messages/head"),
            Some(("jobs".into(), Sub::Main, Op::Head))
        );
        assert_eq!(
            op("/a/b/messages/7/tok"),
            Some((
                "a/b".into(),
                Sub::Main,
                Op::Locked {
                    id: "7".into(),
                    lock_token: "tok".into()
                }
            ))
        );
        assert_eq!(
            op("/jobs/%24DeadLetterQueue/messages/head"),
            Some(("jobs".into(), Sub::DeadLetter, Op::Head))
        );
        assert_eq!(
            op("/jobs/$deadletterqueue/messages/1/t"),
            Some((
                "jobs".into(),
                Sub::DeadLetter,
                Op::Locked {
                    id: "1".into(),
                    lock_token: "t".into()
                }
            ))
        );
        assert_eq!(op("/jobs"), None);
        assert_eq!(op("/messages"), None);
        assert_eq!(op("/$DeadLetterQueue/messages"), None);
        assert_eq!(op("//messages/head"), None);
    }

    #[test]
    fn timeouts() {
        assert_eq!(receive_timeout(None), Ok(None));
        assert_eq!(
            receive_timeout(Some("timeout=5")),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(receive_timeout(Some("api-version=2015-01")), Ok(None));
        assert!(receive_timeout(Some("timeout=soon")).is_err());
    }

    #[test]
    fn dates_are_rfc2822_gmt() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_622_620_800);
        assert_eq!(http_date(t), "Wed, 02 Jun 2021 08:00:00 GMT");
    }

    #[test]
    fn errors_are_escaped() {
        assert_eq!(xml_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
