//! The share path: `Submission::from_hex` on arbitrary field text, then
//! `Job::check` and `Job::judge` against an arbitrary job. A judged share's
//! hash must equal the block header hash computed the long way (whole
//! coinbase, merkle fold, 80-byte header), and each verdict flag must be
//! the plain comparison of that hash with its target.

use hashsplit_stratum::{Job, Notify, Reject, ShareContext, Submission, Target};
use sha2::{Digest, Sha256};

use crate::input::Input;

/// Seconds after the job's ntime a share's ntime may be.
const NTIME_WINDOW: u32 = 7000;

/// Builds a job and a share from `data` and judges it.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let coinb1_len = usize::from(input.byte() % 128);
    let coinb2_len = usize::from(input.byte() % 128);
    let notify = Notify {
        job_id: "f".into(),
        prevhash: input.array(),
        coinb1: input.bytes(coinb1_len).to_vec(),
        coinb2: input.bytes(coinb2_len).to_vec(),
        merkle_branch: (0..input.byte() % 6).map(|_| input.array()).collect(),
        version: input.u32(),
        // Half the time regtest's easy target, so block candidates occur.
        nbits: if input.byte() & 1 == 0 {
            0x207f_ffff
        } else {
            input.u32()
        },
        ntime: input.u32(),
        clean_jobs: false,
    };
    let extranonce1_len = usize::from(input.byte() % 9);
    let extranonce1 = input.bytes(extranonce1_len).to_vec();
    let extranonce2_size = usize::from(input.byte() % 10);
    // Usually the length that fits; sometimes any, to reach the refusal.
    let job_extranonce = match input.byte() % 4 {
        0 => usize::from(input.byte() % 20),
        _ => extranonce1.len() + extranonce2_size,
    };
    let Ok(job) = Job::from_notify(&notify, job_extranonce) else {
        return;
    };
    let extranonce2 = field(&mut input, 2 * extranonce2_size);
    let ntime = field(&mut input, 8);
    let nonce = field(&mut input, 8);
    let version_bits = (input.byte() & 1 == 1).then(|| field(&mut input, 8));
    let version_mask = (input.byte() & 1 == 1).then(|| input.u32());
    let miner_target = Target::from_le_bytes(input.array());
    let pool_target = Target::from_le_bytes(input.array());

    let submission = match Submission::from_hex(
        &extranonce2,
        &ntime,
        &nonce,
        version_bits.as_deref(),
        extranonce2_size,
    ) {
        Ok(submission) => submission,
        Err(reject) => {
            assert!(
                matches!(reject, Reject::BadHex(_) | Reject::BadLength(_)),
                "{reject:?} from reading hex"
            );
            return;
        }
    };
    assert_eq!(submission.extranonce2().len(), extranonce2_size);

    let in_window =
        submission.ntime >= notify.ntime && submission.ntime - notify.ntime <= NTIME_WINDOW;
    let bits_allowed = submission
        .version_bits
        .is_none_or(|bits| bits & !version_mask.unwrap_or(0) == 0);
    let checked = job.check(&submission, version_mask);
    match checked {
        Ok(()) => assert!(in_window && bits_allowed),
        Err(Reject::NtimeOutOfRange) => assert!(!in_window),
        Err(Reject::BadVersionBits) => assert!(in_window && !bits_allowed),
        Err(other) => panic!("check refused with {other:?}"),
    }

    let ctx = ShareContext {
        extranonce1: &extranonce1,
        version_mask,
        miner_target,
        pool_target,
    };
    let judged = job.judge(&ctx, &submission);
    if extranonce1.len() + extranonce2_size != job_extranonce {
        assert!(matches!(judged, Err(Reject::BadLength(_))), "{judged:?}");
        return;
    }
    let hash = header_hash(&notify, &extranonce1, &submission, version_mask);
    let meets = |target: Target| at_most(&hash, &target.to_le_bytes());
    let network = Target::from_compact(notify.nbits).expect("the job accepted these nbits");
    let flags = (meets(miner_target), meets(pool_target), meets(network));
    match judged {
        Ok(verdict) => {
            assert_eq!(verdict.hash, hash, "the fast path's hash");
            assert_eq!(
                (
                    verdict.meets_miner,
                    verdict.meets_pool,
                    verdict.meets_network
                ),
                flags
            );
        }
        Err(Reject::LowDifficulty) => assert_eq!(flags, (false, false, false)),
        Err(other) => panic!("judge refused with {other:?}"),
    }
}

/// Returns `len` characters of field text: usually the hex of the next
/// bytes, otherwise raw characters (bad hex, odd lengths, non-ASCII).
fn field(input: &mut Input<'_>, len: usize) -> String {
    match input.byte() % 8 {
        0 => {
            let raw_len = usize::from(input.byte() % 20);
            let raw = input.bytes(raw_len);
            String::from_utf8_lossy(raw).into_owned()
        }
        _ => {
            let bytes = input.bytes(len / 2);
            let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            while text.len() < len {
                text.push('0');
            }
            text
        }
    }
}

fn sha256d(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(bytes)).into()
}

/// The block header hash, from scratch: coinbase, txid, merkle root,
/// header with the rolled version, SHA-256d.
fn header_hash(
    notify: &Notify,
    extranonce1: &[u8],
    submission: &Submission,
    version_mask: Option<u32>,
) -> [u8; 32] {
    let coinbase = [
        &notify.coinb1[..],
        extranonce1,
        submission.extranonce2(),
        &notify.coinb2[..],
    ]
    .concat();
    let mut root = sha256d(&coinbase);
    for sibling in &notify.merkle_branch {
        root = sha256d(&[&root[..], &sibling[..]].concat());
    }
    let version = match (submission.version_bits, version_mask) {
        (Some(bits), Some(mask)) => (notify.version & !mask) | (bits & mask),
        _ => notify.version,
    };
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&version.to_le_bytes());
    // Stratum sends the previous hash with each 4-byte word byte-swapped.
    for word in notify.prevhash.chunks_exact(4) {
        header.extend(word.iter().rev());
    }
    header.extend_from_slice(&root);
    header.extend_from_slice(&submission.ntime.to_le_bytes());
    header.extend_from_slice(&notify.nbits.to_le_bytes());
    header.extend_from_slice(&submission.nonce.to_le_bytes());
    sha256d(&header)
}

/// Compares two 256-bit little-endian numbers: `hash <= target`.
fn at_most(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    hash.iter().rev().cmp(target.iter().rev()) != std::cmp::Ordering::Greater
}
