//! The owner of one pool: one task that runs the pool's backend, reconnects
//! with jittered exponential backoff, applies reloads and retirement, and is
//! the only writer of the pool's published state, its `up` gauge and its
//! up/down news to the policy.
//!
//! Every forwarded share is settled exactly once (its [`Settlement`] is
//! consumed by settling): by the pool, by a timeout, or as unavailable when
//! the connection drops, the pool is down, or the owner stops.
//!
//! [`Settlement`]: super::Settlement

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashsplit_policy::{PoolConfig, PoolId};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::{self, Ended};
use super::sv1::Refusals;
use super::{Context, Desired, Forward, RETIRE_GRACE};
use crate::jobs::{JobIds, Layouts, PoolState};
use crate::metrics::{Metrics, Outcome, PoolSeries, ShareSeries};
use crate::policy_task::PolicyInbox;

/// Longest backoff between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The channels a new owner is built from.
pub(super) struct Parts {
    pub id: PoolId,
    pub name: Arc<str>,
    pub entry: PoolConfig,
    pub state: watch::Sender<PoolState>,
    pub shares: mpsc::Receiver<Forward>,
    pub blocks: mpsc::Receiver<Forward>,
    pub desired: watch::Receiver<Desired>,
    /// The pool's share counters, registered already unless the pool had
    /// a previous owner.
    pub series: ShareSeries,
}

/// One pool, owned by its task.
pub(super) struct Pool {
    pub id: PoolId,
    pub name: Arc<str>,
    /// The `[[pool]]` entry the current connection uses.
    pub entry: PoolConfig,
    pub layouts: Arc<Layouts>,
    pub version_mask: u32,
    pub metrics: Metrics,
    pub ids: Arc<JobIds>,
    state: watch::Sender<PoolState>,
    pub shares: mpsc::Receiver<Forward>,
    pub blocks: mpsc::Receiver<Forward>,
    pub desired: watch::Receiver<Desired>,
    policy: PolicyInbox,
    pub shutdown: CancellationToken,
    /// Set once the pool was taken out of the config: when its grace ends.
    pub retire_at: Option<Instant>,
    /// The pool's latest answers and quarantine, across connections (never
    /// held across an await).
    refusals: Mutex<Refusals>,
    /// The series each forwarded share touches, once the pool's series
    /// exist (after its predecessor removed its own).
    series: Option<PoolSeries>,
    /// The pool's share counters, which every share of it settles into.
    shares_series: ShareSeries,
}

impl Pool {
    pub(super) fn new(parts: Parts, context: &Context) -> Self {
        Pool {
            id: parts.id,
            name: parts.name,
            entry: parts.entry,
            layouts: Arc::clone(&context.layouts),
            version_mask: context.version_mask,
            metrics: context.metrics.clone(),
            ids: Arc::clone(&context.ids),
            state: parts.state,
            shares: parts.shares,
            blocks: parts.blocks,
            desired: parts.desired,
            policy: context.policy.clone(),
            shutdown: context.shutdown.child_token(),
            retire_at: None,
            refusals: Mutex::default(),
            series: None,
            shares_series: parts.series,
        }
    }

    /// Runs the pool until shutdown, or until it is retired and its grace
    /// is over; first waits for `predecessor` (the pool's previous owner).
    /// Whatever is queued when it stops is settled as unavailable.
    pub(super) async fn run(mut self, predecessor: Option<CancellationToken>) {
        let ready = match predecessor {
            Some(before) => {
                let ready = tokio::select! {
                    () = self.shutdown.cancelled() => false,
                    () = before.cancelled() => true,
                };
                if ready {
                    self.metrics.add_shares(&self.shares_series);
                }
                ready
            }
            None => true,
        };
        if ready {
            // Its series exist from the start (again, for a pool back in
            // the config whose series went with its previous owner).
            self.metrics.add_pool(&self.name);
            self.series = Some(self.metrics.pool_series(&self.name));
            self.serve().await;
        }
        self.connection_lost();
        let retired = self.retire_at.is_some();
        if retired {
            // Gone from the config: no job to route to, and no say in the
            // version mask miners are granted.
            self.publish(|state| {
                state.jobs.clear();
                state.configured = false;
                true
            });
        }
        // Whatever is still queued cannot reach the pool any more.
        self.shares.close();
        self.blocks.close();
        while let Ok(share) = self.blocks.try_recv().or_else(|_| self.shares.try_recv()) {
            self.settle_unsent(share);
        }
        if retired && ready {
            self.metrics.remove_pool(&self.name);
            self.metrics.remove_shares(&self.shares_series);
        }
        info!(pool = %self.name, "upstream stopped");
    }

    /// Connects, and reconnects after each loss, until the pool stops.
    async fn serve(&mut self) {
        let mut failures = 0u32;
        loop {
            self.take_desired();
            let latest = self.latest_entry();
            if connection_differs(&latest, &self.entry) {
                // Another address or login: its record starts clean.
                *self.refusals() = Refusals::default();
            }
            self.entry = latest;
            if self.retire_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            match backend::run(self).await {
                Ended::Stopped => break,
                Ended::Lost {
                    reason,
                    healthy,
                    wait,
                } => {
                    self.connection_lost();
                    if self.retire_at.is_some() {
                        // Nothing left to forward for a pool on its way out.
                        break;
                    }
                    if healthy {
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    let delay = wait.unwrap_or_else(|| backoff(failures)).min(MAX_BACKOFF);
                    warn!(pool = %self.name, %reason, retry_in = ?delay, "upstream connection lost");
                    if !self.idle_for(delay).await {
                        break;
                    }
                    self.metrics
                        .upstream_reconnects
                        .with_label_values(&[&self.name])
                        .inc();
                }
            }
        }
    }

    fn latest_entry(&self) -> PoolConfig {
        self.desired.borrow().entry.clone()
    }

    /// Takes in a reloaded [`Desired`]: starts the retirement grace of a
    /// pool taken out (marking it down at once); returns whether the
    /// connection must be made again (a new url or login).
    pub(super) fn take_desired(&mut self) -> bool {
        let desired = self.desired.borrow_and_update().clone();
        if desired.retired && self.retire_at.is_none() {
            self.retire_at = Some(Instant::now() + RETIRE_GRACE);
            info!(pool = %self.name, grace = ?RETIRE_GRACE, "pool removed from the config: no new miners, forwarding what is on its way");
            // A retiring pool is never up again (see `publish`).
            self.publish(|_| true);
        }
        connection_differs(&desired.entry, &self.entry)
    }

    /// Returns the pool's refusal record.
    pub(super) fn refusals(&self) -> MutexGuard<'_, Refusals> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records how long the pool took to answer a share.
    pub(super) fn observe_submit(&self, elapsed: Duration) {
        match &self.series {
            Some(series) => series.submit_seconds.observe(elapsed.as_secs_f64()),
            None => self.metrics.observe_submit(&self.name, elapsed),
        }
    }

    /// Returns what the pool publishes now.
    pub(super) fn state(&self) -> watch::Ref<'_, PoolState> {
        self.state.borrow()
    }

    /// Changes the published state (`change` returns whether it changed
    /// anything) — the one place the pool's state is written. A pool going
    /// up or down is reflected in its `up` gauge and reported to the
    /// policy here; a retiring pool stays down whatever `change` says.
    pub(super) fn publish(&self, change: impl FnOnce(&mut PoolState) -> bool) {
        let retiring = self.retire_at.is_some();
        let mut went = None;
        self.state.send_if_modified(|state| {
            let was = state.up;
            let mut modified = change(state);
            if retiring && state.up {
                state.up = false;
                modified = true;
            }
            if state.up != was {
                went = Some(state.up);
            }
            modified
        });
        if let Some(up) = went {
            self.metrics
                .pool_up
                .with_label_values(&[&self.name])
                .set(i64::from(up));
            self.policy.pool_health(self.id, up);
        }
    }

    /// Marks the pool up or down (down also for a quarantine).
    pub(super) fn set_up(&self, up: bool) {
        self.publish(|state| std::mem::replace(&mut state.up, up) != up);
    }

    /// Marks the pool down and voids its jobs: a new connection or a new
    /// extranonce1 means jobs built for the old one are stale.
    pub(super) fn void_jobs(&self, clear: bool) {
        self.publish(|state| {
            state.up = false;
            state.epoch += 1;
            if clear {
                state.jobs.clear();
            }
            true
        });
    }

    fn connection_lost(&self) {
        self.void_jobs(false);
    }

    /// Waits out a backoff, answering queued shares as unavailable (the
    /// pool is down: nothing waits for it); returns false if the pool is to
    /// stop (shutdown, or retired meanwhile).
    async fn idle_for(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return false,
                () = &mut deadline => return true,
                // A reloaded address or login is tried at once.
                Ok(()) = self.desired.changed() => {
                    self.take_desired();
                    return self.retire_at.is_none();
                }
                Some(share) = self.blocks.recv() => self.settle_unsent(share),
                Some(share) = self.shares.recv() => self.settle_unsent(share),
            }
        }
    }

    /// Answers a share that never reached the pool.
    pub(super) fn settle_unsent(&self, share: Forward) {
        share.settlement.settle(Outcome::PoolUnavailable);
    }
}

/// Returns whether `a` and `b` reach the pool differently (url, login,
/// TLS settings, or a node's chain, payout or coinbase settings).
fn connection_differs(a: &PoolConfig, b: &PoolConfig) -> bool {
    a.url != b.url
        || a.user != b.user
        || a.password != b.password
        || a.tls != b.tls
        || a.node != b.node
}

/// Returns the delay before attempt `failures + 1`: exponential from 1 s,
/// capped, with jitter so a farm of proxies does not reconnect in step.
fn backoff(failures: u32) -> Duration {
    let base = 2f64
        .powi(failures.saturating_sub(1).min(6) as i32)
        .min(MAX_BACKOFF.as_secs_f64());
    Duration::from_secs_f64(base * rand::rng().random_range(0.5..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for failures in 1..20 {
            let delay = backoff(failures).as_secs_f64();
            let base = 2f64.powi((failures - 1).min(6) as i32).min(60.0);
            assert!(delay >= base * 0.5 && delay < base, "{failures}: {delay}");
        }
    }
}
