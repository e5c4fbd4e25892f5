//! The webhook sink: each event POSTed as a structured-mode CloudEvent
//! (`Content-Type: application/cloudevents+json`), signed with HMAC-SHA256 when a key is set,
//! retried with exponential backoff and jitter.
//!
//! Signing follows Stripe's and Slack's webhooks: each attempt carries its Unix time in the
//! timestamp header (`X-Eviction-Router-Timestamp: 1764590400`) and, in the signature header,
//! `v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` under the shared key. A consumer recomputes
//! the HMAC, compares in constant time, and refuses a timestamp more than a few minutes from its
//! clock, so a captured delivery cannot be replayed later ([`verify`]; decision record 0009).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SinkError;
use super::config::WebhookSinkConfig;
use crate::metrics::Metrics;

/// The content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE_CLOUDEVENTS: &str = "application/cloudevents+json; charset=utf-8";
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The shortest signing key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// How far a delivery's timestamp may be from the verifier's clock ([`verify`]'s default).
pub const TOLERANCE: Duration = Duration::from_secs(300);

fn mac(key: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under key>`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp header is missing or not a number of seconds.
    #[error("the timestamp is missing or not Unix seconds")]
    BadTimestamp,
    /// The timestamp is further than the tolerance from now: a replay, or a clock off.
    #[error("the timestamp is {0} s away from now")]
    Stale(u64),
    /// No `v1=` signature, or not hex.
    #[error("the signature header holds no v1 signature")]
    BadSignature,
    /// The signature is not the body's.
    #[error("the signature does not match")]
    Mismatch,
}

/// Verifies a delivery as a consumer should: `timestamp` and `signature` are the two header
/// values, `body` the raw request body, `now` the consumer's Unix time.
pub fn verify(
    key: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now.abs_diff(ts);
    if skew > tolerance.as_secs() {
        return Err(VerifyError::Stale(skew));
    }
    // Several comma-separated signatures may come during a key rotation; one must match.
    let mut any = false;
    for sig in signature
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
    {
        let sig = hex::decode(sig).map_err(|_| VerifyError::BadSignature)?;
        any = true;
        if mac(key, ts, body).verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::BadSignature
    })
}

/// The delay before attempt `attempt` (1-based; attempt 1 has none): `initial · 2^(n-2)`,
/// capped, with full jitter in its upper half so that many routers do not retry in step.
pub fn backoff(initial: Duration, attempt: u32) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let exp = initial.saturating_mul(1u32 << (attempt - 2).min(16));
    let capped = exp.min(MAX_BACKOFF);
    let half = capped / 2;
    half + half.mul_f64(fastrand::f64())
}

struct Job {
    body: Bytes,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A running webhook sink.
#[derive(Debug)]
pub struct WebhookSink {
    url: String,
    required: bool,
    tx: mpsc::Sender<Job>,
    /// Cancelled by [`WebhookSink::close`]: no new events, deliver what is queued.
    closing: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("bytes", &self.body.len())
            .finish()
    }
}

struct Deliverer {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    key: Option<Vec<u8>>,
    signature_header: HeaderName,
    timestamp_header: HeaderName,
    max_attempts: u32,
    initial_backoff: Duration,
    metrics: Arc<Metrics>,
}

impl WebhookSink {
    /// Reads the signing key and starts the delivery task.
    pub fn start(
        config: &WebhookSinkConfig,
        metrics: Arc<Metrics>,
    ) -> Result<WebhookSink, SinkError> {
        let key = match (&config.secret_env, &config.secret_file) {
            (Some(var), _) => Some(
                std::env::var(var)
                    .map_err(|_| {
                        SinkError::Setup(format!(
                            "environment variable `{var}` (secret_env) is not set"
                        ))
                    })?
                    .into_bytes(),
            ),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .map(|mut k| {
                        // A mounted Secret often ends with a newline that is not part of the key.
                        while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
                            k.pop();
                        }
                        k
                    })
                    .map_err(|e| {
                        SinkError::Setup(format!("cannot read secret_file {}: {e}", path.display()))
                    })?,
            ),
            (None, None) => None,
        };
        if let Some(key) = &key
            && key.len() < MIN_KEY_BYTES
        {
            let which = if config.secret_env.is_some() {
                "secret_env"
            } else {
                "secret_file"
            };
            return Err(SinkError::Setup(format!(
                "the signing key ({which}) is {} bytes; it must be at least {MIN_KEY_BYTES}",
                key.len()
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SinkError::Setup(e.to_string()))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| SinkError::Setup(e.to_string()))?;
            headers.insert(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_CLOUDEVENTS),
        );
        let signature_header = HeaderName::from_bytes(config.signature_header.as_bytes())
            .map_err(|e| SinkError::Setup(format!("signature_header: {e}")))?;
        let timestamp_header = HeaderName::from_bytes(config.timestamp_header.as_bytes())
            .map_err(|e| SinkError::Setup(format!("timestamp_header: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds))
            .user_agent(concat!("eviction-router/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Setup(e.to_string()))?;
        let deliverer = Deliverer {
            client,
            url: config.url.clone(),
            headers,
            key,
            signature_header,
            timestamp_header,
            max_attempts: config.max_attempts,
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            metrics: metrics.clone(),
        };
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let closing = CancellationToken::new();
        let task = tokio::spawn(deliverer.run(rx, closing.clone()));
        Ok(WebhookSink {
            url: config.url.clone(),
            required: config.required,
            tx,
            closing,
            task: std::sync::Mutex::new(Some(task)),
            metrics,
        })
    }

    /// Hands `line` to the sink. A required sink returns once the event was delivered (or all
    /// attempts failed); a best-effort sink returns at once, dropping the event when full.
    pub async fn publish(&self, line: &str) -> Result<(), SinkError> {
        let body = Bytes::copy_from_slice(line.as_bytes());
        if self.required {
            let (done, wait) = oneshot::channel();
            let failed = |reason: String| SinkError::Webhook {
                url: self.url.clone(),
                reason,
            };
            self.tx
                .send(Job {
                    body,
                    done: Some(done),
                })
                .await
                .map_err(|_| failed("the sink has stopped".into()))?;
            return match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(failed(reason)),
                Err(_) => Err(failed("the sink has stopped".into())),
            };
        }
        if self.tx.try_send(Job { body, done: None }).is_err() {
            tracing::warn!(url = %self.url, "The webhook sink's queue is full; dropped an event for it.");
            self.metrics.sink_delivery("webhook", "dropped");
        }
        Ok(())
    }

    /// Stops taking events and lets the task deliver what it holds, for at most `grace` (each
    /// event gets no retry after the close); what is still queued then is dropped, logged and
    /// counted. Callable through a shared reference, so the sinks are flushed whoever else
    /// still holds the router.
    pub async fn close(&self, grace: Duration) {
        self.closing.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut task) = task else {
            return;
        };
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            // Queued jobs and the one being delivered.
            let left = self.tx.max_capacity() - self.tx.capacity() + 1;
            task.abort();
            self.metrics
                .sink_undelivered_at_shutdown("webhook", &self.url, left);
        }
    }
}

impl Deliverer {
    async fn run(self, mut rx: mpsc::Receiver<Job>, closing: CancellationToken) {
        let mut closed = false;
        loop {
            let job = tokio::select! {
                biased;
                _ = closing.cancelled(), if !closed => {
                    // No new jobs; the queued ones are still received.
                    rx.close();
                    closed = true;
                    continue;
                }
                job = rx.recv() => job,
            };
            let Some(job) = job else { break };
            let result = self.deliver(&job.body, &closing).await;
            if let Some(done) = job.done {
                let _ = done.send(result);
            }
        }
    }

    async fn deliver(&self, body: &Bytes, closing: &CancellationToken) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            // Once the sink closes, an event gets no further retry.
            if attempt > 1 && closing.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(self.initial_backoff, attempt)) => {}
                _ = closing.cancelled() => {}
            }
            let mut request = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .body(body.clone());
            if let Some(key) = &self.key {
                // Signed per attempt: the timestamp is when this attempt was sent.
                let now = jiff::Timestamp::now().as_second();
                request = request
                    .header(self.timestamp_header.clone(), now.to_string())
                    .header(self.signature_header.clone(), signature(key, now, body));
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    self.metrics.sink_delivery("webhook", "delivered");
                    return Ok(());
                }
                Ok(response) => {
                    let status = response.status();
                    last = format!("HTTP {status}");
                    // 4xx other than timeout and throttling will not get better by retrying.
                    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429
                    {
                        break;
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(url = %self.url, attempt, error = %last, "A webhook delivery attempt failed.");
        }
        tracing::warn!(url = %self.url, error = %last, "The webhook did not accept an event.");
        self.metrics.sink_delivery("webhook", "failed");
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2, with the message split as "<timestamp>.<body>".
        let sig = signature(b"Jefe", 1234, b"what do ya want for nothing?");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1234.what do ya want for nothing?");
        assert_eq!(
            sig,
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(
            sig,
            signature(b"Jefe", 1235, b"what do ya want for nothing?")
        );
    }

    #[test]
    fn verification_refuses_replays_tampering_and_other_keys() {
        let key = b"0123456789abcdef0123";
        let body = br#"{"id":"e-1"}"#;
        let t = 1_764_590_400;
        let sig = signature(key, t, body);
        assert_eq!(
            verify(key, "1764590400", &sig, body, t + 10, TOLERANCE),
            Ok(())
        );
        // The same delivery, replayed ten minutes later.
        assert_eq!(
            verify(key, "1764590400", &sig, body, t + 600, TOLERANCE),
            Err(VerifyError::Stale(600))
        );
        // A new timestamp on the old signature.
        assert_eq!(
            verify(key, "1764591000", &sig, body, t + 600, TOLERANCE),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(key, "1764590400", &sig, b"{}", t, TOLERANCE),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                b"another key of 16+",
                "1764590400",
                &sig,
                body,
                t,
                TOLERANCE
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(key, "yesterday", &sig, body, t, TOLERANCE),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(key, "1764590400", "sha256=00", body, t, TOLERANCE),
            Err(VerifyError::BadSignature)
        );
        let rotated = format!("v1=00ff,{sig}");
        assert_eq!(
            verify(key, "1764590400", &rotated, body, t, TOLERANCE),
            Ok(())
        );
    }

    #[tokio::test]
    async fn an_empty_or_short_key_is_refused() {
        let metrics = Arc::new(Metrics::new());
        let dir = std::env::temp_dir().join(format!("er-key-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        for (content, ok) in [
            ("", false),
            ("\n", false),
            ("short-key\n", false),
            ("0123456789abcdef\n", true),
        ] {
            let path = dir.join("key");
            std::fs::write(&path, content).unwrap();
            let config: WebhookSinkConfig = serde_norway::from_str(&format!(
                "url: http://127.0.0.1:9/hook\nsecret_file: {}\n",
                path.display()
            ))
            .unwrap();
            let started = WebhookSink::start(&config, metrics.clone());
            assert_eq!(started.is_ok(), ok, "{content:?}");
            if let Err(e) = started {
                assert!(e.to_string().contains("at least 16"), "{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let initial = Duration::from_millis(200);
        assert_eq!(backoff(initial, 1), Duration::ZERO);
        for attempt in 2..12 {
            let full = initial.saturating_mul(1 << (attempt - 2)).min(MAX_BACKOFF);
            for _ in 0..50 {
                let d = backoff(initial, attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert!(backoff(initial, 40) <= MAX_BACKOFF);
    }
}
