//! Deliveries and their outcomes: what a source hands the router, and what it gets back.
//!
//! A source wraps each raw message in a [`Delivery`] and keeps the [`Pending`] half; the router
//! settles the delivery with an [`Outcome`], and the source maps that outcome to its own call
//! (delete, complete, ack, ...). A delivery dropped without an outcome counts as [`Outcome::Retry`],
//! so a crash or a timeout in the router never acknowledges a message by accident.

use bytes::Bytes;
use jiff::Timestamp;
use tokio::sync::oneshot;

use crate::event::Provider;

/// What became of a message. The source maps it to its own acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The required actions and required sinks succeeded.
    Handled,
    /// Valid but not actionable (unknown type, foreign instance, duplicate, test message).
    Ignored,
    /// A required step failed transiently: deliver it again.
    Retry,
    /// Malformed: it can never succeed.
    Poison,
}

impl Outcome {
    /// A bounded label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Ignored => "ignored",
            Outcome::Retry => "retry",
            Outcome::Poison => "poison",
        }
    }

    /// Whether the message is done with and may leave the queue. Poison leaves too (it is
    /// counted): keeping it would only block the queue until a dead-letter policy moves it.
    pub const fn removes_message(self) -> bool {
        !matches!(self, Outcome::Retry)
    }
}

/// One raw message on its way to the router.
#[derive(Debug)]
pub struct Delivery {
    /// Which normaliser reads the body.
    pub provider: Provider,
    /// The message body exactly as the queue delivered it.
    pub body: Bytes,
    /// When the source received it.
    pub received_at: Timestamp,
    /// The queue's own message id, for logs.
    pub message_id: Option<String>,
    /// Which delivery of this message it is (1 the first time), when the queue says.
    pub attempt: Option<u32>,
    reply: oneshot::Sender<Outcome>,
}

/// The source's half of a delivery: resolves to the outcome.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Outcome>);

impl Delivery {
    /// A delivery and the handle its source awaits.
    pub fn new(
        provider: Provider,
        body: Bytes,
        received_at: Timestamp,
        message_id: Option<String>,
    ) -> (Delivery, Pending) {
        let (reply, rx) = oneshot::channel();
        (
            Delivery {
                provider,
                body,
                received_at,
                message_id,
                attempt: None,
                reply,
            },
            Pending(rx),
        )
    }

    /// Records which delivery of the message this is (Service Bus `DeliveryCount`, Pub/Sub
    /// `delivery_attempt`), so that the router's log shows redeliveries.
    pub fn with_attempt(mut self, attempt: Option<u32>) -> Self {
        self.attempt = attempt;
        self
    }

    /// Settles the delivery. The source may have stopped waiting; that is not an error.
    pub fn settle(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}

impl Pending {
    /// The outcome; [`Outcome::Retry`] when the delivery was dropped unsettled.
    pub async fn outcome(self) -> Outcome {
        self.0.await.unwrap_or(Outcome::Retry)
    }

    /// The outcome if already settled, without waiting.
    pub fn try_outcome(&mut self) -> Option<Outcome> {
        match self.0.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Outcome::Retry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> (Delivery, Pending) {
        Delivery::new(
            Provider::Aws,
            Bytes::from_static(b"{}"),
            Timestamp::UNIX_EPOCH,
            None,
        )
    }

    #[tokio::test]
    async fn a_settled_delivery_yields_its_outcome() {
        let (d, p) = delivery();
        d.settle(Outcome::Poison);
        assert_eq!(p.outcome().await, Outcome::Poison);
    }

    #[tokio::test]
    async fn a_dropped_delivery_counts_as_retry() {
        let (d, mut p) = delivery();
        assert_eq!(p.try_outcome(), None);
        drop(d);
        assert_eq!(p.try_outcome(), Some(Outcome::Retry));
        let (d, p) = delivery();
        drop(d);
        assert_eq!(p.outcome().await, Outcome::Retry);
    }

    #[test]
    fn only_retry_keeps_the_message() {
        assert!(Outcome::Handled.removes_message());
        assert!(Outcome::Ignored.removes_message());
        assert!(Outcome::Poison.removes_message());
        assert!(!Outcome::Retry.removes_message());
    }
}
