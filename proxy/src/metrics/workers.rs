//! Per-worker series, opt-in with `[metrics] per_worker = true`.
//!
//! Worker names come from miners, so they are untrusted: a name becomes a
//! label value only truncated to [`MAX_LABEL_CHARS`], at most `max_workers`
//! names have series of their own, and the rest share the label value
//! [`OVERFLOW`]. A worker's series exist while at least one connection has it
//! authorized ([`WorkerMetrics::join`] returns a guard per connection) and
//! are removed when the last one leaves, so series do not pile up as
//! workers come and go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{CounterVec, GaugeVec, Opts, Registry};

/// Label value shared by the workers past `max_workers`.
pub const OVERFLOW: &str = "_other";
/// Longest label value taken from a worker name, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// The per-worker series; a no-op when per-worker metrics are off.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    credited: CounterVec,
    last_share: GaugeVec,
    max_workers: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Live workers by label key (the truncated name).
    workers: HashMap<String, Entry>,
    /// Workers with series of their own.
    own: usize,
    /// Workers folded into [`OVERFLOW`].
    overflowed: usize,
}

#[derive(Debug)]
struct Entry {
    /// Connections that have this worker authorized.
    refs: usize,
    /// Whether the worker has series of its own (else it is in OVERFLOW).
    own: bool,
}

/// One connection's hold on a worker's series; dropping it is the
/// connection leaving.
#[derive(Debug)]
#[must_use = "the worker's series are removed when this is dropped"]
pub struct WorkerSeries {
    inner: Arc<Inner>,
    key: String,
}

impl WorkerMetrics {
    /// Registers the per-worker metrics in `registry`.
    pub fn new(registry: &Registry, max_workers: usize) -> Result<Self, prometheus::Error> {
        let credited = CounterVec::new(
            Opts::new(
                "hashsplit_worker_credited_difficulty_total",
                "Share difficulty credited to a worker (hashrate = rate x 2^32)",
            ),
            &["worker"],
        )?;
        let last_share = GaugeVec::new(
            Opts::new(
                "hashsplit_worker_last_share_timestamp_seconds",
                "Unix time of the worker's last credited share",
            ),
            &["worker"],
        )?;
        registry.register(Box::new(credited.clone()))?;
        registry.register(Box::new(last_share.clone()))?;
        Ok(WorkerMetrics {
            inner: Some(Arc::new(Inner {
                credited,
                last_share,
                max_workers,
                state: Mutex::new(State::default()),
            })),
        })
    }

    /// Returns per-worker metrics that record nothing.
    pub fn disabled() -> Self {
        WorkerMetrics::default()
    }

    /// Takes a connection's hold on `worker`'s series (creating them if it
    /// is the first), to be kept while the connection has it authorized;
    /// `None` when per-worker metrics are off, so a connection then holds
    /// nothing for them.
    pub fn join(&self, worker: &str) -> Option<WorkerSeries> {
        let inner = self.inner.as_ref()?;
        let key = label_key(worker);
        {
            let mut state = inner.lock();
            let own = state.own < inner.max_workers && key != OVERFLOW;
            let entry = state
                .workers
                .entry(key.clone())
                .or_insert(Entry { refs: 0, own });
            entry.refs += 1;
            if entry.refs == 1 {
                let own = entry.own;
                if own {
                    state.own += 1;
                } else {
                    state.overflowed += 1;
                }
                let label = if own { key.as_str() } else { OVERFLOW };
                // The counter exists from the start; the last-share time
                // only once there is a share.
                inner.credited.with_label_values(&[label]);
            }
        }
        Some(WorkerSeries {
            inner: Arc::clone(inner),
            key,
        })
    }

    /// Credits a share of `difficulty` found at `at` to `worker`; ignored if
    /// no connection holds the worker.
    pub fn credit(&self, worker: &str, difficulty: f64, at: SystemTime) {
        let Some(inner) = &self.inner else {
            return;
        };
        let key = label_key(worker);
        let state = inner.lock();
        let Some(entry) = state.workers.get(&key) else {
            return;
        };
        let label = if entry.own { key.as_str() } else { OVERFLOW };
        inner
            .credited
            .with_label_values(&[label])
            .inc_by(difficulty);
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        inner.last_share.with_label_values(&[label]).set(secs);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, always left consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leave(&self, key: &str) {
        let mut state = self.lock();
        let Some(entry) = state.workers.get_mut(key) else {
            return;
        };
        entry.refs -= 1;
        if entry.refs > 0 {
            return;
        }
        let own = entry.own;
        state.workers.remove(key);
        let label = if own {
            state.own -= 1;
            key
        } else {
            state.overflowed -= 1;
            if state.overflowed > 0 {
                return;
            }
            OVERFLOW
        };
        // Absent series (no share yet) are fine to "remove".
        let _ = self.credited.remove_label_values(&[label]);
        let _ = self.last_share.remove_label_values(&[label]);
    }
}

impl Drop for WorkerSeries {
    fn drop(&mut self) {
        self.inner.leave(&self.key);
    }
}

/// Returns the label value of a worker name: its first [`MAX_LABEL_CHARS`]
/// characters ([`OVERFLOW`] for an empty name, which Prometheus would read
/// as no label at all).
fn label_key(worker: &str) -> String {
    if worker.is_empty() {
        return OVERFLOW.to_owned();
    }
    worker.chars().take(MAX_LABEL_CHARS).collect()
}

#[cfg(test)]
mod tests;
