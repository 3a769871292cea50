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

/// How many standard errors apart two estimates may be and still be taken
/// for the same kind of machine.
const SAME_MACHINE: f64 = 2.0;

/// Returns each estimate pooled with the estimates that cannot be told
/// apart from it: the precision-weighted mean of every `(rate, relative
/// error)` within `SAME_MACHINE` × √2 standard errors of its own.
///
/// Fleets are mostly many machines of a few models. Ten identical miners
/// with raw estimates a few percent apart would otherwise be split as if
/// the noise were real, and a time-sliced miner would be moved to make up
/// differences that do not exist. Machines that really differ by more than
/// the noise keep their own rate.
pub fn pool_similar(estimates: &[(f64, f64)]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by(|&a, &b| estimates[a].0.total_cmp(&estimates[b].0));
    let sorted: Vec<f64> = order.iter().map(|&i| estimates[i].0).collect();
    // Weight = precision = 1 / relative error², the number of credits.
    let weight = |i: usize| {
        let error = estimates[i].1;
        if error.is_finite() && error > 0.0 {
            1.0 / (error * error)
        } else {
            0.0
        }
    };
    let mut weights = vec![0.0];
    let mut weighted = vec![0.0];
    for &i in &order {
        weights.push(weights.last().copied().unwrap_or(0.0) + weight(i));
        weighted.push(weighted.last().copied().unwrap_or(0.0) + weight(i) * estimates[i].0);
    }
    let mut pooled = vec![0.0; estimates.len()];
    for &i in &order {
        let (rate, error) = estimates[i];
        let reach = rate * error.min(1.0) * SAME_MACHINE * std::f64::consts::SQRT_2;
        let lo = sorted.partition_point(|&r| r < rate - reach);
        let hi = sorted.partition_point(|&r| r <= rate + reach);
        let w = weights[hi] - weights[lo];
        pooled[i] = if w > 0.0 {
            (weighted[hi] - weighted[lo]) / w
        } else {
            rate
        };
    }
    pooled
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
        assert!((pooled[0] - 100.0).abs() < 1e-9, "{pooled:?}");
        assert_eq!(pooled[0], pooled[1]);
        assert_eq!(pooled[1], pooled[2]);
        assert_eq!(pooled[3], 13.5);
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
