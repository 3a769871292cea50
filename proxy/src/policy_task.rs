//! The task that owns the policy engine and publishes its plan.
//!
//! Sessions report credited work and joins and leaves; each pool's owner
//! reports it going up or down through the [`PolicyInbox`], the same
//! queue reloads come by, so the engine always knows a pool before it
//! hears of its health. The task stamps each
//! observation with the time since it started, plans every
//! `rebalance_every` (and at once after a join, a leave or a pool going up
//! or down, so a new miner gets work without waiting), and publishes the
//! [`Assignment`] on a `watch` that sessions read. It is the only writer.
//! A reloaded policy (new caps, new pools, pools taken out) arrives as a
//! [`PolicyReload`] and is planned with at once. The policy series of a
//! pool taken out of the config (its handle says so) are not exported.
//! Sessions are woken only by a plan that moves or places a miner: with
//! 100,000 idle miners, a wake of each every `rebalance_every` would cost
//! more than everything else they do.

use std::sync::Arc;
use std::time::Duration;

use hashsplit_policy::{Assignment, Engine, Instant as PolicyInstant, Observation, Policy, PoolId};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::pool::Pools;

/// Work observations queued for the policy task before they are dropped.
const WORK_QUEUE: usize = 65_536;
/// Joins, leaves and pool health changes queued for the policy task.
const MEMBERSHIP_QUEUE: usize = 4_096;
/// How long a burst of joins is gathered before the plan that serves them.
const REPLAN_DELAY: Duration = Duration::from_millis(20);

/// A reloaded policy for the task.
#[derive(Debug)]
pub struct PolicyReload {
    /// Every pool the proxy has run, in [`PoolId`] order (removed ones
    /// too: they stay down).
    pub policy: Arc<Policy>,
}

/// What comes to the task in order: reloads, and pools going up or down.
#[derive(Debug)]
enum Inbox {
    Reload(PolicyReload),
    PoolHealth { pool: PoolId, up: bool },
}

/// Where reloads and pools' health go to the policy task. Unbounded, as
/// neither may be lost: a reload is rare, and a pool reports only a change
/// of its health, at most a few per connection.
#[derive(Debug, Clone)]
pub struct PolicyInbox {
    tx: mpsc::UnboundedSender<Inbox>,
}

impl PolicyInbox {
    /// Hands a reloaded policy to the task.
    pub fn reload(&self, reload: PolicyReload) {
        // An error means the task has stopped (shutdown): nothing to tell.
        let _ = self.tx.send(Inbox::Reload(reload));
    }

    /// Reports that `pool` went up or down.
    pub fn pool_health(&self, pool: PoolId, up: bool) {
        let _ = self.tx.send(Inbox::PoolHealth { pool, up });
    }
}

/// What sessions hold of the policy task.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    /// The latest plan.
    pub assignment: watch::Receiver<Arc<Assignment>>,
    work: mpsc::Sender<Observation>,
    membership: mpsc::Sender<Observation>,
    metrics: Metrics,
}

impl PolicyHandle {
    /// Reports credited work without waiting; a full queue drops it and
    /// counts the drop (the estimate tolerates a missing share).
    pub fn work(&self, observation: Observation) {
        if self.work.try_send(observation).is_err() {
            self.metrics.policy_observations_dropped.inc();
        }
    }

    /// Reports a join or a leave; these are never dropped.
    pub async fn membership(&self, observation: Observation) {
        // An error means the task has stopped (shutdown): nothing to tell.
        let _ = self.membership.send(observation).await;
    }
}

/// Starts the policy task; returns what sessions hold of it and where
/// reloaded policies (see [`crate::reload`]) and pools' health go.
pub fn spawn(
    policy: Arc<Policy>,
    pools: Pools,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> (PolicyHandle, PolicyInbox) {
    let start = Instant::now();
    let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
    let mut engine = Engine::new(Arc::clone(&policy));
    let first = Arc::new(engine.plan(PolicyInstant::ZERO));
    let (assignment_tx, assignment_rx) = watch::channel(first);
    let (work_tx, work_rx) = mpsc::channel(WORK_QUEUE);
    let (membership_tx, membership_rx) = mpsc::channel(MEMBERSHIP_QUEUE);

    let task = PolicyTask {
        engine,
        start,
        rebalance_every: policy.config.rebalance_every,
        work: work_rx,
        membership: membership_rx,
        inbox: inbox_rx,
        pools,
        assignment: assignment_tx,
        metrics: metrics.clone(),
        shutdown,
        was_feasible: true,
    };
    tasks.spawn(task.run());
    let handle = PolicyHandle {
        assignment: assignment_rx,
        work: work_tx,
        membership: membership_tx,
        metrics,
    };
    (handle, PolicyInbox { tx: inbox_tx })
}

struct PolicyTask {
    engine: Engine,
    start: Instant,
    rebalance_every: Duration,
    work: mpsc::Receiver<Observation>,
    membership: mpsc::Receiver<Observation>,
    inbox: mpsc::UnboundedReceiver<Inbox>,
    pools: Pools,
    assignment: watch::Sender<Arc<Assignment>>,
    metrics: Metrics,
    shutdown: CancellationToken,
    was_feasible: bool,
}

impl PolicyTask {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.rebalance_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let replan = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(replan);
        let mut replan_armed = false;
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                Some(observation) = self.membership.recv() => {
                    self.engine.observe(observation, self.now());
                    if !replan_armed {
                        replan_armed = true;
                        replan.as_mut().reset(Instant::now() + REPLAN_DELAY);
                    }
                }
                Some(message) = self.inbox.recv() => match message {
                    Inbox::PoolHealth { pool, up } => {
                        let observation = if up {
                            Observation::PoolUp { pool }
                        } else {
                            Observation::PoolDown { pool }
                        };
                        self.engine.observe(observation, self.now());
                        if !replan_armed {
                            replan_armed = true;
                            replan.as_mut().reset(Instant::now() + REPLAN_DELAY);
                        }
                    }
                    Inbox::Reload(reload) => {
                        if reload.policy.config.rebalance_every != self.rebalance_every {
                            self.rebalance_every = reload.policy.config.rebalance_every;
                            tick = tokio::time::interval(self.rebalance_every);
                            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        }
                        self.reload(reload);
                    }
                },
                Some(observation) = self.work.recv() => self.engine.observe(observation, self.now()),
                () = &mut replan, if replan_armed => {
                    replan_armed = false;
                    self.publish();
                }
                _ = tick.tick() => self.publish(),
            }
        }
    }

    fn reload(&mut self, reload: PolicyReload) {
        if self.engine.reconfigure(reload.policy).is_err() {
            warn!("a reloaded policy renames or drops the engine's pools; it is ignored");
            return;
        }
        self.publish();
    }

    fn now(&self) -> PolicyInstant {
        PolicyInstant::from_duration(self.start.elapsed())
    }

    fn publish(&mut self) {
        let now = self.now();
        let plan = plan_aside(&mut self.engine, now);
        let pools = self.pools.snapshot();
        for row in &plan.pools {
            let pool = row.name.as_str();
            if pools
                .get(row.pool)
                .is_some_and(|handle| handle.is_retired())
            {
                // Taken out of the config: this task is the only writer of
                // these series, and they go with the pool.
                let _ = self.metrics.policy_target.remove_label_values(&[pool]);
                let _ = self.metrics.policy_cap.remove_label_values(&[pool]);
                let _ = self.metrics.policy_delivered.remove_label_values(&[pool]);
                continue;
            }
            self.metrics
                .policy_target
                .with_label_values(&[pool])
                .set(row.target);
            self.metrics
                .policy_cap
                .with_label_values(&[pool])
                .set(row.cap.get());
            self.metrics
                .policy_delivered
                .with_label_values(&[pool])
                .set(row.delivered);
        }
        self.metrics
            .policy_feasible
            .set(if plan.feasible { 1.0 } else { 0.0 });
        // With no pool up there is nothing to split: the upstreams say why.
        let any_up = plan.pools.iter().any(|row| row.healthy);
        if any_up && plan.feasible != self.was_feasible {
            self.was_feasible = plan.feasible;
            if plan.feasible {
                info!("the healthy pools' caps can take all the hashrate again");
            } else if let Some(pool) = plan
                .fallback
                .and_then(|f| plan.pools.get(f.index()))
                .filter(|row| row.healthy)
            {
                warn!(
                    shortfall = plan.shortfall,
                    fallback = %pool.name,
                    "the healthy pools' caps cannot take all the hashrate; the fallback pool takes the rest"
                );
            } else {
                warn!(
                    shortfall = plan.shortfall,
                    on_infeasible = ?plan.on_infeasible,
                    "the healthy pools' caps cannot take all the hashrate; exceeding caps as configured"
                );
            }
        }
        // Every session watches the plan, so waking them all costs a wake
        // per miner: only a plan that places some miner differently (or
        // places a new one) wakes them. Readers that only look (the status
        // page, the API) see every plan all the same.
        let plan = Arc::new(plan);
        self.assignment.send_if_modified(|published| {
            let moves = places_differently(published, &plan);
            *published = plan;
            moves
        });
    }
}

/// Plans with `engine`. A plan over many miners takes a while (a tenth
/// of a second or more at 10,000 in memory-bench's profile): on a
/// multi-threaded runtime the
/// worker hands its other tasks to another thread meanwhile, so the
/// sessions queued behind it (a new block's notify) are not held up.
fn plan_aside(engine: &mut Engine, now: PolicyInstant) -> Assignment {
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
        tokio::task::block_in_place(|| engine.plan(now))
    } else {
        engine.plan(now)
    }
}

/// Returns whether `new` puts some miner on another pool than `old` did,
/// or places a miner `old` did not (a miner that left concerns nobody).
fn places_differently(old: &Assignment, new: &Assignment) -> bool {
    new.miners()
        .any(|(miner, pool)| old.pool_for(miner) != Some(pool))
}
