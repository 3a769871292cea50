//! The hashing thread of a [`SimMiner`](super::SimMiner): it takes the
//! newest work from a watch channel, rolls extranonce2 (and version bits
//! when allowed), scans nonces in small batches at the configured rate, and
//! hands the shares that meet the work's target back to the connection.
//!
//! It runs on its own OS thread so hashing never stalls the tokio runtime,
//! and paces itself on the wall clock: the work is real CPU time, whatever
//! a paused tokio clock says.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use hashsplit_stratum::{Job, ShareContext, Submission, Target};
use tokio::sync::{mpsc, watch};

use crate::scan::{HeaderScan, spread_bits};

/// How long an idle hasher sleeps before looking for work again.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// The longest the pacer sleeps at once, so new work is picked up quickly.
const MAX_NAP: Duration = Duration::from_millis(50);
/// Hashes between looks at the channel when hashing flat out.
const FLAT_OUT_BATCH: u32 = 8192;

/// What to hash: one job as this connection must mine it.
#[derive(Debug)]
pub(crate) struct Work {
    /// The connection it came on: shares from an older one are dropped.
    pub(crate) connection: u64,
    /// Counts clean jobs on the connection: shares of an older block are
    /// stale.
    pub(crate) block: u64,
    pub(crate) job_id: String,
    pub(crate) job: Job,
    pub(crate) extranonce1: Vec<u8>,
    pub(crate) extranonce2_size: usize,
    pub(crate) target: Target,
    /// The bits rolled and the mask the header is built with.
    pub(crate) roll_mask: Option<u32>,
    pub(crate) ntime: u32,
}

/// A share that meets its work's target.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) work: Arc<Work>,
    pub(crate) submission: Submission,
}

/// The channels and counters a hashing thread works with.
pub(crate) struct Hasher {
    pub(crate) work: watch::Receiver<Option<Arc<Work>>>,
    pub(crate) found: mpsc::Sender<Found>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) hashes: Arc<AtomicU64>,
    /// Shares dropped because the connection was not taking them.
    pub(crate) dropped: Arc<AtomicU64>,
    /// Hashes a second, or `None` for as fast as the CPU goes.
    pub(crate) rate: Option<f64>,
}

impl Hasher {
    /// Starts the thread; it ends when `stop` is set or the work sender
    /// is dropped.
    pub(crate) fn spawn(self) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("sim-miner-hasher".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut pacer = Pacer::new(self.rate);
        // Each miner starts its extranonce2 somewhere else.
        let mut base: u64 = rand::random::<u32>().into();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let work = self.work.borrow_and_update().clone();
            let Some(work) = work else {
                pacer.restart();
                thread::sleep(IDLE_POLL);
                if self.work.has_changed().is_err() {
                    return;
                }
                continue;
            };
            // Mine this work, one header base after another, until it changes.
            loop {
                base = base.wrapping_add(1);
                match self.scan_base(&work, base, &mut pacer) {
                    Scan::Exhausted => continue,
                    Scan::NewWork => break,
                    Scan::Stop => return,
                }
            }
        }
    }

    /// Scans every nonce of one header base (extranonce2 and version bits).
    fn scan_base(&self, work: &Arc<Work>, base: u64, pacer: &mut Pacer) -> Scan {
        let extranonce2 = extranonce2_of(base, work.extranonce2_size);
        // Scrambled, so consecutive bases differ in every rollable bit, as
        // an ASIC's many midstates do.
        let choice = (base.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32;
        let version_bits = work.roll_mask.map(|mask| spread_bits(choice, mask));
        let ctx = ShareContext {
            extranonce1: &work.extranonce1,
            version_mask: work.roll_mask,
            miner_target: work.target,
            pool_target: work.target,
        };
        let scan = HeaderScan::for_job(&work.job, &ctx, &extranonce2, work.ntime, version_bits);
        let mut nonce: u32 = 0;
        loop {
            let batch = pacer.batch();
            let mut done = 0;
            while done < batch {
                if work.target.is_met_by(&scan.hash(nonce)) {
                    let submission = Submission::new(&extranonce2, work.ntime, nonce, version_bits);
                    let found = Found {
                        work: work.clone(),
                        submission,
                    };
                    if self.found.try_send(found).is_err() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done += 1;
                if nonce == u32::MAX {
                    break;
                }
                nonce += 1;
            }
            self.hashes.fetch_add(done.into(), Ordering::Relaxed);
            pacer.spent(done);
            if self.stop.load(Ordering::Relaxed) {
                return Scan::Stop;
            }
            match self.work.has_changed() {
                Ok(false) => {}
                Ok(true) => return Scan::NewWork,
                Err(_) => return Scan::Stop,
            }
            if done < batch {
                return Scan::Exhausted;
            }
        }
    }
}

enum Scan {
    Exhausted,
    NewWork,
    Stop,
}

/// Returns extranonce2 for header base `n`: its big-endian bytes, the low
/// ones when the size is under 8, zero-padded in front when over.
fn extranonce2_of(n: u64, size: usize) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut out = vec![0u8; size.saturating_sub(8)];
    out.extend_from_slice(&bytes[8 - size.min(8)..]);
    out
}

/// Keeps hashing at a rate: after each batch, sleeps until the wall clock
/// catches up with the hashes done.
struct Pacer {
    rate: Option<f64>,
    since: std::time::Instant,
    hashes: f64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Pacer {
            rate,
            since: wall_clock(),
            hashes: 0.0,
        }
    }

    /// Forgets the past, so idle time is not made up in a burst.
    fn restart(&mut self) {
        self.since = wall_clock();
        self.hashes = 0.0;
    }

    /// Returns how many hashes to do before looking around: about 10 ms
    /// worth at the configured rate.
    fn batch(&self) -> u32 {
        match self.rate {
            None => FLAT_OUT_BATCH,
            Some(rate) => (rate / 100.0).clamp(1.0, 65_536.0) as u32,
        }
    }

    fn spent(&mut self, hashes: u32) {
        let Some(rate) = self.rate else { return };
        self.hashes += f64::from(hashes);
        let due = self.since + Duration::from_secs_f64(self.hashes / rate);
        let now = wall_clock();
        if due > now {
            thread::sleep((due - now).min(MAX_NAP));
        } else if now - due > Duration::from_secs(1) {
            // The CPU cannot keep up: run flat out without building a debt.
            self.restart();
        }
    }
}

/// Returns the wall clock. The hasher paces real CPU work on a thread of
/// its own, so the pausable tokio clock is the wrong one here.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjob::test_job;
    use hashsplit_stratum::Difficulty;

    #[test]
    fn extranonce2_fits_any_size() {
        assert_eq!(extranonce2_of(0x0102_0304, 4), vec![1, 2, 3, 4]);
        assert_eq!(extranonce2_of(0x0102_0304, 2), vec![3, 4]);
        assert_eq!(extranonce2_of(1, 10), vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn the_thread_finds_shares_that_pass_the_check_and_stops_when_told() {
        let job = test_job();
        let (work_tx, work_rx) = watch::channel(None);
        let (found_tx, mut found_rx) = mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let hashes = Arc::new(AtomicU64::new(0));
        let target = Difficulty::try_new(1e-6).unwrap().to_target();
        let work = Arc::new(Work {
            connection: 1,
            block: 1,
            job_id: "1".into(),
            job: job.clone(),
            extranonce1: vec![1, 2, 3, 4],
            extranonce2_size: 8,
            target,
            roll_mask: Some(0x1fff_e000),
            ntime: job.ntime(),
        });
        work_tx.send_replace(Some(work.clone()));
        let thread = Hasher {
            work: work_rx,
            found: found_tx,
            stop: stop.clone(),
            hashes: hashes.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
            rate: None,
        }
        .spawn()
        .unwrap();
        let found = found_rx.blocking_recv().unwrap();
        let ctx = ShareContext {
            extranonce1: &work.extranonce1,
            version_mask: work.roll_mask,
            miner_target: target,
            pool_target: target,
        };
        assert!(job.validate(&ctx, &found.submission).is_ok());
        assert!(found.submission.version_bits.is_some());
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert!(hashes.load(Ordering::Relaxed) > 0);
    }
}
