//! The Azure Service Bus source: peek-lock receive from the queue Event Grid delivers to, with
//! outcomes mapped per docs/design.md §2:
//!
//! | outcome | call |
//! |---|---|
//! | handled, ignored | complete (`DELETE` on the lock) |
//! | retry | abandon (`PUT` on the lock): redelivered at once with `DeliveryCount` + 1 |
//! | poison | abandon until the queue's MaxDeliveryCount moves it to the dead-letter queue |
//!
//! Several receivers lock one message each per request (the REST protocol has no batch
//! receive). While a message is handled its lock is renewed at half its duration. Every status
//! is checked (401, 403, 404, 410, throttling): errors are logged, counted, backed off, and make
//! `/readyz` fail once they outlast the grace period. The crate-specific calls live in
//! [`rest`]; authentication and endpoint rewriting in [`transport`].

pub mod rest;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::rest::{Locked, Queue, ServiceBusError, SetupError};
use super::config::ServiceBusConfig;
use crate::ack::{Delivery, Outcome, Pending};
use crate::event::Provider;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::sources::{Backoff, settle_in_flight};

/// The health component name of this source.
pub const COMPONENT: &str = "azure_service_bus";

/// A configured Service Bus source.
#[derive(Debug, Clone)]
pub struct ServiceBusSource {
    queue: Queue,
    config: ServiceBusConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ServiceBusSource {
    /// Builds the client; nothing is sent until [`ServiceBusSource::run`].
    pub fn new(
        config: ServiceBusConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<ServiceBusSource, SetupError> {
        let queue = Queue::new(&config)?;
        tracing::info!(namespace = %config.namespace, queue = %config.queue, auth = ?config.auth, "Service Bus source configured.");
        Ok(ServiceBusSource {
            queue,
            config,
            metrics,
            health,
        })
    }

    /// Receives until `shutdown`, then waits up to `grace` for in-flight messages and abandons
    /// the rest for immediate redelivery.
    pub async fn run(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        self.health.register(COMPONENT);
        let release = CancellationToken::new();
        let mut receivers = JoinSet::new();
        for _ in 0..self.config.receivers {
            receivers.spawn(self.clone().receive_loop(
                tx.clone(),
                shutdown.clone(),
                release.clone(),
            ));
        }
        drop(tx);
        settle_in_flight(receivers, grace, &release, "Service Bus").await;
        // A standby reports nothing about a queue it does not read.
        self.health.remove(COMPONENT);
    }

    async fn receive_loop(
        self,
        tx: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        release: CancellationToken,
    ) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.queue.receive() => r,
            };
            let locked = match received {
                Ok(Some(locked)) => locked,
                Ok(None) => {
                    self.health.ok(COMPONENT);
                    backoff.reset();
                    continue;
                }
                Err(e) => {
                    self.fail("receive", &e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            self.health.ok(COMPONENT);
            backoff.reset();
            let (delivery, pending) = Delivery::new(
                Provider::Azure,
                Bytes::from(locked.body.clone()),
                Timestamp::now(),
                Some(locked.message_id.clone()),
            );
            let delivery = delivery.with_attempt(Some(locked.delivery_count));
            // The lock is renewed from now on, also while the delivery waits for room in the
            // router. If the router is gone, the dropped delivery settles as retry: abandoned.
            tasks.spawn(self.clone().settle(pending, locked, release.clone()));
            if tx.send(delivery).await.is_err() {
                break;
            }
            while tasks.try_join_next().is_some() {}
        }
        tasks
    }

    /// Waits for the outcome, renewing the lock at half its duration, then completes or
    /// abandons the message.
    async fn settle(self, pending: Pending, locked: Locked, release: CancellationToken) {
        let every = (locked.lock_duration / 2).max(Duration::from_millis(500));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = pending.outcome();
        tokio::pin!(outcome);
        let outcome = loop {
            tokio::select! {
                outcome = &mut outcome => break outcome,
                _ = renew.tick() => {
                    let result = self.queue.renew(&locked).await;
                    self.settle_call("renew_lock", result);
                }
                _ = release.cancelled() => {
                    let result = self.queue.abandon(&locked).await;
                    self.settle_call("abandon", result);
                    return;
                }
            }
        };
        match outcome {
            Outcome::Handled | Outcome::Ignored => {
                let result = self.queue.complete(&locked).await;
                self.settle_call("complete", result);
            }
            // Poison is abandoned too: the queue's MaxDeliveryCount dead-letters it, where an
            // operator can inspect it (docs/design.md §2).
            Outcome::Retry | Outcome::Poison => {
                let result = self.queue.abandon(&locked).await;
                self.settle_call("abandon", result);
            }
        }
    }

    fn settle_call(&self, stage: &'static str, result: Result<(), ServiceBusError>) {
        if let Err(e) = result {
            // A lost lock (404/410) means the message is redelivered; the dedupe window keeps
            // the router from acting twice.
            self.metrics.source_error(Provider::Azure, stage, &e);
        }
    }

    fn fail(&self, stage: &'static str, e: &ServiceBusError) {
        self.metrics.source_error(Provider::Azure, stage, e);
        self.health.failed(COMPONENT, e);
    }
}
