//! The HTTP client `azure_messaging_servicebus` sends every request through: reqwest with the
//! process's rustls, an optional base URL that replaces `https://<namespace>.servicebus.windows.net`
//! (private endpoints, local test servers), and, with workload identity, a Microsoft Entra bearer
//! token in place of the SAS header the crate always signs. It also makes the `BrokerProperties`
//! header safe for the crate's decoding ([`safe_broker_properties`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::error::ErrorKind;
use azure_core::headers::{HeaderName, HeaderValue, Headers};
use azure_core::{Body, Request, Response, StatusCode, Url};

/// Entra's token scope for Service Bus.
pub const SCOPE: &str = "https://servicebus.azure.net/.default";
/// A token is refreshed when less than this remains of it.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The client handed to the crate.
#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
    base: Option<Url>,
    token: Option<Arc<EntraToken>>,
}

impl Transport {
    /// `timeout` bounds each request (a receive waits up to its long-poll time).
    pub fn new(
        base: Option<&str>,
        token: Option<Arc<EntraToken>>,
        timeout: Duration,
    ) -> Result<Transport, TransportError> {
        let base = base
            .map(|b| Url::parse(b).map_err(|e| TransportError::Endpoint(b.to_owned(), e)))
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(TransportError::Client)?;
        Ok(Transport { http, base, token })
    }

    /// The request's URL with scheme, host and port of the base URL, path and query kept.
    pub fn rewrite(&self, url: &Url) -> Url {
        let Some(base) = &self.base else {
            return url.clone();
        };
        let mut out = base.clone();
        let base_path = base.path().trim_end_matches('/');
        out.set_path(&format!("{base_path}{}", url.path()));
        out.set_query(url.query());
        out
    }
}

#[async_trait::async_trait]
impl azure_core::HttpClient for Transport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        let url = self.rewrite(request.url());
        let method = reqwest::Method::from_bytes(request.method().as_ref().as_bytes())
            .map_err(|e| azure_core::Error::new(ErrorKind::DataConversion, e))?;
        let mut req = self.http.request(method, url);
        for (name, value) in request.headers().iter() {
            if self.token.is_some() && name.as_str() == "authorization" {
                continue;
            }
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(token) = &self.token {
            let token = token
                .get()
                .await
                .map_err(|e| azure_core::Error::new(ErrorKind::Credential, e))?;
            req = req.bearer_auth(token);
        }
        req = match request.body() {
            Body::Bytes(bytes) => req.body(bytes.clone()),
            Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    || "streamed request bodies are not supported",
                ));
            }
        };
        let rsp = req
            .send()
            .await
            .map_err(|e| azure_core::Error::new(ErrorKind::Io, DisplayChain(e)))?;
        let status = StatusCode::try_from(rsp.status().as_u16()).map_err(|_| {
            azure_core::Error::with_message(ErrorKind::DataConversion, || {
                format!("invalid status code {}", rsp.status())
            })
        })?;
        let headers: std::collections::HashMap<HeaderName, HeaderValue> = rsp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let v = v.to_str().ok()?;
                let v = match k.as_str() {
                    "brokerproperties" => safe_broker_properties(v).unwrap_or_else(|| v.to_owned()),
                    _ => v.to_owned(),
                };
                Some((
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v),
                ))
            })
            .collect();
        let body = rsp
            .bytes()
            .await
            .map_err(|e| azure_core::Error::new(ErrorKind::Io, DisplayChain(e)))?;
        Ok(Response::new(
            status,
            Headers::from(headers),
            Box::pin(futures::stream::iter([Ok(body)])),
        ))
    }
}

/// `BrokerProperties` as the crate can decode it, or `None` when it can already (the header is
/// then handed over untouched).
///
/// `azure_messaging_servicebus` 0.21 declares `EnqueuedSequenceNumber` as `Option<i32>`
/// (`service_bus/mod.rs`, `struct BrokerProperties`) and turns a failed decode into an error of
/// the whole peek-lock, while Service Bus sequence numbers are 64-bit ("a unique 64-bit integer
/// ... For partitioned entities, the topmost 16 bits reflect the partition identifier", "Message
/// sequencing and timestamps"). One value above 2^31 would fail every receive of its queue, the
/// message staying locked until its lock lapsed, again and again. The router does not read the
/// field, so a value out of `i32` range is dropped (the crate then reads `None`); everything
/// else is kept.
pub fn safe_broker_properties(value: &str) -> Option<String> {
    let mut properties: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value).ok()?;
    let enqueued = properties.get("EnqueuedSequenceNumber")?;
    if enqueued.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) {
        return None;
    }
    properties.remove("EnqueuedSequenceNumber");
    Some(serde_json::Value::Object(properties).to_string())
}

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The configured endpoint is not a URL.
    #[error("endpoint `{0}` is not a URL: {1}")]
    Endpoint(String, #[source] url::ParseError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Microsoft Entra workload identity: exchanges the projected Kubernetes service account token
/// for an access token (OAuth 2.0 client credentials with a federated client assertion), cached
/// until five minutes before it expires. The token file is read at each exchange, as the kubelet
/// rotates it.
#[derive(Debug)]
pub struct EntraToken {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    token_file: PathBuf,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A setting is missing from both the config and the environment.
    #[error("workload identity needs `{0}` (or the environment variable `{1}`)")]
    Missing(&'static str, &'static str),
    /// The service account token could not be read.
    #[error("cannot read the federated token file {path}: {source}")]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token endpoint could not be reached.
    #[error("cannot reach the Entra token endpoint: {0}")]
    Request(#[source] DisplayChain<reqwest::Error>),
    /// The token endpoint refused.
    #[error("the Entra token endpoint answered {status}: {error}: {description}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// OAuth error code.
        error: String,
        /// Its description.
        description: String,
    },
    /// The answer was not a token.
    #[error("the Entra token endpoint's answer is not a token: {0}")]
    Malformed(#[source] serde_json::Error),
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(serde::Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl EntraToken {
    /// From the config's settings, else the variables the AKS workload identity webhook injects.
    pub fn new(
        client_id: Option<&str>,
        tenant_id: Option<&str>,
        token_file: Option<&str>,
        authority_host: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<EntraToken, TokenError> {
        let pick = |v: Option<&str>, key: &'static str, var: &'static str| {
            v.map(str::to_owned)
                .or_else(|| env(var).filter(|s| !s.is_empty()))
                .ok_or(TokenError::Missing(key, var))
        };
        let client_id = pick(client_id, "client_id", "AZURE_CLIENT_ID")?;
        let tenant_id = pick(tenant_id, "tenant_id", "AZURE_TENANT_ID")?;
        let token_file = pick(token_file, "token_file", "AZURE_FEDERATED_TOKEN_FILE")?;
        let authority = authority_host
            .map(str::to_owned)
            .or_else(|| env("AZURE_AUTHORITY_HOST").filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "https://login.microsoftonline.com/".into());
        let token_url = format!(
            "{}/{tenant_id}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| TokenError::Request(DisplayChain(e)))?;
        Ok(EntraToken {
            http,
            token_url,
            client_id,
            token_file: PathBuf::from(token_file),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token, from the cache or a new exchange.
    pub async fn get(&self) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && expires.saturating_duration_since(Instant::now()) > REFRESH_BEFORE
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.exchange().await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn exchange(&self) -> Result<(String, Duration), TokenError> {
        let assertion =
            std::fs::read_to_string(&self.token_file).map_err(|source| TokenError::ReadToken {
                path: self.token_file.clone(),
                source,
            })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", SCOPE)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion.trim())
            .finish();
        let rsp = self
            .http
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| TokenError::Request(DisplayChain(e)))?;
        let status = rsp.status();
        let body = rsp
            .bytes()
            .await
            .map_err(|e| TokenError::Request(DisplayChain(e)))?;
        if !status.is_success() {
            let e: TokenErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
            return Err(TokenError::Rejected {
                status: status.as_u16(),
                error: e.error,
                description: e.error_description,
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(TokenError::Malformed)?;
        Ok((token.access_token, Duration::from_secs(token.expires_in)))
    }
}

/// An error shown with its causes on one line (reqwest hides the interesting part in them).
#[derive(Debug)]
pub struct DisplayChain<E>(pub E);

impl<E: std::error::Error> std::fmt::Display for DisplayChain<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl<E: std::error::Error> std::error::Error for DisplayChain<E> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_replaces_scheme_host_and_port_only() {
        let t =
            Transport::new(Some("http://127.0.0.1:9000"), None, Duration::from_secs(1)).unwrap();
        let url =
            Url::parse("https://ns.servicebus.windows.net/q/messages/head?timeout=30").unwrap();
        assert_eq!(
            t.rewrite(&url).as_str(),
            "http://127.0.0.1:9000/q/messages/head?timeout=30"
        );
        let t = Transport::new(None, None, Duration::from_secs(1)).unwrap();
        assert_eq!(t.rewrite(&url), url);
        assert!(Transport::new(Some("not a url"), None, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn an_enqueued_sequence_number_beyond_i32_is_dropped_and_the_rest_kept() {
        let header = |n: &str| {
            format!(
                r#"{{"DeliveryCount":1,"EnqueuedSequenceNumber":{n},"EnqueuedTimeUtc":"Wed, 02 Jul 2014 01:32:27 GMT","LockToken":"7da9cfd5-40d5-4bb1-8d64-ec5a52e1c547","LockedUntilUtc":"Wed, 02 Jul 2014 01:33:27 GMT","MessageId":"m","SequenceNumber":281474976710661,"State":"Active","TimeToLive":10}}"#
            )
        };
        for n in [
            "2147483648",
            "281474976710661",
            "-2147483649",
            "18446744073709551615",
        ] {
            let safe = safe_broker_properties(&header(n)).expect("rewritten");
            let v: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert!(v.get("EnqueuedSequenceNumber").is_none(), "{n}: {safe}");
            assert_eq!(v["SequenceNumber"], 281_474_976_710_661_i64);
            assert_eq!(v["LockToken"], "7da9cfd5-40d5-4bb1-8d64-ec5a52e1c547");
            // What the crate decodes it into.
            let props: azure_messaging_servicebus::service_bus::BrokerProperties =
                safe.parse().expect("the crate decodes it");
            assert_eq!(props.enqueued_sequence_number, None);
            assert_eq!(props.sequence_number, 281_474_976_710_661);
        }
        for n in ["0", "2147483647", "-5"] {
            assert_eq!(safe_broker_properties(&header(n)), None, "{n} fits");
        }
        assert_eq!(safe_broker_properties(r#"{"DeliveryCount":1}"#), None);
        assert_eq!(safe_broker_properties("not json"), None);
    }

    #[test]
    fn workload_identity_settings_come_from_the_environment_or_fail_by_name() {
        let env = |k: &str| match k {
            "AZURE_CLIENT_ID" => Some("client".to_owned()),
            "AZURE_TENANT_ID" => Some("tenant".to_owned()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some("/var/run/token".to_owned()),
            _ => None,
        };
        let t = EntraToken::new(None, None, None, None, env).unwrap();
        assert_eq!(
            t.token_url,
            "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
        );
        assert_eq!(t.client_id, "client");
        let t = EntraToken::new(Some("c2"), None, None, Some("http://127.0.0.1:1/"), env).unwrap();
        assert_eq!(t.token_url, "http://127.0.0.1:1/tenant/oauth2/v2.0/token");
        assert_eq!(t.client_id, "c2");
        let e = EntraToken::new(None, None, None, None, |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "workload identity needs `client_id` (or the environment variable `AZURE_CLIENT_ID`)"
        );
    }
}
