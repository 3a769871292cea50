//! The deterministic simulator behind `hashsplit simulate`: the engine on a
//! virtual clock against a [`Fleet`], with Poisson share arrivals.
//!
//! Every `rebalance_every` the simulator applies the fleet's due events,
//! asks the engine for a plan, and lets each miner hash on its pool until
//! the next tick. Shares arrive as a Poisson process at `share_rate` per
//! minute (the difficulty that rate implies, as a pool's vardiff would set
//! it), and only those noisy credits reach the engine, as in the proxy.
//!
//! The report measures what each pool really received: hashrate × time on
//! the pool, in buckets of one tick. A window is full once a whole
//! `window` of the run lies behind it; `cap_violations` counts pools whose
//! largest share over the full windows during which the caps were feasible
//! exceeded cap + [`CAP_TOLERANCE`].

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::config::Policy;
use crate::engine::{Engine, Observation};
use crate::fleet::{EventKind, Fleet};
use crate::units::{Instant, MinerId, PoolId, Work};

/// How far above its cap a pool's window share may go before it counts as
/// a violation: room for the estimate noise of share counting.
pub const CAP_TOLERANCE: f64 = 0.01;

/// How long to run and with which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Length of the run on the virtual clock.
    pub duration: Duration,
    /// Seed of the share-arrival noise.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            duration: Duration::from_secs(2 * 3600),
            seed: 1,
        }
    }
}

/// What a run delivered, per pool and overall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// One row per pool in file order.
    pub pools: Vec<PoolReport>,
    /// Machines in the fleet.
    pub miners: usize,
    /// Moves of a miner from one pool to another.
    pub switches: u64,
    /// Pools whose largest full-window share exceeded cap + 0.01 while the
    /// caps were feasible.
    pub cap_violations: usize,
    /// Time the plan was infeasible (including no pool up).
    pub infeasible_seconds: f64,
}

/// One pool's figures over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolReport {
    /// Pool name.
    pub name: String,
    /// Configured cap.
    pub cap: f64,
    /// Target share, averaged over the run.
    pub target: f64,
    /// Share of all work delivered over the run.
    pub share: f64,
    /// Largest share over any full window (0 if the run is shorter than a
    /// window).
    pub max_window_share: f64,
    /// Miners moved onto this pool.
    pub switches: u64,
    /// Whether it is the fallback pool, which takes what the other pools'
    /// caps cannot and so may exceed its own.
    pub fallback: bool,
}

/// Runs `fleet` against `policy` and returns what each pool received.
pub fn simulate(policy: &Policy, fleet: &Fleet, options: SimOptions) -> SimReport {
    let mut run = Run::new(policy, fleet, options.seed);
    let tick = policy.config.rebalance_every;
    let ticks = (options.duration.as_secs_f64() / tick.as_secs_f64()).ceil() as u64;
    for n in 0..ticks {
        run.step(Instant::from_duration(tick * n as u32), tick);
    }
    run.report(ticks)
}

struct Machine {
    id: MinerId,
    group: usize,
    hashrate: f64,
    present: bool,
}

struct Run<'a> {
    policy: &'a Policy,
    fleet: &'a Fleet,
    engine: Engine,
    rng: SplitMix64,
    machines: Vec<Machine>,
    next_event: usize,
    /// Work each pool received in each tick, and whether the tick was feasible.
    buckets: Vec<Bucket>,
    target_sum: Vec<f64>,
    switches: Vec<u64>,
}

impl<'a> Run<'a> {
    fn new(policy: &'a Policy, fleet: &'a Fleet, seed: u64) -> Self {
        let mut engine = Engine::new(policy.clone());
        let mut machines = Vec::new();
        for (group, miners) in fleet.miners.iter().enumerate() {
            let joins_later = fleet
                .events
                .iter()
                .find_map(|e| match e.kind {
                    EventKind::MinerJoin(g) if g == group => Some(true),
                    EventKind::MinerLeave(g) if g == group => Some(false),
                    _ => None,
                })
                .unwrap_or(false);
            for _ in 0..miners.count {
                machines.push(Machine {
                    id: MinerId(machines.len() as u64),
                    group,
                    hashrate: miners.hashrate.as_hashes_per_sec(),
                    present: !joins_later,
                });
            }
        }
        for pool in 0..policy.pools.len() {
            engine.observe(Observation::PoolUp { pool: PoolId(pool) }, Instant::ZERO);
        }
        for machine in machines.iter().filter(|m| m.present) {
            engine.observe(
                Observation::MinerJoined { miner: machine.id },
                Instant::ZERO,
            );
        }
        Run {
            policy,
            fleet,
            engine,
            rng: SplitMix64(seed),
            machines,
            next_event: 0,
            buckets: Vec::new(),
            target_sum: vec![0.0; policy.pools.len()],
            switches: vec![0; policy.pools.len()],
        }
    }

    fn step(&mut self, now: Instant, tick: Duration) {
        self.apply_events(now);
        let plan = self.engine.plan(now);
        let mut work = vec![0.0; self.policy.pools.len()];
        let mut shares = Vec::new();
        let per_second = self.fleet.share_rate / 60.0;
        for machine in self.machines.iter().filter(|m| m.present) {
            let Some(pool) = plan.pool_for(machine.id) else {
                continue;
            };
            work[pool.0] += machine.hashrate * tick.as_secs_f64();
            // Each share stands for hashrate / share-rate expected hashes.
            let credit = Work::from_hashes(machine.hashrate / per_second);
            let mut at = self.rng.exponential(per_second);
            while at < tick.as_secs_f64() {
                shares.push((at, machine.id, pool, credit));
                at += self.rng.exponential(per_second);
            }
        }
        shares.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (at, miner, pool, work) in shares {
            let when = now + Duration::from_secs_f64(at);
            self.engine
                .observe(Observation::Work { miner, pool, work }, when);
        }
        for (sum, row) in self.target_sum.iter_mut().zip(&plan.pools) {
            *sum += row.target;
        }
        for (s, row) in self.switches.iter_mut().zip(&plan.pools) {
            *s = row.switches;
        }
        let absorbed = !plan.feasible
            && plan
                .fallback
                .is_some_and(|pool| plan.pools.get(pool.0).is_some_and(|p| p.healthy));
        self.buckets.push(Bucket {
            work,
            feasible: plan.feasible,
            absorbed,
        });
    }

    fn apply_events(&mut self, now: Instant) {
        while let Some(event) = self.fleet.events.get(self.next_event) {
            if Instant::from_duration(event.at) > now {
                break;
            }
            self.next_event += 1;
            match event.kind {
                EventKind::PoolDown(pool) => {
                    self.engine.observe(Observation::PoolDown { pool }, now)
                }
                EventKind::PoolUp(pool) => self.engine.observe(Observation::PoolUp { pool }, now),
                EventKind::MinerJoin(group) | EventKind::MinerLeave(group) => {
                    let join = matches!(event.kind, EventKind::MinerJoin(_));
                    for machine in self.machines.iter_mut().filter(|m| m.group == group) {
                        if machine.present != join {
                            machine.present = join;
                            let miner = machine.id;
                            let observation = if join {
                                Observation::MinerJoined { miner }
                            } else {
                                Observation::MinerLeft { miner }
                            };
                            self.engine.observe(observation, now);
                        }
                    }
                }
            }
        }
    }

    fn report(self, ticks: u64) -> SimReport {
        let pools = self.policy.pools.len();
        let tick = self.policy.config.rebalance_every.as_secs_f64();
        let window = (self.policy.config.window.as_secs_f64() / tick)
            .round()
            .max(1.0) as usize;
        let mut total = vec![0.0; pools];
        let mut max_window = vec![0.0f64; pools];
        let mut max_feasible = vec![0.0f64; pools];
        let mut in_window = vec![0.0; pools];
        let mut infeasible_in_window = 0usize;
        let mut unheld_in_window = 0usize;
        let fallback = self.policy.fallback();
        let mut recent: VecDeque<&Bucket> = VecDeque::new();
        for bucket in &self.buckets {
            for i in 0..pools {
                total[i] += bucket.work[i];
                in_window[i] += bucket.work[i];
            }
            infeasible_in_window += usize::from(!bucket.feasible);
            unheld_in_window += usize::from(!bucket.holds_caps());
            recent.push_back(bucket);
            if recent.len() > window
                && let Some(old) = recent.pop_front()
            {
                for (sum, work) in in_window.iter_mut().zip(&old.work) {
                    *sum -= work;
                }
                infeasible_in_window -= usize::from(!old.feasible);
                unheld_in_window -= usize::from(!old.holds_caps());
            }
            let sum: f64 = in_window.iter().sum();
            if recent.len() == window && sum > 0.0 {
                for i in 0..pools {
                    let share = in_window[i] / sum;
                    max_window[i] = max_window[i].max(share);
                    // The fallback pool takes what the caps cannot, so only
                    // fully feasible windows hold it to its cap; every other
                    // pool is held to its cap while the fallback is up too.
                    let held = if fallback == Some(PoolId(i)) {
                        infeasible_in_window == 0
                    } else {
                        unheld_in_window == 0
                    };
                    if held {
                        max_feasible[i] = max_feasible[i].max(share);
                    }
                }
            }
        }
        let all: f64 = total.iter().sum();
        let rows: Vec<PoolReport> = (0..pools)
            .map(|i| PoolReport {
                name: self.policy.pools[i].name.clone(),
                cap: self.policy.cap(PoolId(i)).get(),
                target: self.target_sum[i] / ticks.max(1) as f64,
                share: if all > 0.0 { total[i] / all } else { 0.0 },
                max_window_share: max_window[i],
                switches: self.switches[i],
                fallback: fallback == Some(PoolId(i)),
            })
            .collect();
        let cap_violations = (0..pools)
            .filter(|&i| max_feasible[i] > rows[i].cap + CAP_TOLERANCE)
            .count();
        SimReport {
            switches: self.switches.iter().sum(),
            pools: rows,
            miners: self.machines.len(),
            cap_violations,
            infeasible_seconds: self.buckets.iter().filter(|b| !b.feasible).count() as f64 * tick,
        }
    }
}

/// The work each pool received in one tick, and whether the caps held.
#[derive(Debug)]
struct Bucket {
    work: Vec<f64>,
    /// The healthy pools' caps could take all the work.
    feasible: bool,
    /// They could not, and the healthy fallback pool took the rest.
    absorbed: bool,
}

impl Bucket {
    /// Whether every pool but the fallback was to stay under its cap.
    fn holds_caps(&self) -> bool {
        self.feasible || self.absorbed
    }
}

/// A small, fast, seedable generator (SplitMix64): the simulator must give
/// the same numbers for the same seed on every platform and version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a uniform number in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Returns an exponential gap with the given rate per second.
    fn exponential(&mut self, rate: f64) -> f64 {
        -self.unit().ln() / rate
    }
}

#[cfg(test)]
mod tests;
