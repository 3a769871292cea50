//! The engine's output: which pool each miner mines for, and the per-pool
//! figures the proxy logs and exports.

use std::collections::HashMap;

use crate::config::OnInfeasible;
use crate::units::{Hashrate, Instant, MinerId, PoolId, Ratio};

/// One pool's row of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
    /// The pool.
    pub pool: PoolId,
    /// Its name from the TOML file.
    pub name: String,
    /// Its configured cap.
    pub cap: Ratio,
    /// The share the engine aims for, in [0, 1]: its weight's share, held
    /// `margin` below the cap where the cap binds.
    pub target: f64,
    /// The most the engine lets it have by its own accounting: the cap less
    /// `margin`, or more where the caps cannot be met (see
    /// [`OnInfeasible`]).
    pub limit: f64,
    /// How far below the cap the engine holds the pool for the noise of its
    /// hashrate estimates: shrinks as they mature, and only as large as the
    /// other pools' caps leave room for (0 when the caps are tight).
    pub margin: f64,
    /// Its share of the work delivered over the last window, as the engine
    /// estimates it (time on the pool × each miner's hashrate estimate).
    pub delivered: f64,
    /// Whether it can take work.
    pub healthy: bool,
    /// Whether it is avoided for being above `max_network_share`.
    pub avoided: bool,
    /// Miners assigned to it now.
    pub miners: usize,
    /// Estimated hashrate of the miners assigned to it now.
    pub hashrate: Hashrate,
    /// Miners moved onto it since the engine started.
    pub switches: u64,
}

/// A plan: miner → pool, plus one [`PoolPlan`] per pool in file order.
///
/// The proxy publishes it behind an `Arc` on a watch channel; sessions look
/// up their miner with [`Assignment::pool_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// When it was planned.
    pub at: Instant,
    /// One row per pool, indexed by [`PoolId`].
    pub pools: Vec<PoolPlan>,
    /// Whether the healthy pools' caps can take all the hashrate.
    pub feasible: bool,
    /// What the engine does about it when they cannot.
    pub on_infeasible: OnInfeasible,
    /// The pool named to take what the caps cannot (it does so while
    /// healthy, before `on_infeasible` applies).
    pub fallback: Option<PoolId>,
    /// How much the healthy pools' caps fall short of 1 (0 when feasible).
    pub shortfall: f64,
    /// Whether pools above `max_network_share` are used because the others
    /// cannot take all the hashrate.
    pub network_fallback: bool,
    /// Miners moved between pools since the engine started.
    pub switches: u64,
    /// Each assigned miner's pool and hashrate estimate.
    pub(crate) miners: HashMap<MinerId, (PoolId, Hashrate)>,
}

impl Assignment {
    /// Returns the pool `miner` should mine for, or `None` if it is unknown
    /// or no pool is healthy.
    pub fn pool_for(&self, miner: MinerId) -> Option<PoolId> {
        self.miners.get(&miner).map(|&(pool, _)| pool)
    }

    /// Returns every assigned miner with its pool, in no particular order.
    pub fn miners(&self) -> impl Iterator<Item = (MinerId, PoolId)> + '_ {
        self.miners.iter().map(|(&m, &(p, _))| (m, p))
    }

    /// Returns every assigned miner with its pool and the engine's estimate
    /// of its hashrate, in no particular order.
    pub fn miner_rates(&self) -> impl Iterator<Item = (MinerId, PoolId, Hashrate)> + '_ {
        self.miners.iter().map(|(&m, &(p, rate))| (m, p, rate))
    }

    /// Returns how many miners are assigned.
    pub fn miner_count(&self) -> usize {
        self.miners.len()
    }
}
