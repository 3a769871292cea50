//! `share-bench`: how close share validation runs to the SHA-256 floor.
//!
//! Measures, on one thread, the cost of one raw SHA-256 compression and of
//! validating one realistic share (about 200 bytes of coinbase, a 12-level
//! merkle branch, version rolling, every share distinct: hex decode, ntime
//! and version checks, duplicate key, SHA-256d, three target compares).
//! Prints its figures; the last line is the machine-readable summary:
//!
//! `share-bench compress_ns=<f> share_ns=<f> compressions=<n> ratio_to_floor=<f>`
//!
//! Run with `cargo run --release -p hashsplit-stratum --bin share-bench`.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use hashsplit_stratum::{Job, JobParts, ShareContext, Submission, Target};

/// Timing rounds per figure; the median is reported.
const ROUNDS: usize = 7;
const COMPRESSIONS_PER_ROUND: u32 = 2_000_000;
const SHARES_PER_ROUND: usize = 100_000;
/// Distinct submissions cycled through (more than any cache could hold
/// usefully, and each one a different share).
const DISTINCT_SHARES: usize = 1 << 16;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn compress_ns() -> f64 {
    let mut block = [0u8; 64];
    for (i, b) in block.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut state = [0x6a09_e667u32; 8];
    let rounds = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..COMPRESSIONS_PER_ROUND {
                // Feed the state back so no call can be skipped or reordered.
                block[0] = i as u8;
                sha2::block_api::compress256(&mut state, std::slice::from_ref(black_box(&block)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(COMPRESSIONS_PER_ROUND)
        })
        .collect();
    black_box(state);
    median(rounds)
}

/// A share as a miner sends it: hex strings.
struct HexShare {
    extranonce2: String,
    ntime: String,
    nonce: String,
    version_bits: String,
}

fn main() {
    // A mainnet-like job: coinb1 ends where the pool's extranonce1 goes,
    // a 4-byte extranonce1, an 8-byte extranonce2, a 140-byte coinb2.
    let prevhash = [0x5a; 32];
    let coinb1: Vec<u8> = (0..58u8).collect();
    let coinb2: Vec<u8> = (0..140u8).map(|i| i.wrapping_mul(7)).collect();
    let branch: Vec<[u8; 32]> = (0..12u8).map(|i| [i.wrapping_mul(37); 32]).collect();
    let ntime = 1_700_000_000u32;
    let parts = JobParts {
        prevhash: &prevhash,
        coinb1: &coinb1,
        coinb2: &coinb2,
        merkle_branch: &branch,
        version: 0x2000_0004,
        nbits: 0x1703_a30c,
        ntime,
    };
    let extranonce1 = [0x6d, 0xb4, 0x3c, 0x2e];
    let mask = 0x1fff_e000u32;
    let job = Job::new(parts, extranonce1.len() + 8).expect("job prepares");
    let ctx = ShareContext {
        extranonce1: &extranonce1,
        version_mask: Some(mask),
        miner_target: Target::MAX,
        pool_target: Target::MAX,
    };

    let shares: Vec<HexShare> = (0..DISTINCT_SHARES as u64)
        .map(|i| HexShare {
            extranonce2: format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            ntime: format!("{:08x}", ntime + (i % 600) as u32),
            nonce: format!("{:08x}", (i as u32).wrapping_mul(2_654_435_761)),
            version_bits: format!("{:08x}", ((i as u32) << 13) & mask),
        })
        .collect();

    let compress = compress_ns();

    let mut next = 0usize;
    let mut accepted = 0u64;
    let rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..SHARES_PER_ROUND {
                let hex = &shares[next];
                next = (next + 1) % DISTINCT_SHARES;
                let share = Submission::from_hex(
                    black_box(&hex.extranonce2),
                    &hex.ntime,
                    &hex.nonce,
                    Some(&hex.version_bits),
                    8,
                )
                .expect("bench shares are well formed");
                job.check(&share, ctx.version_mask)
                    .expect("bench shares pass the checks");
                black_box(share.key(ctx.extranonce1));
                if let Ok(verdict) = job.judge(black_box(&ctx), &share) {
                    accepted += u64::from(verdict.meets_miner);
                }
            }
            start.elapsed().as_nanos() as f64 / SHARES_PER_ROUND as f64
        })
        .collect();
    assert_eq!(
        accepted,
        (ROUNDS * SHARES_PER_ROUND) as u64,
        "every bench share meets MAX"
    );
    let share = median(rounds);

    let n = job.compressions_per_share();
    let floor = n as f64 * compress;
    println!("one thread, median of {ROUNDS} rounds");
    println!("  sha256 compression   {compress:8.2} ns");
    println!("  share validation     {share:8.2} ns  ({n} compressions, floor {floor:.1} ns)");
    println!("  shares per second    {:8.0}", 1e9 / share);
    println!(
        "share-bench compress_ns={compress:.2} share_ns={share:.2} compressions={n} ratio_to_floor={:.3}",
        share / floor
    );
}
