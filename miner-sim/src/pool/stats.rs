//! What a [`SimPool`](super::SimPool) saw: shares accepted and refused per
//! worker name as submitted, blocks, connections. [`PoolStats`] is a
//! snapshot; the pool's sessions write into one [`StatsBook`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use hashsplit_stratum::share::hash_to_hex;
use serde::Serialize;

/// The label of shares refused by [`Fault::RejectAll`](super::Fault).
pub const INJECTED_REJECT: &str = "injected";

/// Worker names kept apart; later new names are counted under
/// [`OTHER_WORKERS`], since names come from untrusted peers.
const MAX_WORKERS: usize = 10_000;
/// Where shares of workers past [`MAX_WORKERS`] are counted.
pub const OTHER_WORKERS: &str = "(other)";

/// Shares of one worker name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerStats {
    /// Shares accepted.
    pub accepted: u64,
    /// Sum of the share difficulty of accepted shares (the difficulty in
    /// force when their job was sent), comparable across pools.
    pub accepted_difficulty: f64,
    /// Shares refused, all reasons.
    pub rejected: u64,
    /// Shares refused by reason (`Reject::as_str` or [`INJECTED_REJECT`]).
    pub rejects: BTreeMap<String, u64>,
    /// Accepted shares that met the network target.
    pub blocks: u64,
}

impl WorkerStats {
    /// Returns how many shares were refused for `reason`.
    pub fn rejected_for(&self, reason: &str) -> u64 {
        self.rejects.get(reason).copied().unwrap_or(0)
    }

    fn reject(&mut self, reason: &str) {
        self.rejected += 1;
        *self.rejects.entry(reason.to_owned()).or_default() += 1;
    }
}

/// A snapshot of everything a pool counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolStats {
    /// Connections accepted (refused ones not included).
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections closed at once by [`Fault::RefuseConnections`](super::Fault)
    /// or the connection cap.
    pub connections_refused: u64,
    /// Totals over every worker (and submits too broken to name one).
    pub totals: WorkerStats,
    /// Per worker name, as the submits named it.
    pub workers: BTreeMap<String, WorkerStats>,
    /// Block candidates received (shares meeting the network target).
    pub blocks_found: u64,
    /// The hash of the last block found, as explorers print it.
    pub last_block_hash: Option<String>,
    /// Lines read and dropped unanswered while blackholed.
    pub unanswered: u64,
    /// Jobs the pool made (each sent to every ready connection).
    pub jobs: u64,
}

impl PoolStats {
    /// Returns the stats of `worker`, or zeroes if it never submitted.
    pub fn worker(&self, worker: &str) -> WorkerStats {
        self.workers.get(worker).cloned().unwrap_or_default()
    }

    /// Returns the snapshot as pretty JSON (what `--stats-file` holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("stats serialise")
    }
}

impl fmt::Display for PoolStats {
    /// A summary for people: totals, then one line per worker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connections: {} accepted, {} open, {} refused; jobs: {}; blocks: {}",
            self.connections_accepted,
            self.connections_open,
            self.connections_refused,
            self.jobs,
            self.blocks_found
        )?;
        writeln!(
            f,
            "shares: {} accepted (difficulty {:.6}), {} rejected{}",
            self.totals.accepted,
            self.totals.accepted_difficulty,
            self.totals.rejected,
            reasons(&self.totals)
        )?;
        for (name, w) in &self.workers {
            writeln!(
                f,
                "  {name}: {} accepted (difficulty {:.6}), {} rejected{}",
                w.accepted,
                w.accepted_difficulty,
                w.rejected,
                reasons(w)
            )?;
        }
        Ok(())
    }
}

/// Returns ` (stale 2, duplicate 1)`, or nothing when there is no reject.
fn reasons(w: &WorkerStats) -> String {
    if w.rejects.is_empty() {
        return String::new();
    }
    let list: Vec<String> = w.rejects.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!(" ({})", list.join(", "))
}

/// The live counters behind [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsBook(Mutex<PoolStats>);

impl StatsBook {
    pub(crate) fn snapshot(&self) -> PoolStats {
        self.lock().clone()
    }

    pub(crate) fn read<T>(&self, get: impl FnOnce(&PoolStats) -> T) -> T {
        get(&self.lock())
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut PoolStats)) {
        change(&mut self.lock());
    }

    pub(crate) fn accepted(&self, worker: &str, difficulty: f64, block: Option<&[u8; 32]>) {
        let mut guard = self.lock();
        let stats = &mut *guard;
        for w in [&mut stats.totals, worker_entry(&mut stats.workers, worker)] {
            w.accepted += 1;
            w.accepted_difficulty += difficulty;
            w.blocks += u64::from(block.is_some());
        }
        if let Some(hash) = block {
            stats.blocks_found += 1;
            stats.last_block_hash = Some(hash_to_hex(hash));
        }
    }

    /// Counts a refused share; `worker` is `None` when the submit was too
    /// broken to name one.
    pub(crate) fn rejected(&self, worker: Option<&str>, reason: &str) {
        let mut guard = self.lock();
        let stats = &mut *guard;
        stats.totals.reject(reason);
        if let Some(worker) = worker {
            worker_entry(&mut stats.workers, worker).reject(reason);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolStats> {
        // A panicking session cannot leave the counters half-updated in a
        // way that matters more than losing them all.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn worker_entry<'a>(
    workers: &'a mut BTreeMap<String, WorkerStats>,
    name: &str,
) -> &'a mut WorkerStats {
    let name = if workers.contains_key(name) || workers.len() < MAX_WORKERS {
        name
    } else {
        OTHER_WORKERS
    };
    workers.entry(name.to_owned()).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashsplit_stratum::Reject;

    #[test]
    fn totals_add_up_over_workers_and_reasons() {
        let book = StatsBook::default();
        book.accepted("a.1", 0.5, None);
        book.accepted("a.1", 0.25, Some(&[0; 32]));
        book.accepted("b", 2.0, None);
        book.rejected(Some("b"), Reject::Stale.as_str());
        book.rejected(None, Reject::Malformed.as_str());
        let stats = book.snapshot();
        assert_eq!(stats.totals.accepted, 3);
        assert_eq!(stats.totals.accepted_difficulty, 2.75);
        assert_eq!(stats.worker("a.1").accepted_difficulty, 0.75);
        assert_eq!(stats.worker("a.1").blocks, 1);
        assert_eq!(stats.blocks_found, 1);
        assert_eq!(stats.worker("b").rejected_for("stale"), 1);
        assert_eq!(stats.totals.rejected, 2);
        assert_eq!(stats.totals.rejected_for("malformed"), 1);
        assert_eq!(stats.worker("nobody"), WorkerStats::default());
        let json: serde_json::Value = serde_json::from_str(&stats.to_json()).unwrap();
        assert_eq!(json["workers"]["b"]["rejects"]["stale"], 1);
        let text = stats.to_string();
        assert!(text.contains("b: 1 accepted (difficulty 2.000000), 1 rejected (stale 1)"));
    }
}
