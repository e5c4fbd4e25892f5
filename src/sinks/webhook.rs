//! The webhook sink: each event POSTed as a structured-mode CloudEvent
//! (`Content-Type: application/cloudevents+json`), signed with HMAC-SHA256 when a key is set,
//! retried with exponential backoff and jitter.
//!
//! A consumer verifies the signature header, `sha256=<hex>`, as the HMAC-SHA256 of the raw
//! request body under the shared key.

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

/// `sha256=<hex HMAC-SHA256 of body under key>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
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
                request = request.header(self.signature_header.clone(), signature(key, body));
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
    fn signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
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
