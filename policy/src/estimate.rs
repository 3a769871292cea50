//! Per-miner hashrate: an exponentially weighted moving average of credited
//! work, with the time passed in.
//!
//! Shares arrive as a Poisson process, so one share says little; the EWMA
//! pools them with weights that halve every `tau · ln 2`. Until a miner has
//! been around for `tau`, the average is normalised by the time it has
//! actually been observed, so a new miner's first estimate is not biased
//! towards zero.

use std::time::Duration;

use crate::units::{Hashrate, Instant, Work};

/// The shortest observation time a rate is computed over: a first share
/// right after a miner joins would otherwise read as an absurd hashrate.
const MIN_AGE: Duration = Duration::from_secs(10);

/// EWMA of credited work per second for one miner.
#[derive(Debug, Clone)]
pub struct HashrateEstimate {
    tau: f64,
    started: Instant,
    last: Instant,
    /// Credited hashes, each decayed by `exp(-(last - at) / tau)`.
    decayed: f64,
    /// Credits, decayed the same way: how much evidence the rate rests on.
    decayed_shares: f64,
    shares: u64,
}

impl HashrateEstimate {
    /// Returns an empty estimate for a miner observed from `started`, with
    /// time constant `tau`.
    pub fn new(started: Instant, tau: Duration) -> Self {
        HashrateEstimate {
            tau: tau.as_secs_f64().max(1e-3),
            started,
            last: started,
            decayed: 0.0,
            decayed_shares: 0.0,
            shares: 0,
        }
    }

    /// Adds `work` credited at `now`. Work reported out of order counts as
    /// if it arrived at the latest time seen.
    pub fn record(&mut self, work: Work, now: Instant) {
        if now > self.last {
            let decay = self.decay(now - self.last);
            self.decayed *= decay;
            self.decayed_shares *= decay;
            self.last = now;
        }
        self.decayed += work.as_hashes();
        self.decayed_shares += 1.0;
        self.shares += 1;
    }

    /// Returns the estimated hashrate at `now`, or `None` before the first
    /// credited work.
    pub fn rate(&self, now: Instant) -> Option<Hashrate> {
        if self.shares == 0 {
            return None;
        }
        let now = now.max(self.last);
        let decayed = self.decayed * self.decay(now - self.last);
        let age = (now - self.started).max(MIN_AGE).as_secs_f64();
        // Integral of the decay weights over the time observed.
        let weight = self.tau * (1.0 - (-age / self.tau).exp());
        Some(Hashrate::from_hashes_per_sec(decayed / weight))
    }

    /// Returns how many credits were recorded.
    pub fn shares(&self) -> u64 {
        self.shares
    }

    /// Returns the relative standard error of [`rate`](Self::rate) at
    /// `now`: credits are Poisson, so it is one over the square root of the
    /// (decayed) number of credits behind it.
    pub fn relative_error(&self, now: Instant) -> f64 {
        let now = now.max(self.last);
        let shares = self.decayed_shares * self.decay(now - self.last);
        if shares > 0.0 {
            1.0 / shares.sqrt()
        } else {
            f64::INFINITY
        }
    }

    fn decay(&self, elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / self.tau).exp()
    }
}

/// An estimate pooled with those it cannot be told apart from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pooled {
    /// The run's precision-weighted mean rate.
    pub rate: f64,
    /// The relative standard error of that mean (infinite without
    /// evidence).
    pub error: f64,
    /// Which run it belongs to, counted from the slowest: members of a run
    /// share one rate, so they are wrong together.
    pub run: usize,
}

/// Returns each estimate pooled with the estimates that cannot be told
/// apart from it.
///
/// `(rate, relative error)` pairs are sorted by rate and cut into runs, a
/// run growing while its members are consistent with one common rate (a
/// chi-square test at about three standard deviations); every member of a
/// run gets the run's precision-weighted mean and its error.
///
/// Fleets are mostly many machines of a few models. Ten identical miners
/// with raw estimates a few percent apart would otherwise be split as if the
/// noise were real, and a time-sliced miner would be moved to make up
/// differences that do not exist. Machines whose rates differ by more than
/// the noise keep separate rates, and models close together separate as
/// their estimates sharpen.
pub fn pool_similar(estimates: &[(f64, f64)]) -> Vec<Pooled> {
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by(|&a, &b| estimates[a].0.total_cmp(&estimates[b].0));
    let mut pooled: Vec<Pooled> = estimates
        .iter()
        .map(|&(rate, error)| Pooled {
            rate,
            error,
            run: 0,
        })
        .collect();
    let mut start = 0;
    let mut runs = 0;
    while start < order.len() {
        let mut run = Run::default();
        run.add(estimates[order[start]]);
        let mut end = start + 1;
        while let Some(&next) = order.get(end) {
            let mut grown = run;
            grown.add(estimates[next]);
            if !grown.consistent() {
                break;
            }
            run = grown;
            end += 1;
        }
        for &i in &order[start..end] {
            if let Some(mean) = run.mean() {
                pooled[i].rate = mean;
                pooled[i].error = (1.0 / run.weight).sqrt() / mean;
            }
            pooled[i].run = runs;
        }
        runs += 1;
        start = end;
    }
    pooled
}

/// Running sums for a chi-square test of "these rates are one rate".
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    count: usize,
    /// Sum of precisions (1 / relative error²), and of precision × rate and
    /// precision × rate², each relative error applying to its own rate.
    weight: f64,
    weighted: f64,
    weighted_squares: f64,
}

impl Run {
    fn add(&mut self, (rate, error): (f64, f64)) {
        self.count += 1;
        if error.is_finite() && error > 0.0 && rate > 0.0 {
            // Precision of the rate itself: (rate · error)⁻².
            let w = 1.0 / (rate * error).powi(2);
            self.weight += w;
            self.weighted += w * rate;
            self.weighted_squares += w * rate * rate;
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.weighted / self.weight)
    }

    fn consistent(&self) -> bool {
        if self.weight <= 0.0 {
            return false;
        }
        let chi_square = self.weighted_squares - self.weighted * self.weighted / self.weight;
        let freedom = (self.count - 1) as f64;
        chi_square <= freedom + 3.0 * (2.0 * freedom).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> Instant {
        Instant::from_duration(Duration::from_secs_f64(secs))
    }

    #[test]
    fn no_work_means_no_estimate() {
        let estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(60));
        assert_eq!(estimate.rate(at(100.0)), None);
    }

    #[test]
    fn steady_work_converges_to_its_rate() {
        let mut estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(60));
        for i in 1..=600 {
            estimate.record(Work::from_hashes(1000.0), at(i as f64));
        }
        let rate = estimate.rate(at(600.0)).unwrap().as_hashes_per_sec();
        assert!((rate - 1000.0).abs() < 10.0, "{rate}");
    }

    #[test]
    fn a_new_miner_is_not_biased_towards_zero() {
        let mut estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(600));
        for i in 1..=30 {
            estimate.record(Work::from_hashes(500.0), at(i as f64));
        }
        let rate = estimate.rate(at(30.0)).unwrap().as_hashes_per_sec();
        assert!((rate - 500.0).abs() < 25.0, "{rate}");
    }

    #[test]
    fn more_credits_mean_a_smaller_error() {
        let mut estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(600));
        estimate.record(Work::from_hashes(1.0), at(1.0));
        let early = estimate.relative_error(at(1.0));
        for i in 2..=100 {
            estimate.record(Work::from_hashes(1.0), at(i as f64));
        }
        let later = estimate.relative_error(at(100.0));
        assert!((early - 1.0).abs() < 1e-9, "{early}");
        assert!(later < 0.11, "{later}");
    }

    #[test]
    fn estimates_within_the_noise_are_pooled_and_distinct_ones_kept() {
        // Three 100 TH/s machines seen through ±5% noise, and a 13 TH/s one.
        let pooled = pool_similar(&[(104.0, 0.05), (97.0, 0.05), (99.0, 0.05), (13.5, 0.05)]);
        assert!((pooled[0].rate - 100.0).abs() < 1.0, "{pooled:?}");
        assert_eq!(pooled[0], pooled[1]);
        assert_eq!(pooled[1], pooled[2]);
        assert_eq!(pooled[3].rate, 13.5);
        assert_ne!(pooled[3].run, pooled[0].run);
        // Three machines' worth of evidence: the error shrinks by √3.
        assert!(
            (pooled[0].error - 0.05 / 3f64.sqrt()).abs() < 0.002,
            "{pooled:?}"
        );
    }

    #[test]
    fn a_silent_miner_decays() {
        let mut estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(60));
        for i in 1..=600 {
            estimate.record(Work::from_hashes(1000.0), at(i as f64));
        }
        let later = estimate.rate(at(900.0)).unwrap().as_hashes_per_sec();
        assert!(later < 10.0, "{later}");
    }
}
