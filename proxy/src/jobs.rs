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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use hashsplit_policy::PoolId;
use hashsplit_stratum::share::double_sha256;
use hashsplit_stratum::{Difficulty, Id, Job, JobError, Method, Notify, ServerMethod, Target};

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
    pub pool_job_id: Arc<str>,
    /// The notify sent to miners: proxy job id and `coinb1'`.
    pub notify: Notify,
    /// `notify` rendered as a line (with its newline), with `clean_jobs`
    /// false and true: every miner is sent these same bytes.
    lines: [Box<[u8]>; 2],
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
    /// What the miner hashes, whatever job id it was offered under.
    pub work: WorkId,
}

/// Identifies the work behind a miner-facing job: the pool and everything
/// that goes into the block header but the miner's own fields. The same
/// pool work is offered again under a new job id (a new pool difficulty, a
/// notify the pool sent twice), and a share is the same share under either
/// id: duplicates are found by work, not by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkId([u8; 32]);

impl WorkId {
    /// Returns the identity of `notify` (as translated for miners) from `pool`.
    pub fn of(pool: PoolId, notify: &Notify) -> Self {
        let mut bytes = Vec::with_capacity(
            64 + notify.coinb1.len() + notify.coinb2.len() + 32 * notify.merkle_branch.len(),
        );
        // Lengths go in too, so no two different jobs write the same bytes.
        for part in [&notify.coinb1[..], &notify.coinb2[..]] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(&(notify.merkle_branch.len() as u64).to_le_bytes());
        for hash in &notify.merkle_branch {
            bytes.extend_from_slice(hash);
        }
        bytes.extend_from_slice(&notify.prevhash);
        for word in [notify.version, notify.nbits, notify.ntime] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&(pool.index() as u64).to_le_bytes());
        WorkId(double_sha256(&bytes))
    }
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
        let render = |clean_jobs| {
            let notify = Notify {
                clean_jobs,
                ..miner_notify.clone()
            };
            let mut line = ServerMethod::Notify(notify).to_line(Id::Null);
            line.push('\n');
            line.into_bytes().into_boxed_slice()
        };
        let work = WorkId::of(pool, &miner_notify);
        Ok(PoolJob {
            pool,
            pool_job_id: Arc::from(notify.job_id.as_str()),
            lines: [render(false), render(true)],
            notify: miner_notify,
            job,
            pool_difficulty,
            pool_target: pool_difficulty.to_target(),
            epoch,
            padding,
            layout,
            work,
        })
    }

    /// Returns the `mining.notify` line for this job, newline included,
    /// with `clean_jobs` as given.
    pub fn notify_line(&self, clean_jobs: bool) -> &[u8] {
        &self.lines[usize::from(clean_jobs)]
    }

    /// Returns the extranonce2 the pool expects for a miner's share:
    /// `pad ‖ en1 ‖ en2`.
    pub fn pool_extranonce2(&self, extranonce1: &[u8], extranonce2: &[u8]) -> PoolExtranonce2 {
        PoolExtranonce2::new(self.padding, extranonce1, extranonce2)
    }
}

/// Bytes a [`PoolExtranonce2`] holds without allocating: pools give 4 to 8
/// bytes, a few up to 16.
const INLINE_EXTRANONCE2: usize = 32;

/// A share's extranonce2 as its pool expects it (`pad ‖ en1 ‖ en2`),
/// held inline so forwarding a share allocates nothing for it; it reads
/// as a byte slice.
#[derive(Clone)]
pub struct PoolExtranonce2(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_EXTRANONCE2],
    },
    /// An extranonce2 longer than any pool gives: still correct.
    Heap(Box<[u8]>),
}

impl PoolExtranonce2 {
    /// Returns `padding` zero bytes, then `extranonce1`, then `extranonce2`.
    pub fn new(padding: usize, extranonce1: &[u8], extranonce2: &[u8]) -> Self {
        let len = padding + extranonce1.len() + extranonce2.len();
        let Ok(short) = u8::try_from(len) else {
            return PoolExtranonce2(Repr::Heap(Self::heap(padding, extranonce1, extranonce2)));
        };
        if len > INLINE_EXTRANONCE2 {
            return PoolExtranonce2(Repr::Heap(Self::heap(padding, extranonce1, extranonce2)));
        }
        let mut bytes = [0u8; INLINE_EXTRANONCE2];
        bytes[padding..padding + extranonce1.len()].copy_from_slice(extranonce1);
        bytes[padding + extranonce1.len()..len].copy_from_slice(extranonce2);
        PoolExtranonce2(Repr::Inline { len: short, bytes })
    }

    fn heap(padding: usize, extranonce1: &[u8], extranonce2: &[u8]) -> Box<[u8]> {
        let mut out = vec![0u8; padding];
        out.extend_from_slice(extranonce1);
        out.extend_from_slice(extranonce2);
        out.into_boxed_slice()
    }
}

impl std::ops::Deref for PoolExtranonce2 {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for PoolExtranonce2 {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PoolExtranonce2 {}

impl std::hash::Hash for PoolExtranonce2 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl std::fmt::Debug for PoolExtranonce2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolExtranonce2({})", hex::encode(&**self))
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

mod book;
#[cfg(test)]
mod tests;

pub use book::{Found, JobBook, Retired};
