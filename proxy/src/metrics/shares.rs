//! Share accounting: the one place share counters change.
//!
//! A miner's submit becomes an [`Unsettled`] share the moment its pool is
//! known ([`ShareSeries::submit`]): counted in
//! `hashsplit_shares_submitted_total` and `hashsplit_shares_in_flight`.
//! Settling it ([`Unsettled::settle`]) consumes it, so it is settled at most
//! once; dropping it unsettled (a queue or connection that went away with
//! it) settles it as `pool-unavailable` and logs it, so it is settled at
//! least once. Every share counter is private to this module: the
//! invariant submitted = Σ `hashsplit_shares_total` + in flight holds per
//! pool whatever path a share takes.
//!
//! Each pool's share series are its own collector ([`ShareSeries`], with a
//! constant `pool` label), registered by the pool's owner and unregistered
//! when the pool is retired, so a share settled late by a retired pool
//! cannot bring its series back, and the next owner of the name starts
//! with fresh ones.

use std::sync::Arc;

use hashsplit_stratum::{Reject, StratumError};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, CounterVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tracing::warn;

/// How a share was settled, beyond the local [`Reject`] reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid at the miner's difficulty, below the pool's: credited, not sent.
    AcceptedLocal,
    /// Forwarded and accepted by the pool.
    AcceptedByPool,
    /// Refused by local validation.
    Rejected(Reject),
    /// Refused by the pool, with its error code mapped to a reason.
    RejectedByPool(PoolReject),
    /// The pool did not answer within the bounded wait.
    PoolTimeout,
    /// The pool was down or its connection dropped before it answered.
    PoolUnavailable,
}

/// A pool's refusal, by the customary code it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolReject {
    /// Code 21.
    Stale,
    /// Code 22.
    Duplicate,
    /// Code 23.
    LowDifficulty,
    /// Any other code or message.
    Other,
}

impl PoolReject {
    /// Every reason, in the order of their series.
    pub const ALL: [PoolReject; 4] = [
        PoolReject::Stale,
        PoolReject::Duplicate,
        PoolReject::LowDifficulty,
        PoolReject::Other,
    ];

    /// Returns the reason for a pool's error code.
    pub fn from_code(code: i64) -> Self {
        PoolReject::ALL
            .into_iter()
            .find(|reject| reject.code() == code)
            .unwrap_or(PoolReject::Other)
    }

    /// Returns the customary code for this reason (the one table is
    /// [`StratumError`]'s).
    pub fn code(self) -> i64 {
        match self {
            PoolReject::Stale => StratumError::JOB_NOT_FOUND,
            PoolReject::Duplicate => StratumError::DUPLICATE,
            PoolReject::LowDifficulty => StratumError::LOW_DIFFICULTY,
            PoolReject::Other => StratumError::OTHER,
        }
    }

    /// Returns the error a miner is sent for the pool's refusal.
    pub fn to_error(self) -> StratumError {
        let message = match self {
            PoolReject::Stale => "stale (pool)",
            PoolReject::Duplicate => "duplicate (pool)",
            PoolReject::LowDifficulty => "low difficulty (pool)",
            PoolReject::Other => "rejected by the pool",
        };
        StratumError::new(self.code(), message)
    }
}

impl Outcome {
    /// Every outcome with a label of its own, in the order of
    /// [`Outcome::index`].
    pub fn all() -> impl Iterator<Item = Outcome> {
        [Outcome::AcceptedLocal, Outcome::AcceptedByPool]
            .into_iter()
            .chain(Reject::ALL.map(Outcome::Rejected))
            .chain(PoolReject::ALL.map(Outcome::RejectedByPool))
            .chain([Outcome::PoolTimeout, Outcome::PoolUnavailable])
    }

    /// Returns the outcome's position in [`Outcome::all`].
    pub fn index(self) -> usize {
        const BY_POOL: usize = 2 + Reject::ALL.len();
        const LAST: usize = BY_POOL + PoolReject::ALL.len();
        match self {
            Outcome::AcceptedLocal => 0,
            Outcome::AcceptedByPool => 1,
            Outcome::Rejected(reject) => {
                debug_assert!(reject.index() < Reject::ALL.len(), "{reject:?} not in ALL");
                2 + reject.index()
            }
            Outcome::RejectedByPool(reject) => {
                debug_assert!((reject as usize) < PoolReject::ALL.len(), "{reject:?}");
                BY_POOL + reject as usize
            }
            Outcome::PoolTimeout => LAST,
            Outcome::PoolUnavailable => LAST + 1,
        }
    }

    /// Returns whether the share was accepted.
    pub fn is_accepted(self) -> bool {
        matches!(self, Outcome::AcceptedLocal | Outcome::AcceptedByPool)
    }

    /// Returns the `result` label: `accepted` or `rejected`.
    pub fn result(self) -> &'static str {
        if self.is_accepted() {
            "accepted"
        } else {
            "rejected"
        }
    }

    /// Returns the `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::AcceptedLocal => "below-pool-target",
            Outcome::AcceptedByPool => "pool-accepted",
            Outcome::Rejected(reject) => reject.as_str(),
            Outcome::RejectedByPool(PoolReject::Stale) => "pool-stale",
            Outcome::RejectedByPool(PoolReject::Duplicate) => "pool-duplicate",
            Outcome::RejectedByPool(PoolReject::LowDifficulty) => "pool-low-difficulty",
            Outcome::RejectedByPool(PoolReject::Other) => "pool-other",
            Outcome::PoolTimeout => "pool-timeout",
            Outcome::PoolUnavailable => "pool-unavailable",
        }
    }
}

/// The share series of one `pool` label: a collector of its own, with
/// every series created up front (dashboards see zeros, not gaps) and
/// looked up once, not by label on every share. Cloning is a reference
/// count.
#[derive(Debug, Clone)]
pub struct ShareSeries(Arc<Series>);

#[derive(Debug)]
struct Series {
    pool: Arc<str>,
    submitted: IntCounter,
    in_flight: IntGauge,
    settled_vec: IntCounterVec,
    credited_vec: CounterVec,
    /// `settled_vec`'s series by [`Outcome::index`].
    settled: Vec<IntCounter>,
    credited_accepted: Counter,
    credited_rejected: Counter,
}

impl ShareSeries {
    /// Creates the (unregistered) share series of `pool`.
    pub fn new(pool: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("pool", pool);
        let submitted = IntCounter::with_opts(opts(
            "hashsplit_shares_submitted_total",
            "Shares miners submitted, by the pool of their job",
        ))
        .expect("a valid definition");
        let in_flight = IntGauge::with_opts(opts(
            "hashsplit_shares_in_flight",
            "Shares submitted and not settled yet (forwarded to a pool and not yet answered)",
        ))
        .expect("a valid definition");
        let settled_vec = IntCounterVec::new(
            opts(
                "hashsplit_shares_total",
                "Settled shares by pool, result and reason",
            ),
            &["result", "reason"],
        )
        .expect("a valid definition");
        let credited_vec = CounterVec::new(
            opts(
                "hashsplit_credited_difficulty_total",
                "Share difficulty credited to miners, by pool and result (hashrate = rate x 2^32)",
            ),
            &["result"],
        )
        .expect("a valid definition");
        let settled = Outcome::all()
            .map(|o| settled_vec.with_label_values(&[o.result(), o.reason()]))
            .collect();
        let credited_accepted = credited_vec.with_label_values(&["accepted"]);
        let credited_rejected = credited_vec.with_label_values(&["rejected"]);
        ShareSeries(Arc::new(Series {
            pool: Arc::from(pool),
            submitted,
            in_flight,
            settled_vec,
            credited_vec,
            settled,
            credited_accepted,
            credited_rejected,
        }))
    }

    /// Returns the pool label.
    pub fn pool(&self) -> &str {
        &self.0.pool
    }

    /// Returns the four families, for a pool's series to register one by
    /// one (see [`super::PoolSeries::register`]).
    pub(super) fn families(&self) -> (&IntCounter, &IntGauge, &IntCounterVec, &CounterVec) {
        let series = &self.0;
        (
            &series.submitted,
            &series.in_flight,
            &series.settled_vec,
            &series.credited_vec,
        )
    }

    /// Makes the series visible in `registry`; fails if another collector
    /// has them (the previous owner of the pool name has not let go).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.clone()))
    }

    /// Takes the series out of `registry`: shares settled after this are
    /// counted where nobody reads them.
    pub fn unregister(&self, registry: &Registry) {
        // Series never registered are not there to remove.
        let _ = registry.unregister(Box::new(self.clone()));
    }

    /// Counts a submitted share of this pool, to be settled, crediting
    /// `credited` difficulty to its miner when it is (0 for none).
    pub fn submit(&self, credited: f64) -> Unsettled {
        self.0.submitted.inc();
        self.0.in_flight.inc();
        Unsettled {
            series: Some(self.clone()),
            credited,
        }
    }

    /// Returns how many shares were submitted, settled with `outcome`,
    /// settled in all, and are in flight (for tests: the counts stay
    /// readable after the series left the registry).
    #[cfg(test)]
    pub fn tally(&self, outcome: Outcome) -> Tally {
        let series = &self.0;
        Tally {
            submitted: series.submitted.get(),
            with_outcome: series.settled[outcome.index()].get(),
            settled: series.settled.iter().map(IntCounter::get).sum(),
            in_flight: series.in_flight.get(),
        }
    }

    fn count(&self, outcome: Outcome, credited: f64) {
        let series = &self.0;
        series.in_flight.dec();
        series.settled[outcome.index()].inc();
        if credited > 0.0 {
            let counter = if outcome.is_accepted() {
                &series.credited_accepted
            } else {
                &series.credited_rejected
            };
            counter.inc_by(credited);
        }
    }
}

/// A pool's share counts at one moment (see [`ShareSeries::tally`]).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub submitted: u64,
    pub with_outcome: u64,
    pub settled: u64,
    pub in_flight: i64,
}

impl Collector for ShareSeries {
    fn desc(&self) -> Vec<&Desc> {
        let series = &self.0;
        let mut descs = series.submitted.desc();
        descs.extend(series.in_flight.desc());
        descs.extend(series.settled_vec.desc());
        descs.extend(series.credited_vec.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = &self.0;
        let mut families = series.submitted.collect();
        families.extend(series.in_flight.collect());
        families.extend(series.settled_vec.collect());
        families.extend(series.credited_vec.collect());
        families
    }
}

/// A submitted share not settled yet. Settling consumes it; dropping it
/// settles it as `pool-unavailable` (and logs it), so every share is
/// counted settled exactly once.
#[derive(Debug)]
#[must_use = "a share is settled by `settle`; dropping it counts it as pool-unavailable"]
pub struct Unsettled {
    /// `None` once settled.
    series: Option<ShareSeries>,
    credited: f64,
}

impl Unsettled {
    /// Counts the share's outcome, and the difficulty credited to its
    /// miner under the outcome's result.
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(series) = self.series.take() {
            series.count(outcome, self.credited);
        }
    }

    /// Returns the difficulty credited to the miner (0 for none).
    pub fn credited(&self) -> f64 {
        self.credited
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(series) = self.series.take() {
            warn!(pool = %series.pool(), "a share was dropped before it was settled; counted as pool-unavailable");
            series.count(Outcome::PoolUnavailable, self.credited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn sum(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
        metrics.sum(name, labels)
    }

    /// Asserts submitted = settled + in flight for `pool`.
    fn balanced(metrics: &Metrics, pool: &str) -> (f64, f64, f64) {
        let by = [("pool", pool)];
        let submitted = sum(metrics, "hashsplit_shares_submitted_total", &by);
        let settled = sum(metrics, "hashsplit_shares_total", &by);
        let in_flight = sum(metrics, "hashsplit_shares_in_flight", &by);
        assert_eq!(submitted, settled + in_flight, "{pool}");
        (submitted, settled, in_flight)
    }

    #[test]
    fn every_outcome_has_its_own_index_and_label() {
        let all: Vec<_> = Outcome::all().collect();
        for (i, outcome) in all.iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
        let mut labels: Vec<_> = all.iter().map(|o| o.reason()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        for reject in Reject::ALL {
            assert!(labels.contains(&reject.as_str()), "{reject:?}");
        }
        for reject in PoolReject::ALL {
            assert_eq!(PoolReject::from_code(reject.code()), reject);
        }
    }

    #[test]
    fn a_share_is_in_flight_until_settled_then_counted_once_by_its_outcome() {
        let metrics = Metrics::new(&[]);
        let series = ShareSeries::new("a");
        series.register(metrics.registry()).unwrap();
        let share = series.submit(2.0);
        assert_eq!(balanced(&metrics, "a"), (1.0, 0.0, 1.0));
        share.settle(Outcome::AcceptedByPool);
        assert_eq!(balanced(&metrics, "a"), (1.0, 1.0, 0.0));
        let accepted = [("pool", "a"), ("reason", "pool-accepted")];
        assert_eq!(sum(&metrics, "hashsplit_shares_total", &accepted), 1.0);
        let credited = [("pool", "a"), ("result", "accepted")];
        assert_eq!(
            sum(&metrics, "hashsplit_credited_difficulty_total", &credited),
            2.0
        );

        series
            .submit(3.0)
            .settle(Outcome::RejectedByPool(PoolReject::from_code(23)));
        series.submit(0.0).settle(Outcome::Rejected(Reject::BadHex(
            hashsplit_stratum::Field::Nonce,
        )));
        assert_eq!(balanced(&metrics, "a"), (3.0, 3.0, 0.0));
        let refused = [("pool", "a"), ("result", "rejected")];
        assert_eq!(
            sum(&metrics, "hashsplit_credited_difficulty_total", &refused),
            3.0
        );
        let bad_hex = [("pool", "a"), ("reason", "bad-hex")];
        assert_eq!(sum(&metrics, "hashsplit_shares_total", &bad_hex), 1.0);
    }

    #[test]
    fn a_share_dropped_unsettled_counts_as_pool_unavailable() {
        let metrics = Metrics::new(&[]);
        let series = ShareSeries::new("a");
        series.register(metrics.registry()).unwrap();
        let share = series.submit(1.0);
        drop(share);
        assert_eq!(balanced(&metrics, "a"), (1.0, 1.0, 0.0));
        let unavailable = [("pool", "a"), ("reason", "pool-unavailable")];
        assert_eq!(sum(&metrics, "hashsplit_shares_total", &unavailable), 1.0);
    }

    #[test]
    fn each_pool_has_its_own_series_and_unregistered_ones_leave_the_exposition() {
        let metrics = Metrics::new(&[]);
        let a = ShareSeries::new("a");
        let b = ShareSeries::new("b");
        a.register(metrics.registry()).unwrap();
        b.register(metrics.registry()).unwrap();
        // The same pool name twice: the first must let go first.
        assert!(ShareSeries::new("a").register(metrics.registry()).is_err());
        a.submit(0.0).settle(Outcome::AcceptedLocal);
        let text = metrics.encode();
        assert!(text.contains(
            r#"hashsplit_shares_total{pool="a",reason="below-pool-target",result="accepted"} 1"#
        ));
        assert!(text.contains(
            r#"hashsplit_shares_total{pool="b",reason="pool-timeout",result="rejected"} 0"#
        ));
        a.unregister(metrics.registry());
        // Settled after its pool was retired: counted, but not exposed.
        a.submit(0.0).settle(Outcome::PoolUnavailable);
        let text = metrics.encode();
        assert!(!text.contains(r#"pool="a""#));
        assert!(text.contains(r#"hashsplit_shares_in_flight{pool="b"} 0"#));
        let again = ShareSeries::new("a");
        again.register(metrics.registry()).unwrap();
        assert_eq!(balanced(&metrics, "a"), (0.0, 0.0, 0.0));
    }
}
