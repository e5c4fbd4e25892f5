//! The Auto Scaling API calls that end an ASG lifecycle action: `CompleteLifecycleAction`
//! (`CONTINUE`) and `RecordLifecycleActionHeartbeat`, for the reconciler
//! ([`crate::cluster::lifecycle`]).
//!
//! A client per region, built on first use with the standard AWS resolution (credentials,
//! and the endpoint: `AWS_ENDPOINT_URL_AUTO_SCALING` or `AWS_ENDPOINT_URL` override it, as for
//! every SDK client). IAM: `autoscaling:CompleteLifecycleAction` and
//! `autoscaling:RecordLifecycleActionHeartbeat` on the cluster's groups (`infra/aws` scopes
//! them by a tag on the group).
//!
//! The SDK's default retry policy stands: standard mode, 3 attempts with exponential backoff,
//! retrying throttling errors (`Throttling`, ...), 5xx answers and transport errors. What fails
//! after that is retried by the reconciler with its own backoff.

use std::collections::HashMap;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use crate::cluster::lifecycle::{Answer, Call, Lifecycle, LifecycleAction, LifecycleError};

/// The result every completion sends: the instance may go on terminating.
const CONTINUE: &str = "CONTINUE";
/// The start of the `ValidationError` message for an action that is not (or no longer)
/// active, whether named by token or by instance id (the API reference of
/// `CompleteLifecycleAction`; aws-node-termination-handler and lifecycled match on it too).
const NO_ACTIVE_ACTION: &str = "No active Lifecycle Action found";

/// The Auto Scaling API of every region the events name.
#[derive(Debug)]
pub struct AsgLifecycle {
    /// The region for events that name none.
    default_region: Option<String>,
    clients: Mutex<HashMap<Option<String>, Client>>,
}

impl AsgLifecycle {
    /// Clients are made on first use; `default_region` is for events that name no region.
    pub fn new(default_region: Option<String>) -> AsgLifecycle {
        AsgLifecycle {
            default_region,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, action: &LifecycleAction) -> Client {
        let region = action
            .region
            .clone()
            .or_else(|| self.default_region.clone());
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&region) {
            return client.clone();
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let client = Client::new(&loader.load().await);
        clients.insert(region, client.clone());
        client
    }
}

impl Lifecycle for AsgLifecycle {
    fn complete<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a> {
        Box::pin(async move {
            let result = self
                .client(action)
                .await
                .complete_lifecycle_action()
                .auto_scaling_group_name(&action.group)
                .lifecycle_hook_name(&action.hook)
                .lifecycle_action_result(CONTINUE)
                .instance_id(&action.instance_id)
                .set_lifecycle_action_token(action.token.clone())
                .send()
                .await;
            answer("CompleteLifecycleAction", result.map(|_| ()))
        })
    }

    fn heartbeat<'a>(&'a self, action: &'a LifecycleAction) -> Call<'a> {
        Box::pin(async move {
            let result = self
                .client(action)
                .await
                .record_lifecycle_action_heartbeat()
                .auto_scaling_group_name(&action.group)
                .lifecycle_hook_name(&action.hook)
                .instance_id(&action.instance_id)
                .set_lifecycle_action_token(action.token.clone())
                .send()
                .await;
            answer("RecordLifecycleActionHeartbeat", result.map(|_| ()))
        })
    }
}

/// What an answer of the API means.
fn answer<E, R>(
    call: &'static str,
    result: Result<(), SdkError<E, R>>,
) -> Result<Answer, LifecycleError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let e = match result {
        Ok(()) => return Ok(Answer::Taken),
        Err(SdkError::ServiceError(e)) => e.into_err(),
        Err(other) => return Err(LifecycleError::Transport(Box::new(other))),
    };
    let code = e.code().unwrap_or("").to_owned();
    let message = e.message().unwrap_or("").to_owned();
    classify(call, code, message)
}

/// An error answer, by its code and message: `Ok` when it says the action is already over.
fn classify(call: &'static str, code: String, message: String) -> Result<Answer, LifecycleError> {
    match code.as_str() {
        "ValidationError" if message.starts_with(NO_ACTIVE_ACTION) => Ok(Answer::NoActiveAction),
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "ExpiredToken" => Err(LifecycleError::Denied {
            call,
            code,
            message,
        }),
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ResourceContention" => Err(LifecycleError::Unavailable { code, message }),
        _ => Err(LifecycleError::Refused {
            call,
            code,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_that_is_over_is_an_answer_not_an_error() {
        for message in [
            "No active Lifecycle Action found with token 0befcbdb-6ecd-498a-9ff7-ae9b54447cd6",
            "No active Lifecycle Action found with instance ID i-0633ac2b0d9769723",
        ] {
            assert_eq!(
                classify(
                    "CompleteLifecycleAction",
                    "ValidationError".into(),
                    message.into()
                )
                .ok(),
                Some(Answer::NoActiveAction)
            );
        }
    }

    #[test]
    fn other_errors_keep_their_code_and_kind() {
        let kind = |code: &str, message: &str| {
            classify("CompleteLifecycleAction", code.into(), message.into()).map_err(|e| e.kind())
        };
        assert_eq!(kind("Throttling", "Rate exceeded"), Err("unavailable"));
        assert_eq!(kind("InternalFailure", ""), Err("unavailable"));
        assert_eq!(
            kind("AccessDenied", "User: x is not authorized"),
            Err("denied")
        );
        assert_eq!(
            kind("ValidationError", "LifecycleHookName is not a valid hook"),
            Err("refused")
        );
        let e = classify(
            "CompleteLifecycleAction",
            "AccessDenied".into(),
            "no".into(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "not allowed to CompleteLifecycleAction (AccessDenied): no"
        );
    }
}
