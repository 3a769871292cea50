//! A share that reached the node backend: the block it stands for,
//! assembled with the `bitcoin` crate and sent with `submitblock`.
//!
//! Only shares meeting the pool's difficulty (the network's) come here. A
//! share for work on a tip that has moved on (often to a block of ours
//! accepted a moment before) is stale. Otherwise the block's own hash
//! decides: one that meets the network target is submitted, at once and
//! retried on a broken connection (a block is worth more than anything
//! else the proxy does); one that misses it by the rounding of the
//! difficulty is settled as a valid share kept locally. After a block of
//! ours is accepted, a template on it is fetched at once.

use bitcoin::consensus::encode::serialize_hex;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{error, warn};

use super::Link;
use crate::metrics::{BlockResult, Outcome, PoolReject};
use crate::node::rpc::RpcError;
use crate::pool::Forward;
use crate::pool::owner::Pool;

/// Attempts at `submitblock` when the connection to the node breaks.
const SUBMIT_ATTEMPTS: u32 = 3;

impl Link {
    /// Turns `share` into a block if it is one and submits it; settles the
    /// share with the outcome.
    pub(super) async fn take_share(&mut self, up: &Pool, share: Forward) {
        let Some(work) = self.work(&share.pool_job_id).cloned() else {
            // Older than every kept template: the tip has long moved on.
            warn!(pool = %up.name, job = %share.pool_job_id, "share for node work no longer kept: stale");
            share
                .settlement
                .settle(Outcome::RejectedByPool(PoolReject::Stale));
            return;
        };
        let version = (work.template().version & !up.version_mask)
            | (share.version_bits.unwrap_or(0) & up.version_mask);
        let block = match work.block(&share.extranonce2, share.ntime, share.nonce, version) {
            Ok(block) => block,
            Err(e) => {
                warn!(pool = %up.name, error = %e, "share cannot be made into a block");
                share
                    .settlement
                    .settle(Outcome::RejectedByPool(PoolReject::Other));
                return;
            }
        };
        let hash = block.block_hash();
        let meets_network = block.header.validate_pow(block.header.target()).is_ok();
        if self.tip != Some(work.template().prev_blockhash) {
            // Built on a block that is no longer the tip (often one of
            // ours, accepted a moment ago): it cannot be a block any more.
            if meets_network {
                up.series.block_candidates_stale.inc();
                warn!(pool = %up.name, %hash, "a block for a template whose tip has moved on: stale, not submitted");
            }
            share
                .settlement
                .settle(Outcome::RejectedByPool(PoolReject::Stale));
            return;
        }
        if !meets_network {
            // At the network's difficulty but not its exact target: a good
            // share, credited like any below the pool's target.
            share.settlement.settle(Outcome::AcceptedLocal);
            return;
        }
        let height = work.template().height;
        let hex = serialize_hex(&block);
        let sent = Instant::now();
        let answer = self.submit_block(&hex).await;
        up.observe_submit(sent.elapsed());
        let (result, outcome) = match answer {
            Ok(Value::Null) => {
                warn!(pool = %up.name, %hash, height, "block found and accepted by the node");
                self.tip = Some(hash);
                self.floor = height + 1;
                (BlockResult::Accepted, Outcome::AcceptedByPool)
            }
            Ok(reason) => {
                let reason = reason
                    .as_str()
                    .map_or_else(|| reason.to_string(), str::to_owned);
                warn!(pool = %up.name, %hash, height, %reason, "block found but refused by the node");
                (
                    BlockResult::Rejected,
                    Outcome::RejectedByPool(PoolReject::Other),
                )
            }
            Err(RpcError::Rpc { code, message, .. }) => {
                warn!(pool = %up.name, %hash, height, code, %message, "block found but refused by the node");
                (
                    BlockResult::Rejected,
                    Outcome::RejectedByPool(PoolReject::Other),
                )
            }
            Err(e) => {
                error!(pool = %up.name, %hash, height, error = %e, block = %hex, "block found but could not be submitted: submit the hex with bitcoin-cli submitblock");
                (BlockResult::Error, Outcome::PoolUnavailable)
            }
        };
        up.series.block_submitted(result);
        share.settlement.settle(outcome);
        if result == BlockResult::Accepted {
            // Our own block is the new tip: work on it at once rather than
            // at the next poll.
            match super::template(&self.rpc).await {
                Ok(template) => {
                    if let Err(e) = self.on_template(up, template) {
                        warn!(pool = %up.name, error = %e, "template after our block unusable");
                    }
                }
                Err(e) => warn!(pool = %up.name, error = %e, "no template after our block yet"),
            }
        }
    }

    /// Sends `submitblock`, again if the connection broke on the way.
    async fn submit_block(&self, hex: &str) -> Result<Value, RpcError> {
        let mut attempt = 1;
        loop {
            match self.rpc.call("submitblock", json!([hex])).await {
                Err(RpcError::Io { .. }) if attempt < SUBMIT_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }
}
