//! The jobs one session sent its miner: what a submit is judged against,
//! and the shares already seen for each piece of work (duplicate
//! detection): one share is one share under every job id its work was
//! offered with.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hashsplit_policy::PoolId;
use hashsplit_stratum::{Difficulty, Reject, ShareContext, ShareKey, Submission, Target};

use super::{PoolJob, WorkId};

/// How many jobs a session remembers, across all pools.
pub(super) const BOOK_SIZE: usize = 32;

/// A job sent to one miner.
#[derive(Debug)]
struct Entry {
    job: Arc<PoolJob>,
    /// The lowest difficulty the miner was told while this job was its
    /// newest: shares already on their way at a lower difficulty still count.
    difficulty: Difficulty,
}

/// The jobs one session sent its miner, newest last, and the shares seen
/// for the work behind them.
#[derive(Debug, Default)]
pub struct JobBook {
    entries: VecDeque<Entry>,
    /// Shares accepted, by the work they were for; kept while some job in
    /// `entries` offers that work (or, inherited, for the session's life).
    seen: HashMap<WorkId, Seen>,
}

/// The shares accepted for one piece of work, and where it came from.
#[derive(Debug)]
struct Seen {
    pool: PoolId,
    /// The newest epoch the work was offered in: it is stale once its pool
    /// moves past it.
    epoch: u64,
    keys: HashSet<ShareKey>,
}

/// The shares a session accepted on work still current when it ended. Its
/// extranonce1 carries them to the next session given the same prefix,
/// which would otherwise build the same coinbases and could have the same
/// shares credited again (see [`crate::extranonce`]).
#[derive(Debug, Default)]
pub struct Retired {
    works: Vec<(WorkId, Seen)>,
}

impl Retired {
    /// Returns true if some of the work is still current; `current_epoch`
    /// returns a pool's epoch (`None` for a pool the caller does not know,
    /// whose work is kept).
    pub fn is_current(&self, current_epoch: impl Fn(PoolId) -> Option<u64>) -> bool {
        self.works
            .iter()
            .any(|(_, seen)| current_epoch(seen.pool).is_none_or(|now| seen.epoch >= now))
    }

    /// Returns true when there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.works.is_empty()
    }
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
            if let Some(seen) = self.seen.get_mut(&job.work) {
                seen.epoch = seen.epoch.max(job.epoch);
            }
            if difficulty < entry.difficulty {
                entry.difficulty = difficulty;
            }
            self.entries.push_back(entry);
            return;
        }
        if self.entries.len() == BOOK_SIZE
            && let Some(oldest) = self.entries.pop_front()
        {
            let work = oldest.job.work;
            if !self.entries.iter().any(|e| e.job.work == work) {
                self.seen.remove(&work);
            }
        }
        if let Some(seen) = self.seen.get_mut(&job.work) {
            seen.epoch = seen.epoch.max(job.epoch);
        }
        self.entries.push_back(Entry { job, difficulty });
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
        let seen = self.seen.get(&entry.job.work);
        if seen.is_some_and(|seen| seen.keys.contains(key)) {
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
            .iter()
            .rev()
            .find(|e| e.job.notify.job_id == job_id)
        {
            let job = &entry.job;
            let seen = self.seen.entry(job.work).or_insert_with(|| Seen {
                pool: job.pool,
                epoch: job.epoch,
                keys: HashSet::new(),
            });
            seen.epoch = seen.epoch.max(job.epoch);
            seen.keys.insert(key);
        }
    }

    /// Takes the shares accepted on work that is still current, for the
    /// next holder of this session's extranonce1.
    pub fn retire(&mut self, current_epoch: impl Fn(PoolId) -> Option<u64>) -> Retired {
        let works = self
            .seen
            .drain()
            .filter(|(_, seen)| current_epoch(seen.pool).is_none_or(|now| seen.epoch >= now))
            .collect();
        Retired { works }
    }

    /// Takes over the shares a previous holder of the same extranonce1
    /// accepted, so they are duplicates here too.
    pub fn inherit(&mut self, retired: Retired) {
        for (work, seen) in retired.works {
            match self.seen.get_mut(&work) {
                Some(mine) => {
                    mine.epoch = mine.epoch.max(seen.epoch);
                    mine.keys.extend(seen.keys);
                }
                None => {
                    self.seen.insert(work, seen);
                }
            }
        }
    }
}
