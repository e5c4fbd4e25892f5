//! Sources: each reads one cloud's queue and hands the router [`Delivery`](crate::ack::Delivery)s,
//! mapping every [`Outcome`](crate::ack::Outcome) to its own acknowledgement call. Each cloud's
//! sources live with it under [`crate::providers`] (SQS in `aws`, Service Bus and the Event Grid
//! webhook in `azure`, Pub/Sub in `gcp`); this module holds what they share. The HTTP ingest
//! source lives in [`crate::server`]; the Event Grid webhook is served there too.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The longest a source takes, after the grace period, to give back the messages it still holds
/// (SQS visibility 0, Service Bus abandon, Pub/Sub nack and the acknowledgements to flush). A
/// queue that cannot be reached then gets its messages back when their visibility or lock
/// lapses.
pub const RELEASE_TAIL: Duration = Duration::from_secs(5);

/// Shutdown of a queue source whose receive loops each return the settle tasks of the messages
/// they still hold: waits up to `grace` for those to settle, then cancels `release` (each task
/// gives its message back to the queue) and waits for that.
pub async fn settle_in_flight(
    mut loops: JoinSet<JoinSet<()>>,
    grace: Duration,
    release: &CancellationToken,
    queue: &'static str,
) {
    let mut settling = JoinSet::new();
    while let Some(done) = loops.join_next().await {
        if let Ok(mut tasks) = done {
            settling.spawn(async move { while tasks.join_next().await.is_some() {} });
        }
    }
    settle_within(settling, grace, release, queue).await;
}

/// Waits up to `grace` for `settling`, then cancels `release` and waits for the rest, at most
/// [`RELEASE_TAIL`].
pub async fn settle_within(
    mut settling: JoinSet<()>,
    grace: Duration,
    release: &CancellationToken,
    queue: &'static str,
) {
    let all = async { while settling.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            queue,
            grace_s = grace.as_secs(),
            "In-flight messages did not finish within the grace period; giving them back to the queue."
        );
        release.cancel();
        let released = async { while settling.join_next().await.is_some() {} };
        if tokio::time::timeout(RELEASE_TAIL, released).await.is_err() {
            tracing::warn!(
                queue,
                left = settling.len(),
                "Could not give every message back in time; the queue redelivers them when their hold lapses."
            );
            settling.abort_all();
        }
    }
}

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
