//! Taking one instance out of a farm, for a rolling restart (SIGUSR1).
//!
//! A drain stops accepting miners (the listener closes, so a balancer's
//! connection attempts are refused and go to another instance), makes
//! `/readyz` fail (see [`readiness`]) so the balancer's health check takes
//! the instance out, and then gives the connected miners their turn to
//! leave one at a time, evenly over `[server] drain_period`: a session
//! whose turn comes asks its miner with a bare `client.reconnect` (the same
//! address, so through the balancer to another instance) once none of its
//! shares is waiting for a pool's answer. The drain ends when every miner
//! has left or the period is over; the caller then shuts the proxy down.
//!
//! [`Drain::run`] is the one entry point, whatever asks for the drain (a
//! signal, an API call).

use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the drain looks whether every miner has left.
const POLL: Duration = Duration::from_millis(50);

/// A drain of the proxy, shared by whatever starts it and every session.
#[derive(Debug)]
pub struct Drain {
    period: Duration,
    /// Cancelled when the drain starts.
    started: CancellationToken,
    /// One permit per miner whose turn to leave has come.
    turns: Semaphore,
    /// The accept loop's token.
    accepting: CancellationToken,
    /// The whole proxy's token: a drain stops early if the proxy stops.
    stopping: CancellationToken,
    metrics: Metrics,
}

impl Drain {
    /// Prepares a drain over `period` of the proxy whose accept loop stops
    /// with `accepting`.
    pub(crate) fn new(
        period: Duration,
        accepting: CancellationToken,
        stopping: CancellationToken,
        metrics: Metrics,
    ) -> Self {
        Drain {
            period,
            started: CancellationToken::new(),
            turns: Semaphore::new(0),
            accepting,
            stopping,
            metrics,
        }
    }

    /// Whether a drain has started.
    pub fn is_started(&self) -> bool {
        self.started.is_cancelled()
    }

    /// Completes when it is a session's turn to leave; each turn is taken
    /// by one session. Cancel-safe: a turn is only taken on completion.
    pub(crate) async fn turn(&self) {
        self.started.cancelled().await;
        match self.turns.acquire().await {
            Ok(permit) => permit.forget(),
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Drains the proxy: stops accepting, fails `/readyz`, and gives the
    /// miners connected now their turns evenly over the drain period (with
    /// N miners, one every period / (N + 1)). Returns when no miner is
    /// left, when the period is over, or when the proxy stops; at once if
    /// a drain was already started.
    pub async fn run(&self) {
        if self.is_started() {
            return;
        }
        self.started.cancel();
        self.metrics.draining.set(1);
        self.accepting.cancel();
        let start = Instant::now();
        let miners = self.connected();
        info!(
            miners,
            period = ?self.period,
            "draining: no new miners; asking the connected ones to reconnect elsewhere, one at a time"
        );
        let turns = u32::try_from(miners).unwrap_or(u32::MAX);
        // The last step is left for the last miner to go.
        let step = self.period / turns.saturating_add(1);
        for k in 1..=turns {
            tokio::select! {
                () = self.stopping.cancelled() => return,
                () = sleep_until(start + step * k) => {}
            }
            if self.connected() == 0 {
                break;
            }
            self.turns.add_permits(1);
        }
        let end = start + self.period;
        while self.connected() > 0 && Instant::now() < end {
            tokio::select! {
                () = self.stopping.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
        match self.connected() {
            0 => info!("drained: every miner has left"),
            left => warn!(
                left,
                "drain period over; closing the miners still connected"
            ),
        }
    }

    fn connected(&self) -> u64 {
        u64::try_from(self.metrics.downstream_connections.get()).unwrap_or(0)
    }
}

/// Returns whether the proxy should be given new miners (`/readyz`), or
/// why not: it drains, or no pool is up (nowhere to send their work).
pub fn readiness(metrics: &Metrics) -> Result<(), &'static str> {
    if metrics.draining.get() > 0 {
        return Err("draining");
    }
    if metrics.sum("hashsplit_pool_up", &[]) <= 0.0 {
        return Err("no pool is up");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn drain(period: Duration, metrics: &Metrics) -> (Arc<Drain>, CancellationToken) {
        let stopping = CancellationToken::new();
        let accepting = stopping.child_token();
        let drain = Drain::new(period, accepting.clone(), stopping, metrics.clone());
        (Arc::new(drain), accepting)
    }

    #[test]
    fn readiness_needs_a_pool_up_and_no_drain() {
        let metrics = Metrics::new(&["a".to_owned()]);
        assert_eq!(readiness(&metrics), Err("no pool is up"));
        let a = metrics.pool_for_test("a");
        a.up.set(1);
        assert_eq!(readiness(&metrics), Ok(()));
        metrics.draining.set(1);
        assert_eq!(readiness(&metrics), Err("draining"));
    }

    #[tokio::test(start_paused = true)]
    async fn miners_get_their_turns_one_at_a_time_over_the_period() {
        let metrics = Metrics::new(&[]);
        metrics.downstream_connections.set(4);
        let (drain, accepting) = drain(Duration::from_secs(10), &metrics);
        // Four sessions: each leaves as soon as its turn comes.
        let start = Instant::now();
        let mut sessions = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (drain, metrics) = (Arc::clone(&drain), metrics.clone());
            sessions.spawn(async move {
                drain.turn().await;
                metrics.downstream_connections.dec();
                Instant::now() - start
            });
        }
        tokio::task::yield_now().await;
        assert!(!accepting.is_cancelled());
        drain.run().await;

        assert!(accepting.is_cancelled(), "the drain stops accepting");
        assert_eq!(metrics.draining.get(), 1);
        let mut turns = sessions.join_all().await;
        turns.sort();
        // One every period / (N + 1), and done once the last has left.
        let expected: Vec<Duration> = (1..=4).map(|k| Duration::from_secs(2 * k)).collect();
        assert_eq!(turns, expected);
        assert!(Instant::now() - start <= Duration::from_secs(8) + POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_ends_with_its_period_when_miners_stay() {
        let metrics = Metrics::new(&[]);
        metrics.downstream_connections.set(3);
        let (drain, _accepting) = drain(Duration::from_secs(8), &metrics);
        let start = Instant::now();
        drain.run().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
        // A second request while draining changes nothing.
        drain.run().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
    }
}
