//! The jobs one session sent its miner: what a submit is judged against,
//! and the shares already seen for each (duplicate detection).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use hashsplit_policy::PoolId;
use hashsplit_stratum::{Difficulty, Reject, ShareContext, ShareKey, Submission, Target};

use super::PoolJob;

/// How many jobs a session remembers, across all pools.
pub(super) const BOOK_SIZE: usize = 32;

/// A job sent to one miner, with the shares it already submitted for it.
#[derive(Debug)]
struct Entry {
    job: Arc<PoolJob>,
    /// The lowest difficulty the miner was told while this job was its
    /// newest: shares already on their way at a lower difficulty still count.
    difficulty: Difficulty,
    seen: HashSet<ShareKey>,
}

/// The jobs one session sent its miner, newest last.
#[derive(Debug, Default)]
pub struct JobBook {
    entries: VecDeque<Entry>,
}

/// A job found for a submit: the job and the difficulty it is judged at.
#[derive(Debug, Clone)]
pub struct Found {
    /// The job.
    pub job: Arc<PoolJob>,
    /// The miner's difficulty for it.
    pub difficulty: Difficulty,
}

impl JobBook {
    /// Records that `job` was sent at `difficulty`.
    pub fn sent(&mut self, job: Arc<PoolJob>, difficulty: Difficulty) {
        // A job sent again (the miner came back to a pool whose job has not
        // changed) keeps the shares already seen for it.
        if let Some(at) = self.entries.iter().position(|e| Arc::ptr_eq(&e.job, &job)) {
            let mut entry = self.entries.remove(at).expect("position is in range");
            if difficulty < entry.difficulty {
                entry.difficulty = difficulty;
            }
            self.entries.push_back(entry);
            return;
        }
        if self.entries.len() == BOOK_SIZE {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            job,
            difficulty,
            seen: HashSet::new(),
        });
    }

    /// Lowers the difficulty of every remembered job after a set_difficulty
    /// that lowered it: firmware applies a new difficulty to the work it
    /// already has, so its next shares come at the lower one. A raise only
    /// applies to jobs sent after it.
    pub fn lower_difficulty(&mut self, difficulty: Difficulty) {
        for entry in &mut self.entries {
            if difficulty < entry.difficulty {
                entry.difficulty = difficulty;
            }
        }
    }

    /// Finds the job a miner's share names. `current_epoch` returns a pool's
    /// current epoch: a job from an older one is stale.
    pub fn find(
        &self,
        job_id: &str,
        current_epoch: impl Fn(PoolId) -> u64,
    ) -> Result<Found, Reject> {
        let entry = self
            .entries
            .iter()
            .rev()
            .find(|e| e.job.notify.job_id == job_id)
            .ok_or(Reject::UnknownJob)?;
        if entry.job.epoch < current_epoch(entry.job.pool) {
            return Err(Reject::Stale);
        }
        Ok(Found {
            job: Arc::clone(&entry.job),
            difficulty: entry.difficulty,
        })
    }

    /// Returns the job's pool and the header hash of a share for job
    /// `job_id` if it meets the job's network target: for a stale job, a
    /// block the pool can no longer take, worth telling the operator about.
    pub fn block_hash(
        &self,
        job_id: &str,
        extranonce1: &[u8],
        version_mask: Option<u32>,
        submission: &Submission,
    ) -> Option<(PoolId, [u8; 32])> {
        let entry = self
            .entries
            .iter()
            .rev()
            .find(|e| e.job.notify.job_id == job_id)?;
        let nothing = Target::from_le_bytes([0; 32]);
        let ctx = ShareContext {
            extranonce1,
            version_mask,
            miner_target: nothing,
            pool_target: nothing,
        };
        let verdict = entry.job.job.judge(&ctx, submission).ok()?;
        verdict
            .meets_network
            .then_some((entry.job.pool, verdict.hash))
    }

    /// Returns [`Reject::Duplicate`] if the share was recorded before.
    pub fn check_duplicate(&self, job_id: &str, key: &ShareKey) -> Result<(), Reject> {
        let entry = self
            .entries
            .iter()
            .rev()
            .find(|e| e.job.notify.job_id == job_id)
            .ok_or(Reject::UnknownJob)?;
        if entry.seen.contains(key) {
            Err(Reject::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records a share that passed every check, so the same one again is a
    /// duplicate. Only shares that cost the miner real work are kept, so a
    /// miner sending garbage cannot grow the book.
    pub fn record(&mut self, job_id: &str, key: ShareKey) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.job.notify.job_id == job_id)
        {
            entry.seen.insert(key);
        }
    }
}
