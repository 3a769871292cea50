//! One task per pool: connect, subscribe, authorize, keep the pool's jobs,
//! forward shares, reconnect with jittered exponential backoff.
//!
//! Sessions see the pool through [`UpstreamHandle`]: a `watch` of its
//! [`PoolState`] (up, latest translated job, epoch, version mask) and a
//! bounded queue for shares to forward, with a second queue for block
//! candidates that is always read first. Every forwarded share is answered
//! exactly once on its oneshot: by the pool, by a timeout, or as unavailable
//! when the connection drops.

mod connection;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hashsplit_policy::{PoolConfig, PoolId};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::jobs::{JobIds, Layouts, PoolState};
use crate::metrics::{Metrics, Outcome};

/// How long a forwarded share may wait for the pool's answer: pools
/// answer in well under a second, and the miner should hear promptly.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shares waiting to be written to one pool.
const FORWARD_QUEUE: usize = 1024;
/// How long a pool taken out of the config keeps its connection for the
/// shares already on their way to it.
pub const RETIRE_GRACE: Duration = Duration::from_secs(10);
/// Longest backoff between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A share for the pool, with the channel its answer goes to.
#[derive(Debug)]
pub struct Forward {
    /// The pool's job id.
    pub pool_job_id: String,
    /// `pad ‖ en1 ‖ en2`, the pool's extranonce2.
    pub extranonce2: Vec<u8>,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Rolled version bits, if any.
    pub version_bits: Option<u32>,
    /// The difficulty credited to the miner for it (0 if none), counted by
    /// result when the share is settled.
    pub credited: f64,
    /// Where the outcome goes (the miner's session, if still connected).
    pub reply: oneshot::Sender<Outcome>,
}

/// What a session holds of an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamHandle {
    /// The pool.
    pub pool: PoolId,
    /// Its name from the TOML file (the metric label).
    pub name: Arc<str>,
    /// What the pool publishes.
    pub state: watch::Receiver<PoolState>,
    shares: mpsc::Sender<Forward>,
    blocks: mpsc::Sender<Forward>,
}

impl UpstreamHandle {
    /// Queues a share for the pool without waiting; gives it back if the
    /// queue is full or the upstream is gone.
    pub fn forward(&self, share: Forward, block_candidate: bool) -> Result<(), Forward> {
        let queue = if block_candidate {
            &self.blocks
        } else {
            &self.shares
        };
        queue.try_send(share).map_err(|e| match e {
            mpsc::error::TrySendError::Full(share) | mpsc::error::TrySendError::Closed(share) => {
                share
            }
        })
    }
}

/// Every pool's upstream, indexed by [`PoolId`]. Pools added by a reload
/// are appended; a removed pool keeps its index (its upstream stopped) and
/// can be given a new upstream if it comes back.
#[derive(Debug, Default)]
pub struct Upstreams {
    handles: RwLock<Vec<UpstreamHandle>>,
    /// Bumped on every change, so sessions know to look again.
    generation: AtomicU64,
}

impl Upstreams {
    /// Returns a registry of these upstreams.
    pub fn new(handles: Vec<UpstreamHandle>) -> Self {
        Upstreams {
            handles: RwLock::new(handles),
            generation: AtomicU64::new(0),
        }
    }

    /// Returns the upstream of `pool`.
    pub fn get(&self, pool: PoolId) -> Option<UpstreamHandle> {
        self.read().get(pool.index()).cloned()
    }

    /// Returns the name of `pool` (empty if there is none).
    pub fn name(&self, pool: PoolId) -> Arc<str> {
        self.read()
            .get(pool.index())
            .map_or_else(|| Arc::from(""), |u| Arc::clone(&u.name))
    }

    /// Returns every pool's state, indexed by [`PoolId`].
    pub fn states(&self) -> Vec<watch::Receiver<PoolState>> {
        self.read().iter().map(|u| u.state.clone()).collect()
    }

    /// Returns the generation: it changes whenever an upstream is added or
    /// replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `handle` at its pool's index (appending a new pool).
    pub fn set(&self, handle: UpstreamHandle) {
        let mut handles = self.handles.write().unwrap_or_else(|e| e.into_inner());
        let index = handle.pool.index();
        if index < handles.len() {
            handles[index] = handle;
        } else {
            handles.push(handle);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<UpstreamHandle>> {
        // The lock guards plain data: a panic elsewhere cannot leave it
        // half-written.
        self.handles.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an upstream needs to run.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The pool.
    pub pool: PoolId,
    /// Its `[[pool]]` entry.
    pub config: PoolConfig,
    /// The miners' extranonce layouts.
    pub layouts: Arc<Layouts>,
    /// The version-rolling mask to ask the pool for (0: none).
    pub version_mask: u32,
    /// For a pool back in the config: its previous upstream, to wait for
    /// (so its last writes cannot land on this one's state or series), and
    /// the epoch this one starts after (so the old jobs stay stale).
    pub succeeds: Option<Predecessor>,
}

/// The upstream a pool back in the config had before it was removed.
#[derive(Debug, Clone)]
pub struct Predecessor {
    finished: CancellationToken,
    epoch: u64,
}

/// How the proxy steers a running upstream after a reload.
#[derive(Debug)]
pub struct UpstreamControl {
    /// The pool's `[[pool]]` entry: a new url, user or password makes the
    /// upstream reconnect with it.
    pub entry: watch::Sender<PoolConfig>,
    stop: CancellationToken,
    retiring: Arc<AtomicBool>,
    /// Cancelled once the upstream task has ended.
    finished: CancellationToken,
}

impl UpstreamControl {
    /// Returns what a new upstream for the same pool must wait for and
    /// start after; `state` is this upstream's.
    pub fn predecessor(&self, state: &watch::Receiver<PoolState>) -> Predecessor {
        Predecessor {
            finished: self.finished.clone(),
            epoch: state.borrow().epoch,
        }
    }

    /// Stops the upstream for good (its pool left the config file). The
    /// pool is marked down at once, so the policy moves its miners, but
    /// the connection stays for [`RETIRE_GRACE`] so shares for its jobs
    /// still on their way are forwarded and answered; then the upstream
    /// answers what it holds as unavailable and leaves its pool down, out
    /// of every miner's version mask.
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Release);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(RETIRE_GRACE) => stop.cancel(),
            }
        });
    }
}

/// Starts the upstream task of one pool (stopped with `shutdown`, or
/// alone through [`UpstreamControl::retire`]) and returns its handle and
/// its control.
pub fn spawn(
    config: UpstreamConfig,
    metrics: Metrics,
    ids: Arc<JobIds>,
    shutdown: &CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> (UpstreamHandle, UpstreamControl) {
    let shutdown = shutdown.child_token();
    let retiring = Arc::new(AtomicBool::new(false));
    let finished = CancellationToken::new();
    let first = PoolState {
        epoch: config.succeeds.as_ref().map_or(0, |p| p.epoch + 1),
        ..PoolState::default()
    };
    let (state_tx, state_rx) = watch::channel(first);
    let (entry_tx, entry_rx) = watch::channel(config.config.clone());
    let (shares_tx, shares_rx) = mpsc::channel(FORWARD_QUEUE);
    let (blocks_tx, blocks_rx) = mpsc::channel(FORWARD_QUEUE);
    let name: Arc<str> = Arc::from(config.config.name.as_str());
    let upstream = Upstream {
        config,
        name: Arc::clone(&name),
        metrics,
        ids,
        state: state_tx,
        shares: shares_rx,
        blocks: blocks_rx,
        entry: entry_rx,
        shutdown: shutdown.clone(),
        retiring: Arc::clone(&retiring),
        refusals: std::sync::Mutex::default(),
        finished: finished.clone(),
    };
    let pool = upstream.config.pool;
    tasks.spawn(upstream.run());
    let handle = UpstreamHandle {
        pool,
        name,
        state: state_rx,
        shares: shares_tx,
        blocks: blocks_tx,
    };
    let control = UpstreamControl {
        entry: entry_tx,
        stop: shutdown,
        retiring,
        finished,
    };
    (handle, control)
}

/// How one connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The proxy is shutting down.
    Shutdown,
    /// The connection was lost or given up; `healthy` says whether it got
    /// as far as serving jobs (the backoff starts over if so), `wait` is a
    /// delay the pool asked for.
    Lost {
        reason: String,
        healthy: bool,
        wait: Option<Duration>,
    },
}

struct Upstream {
    config: UpstreamConfig,
    name: Arc<str>,
    metrics: Metrics,
    ids: Arc<JobIds>,
    state: watch::Sender<PoolState>,
    shares: mpsc::Receiver<Forward>,
    blocks: mpsc::Receiver<Forward>,
    /// The pool's `[[pool]]` entry as last reloaded.
    entry: watch::Receiver<PoolConfig>,
    shutdown: CancellationToken,
    retiring: Arc<AtomicBool>,
    /// The pool's latest answers and quarantine, across connections.
    refusals: std::sync::Mutex<connection::Refusals>,
    finished: CancellationToken,
}

impl Upstream {
    async fn run(self) {
        let finished = self.finished.clone();
        self.serve().await;
        finished.cancel();
    }

    async fn serve(mut self) {
        if let Some(before) = self.config.succeeds.take() {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = before.finished.cancelled() => {}
            }
        }
        // Its series exist from the start (again, for a pool back in the
        // config whose series went with its previous upstream).
        self.metrics.add_pool(&self.name);
        let mut failures = 0u32;
        loop {
            let entry = self.entry.borrow_and_update().clone();
            if entry != self.config.config {
                // Another address or login: its record starts clean.
                *self.refusals() = connection::Refusals::default();
                self.config.config = entry;
            }
            match connection::run(&mut self).await {
                Ended::Shutdown => break,
                Ended::Lost {
                    reason,
                    healthy,
                    wait,
                } => {
                    self.set_down();
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
        self.set_down();
        if self.retiring.load(Ordering::Acquire) {
            // Gone from the config: no job to route to, and no say in the
            // version mask miners are granted.
            self.state.send_modify(|state| {
                state.jobs.clear();
                state.configured = false;
            });
        }
        // Whatever is still queued cannot reach the pool any more.
        self.shares.close();
        self.blocks.close();
        while let Ok(share) = self.blocks.try_recv().or_else(|_| self.shares.try_recv()) {
            self.settle_unsent(share);
        }
        if self.retiring.load(Ordering::Acquire) {
            self.metrics.remove_pool(&self.name);
        }
        info!(pool = %self.name, "upstream stopped");
    }

    /// Returns the pool's refusal record (never held across an await).
    fn refusals(&self) -> std::sync::MutexGuard<'_, connection::Refusals> {
        self.refusals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits out a backoff, answering queued shares as unavailable; returns
    /// false if the proxy is shutting down.
    async fn idle_for(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return false,
                () = &mut deadline => return true,
                // A reloaded address or login is tried at once.
                Ok(()) = self.entry.changed() => return true,
                Some(share) = self.blocks.recv() => self.settle_unsent(share),
                Some(share) = self.shares.recv() => self.settle_unsent(share),
            }
        }
    }

    /// Answers a share that never reached the pool.
    fn settle_unsent(&self, share: Forward) {
        self.settle(share.reply, Outcome::PoolUnavailable, share.credited);
    }

    /// Counts a forwarded share's outcome and tells its session.
    fn settle(&self, reply: oneshot::Sender<Outcome>, outcome: Outcome, credited: f64) {
        self.metrics.settle(&self.name, outcome, credited);
        self.metrics
            .shares_in_flight
            .with_label_values(&[&self.name])
            .dec();
        // The session may be gone; the share is counted all the same.
        let _ = reply.send(outcome);
    }

    fn set_down(&self) {
        self.metrics.pool_up.with_label_values(&[&self.name]).set(0);
        self.state.send_modify(|state| {
            state.up = false;
            // A new connection brings a new extranonce: earlier jobs are void.
            state.epoch += 1;
        });
    }
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
