//! The client the product uses, `aws-sdk-autoscaling` 1.x, against the fake: each answer must
//! parse into the SDK's error with the service's `code()` and `message()`, and the SDK's retry
//! policy must treat the fake's faults as it treats the service's.

mod common;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_autoscaling::config::retry::RetryConfig;
use aws_sdk_autoscaling::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_autoscaling::error::BoxError;
use aws_sdk_autoscaling::operation::complete_lifecycle_action::CompleteLifecycleActionError;
use common::{GROUP, HOOK, INSTANCE, KEY, TAG, harness, parts};
use fake_autoscaling::{
    ACCOUNT_ID, ActionState, DEFAULT_PRINCIPAL, Fault, Hook, LifecycleResult, RequestRecord,
};
use std::time::{Duration, Instant};

const OTHER_TOKEN: &str = "00000000-0000-4000-8000-000000000000";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// CompleteLifecycleAction with a token, as the router sends it.
async fn complete(
    client: &Client,
    group: &str,
    token: &str,
    result: &str,
) -> Result<(), aws_sdk_autoscaling::error::SdkError<CompleteLifecycleActionError>> {
    client
        .complete_lifecycle_action()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(HOOK)
        .lifecycle_action_token(token)
        .lifecycle_action_result(result)
        .send()
        .await
        .map(|_| ())
}

async fn heartbeat(client: &Client, token: &str) -> Result<(), (u16, String, String)> {
    client
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name(GROUP)
        .lifecycle_hook_name(HOOK)
        .lifecycle_action_token(token)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| parts(&e))
}

fn statuses(requests: &[RequestRecord]) -> Vec<u16> {
    requests.iter().map(|r| r.status).collect()
}

fn no_token(token: &str) -> (u16, String, String) {
    (
        400,
        "ValidationError".into(),
        format!("No active Lifecycle Action found with token {token}"),
    )
}

fn no_instance(id: &str) -> (u16, String, String) {
    (
        400,
        "ValidationError".into(),
        format!("No active Lifecycle Action found with instance ID {id}"),
    )
}

#[tokio::test]
async fn complete_continue_proceeds_and_a_second_complete_finds_nothing() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let before = h.asg.action(&token).expect("the action");
    assert_eq!(before.state, ActionState::Pending);
    assert_eq!(before.lifecycle_state(), "Terminating:Wait");
    // Default hook: 3600 s, global min(100 × 3600 s, 48 h) = 48 h.
    assert_eq!(before.heartbeat_deadline - before.started_at, ms(3_600_000));
    assert_eq!(before.global_deadline - before.started_at, ms(172_800_000));

    let client = h.client();
    complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect("CompleteLifecycleAction succeeds");
    let after = h.asg.action(&token).expect("the action");
    assert_eq!(
        after.state,
        ActionState::Completed {
            result: LifecycleResult::Continue
        }
    );
    assert_eq!(after.lifecycle_state(), "Terminating:Proceed");
    assert!(after.completed_at.is_some());

    // What the router treats as "already done".
    let err = complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect_err("the action is no longer active");
    assert_eq!(parts(&err), no_token(&token));
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.meta().code() == Some("ValidationError"))
    );

    let requests = h.asg.requests();
    assert_eq!(statuses(&requests), [200, 400]);
    let first = &requests[0];
    assert_eq!(first.action.as_deref(), Some("CompleteLifecycleAction"));
    assert_eq!(first.param("Version"), Some("2011-01-01"));
    assert_eq!(first.param("AutoScalingGroupName"), Some(GROUP));
    assert_eq!(first.param("LifecycleHookName"), Some(HOOK));
    assert_eq!(first.param("LifecycleActionToken"), Some(token.as_str()));
    assert_eq!(first.param("LifecycleActionResult"), Some("CONTINUE"));
    assert_eq!(first.param("InstanceId"), None);
    assert_eq!(first.access_key.as_deref(), Some(KEY));
    assert_eq!(first.code, None);
    assert_eq!(requests[1].code.as_deref(), Some("ValidationError"));
}

#[tokio::test]
async fn abandon_is_a_result_and_other_values_are_refused() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    let err = complete(&client, GROUP, &token, "continue")
        .await
        .expect_err("lower case is not a result");
    let (status, code, message) = parts(&err);
    assert_eq!((status, code.as_str()), (400, "ValidationError"));
    assert!(message.contains("'continue'"), "{message}");
    assert_eq!(
        h.asg.action(&token).expect("action").state,
        ActionState::Pending
    );

    complete(&client, GROUP, &token, "ABANDON")
        .await
        .expect("ABANDON completes");
    let view = h.asg.action(&token).expect("action");
    assert_eq!(view.result(), Some(LifecycleResult::Abandon));
    // "If the instance is terminating, both ABANDON and CONTINUE allow the instance to terminate".
    assert_eq!(view.lifecycle_state(), "Terminating:Proceed");
}

#[tokio::test]
async fn a_heartbeat_restarts_the_heartbeat_timeout() {
    let hook = Hook {
        heartbeat_timeout: ms(1000),
        ..Hook::terminating(HOOK)
    };
    let h = harness(hook).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    tokio::time::sleep(ms(600)).await;
    heartbeat(&client, &token).await.expect("a heartbeat");
    // Past the first deadline (1 s), within the second (heartbeat + 1 s).
    tokio::time::sleep(ms(600)).await;
    let view = h.asg.action(&token).expect("action");
    assert_eq!(view.state, ActionState::Pending);
    assert_eq!(view.heartbeats, 1);
    let last = view.last_heartbeat_at.expect("a heartbeat time");
    assert_eq!(view.heartbeat_deadline, last + ms(1000));
    complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect("still active after the first deadline");
}

#[tokio::test]
async fn an_action_times_out_with_the_default_result() {
    let hook = Hook {
        heartbeat_timeout: ms(200),
        ..Hook::terminating(HOOK)
    };
    let h = harness(hook).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    tokio::time::sleep(ms(350)).await;
    // Inspection alone ends it, at its deadline.
    let view = h.asg.action(&token).expect("action");
    assert_eq!(
        view.state,
        ActionState::TimedOut {
            result: LifecycleResult::Abandon
        }
    );
    assert_eq!(view.completed_at, Some(view.started_at + ms(200)));
    assert_eq!(view.lifecycle_state(), "Terminating:Proceed");

    let client = h.client();
    let err = complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect_err("expired");
    assert_eq!(parts(&err), no_token(&token));
    assert_eq!(heartbeat(&client, &token).await, Err(no_token(&token)));
}

#[tokio::test]
async fn heartbeats_never_pass_the_global_timeout() {
    // Heartbeat 600 ms, global 800 ms: a heartbeat after 200 ms is capped at the global deadline.
    let hook = Hook {
        heartbeat_timeout: ms(600),
        default_result: LifecycleResult::Continue,
        global_timeout: Some(ms(800)),
        ..Hook::terminating(HOOK)
    };
    let h = harness(hook).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    tokio::time::sleep(ms(400)).await;
    heartbeat(&client, &token)
        .await
        .expect("within the global timeout");
    let view = h.asg.action(&token).expect("action");
    assert_eq!(view.heartbeat_deadline, view.global_deadline);
    assert_eq!(view.global_deadline, view.started_at + ms(800));

    tokio::time::sleep(ms(600)).await;
    assert_eq!(heartbeat(&client, &token).await, Err(no_token(&token)));
    let view = h.asg.action(&token).expect("action");
    assert_eq!(
        view.state,
        ActionState::TimedOut {
            result: LifecycleResult::Continue
        }
    );
    assert_eq!(view.completed_at, Some(view.global_deadline));
    assert_eq!(view.heartbeats, 1);
}

#[tokio::test]
async fn another_token_is_refused_with_the_token_message() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    let err = complete(&client, GROUP, OTHER_TOKEN, "CONTINUE")
        .await
        .expect_err("not this action's token");
    assert_eq!(parts(&err), no_token(OTHER_TOKEN));

    // Token and instance ID that disagree: the token message (the fake's choice).
    let err = client
        .complete_lifecycle_action()
        .auto_scaling_group_name(GROUP)
        .lifecycle_hook_name(HOOK)
        .lifecycle_action_token(&token)
        .instance_id("i-00000000000000000")
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .expect_err("the token's action is on another instance");
    assert_eq!(parts(&err), no_token(&token));
    assert_eq!(
        h.asg.action(&token).expect("action").state,
        ActionState::Pending
    );

    // A token of the wrong length breaks the model's constraint first.
    let err = complete(&client, GROUP, "abc", "CONTINUE")
        .await
        .expect_err("36 characters");
    assert_eq!(
        parts(&err),
        (
            400,
            "ValidationError".into(),
            "1 validation error detected: Value 'abc' at 'lifecycleActionToken' failed to \
             satisfy constraint: Member must have length greater than or equal to 36"
                .into()
        )
    );
}

#[tokio::test]
async fn completion_by_instance_id_alone() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    let by_instance = || {
        client
            .complete_lifecycle_action()
            .auto_scaling_group_name(GROUP)
            .lifecycle_hook_name(HOOK)
            .instance_id(INSTANCE)
            .lifecycle_action_result("CONTINUE")
            .send()
    };
    by_instance().await.expect("completed by instance ID");
    assert_eq!(
        h.asg.action(&token).expect("action").result(),
        Some(LifecycleResult::Continue)
    );
    let err = by_instance().await.expect_err("done already");
    assert_eq!(parts(&err), no_instance(INSTANCE));

    // Heartbeats by instance ID too.
    let token = h
        .asg
        .start_lifecycle_action(GROUP, HOOK, "i-0fedcba9876543210");
    client
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name(GROUP)
        .lifecycle_hook_name(HOOK)
        .instance_id("i-0fedcba9876543210")
        .send()
        .await
        .expect("a heartbeat by instance ID");
    assert_eq!(h.asg.action(&token).expect("action").heartbeats, 1);

    // Neither: refused.
    let err = client
        .complete_lifecycle_action()
        .auto_scaling_group_name(GROUP)
        .lifecycle_hook_name(HOOK)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .expect_err("a token or an instance ID is needed");
    let (status, code, _) = parts(&err);
    assert_eq!((status, code.as_str()), (400, "ValidationError"));
}

#[tokio::test]
async fn unknown_hooks_and_groups_have_no_active_action() {
    let h = harness(Hook::terminating(HOOK)).await;
    h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let client = h.client();
    for (group, hook) in [(GROUP, "no-such-hook"), ("no-such-group", HOOK)] {
        let err = client
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(INSTANCE)
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
            .expect_err("nothing waits there");
        assert_eq!(parts(&err), no_instance(INSTANCE), "{group} {hook}");
    }
    // A required member left out.
    let err = client
        .complete_lifecycle_action()
        .auto_scaling_group_name(GROUP)
        .instance_id(INSTANCE)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .expect_err("LifecycleHookName is required");
    assert_eq!(
        parts(&err),
        (
            400,
            "ValidationError".into(),
            "1 validation error detected: Value null at 'lifecycleHookName' failed to satisfy \
             constraint: Member must not be null"
                .into()
        )
    );
}

/// Removes the signature the SDK made, as an unsigned client would send the request.
#[derive(Debug)]
struct Unsigned;

impl Intercept for Unsigned {
    fn name(&self) -> &'static str {
        "Unsigned"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context.request_mut().headers_mut().remove("authorization");
        Ok(())
    }
}

#[tokio::test]
async fn authentication_refusals_parse_as_the_service_errors() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);

    let unsigned = h.client_with(|c| c.interceptor(Unsigned));
    let err = complete(&unsigned, GROUP, &token, "CONTINUE")
        .await
        .expect_err("unsigned");
    assert_eq!(
        parts(&err),
        (
            403,
            "MissingAuthenticationToken".into(),
            "Request is missing Authentication Token".into()
        )
    );

    let stranger =
        aws_sdk_autoscaling::Client::from_conf(common::config(h.addr, "AKIDUNKNOWNKEY").build());
    let err = complete(&stranger, GROUP, &token, "CONTINUE")
        .await
        .expect_err("unknown key");
    assert_eq!(
        parts(&err),
        (
            403,
            "InvalidClientTokenId".into(),
            "The security token included in the request is invalid.".into()
        )
    );

    let elsewhere =
        h.client_with(|c| c.region(aws_sdk_autoscaling::config::Region::new("eu-west-1")));
    let err = complete(&elsewhere, GROUP, &token, "CONTINUE")
        .await
        .expect_err("signed for another region");
    assert_eq!(
        parts(&err),
        (
            403,
            "SignatureDoesNotMatch".into(),
            "Credential should be scoped to a valid region, not 'eu-west-1'. ".into()
        )
    );

    // None of these is retried, and none touched the action.
    assert_eq!(statuses(&h.asg.requests()), [403, 403, 403]);
    assert_eq!(
        h.asg.action(&token).expect("action").state,
        ActionState::Pending
    );
}

#[tokio::test]
async fn groups_outside_the_tag_scope_are_access_denied() {
    let h = harness(Hook::terminating(HOOK)).await;
    h.asg.require_group_tag(TAG.0, TAG.1);
    let inside = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    let outside = h.asg.start_lifecycle_action("other-nodes", HOOK, INSTANCE);
    let client = h.client();

    let err = complete(&client, "other-nodes", &outside, "CONTINUE")
        .await
        .expect_err("the group lacks the tag");
    let (status, code, message) = parts(&err);
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let prefix = format!(
        "User: {DEFAULT_PRINCIPAL} is not authorized to perform: \
         autoscaling:CompleteLifecycleAction on resource: \
         arn:aws:autoscaling:us-east-1:{ACCOUNT_ID}:autoScalingGroup:"
    );
    let suffix = ":autoScalingGroupName/other-nodes because no identity-based policy allows \
                  the autoscaling:CompleteLifecycleAction action";
    let group_id = message
        .strip_prefix(&prefix)
        .and_then(|m| m.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("the AccessDenied shape: {message}"));
    assert_eq!(
        group_id.len(),
        36,
        "the group's UUID is in its ARN: {message}"
    );

    let err = client
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name("no-such-group")
        .lifecycle_hook_name(HOOK)
        .lifecycle_action_token(&outside)
        .send()
        .await
        .expect_err("an unknown group has no tags either");
    let (status, _, message) = parts(&err);
    assert_eq!(status, 403);
    assert!(
        message.contains("autoscaling:RecordLifecycleActionHeartbeat on resource: ")
            && message.contains(":autoScalingGroup:*:autoScalingGroupName/no-such-group "),
        "{message}"
    );

    complete(&client, GROUP, &inside, "CONTINUE")
        .await
        .expect("the tagged group is in scope");
    assert_eq!(
        h.asg.action(&outside).expect("action").state,
        ActionState::Pending
    );
    h.asg.allow_all_groups();
    complete(&client, "other-nodes", &outside, "CONTINUE")
        .await
        .expect("no scope any more");
}

// The SDK's default retry policy, as aws-sdk-autoscaling 1.110 with `BehaviorVersion::latest()`
// (v2026_01_12) sets it: aws-smithy-runtime's `default_retry_config_plugin_v2` stores
// `RetryConfig::standard()` for AWS SDK clients from that behavior version on (older ones get
// `RetryConfig::disabled()`): standard mode, 3 attempts in all, exponential backoff with full
// jitter from a 1 s base (`rand(0..1) × 2^(attempt-1) s`, at most 20 s), and a client-side retry
// token bucket (500 tokens; a throttling retry costs 5, a transient one 10). A failure is
// retried when a classifier says so: `AwsErrorCodeClassifier` (aws-runtime) for the throttling
// codes (`Throttling`, `ThrottlingException`, `RequestLimitExceeded`, ... ) and the transient
// codes `RequestTimeout`/`RequestTimeoutException`, whatever the status;
// `HttpStatusCodeClassifier` for statuses 500, 502, 503 and 504 (so `InternalFailure`,
// `ServiceUnavailable` and the modeled `ResourceContention`, which is a 500); and
// `TransientErrorClassifier` for I/O errors and timeouts. Nothing else is retried: not
// `ValidationError`, not `AccessDenied`, not the 403s of authentication.

#[tokio::test]
async fn throttling_is_retried_by_the_default_policy() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    h.asg
        .fail_next_for("CompleteLifecycleAction", Fault::Throttling, 2);
    complete(&h.client(), GROUP, &token, "CONTINUE")
        .await
        .expect("the third attempt succeeds");
    let requests = h.asg.requests();
    assert_eq!(statuses(&requests), [400, 400, 200]);
    assert_eq!(requests[0].code.as_deref(), Some("Throttling"));
    assert_eq!(
        h.asg.action(&token).expect("action").result(),
        Some(LifecycleResult::Continue)
    );
}

#[tokio::test]
async fn the_default_policy_gives_up_after_three_attempts() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    h.asg.fail_next(Fault::Throttling, 4);
    let client = h.client();
    let err = complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect_err("throttled three times");
    assert_eq!(
        parts(&err),
        (400, "Throttling".into(), "Rate exceeded".into())
    );
    assert_eq!(statuses(&h.asg.requests()), [400, 400, 400]);
    assert_eq!(
        h.asg.action(&token).expect("action").state,
        ActionState::Pending
    );
    // The fourth throttle is left for the next call, whose retry then succeeds.
    complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect("retried past the last throttle");
    assert_eq!(statuses(&h.asg.requests()), [400, 400, 400, 400, 200]);
}

#[tokio::test]
async fn server_errors_are_retried_and_parse_when_retries_are_off() {
    let h = harness(Hook::terminating(HOOK)).await;
    let client = h.client();
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    h.asg.fail_next(Fault::InternalFailure, 1);
    h.asg.fail_next(Fault::ServiceUnavailable, 1);
    complete(&client, GROUP, &token, "CONTINUE")
        .await
        .expect("500 and 503 are retried");
    assert_eq!(statuses(&h.asg.requests()), [500, 503, 200]);

    let once = h.client_with(|c| c.retry_config(RetryConfig::disabled()));
    let token = h
        .asg
        .start_lifecycle_action(GROUP, HOOK, "i-0aaaaaaaaaaaaaaaa");
    h.asg.fail_next(Fault::InternalFailure, 1);
    let err = complete(&once, GROUP, &token, "CONTINUE")
        .await
        .expect_err("a 500");
    assert_eq!(
        parts(&err),
        (
            500,
            "InternalFailure".into(),
            "The request processing has failed because of an unknown error, exception or \
             failure."
                .into()
        )
    );
    h.asg.fail_next(Fault::ServiceUnavailable, 1);
    let err = complete(&once, GROUP, &token, "CONTINUE")
        .await
        .expect_err("a 503");
    let (status, code, _) = parts(&err);
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    h.asg.fail_next(Fault::ResourceContention, 1);
    let err = complete(&once, GROUP, &token, "CONTINUE")
        .await
        .expect_err("a modeled 500");
    assert!(
        matches!(
            err.as_service_error(),
            Some(CompleteLifecycleActionError::ResourceContentionFault(_))
        ),
        "{err:?}"
    );
    assert_eq!(parts(&err).0, 500);
    assert_eq!(
        h.asg.action(&token).expect("action").state,
        ActionState::Pending
    );
}

#[tokio::test]
async fn a_lost_answer_makes_the_retry_find_no_active_action() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    h.asg.fail_next(Fault::InternalFailureAfterServing, 1);
    let err = complete(&h.client(), GROUP, &token, "CONTINUE")
        .await
        .expect_err("the retry meets the completed action");
    assert_eq!(parts(&err), no_token(&token));
    assert_eq!(statuses(&h.asg.requests()), [500, 400]);
    assert_eq!(
        h.asg.action(&token).expect("action").result(),
        Some(LifecycleResult::Continue)
    );
}

#[tokio::test]
async fn a_delay_fault_answers_late() {
    let h = harness(Hook::terminating(HOOK)).await;
    let token = h.asg.start_lifecycle_action(GROUP, HOOK, INSTANCE);
    h.asg
        .fail_next_for("RecordLifecycleActionHeartbeat", Fault::Delay(ms(300)), 1);
    let client = h.client();
    let started = Instant::now();
    heartbeat(&client, &token).await.expect("served late");
    assert!(started.elapsed() >= ms(300), "{:?}", started.elapsed());
    assert_eq!(h.asg.action(&token).expect("action").heartbeats, 1);
}
