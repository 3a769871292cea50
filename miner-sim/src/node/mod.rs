//! A simulated Bitcoin Core node for the own-node pool's tests: its chain
//! and mempool ([`TestChain`]), checking every submitted block with the
//! `bitcoin` crate.

mod chain;

pub use chain::{REGTEST_BITS, Rejection, TestChain};
