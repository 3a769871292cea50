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
            shares: 0,
        }
    }

    /// Adds `work` credited at `now`. Work reported out of order counts as
    /// if it arrived at the latest time seen.
    pub fn record(&mut self, work: Work, now: Instant) {
        if now > self.last {
            self.decayed *= self.decay(now - self.last);
            self.last = now;
        }
        self.decayed += work.as_hashes();
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

    fn decay(&self, elapsed: Duration) -> f64 {
        (-elapsed.as_secs_f64() / self.tau).exp()
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
    fn a_silent_miner_decays() {
        let mut estimate = HashrateEstimate::new(at(0.0), Duration::from_secs(60));
        for i in 1..=600 {
            estimate.record(Work::from_hashes(1000.0), at(i as f64));
        }
        let later = estimate.rate(at(900.0)).unwrap().as_hashes_per_sec();
        assert!(later < 10.0, "{later}");
    }
}
