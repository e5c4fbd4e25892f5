//! Fault injection: answer chosen calls with a service error, or late, before the fake looks at
//! them (before authentication too, as in fake-servicebus).

use std::time::Duration;

use crate::service::AwsError;

/// What an injected fault does to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 `Throttling`, "Rate exceeded": the Query services' answer when a caller exceeds its
    /// request rate (Auto Scaling: "ASG 'Throttling: Rate exceeded' returns non-retryable 400",
    /// github.com/aws/aws-sdk-go issue 3119; Common Errors lists it as ThrottlingException,
    /// the name the JSON services use). The call is not served.
    Throttling,
    /// 500 `InternalFailure`: "The request processing has failed because of an unknown error,
    /// exception or failure." (Common Errors). The call is not served.
    InternalFailure,
    /// 503 `ServiceUnavailable`: "The request has failed due to a temporary failure of the
    /// server." (Common Errors). The call is not served.
    ServiceUnavailable,
    /// 500 `ResourceContention`, the one error the model lists for both lifecycle actions
    /// (`ResourceContentionFault`: "code":"ResourceContention", "httpStatusCode":500,
    /// "senderFault":true in the Auto Scaling service model). The call is not served.
    ResourceContention,
    /// The call is served normally after this delay.
    Delay(Duration),
    /// The call IS served (an action completes, a heartbeat counts), then answered 500
    /// `InternalFailure`, as when the service applied a change and the answer was lost. A client
    /// that retries then meets "No active Lifecycle Action found ...".
    InternalFailureAfterServing,
}

impl Fault {
    /// The error a refusing fault answers with.
    pub(crate) fn error(&self) -> Option<AwsError> {
        match self {
            Fault::Throttling => Some(AwsError::sender(400, "Throttling", "Rate exceeded")),
            Fault::InternalFailure | Fault::InternalFailureAfterServing => {
                Some(AwsError::internal_failure())
            }
            Fault::ServiceUnavailable => Some(AwsError::receiver(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )),
            // The model's documentation of the shape; the service's own message is not
            // confirmed.
            Fault::ResourceContention => Some(AwsError::sender(
                500,
                "ResourceContention",
                "You already have a pending update to an Amazon EC2 Auto Scaling resource (for \
                 example, an Auto Scaling group, instance, or load balancer).",
            )),
            Fault::Delay(_) => None,
        }
    }
}

/// One pending rule: the next `remaining` matching calls get `fault`.
#[derive(Debug)]
struct Rule {
    fault: Fault,
    remaining: usize,
    /// The `Action` parameter to match, or any.
    action: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    all: Option<Fault>,
    rules: Vec<Rule>,
}

impl Faults {
    pub(crate) fn fail_all(&mut self, fault: Option<Fault>) {
        self.all = fault;
    }

    pub(crate) fn fail_next(&mut self, action: Option<&str>, fault: Fault, times: usize) {
        if times == 0 {
            return;
        }
        self.rules.push(Rule {
            fault,
            remaining: times,
            action: action
                .filter(|a| !a.is_empty() && *a != "*")
                .map(str::to_string),
        });
    }

    pub(crate) fn clear(&mut self) {
        self.all = None;
        self.rules.clear();
    }

    /// The fault for a call with this `Action` (if it has one), counted against the first
    /// matching rule; rules apply in the order they were added.
    pub(crate) fn take(&mut self, action: Option<&str>) -> Option<Fault> {
        if let Some(fault) = &self.all {
            return Some(fault.clone());
        }
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.action.as_deref().is_none_or(|a| Some(a) == action))?;
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        self.rules.retain(|r| r.remaining > 0);
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_down_and_filter_by_action() {
        let mut f = Faults::default();
        f.fail_next(Some("CompleteLifecycleAction"), Fault::Throttling, 2);
        f.fail_next(None, Fault::InternalFailure, 1);
        assert_eq!(
            f.take(Some("CompleteLifecycleAction")),
            Some(Fault::Throttling)
        );
        assert_eq!(
            f.take(Some("RecordLifecycleActionHeartbeat")),
            Some(Fault::InternalFailure)
        );
        assert_eq!(f.take(Some("RecordLifecycleActionHeartbeat")), None);
        assert_eq!(f.take(None), None);
        assert_eq!(
            f.take(Some("CompleteLifecycleAction")),
            Some(Fault::Throttling)
        );
        assert_eq!(f.take(Some("CompleteLifecycleAction")), None);
        f.fail_all(Some(Fault::ServiceUnavailable));
        assert_eq!(f.take(None), Some(Fault::ServiceUnavailable));
        f.fail_next(Some("*"), Fault::Delay(Duration::from_millis(1)), 5);
        f.clear();
        assert_eq!(f.take(Some("CompleteLifecycleAction")), None);
    }

    #[test]
    fn errors_have_the_services_codes_and_statuses() {
        let e = Fault::Throttling.error().expect("an error");
        assert_eq!((e.status, e.code, e.sender), (400, "Throttling", true));
        let e = Fault::ServiceUnavailable.error().expect("an error");
        assert_eq!(
            (e.status, e.code, e.sender),
            (503, "ServiceUnavailable", false)
        );
        let e = Fault::ResourceContention.error().expect("an error");
        assert_eq!((e.status, e.code), (500, "ResourceContention"));
        assert!(Fault::Delay(Duration::ZERO).error().is_none());
    }
}
