//! Per-miner variable difficulty toward a target share rate.
//!
//! Difficulties are powers of two, so a miner's difficulty changes only when
//! its share rate is off by at least a factor of two, and never rises above
//! the difficulty of the pool it currently mines for: every share the pool
//! would count must reach the proxy. Time is passed in.

use std::time::Duration;

use hashsplit_stratum::Difficulty;
use tokio::time::Instant;

/// Shares needed before a retarget on rate alone.
const RETARGET_SHARES: u32 = 16;
/// Longest wait before a retarget (a slow or silent miner is lowered).
const RETARGET_AFTER: Duration = Duration::from_secs(60);
/// Shortest observation behind a retarget, so a burst of lucky shares
/// right after a change does not swing the difficulty.
const MIN_OBSERVATION: Duration = Duration::from_secs(10);
/// A flood (a miner far below its difficulty, e.g. a big ASIC at a pool's
/// default difficulty 1) is corrected after one second, not ten.
const FLOOD_SHARES: u32 = 4 * RETARGET_SHARES;
const FLOOD_OBSERVATION: Duration = Duration::from_secs(1);

/// The vardiff state of one miner.
#[derive(Debug, Clone)]
pub struct Vardiff {
    shares_per_minute: f64,
    min: f64,
    current: f64,
    since: Instant,
    shares: u32,
}

impl Vardiff {
    /// Starts at `initial` (rounded to a power of two, at least `min`),
    /// aiming at `shares_per_minute`.
    pub fn new(initial: Difficulty, min: Difficulty, shares_per_minute: f64, now: Instant) -> Self {
        let min = min.as_f64();
        Vardiff {
            shares_per_minute,
            min,
            current: power_of_two(initial.as_f64()).max(power_of_two_ceil(min)),
            since: now,
            shares: 0,
        }
    }

    /// Returns the difficulty the miner should mine at now.
    pub fn current(&self) -> Difficulty {
        // Powers of two within f64's normal range keep this positive; the
        // fallback only guards the invariant.
        Difficulty::try_new(self.current).unwrap_or(Difficulty::ONE)
    }

    /// Sets the difficulty from a miner's `mining.suggest_difficulty`, within
    /// the bounds, and restarts the observation.
    pub fn suggest(
        &mut self,
        suggested: Difficulty,
        ceiling: Difficulty,
        now: Instant,
    ) -> Difficulty {
        self.current = self.clamp(power_of_two(suggested.as_f64()), ceiling);
        self.restart(now);
        self.current()
    }

    /// Counts a share credited at the current difficulty.
    pub fn record_share(&mut self) {
        self.shares = self.shares.saturating_add(1);
    }

    /// Retargets if enough has been observed; returns the new difficulty
    /// when it changed. `ceiling` is the current pool's difficulty.
    pub fn retarget(&mut self, ceiling: Difficulty, now: Instant) -> Option<Difficulty> {
        let elapsed = now.saturating_duration_since(self.since);
        let ready = (self.shares >= RETARGET_SHARES && elapsed >= MIN_OBSERVATION)
            || (self.shares >= FLOOD_SHARES && elapsed >= FLOOD_OBSERVATION)
            || elapsed >= RETARGET_AFTER;
        if !ready {
            return self.cap(ceiling, now);
        }
        let minutes = elapsed.as_secs_f64() / 60.0;
        // No share at all: assume at most half a share arrived, so a miner
        // far below its difficulty comes down quickly but not to nothing.
        let rate = f64::from(self.shares).max(0.5) / minutes;
        let ratio = rate / self.shares_per_minute;
        let wanted = if (0.5..=2.0).contains(&ratio) {
            self.current
        } else {
            power_of_two(self.current * ratio)
        };
        let next = self.clamp(wanted, ceiling);
        self.restart(now);
        self.change_to(next)
    }

    /// Lowers the difficulty to the pool's if the pool's is now lower (a
    /// switch to a pool with a lower difficulty, or a pool lowering it).
    pub fn cap(&mut self, ceiling: Difficulty, now: Instant) -> Option<Difficulty> {
        let capped = self.clamp(self.current, ceiling);
        if capped < self.current {
            self.restart(now);
        }
        self.change_to(capped)
    }

    fn change_to(&mut self, next: f64) -> Option<Difficulty> {
        if next == self.current {
            None
        } else {
            self.current = next;
            Some(self.current())
        }
    }

    fn restart(&mut self, now: Instant) {
        self.since = now;
        self.shares = 0;
    }

    /// Keeps a power of two within `[min, ceiling]`; the ceiling wins if the
    /// two cross (a pool's difficulty below our minimum).
    fn clamp(&self, value: f64, ceiling: Difficulty) -> f64 {
        let floor = power_of_two_ceil(self.min);
        let top = power_of_two_floor(ceiling.as_f64());
        value.max(floor).min(top)
    }
}

/// Returns the power of two nearest to `value` (in log scale).
fn power_of_two(value: f64) -> f64 {
    two_to(value.log2().round())
}

fn power_of_two_floor(value: f64) -> f64 {
    two_to(value.log2().floor())
}

fn power_of_two_ceil(value: f64) -> f64 {
    two_to(value.log2().ceil())
}

/// Returns 2^`exponent`, with the exponent kept where the result is a
/// normal, positive, finite number whatever a pool sent.
fn two_to(exponent: f64) -> f64 {
    2f64.powi(exponent.clamp(-1022.0, 1023.0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(value: f64) -> Difficulty {
        Difficulty::try_new(value).unwrap()
    }

    const HIGH: f64 = 1e12;

    #[test]
    fn starts_at_a_power_of_two_within_bounds() {
        let now = Instant::now();
        assert_eq!(
            Vardiff::new(d(1000.0), d(1.0), 20.0, now).current(),
            d(1024.0)
        );
        assert_eq!(Vardiff::new(d(0.01), d(1.0), 20.0, now).current(), d(1.0));
    }

    #[test]
    fn extreme_pool_difficulties_never_break_the_miners_difficulty() {
        let now = Instant::now();
        let mut v = Vardiff::new(d(8192.0), d(0.001), 20.0, now);
        for ceiling in [f64::MIN_POSITIVE, 1e-300, 1e300, f64::MAX] {
            v.cap(d(ceiling), now);
            let current = v.current().as_f64();
            assert!(current.is_normal() && current > 0.0, "{ceiling}: {current}");
            assert!(
                current <= ceiling,
                "never above the pool's {ceiling}: {current}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_miner_is_raised_by_powers_of_two() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(1.0), d(0.001), 20.0, start);
        // 64 shares in 30 s is 128 a minute: 6.4x the target, so 8x.
        for _ in 0..64 {
            v.record_share();
        }
        let next = v.retarget(d(HIGH), start + Duration::from_secs(30));
        assert_eq!(next, Some(d(8.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_or_silent_miner_is_lowered_after_the_longest_wait() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(64.0), d(0.001), 20.0, start);
        assert_eq!(v.retarget(d(HIGH), start + Duration::from_secs(59)), None);
        // No share in 60 s: rate taken as 0.5/min, 1/40 of target → 1/32.
        assert_eq!(
            v.retarget(d(HIGH), start + Duration::from_secs(60)),
            Some(d(2.0))
        );
        // Another 9 silent minutes: 2 · (0.5/9)/20 ≈ 0.0056, nearest 2^-7.
        let later = start + Duration::from_secs(600);
        assert_eq!(v.retarget(d(HIGH), later), Some(d(0.0078125)));
        // Never below the minimum.
        let mut v = Vardiff::new(d(1.0), d(0.5), 20.0, start);
        assert_eq!(v.retarget(d(HIGH), later), Some(d(0.5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_corrected_within_a_second() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(1.0), d(0.001), 20.0, start);
        for _ in 0..1000 {
            v.record_share();
        }
        assert_eq!(
            v.retarget(d(HIGH), start + Duration::from_millis(500)),
            None
        );
        // 1000 shares in a second is 3000 times the target rate: 2^12.
        assert_eq!(
            v.retarget(d(HIGH), start + Duration::from_secs(1)),
            Some(d(4096.0))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_target_rate_keeps_the_difficulty() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(16.0), d(0.001), 20.0, start);
        for _ in 0..25 {
            v.record_share();
        }
        assert_eq!(v.retarget(d(HIGH), start + Duration::from_secs(60)), None);
        assert_eq!(v.current(), d(16.0));
    }

    #[tokio::test(start_paused = true)]
    async fn never_above_the_pools_difficulty() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(1.0), d(0.001), 20.0, start);
        for _ in 0..10_000 {
            v.record_share();
        }
        assert_eq!(
            v.retarget(d(100.0), start + Duration::from_secs(30)),
            Some(d(64.0))
        );
        // A switch to a pool at difficulty 8 lowers it at once.
        assert_eq!(v.cap(d(8.0), start + Duration::from_secs(31)), Some(d(8.0)));
        assert_eq!(v.cap(d(8.0), start + Duration::from_secs(32)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn suggestion_is_honoured_within_bounds() {
        let start = Instant::now();
        let mut v = Vardiff::new(d(1.0), d(0.5), 20.0, start);
        assert_eq!(v.suggest(d(500.0), d(HIGH), start), d(512.0));
        assert_eq!(v.suggest(d(500.0), d(100.0), start), d(64.0));
        assert_eq!(v.suggest(d(0.01), d(HIGH), start), d(0.5));
    }
}
