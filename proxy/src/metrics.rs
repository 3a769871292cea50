//! The proxy's Prometheus metrics, in one registry.
//!
//! Every share a miner submits is counted once in
//! `hashsplit_shares_submitted_total` and, when it is settled, once in
//! `hashsplit_shares_total{result, reason}`; until then it is in
//! `hashsplit_shares_in_flight`. So submitted = Σ shares_total + in flight,
//! per pool, at every scrape: [`shares`] is the only code that counts
//! them, through a share value that is settled exactly once
//! ([`Unsettled`]).
//!
//! Each pool's families are its owner's: a [`PoolSeries`] made with the
//! pool, registered by its owner and taken out when it is retired; no code
//! looks a pool's series up by its name. Label values are closed sets and
//! render themselves: pool names come from the TOML file, reasons from
//! [`Outcome`] and [`Disconnect`]; nothing a miner sends becomes a label
//! here, except in the opt-in, capped per-worker series of [`workers`].

mod disconnect;
mod pools;
mod shares;
mod workers;

pub use disconnect::Disconnect;
pub use pools::PoolSeries;
#[cfg(test)]
pub use shares::Tally;
pub use shares::{Outcome, PoolReject, ShareSeries, Unsettled};
pub use workers::{OVERFLOW, WorkerMetrics, WorkerSeries};

use prometheus::proto::MetricType;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The pool label of a share whose job is unknown (or that never named one).
pub const NO_POOL: &str = "none";

/// What became of a block sent to a node with `submitblock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockResult {
    /// The node took it (`submitblock` answered null).
    Accepted,
    /// The node refused it, with a reason (logged).
    Rejected,
    /// It could not be sent, or the node did not answer.
    Error,
}

impl BlockResult {
    /// Every result, so each series exists from the start.
    pub const ALL: [BlockResult; 3] = [
        BlockResult::Accepted,
        BlockResult::Rejected,
        BlockResult::Error,
    ];

    /// Returns the `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockResult::Accepted => "accepted",
            BlockResult::Rejected => "rejected",
            BlockResult::Error => "error",
        }
    }
}

/// Every metric the proxy exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// The share series of shares refused before their pool was known
    /// (each pool's are its owner's: see [`ShareSeries`]).
    no_pool: ShareSeries,
    /// Time to validate one share locally.
    pub share_validation_seconds: Histogram,
    /// Connected miners.
    pub downstream_connections: IntGauge,
    /// Miner connections accepted.
    pub downstream_connects: IntCounter,
    /// Miner connections closed, by reason: see [`Metrics::disconnected`].
    downstream_disconnects: IntCounterVec,
    /// Miners asked to reconnect: for a narrower extranonce2, or to move
    /// to another instance while this one drains.
    pub downstream_reconnect_requests: IntCounter,
    /// 1 while the proxy drains (SIGUSR1), else 0.
    pub draining: IntGauge,
    /// The policy's target share per pool.
    pub policy_target: GaugeVec,
    /// The configured cap per pool.
    pub policy_cap: GaugeVec,
    /// The share delivered over the policy window per pool.
    pub policy_delivered: GaugeVec,
    /// 1 when the healthy pools' caps can take all the hashrate.
    pub policy_feasible: Gauge,
    /// Observations the policy task could not take in time.
    pub policy_observations_dropped: IntCounter,
    /// Config reloads (SIGHUP) by result: `applied` or `rejected`.
    pub config_reloads: IntCounterVec,
    /// 1 if the latest reload was applied (or there was none), else 0.
    pub config_last_reload_successful: IntGauge,
    /// Control API requests refused for a missing or wrong token.
    pub api_unauthorized: IntCounter,
    /// Per-worker series (no-ops unless [`Metrics::with_per_worker`]).
    pub workers: WorkerMetrics,
    /// Tokio tasks alive in the runtime that scrapes, read at each
    /// [`Metrics::encode`]: flat over time unless tasks leak.
    pub tasks: IntGauge,
}

impl Metrics {
    /// Counts a reload of the config file (by SIGHUP or the API) as
    /// applied or refused, and records whether the latest one succeeded.
    pub fn count_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.config_reloads.with_label_values(&[result]).inc();
        self.config_last_reload_successful.set(i64::from(applied));
    }

    /// Counts a miner connection that ended, or was refused, for `reason`.
    pub fn disconnected(&self, reason: Disconnect) {
        self.downstream_disconnects
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Registers every metric, with a series for every pool and reason.
    pub fn new(pool_names: &[String]) -> Self {
        let registry = Registry::new();
        let m = Metrics {
            no_pool: ShareSeries::new(NO_POOL),
            share_validation_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hashsplit_share_validation_seconds",
                        "Time to validate one share locally",
                    )
                    .buckets(vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3]),
                ),
            ),
            downstream_connections: register(
                &registry,
                IntGauge::new("hashsplit_downstream_connections", "Connected miners"),
            ),
            downstream_connects: register(
                &registry,
                IntCounter::new(
                    "hashsplit_downstream_connects_total",
                    "Miner connections accepted",
                ),
            ),
            downstream_disconnects: counter_vec(
                &registry,
                "hashsplit_downstream_disconnects_total",
                "Miner connections closed, by reason",
                &["reason"],
            ),
            downstream_reconnect_requests: register(
                &registry,
                IntCounter::new(
                    "hashsplit_downstream_reconnect_requests_total",
                    "Miners asked to reconnect (client.reconnect): for an extranonce2 every pool can take, or to move elsewhere while the proxy drains",
                ),
            ),
            draining: register(
                &registry,
                IntGauge::new(
                    "hashsplit_draining",
                    "1 while the proxy drains (SIGUSR1): it takes no new miners and moves its own to other instances",
                ),
            ),
            policy_target: gauge_vec(
                &registry,
                "hashsplit_policy_target_ratio",
                "The policy's target share of hashrate per pool",
            ),
            policy_cap: gauge_vec(
                &registry,
                "hashsplit_policy_cap_ratio",
                "The configured cap on a pool's share of hashrate",
            ),
            policy_delivered: gauge_vec(
                &registry,
                "hashsplit_policy_delivered_ratio",
                "The share of hashrate delivered to a pool over the policy window",
            ),
            policy_feasible: register(
                &registry,
                Gauge::new(
                    "hashsplit_policy_feasible",
                    "1 when the healthy pools' caps can take all the hashrate",
                ),
            ),
            policy_observations_dropped: register(
                &registry,
                IntCounter::new(
                    "hashsplit_policy_observations_dropped_total",
                    "Observations the policy task could not take in time",
                ),
            ),
            config_reloads: counter_vec(
                &registry,
                "hashsplit_config_reloads_total",
                "Config reloads (SIGHUP or the control API), by result: applied or rejected",
                &["result"],
            ),
            config_last_reload_successful: register(
                &registry,
                IntGauge::new(
                    "hashsplit_config_last_reload_successful",
                    "1 if the latest config reload was applied (or there was none), 0 if it was rejected",
                ),
            ),
            api_unauthorized: register(
                &registry,
                IntCounter::new(
                    "hashsplit_api_unauthorized_total",
                    "Control API requests refused for a missing or wrong bearer token",
                ),
            ),
            workers: WorkerMetrics::disabled(),
            tasks: register(
                &registry,
                IntGauge::new(
                    "hashsplit_tasks",
                    "Tokio tasks alive in the proxy's runtime, read at each scrape",
                ),
            ),
            registry,
        };
        for result in ["applied", "rejected"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m.config_last_reload_successful.set(1);
        let build = register(
            &m.registry,
            IntGaugeVec::new(
                Opts::new("hashsplit_build_info", "Build information; always 1"),
                &["version"],
            ),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        // Create every series up front so dashboards see zeros, not gaps;
        // shares refused before a pool is known count under NO_POOL.
        m.no_pool
            .register(&m.registry)
            .expect("metric names are unique");
        for pool in pool_names {
            m.add_pool(pool);
        }
        for reason in Disconnect::ALL {
            m.downstream_disconnects
                .with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// Turns on the per-worker series (`[metrics] per_worker = true`), at
    /// most `max_workers` of them.
    pub fn with_per_worker(mut self, max_workers: usize) -> Self {
        self.workers =
            WorkerMetrics::new(&self.registry, max_workers).expect("metric names are unique");
        self
    }

    /// Creates `pool`'s policy series, so they show as zeros from the start
    /// (the policy task writes them).
    pub fn add_pool(&self, pool: &str) {
        for vec in [
            &self.policy_target,
            &self.policy_cap,
            &self.policy_delivered,
        ] {
            vec.with_label_values(&[pool]);
        }
    }

    /// Removes `pool`'s policy series.
    pub fn remove_pool(&self, pool: &str) {
        for vec in [
            &self.policy_target,
            &self.policy_cap,
            &self.policy_delivered,
        ] {
            // A series never touched is not there to remove.
            let _ = vec.remove_label_values(&[pool]);
        }
    }

    /// Makes a pool's series visible (the pool's owner calls it, and
    /// [`Metrics::remove_pool_series`] when the pool is retired).
    pub fn add_pool_series(&self, series: &PoolSeries) {
        if let Err(error) = series.register(&self.registry) {
            // Only a previous owner of the name still holding its series
            // could cause this, and owners of one name run in turn.
            tracing::error!(pool = %series.pool(), %error, "the pool's series cannot be registered");
        }
    }

    /// Takes a retired pool's series out of the exposition.
    pub fn remove_pool_series(&self, series: &PoolSeries) {
        series.unregister(&self.registry);
    }

    /// Creates and registers `pool`'s series, as its owner does.
    #[cfg(test)]
    pub fn pool_for_test(&self, pool: &str) -> PoolSeries {
        let series = PoolSeries::new(pool);
        self.add_pool_series(&series);
        series
    }

    /// Returns the share series of shares that belong to no pool.
    pub fn no_pool_shares(&self) -> &ShareSeries {
        &self.no_pool
    }

    /// Returns the registry (for the exporter and for tests).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Returns the text exposition of every metric.
    pub fn encode(&self) -> String {
        // Read here rather than kept up to date: it costs nothing between
        // scrapes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let alive = runtime.metrics().num_alive_tasks();
            self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("exposition is UTF-8")
    }

    /// Returns the sum of a metric's samples whose labels include every
    /// `(name, value)` pair given (tests and the demo read figures this way).
    ///
    /// # Panics
    /// If no metric has this name, so a misspelt name cannot pass for a
    /// zero (every family exists from the start, but the per-worker ones
    /// and those of pools, which exist while a pool does).
    pub fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        let mut found = metric.starts_with("hashsplit_worker_") || PoolSeries::has_family(metric);
        for family in self.registry.gather() {
            if family.name() != metric {
                continue;
            }
            found = true;
            for sample in family.get_metric() {
                let matches = labels.iter().all(|(name, value)| {
                    sample
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *name && l.value() == *value)
                });
                if matches {
                    total += sample_value(family.get_field_type(), sample);
                }
            }
        }
        assert!(found, "no metric is named {metric}");
        total
    }
}

fn sample_value(kind: MetricType, sample: &prometheus::proto::Metric) -> f64 {
    match kind {
        MetricType::COUNTER => sample.get_counter().get_value(),
        MetricType::GAUGE => sample.get_gauge().get_value(),
        MetricType::HISTOGRAM => sample.get_histogram().get_sample_count() as f64,
        _ => 0.0,
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: Result<C, prometheus::Error>,
) -> C {
    let collector = collector.expect("metric definition is valid");
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    register(registry, GaugeVec::new(Opts::new(name, help), &["pool"]))
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn every_series_exists_before_anything_happens() {
        let m = Metrics::new(&["a".into(), "b".into()]);
        let _pools = (m.pool_for_test("a"), m.pool_for_test("b"));
        let text = m.encode();
        assert!(
            text.contains(
                r#"hashsplit_shares_total{pool="none",reason="stale",result="rejected"} 0"#
            )
        );
        assert!(text.contains(r#"hashsplit_shares_submitted_total{pool="none"} 0"#));
        assert!(text.contains(r#"hashsplit_pool_up{pool="b"} 0"#));
        assert!(text.contains("hashsplit_build_info"));
        assert!(text.contains(r#"hashsplit_upstream_last_job_timestamp_seconds{pool="a"} 0"#));
    }

    #[test]
    fn per_worker_series_are_off_unless_asked_for() {
        let off = Metrics::new(&["a".into()]);
        let _held = off.workers.join("rig.1");
        off.workers.credit("rig.1", 1.0, SystemTime::now());
        assert!(!off.encode().contains("hashsplit_worker_"));

        let on = Metrics::new(&["a".into()]).with_per_worker(10);
        let _held = on.workers.join("rig.1");
        on.workers.credit("rig.1", 1.0, SystemTime::now());
        let text = on.encode();
        assert!(text.contains(r#"hashsplit_worker_credited_difficulty_total{worker="rig.1"} 1"#));
        assert!(text.contains(r#"hashsplit_worker_last_share_timestamp_seconds{worker="rig.1"}"#));
    }

    #[test]
    fn a_job_stamps_the_pool_with_the_time() {
        let m = Metrics::new(&["a".into()]);
        let a = m.pool_for_test("a");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        a.job_received();
        let stamp = m.sum(
            "hashsplit_upstream_last_job_timestamp_seconds",
            &[("pool", "a")],
        );
        assert!(stamp >= before.floor(), "{stamp} < {before}");
        assert_eq!(
            m.sum("hashsplit_upstream_jobs_total", &[("pool", "a")]),
            1.0
        );
    }

    #[tokio::test]
    async fn a_scrape_counts_the_tasks_alive() {
        let m = Metrics::new(&["a".into()]);
        m.encode();
        let before = m.sum("hashsplit_tasks", &[]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = stopped.await;
        });
        m.encode();
        assert_eq!(m.sum("hashsplit_tasks", &[]), before + 1.0);
        let _ = stop.send(());
        task.await.unwrap();
        m.encode();
        assert_eq!(m.sum("hashsplit_tasks", &[]), before);
    }
}
