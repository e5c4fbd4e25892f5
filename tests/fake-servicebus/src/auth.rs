//! The `Authorization` header: Shared Access Signature tokens and registered bearer tokens.
//!
//! The SAS rules are those of "Service Bus access control with Shared Access Signatures"
//! (learn.microsoft.com, azure/service-bus-messaging/service-bus-sas): the token is
//! `SharedAccessSignature sig=<signature-string>&se=<expiry>&skn=<keyName>&sr=<URL-encoded-resourceURI>`
//! (fields in any order), the signature is the base64 HMAC-SHA256, keyed with the rule's key, of
//! the URL-encoded resource URI, a newline and the expiry in seconds since the Unix epoch, and
//! "a SAS token is valid for all resources under the `<resourceURI>` used in the
//! signature-string". That page's own samples key the HMAC with the key string's bytes
//! (`Encoding.UTF8.GetBytes(key)`), and so does `azure_messaging_servicebus` (it base64-encodes the
//! key and `azure_core::hmac::hmac_sha256` decodes it again).
//!
//! What the fake does not check: the rule's rights (Send, Listen, Manage) — every key may do
//! everything — and anything about bearer tokens beyond their being registered.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The keys and tokens a fake namespace accepts.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    /// Shared access authorization rules: key name to key (as the portal shows it).
    keys: HashMap<String, String>,
    bearer_tokens: HashSet<String>,
}

impl Credentials {
    pub(crate) fn add_key(&mut self, key_name: &str, key: &str) {
        self.keys.insert(key_name.to_string(), key.to_string());
    }

    pub(crate) fn add_bearer_token(&mut self, token: &str) {
        self.bearer_tokens.insert(token.to_string());
    }
}

/// What the request presented, for the request log: `"sas"`, `"bearer"` or `"none"` (no
/// `Authorization` header, or a scheme the fake does not know). Says nothing of validity.
pub(crate) fn presented(header: Option<&str>) -> &'static str {
    match header.map(scheme) {
        Some(Scheme::Sas(_)) => "sas",
        Some(Scheme::Bearer(_)) => "bearer",
        Some(Scheme::Other) | None => "none",
    }
}

enum Scheme<'a> {
    Sas(&'a str),
    Bearer(&'a str),
    Other,
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn scheme(header: &str) -> Scheme<'_> {
    let header = header.trim();
    if let Some(rest) = strip_prefix_ignore_case(header, "SharedAccessSignature ") {
        Scheme::Sas(rest.trim())
    } else if let Some(rest) = strip_prefix_ignore_case(header, "Bearer ") {
        Scheme::Bearer(rest.trim())
    } else {
        Scheme::Other
    }
}

/// Why a request was refused; the text becomes the `<Detail>` of the 401 answer. The prefixes
/// are the service's error codes where the service's wording is known:
/// - `MalformedToken: Invalid authorization header: The request is missing WRAP authorization
///   credentials.` is the service's answer to a request without usable credentials
///   (quoted in github.com/Azure/azure-service-bus-dotnet issue 603);
/// - `InvalidSignature: The token has an invalid signature.` and `InvalidAudience: The
///   authorization header contains a token with a wrong audience.` are the service's answers to
///   a bad signature and to a token whose `sr` does not cover the entity (quoted in
///   github.com/sandrinodimattia/RedDog issue 4);
/// - `ExpiredToken` is the service's code for an expired token (github.com/Azure/azure-sdk-for-node
///   issue 1403); the sentence after it is the fake's.
///
/// The service's wording for an unknown key name and for an unknown bearer token could not be
/// confirmed; the fake answers `InvalidSignature` for the first and its own sentence for the
/// second. All are 401: every runtime operation's reference page lists "401 Authorization
/// failure." and no other status for credentials.
pub(crate) fn authorize(
    credentials: &Credentials,
    host: &str,
    header: Option<&str>,
    request_path: &str,
    now: SystemTime,
) -> Result<(), String> {
    const MISSING: &str = "MalformedToken: Invalid authorization header: The request is missing \
                           WRAP authorization credentials.";
    let Some(header) = header else {
        return Err(MISSING.to_string());
    };
    match scheme(header) {
        Scheme::Other => Err(MISSING.to_string()),
        Scheme::Bearer(token) => {
            if credentials.bearer_tokens.contains(token) {
                Ok(())
            } else {
                Err("Unauthorized: the bearer token is not one this namespace accepts.".to_string())
            }
        }
        Scheme::Sas(fields) => check_sas(credentials, host, fields, request_path, now),
    }
}

fn check_sas(
    credentials: &Credentials,
    host: &str,
    fields: &str,
    request_path: &str,
    now: SystemTime,
) -> Result<(), String> {
    const INVALID_SIGNATURE: &str = "InvalidSignature: The token has an invalid signature.";
    let mut sr = None;
    let mut sig = None;
    let mut se = None;
    let mut skn = None;
    for pair in fields.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sr" => sr = Some(value),
            "sig" => sig = Some(value),
            "se" => se = Some(value),
            "skn" => skn = Some(value),
            _ => {}
        }
    }
    let (Some(sr), Some(sig), Some(se), Some(skn)) = (sr, sig, se, skn) else {
        return Err(
            "MalformedToken: a SharedAccessSignature needs sr, sig, se and skn.".to_string(),
        );
    };
    let Ok(expiry) = se.parse::<u64>() else {
        return Err(format!(
            "MalformedToken: the expiry se={se:?} is not a number."
        ));
    };
    let key = credentials
        .keys
        .get(&percent_decode(skn))
        .ok_or_else(|| INVALID_SIGNATURE.to_string())?;
    // The string to sign holds `sr` exactly as sent, still URL-encoded.
    let mut mac = HmacSha256::new_from_slice(key.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(format!("{sr}\n{se}").as_bytes());
    let signature = STANDARD
        .decode(percent_decode(sig))
        .map_err(|_| INVALID_SIGNATURE.to_string())?;
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| INVALID_SIGNATURE.to_string())?;
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if expiry < now_secs {
        return Err(format!(
            "ExpiredToken: The token expired at {expiry} (seconds since the Unix epoch)."
        ));
    }
    if !covers(host, &percent_decode(sr), request_path) {
        return Err(
            "InvalidAudience: The authorization header contains a token with a wrong audience."
                .to_string(),
        );
    }
    Ok(())
}

/// Whether the resource URI `sr` (decoded once) covers `request_path` on `host`: same host, and
/// the path is the token's path or lies under it. The scheme may be `https`, `http` or `sb` (the
/// SAS page gives `http://<namespace>.servicebus.windows.net/<entityPath>` and
/// `sb://<namespace>.servicebus.windows.net/<entityPath>`) or absent (the REST reference pages
/// write `sr=<NAMESPACE NAME>.servicebus.windows.net`). A query on the URI is ignored:
/// `azure_messaging_servicebus` signs the full request URL, `?timeout=N` included. Comparison is
/// case-insensitive, as entity names are.
fn covers(host: &str, sr: &str, request_path: &str) -> bool {
    let sr = sr.trim().to_ascii_lowercase();
    let without_scheme = ["https://", "http://", "sb://"]
        .iter()
        .find_map(|scheme| sr.strip_prefix(scheme))
        .unwrap_or(&sr);
    let without_query = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let (sr_host, sr_path) = without_query.split_once('/').unwrap_or((without_query, ""));
    if sr_host != host.to_ascii_lowercase() {
        return false;
    }
    let sr_path = percent_decode(sr_path);
    let sr_path = sr_path.trim_matches('/');
    let request = percent_decode(request_path).to_ascii_lowercase();
    let request = request.trim_matches('/');
    sr_path.is_empty()
        || request == sr_path
        || request
            .strip_prefix(sr_path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decodes `%XX` escapes; `+` stays `+` (base64 signatures contain it, and resource URIs hold no
/// spaces). Invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A SAS token for `resource_uri` that expires at `expiry` (seconds since the Unix epoch), built
/// exactly as `azure_messaging_servicebus` builds its own: `sr` and `sig` form-URL-encoded, the
/// key string's bytes as the HMAC key.
pub fn sas_token_for(resource_uri: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let sr: String = form_urlencoded::byte_serialize(resource_uri.as_bytes()).collect();
    let mut mac = HmacSha256::new_from_slice(key.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = form_urlencoded::byte_serialize(signature.as_bytes()).collect();
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}&skn={key_name}")
}

/// A SAS token (the whole `Authorization` header value) for the queue `queue` of `namespace`,
/// valid for `ttl` from now.
pub fn sas_token(namespace: &str, queue: &str, key_name: &str, key: &str, ttl: Duration) -> String {
    let expiry = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    sas_token_for(
        &format!("https://{namespace}.servicebus.windows.net/{queue}"),
        key_name,
        key,
        expiry,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "ns.servicebus.windows.net";

    fn credentials() -> Credentials {
        let mut c = Credentials::default();
        c.add_key("listen", "c2VjcmV0LWtleQ==");
        c.add_bearer_token("entra-token");
        c
    }

    fn check(header: &str, path: &str) -> Result<(), String> {
        authorize(&credentials(), HOST, Some(header), path, SystemTime::now())
    }

    #[test]
    fn a_token_from_sas_token_is_accepted_for_its_queue_and_below() {
        let token = sas_token(
            "ns",
            "jobs",
            "listen",
            "c2VjcmV0LWtleQ==",
            Duration::from_secs(60),
        );
        assert_eq!(check(&token, "/jobs/messages/head"), Ok(()));
        assert_eq!(check(&token, "/JOBS/messages"), Ok(()));
        assert_eq!(
            check(&token, "/jobs/$DeadLetterQueue/messages/head"),
            Ok(())
        );
        assert!(check(&token, "/jobs2/messages").is_err_and(|e| e.starts_with("InvalidAudience")));
        assert!(check(&token, "/other/messages").is_err_and(|e| e.starts_with("InvalidAudience")));
    }

    #[test]
    fn resource_uri_forms() {
        assert!(covers(
            HOST,
            "https://ns.servicebus.windows.net/",
            "/q/messages"
        ));
        assert!(covers(
            HOST,
            "sb://NS.servicebus.windows.net",
            "/q/messages"
        ));
        assert!(covers(HOST, "ns.servicebus.windows.net", "/q/messages"));
        assert!(covers(
            HOST,
            "https://ns.servicebus.windows.net/q/messages/head?timeout=60",
            "/q/messages/head"
        ));
        assert!(covers(
            HOST,
            "http://ns.servicebus.windows.net/q/%24DeadLetterQueue",
            "/q/$deadletterqueue/messages/head"
        ));
        assert!(!covers(
            HOST,
            "https://other.servicebus.windows.net/",
            "/q/messages"
        ));
        assert!(!covers(
            HOST,
            "https://ns.servicebus.windows.net/q/messages/head",
            "/q/messages"
        ));
    }

    #[test]
    fn refusals() {
        let key = "c2VjcmV0LWtleQ==";
        let future = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 600;
        let uri = "https://ns.servicebus.windows.net/jobs";
        let wrong_key = sas_token_for(uri, "listen", "another-key", future);
        assert!(
            check(&wrong_key, "/jobs/messages").is_err_and(|e| e.starts_with("InvalidSignature"))
        );
        let unknown_name = sas_token_for(uri, "send", key, future);
        assert!(
            check(&unknown_name, "/jobs/messages")
                .is_err_and(|e| e.starts_with("InvalidSignature"))
        );
        let expired = sas_token_for(uri, "listen", key, future - 1200);
        assert!(check(&expired, "/jobs/messages").is_err_and(|e| e.starts_with("ExpiredToken")));
        // A tampered sr no longer matches the signature.
        let tampered = sas_token_for(uri, "listen", key, future).replace("jobs", "other");
        assert!(
            check(&tampered, "/other/messages").is_err_and(|e| e.starts_with("InvalidSignature"))
        );
        assert!(
            check("SharedAccessSignature sr=x", "/jobs/messages")
                .is_err_and(|e| e.starts_with("MalformedToken"))
        );
        assert!(
            check("Basic dXNlcjpwYXNz", "/jobs/messages")
                .is_err_and(|e| e.starts_with("MalformedToken"))
        );
        assert!(
            authorize(
                &credentials(),
                HOST,
                None,
                "/jobs/messages",
                SystemTime::now()
            )
            .is_err()
        );
        assert_eq!(check("Bearer entra-token", "/jobs/messages"), Ok(()));
        assert!(check("Bearer forged", "/jobs/messages").is_err());
    }

    #[test]
    fn presented_schemes() {
        assert_eq!(presented(Some("SharedAccessSignature sr=a")), "sas");
        assert_eq!(presented(Some("bearer abc")), "bearer");
        assert_eq!(presented(Some("Basic abc")), "none");
        assert_eq!(presented(None), "none");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%2bc+d%"), "a/b+c+d%");
        assert_eq!(
            percent_decode("%24DeadLetterQueue%zz%4"),
            "$DeadLetterQueue%zz%4"
        );
    }
}
