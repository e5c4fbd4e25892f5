//! The AWS SQS source: long-polls the queue EventBridge delivers to, hands each message to the
//! router, and maps the outcome to SQS calls (docs/design.md §2):
//!
//! | outcome | call |
//! |---|---|
//! | handled, ignored, poison | `DeleteMessage` (batched), poison counted by the router |
//! | retry | `ChangeMessageVisibility` to `retry_visibility_seconds` (doubled per earlier receive, at most the visibility timeout): the message reappears that soon |
//!
//! While a message is being handled its visibility is extended every half timeout, so a slow
//! drain does not let it reappear. Credentials and endpoint come from the standard AWS chain
//! (IRSA, Pod Identity, `AWS_ENDPOINT_URL` for a local endpoint such as moto).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::SqsConfig;
use crate::ack::{Delivery, Pending};
use crate::event::Provider;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::sources::{Backoff, settle_in_flight};

/// The health component name of this source.
pub const COMPONENT: &str = "aws_sqs";
/// How often the queue's backlog is read for `eviction_router_source_backlog_messages`.
const BACKLOG_EVERY: Duration = Duration::from_secs(30);

/// A configured SQS source.
#[derive(Debug, Clone)]
pub struct SqsSource {
    client: Client,
    config: SqsConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl SqsSource {
    /// Resolves credentials and region the standard AWS way.
    pub async fn new(config: SqsConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> SqsSource {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let mut sdk = loader.load().await;
        if sdk.region().is_none()
            && let Some(region) = region_of_queue_url(&config.queue_url)
        {
            // Neither the config nor the environment names a region: the queue URL does.
            sdk = sdk
                .into_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build();
        }
        let client = Client::new(&sdk);
        SqsSource {
            client,
            config,
            metrics,
            health,
        }
    }

    /// Receives until `shutdown`, then waits up to `grace` for in-flight messages and releases
    /// the rest for immediate redelivery.
    pub async fn run(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        // Registered only when it starts receiving: a standby (not leading) stays ready.
        self.health.register(COMPONENT);
        let (delete_tx, delete_rx) = mpsc::channel::<String>(1024);
        let deleter = tokio::spawn(self.clone().delete_loop(delete_rx));
        let backlog = tokio::spawn(self.clone().backlog_loop(shutdown.clone()));
        let release = CancellationToken::new();
        let mut pollers = JoinSet::new();
        for _ in 0..self.config.pollers {
            let in_flight = InFlight {
                delete: delete_tx.clone(),
                release: release.clone(),
            };
            pollers.spawn(
                self.clone()
                    .poll_loop(tx.clone(), shutdown.clone(), in_flight),
            );
        }
        drop(tx);
        drop(delete_tx);
        // Every poller returns its in-flight settle tasks once it stops receiving.
        settle_in_flight(pollers, grace, &release, "SQS").await;
        backlog.abort();
        let _ = tokio::time::timeout(crate::sources::RELEASE_TAIL, deleter).await;
        // A standby reports nothing about a queue it does not read.
        self.health.remove(COMPONENT);
    }

    async fn poll_loop(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        in_flight: InFlight,
    ) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let receive = self
                .client
                .receive_message()
                .queue_url(&self.config.queue_url)
                .max_number_of_messages(self.config.max_messages)
                .wait_time_seconds(self.config.wait_time_seconds)
                .visibility_timeout(self.config.visibility_timeout_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let output = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = receive => r,
            };
            let output = match output {
                Ok(output) => {
                    self.health.ok(COMPONENT);
                    backoff.reset();
                    output
                }
                Err(e) => {
                    let e = aws_sdk_sqs::error::DisplayErrorContext(e);
                    self.metrics.source_error(Provider::Aws, "receive", &e);
                    self.health.failed(COMPONENT, &e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            let received_at = Timestamp::now();
            for message in output.messages.unwrap_or_default() {
                let receives = message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse::<u32>().ok());
                let (Some(body), Some(receipt)) = (message.body, message.receipt_handle) else {
                    continue;
                };
                let (delivery, pending) = Delivery::new(
                    Provider::Aws,
                    Bytes::from(body),
                    received_at,
                    message.message_id,
                );
                let delivery = delivery.with_attempt(receives);
                // Visibility is extended from now on, also while the delivery waits for room
                // in the router. If the router is gone, the dropped delivery settles as retry.
                tasks.spawn(self.clone().settle(
                    pending,
                    receipt,
                    receives.unwrap_or(1),
                    in_flight.clone(),
                ));
                if tx.send(delivery).await.is_err() {
                    return tasks;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        tasks
    }

    /// Waits for the outcome, extending visibility meanwhile, then deletes the message, or on
    /// retry shortens its visibility so that it comes back soon.
    async fn settle(self, pending: Pending, receipt: String, receives: u32, in_flight: InFlight) {
        let visibility = self.config.visibility_timeout_seconds;
        let every = Duration::from_secs((visibility as u64 / 2).max(1));
        let mut extend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = pending.outcome();
        tokio::pin!(outcome);
        let outcome = loop {
            tokio::select! {
                outcome = &mut outcome => break outcome,
                _ = extend.tick() => self.change_visibility(&receipt, visibility, "extend_visibility").await,
                _ = in_flight.release.cancelled() => {
                    self.change_visibility(&receipt, 0, "release").await;
                    return;
                }
            }
        };
        if outcome.removes_message() {
            let _ = in_flight.delete.send(receipt).await;
        } else {
            // Left alone it would come back after a whole (extended) visibility timeout: in an
            // outage of the API server that is where catch-up time goes.
            let visibility = self.config.retry_visibility(receives);
            self.change_visibility(&receipt, visibility, "retry").await;
        }
    }

    async fn change_visibility(&self, receipt: &str, seconds: i32, stage: &'static str) {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.config.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await;
        if let Err(e) = result {
            self.metrics.source_error(
                Provider::Aws,
                stage,
                &aws_sdk_sqs::error::DisplayErrorContext(e),
            );
        }
    }

    /// Deletes settled messages in batches of up to ten.
    async fn delete_loop(self, mut rx: mpsc::Receiver<String>) {
        let mut batch = Vec::with_capacity(10);
        while rx.recv_many(&mut batch, 10).await > 0 {
            self.delete_batch(&batch).await;
            batch.clear();
        }
    }

    async fn delete_batch(&self, receipts: &[String]) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        let result = self
            .client
            .delete_message_batch()
            .queue_url(&self.config.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match result {
            Ok(output) => {
                for failed in output.failed {
                    let reason = format!("{}: {}", failed.code, failed.message.unwrap_or_default());
                    self.metrics.source_error(Provider::Aws, "delete", &reason);
                }
            }
            Err(e) => {
                // The messages reappear after their visibility timeout and are deduplicated.
                self.metrics.source_error(
                    Provider::Aws,
                    "delete",
                    &aws_sdk_sqs::error::DisplayErrorContext(e),
                );
            }
        }
    }

    async fn backlog_loop(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(BACKLOG_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let result = self
                .client
                .get_queue_attributes()
                .queue_url(&self.config.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await;
            match result {
                Ok(output) => {
                    let n = output
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                        .and_then(|v| v.parse::<i64>().ok());
                    if let Some(n) = n {
                        self.metrics.source_backlog(Provider::Aws, n);
                    }
                }
                Err(e) => self.metrics.source_error(
                    Provider::Aws,
                    "queue_attributes",
                    &aws_sdk_sqs::error::DisplayErrorContext(e),
                ),
            }
        }
    }
}

/// The region in a queue URL: `https://sqs.<region>.amazonaws.com/<account>/<name>` (also the
/// `.amazonaws.com.cn` and legacy `<region>.queue.amazonaws.com` forms).
pub fn region_of_queue_url(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut labels = host.split('.');
    match (labels.next()?, labels.next()?) {
        ("sqs", region) if host.contains(".amazonaws.com") => Some(region),
        (region, "queue") if host.contains(".amazonaws.com") => Some(region),
        _ => None,
    }
}

/// What a settle task needs besides its message.
#[derive(Debug, Clone)]
struct InFlight {
    delete: mpsc::Sender<String>,
    release: CancellationToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_message_comes_back_sooner_each_time_up_to_the_visibility_timeout() {
        let config: SqsConfig = serde_norway::from_str(
            "queue_url: https://q\nvisibility_timeout_seconds: 60\nretry_visibility_seconds: 5\n",
        )
        .unwrap();
        let delays: Vec<i32> = (1..=6).map(|n| config.retry_visibility(n)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(config.retry_visibility(0), 5);
        assert_eq!(config.retry_visibility(u32::MAX), 60);
        // The default fits a short visibility timeout: it is capped there.
        let short: SqsConfig =
            serde_norway::from_str("queue_url: https://q\nvisibility_timeout_seconds: 2\n")
                .unwrap();
        assert_eq!(short.validate(), Ok(()));
        assert_eq!(short.retry_visibility(1), 2);
    }

    #[test]
    fn the_region_comes_from_the_queue_url_when_it_names_one() {
        assert_eq!(
            region_of_queue_url("https://sqs.eu-west-1.amazonaws.com/123/q"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("https://sqs.cn-north-1.amazonaws.com.cn/123/q"),
            Some("cn-north-1")
        );
        assert_eq!(
            region_of_queue_url("https://us-east-2.queue.amazonaws.com/123/q"),
            Some("us-east-2")
        );
        assert_eq!(region_of_queue_url("http://127.0.0.1:5000/123/q"), None);
        assert_eq!(region_of_queue_url("not a url"), None);
    }
}
