//! Queues, their dead-letter subqueues, messages and peek-locks: the broker behind the HTTP
//! front. Time is passed in by the caller, and every entry point of [`crate::Shared`] sweeps
//! expired locks before it looks at a queue, so `LockedUntilUtc` is honoured lazily but exactly.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use crate::{MessageView, QueueSettings};

/// The dead-letter reason the broker sets when the delivery count runs out. Copied from
/// "Overview of Service Bus dead-letter queues" (learn.microsoft.com), section "Maximum
/// delivery count".
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";

/// The message's `TimeToLive` in seconds when the sender set none: the default
/// `DefaultMessageTimeToLive` of a queue is `TimeSpan.MaxValue`, which the REST front prints as
/// seconds. The fake echoes a time-to-live but never expires a message.
pub(crate) const DEFAULT_TIME_TO_LIVE: f64 = 922_337_203_685.477_5;

/// Which subqueue of a queue an operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    Main,
    DeadLetter,
}

#[derive(Debug, Clone)]
struct Lock {
    token: String,
    until: Instant,
    until_wall: SystemTime,
}

/// A message as the broker holds it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) id: String,
    pub(crate) sequence_number: i64,
    /// `EnqueuedSequenceNumber`: 0, or the sequence number ([`QueueSettings`]).
    pub(crate) enqueued_sequence_number: i64,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
    pub(crate) enqueued_at: SystemTime,
    pub(crate) time_to_live: f64,
    /// Settable broker properties the sender gave (`Label`, `CorrelationId`, ...), echoed back
    /// on receive.
    pub(crate) properties: Map<String, Value>,
    pub(crate) delivery_count: u32,
    lock: Option<Lock>,
    /// `DeadLetterReason` and `DeadLetterErrorDescription`, once dead-lettered.
    pub(crate) dead_letter: Option<(String, String)>,
    pub(crate) lock_renewals: u32,
}

impl Message {
    fn view(&self) -> MessageView {
        MessageView {
            message_id: self.id.clone(),
            sequence_number: self.sequence_number,
            body: self.body.clone(),
            delivery_count: self.delivery_count,
            locked: self.lock.is_some(),
            dead_letter_reason: self.dead_letter.as_ref().map(|(reason, _)| reason.clone()),
            lock_renewals: self.lock_renewals,
        }
    }
}

/// What a sender gives the broker.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub(crate) id: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
    pub(crate) time_to_live: Option<f64>,
    pub(crate) properties: Map<String, Value>,
}

/// A message handed out under a fresh lock.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) message: Message,
    pub(crate) lock_token: String,
    pub(crate) locked_until: SystemTime,
}

/// The queue does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoQueue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockError {
    NoQueue,
    /// No message holds that lock (never issued, expired, released or already settled), or the
    /// message id or sequence number in the URL is not the locked message's.
    NoLock,
}

#[derive(Debug)]
struct Queue {
    settings: QueueSettings,
    main: BTreeMap<i64, Message>,
    dead: BTreeMap<i64, Message>,
    completed: Vec<MessageView>,
    next_sequence_number: i64,
}

impl Queue {
    fn sub(&mut self, sub: Sub) -> &mut BTreeMap<i64, Message> {
        match sub {
            Sub::Main => &mut self.main,
            Sub::DeadLetter => &mut self.dead,
        }
    }

    /// Ends the lock on a message. From the main queue, a message whose delivery count has
    /// reached MaxDeliveryCount moves to the dead-letter subqueue: "Whenever a message has been
    /// delivered under a peek-lock, but has been either explicitly abandoned or the lock has
    /// expired, the delivery count on the message is incremented. When the delivery count
    /// exceeds the limit, the message is moved to the DLQ" ("Overview of Service Bus dead-letter
    /// queues", section "Maximum delivery count"). The fake counts a delivery when it hands the
    /// message out, so the count "exceeds the limit" once a release finds it at the limit.
    /// A dead-lettered message keeps its sequence number (not confirmed against the service).
    /// The dead-letter subqueue itself never dead-letters ("you can't dead-letter a message
    /// from a DLQ", same page).
    fn release(&mut self, sub: Sub, sequence_number: i64) {
        let max = self.settings.max_delivery_count.max(1);
        let Some(message) = self.sub(sub).get_mut(&sequence_number) else {
            return;
        };
        message.lock = None;
        if sub == Sub::Main
            && message.delivery_count >= max
            && let Some(mut message) = self.main.remove(&sequence_number)
        {
            message.dead_letter = Some((
                MAX_DELIVERY_COUNT_EXCEEDED.to_string(),
                format!("Message could not be consumed after {max} delivery attempts."),
            ));
            self.dead.insert(sequence_number, message);
        }
    }

    /// Releases every lock that ran out by `now`; true when any did.
    fn sweep(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for sub in [Sub::Main, Sub::DeadLetter] {
            let expired: Vec<i64> = self
                .sub(sub)
                .values()
                .filter(|m| m.lock.as_ref().is_some_and(|l| l.until <= now))
                .map(|m| m.sequence_number)
                .collect();
            for sequence_number in expired {
                self.release(sub, sequence_number);
                changed = true;
            }
        }
        changed
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.main
            .values()
            .chain(self.dead.values())
            .filter_map(|m| m.lock.as_ref().map(|l| l.until))
            .min()
    }

    /// The sequence number of the message holding `lock_token`, if `id` names it (by
    /// MessageId or by SequenceNumber, as the lock URL may use either).
    fn locked(&mut self, sub: Sub, id: &str, lock_token: &str) -> Option<i64> {
        self.sub(sub)
            .values()
            .find(|m| {
                m.lock
                    .as_ref()
                    .is_some_and(|l| l.token.eq_ignore_ascii_case(lock_token))
            })
            .filter(|m| m.id == id || m.sequence_number.to_string() == id)
            .map(|m| m.sequence_number)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Broker {
    /// Keyed by the lowercased name: entity names are case-insensitive, and the service's own
    /// `Location` headers use the lowercased path (the example of "Peek-Lock Message
    /// (Non-Destructive Read)" answers `.../httpclientsamplequeue/messages/2/...` for a request
    /// to `.../HttpClientSampleQueue/messages/head`).
    queues: HashMap<String, Queue>,
    /// Set when a message became available; the caller wakes waiting receivers.
    changed: bool,
}

fn key(queue: &str) -> String {
    queue.to_ascii_lowercase()
}

impl Broker {
    pub(crate) fn create_queue(&mut self, name: &str, settings: QueueSettings) {
        match self.queues.get_mut(&key(name)) {
            Some(queue) => queue.settings = settings,
            None => {
                self.queues.insert(
                    key(name),
                    Queue {
                        main: BTreeMap::new(),
                        dead: BTreeMap::new(),
                        completed: Vec::new(),
                        next_sequence_number: settings.first_sequence_number,
                        settings,
                    },
                );
            }
        }
    }

    /// Releases expired locks in every queue.
    pub(crate) fn sweep(&mut self, now: Instant) {
        for queue in self.queues.values_mut() {
            if queue.sweep(now) {
                self.changed = true;
            }
        }
    }

    /// Whether a message became available since the last call.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Enqueues a message at the tail of the queue and returns its MessageId.
    pub(crate) fn send(&mut self, name: &str, new: NewMessage) -> Result<String, NoQueue> {
        let queue = self.queues.get_mut(&key(name)).ok_or(NoQueue)?;
        let sequence_number = queue.next_sequence_number;
        queue.next_sequence_number += 1;
        let id = new.id.unwrap_or_else(message_id);
        queue.main.insert(
            sequence_number,
            Message {
                id: id.clone(),
                sequence_number,
                enqueued_sequence_number: if queue.settings.enqueued_sequence_numbers {
                    sequence_number
                } else {
                    0
                },
                body: new.body,
                content_type: new.content_type,
                enqueued_at: SystemTime::now(),
                time_to_live: new.time_to_live.unwrap_or(DEFAULT_TIME_TO_LIVE),
                properties: new.properties,
                delivery_count: 0,
                lock: None,
                dead_letter: None,
                lock_renewals: 0,
            },
        );
        self.changed = true;
        Ok(id)
    }

    /// Locks the first available message in sequence order: Peek-Lock Message
    /// (Non-Destructive Read). `DeliveryCount` counts deliveries, so it is 1 on the first.
    pub(crate) fn receive(
        &mut self,
        name: &str,
        sub: Sub,
        now: Instant,
    ) -> Result<Option<Delivery>, NoQueue> {
        let queue = self.queues.get_mut(&key(name)).ok_or(NoQueue)?;
        let lock_duration = queue.settings.lock_duration;
        let Some(message) = queue.sub(sub).values_mut().find(|m| m.lock.is_none()) else {
            return Ok(None);
        };
        let lock = Lock {
            token: lock_token(),
            until: now + lock_duration,
            until_wall: SystemTime::now() + lock_duration,
        };
        message.delivery_count += 1;
        let delivery = Delivery {
            lock_token: lock.token.clone(),
            locked_until: lock.until_wall,
            message: message.clone(),
        };
        message.lock = Some(lock);
        Ok(Some(delivery))
    }

    /// When the earliest lock in the queue (either subqueue) runs out, which may make a
    /// message available.
    pub(crate) fn next_expiry(&self, name: &str) -> Option<Instant> {
        self.queues.get(&key(name))?.next_expiry()
    }

    /// Receive and Delete Message (Destructive Read): removes the first available message.
    pub(crate) fn receive_and_delete(
        &mut self,
        name: &str,
        sub: Sub,
    ) -> Result<Option<Message>, NoQueue> {
        let queue = self.queues.get_mut(&key(name)).ok_or(NoQueue)?;
        let first = queue
            .sub(sub)
            .values()
            .find(|m| m.lock.is_none())
            .map(|m| m.sequence_number);
        let Some(mut message) = first.and_then(|seq| queue.sub(sub).remove(&seq)) else {
            return Ok(None);
        };
        message.delivery_count += 1;
        queue.completed.push(message.view());
        Ok(Some(message))
    }

    /// Delete Message: completes a locked message.
    pub(crate) fn complete(
        &mut self,
        name: &str,
        sub: Sub,
        id: &str,
        lock_token: &str,
    ) -> Result<(), LockError> {
        let queue = self.queues.get_mut(&key(name)).ok_or(LockError::NoQueue)?;
        let seq = queue.locked(sub, id, lock_token).ok_or(LockError::NoLock)?;
        if let Some(mut message) = queue.sub(sub).remove(&seq) {
            message.lock = None;
            queue.completed.push(message.view());
        }
        Ok(())
    }

    /// Unlock Message: abandons a locked message.
    pub(crate) fn abandon(
        &mut self,
        name: &str,
        sub: Sub,
        id: &str,
        lock_token: &str,
    ) -> Result<(), LockError> {
        let queue = self.queues.get_mut(&key(name)).ok_or(LockError::NoQueue)?;
        let seq = queue.locked(sub, id, lock_token).ok_or(LockError::NoLock)?;
        queue.release(sub, seq);
        self.changed = true;
        Ok(())
    }

    /// Renew-Lock for a Message: the lock now runs out one lock duration from `now` ("the lock
    /// can be renewed and extended by another default lock period", "Message transfers, locks,
    /// and settlement"). Returns the new `LockedUntilUtc`.
    pub(crate) fn renew(
        &mut self,
        name: &str,
        sub: Sub,
        id: &str,
        lock_token: &str,
        now: Instant,
    ) -> Result<SystemTime, LockError> {
        let queue = self.queues.get_mut(&key(name)).ok_or(LockError::NoQueue)?;
        let lock_duration = queue.settings.lock_duration;
        let seq = queue.locked(sub, id, lock_token).ok_or(LockError::NoLock)?;
        let message = queue.sub(sub).get_mut(&seq).ok_or(LockError::NoLock)?;
        let lock = message.lock.as_mut().ok_or(LockError::NoLock)?;
        lock.until = now + lock_duration;
        lock.until_wall = SystemTime::now() + lock_duration;
        message.lock_renewals += 1;
        Ok(lock.until_wall)
    }

    pub(crate) fn active(&self, name: &str) -> Option<Vec<MessageView>> {
        let queue = self.queues.get(&key(name))?;
        Some(queue.main.values().map(Message::view).collect())
    }

    pub(crate) fn dead_letters(&self, name: &str) -> Option<Vec<MessageView>> {
        let queue = self.queues.get(&key(name))?;
        Some(queue.dead.values().map(Message::view).collect())
    }

    pub(crate) fn completed(&self, name: &str) -> Option<Vec<MessageView>> {
        Some(self.queues.get(&key(name))?.completed.clone())
    }

    /// The lock duration of a queue (for tests of the lock arithmetic).
    #[cfg(test)]
    fn lock_duration(&self, name: &str) -> Option<std::time::Duration> {
        Some(self.queues.get(&key(name))?.settings.lock_duration)
    }
}

fn hex128() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A MessageId for a message sent without one: 32 hex digits, the form the service's examples
/// show (`"MessageId":"31907572164743c38741631acd554d6f"`, "Peek-Lock Message
/// (Non-Destructive Read)").
pub(crate) fn message_id() -> String {
    hex128()
}

/// A lock token: a random (version 4) UUID in its hyphenated form, as in the service's
/// `"LockToken":"7da9cfd5-40d5-4bb1-8d64-ec5a52e1c547"`.
pub(crate) fn lock_token() -> String {
    let mut hex: Vec<char> = hex128().chars().collect();
    hex[12] = '4';
    hex[16] = ['8', '9', 'a', 'b'][fastrand::usize(..4)];
    let hex: String = hex.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn broker(max_delivery_count: u32, lock_duration: Duration) -> Broker {
        let mut broker = Broker::default();
        broker.create_queue(
            "Jobs",
            QueueSettings {
                lock_duration,
                max_delivery_count,
                ..QueueSettings::default()
            },
        );
        broker
    }

    fn new(body: &str) -> NewMessage {
        NewMessage {
            id: None,
            body: body.as_bytes().to_vec(),
            content_type: None,
            time_to_live: None,
            properties: Map::new(),
        }
    }

    fn locked(receive: Option<Delivery>) -> Delivery {
        receive.expect("a message to deliver")
    }

    #[test]
    fn queue_names_are_case_insensitive() {
        let mut b = broker(10, Duration::from_secs(60));
        assert!(b.active("jobs").is_some_and(|m| m.is_empty()));
        assert!(b.active("other").is_none());
        b.send("JOBS", new("a")).expect("queue exists");
        assert_eq!(b.active("jobs").expect("queue").len(), 1);
        assert_eq!(b.lock_duration("jObS"), Some(Duration::from_secs(60)));
    }

    #[test]
    fn delivery_in_sequence_order_skips_locked_messages() {
        let mut b = broker(10, Duration::from_secs(60));
        let now = Instant::now();
        b.send("jobs", new("a")).expect("queue");
        b.send("jobs", new("b")).expect("queue");
        let first = locked(b.receive("jobs", Sub::Main, now).expect("queue"));
        let second = locked(b.receive("jobs", Sub::Main, now).expect("queue"));
        assert_eq!(
            (
                first.message.sequence_number,
                second.message.sequence_number
            ),
            (1, 2)
        );
        assert_eq!(first.message.delivery_count, 1);
        assert!(matches!(b.receive("jobs", Sub::Main, now), Ok(None)));
        assert_eq!(b.next_expiry("jobs"), Some(now + Duration::from_secs(60)));
        // Abandoning the first puts it back ahead of anything later.
        b.abandon("jobs", Sub::Main, "1", &first.lock_token)
            .expect("lock");
        b.send("jobs", new("c")).expect("queue");
        let again = locked(b.receive("jobs", Sub::Main, now).expect("queue"));
        assert_eq!(again.message.sequence_number, 1);
        assert_eq!(again.message.delivery_count, 2);
    }

    #[test]
    fn expiry_and_dead_lettering() {
        let mut b = broker(2, Duration::from_secs(5));
        let t0 = Instant::now();
        b.send("jobs", new("a")).expect("queue");
        let d1 = locked(b.receive("jobs", Sub::Main, t0).expect("queue"));
        b.sweep(t0 + Duration::from_secs(4));
        assert!(b.active("jobs").expect("queue")[0].locked);
        b.sweep(t0 + Duration::from_secs(5));
        assert!(!b.active("jobs").expect("queue")[0].locked);
        assert_eq!(
            b.complete("jobs", Sub::Main, &d1.message.id, &d1.lock_token),
            Err(LockError::NoLock)
        );
        let d2 = locked(
            b.receive("jobs", Sub::Main, t0 + Duration::from_secs(6))
                .expect("queue"),
        );
        assert_eq!(d2.message.delivery_count, 2);
        b.sweep(t0 + Duration::from_secs(11));
        assert!(b.active("jobs").expect("queue").is_empty());
        let dead = b.dead_letters("jobs").expect("queue");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].dead_letter_reason.as_deref(),
            Some(MAX_DELIVERY_COUNT_EXCEEDED)
        );
        // The dead-letter subqueue delivers (and never dead-letters) on its own.
        let d3 = locked(
            b.receive("jobs", Sub::DeadLetter, t0 + Duration::from_secs(12))
                .expect("queue"),
        );
        assert_eq!(d3.message.delivery_count, 3);
        b.abandon("jobs", Sub::DeadLetter, &d3.message.id, &d3.lock_token)
            .expect("lock");
        assert_eq!(b.dead_letters("jobs").expect("queue").len(), 1);
    }

    #[test]
    fn lock_url_must_name_the_locked_message() {
        let mut b = broker(10, Duration::from_secs(60));
        let now = Instant::now();
        b.send("jobs", new("a")).expect("queue");
        b.send("jobs", new("b")).expect("queue");
        let d = locked(b.receive("jobs", Sub::Main, now).expect("queue"));
        assert_eq!(
            b.renew("jobs", Sub::Main, "2", &d.lock_token, now),
            Err(LockError::NoLock)
        );
        assert_eq!(
            b.complete("nope", Sub::Main, "1", &d.lock_token),
            Err(LockError::NoQueue)
        );
        let upper = d.lock_token.to_ascii_uppercase();
        b.renew("jobs", Sub::Main, &d.message.id, &upper, now)
            .expect("by MessageId, token case-insensitive");
        b.complete("jobs", Sub::Main, "1", &d.lock_token)
            .expect("by SequenceNumber");
        let completed = b.completed("jobs").expect("queue");
        assert_eq!(completed.len(), 1);
        assert_eq!(completed[0].lock_renewals, 1);
    }

    #[test]
    fn identifiers_have_the_service_shapes() {
        let token = lock_token();
        let parts: Vec<&str> = token.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert_eq!(message_id().len(), 32);
        assert_ne!(lock_token(), lock_token());
    }
}
