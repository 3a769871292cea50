//! Share search: the nonce loop of a miner, and helpers for tests that need a
//! share that meets (or misses) a target without mining for it.
//!
//! The nonce loop hashes with [`HeaderScan`] from the stratum crate: a
//! header midstate and two compressions a nonce, on exactly the header a
//! pool checks.

use hashsplit_stratum::{Job, ShareContext, Submission, Verdict};

pub use hashsplit_stratum::HeaderScan;

/// Searches nonces from `start_nonce` (at most `max_tries`, wrapping) for a
/// share that meets `ctx.miner_target`, without version rolling.
///
/// Returns the submission and its verdict as [`Job::judge`] gives it.
pub fn find_share(
    job: &Job,
    ctx: &ShareContext<'_>,
    extranonce2: &[u8],
    ntime: u32,
    start_nonce: u32,
    max_tries: u32,
) -> Option<(Submission, Verdict)> {
    find_share_rolled(job, ctx, extranonce2, ntime, None, start_nonce, max_tries)
}

/// Like [`find_share`], with rolled `version_bits` (BIP 310) in the header.
pub fn find_share_rolled(
    job: &Job,
    ctx: &ShareContext<'_>,
    extranonce2: &[u8],
    ntime: u32,
    version_bits: Option<u32>,
    start_nonce: u32,
    max_tries: u32,
) -> Option<(Submission, Verdict)> {
    let scan = HeaderScan::for_job(job, ctx, extranonce2, ntime, version_bits);
    let nonce = search(&scan, start_nonce, max_tries, |hash| {
        ctx.miner_target.is_met_by(hash)
    })?;
    let submission = Submission::new(extranonce2, ntime, nonce, version_bits);
    let verdict = job.judge(ctx, &submission).ok()?;
    Some((submission, verdict))
}

/// Searches for a share that meets none of the targets in `ctx` nor the
/// network target: one that a pool must refuse as low difficulty.
pub fn find_low_share(
    job: &Job,
    ctx: &ShareContext<'_>,
    extranonce2: &[u8],
    ntime: u32,
    start_nonce: u32,
    max_tries: u32,
) -> Option<Submission> {
    let easiest = ctx
        .miner_target
        .max(ctx.pool_target)
        .max(job.network_target());
    let scan = HeaderScan::for_job(job, ctx, extranonce2, ntime, None);
    let nonce = search(&scan, start_nonce, max_tries, |hash| {
        !easiest.is_met_by(hash)
    })?;
    Some(Submission::new(extranonce2, ntime, nonce, None))
}

/// Returns the first nonce from `start` (at most `tries`) whose hash passes.
fn search(
    scan: &HeaderScan,
    start: u32,
    tries: u32,
    passes: impl Fn(&[u8; 32]) -> bool,
) -> Option<u32> {
    (0..tries)
        .map(|i| start.wrapping_add(i))
        .find(|nonce| passes(&scan.hash(*nonce)))
}

/// Spreads the low bits of `counter` over the set bits of `mask`, lowest
/// first: the `n`-th choice of version bits a miner rolls within a mask.
pub fn spread_bits(mut counter: u32, mask: u32) -> u32 {
    let mut out = 0;
    let mut remaining = mask;
    while remaining != 0 && counter != 0 {
        let lowest = remaining & remaining.wrapping_neg();
        if counter & 1 == 1 {
            out |= lowest;
        }
        counter >>= 1;
        remaining &= remaining - 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testjob::test_job;
    use hashsplit_stratum::{Difficulty, Reject};

    fn ctx(en1: &[u8], difficulty: f64) -> ShareContext<'_> {
        let target = Difficulty::try_new(difficulty).unwrap().to_target();
        ShareContext {
            extranonce1: en1,
            version_mask: Some(0x1fff_e000),
            miner_target: target,
            pool_target: target,
        }
    }

    #[test]
    fn the_midstate_hash_is_the_jobs_hash() {
        let job = test_job();
        let ctx = ctx(&[1, 2, 3, 4], 1.0);
        let en2 = [9u8; 8];
        for (vb, nonce) in [
            (None, 0),
            (Some(0x0000_2000), 7),
            (Some(0x1fff_e000), u32::MAX),
        ] {
            let scan = HeaderScan::for_job(&job, &ctx, &en2, job.ntime(), vb);
            let sub = Submission::new(&en2, job.ntime(), nonce, vb);
            assert_eq!(scan.hash(nonce), job.hash(&ctx, &sub));
        }
    }

    #[test]
    fn found_shares_pass_the_pools_checks_and_low_ones_fail() {
        let job = test_job();
        let ctx = ctx(&[1, 2, 3, 4], 1e-5);
        let en2 = [0u8; 8];
        let (sub, verdict) = find_share(&job, &ctx, &en2, job.ntime(), 0, 10_000_000).unwrap();
        assert!(verdict.meets_miner);
        assert_eq!(job.validate(&ctx, &sub), Ok(verdict));

        let low = find_low_share(&job, &ctx, &en2, job.ntime(), 0, 1000).unwrap();
        assert_eq!(job.validate(&ctx, &low), Err(Reject::LowDifficulty));
    }

    #[test]
    fn rolled_shares_carry_their_version_bits() {
        let job = test_job();
        let ctx = ctx(&[5; 4], 1e-5);
        let (sub, _) = find_share_rolled(
            &job,
            &ctx,
            &[1; 8],
            job.ntime(),
            Some(0x0000_6000),
            0,
            10_000_000,
        )
        .unwrap();
        assert_eq!(sub.version_bits, Some(0x0000_6000));
        assert!(job.validate(&ctx, &sub).is_ok());
    }

    #[test]
    fn spread_bits_stays_inside_the_mask() {
        let mask = 0x1fff_e000;
        assert_eq!(spread_bits(0, mask), 0);
        assert_eq!(spread_bits(1, mask), 0x0000_2000);
        assert_eq!(spread_bits(2, mask), 0x0000_4000);
        assert_eq!(spread_bits(u32::MAX, mask), mask);
        for counter in 0..5000 {
            assert_eq!(spread_bits(counter, mask) & !mask, 0);
        }
        assert_eq!(spread_bits(12345, 0), 0);
    }
}
