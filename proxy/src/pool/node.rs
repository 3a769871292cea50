//! The node backend: the operator's own Bitcoin Core as a pool.
//!
//! A poller ([`poll`]) asks the node for its best block hash every
//! [`POLL_EVERY`] (so a new tip is noticed well within a second) and for a
//! template on a new tip and every `template_refresh` (for fees). Each
//! template becomes [`NodeWork`] and is published like a pool's job,
//! translated for every miner layout: the same hidden-extranonce switching
//! and the same validation as for any pool. A new tip starts a new epoch
//! (clean jobs), so shares for the old one are stale.
//!
//! The pool's difficulty is the network's: a share below it is credited by
//! the session and never reaches the backend; one that meets it is a block
//! candidate, comes through the block queue, and is assembled and sent
//! with `submitblock` at once ([`submit`]).

mod poll;
mod submit;

pub use poll::{ChainInfo, chain_info, template};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::Network;
use hashsplit_policy::{Chain, NodeConfig};
use hashsplit_stratum::Difficulty;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::backend::{Ended, LinkError, stop_requested};
use super::owner::Pool;
use crate::jobs::{PoolExtranonce, PoolJob};
use crate::node::rpc::{RpcAuth, RpcClient, RpcError};
use crate::node::{NodeWork, PayoutError, Template, TemplateError, WorkError, WorkSpec};

/// How often the best block hash is asked for.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest a call to the node may take: a template of a full mempool takes
/// Core a moment, a dead node must not hold the pool up for long.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Templates whose shares can still be turned into blocks.
const KEPT_WORKS: usize = 16;
/// Bytes of the proxy's own prefix in the coinbase: two proxies on one
/// node never build the same coinbase.
const EXTRANONCE1_SIZE: usize = 4;

/// Why a node cannot be mined.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A call failed (unreachable, refused login, an RPC error).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The node runs another chain than the config says.
    #[error("the node runs chain {got:?}, the config says {expected}")]
    WrongChain {
        /// The configured chain.
        expected: Chain,
        /// What `getblockchaininfo` said.
        got: String,
    },
    /// The node is still syncing: its templates would be for an old tip.
    #[error(
        "the node is still syncing (blocks {blocks}, headers {headers}, initial block download)"
    )]
    Syncing {
        /// Blocks it has.
        blocks: u64,
        /// Headers it knows.
        headers: u64,
    },
    /// `getblockchaininfo` did not say what it must.
    #[error("getblockchaininfo answer unreadable: {0}")]
    Info(String),
    /// The template is not usable.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Work could not be built from it.
    #[error(transparent)]
    Work(#[from] WorkError),
    /// The payout address is not one of the node's chain.
    #[error(transparent)]
    Payout(#[from] PayoutError),
}

/// Returns the `bitcoin` network of a configured chain.
pub fn network(chain: Chain) -> Network {
    match chain {
        Chain::Main => Network::Bitcoin,
        Chain::Test => Network::Testnet,
        Chain::Testnet4 => Network::Testnet4,
        Chain::Signet => Network::Signet,
        Chain::Regtest => Network::Regtest,
    }
}

/// Returns the RPC client for a node pool's entry.
pub fn client(
    url: &hashsplit_policy::PoolUrl,
    user: &str,
    password: &str,
    node: &NodeConfig,
) -> RpcClient {
    let auth = match &node.cookie_file {
        Some(path) => RpcAuth::Cookie(path.clone()),
        None => RpcAuth::Password {
            user: user.to_owned(),
            password: password.to_owned(),
        },
    };
    RpcClient::new(&url.host, url.port, auth, RPC_TIMEOUT)
}

/// One template published as work.
struct Published {
    job_id: Arc<str>,
    work: Arc<NodeWork>,
}

/// The state of one run of the backend.
struct Link {
    rpc: RpcClient,
    spec: WorkSpec,
    /// What the miners' coinbases are built on: `spec`'s prefix and size.
    extranonce: PoolExtranonce,
    /// Newest last.
    works: VecDeque<Published>,
    /// The best block as last known (from a template, or a block of ours
    /// the node accepted): work on anything else is stale.
    tip: Option<bitcoin::BlockHash>,
    /// The lowest height a template may have: a template fetched before
    /// the node took a block of ours (or a newer template) is out of date.
    floor: u64,
    next_job: u64,
    healthy: bool,
}

/// Runs the node backend for `node` (the pool's node settings) until the
/// node fails or the pool stops.
pub(super) async fn run(up: &mut Pool, node: NodeConfig) -> Ended {
    let payout = match crate::node::payout_script(&node.payout_address, network(node.chain)) {
        Ok(script) => script,
        Err(e) => return lost(NodeError::Payout(e), false),
    };
    let rpc = client(&up.entry.url, &up.entry.user, &up.entry.password, &node);
    let extranonce2_size = up
        .layouts
        .all()
        .iter()
        .map(|l| l.extranonce1_size + l.extranonce2_size)
        .max()
        .unwrap_or(8)
        .max(8);
    let prefix: [u8; EXTRANONCE1_SIZE] = rand::random();
    let spec = WorkSpec {
        payout,
        tag: node.coinbase_tag.as_bytes().to_vec(),
        extranonce1: prefix.to_vec(),
        extranonce2_size,
    };
    let mut link = Link {
        rpc: rpc.clone(),
        extranonce: PoolExtranonce {
            extranonce1: spec.extranonce1.clone(),
            extranonce2_size,
        },
        spec,
        works: VecDeque::new(),
        tip: None,
        floor: 0,
        next_job: 0,
        healthy: false,
    };
    let (templates_tx, mut templates) = mpsc::channel(4);
    let poller = up.shutdown.child_token();
    let _stop_poller = poller.clone().drop_guard();
    tokio::spawn(poll::run(
        rpc,
        node.chain,
        node.template_refresh,
        templates_tx,
        poller,
    ));
    info!(pool = %up.name, node = %up.entry.url, chain = %node.chain, "polling the node for templates");
    let mut layouts = up.layouts.watch();
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&up.shutdown, up.retire_at) => {
                return Ended::Stopped;
            }
            // A block waits for nothing: no template fetch, no other share.
            Some(share) = up.blocks.recv() => link.take_share(up, share).await,
            Some(share) = up.shares.recv() => link.take_share(up, share).await,
            polled = templates.recv() => match polled {
                Some(Ok(template)) => {
                    if let Err(reason) = link.on_template(up, template) {
                                return lost(reason, link.healthy);
                    }
                }
                Some(Err(reason)) => {
                        return lost(reason, link.healthy);
                }
                None => {
                        return Ended::Stopped;
                }
            },
            Ok(()) = layouts.changed() => link.republish(up),
            Ok(()) = up.desired.changed() => {
                if up.take_desired() {
                    info!(pool = %up.name, "the node's url, login or settings were reloaded: starting over");
                        return Ended::Lost {
                        reason: LinkError::Reloaded,
                        healthy: true,
                        wait: Some(Duration::ZERO),
                    };
                }
            }
        }
    }
}

fn lost(reason: NodeError, healthy: bool) -> Ended {
    Ended::Lost {
        reason: LinkError::Node(reason),
        healthy,
        wait: None,
    }
}

impl Link {
    /// Turns a template into work and publishes it: a new epoch (clean
    /// jobs) when it builds on a new tip.
    fn on_template(&mut self, up: &Pool, template: Template) -> Result<(), NodeError> {
        if template.height < self.floor {
            // Fetched before a newer tip was known: out of date already.
            return Ok(());
        }
        self.floor = template.height;
        self.tip = Some(template.prev_blockhash);
        let new_tip = self
            .works
            .back()
            .is_none_or(|last| last.work.template().prev_blockhash != template.prev_blockhash);
        let height = template.height;
        let work = Arc::new(NodeWork::new(template, &self.spec)?);
        self.next_job += 1;
        let job_id: Arc<str> = Arc::from(format!("n{:x}", self.next_job));
        if self.works.len() == KEPT_WORKS {
            self.works.pop_front();
        }
        self.works.push_back(Published {
            job_id: Arc::clone(&job_id),
            work,
        });
        let epoch = up.state().epoch + u64::from(new_tip);
        let Some(jobs) = self.translate(up, epoch, new_tip) else {
            return Ok(());
        };
        if new_tip {
            info!(pool = %up.name, height, "new tip: new work for every miner on the node");
        }
        up.series.job_received();
        let mask = up.version_mask;
        up.publish(|state| {
            state.epoch = epoch;
            state.jobs = jobs;
            state.version_mask = Some(mask);
            state.configured = true;
            state.up = true;
            true
        });
        self.healthy = true;
        Ok(())
    }

    /// Translates the newest work for every miner layout; `None` if there
    /// is no work or no layout fits (which `extranonce2_size` prevents).
    fn translate(&self, up: &Pool, epoch: u64, clean_jobs: bool) -> Option<Vec<Arc<PoolJob>>> {
        let newest = self.works.back()?;
        let mut notify = newest.work.notify(newest.job_id.to_string(), clean_jobs);
        // Bits inside the rolling mask are the miners': none of the
        // template's, so the header is the version outside it with the
        // miner's bits, as the backend rebuilds it.
        notify.version &= !up.version_mask;
        let difficulty = network_difficulty(notify.nbits);
        up.series.difficulty.set(difficulty.as_f64());
        let jobs: Vec<Arc<PoolJob>> = up
            .layouts
            .all()
            .into_iter()
            .filter_map(|layout| {
                PoolJob::translate(
                    up.id,
                    &notify,
                    &self.extranonce,
                    layout,
                    difficulty,
                    epoch,
                    &up.ids,
                )
                .map_err(|e| warn!(pool = %up.name, error = %e, "node work unusable for a layout"))
                .ok()
                .map(Arc::new)
            })
            .collect();
        (!jobs.is_empty()).then_some(jobs)
    }

    /// Publishes the newest work again for a layout that appeared.
    fn republish(&mut self, up: &Pool) {
        let epoch = up.state().epoch;
        if let Some(jobs) = self.translate(up, epoch, false) {
            up.publish(|state| {
                state.jobs = jobs;
                true
            });
        }
    }

    fn work(&self, job_id: &str) -> Option<&Arc<NodeWork>> {
        self.works
            .iter()
            .rev()
            .find(|published| &*published.job_id == job_id)
            .map(|published| &published.work)
    }
}

/// Returns the difficulty of a compact network target (through the
/// `bitcoin` crate's types: it is computed once per template).
pub fn network_difficulty(nbits: u32) -> Difficulty {
    let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(nbits));
    Difficulty::try_new(target.difficulty_float()).unwrap_or(Difficulty::ONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_difficulty_comes_from_the_compact_target() {
        assert_eq!(network_difficulty(0x1d00_ffff).as_f64(), 1.0);
        assert_eq!(network_difficulty(0x1e0f_fff0).as_f64(), 1.0 / 4096.0);
        let regtest = network_difficulty(0x207f_ffff).as_f64();
        assert!(regtest > 0.0 && regtest < 1e-9, "{regtest}");
    }
}
