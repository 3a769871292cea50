//! The node's poller: its own task, so a slow `getblocktemplate` never
//! holds up a block on its way to `submitblock`.
//!
//! It first checks the node is on the configured chain and synced, then
//! asks for the best block hash every [`POLL_EVERY`] and for a template
//! when the tip moves or `refresh` has passed (fees). Every template, or
//! the failure that ends the link, goes to the backend over a channel.

use std::time::Duration;

use hashsplit_policy::Chain;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use super::{NodeError, POLL_EVERY};
use crate::node::Template;
use crate::node::rpc::RpcClient;

/// What the poller hands the backend.
pub(super) type Polled = Result<Template, NodeError>;

/// What `getblockchaininfo` says that matters to a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// `chain`: main, test, testnet4, signet, regtest.
    pub chain: String,
    /// Blocks the node has validated.
    pub blocks: u64,
    /// Headers it knows.
    pub headers: u64,
    /// Whether it is in initial block download.
    pub initial_block_download: bool,
}

impl ChainInfo {
    /// Reads a `getblockchaininfo` result.
    pub fn from_json(value: &Value) -> Result<ChainInfo, NodeError> {
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| NodeError::Info(format!("no {name}")))
        };
        Ok(ChainInfo {
            chain: field("chain")?
                .as_str()
                .ok_or_else(|| NodeError::Info("chain is not a string".into()))?
                .to_owned(),
            blocks: field("blocks")?
                .as_u64()
                .ok_or_else(|| NodeError::Info("blocks is not a number".into()))?,
            headers: field("headers")?
                .as_u64()
                .ok_or_else(|| NodeError::Info("headers is not a number".into()))?,
            initial_block_download: field("initialblockdownload")?
                .as_bool()
                .ok_or_else(|| NodeError::Info("initialblockdownload is not a bool".into()))?,
        })
    }

    /// Returns why the node cannot be mined on `chain` now, if it cannot.
    pub fn unusable(&self, chain: Chain) -> Option<NodeError> {
        if self.chain != chain.as_str() {
            return Some(NodeError::WrongChain {
                expected: chain,
                got: self.chain.clone(),
            });
        }
        if self.initial_block_download {
            return Some(NodeError::Syncing {
                blocks: self.blocks,
                headers: self.headers,
            });
        }
        None
    }
}

/// Asks the node for its chain and sync state.
pub async fn chain_info(rpc: &RpcClient) -> Result<ChainInfo, NodeError> {
    ChainInfo::from_json(&rpc.call("getblockchaininfo", json!([])).await?)
}

/// Asks the node for a segwit block template and checks it.
pub async fn template(rpc: &RpcClient) -> Result<Template, NodeError> {
    let value = rpc
        .call("getblocktemplate", json!([{"rules": ["segwit"]}]))
        .await?;
    Ok(Template::from_json(&value)?)
}

/// Polls until `stop`, the backend goes, or the node fails (the failure is
/// the last thing sent).
pub(super) async fn run(
    rpc: RpcClient,
    chain: Chain,
    refresh: Duration,
    out: mpsc::Sender<Polled>,
    stop: CancellationToken,
) {
    let polling = async {
        let info = chain_info(&rpc).await?;
        if let Some(problem) = info.unusable(chain) {
            return Err(problem);
        }
        let mut tip = String::new();
        let mut fetched = Instant::now();
        let mut tick = interval(POLL_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let best = rpc.call("getbestblockhash", json!([])).await?;
            let best = best.as_str().unwrap_or_default().to_owned();
            if best != tip || fetched.elapsed() >= refresh {
                let template = template(&rpc).await?;
                tip = best;
                fetched = Instant::now();
                if out.send(Ok(template)).await.is_err() {
                    return Ok(());
                }
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        ended = polling => {
            if let Err(reason) = ended {
                let _ = out.send(Err(reason)).await;
            }
        }
    }
}
