//! Sources: each reads one cloud's queue and hands the router [`Delivery`](crate::ack::Delivery)s,
//! mapping every [`Outcome`](crate::ack::Outcome) to its own acknowledgement call. The HTTP ingest
//! source lives in [`crate::server`]; the Event Grid webhook ([`eventgrid`]) is served there too.

pub mod eventgrid;
#[cfg(feature = "gcp")]
pub mod pubsub;
#[cfg(feature = "azure")]
pub mod servicebus;
#[cfg(feature = "aws")]
pub mod sqs;

use std::time::Duration;

/// Exponential backoff with jitter for a source that cannot reach its queue: each failure
/// doubles the delay up to `max`; the delay is drawn from its upper half so that replicas do not
/// retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let full = self.current;
        self.current = (self.current * 2).min(self.max);
        full / 2 + (full / 2).mul_f64(fastrand::f64())
    }

    /// After a success: start again from `initial`.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = vec![];
        for _ in 0..10 {
            let ceiling = b.current;
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings[0], Duration::from_millis(500));
        assert_eq!(ceilings[1], Duration::from_secs(1));
        assert_eq!(*ceilings.last().unwrap(), Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
