//! The engine: observations in, a plan (miner → pool) out.
//!
//! Each plan looks at the work already in the window and what the miners
//! will deliver before the next plan, and moves miners from pools that have
//! more than their target to pools that have less, biggest need first, never
//! moving a miner that arrived less than `min_dwell` ago unless its pool
//! failed.
//!
//! Why it holds caps below one-miner granularity: what a pool needs until
//! the next plan is worked out from its window (see `need`): during a first
//! window, its budget for that window; afterwards, mostly the work leaving
//! the back of its window, so a time-sliced miner repeats its slices one
//! window later and every window holds close to the same split. A lone
//! miner therefore takes long slices (about 200 s on each of three pools
//! over ten minutes) rather than rotating quickly. When the targets change
//! (a pool fails or comes back) a new first window begins, and a guard
//! keeps the window ending at the next plan under every pool's limit.
//!
//! Each pool's limit is its cap less a margin for the noise of the
//! hashrate estimates behind that accounting (see `margin`), where the caps
//! leave room for it; the margin shrinks as the estimates mature.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::allocate::{self, PoolInput, Targets};
use crate::assignment::{Assignment, PoolPlan};
use crate::config::Policy;
use crate::estimate::{HashrateEstimate, pool_similar};
use crate::ledger::Trail;
use crate::margin::{self, Run, Valuation};
use crate::need::{Lookahead, WantInputs, wants};
use crate::units::{Hashrate, Instant, MinerId, PoolId};

mod observation;

pub use observation::Observation;

#[derive(Debug, Clone)]
struct MinerState {
    estimate: HashrateEstimate,
    present: bool,
    /// Pool it mines for now.
    pool: Option<PoolId>,
    /// Pool it mined for last, kept while it has none, to count switches.
    last_pool: Option<PoolId>,
    /// When it arrived on `pool`.
    since: Instant,
    /// Hashrate frozen when it left, to value its trail, and its relative
    /// error.
    left_rate: f64,
    left_error: f64,
    trail: Trail,
}

/// The policy engine. Pools start down until a [`Observation::PoolUp`].
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Arc<Policy>,
    healthy: Vec<bool>,
    miners: BTreeMap<MinerId, MinerState>,
    origin: Option<Instant>,
    /// The targets in force and since when: a change (a pool failing or
    /// coming back) starts a new first window.
    regime: Option<(Vec<f64>, Instant)>,
    switches: Vec<u64>,
}

impl Engine {
    /// Returns an engine for `policy` with every pool down and no miners.
    pub fn new(policy: impl Into<Arc<Policy>>) -> Self {
        let policy = policy.into();
        let pools = policy.pools.len();
        Engine {
            policy,
            healthy: vec![false; pools],
            miners: BTreeMap::new(),
            origin: None,
            regime: None,
            switches: vec![0; pools],
        }
    }

    /// Returns the policy the engine runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs `policy` from the next plan on, keeping what the engine knows:
    /// miners, their estimates and placements, the work in the window and
    /// pool health. New caps or weights start a new first window, as any
    /// change of targets does. The pools must be the same ones in the same
    /// order (a [`PoolId`] names the same pool before and after), with new
    /// pools after them, down until a [`Observation::PoolUp`]; otherwise
    /// nothing changes and the policy is given back.
    pub fn reconfigure(&mut self, policy: impl Into<Arc<Policy>>) -> Result<(), Arc<Policy>> {
        let policy = policy.into();
        let same_pools = policy.pools.len() >= self.policy.pools.len()
            && policy
                .pools
                .iter()
                .zip(&self.policy.pools)
                .all(|(new, old)| new.name == old.name);
        if !same_pools {
            return Err(policy);
        }
        self.healthy.resize(policy.pools.len(), false);
        self.switches.resize(policy.pools.len(), 0);
        self.policy = policy;
        Ok(())
    }

    /// Takes in one observation made at `now`.
    pub fn observe(&mut self, observation: Observation, now: Instant) {
        self.origin.get_or_insert(now);
        // Hashrates of real machines hardly change, so the estimate may
        // average over several windows; its noise is what limits how close
        // to a cap the split can be held.
        let tau = self.policy.config.window.saturating_mul(3);
        match observation {
            Observation::Work { miner, work, .. } => {
                let state = self
                    .miners
                    .entry(miner)
                    .or_insert_with(|| new_miner(now, tau));
                if state.present {
                    state.estimate.record(work, now);
                }
            }
            Observation::MinerJoined { miner } => {
                let state = self
                    .miners
                    .entry(miner)
                    .or_insert_with(|| new_miner(now, tau));
                if !state.present {
                    state.present = true;
                    state.estimate = HashrateEstimate::new(now, tau);
                }
            }
            Observation::MinerLeft { miner } => {
                if let Some(state) = self.miners.get_mut(&miner) {
                    state.left_rate = rate_of(&state.estimate, now).unwrap_or(0.0);
                    state.left_error = state.estimate.relative_error(now);
                    state.present = false;
                    state.pool = None;
                    state.trail.stop(now);
                }
            }
            Observation::PoolUp { pool } => {
                if let Some(healthy) = self.healthy.get_mut(pool.0) {
                    *healthy = true;
                }
            }
            Observation::PoolDown { pool } => {
                if let Some(healthy) = self.healthy.get_mut(pool.0) {
                    *healthy = false;
                }
                for state in self.miners.values_mut() {
                    if state.pool == Some(pool) {
                        state.pool = None;
                        state.trail.stop(now);
                    }
                }
            }
        }
    }

    /// Plans which pool each present miner mines for from `now` on.
    ///
    /// The same observations and times give the same plan.
    pub fn plan(&mut self, now: Instant) -> Assignment {
        let origin = *self.origin.get_or_insert(now);
        let policy = Arc::clone(&self.policy);
        let config = &policy.config;
        let window = config.window;
        let tick = config.rebalance_every;
        self.forget(now.saturating_sub(window));
        let (rates, valuations) = self.rates(now);
        let margins = self.margins(&rates, &valuations, now.saturating_sub(window), now);
        // The regime follows the targets the configuration and pool health
        // give; the margins drift with every estimate and are no change of
        // regime.
        let plain = self.targets(&vec![0.0; margins.len()]);
        let targets = self.targets(&margins);

        let fleet: f64 = self
            .miners
            .iter()
            .filter(|(_, s)| s.present)
            .map(|(id, _)| rates[id])
            .sum();
        let first_window_end = origin + window;
        // After the targets change, what the window holds from before says
        // nothing about the new split: replaying it would replay a failed
        // pool's outage one window later. The first window under the new
        // targets is planned as one budget, like the very first window.
        let since = match &self.regime {
            Some((before, since)) if same_targets(before, &plain.target) => *since,
            _ => {
                self.regime = Some((plain.target, now));
                now
            }
        };
        let budget_end = since + window;
        let warm_up = now + tick <= budget_end;
        let horizon = if warm_up { budget_end - now } else { tick };
        let now_window = self.work_between(&rates, now.saturating_sub(window), now);
        let end_window = self.work_between(&rates, (now + horizon).saturating_sub(window), now);
        // After an outage the budget of the new first window does not see
        // the older work still in the sliding window, so every plan past the
        // run's first window also keeps the window ending at the next plan
        // under each pool's limit.
        let next_window = (now + tick > first_window_end)
            .then(|| self.work_between(&rates, (now + tick).saturating_sub(window), now));
        let wants = wants(&WantInputs {
            targets: &targets,
            now_window: &now_window,
            end_window: &end_window,
            fleet,
            horizon,
            correct_over: config.min_dwell.max(tick),
            first_window: warm_up,
            guard: next_window.as_deref().map(|next| (next, tick)),
        });
        // A miner that moves is pinned for min_dwell,
        // so check where its pool's share will be by then, not just at the
        // next plan: a big miner dropped on a pool that needs a little would
        // otherwise push it over its cap for the whole dwell.
        // Windows that end before the first full one are not held to caps,
        // so the check starts once a dwell reaches past it.
        let dwell = config.min_dwell.max(tick);
        let lookahead = (now + dwell >= first_window_end).then(|| {
            let known = self.work_between(&rates, (now + dwell).saturating_sub(window), now);
            Lookahead {
                known_total: known.iter().sum(),
                known,
                dwell: dwell.as_secs_f64(),
                fleet,
                limit: targets.limit.clone(),
                on: vec![0.0; targets.limit.len()],
            }
        });
        self.assign(now, &rates, wants, &targets, horizon, lookahead);
        self.assignment(now, &rates, &targets, &now_window)
    }

    /// Returns the targets, each pool held `margins` below its cap as far
    /// as the caps leave room.
    fn targets(&self, margins: &[f64]) -> Targets {
        let fallback = self.policy.fallback();
        let inputs: Vec<PoolInput> = self
            .policy
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| PoolInput {
                healthy: self.healthy[i],
                weight: pool.weight,
                cap: self.policy.cap(PoolId(i)).get(),
                network_share: pool.network_share.map(|s| s.get()),
                margin: margins[i],
                fallback: fallback == Some(PoolId(i)),
            })
            .collect();
        allocate::targets(
            &inputs,
            self.policy.config.max_network_share.map(|r| r.get()),
            self.policy.config.on_infeasible,
        )
    }

    /// Drops what happened before `before` and miners gone since then.
    fn forget(&mut self, before: Instant) {
        self.miners.retain(|_, state| {
            state.trail.forget_before(before);
            state.present || !state.trail.is_empty()
        });
    }

    /// Returns each miner's hashrate in hashes per second: the estimate for
    /// present miners, pooled with those it cannot be told apart from (the
    /// fleet's mean while a miner has none yet), the rate at leaving for the
    /// others. With it, how far each rate may be off (see `margin`).
    fn rates(&self, now: Instant) -> (HashMap<MinerId, f64>, HashMap<MinerId, Valuation>) {
        let mut known_ids = Vec::new();
        let mut known = Vec::new();
        for (&id, state) in &self.miners {
            if let (true, Some(rate)) = (state.present, rate_of(&state.estimate, now)) {
                known_ids.push(id);
                known.push((rate, state.estimate.relative_error(now)));
            }
        }
        let fill = if known.is_empty() {
            1.0
        } else {
            known.iter().map(|k| k.0).sum::<f64>() / known.len() as f64
        };
        let pooled = pool_similar(&known);
        let guessed = pooled.iter().map(|p| p.run + 1).max().unwrap_or(0);
        let mut rates = HashMap::new();
        let mut valuations = HashMap::new();
        for ((id, p), &(own, own_error)) in known_ids.into_iter().zip(pooled).zip(&known) {
            rates.insert(id, p.rate);
            // As far from the run's rate as its own estimate is, give or
            // take the part of its noise the run does not share.
            let off = (own - p.rate) / p.rate;
            let unshared = (own_error.powi(2) - p.error.powi(2)).max(0.0);
            let valuation = Valuation {
                run: Run::Pooled(p.run),
                error: p.error,
                apart: (off.powi(2) + unshared).sqrt(),
            };
            valuations.insert(id, valuation);
        }
        for (&id, state) in &self.miners {
            if rates.contains_key(&id) {
                continue;
            }
            let (rate, valuation) = if state.present {
                // The fleet's mean says nothing about this machine.
                let run = Run::Pooled(guessed);
                let error = 0.0;
                (
                    fill,
                    Valuation {
                        run,
                        error,
                        apart: 1.0,
                    },
                )
            } else {
                let run = Run::Left(id);
                let error = state.left_error;
                (
                    state.left_rate,
                    Valuation {
                        run,
                        error,
                        apart: 0.0,
                    },
                )
            };
            rates.insert(id, rate);
            valuations.insert(id, valuation);
        }
        (rates, valuations)
    }

    /// Returns how far below its cap to hold each pool for the noise of
    /// the estimates that value the work of `(from, to]`.
    fn margins(
        &self,
        rates: &HashMap<MinerId, f64>,
        valuations: &HashMap<MinerId, Valuation>,
        from: Instant,
        to: Instant,
    ) -> Vec<f64> {
        let pools = self.healthy.len();
        let valued: Vec<(Valuation, Vec<f64>)> = self
            .miners
            .iter()
            .map(|(id, state)| {
                let mut work = vec![0.0; pools];
                state.trail.add_work(rates[id], from, to, &mut work);
                (valuations[id], work)
            })
            .collect();
        margin::margins(pools, &valued)
    }

    /// Returns the work each pool received within `(from, to]`.
    fn work_between(&self, rates: &HashMap<MinerId, f64>, from: Instant, to: Instant) -> Vec<f64> {
        let mut work = vec![0.0; self.healthy.len()];
        for (id, state) in &self.miners {
            state.trail.add_work(rates[id], from, to, &mut work);
        }
        work
    }

    /// Moves miners so each pool gets close to what it wants over `horizon`.
    fn assign(
        &mut self,
        now: Instant,
        rates: &HashMap<MinerId, f64>,
        mut want: Vec<f64>,
        targets: &Targets,
        horizon: Duration,
        mut lookahead: Option<Lookahead>,
    ) {
        let policy = Arc::clone(&self.policy);
        let config = &policy.config;
        let tick = config.rebalance_every.as_secs_f64();
        let horizon = horizon.as_secs_f64();
        let usable: Vec<bool> = (0..want.len())
            .map(|i| self.healthy[i] && targets.target[i] > 0.0)
            .collect();
        let mut movable = Vec::new();
        let mut placing = Vec::new();
        for (&id, state) in &self.miners {
            if !state.present {
                continue;
            }
            match state.pool {
                Some(pool) if usable[pool.0] && now - state.since < config.min_dwell => {
                    want[pool.0] -= rates[&id] * horizon;
                    if let Some(look) = lookahead.as_mut() {
                        look.on[pool.0] += rates[&id];
                    }
                }
                Some(_) => movable.push(id),
                None => placing.push(id),
            }
        }
        // Miners settled longest stay first, so the same few miners do the
        // time slicing and the rest are left alone.
        movable.sort_by_key(|id| (self.miners[id].since, *id));
        for id in movable {
            let pool = self.miners[&id].pool.map(|p| p.0);
            let rate = rates[&id];
            match pool {
                Some(p) if usable[p] && want[p] >= rate * tick / 2.0 => {
                    want[p] -= rate * horizon;
                    if let Some(look) = lookahead.as_mut() {
                        look.on[p] += rate;
                    }
                }
                _ => placing.push(id),
            }
        }
        // Biggest first: the large pieces go where the need is largest, the
        // small ones fill in behind them.
        placing.sort_by(|a, b| rates[b].total_cmp(&rates[a]).then(a.cmp(b)));
        for id in placing {
            let rate = rates[&id];
            let current = self.miners[&id].pool.filter(|p| usable[p.0]);
            let mut candidates: Vec<usize> = (0..want.len()).filter(|&i| usable[i]).collect();
            candidates.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
            // Plans are a tick apart, so a slice can end up to a tick late:
            // one tick of this miner is the finest the split can be held to.
            let fits = |pool: usize| {
                lookahead
                    .as_ref()
                    .is_none_or(|look| look.excess(pool, rate) <= look.share_of(rate * tick))
            };
            // The neediest pool that stays under its limit for the dwell, or
            // the one it overshoots least.
            let best = candidates.iter().copied().find(|&i| fits(i)).or_else(|| {
                candidates.iter().copied().min_by(|&a, &b| {
                    let excess = |i| lookahead.as_ref().map_or(0.0, |l| l.excess(i, rate));
                    excess(a).total_cmp(&excess(b))
                })
            });
            let choice = match (current, best) {
                (Some(cur), Some(best))
                    if fits(cur.0) && want[best] - want[cur.0] < rate * tick / 2.0 =>
                {
                    Some(cur)
                }
                (_, best) => best.map(PoolId),
            };
            if let Some(pool) = choice {
                want[pool.0] -= rate * horizon;
                if let Some(look) = lookahead.as_mut() {
                    look.on[pool.0] += rate;
                }
            }
            self.move_miner(id, choice, now);
        }
    }

    fn move_miner(&mut self, id: MinerId, to: Option<PoolId>, now: Instant) {
        let Some(state) = self.miners.get_mut(&id) else {
            return;
        };
        if state.pool == to {
            return;
        }
        match to {
            Some(pool) => {
                if state.last_pool.is_some_and(|last| last != pool) {
                    self.switches[pool.0] += 1;
                }
                state.trail.start(pool, now);
                state.last_pool = Some(pool);
            }
            None => state.trail.stop(now),
        }
        state.pool = to;
        state.since = now;
    }

    fn assignment(
        &self,
        now: Instant,
        rates: &HashMap<MinerId, f64>,
        targets: &Targets,
        window_work: &[f64],
    ) -> Assignment {
        let total: f64 = window_work.iter().sum();
        let mut miners = HashMap::new();
        let mut counts = vec![(0usize, 0.0f64); self.healthy.len()];
        for (&id, state) in &self.miners {
            if let (true, Some(pool)) = (state.present, state.pool) {
                miners.insert(id, (pool, Hashrate::from_hashes_per_sec(rates[&id])));
                counts[pool.0].0 += 1;
                counts[pool.0].1 += rates[&id];
            }
        }
        let pools = self
            .policy
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| PoolPlan {
                pool: PoolId(i),
                name: pool.name.clone(),
                cap: self.policy.cap(PoolId(i)),
                target: targets.target[i],
                limit: targets.limit[i],
                margin: targets.margin[i],
                delivered: if total > 0.0 {
                    window_work[i] / total
                } else {
                    0.0
                },
                healthy: self.healthy[i],
                avoided: targets.avoided[i],
                miners: counts[i].0,
                hashrate: Hashrate::from_hashes_per_sec(counts[i].1),
                switches: self.switches[i],
            })
            .collect();
        Assignment {
            at: now,
            pools,
            feasible: targets.feasible,
            on_infeasible: self.policy.config.on_infeasible,
            fallback: self.policy.fallback(),
            shortfall: targets.shortfall,
            network_fallback: targets.network_fallback,
            switches: self.switches.iter().sum(),
            miners,
        }
    }
}

fn same_targets(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

fn new_miner(now: Instant, tau: Duration) -> MinerState {
    MinerState {
        estimate: HashrateEstimate::new(now, tau),
        present: true,
        pool: None,
        last_pool: None,
        since: now,
        left_rate: 0.0,
        left_error: 0.0,
        trail: Trail::default(),
    }
}

fn rate_of(estimate: &HashrateEstimate, now: Instant) -> Option<f64> {
    estimate.rate(now).map(Hashrate::as_hashes_per_sec)
}

#[cfg(test)]
mod tests;
