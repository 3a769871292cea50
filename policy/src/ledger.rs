//! Who mined where: each miner's time on each pool over the window.
//!
//! The engine accounts delivered work as time on a pool × the miner's
//! estimated hashrate, not as the raw credited shares: shares are a noisy
//! count (a miner at 20 shares a minute delivers 200 ± 14 shares in ten
//! minutes), while the miner's hashrate is estimated from all its shares on
//! every pool. Re-valuing the window with the latest estimate keeps a
//! time-sliced miner's split exact even while its estimate moves.

use std::collections::VecDeque;

use crate::units::{Instant, PoolId};

/// One miner's stays on pools, newest last.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    closed: VecDeque<Stay>,
    open: Option<(PoolId, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Stay {
    pool: PoolId,
    from: Instant,
    to: Instant,
}

impl Trail {
    /// Starts a stay on `pool` at `at`, ending the current one.
    pub fn start(&mut self, pool: PoolId, at: Instant) {
        self.stop(at);
        self.open = Some((pool, at));
    }

    /// Ends the current stay at `at`, if there is one.
    pub fn stop(&mut self, at: Instant) {
        if let Some((pool, from)) = self.open.take()
            && at > from
        {
            self.closed.push_back(Stay { pool, from, to: at });
        }
    }

    /// Forgets stays that ended before `before`.
    pub fn forget_before(&mut self, before: Instant) {
        while self.closed.front().is_some_and(|s| s.to <= before) {
            self.closed.pop_front();
        }
    }

    /// Returns whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none()
    }

    /// Adds `rate` × the seconds spent on each pool within `(from, to]` to
    /// `work[pool]`.
    pub fn add_work(&self, rate: f64, from: Instant, to: Instant, work: &mut [f64]) {
        let open = self.open.map(|(pool, start)| Stay {
            pool,
            from: start,
            to,
        });
        for stay in self.closed.iter().chain(open.iter()) {
            let start = stay.from.max(from);
            let end = stay.to.min(to);
            if end > start
                && let Some(slot) = work.get_mut(stay.pool.0)
            {
                *slot += rate * (end - start).as_secs_f64();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counts_only_the_overlap_with_the_window() {
        let mut trail = Trail::default();
        trail.start(PoolId(0), Instant::from_secs(0));
        trail.start(PoolId(1), Instant::from_secs(10));
        trail.stop(Instant::from_secs(30));
        trail.start(PoolId(0), Instant::from_secs(40));
        let mut work = [0.0; 2];
        trail.add_work(
            2.0,
            Instant::from_secs(5),
            Instant::from_secs(50),
            &mut work,
        );
        assert_eq!(work, [2.0 * (5.0 + 10.0), 2.0 * 20.0]);
    }

    #[test]
    fn forgotten_stays_no_longer_count() {
        let mut trail = Trail::default();
        trail.start(PoolId(0), Instant::from_secs(0));
        trail.stop(Instant::from_secs(10));
        trail.forget_before(Instant::from_secs(10));
        assert!(trail.is_empty());
    }
}
