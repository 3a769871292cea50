//! Units and ids the engine speaks in: [`Instant`], [`Work`], [`Hashrate`],
//! [`Ratio`], [`PoolId`] and [`MinerId`].
//!
//! [`Work`] and [`Hashrate`] are the only ones in the workspace: the wire
//! crate speaks difficulty and targets, and the proxy converts at the
//! boundary (a share at difficulty `d` is `d · 2^32` expected hashes of
//! [`Work`]).

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: how long after an origin the caller picks.
///
/// The engine never reads a clock. The simulator's virtual clock starts at
/// zero; the proxy maps `tokio::time::Instant - start` onto this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// Returns the instant `since_origin` after the origin.
    pub const fn from_duration(since_origin: Duration) -> Self {
        Instant(since_origin)
    }

    /// Returns the instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(Duration::from_secs(secs))
    }

    /// Returns the time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Returns the time since the origin in seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Returns `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Returns `self - by`, or the origin if that would be before it.
    pub fn saturating_sub(self, by: Duration) -> Instant {
        Instant(self.0.saturating_sub(by))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0 + rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Returns the time between two instants, zero if `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.1}s", self.0.as_secs_f64())
    }
}

/// Expected hashes behind credited shares (share difficulty × 2^32).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Work(f64);

impl Work {
    /// No work.
    pub const ZERO: Work = Work(0.0);

    /// Returns the work of `hashes` expected hashes; negative or non-finite
    /// inputs count as no work, since credited work can only add up.
    pub fn from_hashes(hashes: f64) -> Self {
        if hashes.is_finite() && hashes > 0.0 {
            Work(hashes)
        } else {
            Work(0.0)
        }
    }

    /// Returns the work behind one share at `difficulty` (pool difficulty 1
    /// stands for 2^32 hashes).
    pub fn from_difficulty(difficulty: f64) -> Self {
        Work::from_hashes(difficulty * 4_294_967_296.0)
    }

    /// Returns the expected hashes.
    pub fn as_hashes(self) -> f64 {
        self.0
    }
}

/// Hashes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Hashrate(f64);

impl Hashrate {
    /// No hashrate.
    pub const ZERO: Hashrate = Hashrate(0.0);

    /// Returns the hashrate of `hashes_per_second`; negative or non-finite
    /// inputs count as zero.
    pub fn from_hashes_per_sec(hashes_per_second: f64) -> Self {
        if hashes_per_second.is_finite() && hashes_per_second > 0.0 {
            Hashrate(hashes_per_second)
        } else {
            Hashrate(0.0)
        }
    }

    /// Returns hashes per second.
    pub fn as_hashes_per_sec(self) -> f64 {
        self.0
    }

    /// Returns the work this hashrate delivers in `over`.
    pub fn work_over(self, over: Duration) -> Work {
        Work::from_hashes(self.0 * over.as_secs_f64())
    }
}

impl fmt::Display for Hashrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIXES: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
        let mut value = self.0;
        let mut prefix = 0;
        while value >= 1000.0 && prefix + 1 < PREFIXES.len() {
            value /= 1000.0;
            prefix += 1;
        }
        write!(f, "{value:.3}{}H/s", PREFIXES[prefix])
    }
}

/// A fraction in `[0, 1]`, such as a cap or a share of hashrate.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Ratio(f64);

impl Ratio {
    /// Zero.
    pub const ZERO: Ratio = Ratio(0.0);
    /// One: everything.
    pub const ONE: Ratio = Ratio(1.0);

    /// Returns the ratio, or `None` unless `value` is finite and in `[0, 1]`.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=1.0).contains(&value)).then_some(Ratio(value))
    }

    /// Returns the ratio as a float.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}", self.0)
    }
}

/// A pool: its index in the file's `[[pool]]` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub usize);

impl PoolId {
    /// Returns the index of the pool in file order.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pool#{}", self.0)
    }
}

/// A miner: an opaque id the caller chooses and keeps for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MinerId(pub u64);

impl fmt::Display for MinerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "miner#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_of_difficulty_one_is_two_to_the_32() {
        assert_eq!(Work::from_difficulty(1.0).as_hashes(), 4_294_967_296.0);
        assert_eq!(Work::from_difficulty(-3.0), Work::ZERO);
    }

    #[test]
    fn ratio_rejects_values_outside_zero_one() {
        assert!(Ratio::new(1.0).is_some());
        assert!(Ratio::new(0.0).is_some());
        assert!(Ratio::new(1.01).is_none());
        assert!(Ratio::new(f64::NAN).is_none());
    }

    #[test]
    fn hashrate_displays_with_si_prefix() {
        assert_eq!(
            Hashrate::from_hashes_per_sec(110e12).to_string(),
            "110.000TH/s"
        );
    }

    #[test]
    fn instant_difference_saturates() {
        let a = Instant::from_secs(5);
        let b = Instant::from_secs(7);
        assert_eq!(b - a, Duration::from_secs(2));
        assert_eq!(a - b, Duration::ZERO);
    }
}
