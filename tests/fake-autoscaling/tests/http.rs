//! The fake over raw HTTP: the Query protocol's request and answer shapes, and the refusals a
//! signing client never meets.

mod common;

use common::{GROUP, HOOK, INSTANCE, KEY, harness};
use fake_autoscaling::{ActionState, Fault, Hook, LifecycleResult};
use reqwest::StatusCode;
use std::time::Duration;

/// A header of the SigV4 shape for `KEY` (the fake does not check the signature).
fn authorization(region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20260101/{region}/autoscaling/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=0000000000000000000000000000000000000000000000000000000000000000"
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client")
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but the unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post(
    url: &str,
    authorization: Option<&str>,
    body: String,
) -> (StatusCode, String, String) {
    let mut request = http()
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("x-amz-date", "20260101T000000Z")
        .body(body);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.expect("the fake answers");
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, request_id, response.text().await.expect("a body"))
}

fn error_body(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n  \
         <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n    \
         <Message>{message}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n\
         </ErrorResponse>\n"
    )
}

#[tokio::test]
async fn a_served_call_answers_the_query_protocol_document() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let body = form(&[
        ("Action", "CompleteLifecycleAction"),
        ("Version", "2011-01-01"),
        ("LifecycleHookName", HOOK),
        ("AutoScalingGroupName", GROUP),
        ("LifecycleActionToken", &token),
        ("LifecycleActionResult", "CONTINUE"),
    ]);
    let (status, request_id, text) = post(&h.url(), Some(&authorization("us-east-1")), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(request_id.len(), 36);
    assert_eq!(
        text,
        format!(
            "<CompleteLifecycleActionResponse \
             xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n  \
             <CompleteLifecycleActionResult/>\n  <ResponseMetadata>\n    \
             <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
             </CompleteLifecycleActionResponse>\n"
        )
    );
    assert_eq!(h.asg.requests()[0].request_id, request_id);

    // The same call as a GET query string.
    let token = h
        .asg
        .start_lifecycle_action(GROUP, HOOK, "i-0bbbbbbbbbbbbbbbb");
    let query = form(&[
        ("Action", "RecordLifecycleActionHeartbeat"),
        ("Version", "2011-01-01"),
        ("LifecycleHookName", HOOK),
        ("AutoScalingGroupName", GROUP),
        ("LifecycleActionToken", &token),
    ]);
    let response = http()
        .get(format!("{}?{query}", h.url()))
        .header("authorization", authorization("us-east-1"))
        .header("x-amz-date", "20260101T000000Z")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(
        text.starts_with("<RecordLifecycleActionHeartbeatResponse xmlns="),
        "{text}"
    );
    assert_eq!(h.asg.action(&token).expect("action").heartbeats, 1);
}

#[tokio::test]
async fn errors_are_error_responses_with_type_code_message_and_request_id() {
    let h = harness(Hook::terminating(HOOK)).await;
    let body = || {
        form(&[
            ("Action", "CompleteLifecycleAction"),
            ("Version", "2011-01-01"),
            ("LifecycleHookName", HOOK),
            ("AutoScalingGroupName", GROUP),
            ("InstanceId", INSTANCE),
            ("LifecycleActionResult", "CONTINUE"),
        ])
    };
    let (status, id, text) = post(&h.url(), None, body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        text,
        error_body(
            "Sender",
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
            &id
        )
    );

    let (status, id, text) = post(&h.url(), Some(&authorization("us-east-1")), body()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        text,
        error_body(
            "Sender",
            "ValidationError",
            &format!("No active Lifecycle Action found with instance ID {INSTANCE}"),
            &id
        )
    );

    h.asg.fail_next(Fault::ServiceUnavailable, 1);
    let (status, id, text) = post(&h.url(), Some(&authorization("us-east-1")), body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text,
        error_body(
            "Receiver",
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
            &id
        )
    );
}

#[tokio::test]
async fn malformed_authorization_and_unknown_actions() {
    let h = harness(Hook::terminating(HOOK)).await;
    let call = |action: &str| {
        form(&[
            ("Action", action),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupNames.member.1", GROUP),
        ])
    };
    let (status, _, text) = post(&h.url(), Some("Bearer abc"), call("x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains(
            "<Code>IncompleteSignature</Code>\n    <Message>Authorization header requires \
             'Credential' parameter. Authorization header requires \
             'Signature' parameter. Authorization header requires \
             'SignedHeaders' parameter. Authorization=Bearer abc</Message>"
        ),
        "{text}"
    );

    let (status, _, text) = post(&h.url(), Some(&authorization("eu-west-1")), call("x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        text.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{text}"
    );

    let (status, _, text) = post(
        &h.url(),
        Some(&authorization("us-east-1")),
        call("DescribeAutoScalingGroups"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains(
            "<Code>InvalidAction</Code>\n    <Message>Could not find operation \
             DescribeAutoScalingGroups for version 2011-01-01</Message>"
        ),
        "{text}"
    );

    let (status, _, text) = post(
        &h.url(),
        Some(&authorization("us-east-1")),
        "Version=2011-01-01".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("<Code>MissingAction</Code>"), "{text}");

    let codes: Vec<Option<String>> = h.asg.requests().into_iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [
            Some("IncompleteSignature".to_string()),
            Some("SignatureDoesNotMatch".to_string()),
            Some("InvalidAction".to_string()),
            Some("MissingAction".to_string()),
        ]
    );
}

#[tokio::test]
async fn every_broken_constraint_is_listed() {
    let h = harness(Hook::terminating(HOOK)).await;
    let body = form(&[
        ("Action", "CompleteLifecycleAction"),
        ("Version", "2011-01-01"),
        ("LifecycleHookName", "not a hook name"),
        ("LifecycleActionToken", "short"),
    ]);
    let (status, _, text) = post(&h.url(), Some(&authorization("us-east-1")), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains(
            "<Message>4 validation errors detected: Value 'not a hook name' at \
             'lifecycleHookName' failed to satisfy constraint: Member must satisfy \
             regular expression pattern: [A-Za-z0-9\\-_\\/]+; Value null at \
             'autoScalingGroupName' failed to satisfy constraint: Member must not be \
             null; Value 'short' at 'lifecycleActionToken' failed to \
             satisfy constraint: Member must have length greater than or equal to 36; Value \
             null at 'lifecycleActionResult' failed to satisfy constraint: Member \
             must not be null</Message>"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn faults_answer_before_authentication() {
    let h = harness(Hook::terminating(HOOK)).await;
    h.asg.fail_next(Fault::Throttling, 1);
    let (status, _, text) = post(&h.url(), None, "Action=CompleteLifecycleAction".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("<Code>Throttling</Code>\n    <Message>Rate exceeded</Message>"),
        "{text}"
    );
    let (status, _, _) = post(&h.url(), None, "Action=CompleteLifecycleAction".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // fail_all holds until lifted, for every action.
    h.asg.fail_all(Some(Fault::InternalFailure));
    for _ in 0..3 {
        let (status, _, _) = post(&h.url(), None, String::new()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    h.asg.fail_all(None);
    let (status, _, _) = post(&h.url(), None, String::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

// With Tokio's clock paused, deadlines move with `tokio::time::advance`: a test can let an
// hour-long heartbeat timeout pass at once.
#[tokio::test(start_paused = true)]
async fn deadlines_follow_the_tokio_clock() {
    let asg = fake_autoscaling::FakeAutoScaling::new("us-east-1");
    asg.add_group(GROUP, &[]);
    asg.add_hook(
        GROUP,
        Hook {
            default_result: LifecycleResult::Continue,
            ..Hook::terminating(HOOK)
        },
    );
    let token = asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert_eq!(
        asg.action(&token).expect("action").state,
        ActionState::Pending
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        asg.action(&token).expect("action").state,
        ActionState::TimedOut {
            result: LifecycleResult::Continue
        }
    );
}
