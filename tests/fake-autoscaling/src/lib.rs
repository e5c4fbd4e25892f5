//! A narrow fake of the Amazon EC2 Auto Scaling Query API: lifecycle actions only.
//!
//! It serves plain HTTP/1.1 on `127.0.0.1` and answers the two calls the router makes on an
//! instance held by a termination lifecycle hook, as `aws-sdk-autoscaling` 1.x sends them (point
//! the client at the fake with `endpoint_url("http://{addr}")`):
//!
//! | action (API reference page)        | request                                                      |
//! |------------------------------------|--------------------------------------------------------------|
//! | CompleteLifecycleAction            | `POST /`, `Action=CompleteLifecycleAction&Version=2011-01-01&LifecycleHookName=..&AutoScalingGroupName=..&LifecycleActionToken=..&LifecycleActionResult=CONTINUE&InstanceId=..` |
//! | RecordLifecycleActionHeartbeat     | `POST /`, `Action=RecordLifecycleActionHeartbeat&Version=2011-01-01&LifecycleHookName=..&AutoScalingGroupName=..&LifecycleActionToken=..&InstanceId=..` |
//!
//! (a GET with the same query string is served too). A served call answers 200 with
//! `<{Action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><{Action}Result/>
//! <ResponseMetadata><RequestId>..</RequestId></ResponseMetadata></{Action}Response>`; a refused
//! one answers the Query protocol's `<ErrorResponse><Error><Type/><Code/><Message/></Error>
//! <RequestId/></ErrorResponse>`, with the code, status and message the service gives:
//!
//! | refusal                                            | status | code                         | message                                                   |
//! |----------------------------------------------------|--------|------------------------------|-----------------------------------------------------------|
//! | no `Authorization` header                          | 403    | `MissingAuthenticationToken` | `Request is missing Authentication Token`                 |
//! | a header that is not a complete SigV4 header       | 400    | `IncompleteSignature`        | `Authorization header requires 'Credential' parameter. ...` |
//! | an access key the fake was not given               | 403    | `InvalidClientTokenId`       | `The security token included in the request is invalid.`  |
//! | a credential scope for another region or service   | 403    | `SignatureDoesNotMatch`      | `Credential should be scoped to a valid region, not 'eu-west-1'. ` |
//! | no `Action`                                        | 400    | `MissingAction`              | `Missing Action`                                          |
//! | another `Action` or `Version`                      | 400    | `InvalidAction`              | `Could not find operation DescribeAutoScalingGroups for version 2011-01-01` |
//! | a parameter breaking the model's constraints       | 400    | `ValidationError`            | `1 validation error detected: Value null at 'lifecycleHookName' failed to satisfy constraint: Member must not be null` |
//! | neither token nor instance ID                      | 400    | `ValidationError`            | `Either LifecycleActionToken or InstanceId must be specified.` (not confirmed) |
//! | a result other than `CONTINUE`/`ABANDON`           | 400    | `ValidationError`            | `Invalid value 'X' for LifecycleActionResult: ...` (not confirmed) |
//! | a group without the tag the caller's policy needs  | 403    | `AccessDenied`               | `User: arn:aws:sts::.. is not authorized to perform: autoscaling:CompleteLifecycleAction on resource: arn:aws:autoscaling:..:autoScalingGroup:<id>:autoScalingGroupName/<name> because no identity-based policy allows the autoscaling:CompleteLifecycleAction action` |
//! | no pending action for the token                    | 400    | `ValidationError`            | `No active Lifecycle Action found with token <token>`     |
//! | no pending action for the instance (no token sent) | 400    | `ValidationError`            | `No active Lifecycle Action found with instance ID <id>`  |
//!
//! "No pending action" covers an unknown group or hook, a token of another action, an action
//! already completed, and one whose time ran out: the service answers an unknown hook with the
//! same sentence (convox/rack issue 2432, a Spot group with no hooks at all: "No active
//! Lifecycle Action found with instance ID i-09c7205a117f0d09a"). Injected faults
//! ([`FakeAutoScaling::fail_next`], [`Fault`]) answer 400 `Throttling` "Rate exceeded",
//! 500 `InternalFailure`, 503 `ServiceUnavailable`, 500 `ResourceContention`, or late.
//!
//! Faked: groups with tags, hooks (transition, heartbeat timeout, default result, the global
//! timeout `min(100 × heartbeat timeout, 48 h)`), actions started by the test
//! ([`FakeAutoScaling::start_lifecycle_action`]) that end by CompleteLifecycleAction or when a
//! timeout passes, heartbeats that restart the heartbeat timeout but never pass the global one,
//! and the IAM condition `autoscaling:ResourceTag/<key> = <value>`
//! ([`FakeAutoScaling::require_group_tag`]). Time follows Tokio's clock
//! ([`tokio::time::Instant`]), and expiry is evaluated on each call and each inspection, so no
//! timer runs and inspection is always current; a test with a paused clock can
//! `tokio::time::advance` past a deadline.
//!
//! Not faked: the signature (the `Authorization` header is parsed, the key and scope checked,
//! the HMAC never verified), request expiry, `X-Amz-Security-Token`, every
//! other action (they answer `InvalidAction`), launching or terminating anything, notifications
//! to SQS, SNS or EventBridge, IAM beyond the one tag condition, warm pools, and TLS.
//!
//! ```text
//! let asg = FakeAutoScaling::new("us-east-1");
//! asg.add_access_key("AKIDEXAMPLE");
//! asg.add_group("spot-nodes", &[("eviction-router/managed", "true")]);
//! asg.add_hook("spot-nodes", Hook { heartbeat_timeout: Duration::from_millis(500), ..Hook::terminating("drain") });
//! let addr = asg.start().await?;          // 127.0.0.1:PORT
//! let token = asg.start_lifecycle_action("spot-nodes", "drain", "i-0123456789abcdef0");
//! // ... run the router against http://{addr} ...
//! assert_eq!(asg.actions()[0].state, ActionState::Completed { result: LifecycleResult::Continue });
//! asg.fail_next(Fault::Throttling, 2);    // the next two calls answer Throttling
//! ```

mod auth;
mod faults;
mod model;
mod service;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

pub use faults::Fault;
pub use model::{
    ActionState, ActionView, DEFAULT_HEARTBEAT_TIMEOUT, Hook, LifecycleResult, MAX_GLOBAL_TIMEOUT,
    MAX_HEARTBEAT_TIMEOUT, Transition,
};

use auth::Credentials;
use faults::Faults;
use model::Model;
use service::AwsError;

/// The account the fake's ARNs name.
pub const ACCOUNT_ID: &str = "123456789012";

/// The principal an access key added with [`FakeAutoScaling::add_access_key`] signs as: an
/// assumed role, as a Pod's IRSA or EKS Pod Identity credentials are.
pub const DEFAULT_PRINCIPAL: &str =
    "arn:aws:sts::123456789012:assumed-role/eviction-router/eviction-router";

/// One call as the fake answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The `Action` parameter, if any.
    pub action: Option<String>,
    /// Every decoded parameter, `Action` and `Version` included, in the order sent (query
    /// string first, then the form body).
    pub params: Vec<(String, String)>,
    pub status: u16,
    /// The error `Code`, or `None` for a 200.
    pub code: Option<String>,
    /// The access key ID of the `Authorization` header's credential, known or not.
    pub access_key: Option<String>,
    /// The `RequestId` of the answer (also its `x-amzn-RequestId` header).
    pub request_id: String,
}

impl RequestRecord {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the handles and the server tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    region: String,
    account_id: String,
    model: Mutex<Model>,
    credentials: Mutex<Credentials>,
    /// The `autoscaling:ResourceTag/<key>` = `<value>` condition of the caller's policy.
    required_tag: Mutex<Option<(String, String)>>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RequestRecord>>,
    /// Bumped by [`FakeAutoScaling::stop`]; servers end on a change.
    stop: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs `f` on the model after ending the actions whose time ran out.
    pub(crate) fn with_model<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut model = lock(&self.model);
        model.sweep(tokio::time::Instant::now());
        f(&mut model)
    }

    pub(crate) fn authenticate(
        &self,
        header: Option<&str>,
        has_date: bool,
    ) -> Result<auth::Caller, AwsError> {
        auth::authenticate(&lock(&self.credentials), &self.region, header, has_date)
    }

    pub(crate) fn required_tag(&self) -> Option<(String, String)> {
        lock(&self.required_tag).clone()
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        lock(&self.log).push(record);
    }

    fn stop(&self) {
        self.stop.send_modify(|generation| *generation += 1);
    }
}

/// A random version 4 UUID, the form of lifecycle action tokens ("A universally unique
/// identifier (UUID) that identifies a specific lifecycle action", CompleteLifecycleAction) and
/// of request IDs.
pub(crate) fn uuid() -> String {
    let mut bytes = [0u8; 16];
    for b in &mut bytes {
        *b = fastrand::u8(..);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Ends the servers when the last [`FakeAutoScaling`] clone goes away.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One fake Auto Scaling endpoint (one account, one region). Cheap to clone; every clone sees
/// the same state, and its servers run until [`FakeAutoScaling::stop`] or until the last clone
/// is dropped.
#[derive(Clone, Debug)]
pub struct FakeAutoScaling {
    owner: Arc<Owner>,
}

impl FakeAutoScaling {
    /// An endpoint for `region` (the region requests must be signed for) in account
    /// [`ACCOUNT_ID`], with no groups and no access keys.
    pub fn new(region: &str) -> Self {
        let shared = Shared {
            region: region.to_string(),
            account_id: ACCOUNT_ID.to_string(),
            model: Mutex::new(Model::default()),
            credentials: Mutex::new(Credentials::default()),
            required_tag: Mutex::new(None),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            stop: watch::Sender::new(0),
        };
        FakeAutoScaling {
            owner: Arc::new(Owner(Arc::new(shared))),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.0
    }

    pub fn region(&self) -> &str {
        &self.shared().region
    }

    /// Accepts requests signed with this access key ID (any secret: signatures are not
    /// verified), as [`DEFAULT_PRINCIPAL`].
    pub fn add_access_key(&self, access_key_id: &str) {
        self.add_access_key_for(access_key_id, DEFAULT_PRINCIPAL);
    }

    /// Accepts requests signed with this access key ID as `principal_arn`, the ARN an
    /// AccessDenied message names.
    pub fn add_access_key_for(&self, access_key_id: &str, principal_arn: &str) {
        lock(&self.shared().credentials).add(access_key_id, principal_arn);
    }

    /// Creates an Auto Scaling group with tags, or adds the tags to an existing one.
    ///
    /// # Panics
    /// If the name is empty or longer than 1600 characters.
    pub fn add_group(&self, name: &str, tags: &[(&str, &str)]) {
        self.shared()
            .with_model(|m| m.add_group(name, tags, uuid()));
    }

    /// Adds a lifecycle hook to a group, or replaces the hook of that name (actions already
    /// started keep their settings).
    ///
    /// # Panics
    /// If the group does not exist, or the hook's name or timeouts are ones the service
    /// refuses (a heartbeat timeout of zero or above 7200 s, a global timeout above the
    /// service's).
    pub fn add_hook(&self, group: &str, hook: Hook) {
        self.shared().with_model(|m| m.add_hook(group, hook));
    }

    /// From now on the caller may act only on groups tagged `key` = `value`, as under the IAM
    /// policy `"Condition": {"StringEquals": {"autoscaling:ResourceTag/<key>": "<value>"}}`
    /// (the `autoScalingGroup` resource of both actions carries that condition key, per the
    /// Service Authorization Reference for Amazon EC2 Auto Scaling). A call on another group, or on a group that does not exist,
    /// answers 403 AccessDenied.
    pub fn require_group_tag(&self, key: &str, value: &str) {
        *lock(&self.shared().required_tag) = Some((key.to_string(), value.to_string()));
    }

    /// Lets the caller act on every group again (the default).
    pub fn allow_all_groups(&self) {
        *lock(&self.shared().required_tag) = None;
    }

    /// Puts `instance_id` in the hook's wait state (`Terminating:Wait` for a terminating hook),
    /// as the group does when it terminates the instance, and returns the action's token (a
    /// random UUID). The heartbeat and global timeouts start now.
    ///
    /// # Panics
    /// If the group or hook does not exist, the instance ID is not 1 to 19 characters, or the
    /// instance already waits on this hook.
    pub fn start_lifecycle_action(&self, group: &str, hook: &str, instance_id: &str) -> String {
        let token = uuid();
        self.start_lifecycle_action_with_token(group, hook, instance_id, &token);
        token
    }

    /// Like [`Self::start_lifecycle_action`] with a chosen token (36 characters, unused).
    ///
    /// # Panics
    /// As [`Self::start_lifecycle_action`], or if the token is not 36 characters or is in use.
    pub fn start_lifecycle_action_with_token(
        &self,
        group: &str,
        hook: &str,
        instance_id: &str,
        token: &str,
    ) {
        let now = tokio::time::Instant::now();
        self.shared()
            .with_model(|m| m.start(now, group, hook, instance_id, token.to_string()));
    }

    /// Every lifecycle action started so far, oldest first, with the ones whose time ran out
    /// already ended.
    pub fn actions(&self) -> Vec<ActionView> {
        self.shared().with_model(|m| m.actions())
    }

    /// The action with this token.
    pub fn action(&self, token: &str) -> Option<ActionView> {
        self.actions().into_iter().find(|a| a.token == token)
    }

    /// Every call answered so far, in the order the answers were made.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared().log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared().log).clear();
    }

    /// The next `times` calls, whatever they are, get `fault`, before authentication or any
    /// other processing.
    pub fn fail_next(&self, fault: Fault, times: usize) {
        self.shared().faults().fail_next(None, fault, times);
    }

    /// Like [`Self::fail_next`], for calls with this `Action` (e.g.
    /// `"CompleteLifecycleAction"`; `"*"` or `""` for any).
    pub fn fail_next_for(&self, action: &str, fault: Fault, times: usize) {
        self.shared().faults().fail_next(Some(action), fault, times);
    }

    /// Every call gets `fault` until called with `None`.
    pub fn fail_all(&self, fault: Option<Fault>) {
        self.shared().faults().fail_all(fault);
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.shared().faults().clear();
    }

    /// Serves the endpoint on `127.0.0.1` (a free port) from a spawned task and returns the
    /// address; this handle (and its clones) drives and inspects it. Needs a Tokio runtime;
    /// may be called again (after [`Self::stop`] too) for another server on the same state.
    pub async fn start(&self) -> io::Result<SocketAddr> {
        self.start_on(0).await
    }

    /// Like [`Self::start`] on a given port (0 picks a free one), e.g. to come back on the same
    /// address after [`Self::stop`].
    pub async fn start_on(&self, port: u16) -> io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let shared = self.shared().clone();
        let mut stopped = shared.stop.subscribe();
        let app = service::router(shared);
        tokio::spawn(async move {
            let shutdown = async move {
                // Err only if the sender is gone, which also means stop.
                let _ = stopped.changed().await;
            };
            // An accept error ends the server; tests then see connection errors.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(addr)
    }

    /// Stops every server started so far. Groups, actions, credentials and the request log
    /// stay.
    pub fn stop(&self) {
        self.shared().stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_version_4_uuids() {
        let t = uuid();
        assert_eq!(t.len(), 36);
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(uuid(), t);
    }
}
