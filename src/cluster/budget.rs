//! One client-side API budget for every call to the API server, served by priority.
//!
//! A token bucket (`rate` per second, `burst` deep, Karpenter's 200/300 by default) shared by
//! three clients that differ only in the priority their requests wait at: [`Priority::Admit`]
//! (the message path's one patch per Node, the Node watch, the Lease), [`Priority::Event`]
//! (Kubernetes Events) and [`Priority::Drain`] (pod lists, evictions, drain progress). A waiter
//! is served only when no waiter of a higher priority is queued, so in a pool-wide reclaim every
//! notified Node is cordoned before the budget is spent on evictions; within a priority it is
//! first come, first served. A waiter that gives up (its future is dropped) costs nothing.
//!
//! Queues alone are not enough in a burst: the first notices find the bucket full and take
//! their tokens at once, and the drains their admits start would too, before the next notices
//! reach the budget. So the router holds an [`Admitting`] guard from the moment it takes a
//! delivery until its admit is done, and while any is held, Events and drains wait even for
//! tokens that are free: no eviction starts while a notified Node may still be schedulable.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Which queue a request waits in; earlier variants are served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// The message path's admit, the Node watch, the Lease.
    Admit = 0,
    /// Kubernetes Events.
    Event = 1,
    /// Pod lists, evictions, drain progress.
    Drain = 2,
}

const PRIORITIES: usize = 3;

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled: Instant,
    queues: [VecDeque<oneshot::Sender<()>>; PRIORITIES],
    /// Whether a dispatcher task is handing out tokens to the queues.
    dispatching: bool,
}

/// The shared budget. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    rate: f64,
    burst: f64,
    state: Option<Arc<Mutex<State>>>,
    /// Deliveries taken and not yet admitted ([`Admitting`] guards alive).
    admitting: Arc<AtomicUsize>,
}

/// Held while a delivery is on its way to its admit: lower priorities wait meanwhile.
#[derive(Debug)]
pub struct Admitting(Arc<AtomicUsize>);

impl Drop for Admitting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often a dispatcher with only lower-priority waiters looks whether the admits are done.
const ADMIT_POLL: Duration = Duration::from_millis(5);

impl Budget {
    /// `rate` requests per second with bursts of `burst`; a rate of 0 is no limit.
    pub fn new(rate: u32, burst: u32) -> Budget {
        let state = (rate > 0).then(|| {
            Arc::new(Mutex::new(State {
                tokens: f64::from(burst.max(1)),
                refilled: Instant::now(),
                queues: Default::default(),
                dispatching: false,
            }))
        });
        Budget {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            state,
            admitting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A delivery is on its way to an admit: Events and drains wait until it is dropped.
    pub fn admitting(&self) -> Admitting {
        self.admitting.fetch_add(1, Ordering::AcqRel);
        Admitting(self.admitting.clone())
    }

    fn held(&self, priority: Priority) -> bool {
        priority > Priority::Admit && self.admitting.load(Ordering::Acquire) > 0
    }

    /// No limit at all.
    pub fn unlimited() -> Budget {
        Budget::new(0, 0)
    }

    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        // Plain counters and queues: a panic elsewhere cannot leave them half-updated.
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refill(&self, s: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
        s.refilled = now;
    }

    /// Waits for one request's worth of budget at `priority`.
    pub async fn acquire(&self, priority: Priority) {
        let Some(state) = &self.state else {
            return;
        };
        let rx = {
            let mut s = Budget::lock(state);
            self.refill(&mut s, Instant::now());
            let ahead = s.queues[..=priority as usize].iter().any(|q| !q.is_empty());
            if !ahead && !self.held(priority) && s.tokens >= 1.0 {
                s.tokens -= 1.0;
                return;
            }
            let (tx, rx) = oneshot::channel();
            s.queues[priority as usize].push_back(tx);
            if !s.dispatching {
                s.dispatching = true;
                tokio::spawn(self.clone().dispatch());
            }
            rx
        };
        // The dispatcher always answers or is dropped with the runtime.
        let _ = rx.await;
    }

    /// Hands tokens to waiters, highest priority first, until every queue is empty.
    async fn dispatch(self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        loop {
            let wait = {
                let mut s = Budget::lock(&state);
                self.refill(&mut s, Instant::now());
                while s.tokens >= 1.0 {
                    let held = self.admitting.load(Ordering::Acquire) > 0;
                    let open = if held { 1 } else { PRIORITIES };
                    let Some(waiter) = s.queues[..open].iter_mut().find_map(VecDeque::pop_front)
                    else {
                        break;
                    };
                    // A waiter that went away takes nothing.
                    if waiter.send(()).is_ok() {
                        s.tokens -= 1.0;
                    }
                }
                if s.queues.iter().all(VecDeque::is_empty) {
                    s.dispatching = false;
                    return;
                }
                if s.tokens >= 1.0 {
                    // Tokens are there, but only for waiters held back by admits in progress.
                    ADMIT_POLL
                } else {
                    Duration::from_secs_f64(((1.0 - s.tokens) / self.rate).max(0.000_5))
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// How many requests are waiting, per priority (for tests and the debug log).
    pub fn waiting(&self) -> [usize; PRIORITIES] {
        match &self.state {
            None => [0; PRIORITIES],
            Some(state) => {
                let s = Budget::lock(state);
                [s.queues[0].len(), s.queues[1].len(), s.queues[2].len()]
            }
        }
    }
}

/// A `tower::Service` that spends budget at one priority before each request, then sends it
/// through `inner`.
#[derive(Clone)]
struct Budgeted {
    inner: kube::Client,
    budget: Budget,
    priority: Priority,
}

impl tower::Service<Request<Body>> for Budgeted {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // `kube::Client` buffers its own stack; readiness is checked in `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.budget.acquire(this.priority).await;
            this.inner.send(request).await
        })
    }
}

/// The three clients of the cluster edge, one per priority, sharing one [`Budget`].
#[derive(Clone)]
pub struct Clients {
    /// The message path's writes, the Node watch, the Lease.
    pub admit: kube::Client,
    /// Kubernetes Events.
    pub events: kube::Client,
    /// Pod lists, evictions and drain progress. Built on a client WITHOUT kube's default retry
    /// (kube 5 retries 429, 503 and 504 up to 5 times inside the client when
    /// `Config::default_retry` is on), so that a PodDisruptionBudget's 429 on `pods/eviction`
    /// reaches the drain, which owns that retry and its deadline.
    pub drain: kube::Client,
    /// The budget they share.
    pub budget: Budget,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Clients {
    /// The clients over `retrying` (any client; kube's default retry is fine there) and
    /// `no_retry` (a client that surfaces every 429 to its caller), sharing `budget`.
    pub fn new(retrying: kube::Client, no_retry: kube::Client, budget: Budget) -> Clients {
        let wrap = |inner: kube::Client, priority| {
            let ns = inner.default_namespace().to_owned();
            kube::Client::new(
                Budgeted {
                    inner,
                    budget: budget.clone(),
                    priority,
                },
                ns,
            )
        };
        Clients {
            admit: wrap(retrying.clone(), Priority::Admit),
            events: wrap(retrying, Priority::Event),
            drain: wrap(no_retry, Priority::Drain),
            budget,
        }
    }

    /// All three over one client (a test's in-process fake has no retry layer of its own).
    pub fn single(client: kube::Client, budget: Budget) -> Clients {
        Clients::new(client.clone(), client, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_burst_is_free_then_the_rate_holds() {
        let budget = Budget::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire(Priority::Drain).await;
        }
        assert_eq!(Instant::now(), start, "the burst costs no time");
        for _ in 0..10 {
            budget.acquire(Priority::Drain).await;
        }
        let took = Instant::now() - start;
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priorities_are_served_first_and_fifo_within_one() {
        let budget = Budget::new(100, 1);
        budget.acquire(Priority::Admit).await; // the bucket is empty now
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, p) in [
            Priority::Drain,
            Priority::Drain,
            Priority::Event,
            Priority::Admit,
            Priority::Admit,
        ]
        .into_iter()
        .enumerate()
        {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.spawn(async move {
                budget.acquire(p).await;
                order.lock().unwrap().push(i);
            });
            // Queue them in this order.
            tokio::task::yield_now().await;
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(*order.lock().unwrap(), vec![3, 4, 2, 0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_costs_nothing() {
        let budget = Budget::new(10, 1);
        budget.acquire(Priority::Admit).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), budget.acquire(Priority::Drain)).await;
        assert!(gave_up.is_err());
        assert_eq!(budget.waiting(), [0, 0, 1], "still queued until dispatched");
        let start = Instant::now();
        budget.acquire(Priority::Drain).await;
        // One token after 100 ms: it went to this waiter, not the one that left.
        assert!(Instant::now() - start <= Duration::from_millis(100));
        assert_eq!(budget.waiting(), [0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_a_delivery_is_admitting_drains_wait_even_for_free_tokens() {
        let budget = Budget::new(100, 300);
        let guard = budget.admitting();
        let drained = Arc::new(Mutex::new(false));
        let task = {
            let (budget, drained) = (budget.clone(), drained.clone());
            tokio::spawn(async move {
                budget.acquire(Priority::Drain).await;
                *drained.lock().unwrap() = true;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !*drained.lock().unwrap(),
            "a drain went while an admit was pending"
        );
        budget.acquire(Priority::Admit).await;
        assert!(!*drained.lock().unwrap());
        drop(guard);
        task.await.unwrap();
        assert!(*drained.lock().unwrap());
    }

    #[tokio::test]
    async fn no_rate_is_no_limit() {
        let budget = Budget::unlimited();
        for _ in 0..10_000 {
            budget.acquire(Priority::Drain).await;
        }
        assert_eq!(budget.waiting(), [0, 0, 0]);
    }
}
