//! Each pool's series, and only its owner's: [`PoolSeries`] is one
//! collector per pool (every family with a constant `pool` label), made
//! with the pool, registered by its owner and taken out when the pool is
//! retired. So no code labels a pool's series by name, a share or job
//! counted late by a retired pool cannot bring its series back, and the
//! next owner of the name starts with fresh ones.
//!
//! A new per-pool metric is a field here, a line in [`PoolSeries::new`]
//! and one in `PoolSeries::parts`.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::{BlockResult, ShareSeries};

/// The series of one pool. Cloning is a reference count.
#[derive(Debug, Clone)]
pub struct PoolSeries(Arc<Series>);

/// The series themselves, for the pool's code to count in.
#[derive(Debug)]
pub struct Series {
    /// Every share of the pool is submitted and settled through these.
    pub shares: ShareSeries,
    /// `hashsplit_pool_up`: 1 while the pool has a job and answers.
    pub up: IntGauge,
    /// `hashsplit_pool_quarantined`.
    pub quarantined: IntGauge,
    /// `hashsplit_pool_difficulty`: the pool's current share difficulty.
    pub difficulty: Gauge,
    /// `hashsplit_upstream_reconnects_total`.
    pub reconnects: IntCounter,
    /// `hashsplit_upstream_connections`.
    pub connections: IntGauge,
    jobs: IntCounter,
    last_job: Gauge,
    /// `hashsplit_upstream_submit_seconds`.
    pub submit_seconds: Histogram,
    /// `hashsplit_block_candidates_total`.
    pub block_candidates: IntCounter,
    /// `hashsplit_block_candidates_stale_total`.
    pub block_candidates_stale: IntCounter,
    blocks_submitted: IntCounterVec,
    /// `blocks_submitted` by [`BlockResult::ALL`].
    blocks_by_result: Vec<IntCounter>,
    /// `hashsplit_pool_switches_total`: miners moved onto the pool.
    pub switches: IntCounter,
}

impl PoolSeries {
    /// Creates the (unregistered) series of `pool`, every one at zero.
    pub fn new(pool: &str) -> Self {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("pool", pool);
        let valid = "a valid definition";
        let counter = |name, help| IntCounter::with_opts(opts(name, help)).expect(valid);
        let int_gauge = |name, help| IntGauge::with_opts(opts(name, help)).expect(valid);
        let gauge = |name, help| Gauge::with_opts(opts(name, help)).expect(valid);
        let blocks_submitted = IntCounterVec::new(
            opts(
                "hashsplit_blocks_submitted_total",
                "Blocks a node pool sent to its node with submitblock, by pool and result (accepted, rejected, error)",
            ),
            &["result"],
        )
        .expect(valid);
        let blocks_by_result = BlockResult::ALL
            .iter()
            .map(|result| blocks_submitted.with_label_values(&[result.as_str()]))
            .collect();
        PoolSeries(Arc::new(Series {
            shares: ShareSeries::new(pool),
            up: int_gauge(
                "hashsplit_pool_up",
                "1 while the pool has a job and answers",
            ),
            quarantined: int_gauge(
                "hashsplit_pool_quarantined",
                "1 while the pool gets no miners for refusing nearly every share",
            ),
            difficulty: gauge(
                "hashsplit_pool_difficulty",
                "The pool's current share difficulty",
            ),
            reconnects: counter(
                "hashsplit_upstream_reconnects_total",
                "Connection attempts to a pool after the first",
            ),
            connections: int_gauge(
                "hashsplit_upstream_connections",
                "Connections to the pool that are up: the first, and more while one connection's extranonce space is full",
            ),
            jobs: counter(
                "hashsplit_upstream_jobs_total",
                "Jobs (mining.notify) received from a pool",
            ),
            last_job: gauge(
                "hashsplit_upstream_last_job_timestamp_seconds",
                "Unix time of the pool's latest job (0: none yet)",
            ),
            submit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hashsplit_upstream_submit_seconds",
                    "Time from forwarding a share to the pool's answer",
                )
                .const_label("pool", pool)
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect(valid),
            block_candidates: counter(
                "hashsplit_block_candidates_total",
                "Shares meeting the network target, by pool",
            ),
            block_candidates_stale: counter(
                "hashsplit_block_candidates_stale_total",
                "Shares meeting the network target that came for a stale job (lost blocks), by pool",
            ),
            blocks_submitted,
            blocks_by_result,
            switches: counter(
                "hashsplit_pool_switches_total",
                "Miners moved onto a pool without reconnecting",
            ),
        }))
    }

    /// Returns the pool label.
    pub fn pool(&self) -> &str {
        self.0.shares.pool()
    }

    /// Makes the series visible in `registry`; fails if another owner of
    /// the pool name still has them (and then registers none).
    ///
    /// Each family is registered as a collector of its own: the registry
    /// tells collectors apart by the sum of their descriptors' hashes, and
    /// for names a bit apart (`pool0`, `pool2`) such sums over one pool's
    /// families collide; one family's hash does not.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let parts = self.parts();
        for (done, part) in parts.iter().enumerate() {
            if let Err(error) = registry.register(part.boxed()) {
                for registered in &parts[..done] {
                    let _ = registry.unregister(registered.boxed());
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Takes the series out of `registry`.
    pub fn unregister(&self, registry: &Registry) {
        for part in self.parts() {
            // Series never registered are not there to remove.
            let _ = registry.unregister(part.boxed());
        }
    }

    /// Records a job received from the pool, and when.
    pub fn job_received(&self) {
        self.0.jobs.inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.0.last_job.set(now);
    }

    /// Counts a block sent to the pool's node.
    pub fn block_submitted(&self, result: BlockResult) {
        let index = BlockResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("every result is in ALL");
        self.0.blocks_by_result[index].inc();
    }

    /// Records how long the pool took to answer a forwarded share.
    pub fn observe_submit(&self, elapsed: Duration) {
        self.0.submit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Returns whether `name` is one of a pool's families.
    pub fn has_family(name: &str) -> bool {
        static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
            PoolSeries::new("")
                .parts()
                .iter()
                .flat_map(|part| {
                    part.boxed()
                        .desc()
                        .iter()
                        .map(|desc| desc.fq_name.clone())
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        NAMES.iter().any(|known| known == name)
    }

    /// Every collector of the pool, for the registry.
    fn parts(&self) -> [Part<'_>; 16] {
        let s = &*self.0;
        let (submitted, in_flight, settled, credited) = s.shares.families();
        [
            Part::IntCounter(submitted),
            Part::IntGauge(in_flight),
            Part::IntCounterVec(settled),
            Part::CounterVec(credited),
            Part::IntGauge(&s.up),
            Part::IntGauge(&s.quarantined),
            Part::Gauge(&s.difficulty),
            Part::IntCounter(&s.reconnects),
            Part::IntGauge(&s.connections),
            Part::IntCounter(&s.jobs),
            Part::Gauge(&s.last_job),
            Part::Histogram(&s.submit_seconds),
            Part::IntCounter(&s.block_candidates),
            Part::IntCounter(&s.block_candidates_stale),
            Part::IntCounterVec(&s.blocks_submitted),
            Part::IntCounter(&s.switches),
        ]
    }
}

/// One family of a pool, as the registry takes it.
enum Part<'a> {
    IntCounter(&'a IntCounter),
    IntGauge(&'a IntGauge),
    Gauge(&'a Gauge),
    Histogram(&'a Histogram),
    IntCounterVec(&'a IntCounterVec),
    CounterVec(&'a prometheus::CounterVec),
}

impl Part<'_> {
    /// Returns a handle on the same family, for the registry.
    fn boxed(&self) -> Box<dyn Collector> {
        match self {
            Part::IntCounter(c) => Box::new((*c).clone()),
            Part::IntGauge(g) => Box::new((*g).clone()),
            Part::Gauge(g) => Box::new((*g).clone()),
            Part::Histogram(h) => Box::new((*h).clone()),
            Part::IntCounterVec(v) => Box::new((*v).clone()),
            Part::CounterVec(v) => Box::new((*v).clone()),
        }
    }
}

impl std::ops::Deref for PoolSeries {
    type Target = Series;

    fn deref(&self) -> &Series {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_pool_s_series_come_and_go_with_it() {
        let metrics = Metrics::new(&[]);
        assert_eq!(metrics.sum("hashsplit_pool_up", &[]), 0.0, "no pool yet");
        let a = metrics.pool_for_test("a");
        a.up.set(1);
        a.block_submitted(BlockResult::Rejected);
        let text = metrics.encode();
        assert!(text.contains(r#"hashsplit_pool_up{pool="a"} 1"#));
        assert!(text.contains(r#"hashsplit_blocks_submitted_total{pool="a",result="rejected"} 1"#));
        assert!(text.contains(r#"hashsplit_blocks_submitted_total{pool="a",result="accepted"} 0"#));
        assert!(text.contains(r#"hashsplit_shares_submitted_total{pool="a"} 0"#));
        // The next owner of the name cannot register while this one has it.
        assert!(PoolSeries::new("a").register(metrics.registry()).is_err());
        metrics.remove_pool_series(&a);
        a.up.set(1);
        assert!(!metrics.encode().contains(r#"pool="a""#));
        assert!(PoolSeries::new("a").register(metrics.registry()).is_ok());
    }

    #[test]
    fn pool_families_are_known_and_others_are_not() {
        assert!(PoolSeries::has_family("hashsplit_pool_up"));
        assert!(PoolSeries::has_family("hashsplit_shares_total"));
        assert!(!PoolSeries::has_family("hashsplit_pool_upp"));
    }
}

#[cfg(test)]
mod names_a_bit_apart {
    use crate::metrics::Metrics;

    #[test]
    fn pools_whose_names_differ_in_one_bit_all_register() {
        // With one collector per pool, pool2's descriptor hashes summed to
        // one already taken by pool0 and pool1's.
        let metrics = Metrics::new(&[]);
        let names = ["pool0", "pool1", "pool2", "pool3", "a", "b", "c"];
        let pools: Vec<_> = names.map(super::PoolSeries::new).into();
        for pool in &pools {
            pool.register(metrics.registry()).unwrap();
            pool.up.set(1);
        }
        assert_eq!(metrics.sum("hashsplit_pool_up", &[]), names.len() as f64);
    }
}
