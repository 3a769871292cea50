//! How far below its cap each pool is held: the noise of the hashrate
//! estimates, as it shows in the engine's own accounting of the window.
//!
//! The engine values the window as time on a pool × each miner's estimated
//! hashrate (see `ledger`). A miner whose estimate is a fraction `e` too
//! high makes the pools it mined for look bigger than they are, and the
//! others smaller, by `e` × its work on them against its work overall; a
//! miner that mined for every pool in proportion moves no share at all, so a
//! lone miner is split exactly whatever its estimate.
//!
//! Miners that share one pooled estimate (a run, see
//! [`pool_similar`](crate::estimate::pool_similar)) are wrong together by
//! the run's error. Each may also be off on its own, since pooling only says
//! the machines cannot be told apart yet, not that they are alike (young
//! estimates of a 270 and a 420 TH/s machine are pooled): that is put at how
//! far the machine's own estimate is from the run's, give or take the part
//! of its noise the run does not share. The margin counts both. It is
//! largest for small fleets of mixed machines in their first windows, when
//! estimates rest on a few hundred shares, and close to nothing for many
//! identical machines or mature estimates.
//!
//! The engine plans each pool against its cap less this margin, as far as
//! the caps leave room (see `allocate`).

use std::collections::BTreeMap;

use crate::units::MinerId;

/// Standard errors of a pool's share held back below its cap.
///
/// A pool's share is judged over every window of a run, and windows a few
/// minutes apart rest on different estimates, so one standard error is
/// crossed often. In the simulator, random fleets of 1 to 20 mixed machines
/// with caps leaving 0.05 or more of room crossed a cap by more than 0.01
/// about as rarely at 2 as at 2.5 or 3 (the few that still did were short
/// of room for the slicing itself, not for the noise), and switched less.
const STANDARD_ERRORS: f64 = 2.0;

/// Which estimate a miner's work is valued with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Run {
    /// A run of present miners pooled together, numbered as
    /// [`pool_similar`](crate::estimate::pool_similar) numbers them (the
    /// miners with no estimate yet form one more, sharing the fleet's mean).
    Pooled(usize),
    /// A miner that left, valued at its last estimate.
    Left(MinerId),
}

/// How one miner's work is valued and how far that may be off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Valuation {
    pub(crate) run: Run,
    /// Relative standard error of the run's rate, shared by its members.
    pub(crate) error: f64,
    /// How far, relatively, the miner's own rate may be from the run's.
    pub(crate) apart: f64,
}

/// Returns, for each of `pools`, how far below its cap to hold it: a
/// multiple of the standard error of its estimated share of the work in
/// `valued`, each miner's estimated work per pool with its valuation.
pub(crate) fn margins(pools: usize, valued: &[(Valuation, Vec<f64>)]) -> Vec<f64> {
    let mut per_pool = vec![0.0; pools];
    for (_, work) in valued {
        for (sum, work) in per_pool.iter_mut().zip(work) {
            *sum += work;
        }
    }
    let total: f64 = per_pool.iter().sum();
    if total <= 0.0 {
        return vec![0.0; pools];
    }
    let share: Vec<f64> = per_pool.iter().map(|w| w / total).collect();
    // How each pool's share moves per unit of relative error in the rate
    // that values `work`.
    let sensitivity = |work: &[f64]| -> Vec<f64> {
        let own: f64 = work.iter().sum();
        (0..pools)
            .map(|i| (work.get(i).copied().unwrap_or(0.0) - share[i] * own) / total)
            .collect()
    };
    let mut variance = vec![0.0; pools];
    // Per run: its shared error and the summed sensitivity of its members.
    let mut runs: BTreeMap<Run, (f64, Vec<f64>)> = BTreeMap::new();
    for (valuation, work) in valued {
        let moved = sensitivity(work);
        let (_, together) = runs
            .entry(valuation.run)
            .or_insert_with(|| (valuation.error, vec![0.0; pools]));
        for i in 0..pools {
            together[i] += moved[i];
            variance[i] += (valuation.apart.min(1.0) * moved[i]).powi(2);
        }
    }
    for (error, together) in runs.values() {
        for (v, moved) in variance.iter_mut().zip(together) {
            *v += (error.min(1.0) * moved).powi(2);
        }
    }
    variance
        .into_iter()
        .map(|v| STANDARD_ERRORS * v.sqrt())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine alone in its run.
    fn alone(n: usize, error: f64, work: &[f64]) -> (Valuation, Vec<f64>) {
        let run = Run::Pooled(n);
        (
            Valuation {
                run,
                error,
                apart: 0.0,
            },
            work.to_vec(),
        )
    }

    #[test]
    fn a_machine_split_in_proportion_needs_no_margin() {
        let margins = margins(2, &[alone(0, 0.1, &[30.0, 70.0])]);
        assert!(margins.iter().all(|&m| m.abs() < 1e-12), "{margins:?}");
    }

    #[test]
    fn two_machines_on_two_pools_are_held_by_their_errors() {
        // Each pool's share is its machine's work over the total: an error
        // e in either estimate moves it by e/4.
        let valued = [alone(0, 0.1, &[50.0, 0.0]), alone(1, 0.1, &[0.0, 50.0])];
        let expected = STANDARD_ERRORS * (2.0 * (0.1f64 * 0.25).powi(2)).sqrt();
        for m in margins(2, &valued) {
            assert!((m - expected).abs() < 1e-12, "{m} vs {expected}");
        }
    }

    #[test]
    fn better_estimates_mean_smaller_margins() {
        let young = margins(
            2,
            &[alone(0, 0.1, &[50.0, 10.0]), alone(1, 0.1, &[0.0, 40.0])],
        );
        let old = margins(
            2,
            &[alone(0, 0.03, &[50.0, 10.0]), alone(1, 0.03, &[0.0, 40.0])],
        );
        assert!(old[0] < young[0] && old[1] < young[1], "{young:?} {old:?}");
    }

    #[test]
    fn pooled_machines_on_different_pools_still_need_a_margin() {
        // Pooling makes their shared error small, not their own.
        let pooled = |work: &[f64]| {
            let run = Run::Pooled(0);
            let valuation = Valuation {
                run,
                error: 0.01,
                apart: 0.1,
            };
            (valuation, work.to_vec())
        };
        let margins = margins(2, &[pooled(&[50.0, 0.0]), pooled(&[0.0, 50.0])]);
        assert!(margins[0] > STANDARD_ERRORS * 0.03, "{margins:?}");
    }

    #[test]
    fn no_work_means_no_margin() {
        assert_eq!(margins(2, &[alone(0, 0.5, &[0.0, 0.0])]), vec![0.0, 0.0]);
    }
}
