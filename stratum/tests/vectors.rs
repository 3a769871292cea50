//! The real-block vectors: two blocks from the chain written as a Stratum job
//! plus the share that solves it. A share that is a real block exercises the
//! whole path (coinbase, merkle branch, header, version rolling, targets).

use hashsplit_stratum::share::hash_to_hex;
use hashsplit_stratum::{Job, JobParts, Reject, ShareContext, Submission, Target};
use serde_json::Value;

struct Vector {
    name: &'static str,
    json: Value,
}

fn vectors() -> Vec<Vector> {
    let load = |name: &'static str, text: &str| Vector {
        name,
        json: serde_json::from_str(text).expect("vector is JSON"),
    };
    vec![
        load("mainnet", include_str!("vectors/mainnet_block_share.json")),
        load("testnet", include_str!("vectors/testnet_block_share.json")),
    ]
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn word(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().expect("hex string"), 16).expect("u32 hex")
}

/// Everything a miner holds for one vector: the job, its extranonce1 and
/// mask, and the decoded winning share.
struct Case {
    job: Job,
    extranonce1: Vec<u8>,
    mask: u32,
    submission: Submission,
}

fn case(v: &Value) -> Case {
    let notify = &v["notify"];
    let prevhash: [u8; 32] = bytes(&notify["prevhash"]).try_into().unwrap();
    let branch: Vec<[u8; 32]> = notify["merkle_branch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| bytes(h).try_into().unwrap())
        .collect();
    let coinb1 = bytes(&notify["coinb1"]);
    let coinb2 = bytes(&notify["coinb2"]);
    let extranonce1 = bytes(&v["extranonce1"]);
    let en2_size = v["extranonce2_size"].as_u64().unwrap() as usize;
    let parts = JobParts {
        prevhash: &prevhash,
        coinb1: &coinb1,
        coinb2: &coinb2,
        merkle_branch: &branch,
        version: word(&notify["version"]),
        nbits: word(&notify["nbits"]),
        ntime: word(&notify["ntime"]),
    };
    let job = Job::new(parts, extranonce1.len() + en2_size).expect("job prepares");
    let submit = &v["submit"];
    let submission = Submission::from_hex(
        submit["extranonce2"].as_str().unwrap(),
        submit["ntime"].as_str().unwrap(),
        submit["nonce"].as_str().unwrap(),
        submit["version_bits"].as_str(),
        en2_size,
    )
    .expect("share decodes");
    Case {
        job,
        extranonce1,
        mask: word(&v["version_mask"]),
        submission,
    }
}

/// Miner and pool targets set to the network target: only a block passes.
fn block_only<'a>(c: &'a Case) -> ShareContext<'a> {
    ShareContext {
        extranonce1: &c.extranonce1,
        version_mask: Some(c.mask),
        miner_target: c.job.network_target(),
        pool_target: c.job.network_target(),
    }
}

#[test]
fn each_vector_validates_as_a_block_candidate_with_the_expected_header() {
    for v in vectors() {
        let c = case(&v.json);
        let expected = &v.json["expected"];
        let ctx = block_only(&c);

        let header = c.job.header(&ctx, &c.submission);
        assert_eq!(
            hex::encode(header),
            expected["header_hex"].as_str().unwrap(),
            "{}",
            v.name
        );
        let txid = c
            .job
            .coinbase_txid(&c.extranonce1, c.submission.extranonce2());
        assert_eq!(
            hash_to_hex(&txid),
            expected["coinbase_txid"].as_str().unwrap()
        );
        let root = c
            .job
            .merkle_root(&c.extranonce1, c.submission.extranonce2());
        assert_eq!(
            hash_to_hex(&root),
            expected["merkle_root"].as_str().unwrap()
        );
        assert_eq!(
            c.job.network_target().to_be_hex(),
            expected["network_target_hex"].as_str().unwrap()
        );

        let verdict = c.job.validate(&ctx, &c.submission).expect("a real block");
        assert!(verdict.meets_network && verdict.meets_pool && verdict.meets_miner);
        assert_eq!(
            hash_to_hex(&verdict.hash),
            expected["block_hash"].as_str().unwrap(),
            "{}",
            v.name
        );
        let want = expected["share_difficulty"].as_f64().unwrap();
        assert!(
            (verdict.difficulty() - want).abs() / want < 1e-9,
            "{}: difficulty {} vs {want}",
            v.name,
            verdict.difficulty()
        );
        // The slow path agrees with the fast one.
        assert_eq!(
            hashsplit_stratum::share::double_sha256(&header),
            verdict.hash
        );
    }
}

#[test]
fn a_changed_nonce_ntime_extranonce2_or_version_bit_is_no_block() {
    for v in vectors() {
        let c = case(&v.json);
        let ctx = block_only(&c);
        let s = c.submission;
        let mut en2 = s.extranonce2().to_vec();
        en2[0] ^= 1;
        let bits = s.version_bits.unwrap_or(0);
        let mutants = [
            (
                "nonce",
                Submission::new(s.extranonce2(), s.ntime, s.nonce ^ 1, s.version_bits),
            ),
            (
                "ntime",
                Submission::new(s.extranonce2(), s.ntime + 1, s.nonce, s.version_bits),
            ),
            (
                "extranonce2",
                Submission::new(&en2, s.ntime, s.nonce, s.version_bits),
            ),
            (
                "version bit",
                Submission::new(s.extranonce2(), s.ntime, s.nonce, Some(bits ^ 0x2000)),
            ),
        ];
        for (what, mutant) in mutants {
            assert_eq!(
                c.job.validate(&ctx, &mutant),
                Err(Reject::LowDifficulty),
                "{}: changed {what}",
                v.name
            );
        }
    }
}

#[test]
fn a_notify_line_prepares_the_same_job() {
    use hashsplit_stratum::{Incoming, ServerMethod};
    for v in vectors() {
        let c = case(&v.json);
        let n = &v.json["notify"];
        let line = serde_json::json!({
            "id": null,
            "method": "mining.notify",
            "params": [n["job_id"], n["prevhash"], n["coinb1"], n["coinb2"],
                       n["merkle_branch"], n["version"], n["nbits"], n["ntime"], n["clean_jobs"]],
        })
        .to_string();
        let Ok(Incoming::Call {
            method: ServerMethod::Notify(notify),
            ..
        }) = Incoming::<ServerMethod>::from_line(&line)
        else {
            panic!("{}: notify does not parse", v.name);
        };
        let job = Job::from_notify(&notify, c.job.extranonce_len()).unwrap();
        let verdict = job.validate(&block_only(&c), &c.submission).unwrap();
        assert!(verdict.meets_network, "{}", v.name);
    }
}

#[test]
fn a_real_block_still_counts_when_the_miner_target_is_absurdly_high() {
    // Difficulty above the network's: the block must not be dropped.
    let v = &vectors()[0];
    let c = case(&v.json);
    let ctx = ShareContext {
        miner_target: Target::from_le_bytes([0; 32]),
        pool_target: Target::from_le_bytes([0; 32]),
        ..block_only(&c)
    };
    let verdict = c.job.validate(&ctx, &c.submission).unwrap();
    assert!(verdict.meets_network && !verdict.meets_miner && !verdict.meets_pool);
}

#[test]
fn the_mainnet_share_needs_the_negotiated_mask() {
    let v = &vectors()[0];
    let c = case(&v.json);
    let no_mask = ShareContext {
        version_mask: None,
        ..block_only(&c)
    };
    assert_eq!(
        c.job.validate(&no_mask, &c.submission),
        Err(Reject::BadVersionBits)
    );
    let narrow = ShareContext {
        version_mask: Some(0x0000_e000),
        ..block_only(&c)
    };
    assert_eq!(
        c.job.validate(&narrow, &c.submission),
        Err(Reject::BadVersionBits)
    );
}
