//! Target shares: capped water filling of the weights over the healthy
//! pools, network-share avoidance, the safety margins held below the caps
//! where they leave room, and what to do when the caps cannot hold.

use crate::config::OnInfeasible;

/// What the allocator needs to know about one pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolInput {
    /// Whether the pool can take work now.
    pub healthy: bool,
    /// Relative weight, > 0.
    pub weight: f64,
    /// Cap on its share, in (0, 1].
    pub cap: f64,
    /// Its share of the whole network, if known.
    pub network_share: Option<f64>,
    /// How far below its cap the engine would like to hold it, for the
    /// noise of its own accounting; granted only as far as the caps leave
    /// room (0 for none).
    pub margin: f64,
    /// Whether this is the fallback pool: while it is healthy it takes
    /// what the other healthy pools' caps cannot, instead of
    /// `on_infeasible` deciding.
    pub fallback: bool,
}

/// The shares the engine aims for, one per pool in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Share of the hashrate each pool should get; sums to 1 when any pool
    /// is healthy. A pool held below its cap by a margin aims below it.
    pub target: Vec<f64>,
    /// The most each pool may get: its cap less its margin, or its target
    /// where the caps cannot be met and `on_infeasible` exceeds them.
    pub limit: Vec<f64>,
    /// The part of each pool's requested margin that the caps had room for.
    pub margin: Vec<f64>,
    /// Pools left out (weight 0) for being above `max_network_share`.
    pub avoided: Vec<bool>,
    /// Whether the healthy pools' caps can take all the hashrate.
    pub feasible: bool,
    /// Whether avoided pools had to be used because the others' caps could
    /// not take all the hashrate.
    pub network_fallback: bool,
    /// How much the caps fall short of 1 (0 when feasible).
    pub shortfall: f64,
}

const EPSILON: f64 = 1e-9;

/// Returns the targets for `pools`.
///
/// Pools above `max_network_share` get weight 0 while the others' caps can
/// take the work; if they cannot, the avoided pools take only the rest.
/// With no healthy pool every target is 0 and the plan is infeasible.
///
/// Each pool is filled up to its cap less its margin, the margins scaled
/// down together where the caps cannot take all the work otherwise: a
/// margin never makes feasible caps infeasible, and never sends work to
/// avoided pools that the others' caps could take.
pub fn targets(
    pools: &[PoolInput],
    max_network_share: Option<f64>,
    on_infeasible: OnInfeasible,
) -> Targets {
    let n = pools.len();
    let avoided: Vec<bool> = pools
        .iter()
        .map(|p| match (max_network_share, p.network_share) {
            (Some(limit), Some(share)) => share > limit,
            _ => false,
        })
        .collect();
    let caps: Vec<f64> = pools.iter().map(|p| p.cap).collect();
    let weights_where = |keep: &dyn Fn(usize) -> bool| -> Vec<f64> {
        (0..n)
            .map(|i| {
                if pools[i].healthy && keep(i) {
                    pools[i].weight
                } else {
                    0.0
                }
            })
            .collect()
    };
    // Past half a cap the estimates are guesses, and a pool held at nothing
    // would lose its miners.
    let margins: Vec<f64> = pools
        .iter()
        .map(|p| p.margin.clamp(0.0, p.cap / 2.0))
        .collect();
    let preferred = weights_where(&|i| !avoided[i]);
    let mut margin = granted_margins(&preferred, &caps, &margins, 1.0);
    let held = |margin: &[f64]| -> Vec<f64> { (0..n).map(|i| caps[i] - margin[i]).collect() };
    let (mut target, left) = water_fill(&preferred, &held(&margin), 1.0);
    let mut network_fallback = false;
    let mut left = left;
    if left > EPSILON {
        let fallback = weights_where(&|i| avoided[i]);
        if fallback.iter().any(|&w| w > 0.0) {
            network_fallback = true;
            let fallback_margin = granted_margins(&fallback, &caps, &margins, left);
            for (m, f) in margin.iter_mut().zip(&fallback_margin) {
                *m += f;
            }
            let (extra, still_left) = water_fill(&fallback, &held(&fallback_margin), left);
            for (t, e) in target.iter_mut().zip(extra) {
                *t += e;
            }
            left = still_left;
        }
    }
    let feasible = left <= EPSILON && pools.iter().any(|p| p.healthy);
    if left > EPSILON {
        infeasible_targets(pools, &mut target, on_infeasible);
        margin.iter_mut().for_each(|m| *m = 0.0);
    }
    let limit = (0..n)
        .map(|i| (caps[i] - margin[i]).max(target[i]))
        .collect();
    Targets {
        target,
        limit,
        margin,
        avoided,
        feasible,
        network_fallback,
        shortfall: if feasible { 0.0 } else { left.min(1.0) },
    }
}

/// Fills `total` over the pools with positive weight: each gets
/// `min(cap, level · weight)` with the level set so the shares add up.
/// Returns the shares and what the caps could not take.
pub fn water_fill(weights: &[f64], caps: &[f64], total: f64) -> (Vec<f64>, f64) {
    let mut share = vec![0.0; weights.len()];
    let mut open: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    let mut left = total;
    // Each round either fixes at least one pool at its cap or finishes, so
    // this runs at most once per pool.
    while !open.is_empty() && left > EPSILON {
        let weight: f64 = open.iter().map(|&i| weights[i]).sum();
        let level = left / weight;
        let capped: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| level * weights[i] >= caps[i] - share[i])
            .collect();
        if capped.is_empty() {
            for &i in &open {
                share[i] += level * weights[i];
            }
            left = 0.0;
        } else {
            for &i in &capped {
                left -= caps[i] - share[i];
                share[i] = caps[i];
            }
            open.retain(|i| !capped.contains(i));
        }
    }
    (share, left.max(0.0))
}

/// The most of the caps' room (their sum less the work to place) that the
/// margins may take.
///
/// Margins that take all of it leave every pool's target at its limit, and
/// the guard then moves a miner whenever the noise pushes any pool over: in
/// the simulator, fleets under caps summing to 1.00–1.05 switched about 45%
/// more than without margins. Leaving a quarter of the room between the
/// targets and the limits brought that down to about 10% and held the caps
/// about as well.
const MARGIN_ROOM: f64 = 0.75;

/// Returns the margins the caps of the pools with positive weight have
/// room for when they take `total`: all of them, or all scaled down by one
/// factor so they take [`MARGIN_ROOM`] of the room. Pools with no weight get
/// none.
fn granted_margins(weights: &[f64], caps: &[f64], margins: &[f64], total: f64) -> Vec<f64> {
    let used = |i: &usize| weights[*i] > 0.0;
    let room: f64 = (0..weights.len())
        .filter(used)
        .map(|i| caps[i])
        .sum::<f64>()
        - total;
    let wanted: f64 = (0..weights.len()).filter(used).map(|i| margins[i]).sum();
    let scale = if wanted > 0.0 {
        (MARGIN_ROOM * room / wanted).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (0..weights.len())
        .map(|i| if used(&i) { margins[i] * scale } else { 0.0 })
        .collect()
}

/// Targets when the healthy pools' caps sum to less than 1: every healthy
/// pool at its cap and the rest to the healthy fallback pool, or, without
/// one, as `on_infeasible` says.
fn infeasible_targets(pools: &[PoolInput], target: &mut [f64], on_infeasible: OnInfeasible) {
    let healthy: Vec<usize> = (0..pools.len()).filter(|&i| pools[i].healthy).collect();
    let Some(&first) = healthy.first() else {
        target.iter_mut().for_each(|t| *t = 0.0);
        return;
    };
    let fallback = healthy.iter().copied().find(|&i| pools[i].fallback);
    let caps: f64 = healthy.iter().map(|&i| pools[i].cap).sum();
    let remainder_to = match (fallback, on_infeasible) {
        (Some(pool), _) => Some(pool),
        (None, OnInfeasible::Ordered) => Some(first),
        (None, OnInfeasible::Spread) => None,
    };
    for (i, t) in target.iter_mut().enumerate() {
        *t = match (pools[i].healthy, remainder_to) {
            (false, _) => 0.0,
            (true, Some(_)) => pools[i].cap,
            (true, None) => pools[i].cap / caps,
        };
    }
    if let Some(pool) = remainder_to {
        target[pool] += 1.0 - caps;
    }
}

#[cfg(test)]
mod tests;
