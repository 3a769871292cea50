//! A miner's submit, cheapest check first (DESIGN.md, "Share validation"):
//! session state → field hex and lengths → job lookup (unknown / stale) →
//! ntime window → version bits → duplicate → SHA-256d → targets.
//!
//! Every submit becomes an [`Unsettled`](crate::metrics::Unsettled) share
//! once its pool is known, settled here for local outcomes and by the
//! pool's backend for forwarded ones. A forwarded share is
//! answered to the miner when the pool's answer comes back (the upstream
//! bounds that wait), so the miner hears the real result.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use hashsplit_policy::{Observation, PoolId, Work};
use hashsplit_stratum::{
    Id, ParseError, Reject, Response, ShareContext, StratumError, Submission, Submit,
    share::hash_to_hex,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use super::handshake::MayMine;
use super::{Disconnect, Session};
use crate::metrics::{NO_POOL, Outcome, ShareSeries};
use crate::pool::{Forward, Settlement, Unqueued};

/// Answers to a miner written between two flushes at most.
const MAX_ANSWER_BATCH: usize = 256;

/// A forwarded share waiting for its pool's answer.
pub(super) struct PoolAnswer {
    id: Id,
    answer: oneshot::Receiver<Outcome>,
}

impl Future for PoolAnswer {
    type Output = (Id, Outcome);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut this.answer).poll(cx).map(|answer| {
            // A dropped sender means the share's settlement was dropped
            // unsettled, which counted it as unavailable.
            let id = std::mem::replace(&mut this.id, Id::Null);
            (id, answer.unwrap_or(Outcome::PoolUnavailable))
        })
    }
}

/// The answers a session waits for from pools. The set exists only while
/// one is awaited: an empty `FuturesUnordered` still holds two shared
/// allocations, which every idle miner would pay for.
#[derive(Default)]
pub(super) struct Answers(Option<FuturesUnordered<PoolAnswer>>);

impl Answers {
    fn push(&mut self, answer: PoolAnswer) {
        self.0
            .get_or_insert_with(FuturesUnordered::new)
            .push(answer);
    }

    /// Returns whether no answer is awaited.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Waits for the next answer; `None` at once when none is awaited.
    pub(super) async fn next(&mut self) -> Option<(Id, Outcome)> {
        let set = self.0.as_mut()?;
        let answer = set.next().await;
        if set.is_empty() {
            self.0 = None;
        }
        answer
    }

    /// Takes an answer that is already in, if any.
    fn ready(&mut self) -> Option<(Id, Outcome)> {
        self.next().now_or_never().flatten()
    }
}

impl Session {
    pub(super) async fn on_submit(&mut self, id: Id, submit: Submit) -> Result<(), Disconnect> {
        let started = Instant::now();
        let result = self.judge_submit(&submit);
        self.shared
            .metrics
            .share_validation_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err((pool, reject)) => {
                self.shares_of(pool)
                    .submit(0.0)
                    .settle(Outcome::Rejected(reject));
                self.reply_error(id, StratumError::new(reject.code(), reject.to_string()))
                    .await?;
                self.rejects_in_a_row += 1;
                if self.rejects_in_a_row >= super::MAX_REJECTS_IN_A_ROW {
                    warn!(miner = %self.miner, peer = %self.peer, "too many shares rejected in a row; disconnecting");
                    return Err(Disconnect::TooManyRejects);
                }
                Ok(())
            }
            Ok(accepted) => {
                self.rejects_in_a_row = 0;
                if accepted.verdict.meets_miner {
                    let difficulty = accepted.found.difficulty.as_f64();
                    let workers = &self.shared.metrics.workers;
                    workers.credit(&submit.worker, difficulty, SystemTime::now());
                }
                self.settle_accepted(id, accepted).await?;
                // A miner far below its difficulty is corrected as its
                // shares come, not only at the next vardiff tick.
                self.retarget().await
            }
        }
    }

    /// Counts a submit that could not be read as a malformed share.
    pub(super) async fn reject_malformed_submit(
        &mut self,
        error: &ParseError,
    ) -> Result<(), Disconnect> {
        self.shared
            .metrics
            .no_pool_shares()
            .submit(0.0)
            .settle(Outcome::Rejected(Reject::Malformed));
        warn!(miner = %self.miner, %error, "malformed submit");
        Ok(())
    }

    /// Returns the metric label of `pool` (`none` for a share of no pool).
    fn pool_label(&self, pool: Option<PoolId>) -> &str {
        pool.and_then(|pool| self.pools.get(pool.index()))
            .map_or(NO_POOL, |handle| handle.name())
    }

    /// Returns the share counters of `pool` (those of no pool for a
    /// share of no pool).
    fn shares_of(&self, pool: Option<PoolId>) -> &ShareSeries {
        pool.and_then(|pool| self.pools.get(pool.index()))
            .map_or(self.shared.metrics.no_pool_shares(), |handle| {
                handle.shares()
            })
    }

    /// Runs every local check; on success returns what to do with the share.
    fn judge_submit(&mut self, submit: &Submit) -> Result<Accepted, (Option<PoolId>, Reject)> {
        let none = |reject| (None, reject);
        // Only a subscribed miner's authorized worker gets past this.
        let may_mine = self.handshake.may_mine(&submit.worker).map_err(none)?;
        let submission = Submission::from_hex(
            &submit.extranonce2,
            &submit.ntime,
            &submit.nonce,
            submit.version_bits.as_deref(),
            self.layout.extranonce2_size,
        )
        .map_err(none)?;
        let pools = &self.pools;
        let found = self
            .book
            // A pool this session has not seen has no epoch it can match.
            .find(&submit.job_id, |pool| {
                pools
                    .get(pool.index())
                    .map_or(u64::MAX, |handle| handle.state().epoch)
            });
        let found = match found {
            Ok(found) => found,
            Err(Reject::Stale) => {
                self.warn_if_block(&submit.job_id, &submission);
                return Err(none(Reject::Stale));
            }
            Err(reject) => return Err(none(reject)),
        };
        let pool = found.job.pool;
        let at_pool = |reject| (Some(pool), reject);

        found
            .job
            .job
            .check(&submission, self.version_mask)
            .map_err(at_pool)?;
        let key = submission.key(self.extranonce1.as_bytes());
        self.book
            .check_duplicate(&submit.job_id, &key)
            .map_err(at_pool)?;
        let ctx = ShareContext {
            extranonce1: self.extranonce1.as_bytes(),
            version_mask: self.version_mask,
            miner_target: found.difficulty.to_target(),
            pool_target: found.job.pool_target,
        };
        let verdict = found.job.job.judge(&ctx, &submission).map_err(at_pool)?;
        self.book.record(&submit.job_id, key);
        Ok(Accepted {
            found,
            submission,
            verdict,
            _may_mine: may_mine,
        })
    }

    /// Logs a stale share that would have been a block: a whole block
    /// reward lost, often to a miner slow to take new work.
    fn warn_if_block(&self, job_id: &str, submission: &Submission) {
        let extranonce1 = self.extranonce1.as_bytes();
        if let Some((pool, hash)) =
            self.book
                .block_hash(job_id, extranonce1, self.version_mask, submission)
        {
            let name = self.pool_label(Some(pool));
            if let Some(handle) = self.pools.get(pool.index()) {
                handle.series().block_candidates_stale.inc();
            }
            warn!(
                pool = %name,
                miner = %self.miner,
                peer = %self.peer,
                hash = %hash_to_hex(&hash),
                "a share meeting the network target came for a stale job (from before the \
                 pool's latest new block, reconnect or extranonce change), so it cannot be \
                 submitted; if this repeats, check how fast this miner takes new work"
            );
        }
    }

    async fn settle_accepted(&mut self, id: Id, share: Accepted) -> Result<(), Disconnect> {
        let Accepted {
            found,
            submission,
            verdict,
            ..
        } = share;
        let credited = if verdict.meets_miner {
            found.difficulty.as_f64()
        } else {
            0.0
        };
        // Counted as submitted from here; every way out settles it.
        let series = self.shares_of(Some(found.job.pool)).clone();
        let share = series.submit(credited);
        let pool_name = series.pool();
        if verdict.meets_miner {
            self.shared.policy.work(Observation::Work {
                miner: self.miner,
                pool: found.job.pool,
                work: Work::from_difficulty(found.difficulty.as_f64()),
            });
            self.vardiff.record_share();
        }
        if verdict.meets_network {
            if let Some(handle) = self.pools.get(found.job.pool.index()) {
                handle.series().block_candidates.inc();
            }
            warn!(
                pool = %pool_name,
                miner = %self.miner,
                hash = %hash_to_hex(&verdict.hash),
                "block candidate: forwarding to the pool first"
            );
        }
        if !(verdict.meets_pool || verdict.meets_network) {
            share.settle(Outcome::AcceptedLocal);
            return self.reply(id, true.into()).await;
        }

        let (reply, answer) = oneshot::channel();
        let forward = Forward {
            pool_job_id: std::sync::Arc::clone(&found.job.pool_job_id),
            extranonce2: found
                .job
                .pool_extranonce2(self.extranonce1.as_bytes(), submission.extranonce2()),
            ntime: submission.ntime,
            nonce: submission.nonce,
            version_bits: submission
                .version_bits
                .map(|bits| bits & self.version_mask.unwrap_or(0)),
            settlement: Settlement::new(share, reply),
        };
        // While the pool's queue is full this waits, and the miner is not
        // read meanwhile: back-pressure, never a refusal of valid work.
        let forwarded = match self.pools.get(found.job.pool.index()) {
            Some(pool) => pool.forward(forward, verdict.meets_network).await,
            None => Err(Unqueued::Gone(forward)),
        };
        match forwarded {
            Ok(()) => {
                self.pending.push(PoolAnswer { id, answer });
                Ok(())
            }
            Err(unqueued) => {
                let outcome = unqueued.outcome();
                warn!(pool = %series.pool(), miner = %self.miner, reason = %unqueued, "share not forwarded");
                unqueued.into_share().settlement.settle(outcome);
                self.reply_error(id, outcome_error(outcome)).await
            }
        }
    }

    /// Tells the miner what the pool said about a forwarded share, and
    /// about every other one already answered (at most
    /// [`MAX_ANSWER_BATCH`]), in one write: under load, one write per
    /// batch of answers rather than one per share.
    pub(super) async fn on_pool_answer(&mut self, first: (Id, Outcome)) -> Result<(), Disconnect> {
        let mut lines = String::new();
        let mut next = Some(first);
        let mut answered = 0;
        while let Some((id, outcome)) = next.take() {
            if !id.is_null() {
                let line = if outcome == Outcome::AcceptedByPool {
                    Response::ok(id, serde_json::Value::Bool(true)).to_line()
                } else {
                    Response::error(id, outcome_error(outcome)).to_line()
                };
                lines.push_str(&line);
                lines.push('\n');
            }
            answered += 1;
            if answered < MAX_ANSWER_BATCH {
                next = self.pending.ready();
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.write(lines.as_bytes()).await
    }
}

/// What passed every local check: only [`Session::judge_submit`] makes
/// one, and only with the handshake's proof that the miner may mine.
struct Accepted {
    found: crate::jobs::Found,
    submission: Submission,
    verdict: hashsplit_stratum::Verdict,
    _may_mine: MayMine,
}

/// Returns the error a miner is sent for a share the pool did not accept.
fn outcome_error(outcome: Outcome) -> StratumError {
    match outcome {
        Outcome::RejectedByPool(reject) => reject.to_error(),
        Outcome::PoolTimeout => StratumError::other("the pool did not answer in time"),
        Outcome::PoolUnavailable => StratumError::other("the pool is unavailable"),
        Outcome::Rejected(reject) => StratumError::new(reject.code(), reject.to_string()),
        Outcome::AcceptedLocal | Outcome::AcceptedByPool => StratumError::other("accepted"),
    }
}
