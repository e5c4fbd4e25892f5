//! A narrow fake of the Azure Service Bus REST runtime protocol, for eviction-router's tests.
//!
//! It serves plain HTTP/1.1 on `127.0.0.1` and answers the queue operations that
//! `azure_messaging_servicebus` 0.21 sends (the product points that client at the fake by
//! replacing scheme, host and port of every request, keeping path and query):
//!
//! | operation (REST reference page)            | request                                      |
//! |--------------------------------------------|----------------------------------------------|
//! | Send Message                               | `POST /{queue}/messages`                     |
//! | Peek-Lock Message (Non-Destructive Read)   | `POST /{queue}/messages/head?timeout=N`      |
//! | Receive and Delete Message                 | `DELETE /{queue}/messages/head`              |
//! | Delete Message (complete)                  | `DELETE /{queue}/messages/{id}/{lockToken}`  |
//! | Unlock Message (abandon)                   | `PUT /{queue}/messages/{id}/{lockToken}`     |
//! | Renew-Lock for a Message                   | `POST /{queue}/messages/{id}/{lockToken}`    |
//!
//! and the receive and lock operations on `/{queue}/$DeadLetterQueue/...`. Each request must carry a valid
//! `SharedAccessSignature` for a key added with [`FakeServiceBus::add_sas_key`] whose resource
//! URI covers the request, or a `Bearer` token added with [`FakeServiceBus::add_bearer_token`].
//!
//! Faked: peek-lock long polling (woken at once by a send, an unlock or a lock that
//! runs out), lock tokens and `LockedUntilUtc` enforced by the clock, `DeliveryCount`,
//! dead-lettering with `MaxDeliveryCountExceeded`, the `BrokerProperties` and `Location`
//! headers (with 64-bit sequence numbers on request, [`QueueSettings::first_sequence_number`]), SAS signature, expiry and audience checks, and the statuses of the reference pages
//! (an unknown queue is 410 Gone for every operation, sends included, as each page lists; an
//! unknown or expired lock is 404). Fault injection ([`FakeServiceBus::fail_next`]) answers any
//! status before all of that.
//!
//! Not faked: topics and subscriptions, sessions, batches, management operations (creating
//! queues is [`FakeServiceBus::create_queue`]), message time-to-live and scheduled enqueue
//! (echoed, never acted on), custom message properties, duplicate detection, SAS rights
//! (Send/Listen/Manage), anything about a bearer token beyond its being registered, and TLS.
//!
//! ```text
//! let bus = FakeServiceBus::new("contoso");
//! bus.create_queue("evictions", QueueSettings::default());
//! bus.add_sas_key("RootManageSharedAccessKey", "c2VjcmV0");
//! let addr = bus.start().await?;          // 127.0.0.1:PORT
//! bus.send("evictions", r#"{"kind":"preempt"}"#);
//! // ... run the product against http://{addr} ...
//! assert_eq!(bus.completed("evictions").len(), 1);
//! bus.fail_next(503, 2);                  // the next two requests answer 503
//! ```

mod auth;
mod broker;
mod faults;
mod service;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};

pub use auth::{sas_token, sas_token_for};
pub use broker::MAX_DELIVERY_COUNT_EXCEEDED;

use auth::Credentials;
use broker::{Broker, NewMessage};
use faults::Faults;

/// A queue's settings that the fake honours.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// How long a peek-lock holds a message.
    pub lock_duration: Duration,
    /// Deliveries after which an abandoned or expired message is dead-lettered.
    pub max_delivery_count: u32,
    /// The sequence number of the first message sent (1 by default). A sequence number is "a
    /// unique 64-bit integer ... For partitioned entities, the topmost 16 bits reflect the
    /// partition identifier" ("Message sequencing and timestamps"), so values above 2^48 are
    /// normal there.
    pub first_sequence_number: i64,
    /// Report each message's sequence number as `EnqueuedSequenceNumber` in `BrokerProperties`,
    /// as 64-bit values may come; by default it is 0, as in the reference page's example.
    pub enqueued_sequence_numbers: bool,
}

impl Default for QueueSettings {
    /// 60 s and 10, the service's defaults: "The maximum value for LockDuration is 5 minutes;
    /// the default value is 1 minute." (queue `LockDuration` in the Service Bus management API
    /// reference) and, for MaxDeliveryCount, "The default value is 10." ("Overview of Service
    /// Bus dead-letter queues"). The fake enforces neither the 5-minute maximum nor any minimum.
    fn default() -> Self {
        QueueSettings {
            lock_duration: Duration::from_secs(60),
            max_delivery_count: 10,
            first_sequence_number: 1,
            enqueued_sequence_numbers: false,
        }
    }
}

/// A message as a test sees it.
#[derive(Clone, Debug)]
pub struct MessageView {
    pub message_id: String,
    pub sequence_number: i64,
    pub body: Vec<u8>,
    /// Deliveries so far (1 after the first peek-lock).
    pub delivery_count: u32,
    /// Held by an unexpired peek-lock.
    pub locked: bool,
    /// `DeadLetterReason`, once dead-lettered.
    pub dead_letter_reason: Option<String>,
    /// Successful Renew-Lock calls.
    pub lock_renewals: u32,
}

/// One request as the fake answered it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// The raw path, as sent.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub status: u16,
    /// The credentials the request presented: `"sas"`, `"bearer"` or `"none"` (no
    /// `Authorization` header or an unknown scheme), valid or not.
    pub auth: &'static str,
}

/// State shared by the handles and the server tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `{namespace}.servicebus.windows.net`, lowercased.
    host: String,
    broker: Mutex<Broker>,
    credentials: Mutex<Credentials>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RequestRecord>>,
    max_receive_wait: Mutex<Duration>,
    /// Woken when a message may have become available.
    changed: Notify,
    /// Bumped by [`FakeServiceBus::stop`]; servers and waiting receives end on a change.
    stop: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs `f` on the broker after releasing expired locks, then wakes waiting receives if a
    /// message became available.
    pub(crate) fn with_broker<T>(&self, f: impl FnOnce(&mut Broker) -> T) -> T {
        let (out, changed) = {
            let mut broker = lock(&self.broker);
            broker.sweep(Instant::now());
            let out = f(&mut broker);
            (out, broker.take_changed())
        };
        if changed {
            self.changed.notify_waiters();
        }
        out
    }

    pub(crate) fn authorize(&self, header: Option<&str>, path: &str) -> Result<(), String> {
        auth::authorize(
            &lock(&self.credentials),
            &self.host,
            header,
            path,
            SystemTime::now(),
        )
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        lock(&self.log).push(record);
    }

    pub(crate) fn max_receive_wait(&self) -> Duration {
        *lock(&self.max_receive_wait)
    }

    pub(crate) fn stop_signal(&self) -> watch::Receiver<u64> {
        self.stop.subscribe()
    }

    fn stop(&self) {
        self.stop.send_modify(|generation| *generation += 1);
    }
}

/// Ends the servers when the last [`FakeServiceBus`] clone goes away.
#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One fake namespace. Cheap to clone; every clone sees the same namespace, and its servers run
/// until [`FakeServiceBus::stop`] or until the last clone is dropped.
#[derive(Clone, Debug)]
pub struct FakeServiceBus {
    owner: Arc<Owner>,
}

impl FakeServiceBus {
    /// A namespace `{namespace}.servicebus.windows.net` with no queues and no credentials.
    pub fn new(namespace: &str) -> Self {
        let shared = Shared {
            host: format!("{namespace}.servicebus.windows.net").to_ascii_lowercase(),
            broker: Mutex::new(Broker::default()),
            credentials: Mutex::new(Credentials::default()),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            max_receive_wait: Mutex::new(service::DEFAULT_RECEIVE_TIMEOUT),
            changed: Notify::new(),
            stop: watch::Sender::new(0),
        };
        FakeServiceBus {
            owner: Arc::new(Owner(Arc::new(shared))),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.0
    }

    /// The host the namespace would have: `{namespace}.servicebus.windows.net`.
    pub fn host(&self) -> &str {
        &self.shared().host
    }

    /// Creates a queue (names are case-insensitive), or changes the settings of an existing
    /// one, keeping its messages.
    pub fn create_queue(&self, name: &str, settings: QueueSettings) {
        self.shared()
            .with_broker(|b| b.create_queue(name, settings));
    }

    /// Accepts SAS tokens signed with `key` under the rule name `key_name`, for any entity.
    pub fn add_sas_key(&self, key_name: &str, key: &str) {
        lock(&self.shared().credentials).add_key(key_name, key);
    }

    /// Accepts `Authorization: Bearer {token}` (a Microsoft Entra ID token) for any entity.
    pub fn add_bearer_token(&self, token: &str) {
        lock(&self.shared().credentials).add_bearer_token(token);
    }

    /// Serves the namespace on `127.0.0.1` (a free port) from a spawned task and returns the
    /// address. Needs a Tokio runtime; may be called again (after [`Self::stop`] too) for
    /// another server on the same namespace.
    pub async fn start(&self) -> io::Result<SocketAddr> {
        self.start_on(0).await
    }

    /// Like [`Self::start`] on a given port (0 picks a free one), e.g. to come back on the
    /// same address after [`Self::stop`].
    pub async fn start_on(&self, port: u16) -> io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let shared = self.shared().clone();
        let mut stopped = shared.stop_signal();
        let app = service::router(shared);
        tokio::spawn(async move {
            let shutdown = async move {
                // Err only if the sender is gone, which also means stop.
                let _ = stopped.changed().await;
            };
            // An accept error ends the server; tests then see connection errors.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(addr)
    }

    /// Stops every server started so far: the listeners close, and waiting peek-locks answer
    /// 204 at once. Queues, credentials and the request log stay.
    pub fn stop(&self) {
        self.shared().stop();
    }

    /// Caps how long a peek-lock waits for a message, whatever its `timeout` (60 s unless
    /// changed; the cap the service applies is not confirmed).
    pub fn set_max_receive_wait(&self, wait: Duration) {
        *lock(&self.shared().max_receive_wait) = wait;
    }

    /// Enqueues a message directly and returns its (generated) MessageId.
    ///
    /// # Panics
    /// If the queue does not exist.
    pub fn send(&self, queue: &str, body: impl Into<Vec<u8>>) -> String {
        self.enqueue(queue, None, body.into())
    }

    /// Enqueues a message with a chosen MessageId.
    ///
    /// # Panics
    /// If the queue does not exist.
    pub fn send_with_id(&self, queue: &str, message_id: &str, body: impl Into<Vec<u8>>) -> String {
        self.enqueue(queue, Some(message_id.to_string()), body.into())
    }

    fn enqueue(&self, queue: &str, id: Option<String>, body: Vec<u8>) -> String {
        let new = NewMessage {
            id,
            body,
            content_type: None,
            time_to_live: None,
            properties: serde_json::Map::new(),
        };
        self.shared()
            .with_broker(|b| b.send(queue, new))
            .unwrap_or_else(|_| panic!("fake-servicebus has no queue called {queue:?}"))
    }

    fn view(
        &self,
        queue: &str,
        f: impl FnOnce(&Broker) -> Option<Vec<MessageView>>,
    ) -> Vec<MessageView> {
        self.shared()
            .with_broker(|b| f(b))
            .unwrap_or_else(|| panic!("fake-servicebus has no queue called {queue:?}"))
    }

    /// The queue's messages, available and locked, in sequence order.
    ///
    /// # Panics
    /// If the queue does not exist.
    pub fn active(&self, queue: &str) -> Vec<MessageView> {
        self.view(queue, |b| b.active(queue))
    }

    /// The queue's dead-letter subqueue, in sequence order.
    ///
    /// # Panics
    /// If the queue does not exist.
    pub fn dead_letters(&self, queue: &str) -> Vec<MessageView> {
        self.view(queue, |b| b.dead_letters(queue))
    }

    /// Messages completed (Delete Message, or Receive and Delete) from the queue or its
    /// dead-letter subqueue, oldest first.
    ///
    /// # Panics
    /// If the queue does not exist.
    pub fn completed(&self, queue: &str) -> Vec<MessageView> {
        self.view(queue, |b| b.completed(queue))
    }

    /// Every request answered so far, in the order the answers were made (a long poll is
    /// logged when it ends).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared().log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared().log).clear();
    }

    /// The next `times` requests, whatever they are, answer `status` (with a service-style
    /// error body) before authentication or any other processing.
    ///
    /// # Panics
    /// If `status` is not in 100..=999.
    pub fn fail_next(&self, status: u16, times: usize) {
        self.shared().faults().fail_next(None, None, status, times);
    }

    /// Like [`Self::fail_next`], for requests with this method (`"*"` or `""` for any) whose raw
    /// path ends with `path_suffix` (`""` for any), e.g. `("POST", "/messages/head")`.
    ///
    /// # Panics
    /// If `status` is not in 100..=999.
    pub fn fail_next_matching(&self, method: &str, path_suffix: &str, status: u16, times: usize) {
        self.shared()
            .faults()
            .fail_next(Some(method), Some(path_suffix), status, times);
    }

    /// Every request answers `status` until called with `None`.
    ///
    /// # Panics
    /// If `status` is not in 100..=999.
    pub fn fail_all(&self, status: Option<u16>) {
        self.shared().faults().fail_all(status);
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.shared().faults().clear();
    }
}
