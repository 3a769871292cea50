//! The owner of one pool: one task that runs the pool's connections (the
//! first, and one more for each extranonce space that holds miners),
//! reconnects each with jittered exponential backoff, applies reloads and
//! retirement, and is the only writer of the pool's published states, its
//! `up` gauge and its up/down news to the policy.
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
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::{self, Ended};
use super::sv1::Refusals;
use super::{Context, Desired, Forward, RETIRE_GRACE};
use crate::extranonce::Space;
use crate::jobs::{JobIds, Layouts, PoolState};
use crate::metrics::{Metrics, Outcome, PoolSeries};
use crate::policy_task::PolicyInbox;

/// Longest backoff between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long an extra connection stays open once its space has no miners:
/// miners that come back soon find it still there.
pub(super) const EXTRA_IDLE: Duration = Duration::from_secs(60);

mod extras;

use extras::Extras;

/// The channels a new owner is built from.
pub(super) struct Parts {
    pub id: PoolId,
    pub name: Arc<str>,
    pub entry: PoolConfig,
    /// One per space, the first first.
    pub connections: Vec<ConnectionParts>,
    pub desired: watch::Receiver<Desired>,
    /// The pool's series, registered already unless the pool had a
    /// previous owner.
    pub series: PoolSeries,
}

/// The owner's side of one connection's state and queues.
pub(super) struct ConnectionParts {
    pub state: watch::Sender<PoolState>,
    pub shares: mpsc::Receiver<Forward>,
    pub blocks: mpsc::Receiver<Forward>,
}

/// The owner of one pool and its connections, run by its task.
pub(super) struct Owner {
    name: Arc<str>,
    metrics: Metrics,
    /// The first connection, open for as long as the pool runs.
    first: Pool,
    /// Extra connections not running now, by space (`None` at 0, and for a
    /// space whose connection runs).
    idle: Vec<Option<Pool>>,
    /// Extra connections running; each hands itself back when it stops.
    running: JoinSet<Pool>,
    /// How to stop each running extra connection, by space.
    closers: Vec<Option<CancellationToken>>,
    /// Since when each running extra connection's space has had no miner.
    empty_since: Vec<Option<Instant>>,
    /// Which spaces hold miners.
    occupied: watch::Receiver<Vec<bool>>,
    shutdown: CancellationToken,
    /// The pool's series, its share counters among them.
    series: PoolSeries,
}

/// One connection of a pool, the one for miners of its [`Space`]: what a
/// backend runs.
pub(super) struct Pool {
    pub id: PoolId,
    pub name: Arc<str>,
    pub space: Space,
    /// The `[[pool]]` entry the current connection uses.
    pub entry: PoolConfig,
    pub layouts: Arc<Layouts>,
    pub version_mask: u32,
    pub ids: Arc<JobIds>,
    /// Every connection's published state, by space.
    states: Arc<[watch::Sender<PoolState>]>,
    pub shares: mpsc::Receiver<Forward>,
    pub blocks: mpsc::Receiver<Forward>,
    pub desired: watch::Receiver<Desired>,
    policy: PolicyInbox,
    /// Stops this connection: the pool's own token for the first, a child
    /// of it for an extra one (cancelled when its space stays empty).
    pub shutdown: CancellationToken,
    /// Set once the pool was taken out of the config: when its grace ends.
    pub retire_at: Option<Instant>,
    /// The pool's latest answers and quarantine, across connections (never
    /// held across an await).
    refusals: Arc<Mutex<Refusals>>,
    /// The pool's series (registered by the owner).
    pub series: PoolSeries,
}

impl Owner {
    pub(super) fn new(parts: Parts, context: &Context) -> Self {
        let shutdown = context.shutdown.child_token();
        let (states, queues): (Vec<_>, Vec<_>) = parts
            .connections
            .into_iter()
            .map(|c| (c.state, (c.shares, c.blocks)))
            .unzip();
        let states: Arc<[watch::Sender<PoolState>]> = states.into();
        let refusals = Arc::new(Mutex::new(Refusals::default()));
        let mut connections = queues
            .into_iter()
            .enumerate()
            .map(|(index, (shares, blocks))| Pool {
                id: parts.id,
                name: Arc::clone(&parts.name),
                space: Space(u16::try_from(index).expect("at most MAX_SPACES spaces")),
                entry: parts.entry.clone(),
                layouts: Arc::clone(&context.layouts),
                version_mask: context.version_mask,
                ids: Arc::clone(&context.ids),
                states: Arc::clone(&states),
                shares,
                blocks,
                desired: parts.desired.clone(),
                policy: context.policy.clone(),
                shutdown: shutdown.clone(),
                retire_at: None,
                refusals: Arc::clone(&refusals),
                series: parts.series.clone(),
            });
        let first = connections.next().expect("a pool has a first connection");
        let idle: Vec<Option<Pool>> = std::iter::once(None).chain(connections.map(Some)).collect();
        let spaces = idle.len();
        Owner {
            name: parts.name,
            metrics: context.metrics.clone(),
            first,
            idle,
            running: JoinSet::new(),
            closers: vec![None; spaces],
            empty_since: vec![None; spaces],
            occupied: context.spaces.clone(),
            shutdown,
            series: parts.series,
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
                    self.metrics.add_pool_series(&self.series);
                }
                ready
            }
            None => true,
        };
        if ready {
            // Its series exist from the start (again, for a pool back in
            // the config whose series went with its previous owner).
            self.metrics.add_pool(&self.name);
            self.supervise().await;
        }
        // The first connection has stopped: the extra ones stop with it.
        for closer in self.closers.iter().flatten() {
            closer.cancel();
        }
        while let Some(joined) = self.running.join_next().await {
            if let Ok(pool) = joined {
                let index = pool.space.index();
                self.idle[index] = Some(pool);
            }
        }
        let retired = self.first.retire_at.is_some();
        for pool in std::iter::once(&mut self.first).chain(self.idle.iter_mut().flatten()) {
            pool.connection_lost();
            if retired {
                // Gone from the config: no job to route to, and no say in
                // the version mask miners are granted.
                pool.publish(|state| {
                    state.jobs.clear();
                    state.configured = false;
                    true
                });
            }
            // Whatever is still queued cannot reach the pool any more.
            pool.shares.close();
            pool.blocks.close();
            while let Ok(share) = pool.blocks.try_recv().or_else(|_| pool.shares.try_recv()) {
                pool.settle_unsent(share);
            }
        }
        if retired && ready {
            self.metrics.remove_pool(&self.name);
            self.metrics.remove_pool_series(&self.series);
        }
        info!(pool = %self.name, "upstream stopped");
    }

    /// Serves the first connection, and opens and closes the extra ones as
    /// their spaces fill and empty, until the first stops.
    async fn supervise(&mut self) {
        let Owner {
            first,
            idle,
            running,
            closers,
            empty_since,
            occupied,
            shutdown,
            ..
        } = self;
        let mut extras = Extras {
            idle,
            running,
            closers,
            empty_since,
            shutdown,
        };
        let serving = first.serve();
        tokio::pin!(serving);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let wake = tokio::time::sleep_until(far);
        tokio::pin!(wake);
        loop {
            let held = occupied.borrow_and_update().clone();
            extras.follow(&held, Instant::now());
            let next = extras.next_close().unwrap_or(far);
            if wake.deadline() != next {
                wake.as_mut().reset(next);
            }
            tokio::select! {
                () = &mut serving => return,
                Ok(()) = occupied.changed() => {}
                Some(joined) = extras.running.join_next() => extras.stopped(joined),
                () = &mut wake => extras.close_idle(Instant::now()),
            }
        }
    }
}

impl Pool {
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
                    warn!(pool = %self.name, space = %self.space, %reason, retry_in = ?delay, "upstream connection lost");
                    if !self.idle_for(delay).await {
                        break;
                    }
                    self.series.reconnects.inc();
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
        self.series.observe_submit(elapsed);
    }

    /// Returns what this connection publishes now.
    pub(super) fn state(&self) -> watch::Ref<'_, PoolState> {
        self.states[self.space.index()].borrow()
    }

    /// Changes this connection's published state (see [`Pool::publish_in`]).
    pub(super) fn publish(&self, change: impl FnOnce(&mut PoolState) -> bool) {
        self.publish_in(self.space, change);
    }

    /// Changes the state published for `space` (`change` returns whether
    /// it changed anything) — the one place a pool's state is written. The
    /// first connection going up or down is the pool's: it is reflected in
    /// the `up` gauge and reported to the policy here. Every connection
    /// that goes up or down is counted in the connections gauge. A retiring
    /// pool stays down whatever `change` says.
    pub(super) fn publish_in(&self, space: Space, change: impl FnOnce(&mut PoolState) -> bool) {
        let retiring = self.retire_at.is_some();
        let mut went = None;
        let Some(sender) = self.states.get(space.index()) else {
            return;
        };
        sender.send_if_modified(|state| {
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
        let Some(up) = went else {
            return;
        };
        if up {
            self.series.connections.inc();
        } else {
            self.series.connections.dec();
        }
        if space == Space::FIRST {
            self.series.up.set(i64::from(up));
            self.policy.pool_health(self.id, up);
        }
    }

    /// Counts a job from the pool: the first connection's only, as every
    /// connection is sent the same work.
    pub(super) fn count_job(&self) {
        if self.space == Space::FIRST {
            self.series.job_received();
        }
    }

    /// Marks this connection up or down.
    pub(super) fn set_up(&self, up: bool) {
        self.publish(|state| std::mem::replace(&mut state.up, up) != up);
    }

    /// Marks every connection of the pool down: a quarantine is the pool's,
    /// and each connection comes back up by itself once it is over.
    pub(super) fn quarantine(&self) {
        for index in 0..self.states.len() {
            let space = Space(u16::try_from(index).expect("at most MAX_SPACES spaces"));
            self.publish_in(space, |state| std::mem::replace(&mut state.up, false));
        }
    }

    /// Prepares an extra connection before it opens: it starts in the
    /// version mask the pool gave the first (miners were granted that),
    /// until its own `mining.configure` answer.
    fn start_like_first(&self) {
        let (mask, configured) = {
            let first = self.states[Space::FIRST.index()].borrow();
            (first.version_mask, first.configured)
        };
        self.publish(|state| {
            state.version_mask = mask;
            state.configured = configured;
            true
        });
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
