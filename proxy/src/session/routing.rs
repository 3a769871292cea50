//! Which pool a miner mines for: starting it on a ready pool, following
//! the policy's plan, and switching with a clean job (no reconnect).

use tracing::debug;

use hashsplit_policy::PoolId;

use super::{Disconnect, Session};
use crate::extranonce::Space;
use crate::jobs::PoolState;
use crate::pool::{PoolHandle, PoolSet};

/// Returns every pool's handle for miners of `space`.
pub(super) fn handles_in(set: &PoolSet, space: Space) -> Vec<PoolHandle> {
    set.handles()
        .iter()
        .map(|handle| handle.in_space(space))
        .collect()
}

impl Session {
    /// Sends the first job once the miner is subscribed and authorized.
    pub(super) async fn start_mining(&mut self) -> Result<(), Disconnect> {
        if self.handshake.mining().is_none() || self.current.is_some() {
            return Ok(());
        }
        self.sync_pools();
        let assigned = self.assignment.borrow_and_update().pool_for(self.miner);
        let pool = assigned
            .filter(|p| self.pool_ready(*p))
            .or_else(|| self.provisional_pool());
        match pool {
            Some(pool) => self.switch_to(pool).await,
            // No pool can take work yet: the next plan or job will tell.
            None => Ok(()),
        }
    }

    /// Takes in pools a reload added (or gave a new owner).
    pub(super) fn sync_pools(&mut self) {
        if let Some(set) = self.pool_set.if_changed() {
            self.pools = handles_in(&set, self.extranonce1.space());
        }
    }

    /// Returns a pool to start on before the policy has placed the miner:
    /// the ready pool furthest below its target.
    fn provisional_pool(&self) -> Option<PoolId> {
        let plan = self.assignment.borrow();
        (0..self.pools.len())
            .map(PoolId)
            .filter(|p| self.pool_ready(*p))
            .min_by(|a, b| {
                let gap = |p: &PoolId| {
                    plan.pools
                        .get(p.index())
                        .map_or(0.0, |row| row.delivered - row.target)
                };
                gap(a).total_cmp(&gap(b))
            })
    }

    fn pool_ready(&self, pool: PoolId) -> bool {
        self.pools.get(pool.index()).is_some_and(|handle| {
            let state = handle.state();
            state.up && state.job_for(self.layout).is_some() && self.mask_fits(&state)
        })
    }

    /// Returns whether the pool takes every version bit this miner rolls.
    fn mask_fits(&self, state: &PoolState) -> bool {
        let mine = self.version_mask.unwrap_or(0);
        mine == 0 || !state.configured || mine & !state.version_mask.unwrap_or(0) == 0
    }

    /// Moves the miner to the pool the policy chose, if it changed.
    pub(super) async fn follow_assignment(&mut self) -> Result<(), Disconnect> {
        self.maybe_ask_reconnect().await?;
        self.sync_pools();
        let assigned = self.assignment.borrow_and_update().pool_for(self.miner);
        match assigned {
            Some(pool) if Some(pool) == self.current && self.pool_ready(pool) => Ok(()),
            Some(pool) if self.pool_ready(pool) => self.switch_to(pool).await,
            // The plan names no pool this miner can use now: keep it
            // hashing for a live pool rather than idle or on a dead one.
            _ if !self.current.is_some_and(|pool| self.pool_ready(pool)) => {
                match self.provisional_pool() {
                    Some(pool) if Some(pool) != self.current => self.switch_to(pool).await,
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn switch_to(&mut self, pool: PoolId) -> Result<(), Disconnect> {
        let previous = self.current.replace(pool);
        if previous.is_some() {
            let handle = &self.pools[pool.index()];
            handle.series().switches.inc();
            let name = handle.name();
            debug!(miner = %self.miner, from = ?previous, to = %name, "switching pool");
        }
        self.sent_job = None;
        let job = self.pools[pool.index()]
            .borrow_and_update()
            .job_for(self.layout)
            .cloned();
        match job {
            Some(job) => self.send_job(job, true).await,
            None => Ok(()),
        }
    }
}
