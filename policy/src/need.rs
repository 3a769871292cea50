//! What each pool needs from the next plan: its target share of the window
//! that will end then, minus what that window already holds, and a
//! look-ahead over a moved miner's dwell.

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
    /// Errors in the current window are corrected over this long; `None`
    /// corrects them at once (the first window is one budget to fill).
    pub(crate) correct_over: Option<Duration>,
}

/// Returns the work each pool should get over the horizon: its target share
/// of the window ending then, minus what that window already holds, with
/// the error already in the window corrected gently rather than at once.
pub(crate) fn wants(inputs: &WantInputs<'_>) -> Vec<f64> {
    let horizon = inputs.horizon.as_secs_f64();
    let end_total: f64 = inputs.end_window.iter().sum::<f64>() + inputs.fleet * horizon;
    let now_total: f64 = inputs.now_window.iter().sum();
    let pace = inputs
        .correct_over
        .map(|over| (horizon / over.as_secs_f64()).min(1.0));
    (0..inputs.end_window.len())
        .map(|i| {
            let target = inputs.targets.target[i];
            let exact = target * end_total - inputs.end_window[i];
            let Some(pace) = pace else {
                return exact;
            };
            let error = inputs.now_window[i] - target * now_total;
            let slack = DEADBAND * now_total;
            let outside = error - error.clamp(-slack, slack);
            exact + error - outside * pace
        })
        .collect()
}
