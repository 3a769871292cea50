//! The share path against a naive reference, and every local rejection.

use hashsplit_stratum::{
    Difficulty, Field, Job, JobError, JobParts, Reject, ShareContext, Submission, Target,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn sha256d(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(bytes)).into()
}

/// The textbook computation, written independently of the fast path:
/// build the coinbase, hash, fold the branch, build the header, hash.
fn reference_hash(
    parts: &JobParts<'_>,
    extranonce1: &[u8],
    submission: &Submission,
    mask: Option<u32>,
) -> [u8; 32] {
    let coinbase = [
        parts.coinb1,
        extranonce1,
        submission.extranonce2(),
        parts.coinb2,
    ]
    .concat();
    let mut root = sha256d(&coinbase);
    for sibling in parts.merkle_branch {
        root = sha256d(&[&root[..], &sibling[..]].concat());
    }
    let version = match (submission.version_bits, mask) {
        (Some(bits), Some(mask)) => (parts.version & !mask) | (bits & mask),
        _ => parts.version,
    };
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&version.to_le_bytes());
    for word in parts.prevhash.chunks(4) {
        header.extend(word.iter().rev());
    }
    header.extend_from_slice(&root);
    header.extend_from_slice(&submission.ntime.to_le_bytes());
    header.extend_from_slice(&parts.nbits.to_le_bytes());
    header.extend_from_slice(&submission.nonce.to_le_bytes());
    sha256d(&header)
}

struct Fixture {
    prevhash: [u8; 32],
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branch: Vec<[u8; 32]>,
}

impl Fixture {
    fn new(coinb1_len: usize, coinb2_len: usize, levels: usize) -> Self {
        let fill = |len: usize, seed: u8| (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        Fixture {
            prevhash: [7; 32],
            coinb1: fill(coinb1_len, 13),
            coinb2: fill(coinb2_len, 29),
            branch: (0..levels).map(|i| [i as u8 + 1; 32]).collect(),
        }
    }

    fn parts(&self) -> JobParts<'_> {
        JobParts {
            prevhash: &self.prevhash,
            coinb1: &self.coinb1,
            coinb2: &self.coinb2,
            merkle_branch: &self.branch,
            version: 0x2000_0000,
            nbits: 0x1703_a30c,
            ntime: 1_700_000_000,
        }
    }

    fn job(&self, extranonce_len: usize) -> Job {
        Job::new(self.parts(), extranonce_len).unwrap()
    }
}

const EN1: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

fn easy(mask: Option<u32>) -> ShareContext<'static> {
    ShareContext {
        extranonce1: &EN1,
        version_mask: mask,
        miner_target: Target::MAX,
        pool_target: Target::MAX,
    }
}

fn good() -> Submission {
    Submission::from_hex("0011223344556677", "6553f100", "0000abcd", None, 8).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The extranonce may straddle a block edge, sit in the first block or
    /// far into the coinbase; the fast path must agree with the reference.
    #[test]
    fn fast_path_matches_the_reference(
        coinb1_len in 0usize..300,
        coinb2_len in 0usize..300,
        en1_len in 0usize..=8,
        en2_len in 1usize..=16,
        levels in 0usize..14,
        nonce: u32,
        bits: u32,
        seed: u8,
    ) {
        let fixture = Fixture::new(coinb1_len, coinb2_len, levels);
        let parts = fixture.parts();
        let job = Job::new(parts, en1_len + en2_len).unwrap();
        let en1: Vec<u8> = (0..en1_len).map(|i| seed ^ i as u8).collect();
        let en2: Vec<u8> = (0..en2_len).map(|i| seed.wrapping_add(i as u8)).collect();
        let mask = Some(0x1fff_e000);
        let submission = Submission::new(&en2, parts.ntime, nonce, Some(bits & 0x1fff_e000));
        let ctx = ShareContext { extranonce1: &en1, ..easy(mask) };
        prop_assert_eq!(job.hash(&ctx, &submission), reference_hash(&parts, &en1, &submission, mask));
        prop_assert_eq!(job.coinbase(&en1, &en2), [&fixture.coinb1[..], &en1, &en2, &fixture.coinb2].concat());
    }

    #[test]
    fn submit_hex_decodes_or_rejects_without_panicking(en2 in ".{0,20}", ntime in ".{0,10}", nonce in ".{0,10}") {
        let _ = Submission::from_hex(&en2, &ntime, &nonce, None, 4);
    }
}

#[test]
fn a_realistic_share_costs_44_compressions() {
    // ~200-byte coinbase with the extranonce in the first block, 12 levels.
    let job = Fixture::new(58, 140, 12).job(8);
    assert_eq!(job.compressions_per_share(), 4 + 1 + 36 + 3);
}

#[test]
fn bad_hex_is_rejected_per_field() {
    let cases = [
        (
            ("zz11223344556677", "6553f100", "0000abcd", None),
            Field::Extranonce2,
        ),
        (
            ("0011223344556677", "6553f10g", "0000abcd", None),
            Field::Ntime,
        ),
        (
            ("0011223344556677", "6553f100", "0000abc-", None),
            Field::Nonce,
        ),
        (
            ("0011223344556677", "6553f100", "0000abcd", Some("1fffe0x0")),
            Field::VersionBits,
        ),
    ];
    for ((en2, ntime, nonce, bits), field) in cases {
        assert_eq!(
            Submission::from_hex(en2, ntime, nonce, bits, 8),
            Err(Reject::BadHex(field))
        );
    }
}

#[test]
fn wrong_lengths_are_rejected_per_field() {
    let cases = [
        (
            ("00112233", "6553f100", "0000abcd", None),
            Field::Extranonce2,
        ),
        (
            ("001122334455667788", "6553f100", "0000abcd", None),
            Field::Extranonce2,
        ),
        (
            ("0011223344556677", "6553f1", "0000abcd", None),
            Field::Ntime,
        ),
        (
            ("0011223344556677", "6553f100", "0000abcd00", None),
            Field::Nonce,
        ),
        (
            ("0011223344556677", "6553f100", "0000abcd", Some("e000")),
            Field::VersionBits,
        ),
    ];
    for ((en2, ntime, nonce, bits), field) in cases {
        assert_eq!(
            Submission::from_hex(en2, ntime, nonce, bits, 8),
            Err(Reject::BadLength(field))
        );
    }
}

#[test]
fn an_extranonce_the_job_was_not_prepared_for_is_refused_not_hashed() {
    let job = Fixture::new(60, 100, 3).job(12);
    let short = Submission::from_hex("00112233", "6553f100", "0000abcd", None, 4).unwrap();
    assert_eq!(
        job.validate(&easy(None), &short),
        Err(Reject::BadLength(Field::Extranonce2))
    );
    let long_en1 = [0u8; 8];
    let ctx = ShareContext {
        extranonce1: &long_en1,
        ..easy(None)
    };
    assert_eq!(
        job.judge(&ctx, &good()),
        Err(Reject::BadLength(Field::Extranonce2))
    );
}

#[test]
fn ntime_must_be_within_the_job_window() {
    let fixture = Fixture::new(60, 100, 3);
    let job = fixture.job(12);
    let at = |ntime: u32| Submission::new(&[0; 8], ntime, 1, None);
    let t = job.ntime();
    assert_eq!(job.check(&at(t), None), Ok(()));
    assert_eq!(job.check(&at(t + 7000), None), Ok(()));
    assert_eq!(job.check(&at(t - 1), None), Err(Reject::NtimeOutOfRange));
    assert_eq!(job.check(&at(t + 7001), None), Err(Reject::NtimeOutOfRange));
}

#[test]
fn version_bits_must_stay_inside_the_negotiated_mask() {
    let job = Fixture::new(60, 100, 3).job(12);
    let bits = |b: u32| Submission::new(&[0; 8], job.ntime(), 1, Some(b));
    let mask = Some(0x1fff_e000);
    assert_eq!(job.check(&bits(0x0000_2000), mask), Ok(()));
    assert_eq!(job.check(&bits(0x1fff_e000), mask), Ok(()));
    assert_eq!(
        job.check(&bits(0x2000_0000), mask),
        Err(Reject::BadVersionBits)
    );
    assert_eq!(
        job.check(&bits(0x0000_1000), mask),
        Err(Reject::BadVersionBits)
    );
    // No mask negotiated: any rolled bit is refused.
    assert_eq!(
        job.check(&bits(0x0000_2000), None),
        Err(Reject::BadVersionBits)
    );
    assert_eq!(job.check(&bits(0), None), Ok(()));
}

#[test]
fn rolled_bits_replace_the_jobs_bits_inside_the_mask() {
    use hashsplit_stratum::share::header_version;
    assert_eq!(
        header_version(0x2000_0004, Some(0x1fff_e000), Some(0x1fff_e000)),
        0x3fff_e004
    );
    // A job bit inside the mask that the miner did not roll is cleared.
    assert_eq!(
        header_version(0x2000_6000, Some(0x0000_2000), Some(0x1fff_e000)),
        0x2000_2000
    );
    assert_eq!(
        header_version(0x2000_0000, None, Some(0x1fff_e000)),
        0x2000_0000
    );
}

#[test]
fn low_difficulty_only_when_no_target_is_met() {
    let job = Fixture::new(60, 100, 3).job(12);
    let impossible = Target::from_le_bytes([0; 32]);
    let ctx = ShareContext {
        miner_target: impossible,
        pool_target: impossible,
        ..easy(None)
    };
    assert_eq!(job.validate(&ctx, &good()), Err(Reject::LowDifficulty));

    // Good for the pool but not for the miner's (too high) difficulty: kept,
    // so the caller can still forward it.
    let ctx = ShareContext {
        miner_target: impossible,
        ..easy(None)
    };
    let verdict = job.validate(&ctx, &good()).unwrap();
    assert!(verdict.meets_pool && !verdict.meets_miner && !verdict.meets_network);
}

#[test]
fn the_verdict_follows_the_hash_difficulty() {
    let job = Fixture::new(60, 100, 3).job(12);
    // Difficulty d takes d·2^32 hashes on average: 2^-28 is one in 16.
    let one_in_16 = 1.0 / f64::from(1u32 << 28);
    let sixteenth = Difficulty::try_new(one_in_16).unwrap().to_target();
    let ctx = ShareContext {
        miner_target: sixteenth,
        pool_target: Difficulty::try_new(1e12).unwrap().to_target(),
        ..easy(None)
    };
    let mut found = 0;
    for nonce in 0..2000 {
        let sub = Submission::new(&[1; 8], job.ntime(), nonce, None);
        match job.validate(&ctx, &sub) {
            Ok(v) => {
                assert!(v.meets_miner && !v.meets_pool && v.difficulty() >= one_in_16);
                found += 1;
            }
            Err(reject) => assert_eq!(reject, Reject::LowDifficulty),
        }
    }
    // 2000 tries at 1/16 odds: ~125 expected; far outside 40..300 means a bug.
    assert!((40..300).contains(&found), "{found}");
}

#[test]
fn duplicate_keys_identify_a_share_per_miner() {
    let a = good();
    assert_eq!(a.key(&EN1), good().key(&EN1));
    assert_ne!(a.key(&EN1), a.key(&[0, 0, 0, 1]));
    let other_nonce = Submission::new(a.extranonce2(), a.ntime, a.nonce + 1, None);
    assert_ne!(a.key(&EN1), other_nonce.key(&EN1));
    let rolled = Submission::new(a.extranonce2(), a.ntime, a.nonce, Some(0x2000));
    assert_ne!(a.key(&EN1), rolled.key(&EN1));
    let zero_bits = Submission::new(a.extranonce2(), a.ntime, a.nonce, Some(0));
    assert_ne!(a.key(&EN1), zero_bits.key(&EN1));
}

#[test]
fn jobs_refuse_bad_nbits_and_extranonce_sizes() {
    let fixture = Fixture::new(60, 100, 3);
    let mut parts = fixture.parts();
    assert!(matches!(
        Job::new(parts, 0),
        Err(JobError::ExtranonceSize(0))
    ));
    assert!(matches!(
        Job::new(parts, 33),
        Err(JobError::ExtranonceSize(33))
    ));
    parts.nbits = 0x0480_0001;
    assert!(matches!(Job::new(parts, 8), Err(JobError::Nbits(_))));
}
