//! Simulated Stratum v1 pools and miners that behave like real ones, on
//! loopback: the test bed of every integration test, the benchmark and the
//! demo.
//!
//! - [`pool`]: [`SimPool`], a strict pool server with per-worker
//!   accounting and run-time [`Fault`]s.
//! - [`miner`]: [`SimMiner`], a miner that really hashes, with firmware
//!   [`Profile`]s (cpuminer, ASIC, strict).
//! - [`load`]: the load generator behind `miner-sim load`.
//! - [`node`]: a simulated Bitcoin Core node's chain, which checks every
//!   submitted block with the `bitcoin` crate.
//! - [`client`]: a line-level client for transcript-style tests.
//! - [`scan`]: share search, for the miner and for tests that craft shares.
//! - [`eventually`] and [`within`]: bounded waits for tests, safe under a
//!   paused tokio clock.
//!
//! Everything connects only to loopback addresses: these simulators are a
//! test bed, and fake work has no business reaching a real pool.

#![forbid(unsafe_code)]

pub mod client;
mod eventually;
pub mod load;
pub mod miner;
pub mod node;
pub mod pool;
pub mod scan;
#[cfg(test)]
mod testjob;

pub use eventually::{eventually, within};
pub use load::{LoadConfig, LoadReport, run_load, run_load_until};
pub use miner::{MinerStats, Profile, SimMiner, SimMinerConfig};
pub use pool::{
    BadDifficulty, Fault, NBITS_MAINNET, NBITS_REGTEST, PoolJob, PoolStats, SimPool, SimPoolConfig,
    WorkerStats,
};
pub use scan::{find_low_share, find_share, find_share_rolled};
