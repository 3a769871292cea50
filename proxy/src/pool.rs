//! Pools: one owner each, and a cheap handle for everyone else.
//!
//! Everything about one pool — its connections, health and quarantine, the
//! jobs it publishes, its metric series, reconfiguration on reload and
//! retirement — belongs to one task, the pool's owner ([`owner`]). Sessions,
//! the policy task and the reload path hold a [`PoolHandle`]: forward a
//! share (waiting for room while the pool is up, never refused because a
//! queue filled), watch the pool's [`PoolState`], reconfigure, retire.
//!
//! A pool has one connection per extranonce [`Space`] that holds miners:
//! the first always, and another for each space the proxy opened once the
//! first was full (see [`crate::extranonce`]). Each connection has its own
//! pool extranonce1, so its own jobs, epochs and share queues; a miner's
//! handle of a pool is the one for its space ([`PoolHandle::in_space`]),
//! so wherever the policy sends it, it mines on that pool's connection for
//! its space, and its shares go back the same way. The pool is up (for the
//! policy, its gauge and the status page) while its first connection is;
//! an extra connection still coming up only keeps its own space's miners
//! on other pools meanwhile.
//! [`Pools`] is the set of handles by [`PoolId`], published as a snapshot by
//! its one writer, [`PoolRegistry`], whenever a reload adds or replaces a
//! pool.
//!
//! Behind the owner sits the [`backend`] that talks to the pool. Every
//! backend publishes the same thing (Stratum-shaped jobs, translated for
//! the miners' extranonce layouts) and takes the same thing (shares), so
//! another kind of pool — Stratum v1 over TLS, a node's block templates,
//! Stratum V2 — plugs in there without touching sessions or the policy
//! task. There are two: Stratum v1 ([`sv1`]), whose stream comes from
//! one function of the pool URL ([`sv1::connect`]), and the operator's own
//! node ([`node`]), whose jobs the proxy builds from block templates.

#[cfg(test)]
mod accounting_tests;
mod backend;
pub mod node;
mod owner;
mod registry;
mod sv1;

pub use registry::{PoolRegistry, PoolSet, Pools};

use std::sync::Arc;
use std::time::Duration;

use hashsplit_policy::{PoolConfig, PoolId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::extranonce::Space;
use crate::jobs::{JobIds, Layouts, PoolExtranonce2, PoolState};
use crate::metrics::{Metrics, Outcome, PoolSeries, ShareSeries, Unsettled};
use crate::policy_task::PolicyInbox;

/// How long a forwarded share may wait for the pool's answer: pools
/// answer in well under a second, and the miner should hear promptly.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a share may wait for room in a pool's queue before it is
/// refused as timed out: the pool takes nothing, though it is not down yet.
pub const QUEUE_WAIT: Duration = SUBMIT_TIMEOUT;
/// How long a pool taken out of the config keeps its connection for the
/// shares already on their way to it.
pub const RETIRE_GRACE: Duration = Duration::from_secs(10);
/// Shares waiting to be written to one pool. Past this, sessions wait for
/// room (and stop reading their miners): memory stays bounded and no valid
/// share is refused for it.
pub const FORWARD_QUEUE: usize = 1024;

/// A share for the pool, with the channel its answer goes to.
#[derive(Debug)]
pub struct Forward {
    /// The pool's job id.
    pub pool_job_id: Arc<str>,
    /// `pad ‖ en1 ‖ en2`, the pool's extranonce2.
    pub extranonce2: PoolExtranonce2,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Rolled version bits, if any.
    pub version_bits: Option<u32>,
    /// How the share is settled once the pool answers (or cannot).
    pub settlement: Settlement,
}

/// A forwarded share's settlement: its count, and where its outcome goes.
/// Settling consumes it; dropping it counts the share as
/// `pool-unavailable` (see [`Unsettled`]), and its session hears the same.
#[derive(Debug)]
pub struct Settlement {
    share: Unsettled,
    reply: oneshot::Sender<Outcome>,
}

impl Settlement {
    /// Returns the settlement of `share`, whose outcome goes to `reply`.
    pub fn new(share: Unsettled, reply: oneshot::Sender<Outcome>) -> Self {
        Settlement { share, reply }
    }

    /// Counts the share's outcome and tells its session (if it is still
    /// there: the share is counted all the same).
    pub fn settle(self, outcome: Outcome) {
        self.share.settle(outcome);
        let _ = self.reply.send(outcome);
    }
}

/// Why a share could not be queued for its pool; it comes back to be
/// settled by the caller.
#[derive(Debug, thiserror::Error)]
pub enum Unqueued {
    /// The pool's owner has stopped (shutdown, or the pool was retired).
    #[error("the pool's upstream has stopped")]
    Gone(Forward),
    /// The queue had no room for [`QUEUE_WAIT`]: the pool takes nothing.
    #[error("the pool took no share for {}s", QUEUE_WAIT.as_secs())]
    Stalled(Forward),
}

impl Unqueued {
    /// Returns how the share is settled.
    pub fn outcome(&self) -> Outcome {
        match self {
            Unqueued::Gone(_) => Outcome::PoolUnavailable,
            Unqueued::Stalled(_) => Outcome::PoolTimeout,
        }
    }

    /// Returns the share.
    pub fn into_share(self) -> Forward {
        match self {
            Unqueued::Gone(share) | Unqueued::Stalled(share) => share,
        }
    }
}

/// What the proxy wants a pool to be: its `[[pool]]` entry, and whether it
/// was taken out of the config.
#[derive(Debug, Clone, PartialEq)]
struct Desired {
    entry: PoolConfig,
    retired: bool,
}

/// What the rest of the proxy holds of a pool, for miners of one
/// extranonce [`Space`] (each space has its own connection to the pool).
/// Cloning is cheap (a reference count and a watch receiver); each clone
/// watches its connection's state on its own.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    id: PoolId,
    space: Space,
    state: watch::Receiver<PoolState>,
    shared: Arc<Shared>,
}

/// What every handle of a pool shares.
#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    /// Each connection's state and queues, by [`Space`].
    connections: Box<[Queues]>,
    desired: watch::Sender<Desired>,
    /// Cancelled once the owner has ended.
    finished: CancellationToken,
    /// The pool's series, its share counters among them (registered by
    /// its owner).
    series: PoolSeries,
}

/// One connection's published state and share queues, as handles see them.
#[derive(Debug)]
struct Queues {
    state: watch::Receiver<PoolState>,
    shares: mpsc::Sender<Forward>,
    blocks: mpsc::Sender<Forward>,
}

impl PoolHandle {
    /// Returns the pool's id.
    pub fn id(&self) -> PoolId {
        self.id
    }

    /// Returns the pool's name from the TOML file (its metric label).
    pub fn name(&self) -> &Arc<str> {
        &self.shared.name
    }

    /// Returns the pool's share counters: a share of this pool is
    /// submitted (and settled) through them.
    pub fn shares(&self) -> &ShareSeries {
        &self.shared.series.shares
    }

    /// Returns the pool's series, for what a session counts of it
    /// (switches, block candidates).
    pub fn series(&self) -> &PoolSeries {
        &self.shared.series
    }

    /// Returns the handle for miners of `space`: the pool's connection
    /// that serves them (the pool opens it while the space has miners).
    ///
    /// # Panics
    /// If the pool has no connection for `space`: the extranonce allocator
    /// and the pools are sized from the same [`Context::spaces`].
    pub fn in_space(&self, space: Space) -> PoolHandle {
        let queues = self
            .shared
            .connections
            .get(space.index())
            .expect("every space the allocator hands out has a connection");
        PoolHandle {
            id: self.id,
            space,
            state: queues.state.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Returns what the pool's connection for this handle's space
    /// publishes now (do not hold it across an await).
    pub fn state(&self) -> watch::Ref<'_, PoolState> {
        self.state.borrow()
    }

    /// Returns what the pool publishes now and marks it seen by this handle.
    pub fn borrow_and_update(&mut self) -> watch::Ref<'_, PoolState> {
        self.state.borrow_and_update()
    }

    /// Waits until the pool publishes something this handle has not seen
    /// (cancel-safe); fails once the owner has ended.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.state.changed().await
    }

    /// Queues a share for the pool (on this handle's connection). While
    /// the queue is full the caller waits for room (up to [`QUEUE_WAIT`]):
    /// a pool that is up takes every share, however bursty. A pool that is
    /// down answers queued shares as unavailable at once, so the wait is
    /// short then. Block candidates have their own queue, which the owner
    /// always reads first.
    pub async fn forward(&self, share: Forward, block_candidate: bool) -> Result<(), Unqueued> {
        let queues = &self.shared.connections[self.space.index()];
        let queue = if block_candidate {
            &queues.blocks
        } else {
            &queues.shares
        };
        let share = match queue.try_send(share) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(share)) => return Err(Unqueued::Gone(share)),
            Err(mpsc::error::TrySendError::Full(share)) => share,
        };
        // The queue's semaphore is fair: waiting sessions get room in turn.
        match tokio::time::timeout(QUEUE_WAIT, queue.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(share);
                Ok(())
            }
            Ok(Err(_)) => Err(Unqueued::Gone(share)),
            Err(_) => Err(Unqueued::Stalled(share)),
        }
    }

    /// Returns the pool's `[[pool]]` entry as last configured.
    pub fn entry(&self) -> PoolConfig {
        self.shared.desired.borrow().entry.clone()
    }

    /// Applies a reloaded `[[pool]]` entry: a new url, user or password
    /// makes the pool reconnect with it (every connection of it); weights
    /// and caps are the policy's.
    pub fn reconfigure(&self, entry: PoolConfig) {
        self.shared.desired.send_if_modified(|desired| {
            let changed = desired.entry != entry;
            desired.entry = entry;
            changed
        });
    }

    /// Takes the pool out for good (it left the config file). The pool is
    /// marked down at once, so the policy moves its miners, but keeps its
    /// connections for [`RETIRE_GRACE`] so shares for its jobs still on
    /// their way are forwarded and answered; then its owner answers what it
    /// holds as unavailable, leaves the pool down and out of every miner's
    /// version mask, and removes its series.
    pub fn retire(&self) {
        self.shared
            .desired
            .send_if_modified(|desired| !std::mem::replace(&mut desired.retired, true));
    }

    /// Returns whether the pool was taken out of the config.
    pub fn is_retired(&self) -> bool {
        self.shared.desired.borrow().retired
    }
}

/// What every pool owner shares with the proxy.
#[derive(Debug, Clone)]
pub struct Context {
    /// The proxy's metrics.
    pub metrics: Metrics,
    /// Miner-facing job ids, unique across pools.
    pub ids: Arc<JobIds>,
    /// The miners' extranonce layouts.
    pub layouts: Arc<Layouts>,
    /// The version-rolling mask to ask pools for (0: none).
    pub version_mask: u32,
    /// Which extranonce spaces hold miners, by index: its length is how
    /// many connections a pool may have, and a pool keeps a connection
    /// open for each space that holds miners.
    pub spaces: watch::Receiver<Vec<bool>>,
    /// Where a pool going up or down is reported.
    pub policy: PolicyInbox,
    /// Stops every pool.
    pub shutdown: CancellationToken,
    /// Tracks every pool's task.
    pub tasks: TaskTracker,
}

/// Starts the owner of pool `id` with its `[[pool]]` entry and returns its
/// handle (for [`Space::FIRST`]). `replaces` is the handle of the pool's
/// previous owner, for a pool back in the config: the new owner waits for
/// it to have finished (so its last writes cannot land on the new state or
/// series) and starts after its epochs (so the old jobs stay stale).
pub fn spawn(
    context: &Context,
    id: PoolId,
    entry: PoolConfig,
    replaces: Option<&PoolHandle>,
) -> PoolHandle {
    let spaces = context.spaces.borrow().len().max(1);
    let mut queues = Vec::with_capacity(spaces);
    let mut connections = Vec::with_capacity(spaces);
    for index in 0..spaces {
        let space = Space(u16::try_from(index).expect("at most MAX_SPACES spaces"));
        let first = PoolState {
            epoch: replaces.map_or(0, |old| old.in_space(space).state().epoch + 1),
            ..PoolState::default()
        };
        let (state_tx, state_rx) = watch::channel(first);
        let (shares_tx, shares_rx) = mpsc::channel(FORWARD_QUEUE);
        let (blocks_tx, blocks_rx) = mpsc::channel(FORWARD_QUEUE);
        queues.push(Queues {
            state: state_rx,
            shares: shares_tx,
            blocks: blocks_tx,
        });
        connections.push(owner::ConnectionParts {
            state: state_tx,
            shares: shares_rx,
            blocks: blocks_rx,
        });
    }
    let name: Arc<str> = Arc::from(entry.name.as_str());
    let (desired_tx, desired_rx) = watch::channel(Desired {
        entry: entry.clone(),
        retired: false,
    });
    let finished = CancellationToken::new();
    let series = PoolSeries::new(&name);
    if replaces.is_none() {
        // Visible at once; a pool back in the config registers its own
        // once the previous owner has taken its series out.
        context.metrics.add_pool_series(&series);
    }
    let owner = owner::Owner::new(
        owner::Parts {
            id,
            name: Arc::clone(&name),
            entry,
            connections,
            desired: desired_rx,
            series: series.clone(),
        },
        context,
    );
    let predecessor = replaces.map(|old| old.shared.finished.clone());
    let done = finished.clone();
    context.tasks.spawn(async move {
        owner.run(predecessor).await;
        done.cancel();
    });
    let state = queues[0].state.clone();
    PoolHandle {
        id,
        space: Space::FIRST,
        state,
        shared: Arc::new(Shared {
            name,
            connections: queues.into_boxed_slice(),
            desired: desired_tx,
            finished,
            series,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose owner is the test: it holds the share queue.
    fn handle(queue: usize) -> (PoolHandle, mpsc::Receiver<Forward>) {
        let (shares, rx) = mpsc::channel(queue);
        let (blocks, _) = mpsc::channel(1);
        let entry: PoolConfig = crate::Config::from_toml_str(
            "[policy]\nmax_share = 1.0\n[[pool]]\nname = \"p\"\nurl = \"stratum+tcp://127.0.0.1:1\"\nuser = \"u\"\n",
        )
        .expect("a valid config")
        .0
        .policy
        .pools[0]
            .clone();
        let state = watch::channel(PoolState::default()).1;
        let handle = PoolHandle {
            id: PoolId(0),
            space: Space::FIRST,
            state: state.clone(),
            shared: Arc::new(Shared {
                name: Arc::from("p"),
                connections: Box::new([Queues {
                    state,
                    shares,
                    blocks,
                }]),
                desired: watch::channel(Desired {
                    entry,
                    retired: false,
                })
                .0,
                finished: CancellationToken::new(),
                series: PoolSeries::new("p"),
            }),
        };
        (handle, rx)
    }

    fn share() -> (Forward, oneshot::Receiver<Outcome>) {
        let (reply, answer) = oneshot::channel();
        let share = Forward {
            pool_job_id: Arc::from("j"),
            extranonce2: PoolExtranonce2::new(8, &[], &[]),
            ntime: 0,
            nonce: 0,
            version_bits: None,
            settlement: Settlement::new(ShareSeries::new("p").submit(0.0), reply),
        };
        (share, answer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_makes_the_sender_wait_for_room_not_fail() {
        let (pool, mut queue) = handle(1);
        pool.forward(share().0, false).await.expect("room");
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.forward(share().0, false).await }
        });
        tokio::time::sleep(QUEUE_WAIT / 2).await;
        assert!(!waiting.is_finished(), "waits while the queue is full");
        queue.recv().await.expect("the first share");
        waiting
            .await
            .expect("joined")
            .expect("queued once there is room");
        assert!(queue.recv().await.is_some(), "the second share arrives");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_never_moves_or_a_stopped_owner_gives_the_share_back() {
        let (pool, queue) = handle(1);
        pool.forward(share().0, false).await.expect("room");
        let stalled = pool.forward(share().0, false).await.expect_err("no room");
        assert_eq!(stalled.outcome(), Outcome::PoolTimeout);
        drop(queue);
        let gone = pool.forward(share().0, false).await.expect_err("no owner");
        assert_eq!(gone.outcome(), Outcome::PoolUnavailable);
    }
}
