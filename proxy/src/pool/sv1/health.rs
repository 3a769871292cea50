//! A pool connection's health: when the pool is up, when it has gone quiet,
//! and when it refuses so many shares that it must get no miners for a
//! while.
//!
//! A pool that accepts the connection and sends jobs but refuses nearly
//! every share (a wrong payout address, an account problem, a broken pool)
//! would otherwise keep its share of the miners and turn their work into
//! rejects. Once most of the latest answers are refusals, the pool is marked
//! down for a quarantine (the policy moves its miners at the next plan), then
//! tried again; each quarantine in a row is twice as long, up to ten
//! minutes. Stale answers do not count: every pool sends a few around a new
//! block; nor do answers during a quarantine (to shares already on their
//! way). The record belongs to the upstream, not the connection, so a pool
//! that drops the connection does not end its quarantine by reconnecting.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{DIFFICULTY_GRACE, HANDSHAKE_TIMEOUT, JOB_TIMEOUT, Link, Pending, SILENCE_TIMEOUT};
use crate::metrics::{Outcome, PoolReject};
use crate::pool::SUBMIT_TIMEOUT;
use crate::pool::backend::LinkError;
use crate::pool::owner::Pool;

/// How many of the latest answers are looked at.
const ANSWERS: usize = 64;
/// Answers needed before a pool can be judged.
const ENOUGH_ANSWERS: usize = 32;
/// The share of refusals among the latest answers that quarantines a pool.
const REFUSING: f64 = 0.9;
/// The first quarantine; later ones in a row double, up to the longest.
const QUARANTINE: Duration = Duration::from_secs(60);
const LONGEST_QUARANTINE: Duration = Duration::from_secs(600);

/// The latest answers of a pool to shares, and its quarantine.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// `true` for a refusal; stale answers are left out.
    answers: VecDeque<bool>,
    until: Option<Instant>,
    in_a_row: u32,
}

impl Refusals {
    /// Records the pool's answer to a share at `now`; returns the
    /// quarantine to start if the pool now refuses most shares.
    pub(super) fn record(&mut self, outcome: Outcome, now: Instant) -> Option<Duration> {
        if self.until.is_some_and(|until| now < until) {
            return None;
        }
        let refused = match outcome {
            Outcome::AcceptedByPool => false,
            Outcome::RejectedByPool(PoolReject::Stale) => return None,
            Outcome::RejectedByPool(_) => true,
            _ => return None,
        };
        if self.answers.len() == ANSWERS {
            self.answers.pop_front();
        }
        self.answers.push_back(refused);
        if self.answers.len() < ENOUGH_ANSWERS {
            return None;
        }
        let refusals = self.answers.iter().filter(|&&r| r).count();
        if (refusals as f64) < REFUSING * self.answers.len() as f64 {
            if refusals * 2 < self.answers.len() {
                // Healthy again: the next quarantine starts short.
                self.in_a_row = 0;
            }
            return None;
        }
        self.answers.clear();
        let length = QUARANTINE
            .saturating_mul(1 << self.in_a_row.min(4))
            .min(LONGEST_QUARANTINE);
        self.in_a_row += 1;
        self.until = Some(now + length);
        Some(length)
    }

    /// Whether the pool is in quarantine at `now`; says so once it ends.
    pub(super) fn quarantined(&mut self, now: Instant, pool: &str) -> bool {
        match self.until {
            Some(until) if now < until => true,
            Some(_) => {
                self.until = None;
                info!(%pool, "quarantine over: the pool gets miners again");
                false
            }
            None => false,
        }
    }
}

impl Link {
    /// Takes in the pool's answer to a share; quarantines a pool that
    /// refuses most of them.
    pub(super) fn judge_answer(&mut self, up: &Pool, outcome: Outcome) {
        let started = up.refusals().record(outcome, Instant::now());
        let Some(length) = started else {
            return;
        };
        warn!(
            pool = %up.name,
            seconds = length.as_secs(),
            "the pool refuses nearly every share: it gets no miners for a while"
        );
        up.quarantine();
        up.series.quarantined.set(1);
    }

    /// Marks the pool up once it is authorized, has a job, and said its
    /// difficulty (or had [`DIFFICULTY_GRACE`] to say it).
    pub(super) fn maybe_up(&mut self, up: &Pool) {
        let has_job = !up.state().jobs.is_empty();
        let difficulty_settled = self.difficulty_known
            || self
                .first_job
                .is_some_and(|at| at.elapsed() >= DIFFICULTY_GRACE);
        if up.refusals().quarantined(Instant::now(), &up.name) {
            return;
        }
        up.series.quarantined.set(0);
        if self.authorized && has_job && difficulty_settled {
            self.set_up(up);
        }
    }

    /// Marks the pool up: authorized, with a job.
    fn set_up(&mut self, up: &Pool) {
        self.healthy = true;
        up.set_up(true);
    }

    /// Times out unanswered shares and notices a pool that went quiet.
    pub(super) fn check_health(&mut self, up: &Pool) -> Result<(), LinkError> {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter_map(|(id, p)| match p {
                Pending::Submit { sent, .. } if now.duration_since(*sent) >= SUBMIT_TIMEOUT => {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        for id in expired {
            if let Some(Pending::Submit { settlement, .. }) = self.pending.remove(&id) {
                settlement.settle(Outcome::PoolTimeout);
            }
        }
        // Shares time out one by one above; the pool itself is given up
        // when it has answered nothing at all for a while since it was sent
        // one, however few shares are still waiting.
        if self
            .owed_since
            .is_some_and(|since| now.duration_since(since) >= SILENCE_TIMEOUT)
        {
            return Err(LinkError::Silent(SILENCE_TIMEOUT.as_secs()));
        }
        // A pool that never sets a difficulty is served at Stratum's default.
        self.maybe_up(up);
        match self.last_job {
            None if now.duration_since(self.connected) >= HANDSHAKE_TIMEOUT => {
                Err(LinkError::NoFirstJob)
            }
            Some(at) if now.duration_since(at) >= JOB_TIMEOUT => {
                Err(LinkError::NoNewJob(JOB_TIMEOUT.as_secs()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: Outcome = Outcome::RejectedByPool(PoolReject::Other);

    fn feed(refusals: &mut Refusals, outcome: Outcome, n: usize, now: Instant) -> Option<Duration> {
        (0..n).filter_map(|_| refusals.record(outcome, now)).last()
    }

    #[test]
    fn a_pool_refusing_nearly_everything_is_quarantined_and_tried_again() {
        let now = Instant::now();
        let mut refusals = Refusals::default();
        assert_eq!(
            feed(&mut refusals, REFUSED, 31, now),
            None,
            "too few answers"
        );
        assert_eq!(refusals.record(REFUSED, now), Some(QUARANTINE));
        assert!(refusals.quarantined(now + Duration::from_secs(59), "p"));
        // Answers to shares still on their way do not count meanwhile.
        assert_eq!(
            feed(&mut refusals, REFUSED, 64, now + Duration::from_secs(30)),
            None
        );
        let after = now + QUARANTINE;
        assert!(!refusals.quarantined(after, "p"));

        // Still refusing: twice as long.
        assert_eq!(
            feed(&mut refusals, REFUSED, 32, after),
            Some(QUARANTINE * 2)
        );
        // Mostly accepting again: the next one starts short.
        let later = after + QUARANTINE * 2;
        feed(&mut refusals, Outcome::AcceptedByPool, 40, later);
        assert_eq!(feed(&mut refusals, REFUSED, 64, later), Some(QUARANTINE));
    }

    #[test]
    fn stale_answers_and_a_normal_reject_rate_never_quarantine() {
        let now = Instant::now();
        let mut refusals = Refusals::default();
        let stale = Outcome::RejectedByPool(PoolReject::Stale);
        assert_eq!(feed(&mut refusals, stale, 1000, now), None);
        for _ in 0..100 {
            assert_eq!(feed(&mut refusals, Outcome::AcceptedByPool, 8, now), None);
            assert_eq!(feed(&mut refusals, REFUSED, 2, now), None);
        }
        assert!(!refusals.quarantined(now, "p"));
    }

    #[test]
    fn quarantines_grow_to_ten_minutes_at_most() {
        let now = Instant::now();
        let mut refusals = Refusals::default();
        let mut at = now;
        let lengths: Vec<_> = (0..7)
            .filter_map(|_| {
                let length = feed(&mut refusals, REFUSED, 32, at)?;
                at += length;
                Some(length)
            })
            .collect();
        assert_eq!(lengths.len(), 7);
        assert_eq!(lengths[4], LONGEST_QUARANTINE);
        assert_eq!(lengths[6], LONGEST_QUARANTINE);
    }
}
