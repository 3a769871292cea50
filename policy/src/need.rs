//! What each pool needs from the next plan, and a look-ahead over a moved
//! miner's dwell.
//!
//! Three ideas keep the split both exact and calm. A first window (of the
//! run, or after the targets change) is one budget, so a lone miner spends
//! it in long slices. After that, most of what leaves the back of a pool's
//! window is replaced in kind, which lines slices up one window apart so
//! every window holds the same split; replacing only part of it lets the
//! echo of past moves fade. And a guard keeps the window ending at the next
//! plan under every pool's limit, whatever the budget says.

use std::time::Duration;

use crate::allocate::Targets;

/// Errors below this share of the window are left alone: chasing them moves
/// miners for no gain a pool could notice.
pub(crate) const DEADBAND: f64 = 0.002;

/// Where each pool's window share will be at the end of a moved miner's
/// dwell, if every miner placed so far stays put.
pub(crate) struct Lookahead {
    /// Work per pool already in the window that ends after the dwell.
    pub(crate) known: Vec<f64>,
    pub(crate) known_total: f64,
    /// The dwell in seconds.
    pub(crate) dwell: f64,
    /// Hashes per second of the present miners.
    pub(crate) fleet: f64,
    pub(crate) limit: Vec<f64>,
    /// Hashes per second placed on each pool so far.
    pub(crate) on: Vec<f64>,
}

impl Lookahead {
    /// Returns the share of the window ending after the dwell that `work`
    /// would be.
    pub(crate) fn share_of(&self, work: f64) -> f64 {
        let total = self.known_total + self.fleet * self.dwell;
        if total > 0.0 { work / total } else { 0.0 }
    }

    /// Returns by how much `pool`'s share would exceed its limit after the
    /// dwell with a miner of `rate` added (negative: room left).
    pub(crate) fn excess(&self, pool: usize, rate: f64) -> f64 {
        let total = self.known_total + self.fleet * self.dwell;
        if total <= 0.0 {
            return 0.0;
        }
        let share = (self.known[pool] + (self.on[pool] + rate) * self.dwell) / total;
        share - self.limit[pool]
    }
}

pub(crate) struct WantInputs<'a> {
    pub(crate) targets: &'a Targets,
    /// Work per pool in the window ending now.
    pub(crate) now_window: &'a [f64],
    /// Work per pool already in the window that ends at `now + horizon`.
    pub(crate) end_window: &'a [f64],
    /// Hashes per second of the present miners.
    pub(crate) fleet: f64,
    pub(crate) horizon: Duration,
    /// Errors in the current window are corrected over this long.
    pub(crate) correct_over: Duration,
    /// Whether the first full window (of the run, or since the targets last
    /// changed) is still ahead: `end_window` then holds only the work since
    /// it began, and the wants are one budget, the target share of that
    /// window minus what it holds.
    pub(crate) first_window: bool,
    /// Once full windows count: work per pool already in the window that
    /// ends at the next plan, and the time to it. No pool may want more than
    /// keeps that window under its limit.
    pub(crate) guard: Option<(&'a [f64], Duration)>,
}

/// How much of the work leaving the back of the window is replaced in kind.
///
/// Replacing all of it (1.0) holds every window to exactly the split of the
/// window before, which is what keeps a time-sliced miner's slices aligned,
/// but it also echoes every move made to correct noise one window later,
/// forever: a thousand small miners kept switching at a steady rate. Below
/// one the echo fades by this factor every window, while slicing decisions,
/// which compare a pool's need with half a tick of a miner, mostly come out
/// the same. 0.7 was the lowest that kept mixed fleets with a miner bigger
/// than a cap within their caps in the simulator.
const REPLICATE: f64 = 0.7;

/// Returns the work each pool should get over the horizon.
///
/// During a first window it is the pool's target share of the fleet's work,
/// less what the pool is ahead of its budget for that window. Afterwards it
/// is the target share, plus part of the difference between what leaves
/// the back of the pool's window and its target share of what leaves, less
/// the pool's error in the window beyond the deadband, paced over
/// `correct_over`. Pools with no target (down, or avoided) want nothing.
///
/// With a guard, no pool wants more than keeps the window ending at the
/// next plan under its limit, so a miner already on a pool is moved off
/// before the pool crosses its cap. In a first window after the targets
/// change, a pool above its limit but under its cap may hold its share of
/// the window instead: a pool coming back opens room for margins, and every
/// pool the window holds at its cap would otherwise be emptied onto the
/// returning one at once.
pub(crate) fn wants(inputs: &WantInputs<'_>) -> Vec<f64> {
    let mut want = unguarded_wants(inputs);
    if let Some((next, tick)) = inputs.guard {
        let tick = tick.as_secs_f64();
        let total = next.iter().sum::<f64>() + inputs.fleet * tick;
        let per_horizon = inputs.horizon.as_secs_f64() / tick;
        let now_total: f64 = inputs.now_window.iter().sum();
        for (i, want) in want.iter_mut().enumerate() {
            let limit = inputs.targets.limit[i];
            let mut room = limit * total - next[i];
            if inputs.first_window && now_total > 0.0 {
                let cap = limit + inputs.targets.margin[i];
                let share = inputs.now_window[i] / now_total;
                room = room.max(share.min(cap) * total - next[i]);
            }
            *want = want.min(room * per_horizon);
        }
    }
    want
}

fn unguarded_wants(inputs: &WantInputs<'_>) -> Vec<f64> {
    let horizon = inputs.horizon.as_secs_f64();
    let target = &inputs.targets.target;
    let pools = target.len();
    let usable: Vec<usize> = (0..pools).filter(|&i| target[i] > 0.0).collect();
    let now_total: f64 = inputs.now_window.iter().sum();
    let end_total: f64 = inputs.end_window.iter().sum();
    let leaving = |i: usize| inputs.now_window[i] - inputs.end_window[i];
    let leaving_total = now_total - end_total;
    let fleet_work = inputs.fleet * horizon;
    let pace = (horizon / inputs.correct_over.as_secs_f64()).min(1.0);
    let slack = DEADBAND * now_total;

    if inputs.first_window {
        // Nothing leaves the window yet, so there is nothing to replace: the
        // whole first window is one budget, spent in long slices. Its error
        // is corrected at once while the end is far, gently near it.
        let slack = DEADBAND * end_total;
        let mut want = vec![0.0; pools];
        for &i in &usable {
            let error = inputs.end_window[i] - target[i] * end_total;
            let outside = error - error.clamp(-slack, slack);
            want[i] = target[i] * fleet_work - outside * pace;
        }
        return want;
    }

    let mut replace = vec![0.0; pools];
    for &i in &usable {
        replace[i] = REPLICATE * (leaving(i) - target[i] * leaving_total);
    }
    // Work leaving pools that are down now has no one to replace it.
    let unplaced: f64 = usable.iter().map(|&i| replace[i]).sum();
    for &i in &usable {
        replace[i] -= target[i] * unplaced;
    }

    let mut correction = vec![0.0; pools];
    for &i in &usable {
        let error = inputs.now_window[i] - target[i] * now_total;
        let outside = error - error.clamp(-slack, slack);
        correction[i] = -outside * pace;
    }

    let mut want = vec![0.0; pools];
    for &i in &usable {
        want[i] = target[i] * fleet_work + replace[i] + correction[i];
    }
    want
}
