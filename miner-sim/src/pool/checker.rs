//! The pool's verdict on a share, per connection: which jobs this
//! connection was sent, at which difficulty and extranonce1, and which
//! shares it already had accepted.
//!
//! Semantics (what the proxy can rely on):
//! - A job is valid until the next `clean_jobs`; a job id from before it is
//!   `stale`, and so is one this connection was sent so long ago that it was
//!   forgotten ([`MAX_JOBS`]). An id the pool never issued is
//!   `job-not-found`. Both are answered with code 21.
//! - A share is judged at the difficulty in force when its job was sent to
//!   this connection (`mining.set_difficulty` applies to the following jobs),
//!   and with the extranonce1 the connection had then.
//! - Duplicates are detected per job on [`Submission::key`]; only accepted
//!   shares are remembered, so a resent low-difficulty share is refused
//!   again as low difficulty.
//! - A share meeting the network target is a block: it is accepted even if
//!   it misses the share target, and credited at the share difficulty.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hashsplit_stratum::{Difficulty, Reject, ShareContext, ShareKey, Submission, Submit};

use super::template::PoolJob;

/// How many jobs of the current block a connection keeps answering for.
pub const MAX_JOBS: usize = 64;

/// An accepted share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Credit {
    /// The difficulty credited: the connection's difficulty for the job.
    pub difficulty: Difficulty,
    /// The share is a block (meets the network target).
    pub block: bool,
    /// The block header hash.
    pub hash: [u8; 32],
}

#[derive(Debug)]
struct SentJob {
    job: Arc<PoolJob>,
    difficulty: Difficulty,
    extranonce1: Vec<u8>,
    accepted: HashSet<ShareKey>,
}

/// The jobs one connection may submit shares for, and its verdicts.
#[derive(Debug, Default)]
pub struct ShareChecker {
    jobs: HashMap<String, SentJob>,
    /// Job ids in the order sent, to forget the oldest.
    order: VecDeque<String>,
}

impl ShareChecker {
    /// Returns a checker that knows no job yet.
    pub fn new() -> Self {
        ShareChecker::default()
    }

    /// Records that `job` was sent with `clean_jobs` = `clean`, to be mined
    /// at `difficulty` with `extranonce1`.
    pub fn sent(
        &mut self,
        job: Arc<PoolJob>,
        clean: bool,
        difficulty: Difficulty,
        extranonce1: &[u8],
    ) {
        if clean {
            self.jobs.clear();
            self.order.clear();
        }
        let id = job.notify.job_id.clone();
        if self.order.len() == MAX_JOBS
            && let Some(oldest) = self.order.pop_front()
        {
            self.jobs.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.jobs.insert(
            id,
            SentJob {
                job,
                difficulty,
                extranonce1: extranonce1.to_vec(),
                accepted: HashSet::new(),
            },
        );
    }

    /// Judges a submit. `extranonce2_size` is the size given at subscribe,
    /// `version_mask` the mask granted by `mining.configure` (if any), and
    /// `issued` says whether a job id was ever issued by the pool.
    pub fn check(
        &mut self,
        submit: &Submit,
        extranonce2_size: usize,
        version_mask: Option<u32>,
        issued: impl Fn(&str) -> bool,
    ) -> Result<Credit, Reject> {
        let submission = Submission::from_hex(
            &submit.extranonce2,
            &submit.ntime,
            &submit.nonce,
            submit.version_bits.as_deref(),
            extranonce2_size,
        )?;
        let Some(sent) = self.jobs.get_mut(&submit.job_id) else {
            return Err(if issued(&submit.job_id) {
                Reject::Stale
            } else {
                Reject::UnknownJob
            });
        };
        sent.job.job.check(&submission, version_mask)?;
        let key = submission.key(&sent.extranonce1);
        if sent.accepted.contains(&key) {
            return Err(Reject::Duplicate);
        }
        let target = sent.difficulty.to_target();
        let ctx = ShareContext {
            extranonce1: &sent.extranonce1,
            version_mask,
            miner_target: target,
            pool_target: target,
        };
        if sent.extranonce1.len() + extranonce2_size != sent.job.job.extranonce_len() {
            // The job was prepared for other sizes (a notify pushed in by a
            // test); hashing would panic, and no share can be right.
            return Err(Reject::BadLength(hashsplit_stratum::Field::Extranonce2));
        }
        let verdict = sent.job.job.judge(&ctx, &submission)?;
        sent.accepted.insert(key);
        Ok(Credit {
            difficulty: sent.difficulty,
            block: verdict.meets_network,
            hash: verdict.hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::template::JobFactory;
    use crate::scan::{find_low_share, find_share_rolled};

    const EN1: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];
    const MASK: Option<u32> = Some(0x1fff_e000);

    fn diff(d: f64) -> Difficulty {
        Difficulty::try_new(d).unwrap()
    }

    fn submit(job: &PoolJob, sub: &Submission) -> Submit {
        Submit {
            worker: "w".into(),
            job_id: job.notify.job_id.clone(),
            extranonce2: hex::encode(sub.extranonce2()),
            ntime: format!("{:08x}", sub.ntime),
            nonce: format!("{:08x}", sub.nonce),
            version_bits: sub.version_bits.map(|v| format!("{v:08x}")),
        }
    }

    fn share(job: &PoolJob, difficulty: f64, version_bits: Option<u32>) -> Submission {
        let target = diff(difficulty).to_target();
        let ctx = ShareContext {
            extranonce1: &EN1,
            version_mask: MASK,
            miner_target: target,
            pool_target: target,
        };
        let ntime = job.job.ntime();
        find_share_rolled(&job.job, &ctx, &[7; 8], ntime, version_bits, 0, u32::MAX)
            .unwrap()
            .0
    }

    fn issued_below(next: u64) -> impl Fn(&str) -> bool {
        move |id| u64::from_str_radix(id, 16).is_ok_and(|seq| seq < next)
    }

    #[test]
    fn a_good_share_is_credited_once_at_the_jobs_difficulty() {
        let mut factory = JobFactory::new(0x1d00_ffff, 2, 12);
        let job = factory.next(true).unwrap();
        let mut checker = ShareChecker::new();
        checker.sent(job.clone(), true, diff(1e-5), &EN1);
        let sub = share(&job, 1e-5, Some(0x2000));
        let line = submit(&job, &sub);
        let issued = issued_below(factory.next_seq());
        let credit = checker.check(&line, 8, MASK, &issued).unwrap();
        assert_eq!(credit.difficulty, diff(1e-5));
        assert!(!credit.block);
        assert_eq!(
            checker.check(&line, 8, MASK, &issued),
            Err(Reject::Duplicate)
        );
    }

    #[test]
    fn jobs_before_a_clean_job_are_stale_and_unknown_ids_are_not_found() {
        let mut factory = JobFactory::new(0x1d00_ffff, 2, 12);
        let mut checker = ShareChecker::new();
        let old = factory.next(true).unwrap();
        checker.sent(old.clone(), true, diff(1e-5), &EN1);
        let same_block = factory.next(false).unwrap();
        checker.sent(same_block.clone(), false, diff(1e-5), &EN1);
        let issued = issued_below(factory.next_seq());
        let old_share = submit(&old, &share(&old, 1e-5, None));
        assert!(checker.check(&old_share, 8, MASK, &issued).is_ok());

        let new_block = factory.next(true).unwrap();
        checker.sent(new_block, true, diff(1e-5), &EN1);
        let issued = issued_below(factory.next_seq());
        let other = submit(&same_block, &share(&same_block, 1e-5, None));
        assert_eq!(checker.check(&other, 8, MASK, &issued), Err(Reject::Stale));
        let mut never = other.clone();
        never.job_id = "ffff".into();
        assert_eq!(
            checker.check(&never, 8, MASK, &issued),
            Err(Reject::UnknownJob)
        );
    }

    #[test]
    fn shares_are_judged_at_the_difficulty_their_job_was_sent_with() {
        let mut factory = JobFactory::new(0x1d00_ffff, 2, 12);
        let mut checker = ShareChecker::new();
        let easy = factory.next(true).unwrap();
        checker.sent(easy.clone(), true, diff(1e-6), &EN1);
        let hard = factory.next(false).unwrap();
        checker.sent(hard.clone(), false, diff(1e3), &EN1);
        let issued = issued_below(factory.next_seq());
        let on_easy = submit(&easy, &share(&easy, 1e-6, None));
        assert_eq!(
            checker
                .check(&on_easy, 8, MASK, &issued)
                .map(|c| c.difficulty),
            Ok(diff(1e-6))
        );
        let on_hard = submit(&hard, &share(&hard, 1e-6, None));
        // Certain to miss difficulty 1000 unless it is a 1-in-2^42 hash.
        assert_eq!(
            checker.check(&on_hard, 8, MASK, &issued),
            Err(Reject::LowDifficulty)
        );
    }

    #[test]
    fn field_and_header_checks_name_the_reason() {
        let mut factory = JobFactory::new(0x1d00_ffff, 2, 12);
        let job = factory.next(true).unwrap();
        let mut checker = ShareChecker::new();
        checker.sent(job.clone(), true, diff(1e-5), &EN1);
        let issued = issued_below(factory.next_seq());
        let good = submit(&job, &share(&job, 1e-5, Some(0x2000)));

        let mut bad = good.clone();
        bad.version_bits = Some("00000001".into());
        assert_eq!(
            checker.check(&bad, 8, MASK, &issued),
            Err(Reject::BadVersionBits)
        );
        assert_eq!(
            checker.check(&good, 8, None, &issued),
            Err(Reject::BadVersionBits),
            "no rolling granted"
        );
        let mut bad = good.clone();
        bad.ntime = format!("{:08x}", job.job.ntime() - 1);
        assert_eq!(
            checker.check(&bad, 8, MASK, &issued),
            Err(Reject::NtimeOutOfRange)
        );
        let mut bad = good.clone();
        bad.extranonce2 = "0011".into();
        assert_eq!(
            checker.check(&bad, 8, MASK, &issued).unwrap_err().as_str(),
            "bad-length"
        );
        let mut bad = good.clone();
        bad.nonce = "zzzzzzzz".into();
        assert_eq!(
            checker.check(&bad, 8, MASK, &issued).unwrap_err().as_str(),
            "bad-hex"
        );

        let target = diff(1e-5).to_target();
        let ctx = ShareContext {
            extranonce1: &EN1,
            version_mask: MASK,
            miner_target: target,
            pool_target: target,
        };
        let low = find_low_share(&job.job, &ctx, &[1; 8], job.job.ntime(), 0, 1000).unwrap();
        assert_eq!(
            checker.check(&submit(&job, &low), 8, MASK, &issued),
            Err(Reject::LowDifficulty)
        );
        assert!(checker.check(&good, 8, MASK, &issued).is_ok());
    }

    #[test]
    fn a_share_that_is_a_block_is_accepted_as_one() {
        // Regtest's target: about every second hash is a block.
        let mut factory = JobFactory::new(0x207f_ffff, 0, 12);
        let job = factory.next(true).unwrap();
        let mut checker = ShareChecker::new();
        checker.sent(job.clone(), true, diff(1e-5), &EN1);
        let issued = issued_below(factory.next_seq());
        let credit = checker
            .check(&submit(&job, &share(&job, 1e-5, None)), 8, MASK, &issued)
            .unwrap();
        assert!(credit.block);
    }
}
