//! A simulated Bitcoin Core node for the own-node pool's tests: its chain
//! and mempool ([`TestChain`]), checking every submitted block with the
//! `bitcoin` crate, and its JSON-RPC over HTTP ([`TestNode`]).

mod chain;
mod server;

pub use chain::{REGTEST_BITS, Rejection, TestChain};
pub use server::{TestNode, TestNodeConfig};
