//! Pool jobs translated for miners, what each pool publishes, and the
//! per-session book of jobs sent.
//!
//! The translation hides the pool's extranonce from the miner (DESIGN.md,
//! "Switching pools without reconnecting the miner"): for pool u with
//! extranonce1 `E_u` and extranonce2 size `S_u`, the miner is sent
//! `coinb1' = coinb1 ‖ E_u ‖ pad` where `pad` is `S_u − P − D` zero bytes.
//! The miner's coinbase `coinb1' ‖ en1 ‖ en2 ‖ coinb2` is then exactly the
//! pool's coinbase for `en2_u = pad ‖ en1 ‖ en2`, so moving a miner to
//! another pool is only a new notify.
//!
//! A pool whose `S_u` is smaller than `P + D` cannot take that layout. The
//! proxy then narrows the extranonce2 it gives new miners to fit ([`Layouts`])
//! and translates every pool's jobs for both layouts; miners already
//! connected with the wide layout are asked once to reconnect.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use hashsplit_policy::PoolId;
use hashsplit_stratum::{Difficulty, Job, JobError, Notify, Reject, ShareKey, Target};

/// The pool's extranonce as its subscribe (or set_extranonce) gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolExtranonce {
    /// The pool's extranonce1 for this connection.
    pub extranonce1: Vec<u8>,
    /// How many extranonce2 bytes the pool lets this connection roll.
    pub extranonce2_size: usize,
}

/// The miner-side extranonce layout, the same for every miner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Proxy-chosen extranonce1 bytes per miner (P).
    pub extranonce1_size: usize,
    /// Extranonce2 bytes the miner rolls (D).
    pub extranonce2_size: usize,
}

impl Layout {
    /// Returns the zero padding the pool's extranonce2 needs in front of the
    /// miner's bytes, or `None` if `P + D` does not fit in it.
    pub fn padding_for(&self, pool: &PoolExtranonce) -> Option<usize> {
        pool.extranonce2_size
            .checked_sub(self.extranonce1_size + self.extranonce2_size)
    }
}

/// The layouts miners are given: the configured one, and a narrower one
/// (a smaller miner extranonce2) once some pool's extranonce2 cannot hold
/// the configured one. A miner with the narrowest layout fits every pool.
#[derive(Debug)]
pub struct Layouts {
    wide: Layout,
    /// Every narrower layout ever handed out, widest first: a miner keeps
    /// its layout for its connection, so jobs are translated for all.
    narrow: watch::Sender<Vec<Layout>>,
}

impl Layouts {
    /// Starts with only the configured layout.
    pub fn new(wide: Layout) -> Self {
        Layouts {
            wide,
            narrow: watch::channel(Vec::new()).0,
        }
    }

    /// Returns the layout a miner connecting now is given: the narrowest.
    pub fn for_new_miner(&self) -> Layout {
        self.narrow.borrow().last().copied().unwrap_or(self.wide)
    }

    /// Returns every layout jobs are translated for.
    pub fn all(&self) -> Vec<Layout> {
        let mut all = vec![self.wide];
        all.extend(self.narrow.borrow().iter().copied());
        all
    }

    /// Narrows the layout of new miners so it fits a pool extranonce2 of
    /// `pool_extranonce2` bytes. Returns the new layout if it changed, or
    /// `Err` if not even one byte of miner extranonce2 fits.
    pub fn narrow_to_fit(&self, pool_extranonce2: usize) -> Result<Option<Layout>, TranslateError> {
        let current = self.for_new_miner();
        if current.extranonce1_size + current.extranonce2_size <= pool_extranonce2 {
            return Ok(None);
        }
        let too_small = TranslateError::ExtranonceTooSmall {
            pool: pool_extranonce2,
            p: self.wide.extranonce1_size,
            d: 1,
        };
        let d = pool_extranonce2
            .checked_sub(self.wide.extranonce1_size)
            .filter(|d| *d >= 1)
            .ok_or(too_small)?;
        let narrow = Layout {
            extranonce1_size: self.wide.extranonce1_size,
            extranonce2_size: d,
        };
        self.narrow.send_modify(|layouts| layouts.push(narrow));
        Ok(Some(narrow))
    }

    /// Returns a receiver that sees a narrower layout appear.
    pub fn watch(&self) -> watch::Receiver<Vec<Layout>> {
        self.narrow.subscribe()
    }
}

/// Why a pool's job cannot be offered to miners.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The pool's extranonce2 is too small for the proxy's layout.
    #[error(
        "pool extranonce2 of {pool} bytes cannot hold the proxy's {needed} \
         (extranonce1 {p} + miner extranonce2 {d})",
        needed = p + d
    )]
    ExtranonceTooSmall {
        /// The pool's extranonce2 size.
        pool: usize,
        /// P.
        p: usize,
        /// D.
        d: usize,
    },
    /// The job itself is unusable (bad nbits).
    #[error("{0}")]
    Job(#[from] JobError),
}

/// Hands out proxy job ids, unique across every pool for the process.
#[derive(Debug, Default)]
pub struct JobIds(AtomicU64);

impl JobIds {
    /// Returns a fresh id.
    pub fn next(&self) -> String {
        format!("{:x}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A pool job as miners see it, and what forwarding a share for it needs.
#[derive(Debug)]
pub struct PoolJob {
    /// The pool it came from.
    pub pool: PoolId,
    /// The pool's own job id, used when forwarding.
    pub pool_job_id: String,
    /// The notify sent to miners: proxy job id and `coinb1'`.
    pub notify: Notify,
    /// Prepared for validating miners' shares (`P + D` extranonce bytes).
    pub job: Job,
    /// The pool's difficulty in force when the job came.
    pub pool_difficulty: Difficulty,
    /// Its target.
    pub pool_target: Target,
    /// The pool's block epoch: it grows at every clean_jobs and reconnect,
    /// and a job from an older epoch is stale.
    pub epoch: u64,
    /// Zero bytes that go in front of the miner's extranonce when forwarding.
    pub padding: usize,
    /// The miner layout this translation is for.
    pub layout: Layout,
}

impl PoolJob {
    /// Translates a pool's notify for miners.
    pub fn translate(
        pool: PoolId,
        notify: &Notify,
        extranonce: &PoolExtranonce,
        layout: Layout,
        pool_difficulty: Difficulty,
        epoch: u64,
        ids: &JobIds,
    ) -> Result<PoolJob, TranslateError> {
        let padding = layout
            .padding_for(extranonce)
            .ok_or(TranslateError::ExtranonceTooSmall {
                pool: extranonce.extranonce2_size,
                p: layout.extranonce1_size,
                d: layout.extranonce2_size,
            })?;
        let mut coinb1 =
            Vec::with_capacity(notify.coinb1.len() + extranonce.extranonce1.len() + padding);
        coinb1.extend_from_slice(&notify.coinb1);
        coinb1.extend_from_slice(&extranonce.extranonce1);
        coinb1.resize(coinb1.len() + padding, 0);
        let miner_notify = Notify {
            job_id: ids.next(),
            coinb1,
            ..notify.clone()
        };
        let job = Job::from_notify(
            &miner_notify,
            layout.extranonce1_size + layout.extranonce2_size,
        )?;
        Ok(PoolJob {
            pool,
            pool_job_id: notify.job_id.clone(),
            notify: miner_notify,
            job,
            pool_difficulty,
            pool_target: pool_difficulty.to_target(),
            epoch,
            padding,
            layout,
        })
    }

    /// Returns the extranonce2 the pool expects for a miner's share:
    /// `pad ‖ en1 ‖ en2`.
    pub fn pool_extranonce2(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.padding];
        out.extend_from_slice(extranonce1);
        out.extend_from_slice(extranonce2);
        out
    }
}

/// What an upstream publishes about its pool; sessions watch it.
#[derive(Debug, Clone, Default)]
pub struct PoolState {
    /// The pool has a job and answers: miners may be sent to it.
    pub up: bool,
    /// The latest job, translated for each layout that fits the pool.
    pub jobs: Vec<Arc<PoolJob>>,
    /// The current block epoch (see [`PoolJob::epoch`]).
    pub epoch: u64,
    /// The version-rolling mask the pool granted, once it answered.
    pub version_mask: Option<u32>,
    /// Whether the pool answered `mining.configure` at all (a pool that
    /// never did is left out of the mask every miner is granted).
    pub configured: bool,
}

impl PoolState {
    /// Returns the latest job for miners with `layout`, if the pool can
    /// take them.
    pub fn job_for(&self, layout: Layout) -> Option<&Arc<PoolJob>> {
        self.jobs.iter().find(|job| job.layout == layout)
    }
}

/// How many jobs a session remembers, across all pools.
const BOOK_SIZE: usize = 32;

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

#[cfg(test)]
mod tests {
    use super::*;
    use hashsplit_stratum::Submission;

    fn notify() -> Notify {
        Notify {
            job_id: "pool-7".into(),
            prevhash: [3; 32],
            coinb1: vec![1, 2, 3, 4, 5],
            coinb2: vec![9, 9, 9],
            merkle_branch: vec![[4; 32], [5; 32]],
            version: 0x2000_0000,
            nbits: 0x1d00_ffff,
            ntime: 1_700_000_000,
            clean_jobs: true,
        }
    }

    fn pool_en() -> PoolExtranonce {
        PoolExtranonce {
            extranonce1: vec![0xaa, 0xbb, 0xcc, 0xdd],
            extranonce2_size: 8,
        }
    }

    const LAYOUT: Layout = Layout {
        extranonce1_size: 2,
        extranonce2_size: 4,
    };

    fn translated(epoch: u64, ids: &JobIds) -> PoolJob {
        PoolJob::translate(
            PoolId(1),
            &notify(),
            &pool_en(),
            LAYOUT,
            Difficulty::ONE,
            epoch,
            ids,
        )
        .unwrap()
    }

    #[test]
    fn the_miners_coinbase_is_the_pools_coinbase() {
        let ids = JobIds::default();
        let job = translated(0, &ids);
        assert_eq!(job.padding, 2);
        assert_eq!(
            job.notify.coinb1,
            [1, 2, 3, 4, 5, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0]
        );
        let en1 = [0x12, 0x34];
        let en2 = [0xde, 0xad, 0xbe, 0xef];
        let miner_coinbase = job.job.coinbase(&en1, &en2);
        let pool_en2 = job.pool_extranonce2(&en1, &en2);
        assert_eq!(pool_en2.len(), 8);
        let pool_coinbase = [
            &notify().coinb1[..],
            &pool_en().extranonce1,
            &pool_en2,
            &notify().coinb2,
        ]
        .concat();
        assert_eq!(miner_coinbase, pool_coinbase);

        // And so the share hashes the same on the pool's own job.
        let pool_job = Job::from_notify(&notify(), 4 + 8).unwrap();
        let sub = Submission::new(&en2, 1_700_000_000, 42, None);
        let pool_sub = Submission::new(&pool_en2, 1_700_000_000, 42, None);
        let ctx = |en1: &'static [u8]| hashsplit_stratum::ShareContext {
            extranonce1: en1,
            version_mask: None,
            miner_target: Target::MAX,
            pool_target: Target::MAX,
        };
        assert_eq!(
            job.job.hash(&ctx(&[0x12, 0x34]), &sub),
            pool_job.hash(&ctx(&[0xaa, 0xbb, 0xcc, 0xdd]), &pool_sub)
        );
    }

    #[test]
    fn a_pool_extranonce_too_small_is_refused() {
        let small = PoolExtranonce {
            extranonce1: vec![1],
            extranonce2_size: 5,
        };
        let err = PoolJob::translate(
            PoolId(0),
            &notify(),
            &small,
            LAYOUT,
            Difficulty::ONE,
            0,
            &JobIds::default(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            TranslateError::ExtranonceTooSmall {
                pool: 5,
                p: 2,
                d: 4
            }
        ));
    }

    #[test]
    fn a_narrow_pool_narrows_the_layout_of_new_miners_once() {
        let layouts = Layouts::new(LAYOUT);
        assert_eq!(layouts.narrow_to_fit(8).unwrap(), None, "P + D = 6 fits 8");
        assert_eq!(layouts.for_new_miner(), LAYOUT);
        let middle = layouts.narrow_to_fit(5).unwrap().unwrap();
        assert_eq!(middle.extranonce2_size, 3);
        let narrow = layouts.narrow_to_fit(4).unwrap().unwrap();
        assert_eq!(
            narrow,
            Layout {
                extranonce1_size: 2,
                extranonce2_size: 2
            }
        );
        assert_eq!(layouts.for_new_miner(), narrow);
        // Miners given the middle layout keep getting jobs.
        assert_eq!(layouts.all(), vec![LAYOUT, middle, narrow]);
        assert_eq!(layouts.narrow_to_fit(5).unwrap(), None, "already fits");
        assert!(layouts.narrow_to_fit(2).is_err(), "not even one byte fits");

        // A narrow miner's coinbase is the narrow pool's, with no padding.
        let small = PoolExtranonce {
            extranonce1: vec![9; 4],
            extranonce2_size: 4,
        };
        let job = PoolJob::translate(
            PoolId(0),
            &notify(),
            &small,
            narrow,
            Difficulty::ONE,
            0,
            &JobIds::default(),
        )
        .unwrap();
        assert_eq!(job.padding, 0);
        assert_eq!(job.pool_extranonce2(&[1, 2], &[3, 4]), vec![1, 2, 3, 4]);
    }

    #[test]
    fn miners_of_different_layouts_never_build_the_same_coinbase() {
        // Every wide miner's extranonce1 starts with a non-zero byte, where
        // a narrower layout has padding: their pool extranonce2s differ.
        let allocator = crate::extranonce::ExtranonceAllocator::new(2);
        let held: Vec<_> = (0..600).map(|_| allocator.allocate().unwrap()).collect();
        let pool = pool_en();
        let ids = JobIds::default();
        let wide = PoolJob::translate(
            PoolId(0),
            &notify(),
            &pool,
            LAYOUT,
            Difficulty::ONE,
            0,
            &ids,
        )
        .unwrap();
        let narrow_layout = Layout {
            extranonce1_size: 2,
            extranonce2_size: 3,
        };
        let narrow = PoolJob::translate(
            PoolId(0),
            &notify(),
            &pool,
            narrow_layout,
            Difficulty::ONE,
            0,
            &ids,
        )
        .unwrap();
        let mut seen = HashSet::new();
        for en1 in &held {
            for en2 in [[0u8; 4], [5, 0, 0, 0], [0, 0, 0, 5], [0xff; 4]] {
                assert!(seen.insert(wide.pool_extranonce2(en1.as_bytes(), &en2)));
            }
            for en2 in [[0u8; 3], [5, 0, 0], [0, 0, 5], [0xff; 3]] {
                assert!(seen.insert(narrow.pool_extranonce2(en1.as_bytes(), &en2)));
            }
        }
    }

    #[test]
    fn proxy_job_ids_are_unique() {
        let ids = JobIds::default();
        let a = translated(0, &ids);
        let b = translated(0, &ids);
        assert_ne!(a.notify.job_id, b.notify.job_id);
        assert_eq!(a.pool_job_id, "pool-7");
    }

    #[test]
    fn the_book_finds_jobs_and_refuses_stale_unknown_and_duplicates() {
        let ids = JobIds::default();
        let mut book = JobBook::default();
        let old = Arc::new(translated(3, &ids));
        let new = Arc::new(translated(4, &ids));
        book.sent(Arc::clone(&old), Difficulty::ONE);
        book.sent(Arc::clone(&new), Difficulty::ONE);
        let epoch = |_| 4;
        assert_eq!(
            book.find(&old.notify.job_id, epoch).unwrap_err(),
            Reject::Stale
        );
        assert!(book.find(&new.notify.job_id, epoch).is_ok());
        assert_eq!(book.find("nope", epoch).unwrap_err(), Reject::UnknownJob);

        let key = Submission::new(&[1, 2, 3, 4], 1, 2, None).key(&[0, 1]);
        assert_eq!(book.check_duplicate(&new.notify.job_id, &key), Ok(()));
        book.record(&new.notify.job_id, key);
        assert_eq!(
            book.check_duplicate(&new.notify.job_id, &key),
            Err(Reject::Duplicate)
        );
    }

    #[test]
    fn a_job_sent_again_keeps_its_shares_for_duplicate_detection() {
        // The miner goes A → B → A while A's job stays the same.
        let ids = JobIds::default();
        let mut book = JobBook::default();
        let a = Arc::new(translated(0, &ids));
        let b = Arc::new(translated(0, &ids));
        book.sent(Arc::clone(&a), Difficulty::ONE);
        let key = Submission::new(&[9; 4], 1, 2, None).key(&[0, 1]);
        book.record(&a.notify.job_id, key);
        book.sent(Arc::clone(&b), Difficulty::ONE);
        book.sent(Arc::clone(&a), Difficulty::ONE);
        assert_eq!(
            book.check_duplicate(&a.notify.job_id, &key),
            Err(Reject::Duplicate)
        );
    }

    #[test]
    fn the_book_forgets_the_oldest_jobs() {
        let ids = JobIds::default();
        let mut book = JobBook::default();
        let first = Arc::new(translated(0, &ids));
        book.sent(Arc::clone(&first), Difficulty::ONE);
        for _ in 0..BOOK_SIZE {
            book.sent(Arc::new(translated(0, &ids)), Difficulty::ONE);
        }
        assert_eq!(
            book.find(&first.notify.job_id, |_| 0).unwrap_err(),
            Reject::UnknownJob
        );
    }

    #[test]
    fn a_lowered_difficulty_applies_to_every_job_a_raise_to_none() {
        let ids = JobIds::default();
        let mut book = JobBook::default();
        let a = Arc::new(translated(0, &ids));
        let b = Arc::new(translated(0, &ids));
        let high = Difficulty::try_new(8.0).unwrap();
        let low = Difficulty::try_new(2.0).unwrap();
        book.sent(Arc::clone(&a), high);
        book.sent(Arc::clone(&b), high);
        book.lower_difficulty(low);
        assert_eq!(book.find(&b.notify.job_id, |_| 0).unwrap().difficulty, low);
        assert_eq!(book.find(&a.notify.job_id, |_| 0).unwrap().difficulty, low);
        book.lower_difficulty(Difficulty::try_new(16.0).unwrap());
        assert_eq!(book.find(&b.notify.job_id, |_| 0).unwrap().difficulty, low);
    }
}
