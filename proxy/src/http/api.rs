//! The read side of `/api/v1/`: JSON built from the latest plan, the
//! history task's snapshot and the metrics, never from a lock.

use std::sync::Arc;

use hashsplit_policy::Assignment;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::history::Snapshot;
use crate::directory::MinerDirectory;
use crate::metrics::Metrics;

/// Miners listed by `/api/v1/miners` unless `?limit=` says otherwise.
pub const MINERS_SHOWN: usize = 100;
/// Most miners `/api/v1/miners` lists, whatever `?limit=` says.
pub const MINERS_MAX: usize = 1000;

/// What the read endpoints read.
#[derive(Debug, Clone)]
pub struct View {
    /// The proxy's metrics.
    pub metrics: Metrics,
    /// The latest plan.
    pub assignment: watch::Receiver<Arc<Assignment>>,
    /// The history task's latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Each miner's authorized workers.
    pub directory: Arc<MinerDirectory>,
    /// Whether control requests are taken.
    pub control: bool,
}

impl View {
    /// `GET /api/v1/status`: the proxy in one object.
    pub fn status(&self) -> Value {
        let plan = Arc::clone(&self.assignment.borrow());
        let snapshot = Arc::clone(&self.snapshot.borrow());
        let pools_up = snapshot.pools.iter().filter(|p| p.state == "up").count();
        let hashrate: f64 = plan
            .pools
            .iter()
            .map(|p| p.hashrate.as_hashes_per_sec())
            .sum();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": snapshot.uptime_seconds,
            "miners_connected": self.metrics.downstream_connections.get(),
            "miners_assigned": plan.miner_count(),
            "hashrate": hashrate,
            "pools": snapshot.pools.len(),
            "pools_up": pools_up,
            "feasible": plan.feasible,
            "network_fallback": plan.network_fallback,
            "switches": plan.switches,
            "last_reload_successful": self.metrics.config_last_reload_successful.get() == 1,
            "control": self.control,
        })
    }

    /// `GET /api/v1/pools`: each pool's row.
    pub fn pools(&self) -> Value {
        json!({ "pools": self.snapshot.borrow().pools })
    }

    /// `GET /api/v1/history`: the chart's samples, oldest first.
    pub fn history(&self) -> Value {
        let snapshot = self.snapshot.borrow();
        json!({ "sample_every": snapshot.sample_every, "samples": snapshot.samples })
    }

    /// `GET /api/v1/events`: recent events, newest first.
    pub fn events(&self) -> Value {
        let snapshot = self.snapshot.borrow();
        let events: Vec<_> = snapshot.events.iter().rev().collect();
        json!({ "events": events })
    }

    /// `GET /api/v1/miners?limit=N`: how many miners, their hashrate, and
    /// the `limit` biggest with their workers (the first few names and how
    /// many), pool and estimate.
    pub fn miners(&self, query: Option<&str>) -> Value {
        let limit = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("limit="))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(MINERS_SHOWN)
            .min(MINERS_MAX);
        let plan = Arc::clone(&self.assignment.borrow());
        let mut miners: Vec<_> = plan.miner_rates().collect();
        let total: f64 = miners
            .iter()
            .map(|(_, _, rate)| rate.as_hashes_per_sec())
            .sum();
        let count = miners.len();
        miners.sort_by(|a, b| {
            b.2.as_hashes_per_sec()
                .total_cmp(&a.2.as_hashes_per_sec())
                .then(a.0.cmp(&b.0))
        });
        miners.truncate(limit);
        let workers = self
            .directory
            .workers_of(miners.iter().map(|(miner, _, _)| *miner));
        let listed: Vec<Value> = miners
            .into_iter()
            .zip(workers)
            .map(|((miner, pool, rate), workers)| {
                json!({
                    "id": miner.0,
                    "workers": workers.names.iter().map(|name| &**name).collect::<Vec<_>>(),
                    "worker_count": workers.count,
                    "pool": plan.pools.get(pool.index()).map(|p| p.name.as_str()),
                    "hashrate": rate.as_hashes_per_sec(),
                })
            })
            .collect();
        json!({
            "count": count,
            "connected": self.metrics.downstream_connections.get(),
            "hashrate": total,
            "miners": listed,
        })
    }
}
