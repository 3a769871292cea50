//! What the soak measured at its quiet points, the checks on it, and the
//! summary line.

use std::fmt;

/// Resident memory may grow this much from the first quiet point to the
/// last.
const RSS_GROWTH_LIMIT_PCT: f64 = 10.0;

/// The proxy's state at a quiet point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet {
    pub rss_kib: u64,
    pub fds: usize,
    pub tasks: f64,
}

/// The figures of the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    pub minutes: f64,
    pub peak_rss_kib: u64,
    /// The first and the last quiet point.
    pub first: Quiet,
    pub last: Quiet,
    pub shares: f64,
    pub invariant_violations: u64,
    pub failures: usize,
}

impl Summary {
    /// Returns how much resident memory grew between the quiet points, in
    /// percent.
    pub fn rss_growth_pct(&self) -> f64 {
        if self.first.rss_kib == 0 {
            return 0.0;
        }
        (self.last.rss_kib as f64 - self.first.rss_kib as f64) * 100.0 / self.first.rss_kib as f64
    }

    /// Returns what grew that must not have.
    pub fn growth_failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let growth = self.rss_growth_pct();
        if growth > RSS_GROWTH_LIMIT_PCT {
            failures.push(format!(
                "resident memory grew {growth:.1}% between the first and the last quiet point \
                 (at most {RSS_GROWTH_LIMIT_PCT}%)"
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
            "soak minutes={:.0} peak_rss_mib={:.1} final_rss_mib={:.1} rss_growth_pct={:.1} \
             shares={:.0} invariant_violations={} fd_start={} fd_end={} tasks_start={} \
             tasks_end={} failures={}",
            self.minutes,
            mib(self.peak_rss_kib),
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
            rss_kib,
            fds,
            tasks,
        }
    }

    #[test]
    fn growth_past_the_limits_fails_and_flat_passes() {
        let flat = Summary {
            first: quiet(10_000, 16, 9.0),
            last: quiet(10_900, 16, 9.0),
            ..Summary::default()
        };
        assert!(flat.growth_failures().is_empty());
        let grown = Summary {
            first: quiet(10_000, 16, 9.0),
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
            last: quiet(16 * 1024 + 512, 16, 9.0),
            shares: 1234.0,
            ..Summary::default()
        };
        assert_eq!(
            summary.to_string(),
            "soak minutes=10 peak_rss_mib=20.0 final_rss_mib=16.5 rss_growth_pct=3.1 \
             shares=1234 invariant_violations=0 fd_start=16 fd_end=16 tasks_start=9 \
             tasks_end=9 failures=0"
        );
    }
}
