//! The live stream behind `GET /v1/events` ([`crate::server::sse`]): a bounded ring of the most
//! recent events, for `Last-Event-ID` resume, and the subscribers' bounded queues.
//!
//! Publishing never waits: each matching subscriber's queue takes the event with `try_send`, and
//! a subscriber whose queue is full is cut off (counted as `slow`); it may reconnect and resume
//! from the ring. Subscribing takes the backlog from the ring and joins the live feed under one
//! lock, so a resumed subscriber sees every event once: none missed between the two, none twice.
//!
//! Event ids are `<boot>-<seq>`: `seq` counts this process's events from 1, `boot` tells one
//! process from the next, so that an id from before a restart resumes from the start of the new
//! ring instead of skipping it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::SseSinkConfig;
use crate::event::{Event, Kind, Provider};
use crate::metrics::Metrics;

/// One event as the stream sends it.
#[derive(Debug)]
pub struct Item {
    /// Its position in this process's stream, from 1.
    pub seq: u64,
    /// For the filters.
    pub kind: Kind,
    /// For the filters.
    pub provider: Provider,
    /// The CloudEvents `type`, the SSE `event:` field.
    pub ty: &'static str,
    /// The structured-mode JSON, one line.
    pub json: String,
}

/// Which events a subscriber wants; an empty set means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Kinds wanted.
    pub kinds: Vec<Kind>,
    /// Providers wanted.
    pub providers: Vec<Provider>,
}

impl Filter {
    /// Whether `item` passes.
    pub fn matches(&self, item: &Item) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&item.kind))
            && (self.providers.is_empty() || self.providers.contains(&item.provider))
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// `max_subscribers` are subscribed already.
    #[error("the event stream has its maximum of {0} subscribers")]
    Full(usize),
    /// The router is shutting down.
    #[error("the router is shutting down")]
    Closed,
}

struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Arc<Item>>,
}

struct State {
    next_seq: u64,
    ring: VecDeque<Arc<Item>>,
    subscribers: BTreeMap<u64, Subscriber>,
    next_subscriber: u64,
}

/// The hub: what the SSE sink publishes into and the endpoint reads from.
pub struct EventHub {
    boot: String,
    ring_capacity: usize,
    max_subscribers: usize,
    buffer: usize,
    /// The heartbeat interval of the endpoint.
    pub heartbeat: std::time::Duration,
    token: Option<crate::server::Secret>,
    state: Mutex<State>,
    closing: CancellationToken,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("boot", &self.boot)
            .field("ring_capacity", &self.ring_capacity)
            .field("max_subscribers", &self.max_subscribers)
            .finish_non_exhaustive()
    }
}

/// One subscriber's view: the backlog it resumed with, then the live events.
#[derive(Debug)]
pub struct Subscription {
    /// Events from the ring after the `Last-Event-ID`, oldest first.
    pub backlog: VecDeque<Arc<Item>>,
    /// Events the subscriber asked for that had left the ring.
    pub missed: u64,
    /// The live events; closed when the subscriber is cut off or the hub closes.
    pub live: mpsc::Receiver<Arc<Item>>,
    guard: Leave,
}

impl Subscription {
    /// Whether the hub closed (shutdown) rather than cut this subscriber off.
    pub fn hub_closed(&self) -> bool {
        self.guard.hub.closing.is_cancelled()
    }
}

/// Removes the subscriber from the hub when its stream ends.
#[derive(Debug)]
struct Leave {
    hub: Arc<EventHub>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let (removed, left) = {
            let mut state = self.hub.lock();
            let removed = state.subscribers.remove(&self.id).is_some();
            (removed, state.subscribers.len())
        };
        // Still registered: the client went away; otherwise `publish` or `close` already
        // ended it and counted it.
        if removed {
            self.hub.metrics.sse_closed("gone", left);
        }
    }
}

impl EventHub {
    /// A hub with the settings of `config`.
    pub fn new(config: &SseSinkConfig, metrics: Arc<Metrics>) -> Arc<EventHub> {
        Arc::new(EventHub {
            boot: format!("{:08x}", fastrand::u32(..)),
            ring_capacity: config.ring_capacity,
            max_subscribers: config.max_subscribers,
            buffer: config.subscriber_buffer,
            heartbeat: std::time::Duration::from_secs(config.heartbeat_seconds),
            token: config
                .token
                .as_deref()
                .map(|t| crate::server::Secret::new(t.as_bytes())),
            state: Mutex::new(State {
                next_seq: 1,
                ring: VecDeque::with_capacity(config.ring_capacity.min(4096)),
                subscribers: BTreeMap::new(),
                next_subscriber: 0,
            }),
            closing: CancellationToken::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bearer token subscribers must present, if any.
    pub fn token(&self) -> Option<&crate::server::Secret> {
        self.token.as_ref()
    }

    /// The SSE `id:` of `item`.
    pub fn event_id(&self, item: &Item) -> String {
        format!("{}-{}", self.boot, item.seq)
    }

    /// The sequence number a `Last-Event-ID` names, if it is one of this process's ids; `None`
    /// for an id of another process (or not ours at all), which resumes from the ring's start.
    pub fn parse_id(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.trim().split_once('-')?;
        if boot != self.boot {
            return None;
        }
        seq.parse().ok()
    }

    /// Adds `event` to the ring and hands it to every matching subscriber; cuts off those whose
    /// queue is full.
    pub fn publish(&self, event: &Event) {
        self.publish_line(event, event.to_json_line());
    }

    /// [`EventHub::publish`] with the event's JSON line at hand.
    pub fn publish_line(&self, event: &Event, json: String) {
        let mut state = self.lock();
        let item = Arc::new(Item {
            seq: state.next_seq,
            kind: event.data.kind,
            provider: event.data.provider,
            ty: event.cloud_event_type(),
            json,
        });
        state.next_seq += 1;
        if state.ring.len() >= self.ring_capacity {
            state.ring.pop_front();
        }
        state.ring.push_back(item.clone());
        let mut ended = Vec::new();
        for (id, sub) in &state.subscribers {
            if !sub.filter.matches(&item) {
                continue;
            }
            match sub.tx.try_send(item.clone()) {
                Ok(()) => {}
                // Dropping the sender ends the stream once what it holds is sent.
                Err(mpsc::error::TrySendError::Full(_)) => ended.push((*id, "slow")),
                // Its stream is being dropped (the client went away).
                Err(mpsc::error::TrySendError::Closed(_)) => ended.push((*id, "gone")),
            }
        }
        for (id, _) in &ended {
            state.subscribers.remove(id);
        }
        let left = state.subscribers.len();
        drop(state);
        for (_, reason) in ended {
            self.metrics.sse_closed(reason, left);
        }
        self.metrics.sink_delivery("sse", "delivered");
    }

    /// Subscribes with `filter`, resuming after `last_event_id` when it is one of ours.
    pub fn subscribe(
        self: &Arc<Self>,
        filter: Filter,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, SubscribeError> {
        if self.closing.is_cancelled() {
            return Err(SubscribeError::Closed);
        }
        let mut state = self.lock();
        if state.subscribers.len() >= self.max_subscribers {
            let n = state.subscribers.len();
            drop(state);
            self.metrics.sse_closed("limit", n);
            return Err(SubscribeError::Full(self.max_subscribers));
        }
        let mut backlog = VecDeque::new();
        let mut missed = 0;
        if let Some(id) = last_event_id {
            // Another process's id (or none of ours): everything the ring holds is new to it.
            let after = self.parse_id(id).unwrap_or(0);
            let oldest = state.ring.front().map_or(state.next_seq, |i| i.seq);
            if after + 1 < oldest && self.parse_id(id).is_some() {
                missed = oldest - after - 1;
            }
            backlog.extend(
                state
                    .ring
                    .iter()
                    .filter(|i| i.seq > after && filter.matches(i))
                    .cloned(),
            );
        }
        let (tx, live) = mpsc::channel(self.buffer);
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        state.subscribers.insert(id, Subscriber { filter, tx });
        let n = state.subscribers.len();
        drop(state);
        if missed > 0 {
            self.metrics.sse_missed(missed);
        }
        self.metrics.sse_subscribed(n, last_event_id.is_some());
        Ok(Subscription {
            backlog,
            missed,
            live,
            guard: Leave {
                hub: self.clone(),
                id,
            },
        })
    }

    /// Ends every stream (shutdown): subscribers get what is queued for them, then the end.
    pub fn close(&self) {
        self.closing.cancel();
        // Dropping the senders ends each live queue once drained.
        let ended = std::mem::take(&mut self.lock().subscribers);
        for _ in ended.values() {
            self.metrics.sse_closed("shutdown", 0);
        }
    }

    /// Cancelled when the hub closes.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ring: usize, subscribers: usize, buffer: usize) -> SseSinkConfig {
        SseSinkConfig {
            ring_capacity: ring,
            max_subscribers: subscribers,
            subscriber_buffer: buffer,
            heartbeat_seconds: 15,
            token: None,
        }
    }

    fn event(n: u32, kind: Kind) -> Event {
        let body = include_str!("../../tests/fixtures/aws/spot-interruption-warning.json");
        let mut parsed = crate::providers::normalize(Provider::Aws, body.as_bytes()).unwrap();
        let mut e = parsed.events.remove(0);
        e.id = format!("e-{n}");
        e.data.kind = kind;
        e
    }

    fn ids(items: impl IntoIterator<Item = Arc<Item>>) -> Vec<u64> {
        items.into_iter().map(|i| i.seq).collect()
    }

    #[tokio::test]
    async fn a_resumed_subscriber_gets_the_backlog_then_the_live_events_once() {
        let hub = EventHub::new(&config(10, 4, 16), Arc::new(Metrics::new()));
        for n in 1..=3 {
            hub.publish(&event(n, Kind::Interruption));
        }
        let first = hub.subscribe(Filter::default(), None).unwrap();
        assert!(first.backlog.is_empty(), "no Last-Event-ID: live only");
        let last = hub.event_id(&Item {
            seq: 1,
            kind: Kind::Interruption,
            provider: Provider::Aws,
            ty: "",
            json: String::new(),
        });
        let mut resumed = hub.subscribe(Filter::default(), Some(&last)).unwrap();
        assert_eq!(ids(resumed.backlog.drain(..)), [2, 3]);
        hub.publish(&event(4, Kind::Interruption));
        assert_eq!(resumed.live.recv().await.map(|i| i.seq), Some(4));
        assert_eq!(resumed.missed, 0);
    }

    #[tokio::test]
    async fn filters_apply_to_backlog_and_live_events() {
        let hub = EventHub::new(&config(10, 4, 16), Arc::new(Metrics::new()));
        hub.publish(&event(1, Kind::Interruption));
        hub.publish(&event(2, Kind::RebalanceRecommendation));
        let filter = Filter {
            kinds: vec![Kind::RebalanceRecommendation],
            providers: vec![Provider::Aws],
        };
        let mut sub = hub.subscribe(filter, Some("other-process-7")).unwrap();
        assert_eq!(
            ids(sub.backlog.drain(..)),
            [2],
            "an unknown id resumes from the ring's start"
        );
        hub.publish(&event(3, Kind::Interruption));
        hub.publish(&event(4, Kind::RebalanceRecommendation));
        assert_eq!(sub.live.recv().await.map(|i| i.seq), Some(4));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_and_publishing_never_waits() {
        let metrics = Arc::new(Metrics::new());
        let hub = EventHub::new(&config(4, 4, 2), metrics.clone());
        let mut slow = hub.subscribe(Filter::default(), None).unwrap();
        for n in 1..=100 {
            hub.publish(&event(n, Kind::Interruption));
        }
        // It got what fitted, then its stream ended.
        assert_eq!(slow.live.recv().await.map(|i| i.seq), Some(1));
        assert_eq!(slow.live.recv().await.map(|i| i.seq), Some(2));
        assert!(slow.live.recv().await.is_none());
        assert!(
            metrics
                .encode()
                .contains("eviction_router_sse_subscribers_closed_total{reason=\"slow\"} 1")
        );
        // The ring kept the newest four; resuming from 2 reports the gap.
        let resumed = hub
            .subscribe(Filter::default(), Some(&format!("{}-2", hub.boot)))
            .unwrap();
        assert_eq!(ids(resumed.backlog.iter().cloned()), [97, 98, 99, 100]);
        assert_eq!(resumed.missed, 94);
    }

    #[test]
    fn subscribers_beyond_the_limit_are_refused() {
        let hub = EventHub::new(&config(4, 1, 2), Arc::new(Metrics::new()));
        let one = hub.subscribe(Filter::default(), None).unwrap();
        assert_eq!(
            hub.subscribe(Filter::default(), None).unwrap_err(),
            SubscribeError::Full(1)
        );
        drop(one);
        assert!(hub.subscribe(Filter::default(), None).is_ok());
        hub.close();
        assert_eq!(
            hub.subscribe(Filter::default(), None).unwrap_err(),
            SubscribeError::Closed
        );
    }
}
