//! Probing a node: its chain and sync state, the payout address against
//! the chain, and one template (asking for work is not sending any).

use hashsplit_policy::{NodeConfig, PoolConfig};
use tokio::time::Instant;

use super::PoolReport;
use crate::node::payout_script;
use crate::pool::node::{chain_info, client, network, template};

/// Asks the node of `pool` what it offers, into `report`.
pub(super) async fn probe(pool: &PoolConfig, node: &NodeConfig, report: &mut PoolReport) {
    match payout_script(&node.payout_address, network(node.chain)) {
        Ok(_) => report.facts.push(format!(
            "payout address {} is an address of {}",
            node.payout_address, node.chain
        )),
        Err(e) => report.problems.push(format!("payout address: {e}")),
    }
    let rpc = client(&pool.url, &pool.user, &pool.password, node);
    let asked = Instant::now();
    let info = match chain_info(&rpc).await {
        Ok(info) => info,
        Err(e) => {
            report.problems.push(format!("getblockchaininfo: {e}"));
            return;
        }
    };
    report.facts.push(format!(
        "chain {} (config: {}), {} (blocks {}, headers {}), answered in {} ms",
        info.chain,
        node.chain,
        if info.initial_block_download {
            "in initial block download"
        } else if info.blocks < info.headers {
            "catching up"
        } else {
            "synced"
        },
        info.blocks,
        info.headers,
        asked.elapsed().as_millis()
    ));
    if let Some(problem) = info.unusable(node.chain) {
        report.problems.push(problem.to_string());
        return;
    }
    let asked = Instant::now();
    match template(&rpc).await {
        Ok(template) => report.facts.push(format!(
            "template for height {} with {} transactions, {} sat to the coinbase, bits {:08x}, in {} ms",
            template.height,
            template.transactions.len(),
            template.coinbase_value,
            template.bits.to_consensus(),
            asked.elapsed().as_millis()
        )),
        Err(e) => report.problems.push(format!("getblocktemplate: {e}")),
    }
}
