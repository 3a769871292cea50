//! The real-block vectors (two blocks from the chain as a Stratum job and
//! the share that solves it) validate through the checker every SimPool
//! connection uses: accepted, counted as a block, with the block's hash.

use std::sync::Arc;

use hashsplit_stratum::share::hash_to_hex;
use hashsplit_stratum::{Difficulty, Incoming, Reject, ServerMethod, Submit};
use miner_sim::pool::{PoolJob, ShareChecker};
use serde_json::{Value, json};

fn vectors() -> Vec<(&'static str, Value)> {
    let load = |text: &str| serde_json::from_str(text).expect("vector is JSON");
    vec![
        (
            "mainnet",
            load(include_str!(
                "../../stratum/tests/vectors/mainnet_block_share.json"
            )),
        ),
        (
            "testnet",
            load(include_str!(
                "../../stratum/tests/vectors/testnet_block_share.json"
            )),
        ),
    ]
}

/// Reads the vector's job the way a miner reads it off the wire.
fn notify_of(v: &Value) -> hashsplit_stratum::Notify {
    let n = &v["notify"];
    let line = json!({
        "id": null,
        "method": "mining.notify",
        "params": [n["job_id"], n["prevhash"], n["coinb1"], n["coinb2"], n["merkle_branch"],
                   n["version"], n["nbits"], n["ntime"], n["clean_jobs"]],
    })
    .to_string();
    match Incoming::<ServerMethod>::from_line(&line).expect("vector notify parses") {
        Incoming::Call {
            method: ServerMethod::Notify(notify),
            ..
        } => notify,
        other => panic!("{other:?}"),
    }
}

fn submit_of(v: &Value) -> Submit {
    let s = &v["submit"];
    let text = |key: &str| s[key].as_str().unwrap().to_owned();
    Submit {
        worker: "vector".into(),
        job_id: v["notify"]["job_id"].as_str().unwrap().into(),
        extranonce2: text("extranonce2"),
        ntime: text("ntime"),
        nonce: text("nonce"),
        version_bits: s["version_bits"].as_str().map(str::to_owned),
    }
}

/// A checker that sent the vector's job at difficulty 1 to the vector's
/// extranonce1.
fn checker_for(v: &Value) -> (ShareChecker, usize) {
    let en1 = hex::decode(v["extranonce1"].as_str().unwrap()).unwrap();
    let en2_size = v["extranonce2_size"].as_u64().unwrap() as usize;
    let job = PoolJob::from_notify(notify_of(v), en1.len() + en2_size).unwrap();
    let mut checker = ShareChecker::new();
    checker.sent(Arc::new(job), true, Difficulty::ONE, &en1);
    (checker, en2_size)
}

fn mask_of(v: &Value) -> Option<u32> {
    Some(u32::from_str_radix(v["version_mask"].as_str().unwrap(), 16).unwrap())
}

#[test]
fn each_vector_share_is_accepted_as_the_block_it_is() {
    for (name, v) in vectors() {
        let (mut checker, en2_size) = checker_for(&v);
        let credit = checker
            .check(&submit_of(&v), en2_size, mask_of(&v), |_| true)
            .unwrap_or_else(|r| panic!("{name}: refused as {r}"));
        assert!(credit.block, "{name}");
        assert_eq!(
            hash_to_hex(&credit.hash),
            v["expected"]["block_hash"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(credit.difficulty, Difficulty::ONE, "{name}");
        assert_eq!(
            checker.check(&submit_of(&v), en2_size, mask_of(&v), |_| true),
            Err(Reject::Duplicate),
            "{name}"
        );
    }
}

#[test]
fn a_vector_share_with_one_field_changed_is_refused() {
    for (name, v) in vectors() {
        let (mut checker, en2_size) = checker_for(&v);
        let mut other_nonce = submit_of(&v);
        let nonce = u32::from_str_radix(&other_nonce.nonce, 16).unwrap();
        other_nonce.nonce = format!("{:08x}", nonce ^ 1);
        assert_eq!(
            checker.check(&other_nonce, en2_size, mask_of(&v), |_| true),
            Err(Reject::LowDifficulty),
            "{name}"
        );
        let mut late = submit_of(&v);
        late.job_id = "2".into();
        assert_eq!(
            checker.check(&late, en2_size, mask_of(&v), |_| false),
            Err(Reject::UnknownJob),
            "{name}"
        );
    }
    // The mainnet share rolls version bits: without a mask they are refused.
    let (name, v) = &vectors()[0];
    let (mut checker, en2_size) = checker_for(v);
    assert_eq!(
        checker.check(&submit_of(v), en2_size, None, |_| true),
        Err(Reject::BadVersionBits),
        "{name}"
    );
}
