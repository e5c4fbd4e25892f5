//! The `Authorization` check: a Signature Version 4 header whose credential scope names an
//! access key the fake knows, this region, the `autoscaling` service and `aws4_request`.
//!
//! The signature itself is NOT verified: the fake keeps no secret keys and does not rebuild the
//! canonical request, so a request signed with the wrong secret, or altered after signing, is
//! accepted. Nor is the request time checked (`RequestExpired`, "more than 15 minutes after the
//! date stamp", Common Errors). What is checked, and the answers, follow the service.

use std::collections::BTreeMap;

use crate::service::AwsError;

/// The signing name of the service in the credential scope: the `autoscaling` in
/// `Credential=<key>/<date>/<region>/autoscaling/aws4_request` (`endpointPrefix` and SigV4
/// signing name of the Auto Scaling model).
pub(crate) const SERVICE: &str = "autoscaling";

/// The access keys the fake accepts and the principal each signs as.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    keys: BTreeMap<String, String>,
}

impl Credentials {
    pub(crate) fn add(&mut self, access_key_id: &str, principal_arn: &str) {
        self.keys
            .insert(access_key_id.to_string(), principal_arn.to_string());
    }
}

/// The caller of an authenticated request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The ARN IAM names in an AccessDenied message (`User: <arn> is not authorized ...`).
    pub(crate) principal_arn: String,
}

/// The parts of an `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` header.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed<'a> {
    algorithm: &'a str,
    credential: Option<&'a str>,
    signed_headers: Option<&'a str>,
    signature: Option<&'a str>,
}

fn parse(header: &str) -> Parsed<'_> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut parsed = Parsed {
        algorithm,
        ..Parsed::default()
    };
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            parsed.credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            parsed.signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            parsed.signature = Some(v);
        }
    }
    parsed
}

/// The access key ID a header presents, valid or not, for the request log.
pub(crate) fn presented_access_key(header: Option<&str>) -> Option<String> {
    let credential = parse(header?).credential?;
    let key = credential.split('/').next()?;
    (!key.is_empty()).then(|| key.to_string())
}

/// Authenticates a request from its `Authorization` header and whether it carries an
/// `X-Amz-Date` or `Date` header.
pub(crate) fn authenticate(
    credentials: &Credentials,
    region: &str,
    header: Option<&str>,
    has_date: bool,
) -> Result<Caller, AwsError> {
    // "MissingAuthenticationToken: The request must contain either a valid (registered) AWS
    // access key ID or X.509 certificate. HTTP Status Code: 403" (Common Errors of the Query
    // services); the service's message is "Request is missing Authentication Token" (as the
    // scratchstack-aws-signature crate, which reproduces the service's answers, lists it under
    // MissingAuthenticationToken "Sample messages"). Presigned
    // query-string authentication (X-Amz-Signature) is not modelled: such a request counts as
    // unsigned.
    let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
        return Err(AwsError::sender(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    let parsed = parse(header);
    // "IncompleteSignature: The request signature does not conform to AWS standards. HTTP
    // Status Code: 400" (Common Errors). The message lists every missing part and ends with the
    // header, as in the scratchstack-aws-signature crate's test of that wording: "Authorization
    // header requires 'Credential' parameter. Authorization header requires 'Signature'
    // parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header
    // requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256".
    let mut missing = String::new();
    if parsed.credential.is_none() {
        missing.push_str("Authorization header requires 'Credential' parameter. ");
    }
    if parsed.signature.is_none() {
        missing.push_str("Authorization header requires 'Signature' parameter. ");
    }
    if parsed.signed_headers.is_none() {
        missing.push_str("Authorization header requires 'SignedHeaders' parameter. ");
    }
    if !has_date {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header. ",
        );
    }
    if !missing.is_empty() {
        return Err(AwsError::sender(
            400,
            "IncompleteSignature",
            format!("{missing}Authorization={header}"),
        ));
    }
    if parsed.algorithm != "AWS4-HMAC-SHA256" {
        // The wording of the service's answer to another algorithm is not confirmed.
        return Err(AwsError::sender(
            400,
            "IncompleteSignature",
            format!("Unsupported AWS 'algorithm': '{}'.", parsed.algorithm),
        ));
    }
    let credential = parsed.credential.unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, _date, scope_region, scope_service, terminator] = scope[..] else {
        // The wording is the service's as remembered, not confirmed by a public source.
        return Err(AwsError::sender(
            400,
            "IncompleteSignature",
            format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. \
                 keyid/date/region/service/term, got '{credential}'"
            ),
        ));
    };
    // "InvalidClientTokenId: The X.509 certificate or AWS access key ID provided does not exist
    // in our records. HTTP Status Code: 403" (Common Errors); Auto Scaling's message "The
    // security token included in the request is invalid." (Service: AutoScaling, Status Code:
    // 403, in github.com/jenkinsci/ec2-fleet-plugin issue 492).
    let Some(principal_arn) = credentials.keys.get(key) else {
        return Err(AwsError::sender(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    // A credential scope for another region or service is SignatureDoesNotMatch, 403, one
    // sentence per mismatch, each followed by a space: "Credential should be scoped to a valid
    // region, not 'wrong-region'. " (a Query service, SQS, quoted with "Status Code: 403; Error
    // Code: SignatureDoesNotMatch"), "Credential should be scoped to correct service: 'sts'. "
    // and "Credential should be scoped with a valid terminator: 'aws4_request', not 'e'. "
    // (the same wording quoted from other services).
    let mut scope_errors = String::new();
    if scope_region != region {
        scope_errors.push_str(&format!(
            "Credential should be scoped to a valid region, not '{scope_region}'. "
        ));
    }
    if scope_service != SERVICE {
        scope_errors.push_str(&format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        ));
    }
    if terminator != "aws4_request" {
        scope_errors.push_str(&format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             '{terminator}'. "
        ));
    }
    if !scope_errors.is_empty() {
        return Err(AwsError::sender(403, "SignatureDoesNotMatch", scope_errors));
    }
    Ok(Caller {
        principal_arn: principal_arn.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/autoscaling/\
                        aws4_request, SignedHeaders=content-type;host;x-amz-date, \
                        Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn creds() -> Credentials {
        let mut c = Credentials::default();
        c.add("AKIDEXAMPLE", "arn:aws:sts::123456789012:assumed-role/r/s");
        c
    }

    fn code(result: Result<Caller, AwsError>) -> (u16, &'static str, String) {
        let e = result.expect_err("refused");
        (e.status, e.code, e.message)
    }

    #[test]
    fn accepts_a_well_formed_header_for_a_known_key() {
        let caller = authenticate(&creds(), "us-east-1", Some(GOOD), true).expect("accepted");
        assert_eq!(
            caller.principal_arn,
            "arn:aws:sts::123456789012:assumed-role/r/s"
        );
        assert_eq!(
            presented_access_key(Some(GOOD)).as_deref(),
            Some("AKIDEXAMPLE")
        );
    }

    #[test]
    fn refusals() {
        let c = creds();
        assert_eq!(
            code(authenticate(&c, "us-east-1", None, true)),
            (
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token".into()
            )
        );
        assert_eq!(
            code(authenticate(&c, "us-east-1", Some("Bearer abc"), false)),
            (
                400,
                "IncompleteSignature",
                "Authorization header requires 'Credential' parameter. Authorization header \
                 requires 'Signature' parameter. Authorization header requires 'SignedHeaders' \
                 parameter. Authorization header requires existence of either a 'X-Amz-Date' or \
                 a 'Date' header. Authorization=Bearer abc"
                    .into()
            )
        );
        let unknown = GOOD.replace("AKIDEXAMPLE", "AKIDOTHER");
        assert_eq!(
            code(authenticate(&c, "us-east-1", Some(&unknown), true)).1,
            "InvalidClientTokenId"
        );
        let (status, code_, message) = code(authenticate(&c, "eu-west-1", Some(GOOD), true));
        assert_eq!((status, code_), (403, "SignatureDoesNotMatch"));
        assert_eq!(
            message,
            "Credential should be scoped to a valid region, not 'us-east-1'. "
        );
        let wrong_service = GOOD.replace("/autoscaling/", "/ec2/");
        assert_eq!(
            code(authenticate(&c, "us-east-1", Some(&wrong_service), true)).2,
            "Credential should be scoped to correct service: 'autoscaling'. "
        );
        let short = GOOD.replace("/aws4_request", "");
        assert_eq!(
            code(authenticate(&c, "us-east-1", Some(&short), true)).1,
            "IncompleteSignature"
        );
    }
}
