//! The dedupe window: which `(source, id)` keys were handled recently, and which are in flight.
//!
//! Clouds deliver at least once, and Event Grid may send one notification twice; a key is
//! remembered for a window after it was handled. A key whose first delivery is still in flight
//! is reported as such, so the caller can ask for a redelivery instead of acknowledging a
//! duplicate of something that may yet fail. Memory is bounded: past `capacity` keys, the oldest
//! are forgotten first. Pure: the caller passes the clock in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What [`Dedupe::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time in the window: handle it, then call [`Dedupe::finish`].
    New,
    /// Handled within the window: acknowledge it, do nothing.
    Duplicate,
    /// Its first delivery is still being handled: ask for a redelivery later.
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Done(Instant),
}

/// A bounded set of recently seen keys.
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    capacity: usize,
    keys: HashMap<String, State>,
    /// Keys in the order they were finished, for expiry and the capacity bound.
    order: VecDeque<(Instant, String)>,
}

impl Dedupe {
    /// A window of `window`, remembering at most `capacity` handled keys.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Dedupe {
            window,
            capacity: capacity.max(1),
            keys: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The key of an event: its CloudEvents `source` and `id`.
    pub fn key(source: &str, id: &str) -> String {
        let mut key = String::with_capacity(source.len() + id.len() + 1);
        key.push_str(source);
        key.push('\n');
        key.push_str(id);
        key
    }

    /// Starts handling `key` at `now`, unless it is a duplicate or already in flight.
    pub fn begin(&mut self, key: &str, now: Instant) -> Seen {
        self.expire(now);
        match self.keys.get(key) {
            Some(State::InFlight) => Seen::InFlight,
            Some(State::Done(_)) => Seen::Duplicate,
            None => {
                self.keys.insert(key.to_owned(), State::InFlight);
                Seen::New
            }
        }
    }

    /// Ends handling `key`: remembered for the window when it `succeeded`, forgotten otherwise
    /// so that a redelivery is handled afresh.
    pub fn finish(&mut self, key: &str, succeeded: bool, now: Instant) {
        if !succeeded {
            self.keys.remove(key);
            return;
        }
        self.keys.insert(key.to_owned(), State::Done(now));
        self.order.push_back((now, key.to_owned()));
        while self.order.len() > self.capacity {
            if let Some((at, oldest)) = self.order.pop_front() {
                self.forget_done(&oldest, at);
            }
        }
    }

    /// How many keys are remembered or in flight.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered or in flight.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            if let Some((at, key)) = self.order.pop_front() {
                self.forget_done(&key, at);
            }
        }
    }

    /// Forgets `key` if the entry finished `at` is still its latest: a key handled again since
    /// (a later entry of `order` owns it) or in flight again is kept.
    fn forget_done(&mut self, key: &str, at: Instant) {
        if self.keys.get(key) == Some(&State::Done(at)) {
            self.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_handled_key_is_a_duplicate_within_the_window_and_new_after_it() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(10 * MIN, 100);
        let k = Dedupe::key("/aws/1/us-east-1", "abc");
        assert_eq!(d.begin(&k, t0), Seen::New);
        d.finish(&k, true, t0);
        assert_eq!(d.begin(&k, t0 + 9 * MIN), Seen::Duplicate);
        assert_eq!(d.begin(&k, t0 + 10 * MIN), Seen::New);
    }

    #[test]
    fn a_key_in_flight_is_reported_so_and_a_failure_forgets_it() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(MIN, 100);
        assert_eq!(d.begin("k", t0), Seen::New);
        assert_eq!(d.begin("k", t0), Seen::InFlight);
        d.finish("k", false, t0);
        assert_eq!(
            d.begin("k", t0),
            Seen::New,
            "a failed attempt must not swallow the retry"
        );
    }

    #[test]
    fn sources_keep_ids_apart() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(MIN, 100);
        let a = Dedupe::key("/aws/1/us-east-1", "x");
        let b = Dedupe::key("/aws/2/us-east-1", "x");
        assert_eq!(d.begin(&a, t0), Seen::New);
        d.finish(&a, true, t0);
        assert_eq!(d.begin(&b, t0), Seen::New);
    }

    #[test]
    fn memory_is_bounded_by_capacity_oldest_first() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(MIN, 3);
        for i in 0..5 {
            let k = i.to_string();
            assert_eq!(d.begin(&k, t0), Seen::New);
            d.finish(&k, true, t0);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.begin("0", t0), Seen::New, "the oldest was forgotten");
        assert_eq!(d.begin("4", t0), Seen::Duplicate);
    }

    #[test]
    fn a_key_handled_twice_stays_until_its_latest_expiry() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(10 * MIN, 100);
        assert_eq!(d.begin("k", t0), Seen::New);
        d.finish("k", true, t0);
        // After expiry it is handled again; the first entry's expiry must not forget it.
        assert_eq!(d.begin("k", t0 + 11 * MIN), Seen::New);
        d.finish("k", true, t0 + 11 * MIN);
        assert_eq!(d.begin("k", t0 + 15 * MIN), Seen::Duplicate);
    }
}
