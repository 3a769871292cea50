//! Work from a simulated node's template, mined with the share path, and the
//! block checked by the node as Core would.

use bitcoin::Network;
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use hashsplit_stratum::{Job, ShareContext, Submission, Target};
use miner_sim::node::{Rejection, TestChain};

use super::*;
use crate::node::{PayoutError, Template, TemplateError, payout_script};

/// A regtest address (P2WPKH of the key hash 0x01 × 20).
const PAYOUT: &str = "bcrt1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpvxat9t";
const MASK: u32 = 0x1fff_e000;

fn spec() -> WorkSpec {
    WorkSpec {
        payout: payout_script(PAYOUT, Network::Regtest).unwrap(),
        tag: b"/hashsplit/".to_vec(),
        extranonce1: vec![0xde, 0xad, 0xbe, 0xef],
        extranonce2_size: 8,
    }
}

fn chain() -> TestChain {
    TestChain::new(Network::Regtest, spec().payout, 200, 6)
}

/// Mines `work` with the share path until a share meets (or, with `block`
/// false, misses) the network target; returns the block it stands for
/// and the share's hash.
fn mine(work: &NodeWork, block: bool) -> (Block, [u8; 32]) {
    let notify = work.notify("1".into(), true);
    let spec = spec();
    let job = Job::from_notify(&notify, spec.extranonce1.len() + spec.extranonce2_size).unwrap();
    let ctx = ShareContext {
        extranonce1: &spec.extranonce1,
        version_mask: Some(MASK),
        miner_target: Target::from_le_bytes([0xff; 32]),
        pool_target: Target::from_le_bytes([0; 32]),
    };
    let extranonce2 = [0, 0, 0, 1, 0, 0, 0, 2];
    let rolled = 0x0000_4000;
    for nonce in 0..256 {
        let share = Submission::new(&extranonce2, notify.ntime, nonce, Some(rolled));
        let verdict = job.judge(&ctx, &share).unwrap();
        if verdict.meets_network == block {
            let version = (notify.version & !MASK) | (rolled & MASK);
            let assembled = work
                .block(&extranonce2, notify.ntime, nonce, version)
                .unwrap();
            return (assembled, verdict.hash);
        }
    }
    panic!("no share of the wanted kind in 256 nonces at regtest difficulty");
}

#[test]
fn a_block_found_on_node_work_passes_every_check_of_the_node() {
    let mut chain = chain();
    let template = Template::from_json(&chain.template()).unwrap();
    assert_eq!(template.transactions.len(), 6);
    assert!(template.witness_commitment.is_some());
    let work = NodeWork::new(template, &spec()).unwrap();
    let (block, hash) = mine(&work, true);
    assert_eq!(block.block_hash().to_byte_array(), hash);
    assert_eq!(block.bip34_block_height(), Ok(201));
    let accepted = chain.submit(&serialize_hex(&block)).unwrap();
    assert_eq!(accepted, block.block_hash());
    assert_eq!(chain.height(), 201);
    assert_eq!(chain.best_block_hash(), block.block_hash());
}

#[test]
fn the_node_refuses_a_share_below_the_network_target_and_a_stale_block() {
    let mut chain = chain();
    let work = NodeWork::new(Template::from_json(&chain.template()).unwrap(), &spec()).unwrap();
    let (low, _) = mine(&work, false);
    assert_eq!(chain.submit(&serialize_hex(&low)), Err(Rejection::HighHash));
    let (block, _) = mine(&work, true);
    chain.advance();
    assert_eq!(
        chain.submit(&serialize_hex(&block)),
        Err(Rejection::PrevBlock)
    );
}

#[test]
fn a_template_with_a_wrong_txid_is_refused() {
    let mut value = chain().template();
    value["transactions"][2]["txid"] = "00".repeat(32).into();
    let error = Template::from_json(&value).unwrap_err();
    assert!(
        matches!(error, TemplateError::Txid { index: 2, .. }),
        "{error}"
    );
}

#[test]
fn a_tag_too_long_for_the_coinbase_script_is_refused() {
    let template = Template::from_json(&chain().template()).unwrap();
    let mut spec = spec();
    spec.tag = vec![b'x'; 90];
    let error = NodeWork::new(template, &spec).unwrap_err();
    assert!(
        matches!(error, WorkError::ScriptTooLong(n) if n > 100),
        "{error}"
    );
}

#[test]
fn payout_addresses_are_checked_against_the_chain() {
    assert!(payout_script(PAYOUT, Network::Regtest).is_ok());
    assert!(matches!(
        payout_script(PAYOUT, Network::Bitcoin),
        Err(PayoutError::WrongNetwork { .. })
    ));
    // The same key hash as a mainnet address is refused on regtest.
    assert!(matches!(
        payout_script(
            "bc1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpyfl4f3",
            Network::Regtest
        ),
        Err(PayoutError::WrongNetwork { .. })
    ));
    assert!(matches!(
        payout_script("bcrt1qnotanaddress", Network::Regtest),
        Err(PayoutError::Malformed { .. })
    ));
}
