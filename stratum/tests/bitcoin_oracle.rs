//! The hand-written share path against the `bitcoin` crate as an oracle.
//!
//! Each case builds a real block with the crate: a coinbase transaction
//! whose script carries the extranonces, up to 40 other transactions, and a
//! header with rolled version bits. The block is then cut into a Stratum job
//! the way a pool does (coinb1 and coinb2 around the extranonces, the merkle
//! branch of the coinbase) and the share path must agree with the crate on
//! the coinbase txid, the merkle root, the 80 header bytes, the block hash
//! and whether the hash meets the network target.

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::transaction::{self, OutPoint, Transaction, TxIn, TxOut};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, ScriptBuf, Sequence, TxMerkleNode, Txid, Witness,
};
use hashsplit_stratum::{Job, JobParts, ShareContext, Submission, Target};
use proptest::prelude::*;

/// A block drawn at random, and where its coinbase holds the extranonces.
#[derive(Debug, Clone)]
struct Case {
    script_prefix: Vec<u8>,
    script_suffix: Vec<u8>,
    extranonce1: Vec<u8>,
    extranonce2: Vec<u8>,
    outputs: Vec<(u64, Vec<u8>)>,
    others: usize,
    prev_blockhash: [u8; 32],
    version: u32,
    mask: Option<u32>,
    rolled: u32,
    time: u32,
    nbits: u32,
    nonce: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 1..=4),
            proptest::collection::vec(any::<u8>(), 1..=8),
            proptest::collection::vec(
                (
                    0u64..50_0000_0000,
                    proptest::collection::vec(any::<u8>(), 0..60),
                ),
                1..4,
            ),
            0usize..40,
        ),
        (
            any::<[u8; 32]>(),
            any::<u32>(),
            prop_oneof![
                Just(None),
                Just(Some(0x1fff_e000u32)),
                any::<u32>().prop_map(Some)
            ],
            any::<u32>(),
            any::<u32>(),
            // Exponents 3..=0x1d with a positive mantissa: every valid
            // target from tiny to far above mainnet's.
            (3u32..=0x1d, 0x0000_8000u32..=0x007f_ffff).prop_map(|(e, m)| (e << 24) | m),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (script_prefix, script_suffix, extranonce1, extranonce2, outputs, others),
                (prev_blockhash, version, mask, rolled, time, nbits, nonce),
            )| Case {
                script_prefix,
                script_suffix,
                extranonce1,
                extranonce2,
                outputs,
                others,
                prev_blockhash,
                version,
                mask,
                rolled,
                time,
                nbits,
                nonce,
            },
        )
}

fn coinbase(case: &Case) -> Transaction {
    let script_sig = [
        &case.script_prefix[..],
        &case.extranonce1,
        &case.extranonce2,
        &case.script_suffix,
    ]
    .concat();
    Transaction {
        version: transaction::Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(script_sig),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: case
            .outputs
            .iter()
            .map(|(sats, script)| TxOut {
                value: Amount::from_sat(*sats),
                script_pubkey: ScriptBuf::from_bytes(script.clone()),
            })
            .collect(),
    }
}

/// Another transaction of the block, distinct for each `index`.
fn other(index: usize) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: LockTime::from_consensus(index as u32),
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([index as u8; 32]),
                vout: index as u32,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1000 + index as u64),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
        }],
    }
}

/// The merkle branch of the first transaction: its sibling at each level,
/// as a pool sends it in `mining.notify`.
fn branch_of_first(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut level = txids.to_vec();
    let mut branch = Vec::new();
    while level.len() > 1 {
        branch.push(level[1]);
        if level.len() % 2 == 1 {
            level.push(level[level.len() - 1]);
        }
        level = level
            .chunks_exact(2)
            .map(|pair| {
                let joined = [&pair[0][..], &pair[1][..]].concat();
                bitcoin::hashes::sha256d::Hash::hash(&joined).to_byte_array()
            })
            .collect();
    }
    branch
}

/// The header version with the case's rolled bits (BIP 310).
fn rolled_version(case: &Case) -> u32 {
    match case.mask {
        Some(mask) => (case.version & !mask) | (case.rolled & mask),
        None => case.version,
    }
}

/// The previous block hash as Stratum sends it: each 4-byte word of the
/// internal byte order reversed.
fn stratum_prevhash(internal: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (from, to) in internal.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        to.copy_from_slice(from);
        to.reverse();
    }
    out
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let Prepared {
        job,
        ctx,
        submission,
        block,
    } = prepared(case);
    prop_assert!(block.check_merkle_root());
    let cb = &block.txdata[0];
    let bytes = serialize(cb);
    let root = block.header.merkle_root;

    prop_assert_eq!(
        job.coinbase(&case.extranonce1, &case.extranonce2),
        bytes.clone()
    );
    prop_assert_eq!(
        job.coinbase_txid(&case.extranonce1, &case.extranonce2),
        cb.compute_txid().to_byte_array()
    );
    prop_assert_eq!(
        job.merkle_root(&case.extranonce1, &case.extranonce2),
        root.to_byte_array()
    );
    prop_assert_eq!(
        job.header(&ctx, &submission).to_vec(),
        serialize(&block.header)
    );
    let hash = job.hash(&ctx, &submission);
    prop_assert_eq!(hash, block.header.block_hash().to_byte_array());
    let crate_target = block.header.target();
    prop_assert_eq!(
        job.network_target().to_le_bytes(),
        crate_target.to_le_bytes()
    );
    prop_assert_eq!(
        job.network_target().is_met_by(&hash),
        crate_target.is_met_by(block.header.block_hash())
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6b74_6369),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_share_path_agrees_with_the_bitcoin_crate(case in case()) {
        check(&case)?;
    }
}

#[test]
fn a_regtest_block_found_by_the_share_path_passes_the_crates_proof_of_work() {
    // At regtest's target (0x207fffff) about every other hash is a block:
    // search nonces until the share path says one is, then the crate must
    // accept the same header's proof of work, and refuse it for a target
    // no hash meets.
    let mut case = Case {
        script_prefix: vec![3, 1, 2, 3],
        script_suffix: b"/hashsplit/".to_vec(),
        extranonce1: vec![0, 1],
        extranonce2: vec![0, 0, 0, 7],
        outputs: vec![(50_0000_0000, vec![0x51])],
        others: 3,
        prev_blockhash: [7; 32],
        version: 0x2000_0000,
        mask: Some(0x1fff_e000),
        rolled: 0x0000_6000,
        time: 1_700_000_000,
        nbits: 0x207f_ffff,
        nonce: 0,
    };
    let found = (0..64u32).find_map(|nonce| {
        case.nonce = nonce;
        check(&case).unwrap();
        let p = prepared(&case);
        let verdict = p.job.judge(&p.ctx, &p.submission).ok()?;
        verdict.meets_network.then_some(p.block.header)
    });
    let header = found.expect("a regtest block within 64 nonces");
    assert!(header.validate_pow(header.target()).is_ok());
    let impossible = bitcoin::Target::from_compact(CompactTarget::from_consensus(0x0300_8000));
    assert!(header.validate_pow(impossible).is_err());
}

/// A case cut into a Stratum job as a pool does, the share it stands for,
/// and the same block built with the crate.
struct Prepared<'a> {
    job: Job,
    ctx: ShareContext<'a>,
    submission: Submission,
    block: Block,
}

fn prepared(case: &Case) -> Prepared<'_> {
    let cb = coinbase(case);
    let bytes = serialize(&cb);
    // version (4) ‖ input count (1) ‖ outpoint (36) ‖ script length (1:
    // the script is under 253 bytes) ‖ the script's prefix.
    let at = 4 + 1 + 36 + 1 + case.script_prefix.len();
    let extranonce_len = case.extranonce1.len() + case.extranonce2.len();
    let mut txdata = vec![cb];
    txdata.extend((0..case.others).map(other));
    let txids: Vec<[u8; 32]> = txdata
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    let branch = branch_of_first(&txids);
    let prevhash = stratum_prevhash(&case.prev_blockhash);
    let job = Job::new(
        JobParts {
            prevhash: &prevhash,
            coinb1: &bytes[..at],
            coinb2: &bytes[at + extranonce_len..],
            merkle_branch: &branch,
            version: case.version,
            nbits: case.nbits,
            ntime: case.time,
        },
        extranonce_len,
    )
    .expect("a valid job");
    let ctx = ShareContext {
        extranonce1: &case.extranonce1,
        version_mask: case.mask,
        // Miner and pool targets no hash meets: only the network's counts.
        miner_target: Target::from_le_bytes([0; 32]),
        pool_target: Target::from_le_bytes([0; 32]),
    };
    let submission = Submission::new(
        &case.extranonce2,
        case.time,
        case.nonce,
        case.mask.map(|_| case.rolled),
    );
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(rolled_version(case) as i32),
            prev_blockhash: BlockHash::from_byte_array(case.prev_blockhash),
            merkle_root: TxMerkleNode::all_zeros(),
            time: case.time,
            bits: CompactTarget::from_consensus(case.nbits),
            nonce: case.nonce,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().expect("transactions");
    Prepared {
        job,
        ctx,
        submission,
        block,
    }
}
