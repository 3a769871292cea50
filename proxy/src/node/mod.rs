//! The operator's own Bitcoin node as a pool: Stratum work built from its
//! `getblocktemplate`, and the block a solved share stands for, assembled
//! with the `bitcoin` crate for `submitblock`.
//!
//! - [`template`]: a `getblocktemplate` answer, read and checked.
//! - [`work`]: the coinbase (BIP 34 height, tag, extranonce, payout, witness
//!   commitment), the merkle branch, the `mining.notify`, and the block.
//! - [`rpc`]: the JSON-RPC client that asks the node.
//!
//! The pool backend that polls the node and submits blocks
//! (`pool::node`) builds on these; the share path and switching are the
//! same as for any pool.

pub mod rpc;
pub mod template;
pub mod work;

use std::str::FromStr;

use bitcoin::{Address, Network, ScriptBuf};

pub use template::{Template, TemplateError};
pub use work::{NodeWork, WorkError, WorkSpec};

/// Why a payout address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// It is not an address at all.
    #[error("{address:?} is not a bitcoin address: {reason}")]
    Malformed {
        /// What was given.
        address: String,
        /// The parser's message.
        reason: String,
    },
    /// It is an address of another network.
    #[error("{address:?} is not an address of {network}")]
    WrongNetwork {
        /// What was given.
        address: String,
        /// The chain the node runs.
        network: Network,
    },
}

/// Returns the output script paying `address`, which must belong to
/// `network`.
pub fn payout_script(address: &str, network: Network) -> Result<ScriptBuf, PayoutError> {
    let parsed = Address::from_str(address).map_err(|e| PayoutError::Malformed {
        address: address.to_owned(),
        reason: e.to_string(),
    })?;
    let checked = parsed
        .require_network(network)
        .map_err(|_| PayoutError::WrongNetwork {
            address: address.to_owned(),
            network,
        })?;
    Ok(checked.script_pubkey())
}
