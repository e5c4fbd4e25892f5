//! Bursts: how many interruptions of a pool fell within a window (3 min) of another one of the
//! same pool. Bounded: only the interruptions of the last `horizon` (the window plus the disorder
//! tolerated in the stream) are kept, and at most [`MAX_RECENT`] distinct seconds of them.

use std::collections::BTreeMap;

/// The most distinct seconds kept; older ones are dropped first.
pub const MAX_RECENT: usize = 4_096;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Slot {
    n: u64,
    in_burst: bool,
}

/// The interruptions of one pool that are, or were, within the window of another.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Bursts {
    /// Second → interruptions at that second.
    recent: BTreeMap<i64, Slot>,
    in_bursts: u64,
}

impl Bursts {
    /// Adds an interruption at `t` (seconds): it and every kept interruption within `window`
    /// seconds of it are in a burst. Interruptions older than `horizon` before `newest` are
    /// forgotten (they stay counted).
    pub fn add(&mut self, t: i64, window: i64, horizon: i64, newest: i64) {
        let mut near = false;
        for (_, slot) in self.recent.range_mut(t - window..=t + window) {
            near = true;
            if !slot.in_burst {
                slot.in_burst = true;
                self.in_bursts += slot.n;
            }
        }
        let slot = self.recent.entry(t).or_insert(Slot {
            n: 0,
            in_burst: false,
        });
        slot.n += 1;
        if near {
            slot.in_burst = true;
            self.in_bursts += 1;
        }
        let keep_from = newest.max(t) - horizon;
        while let Some((&first, _)) = self.recent.first_key_value() {
            if first >= keep_from && self.recent.len() <= MAX_RECENT {
                break;
            }
            self.recent.pop_first();
        }
    }

    /// Interruptions within the window of another.
    pub fn in_bursts(&self) -> u64 {
        self.in_bursts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(times: &[i64]) -> u64 {
        let mut b = Bursts::default();
        let mut newest = i64::MIN;
        for t in times {
            newest = newest.max(*t);
            b.add(*t, 180, 3_600, newest);
        }
        b.in_bursts()
    }

    #[test]
    fn interruptions_within_the_window_of_another_are_in_a_burst() {
        assert_eq!(run(&[0]), 0);
        assert_eq!(run(&[0, 1_000]), 0);
        assert_eq!(run(&[0, 180]), 2, "the window is inclusive");
        assert_eq!(run(&[0, 181]), 0);
        assert_eq!(run(&[0, 100, 200, 300]), 4, "a chain is one burst");
        assert_eq!(run(&[5, 5]), 2, "the same second");
        assert_eq!(run(&[0, 100, 5_000, 9_000, 9_050, 9_100]), 5);
    }

    #[test]
    fn order_within_the_horizon_does_not_matter() {
        assert_eq!(run(&[300, 0, 150]), 3);
        assert_eq!(run(&[9_100, 9_000, 6_000, 5_900]), 4);
        // Beyond the horizon, a late interruption is counted but paired with nothing.
        assert_eq!(run(&[9_100, 100, 0]), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut b = Bursts::default();
        for t in 0..100_000 {
            b.add(t * 10, 180, 3_600, t * 10);
        }
        assert!(b.recent.len() <= 361, "{}", b.recent.len());
        assert_eq!(b.in_bursts(), 100_000);
    }
}
