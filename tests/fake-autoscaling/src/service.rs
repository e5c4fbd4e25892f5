//! The HTTP front: the Query protocol (form-encoded `Action=...&Version=2011-01-01&...` in a POST
//! body or a GET query string, XML answers), the order in which a call is checked, the answers
//! of the two lifecycle actions, and the request log.
//!
//! A call is checked in this order: injected faults; authentication ([`crate::auth`]); `Action`
//! and `Version`; parameter constraints; the IAM tag condition
//! ([`crate::FakeAutoScaling::require_group_tag`]); then the lookup of the lifecycle action.
//! The service does not document its order; this one lets each refusal be reached on its own.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::faults::Fault;
use crate::model::{LifecycleResult, NoActiveAction, is_hook_name_char};
use crate::{RequestRecord, Shared, uuid};

/// "Version: 2011-01-01" and `"xmlNamespace":"http://autoscaling.amazonaws.com/doc/2011-01-01/"`
/// (the Auto Scaling service model's metadata; aws-sdk-autoscaling sends
/// `QueryWriter::new(.., "CompleteLifecycleAction", "2011-01-01")`).
pub(crate) const VERSION: &str = "2011-01-01";
const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// An error answer: `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error>
/// <RequestId/></ErrorResponse>`, the Query protocol's error body (aws-sdk-autoscaling parses
/// `Error/Code` and `Error/Message` from it, `rest_xml_wrapped_errors::parse_error_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsError {
    pub(crate) status: u16,
    /// `Type` `Sender` (the caller's fault) or `Receiver` (the service's).
    pub(crate) sender: bool,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl AwsError {
    pub(crate) fn sender(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            sender: true,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn receiver(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            sender: false,
            code,
            message: message.into(),
        }
    }

    /// "InternalFailure: The request processing has failed because of an unknown error,
    /// exception or failure. HTTP Status Code: 500" (Common Errors).
    pub(crate) fn internal_failure() -> Self {
        AwsError::receiver(
            500,
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or \
             failure.",
        )
    }

    /// "ValidationError: The input fails to satisfy the constraints specified by an AWS
    /// service. HTTP Status Code: 400" (Common Errors).
    fn validation(message: impl Into<String>) -> Self {
        AwsError::sender(400, "ValidationError", message)
    }
}

/// The two actions the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Complete,
    Heartbeat,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Complete => "CompleteLifecycleAction",
            Op::Heartbeat => "RecordLifecycleActionHeartbeat",
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A call's decoded parameters, in the order sent (query string first).
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn read(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut params: Vec<(String, String)> = Vec::new();
        if let Some(query) = uri.query() {
            params.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        // "Content-Type: application/x-www-form-urlencoded; charset=utf-8" on a POST (the Query
        // API request examples); a body of another type is not read.
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if method != Method::GET && form {
            params.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(params)
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::read(&method, &uri, &headers, &body);
    let action = params.get("Action").map(str::to_string);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let access_key = crate::auth::presented_access_key(authorization);
    let fault = shared.faults().take(action.as_deref());
    let outcome = match fault {
        None => serve(&shared, &headers, &params),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            serve(&shared, &headers, &params)
        }
        Some(Fault::InternalFailureAfterServing) => {
            // Whatever the call did stays done; the caller only sees the 500.
            let _ = serve(&shared, &headers, &params);
            Err(AwsError::internal_failure())
        }
        Some(fault) => Err(fault.error().unwrap_or_else(AwsError::internal_failure)),
    };
    let request_id = uuid();
    let (response, code) = match outcome {
        Ok(op) => (success(op, &request_id), None),
        Err(e) => {
            let code = e.code.to_string();
            (error_response(&e, &request_id), Some(code))
        }
    };
    shared.record(RequestRecord {
        action,
        params: params.0,
        status: response.status().as_u16(),
        code,
        access_key,
        request_id,
    });
    response
}

fn serve(shared: &Shared, headers: &HeaderMap, params: &Params) -> Result<Op, AwsError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let has_date = headers.contains_key("x-amz-date") || headers.contains_key(header::DATE);
    let caller = shared.authenticate(authorization, has_date)?;
    let op = operation(params)?;

    let mut check = Constraints::default();
    let hook = check.hook_name("lifecycleHookName", params.get("LifecycleHookName"));
    let group = check.resource_name("autoScalingGroupName", params.get("AutoScalingGroupName"));
    let token = check.token("lifecycleActionToken", params.get("LifecycleActionToken"));
    let result = match op {
        Op::Complete => {
            check.required("lifecycleActionResult", params.get("LifecycleActionResult"))
        }
        Op::Heartbeat => None,
    };
    let instance_id = check.instance_id("instanceId", params.get("InstanceId"));
    check.finish()?;
    let (Some(hook), Some(group)) = (hook, group) else {
        // Both are required, so `finish` has already refused their absence.
        return Err(AwsError::internal_failure());
    };
    if token.is_none() && instance_id.is_none() {
        // "specified token or instance" (CompleteLifecycleAction, RecordLifecycleActionHeartbeat):
        // one is needed. The service's wording for neither is not confirmed.
        return Err(AwsError::validation(
            "Either LifecycleActionToken or InstanceId must be specified.",
        ));
    }
    let result = match (op, result) {
        (Op::Complete, Some(value)) => Some(LifecycleResult::parse(value).ok_or_else(|| {
            // "You can specify either CONTINUE or ABANDON." The model types the member as a
            // plain string, so the service refuses other values itself; its wording is not
            // confirmed.
            AwsError::validation(format!(
                "Invalid value '{value}' for LifecycleActionResult: valid values are CONTINUE \
                 and ABANDON."
            ))
        })?),
        _ => None,
    };

    let scope = shared.required_tag();
    shared.with_model(|model| {
        if let Some((key, value)) = scope {
            let group_entry = model.group(group);
            let tagged = group_entry.is_some_and(|g| g.tags.get(&key) == Some(&value));
            if !tagged {
                let id = group_entry.map_or("*", |g| g.uuid.as_str());
                return Err(access_denied(shared, &caller.principal_arn, op, id, group));
            }
        }
        let now = tokio::time::Instant::now();
        let outcome = match (op, result) {
            (Op::Complete, Some(result)) => {
                model.complete(now, group, hook, token, instance_id, result)
            }
            _ => model.heartbeat(now, group, hook, token, instance_id),
        };
        outcome.map_err(|NoActiveAction(message)| AwsError::validation(message))
    })?;
    Ok(op)
}

/// The operation named by `Action` and `Version`.
fn operation(params: &Params) -> Result<Op, AwsError> {
    let Some(action) = params.get("Action") else {
        // "MissingAction: The request is missing an action or a required parameter. HTTP Status
        // Code: 400" (Common Errors of the Query services); the message is not confirmed.
        return Err(AwsError::sender(400, "MissingAction", "Missing Action"));
    };
    let version = params.get("Version");
    match (action, version) {
        ("CompleteLifecycleAction", Some(VERSION)) => Ok(Op::Complete),
        ("RecordLifecycleActionHeartbeat", Some(VERSION)) => Ok(Op::Heartbeat),
        // "InvalidAction: The action or operation requested is invalid. Verify that the action
        // is typed correctly. HTTP Status Code: 400" (Common Errors), in the Query services'
        // wording "Could not find operation <Action> for version <Version>" (as S3Proxy's STS
        // emulation answers), NO_VERSION_SPECIFIED standing for a missing Version. Real Auto
        // Scaling actions that the fake does not serve (DescribeAutoScalingGroups, ...) get this
        // answer too.
        _ => Err(AwsError::sender(
            400,
            "InvalidAction",
            format!(
                "Could not find operation {action} for version {}",
                version.unwrap_or("NO_VERSION_SPECIFIED")
            ),
        )),
    }
}

/// IAM's refusal when no statement allows the call on this group (the project's policy allows
/// the actions only on groups with a tag, `autoscaling:ResourceTag/<key>`): 403 `AccessDenied`,
/// "User: arn:aws:sts::XXXXXXXXXXXX:assumed-role/alternat-lambda-role-.../alternat-autoscaling-hook-contextual
/// is not authorized to perform: autoscaling:CompleteLifecycleAction on resource:
/// arn:aws:autoscaling:us-east-1:XXXXXXXXXXXX:autoScalingGroup:e13e7a23-...:autoScalingGroupName/alternat-nat-contextual...
/// because no identity-based policy allows the autoscaling:CompleteLifecycleAction action"
/// (github.com/chime/terraform-aws-alternat issue 188; the status from "https response error
/// StatusCode: 403 ... api error AccessDenied: User: ... is not authorized to perform:
/// autoscaling:DescribeInstanceRefreshes", hashicorp/nomad-autoscaler issue 952). A group that
/// does not exist has no tags, so the condition fails for it too; its ARN then carries `*` for
/// the group id (the fake's choice: the service's answer for it is not confirmed).
fn access_denied(
    shared: &Shared,
    principal: &str,
    op: Op,
    group_id: &str,
    group: &str,
) -> AwsError {
    let action = op.name();
    AwsError::sender(
        403,
        "AccessDenied",
        format!(
            "User: {principal} is not authorized to perform: autoscaling:{action} on resource: \
             arn:aws:autoscaling:{}:{}:autoScalingGroup:{group_id}:autoScalingGroupName/{group} \
             because no identity-based policy allows the autoscaling:{action} action",
            shared.region, shared.account_id
        ),
    )
}

/// The model's constraints on the members of CompleteLifecycleActionType and
/// RecordLifecycleActionHeartbeatType, checked as the service checks them and reported in its
/// wording: "1 validation error detected: Value '' at 'desiredCapacityType' failed to satisfy
/// constraint: Member must have length greater than or equal to 1" (Auto Scaling's
/// ValidationError, StatusCode 400, hashicorp/terraform-provider-aws issue 37523); several are
/// joined with "; " after "N validation errors detected: ", and an absent required member is
/// "Value null at '<member>' failed to satisfy constraint: Member must not be null".
#[derive(Debug, Default)]
struct Constraints {
    errors: Vec<String>,
}

/// `ResourceName` and `XmlStringMaxLen19`: "Pattern: [\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*".
const XML_STRING_PATTERN: &str = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*";
/// `AsciiStringMaxLen255` (LifecycleHookName): "Pattern: [A-Za-z0-9\-_\/]+".
const HOOK_NAME_PATTERN: &str = r"[A-Za-z0-9\-_\/]+";

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= '\u{20}' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

impl Constraints {
    fn fail(&mut self, value: Option<&str>, member: &str, constraint: &str) {
        let value = value.map_or("null".to_string(), |v| format!("'{v}'"));
        self.errors.push(format!(
            "Value {value} at '{member}' failed to satisfy constraint: {constraint}"
        ));
    }

    fn required<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        if value.is_none() {
            self.fail(None, member, "Member must not be null");
        }
        value
    }

    /// Length in characters between `min` and `max`, then the pattern; `Some` only when valid.
    fn string<'a>(
        &mut self,
        member: &str,
        value: Option<&'a str>,
        (min, max): (usize, usize),
        (pattern, matches): (&str, fn(char) -> bool),
    ) -> Option<&'a str> {
        let v = value?;
        let len = v.chars().count();
        if len < min {
            self.fail(
                value,
                member,
                &format!("Member must have length greater than or equal to {min}"),
            );
        } else if len > max {
            self.fail(
                value,
                member,
                &format!("Member must have length less than or equal to {max}"),
            );
        } else if !v.chars().all(matches) {
            self.fail(
                value,
                member,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        } else {
            return Some(v);
        }
        None
    }

    /// LifecycleHookName: required, `AsciiStringMaxLen255` ("min":1, "max":255).
    fn hook_name<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        let value = self.required(member, value);
        self.string(
            member,
            value,
            (1, 255),
            (HOOK_NAME_PATTERN, is_hook_name_char),
        )
    }

    /// AutoScalingGroupName: required, `ResourceName` ("min":1, "max":1600).
    fn resource_name<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        let value = self.required(member, value);
        self.string(member, value, (1, 1600), (XML_STRING_PATTERN, is_xml_char))
    }

    /// LifecycleActionToken: optional, `LifecycleActionToken` ("min":36, "max":36).
    fn token<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        self.string(member, value, (36, 36), ("", |_| true))
    }

    /// InstanceId: optional, `XmlStringMaxLen19` ("min":1, "max":19).
    fn instance_id<'a>(&mut self, member: &str, value: Option<&'a str>) -> Option<&'a str> {
        self.string(member, value, (1, 19), (XML_STRING_PATTERN, is_xml_char))
    }

    fn finish(self) -> Result<(), AwsError> {
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(AwsError::validation(format!(
                "1 validation error detected: {}",
                self.errors[0]
            ))),
            n => Err(AwsError::validation(format!(
                "{n} validation errors detected: {}",
                self.errors.join("; ")
            ))),
        }
    }
}

/// The answer of a served call: `<CompleteLifecycleActionResponse xmlns="..."><CompleteLifecycleActionResult/>
/// <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata></CompleteLifecycleActionResponse>`
/// (the operation's output is `CompleteLifecycleActionAnswer`, an empty structure, wrapped in
/// `"resultWrapper":"CompleteLifecycleActionResult"`; likewise for the heartbeat). The request
/// id is also sent as `x-amzn-RequestId`, where the SDK reads it from
/// (`aws_types::request_id`, "x-amzn-requestid").
fn success(op: Op, request_id: &str) -> Response {
    let name = op.name();
    let body = format!(
        "<{name}Response xmlns=\"{XMLNS}\">\n  <{name}Result/>\n  <ResponseMetadata>\n    \
         <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{name}Response>\n"
    );
    xml(StatusCode::OK, body, request_id)
}

fn error_response(error: &AwsError, request_id: &str) -> Response {
    let kind = if error.sender { "Sender" } else { "Receiver" };
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        error.code,
        xml_escape(&error.message)
    );
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    xml(status, body, request_id)
}

fn xml(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// Escapes text content (quotes need no escaping there).
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
    }

    #[test]
    fn operations() {
        let p = params(&[("Action", "CompleteLifecycleAction"), ("Version", VERSION)]);
        assert_eq!(operation(&p), Ok(Op::Complete));
        let p = params(&[
            ("Action", "RecordLifecycleActionHeartbeat"),
            ("Version", VERSION),
        ]);
        assert_eq!(operation(&p), Ok(Op::Heartbeat));
        let p = params(&[("Action", "CompleteLifecycleAction")]);
        assert_eq!(
            operation(&p).map_err(|e| e.message),
            Err(
                "Could not find operation CompleteLifecycleAction for version \
                 NO_VERSION_SPECIFIED"
                    .to_string()
            )
        );
        assert_eq!(
            operation(&params(&[])).map_err(|e| e.code),
            Err("MissingAction")
        );
    }

    #[test]
    fn constraint_messages() {
        let mut c = Constraints::default();
        assert_eq!(
            c.hook_name("lifecycleHookName", Some("drain")),
            Some("drain")
        );
        assert_eq!(c.token("lifecycleActionToken", None), None);
        assert!(c.finish().is_ok());

        let mut c = Constraints::default();
        assert_eq!(c.hook_name("lifecycleHookName", None), None);
        assert_eq!(c.token("lifecycleActionToken", Some("short")), None);
        assert_eq!(c.hook_name("x", Some("no spaces")), None);
        assert_eq!(
            c.instance_id("instanceId", Some("i-0123456789abcdef01")),
            None
        );
        assert_eq!(
            c.finish().map_err(|e| e.message),
            Err(
                "4 validation errors detected: Value null at 'lifecycleHookName' failed to \
                 satisfy constraint: Member must not be null; Value 'short' at \
                 'lifecycleActionToken' failed to satisfy constraint: Member must have length \
                 greater than or equal to 36; Value 'no spaces' at 'x' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: \
                 [A-Za-z0-9\\-_\\/]+; Value 'i-0123456789abcdef01' at 'instanceId' failed to \
                 satisfy constraint: Member must have length less than or equal to 19"
                    .to_string()
            )
        );
    }

    #[test]
    fn error_bodies_are_escaped() {
        assert_eq!(xml_escape("a<b>&'\""), "a&lt;b&gt;&amp;'\"");
    }
}
