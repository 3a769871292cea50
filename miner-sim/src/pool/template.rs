//! Jobs a [`SimPool`](super::SimPool) hands out: a believable coinbase, a
//! merkle branch over fake transactions, and a new previous-block hash on
//! every clean job.
//!
//! The coinbase is a real transaction shape (BIP 34 height push, the
//! extranonces inside the scriptSig, one P2WPKH output), so a proxy that
//! splices extranonces into `coinb1` is exercised on the same layout real
//! pools send.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hashsplit_stratum::share::double_sha256;
use hashsplit_stratum::{Job, JobError, Notify};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Text in every simulated coinbase, after the extranonces.
const TAG: &[u8] = b"/hashsplit-sim/";
/// The block version before rolling (BIP 9 top bits).
const VERSION: u32 = 0x2000_0000;
/// The coinbase output value, satoshis.
const REWARD: u64 = 312_500_000;

/// A job as the pool issued it: the notify sent and the job prepared for
/// checking shares against it.
#[derive(Debug)]
pub struct PoolJob {
    /// The notify as sent (its `clean_jobs` is the broadcast one).
    pub notify: Notify,
    /// The job prepared for the pool's extranonce1 + extranonce2 length.
    pub job: Job,
    /// The job's number; its id on the wire is this in hex.
    pub seq: u64,
}

impl PoolJob {
    /// Prepares a job from any notify (the real-block vectors use this),
    /// for miners rolling `extranonce_len` bytes of extranonce in total.
    pub fn from_notify(notify: Notify, extranonce_len: usize) -> Result<PoolJob, JobError> {
        let job = Job::from_notify(&notify, extranonce_len)?;
        let seq = u64::from_str_radix(&notify.job_id, 16).unwrap_or(u64::MAX);
        Ok(PoolJob { notify, job, seq })
    }
}

/// Makes the pool's jobs: each call a fresh coinbase and branch, and on a
/// clean job a new block to mine on.
#[derive(Debug)]
pub struct JobFactory {
    rng: StdRng,
    next_seq: u64,
    height: u32,
    prevhash: [u8; 32],
    nbits: u32,
    fake_txs: usize,
    extranonce_len: usize,
    payout: [u8; 20],
}

impl JobFactory {
    /// Returns a factory for jobs with network target `nbits`, `fake_txs`
    /// transactions besides the coinbase, and `extranonce_len` bytes of
    /// extranonce in the coinbase.
    pub fn new(nbits: u32, fake_txs: usize, extranonce_len: usize) -> Self {
        let mut rng = StdRng::from_os_rng();
        JobFactory {
            prevhash: rng.random(),
            payout: rng.random(),
            height: 900_000 + rng.random_range(0..10_000),
            rng,
            next_seq: 1,
            nbits,
            fake_txs,
            extranonce_len,
        }
    }

    /// Returns the number the next job will get: every lower one was issued.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Makes the next job; `clean` moves to a new previous block first.
    pub fn next(&mut self, clean: bool) -> Result<Arc<PoolJob>, JobError> {
        if clean {
            self.prevhash = self.rng.random();
            self.height += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let txids: Vec<[u8; 32]> = (0..self.fake_txs).map(|_| self.rng.random()).collect();
        let (coinb1, coinb2) = self.coinbase(seq);
        let notify = Notify {
            job_id: format!("{seq:x}"),
            prevhash: self.prevhash,
            coinb1,
            coinb2,
            merkle_branch: merkle_branch(&txids),
            version: VERSION,
            nbits: self.nbits,
            ntime: unix_time(),
            clean_jobs: clean,
        };
        let job = Job::from_notify(&notify, self.extranonce_len)?;
        Ok(Arc::new(PoolJob { notify, job, seq }))
    }

    /// Returns coinb1 and coinb2 around the extranonces.
    fn coinbase(&self, seq: u64) -> (Vec<u8>, Vec<u8>) {
        let height = self.height.to_le_bytes();
        let script_len = 4 + self.extranonce_len + TAG.len() + 8;
        let mut coinb1 = Vec::with_capacity(42 + 4);
        coinb1.extend_from_slice(&1u32.to_le_bytes()); // tx version
        coinb1.push(1); // one input
        coinb1.extend_from_slice(&[0; 32]); // null prevout
        coinb1.extend_from_slice(&u32::MAX.to_le_bytes());
        coinb1.push(u8::try_from(script_len).expect("scriptSig under 256 bytes"));
        coinb1.push(3); // BIP 34: push the height in 3 bytes
        coinb1.extend_from_slice(&height[..3]);

        let mut coinb2 = Vec::with_capacity(TAG.len() + 8 + 4 + 1 + 8 + 23 + 4);
        coinb2.extend_from_slice(TAG);
        // Each job's coinbase differs, as a real pool's does when fees change.
        coinb2.extend_from_slice(&seq.to_le_bytes());
        coinb2.extend_from_slice(&u32::MAX.to_le_bytes()); // sequence
        coinb2.push(1); // one output
        coinb2.extend_from_slice(&REWARD.to_le_bytes());
        coinb2.push(22);
        coinb2.extend_from_slice(&[0x00, 0x14]); // P2WPKH
        coinb2.extend_from_slice(&self.payout);
        coinb2.extend_from_slice(&0u32.to_le_bytes()); // lock time
        (coinb1, coinb2)
    }
}

/// Returns the merkle branch of the coinbase (leaf 0) in a tree whose other
/// leaves are `txids`, odd levels closed by duplicating the last node.
pub fn merkle_branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    // The current level without its first node (the coinbase's ancestor).
    let mut level = txids.to_vec();
    while let Some(sibling) = level.first() {
        branch.push(*sibling);
        level = level[1..]
            .chunks(2)
            .map(|pair| {
                let mut node = [0u8; 64];
                node[..32].copy_from_slice(&pair[0]);
                node[32..].copy_from_slice(pair.get(1).unwrap_or(&pair[0]));
                double_sha256(&node)
            })
            .collect();
    }
    branch
}

/// Returns the current time as a block's ntime.
pub(crate) fn unix_time() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merkle root of a whole tree, computed the long way.
    fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
        let mut level = leaves.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut node = [0u8; 64];
                    node[..32].copy_from_slice(&pair[0]);
                    node[32..].copy_from_slice(pair.get(1).unwrap_or(&pair[0]));
                    double_sha256(&node)
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn the_branch_folds_to_the_trees_root() {
        let leaf = |i: u8| [i; 32];
        for n in 0..12u8 {
            let txids: Vec<_> = (1..=n).map(leaf).collect();
            let coinbase = leaf(200);
            let mut folded = coinbase;
            for sibling in merkle_branch(&txids) {
                let mut node = [0u8; 64];
                node[..32].copy_from_slice(&folded);
                node[32..].copy_from_slice(&sibling);
                folded = double_sha256(&node);
            }
            let mut leaves = vec![coinbase];
            leaves.extend(txids);
            assert_eq!(folded, root(&leaves), "{n} transactions");
        }
    }

    #[test]
    fn clean_jobs_move_to_a_new_block_and_others_keep_it() {
        let mut factory = JobFactory::new(0x1d00_ffff, 4, 12);
        let first = factory.next(true).unwrap();
        let second = factory.next(false).unwrap();
        let third = factory.next(true).unwrap();
        assert_eq!(first.notify.prevhash, second.notify.prevhash);
        assert_ne!(second.notify.prevhash, third.notify.prevhash);
        assert_ne!(first.notify.coinb2, second.notify.coinb2);
        assert_eq!(first.notify.merkle_branch.len(), 3);
        assert_eq!(
            (first.notify.job_id.as_str(), third.seq),
            ("1", 3),
            "ids count up in hex"
        );
        assert_eq!(factory.next_seq(), 4);
        // The scriptSig length byte covers height, extranonces and tag.
        let coinb1 = &first.notify.coinb1;
        assert_eq!(usize::from(coinb1[41]), 4 + 12 + TAG.len() + 8);
    }
}
