//! Each pool's series: created when the pool is configured (so dashboards
//! see zeros, not gaps) and removed when a reload takes the pool out (so
//! no alert watches a pool that is gone).

use prometheus::core::{MetricVec, MetricVecBuilder};

use super::Metrics;

#[derive(Clone, Copy)]
enum Touch {
    Create,
    Remove,
}

impl Touch {
    fn apply<T: MetricVecBuilder>(self, vec: &MetricVec<T>, labels: &[&str]) {
        match self {
            Touch::Create => {
                vec.with_label_values(labels);
            }
            Touch::Remove => {
                // A series never touched is not there to remove.
                let _ = vec.remove_label_values(labels);
            }
        }
    }
}

impl Metrics {
    /// Creates every series of `pool`.
    pub fn add_pool(&self, pool: &str) {
        self.each_pool_series(pool, Touch::Create);
    }

    /// Removes every series of `pool`.
    pub fn remove_pool(&self, pool: &str) {
        self.each_pool_series(pool, Touch::Remove);
    }

    fn each_pool_series(&self, pool: &str, touch: Touch) {
        touch.apply(&self.block_candidates, &[pool]);
        touch.apply(&self.block_candidates_stale, &[pool]);
        for result in super::BlockResult::ALL {
            touch.apply(&self.blocks_submitted, &[pool, result.as_str()]);
        }
        touch.apply(&self.pool_up, &[pool]);
        touch.apply(&self.pool_quarantined, &[pool]);
        touch.apply(&self.pool_difficulty, &[pool]);
        touch.apply(&self.upstream_reconnects, &[pool]);
        touch.apply(&self.upstream_connections, &[pool]);
        touch.apply(&self.upstream_jobs, &[pool]);
        touch.apply(&self.upstream_last_job, &[pool]);
        touch.apply(&self.upstream_submit_seconds, &[pool]);
        touch.apply(&self.switches, &[pool]);
        touch.apply(&self.policy_target, &[pool]);
        touch.apply(&self.policy_cap, &[pool]);
        touch.apply(&self.policy_delivered, &[pool]);
    }
}

/// The series of one pool that every forwarded share touches, looked up
/// once rather than by label on each share (its share counters are its
/// [`super::ShareSeries`]).
#[derive(Debug, Clone)]
pub struct PoolSeries {
    /// `hashsplit_upstream_submit_seconds{pool}`.
    pub submit_seconds: prometheus::Histogram,
}

impl Metrics {
    /// Returns `pool`'s share-path series. Take them after
    /// [`Metrics::add_pool`]: a later [`Metrics::remove_pool`] detaches them.
    pub fn pool_series(&self, pool: &str) -> PoolSeries {
        PoolSeries {
            submit_seconds: self.upstream_submit_seconds.with_label_values(&[pool]),
        }
    }
}
