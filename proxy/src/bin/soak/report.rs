//! What the soak measured at its quiet points, the checks on it, and the
//! summary line.

use std::fmt;
use std::time::Duration;

/// Resident memory may grow this much from the memory baseline to the last
/// quiet point.
const RSS_GROWTH_LIMIT_PCT: f64 = 10.0;

/// How long the proxy's bounded history takes to fill: the status page keeps
/// an hour of samples and a ring of events, so memory rises for that hour by
/// design. A run longer than this takes its memory baseline after it.
pub const WARM_UP: Duration = Duration::from_secs(3600);

/// The proxy's state at a quiet point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet {
    /// Whole minutes into the run.
    pub minute: u64,
    pub rss_kib: u64,
    pub fds: usize,
    pub tasks: f64,
}

/// Returns the quiet point memory growth is measured from: the first one
/// once the warm-up is over, if at least one more follows it; else the very
/// first. Files and tasks are always held to the very first.
pub fn rss_baseline(points: &[Quiet]) -> Option<Quiet> {
    let warm = WARM_UP.as_secs() / 60;
    match points.iter().position(|q| q.minute >= warm) {
        Some(i) if i + 1 < points.len() => Some(points[i]),
        _ => points.first().copied(),
    }
}

/// The figures of the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    pub minutes: f64,
    pub peak_rss_kib: u64,
    /// The first and the last quiet point, and the one memory growth is
    /// measured from (see [`rss_baseline`]).
    pub first: Quiet,
    pub rss_base: Quiet,
    pub last: Quiet,
    pub shares: f64,
    pub invariant_violations: u64,
    pub failures: usize,
}

impl Summary {
    /// Returns how much resident memory grew from the baseline to the last
    /// quiet point, in percent.
    pub fn rss_growth_pct(&self) -> f64 {
        let base = self.rss_base.rss_kib;
        if base == 0 {
            return 0.0;
        }
        (self.last.rss_kib as f64 - base as f64) * 100.0 / base as f64
    }

    /// Returns what grew that must not have.
    pub fn growth_failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let growth = self.rss_growth_pct();
        if growth > RSS_GROWTH_LIMIT_PCT {
            failures.push(format!(
                "resident memory grew {growth:.1}% from the quiet point at minute {} to the \
                 last (at most {RSS_GROWTH_LIMIT_PCT}%)",
                self.rss_base.minute
            ));
        }
        if self.last.fds > self.first.fds {
            failures.push(format!(
                "open files grew from {} to {}",
                self.first.fds, self.last.fds
            ));
        }
        if self.last.tasks > self.first.tasks {
            failures.push(format!(
                "tasks grew from {} to {}",
                self.first.tasks, self.last.tasks
            ));
        }
        failures
    }
}

impl fmt::Display for Summary {
    /// The line for machines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        write!(
            f,
            "soak minutes={:.0} peak_rss_mib={:.1} base_rss_mib={:.1} base_minute={} \
             final_rss_mib={:.1} rss_growth_pct={:.1} shares={:.0} invariant_violations={} fd_start={} fd_end={} tasks_start={} \
             tasks_end={} failures={}",
            self.minutes,
            mib(self.peak_rss_kib),
            mib(self.rss_base.rss_kib),
            self.rss_base.minute,
            mib(self.last.rss_kib),
            self.rss_growth_pct(),
            self.shares,
            self.invariant_violations,
            self.first.fds,
            self.last.fds,
            self.first.tasks,
            self.last.tasks,
            self.failures
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(rss_kib: u64, fds: usize, tasks: f64) -> Quiet {
        Quiet {
            minute: 0,
            rss_kib,
            fds,
            tasks,
        }
    }

    #[test]
    fn growth_past_the_limits_fails_and_flat_passes() {
        let flat = Summary {
            first: quiet(10_000, 16, 9.0),
            rss_base: quiet(10_000, 16, 9.0),
            last: quiet(10_900, 16, 9.0),
            ..Summary::default()
        };
        assert!(flat.growth_failures().is_empty());
        let grown = Summary {
            first: quiet(10_000, 16, 9.0),
            rss_base: quiet(10_000, 16, 9.0),
            last: quiet(11_100, 17, 10.0),
            ..Summary::default()
        };
        assert_eq!(grown.growth_failures().len(), 3);
    }

    #[test]
    fn the_summary_line_has_every_field() {
        let summary = Summary {
            minutes: 10.0,
            peak_rss_kib: 20 * 1024,
            first: quiet(16 * 1024, 16, 9.0),
            rss_base: quiet(16 * 1024, 16, 9.0),
            last: quiet(16 * 1024 + 512, 16, 9.0),
            shares: 1234.0,
            ..Summary::default()
        };
        assert_eq!(
            summary.to_string(),
            "soak minutes=10 peak_rss_mib=20.0 base_rss_mib=16.0 base_minute=0 \
             final_rss_mib=16.5 rss_growth_pct=3.1 shares=1234 invariant_violations=0 fd_start=16 fd_end=16 tasks_start=9 \
             tasks_end=9 failures=0"
        );
    }

    fn at(minute: u64, rss_kib: u64) -> Quiet {
        Quiet {
            minute,
            ..quiet(rss_kib, 16, 9.0)
        }
    }

    #[test]
    fn a_long_run_measures_memory_from_after_the_warm_up() {
        // Quiet points like the 66-minute run's: history fills for an hour.
        let long: Vec<Quiet> = [
            (4, 8_600),
            (44, 9_600),
            (49, 10_500),
            (64, 9_600),
            (69, 9_700),
        ]
        .into_iter()
        .map(|(m, kib)| at(m, kib))
        .collect();
        assert_eq!(rss_baseline(&long).map(|q| q.minute), Some(64));
        // Nothing after the warm-up to compare with: the first point serves.
        assert_eq!(rss_baseline(&long[..4]).map(|q| q.minute), Some(4));
        let short = [at(5, 8_000), at(10, 8_100)];
        assert_eq!(rss_baseline(&short).map(|q| q.minute), Some(5));
        assert_eq!(rss_baseline(&[]).map(|q| q.minute), None);
    }

    #[test]
    fn growth_after_the_warm_up_still_fails() {
        let grown = Summary {
            first: at(5, 8_000),
            rss_base: at(64, 10_000),
            last: at(120, 11_100),
            ..Summary::default()
        };
        let failures = grown.growth_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("minute 64"), "{failures:?}");
    }
}
