//! The decentralization policy engine: which pool each miner mines for, now.
//!
//! Pure, synchronous and deterministic: the proxy's policy task feeds the
//! [`Engine`] observations (work credited per miner and pool, miners joining
//! and leaving, pools going up and down) with the time passed in, and
//! publishes the [`Assignment`] it plans. No sockets, no clock reads.
//!
//! Modules: [`units`] (time, work, ids), [`parse`] (durations and
//! hashrates), [`diag`] (TOML problems with path and line), [`config`]
//! (`[policy]` and `[[pool]]` with validation), [`estimate`] (per-miner
//! hashrate EWMA), [`allocate`] (target shares by capped water filling),
//! [`ledger`] (who mined where over the window), `margin` (how far below
//! its cap each pool is held for the noise of the estimates), `need` (what
//! each pool needs from the next plan), [`engine`] (realising the targets
//! with whole miners and time slices) and [`assignment`] (the plan it
//! publishes), and [`sim`] with [`fleet`] (the deterministic simulator
//! behind `hashsplit simulate`).

#![forbid(unsafe_code)]

pub mod allocate;
pub mod assignment;
pub mod config;
pub mod diag;
pub mod engine;
pub mod estimate;
pub mod fleet;
pub mod ledger;
mod margin;
mod need;
pub mod parse;
pub mod sim;
pub mod units;

pub use assignment::{Assignment, PoolPlan};
pub use config::{
    Chain, NodeConfig, OnInfeasible, Policy, PolicyConfig, PoolConfig, PoolTls, PoolUrl, Scheme,
};
pub use diag::{ConfigError, Diagnostics, Problem};
pub use engine::{Engine, Observation};
pub use fleet::Fleet;
pub use sim::{SimOptions, SimReport, simulate};
pub use units::{Hashrate, Instant, MinerId, PoolId, Ratio, Work};
