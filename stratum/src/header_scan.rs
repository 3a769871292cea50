//! A block header hashed for many nonces: a miner's inner loop.
//!
//! A header's first 64 bytes are fixed once extranonce2 and the version bits
//! are chosen, so [`HeaderScan`] keeps their SHA-256 midstate and hashes a
//! nonce in two compressions (the header's second block and the outer
//! hash). The header comes from [`Job::header`], so what a miner hashes is
//! exactly what validation checks.

use crate::sha256d::{IV, compress, sha256_of_state};
use crate::share::{Job, ShareContext, Submission};

/// A block header ready to be hashed with any nonce.
#[derive(Debug, Clone)]
pub struct HeaderScan {
    midstate: [u32; 8],
    /// The header's last 16 bytes, padded as the second SHA-256 block.
    second: [u8; 64],
}

impl HeaderScan {
    /// Prepares the 80-byte `header`; its nonce bytes are replaced per hash.
    pub fn new(header: &[u8; 80]) -> Self {
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        let mut midstate = IV;
        compress(&mut midstate, &first);
        let mut second = [0u8; 64];
        second[..16].copy_from_slice(&header[64..]);
        second[16] = 0x80;
        second[62] = 0x02; // 640 bits
        second[63] = 0x80;
        HeaderScan { midstate, second }
    }

    /// Prepares the header of `job` for a share by the holder of `ctx`
    /// with this extranonce2, ntime and version bits.
    pub fn for_job(
        job: &Job,
        ctx: &ShareContext<'_>,
        extranonce2: &[u8],
        ntime: u32,
        version_bits: Option<u32>,
    ) -> Self {
        HeaderScan::new(&job.header(ctx, &Submission::new(extranonce2, ntime, 0, version_bits)))
    }

    /// Returns SHA-256d of the header with `nonce`, little-endian as
    /// compared with targets.
    #[inline]
    pub fn hash(&self, nonce: u32) -> [u8; 32] {
        let mut block = self.second;
        block[12..16].copy_from_slice(&nonce.to_le_bytes());
        let mut inner = self.midstate;
        compress(&mut inner, &block);
        sha256_of_state(&inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Target;

    #[test]
    fn every_nonce_hashes_as_the_job_does() {
        let prevhash = [9u8; 32];
        let branch = [[1u8; 32], [2u8; 32]];
        let parts = crate::share::JobParts {
            prevhash: &prevhash,
            coinb1: &[1, 2, 3],
            coinb2: &[4, 5, 6],
            merkle_branch: &branch,
            version: 0x2000_0000,
            nbits: 0x1d00_ffff,
            ntime: 1_700_000_000,
        };
        let job = Job::new(parts, 8).unwrap();
        let ctx = ShareContext {
            extranonce1: &[7, 7, 7, 7],
            version_mask: Some(0x1fff_e000),
            miner_target: Target::MAX,
            pool_target: Target::MAX,
        };
        let scan = HeaderScan::for_job(&job, &ctx, &[1, 2, 3, 4], 1_700_000_001, Some(0x2000));
        for nonce in [0, 1, 0xdead_beef, u32::MAX] {
            let share = Submission::new(&[1, 2, 3, 4], 1_700_000_001, nonce, Some(0x2000));
            assert_eq!(scan.hash(nonce), job.hash(&ctx, &share), "nonce {nonce:x}");
        }
    }
}
