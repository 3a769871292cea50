//! The task that owns the policy engine and publishes its plan.
//!
//! Sessions report credited work and joins and leaves; every pool's
//! up/down state is read from its upstream's watch. The task stamps each
//! observation with the time since it started, plans every
//! `rebalance_every` (and at once after a join, a leave or a pool going up
//! or down, so a new miner gets work without waiting), and publishes the
//! [`Assignment`] on a `watch` that sessions read. It is the only writer.
//! A reloaded policy (new caps, new pools, pools taken out) arrives as a
//! [`PolicyReload`] and is planned with at once.

use std::sync::Arc;
use std::time::Duration;

use hashsplit_policy::{Assignment, Engine, Instant as PolicyInstant, Observation, Policy, PoolId};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::jobs::PoolState;
use crate::metrics::Metrics;

/// Work observations queued for the policy task before they are dropped.
const WORK_QUEUE: usize = 65_536;
/// Joins, leaves and pool health changes queued for the policy task.
const MEMBERSHIP_QUEUE: usize = 4_096;
/// How long a burst of joins is gathered before the plan that serves them.
const REPLAN_DELAY: Duration = Duration::from_millis(20);

/// A reloaded policy for the task, with the pools it names first.
#[derive(Debug)]
pub struct PolicyReload {
    /// Every pool the proxy has run, in [`PoolId`] order (removed ones
    /// too: they stay down).
    pub policy: Arc<Policy>,
    /// Pools (new or back) whose health to follow from now on.
    pub watch: Vec<(PoolId, watch::Receiver<PoolState>)>,
    /// For each pool, whether it was taken out of the config: its series
    /// are not exported.
    pub removed: Vec<bool>,
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
/// reloaded policies go (see [`crate::reload`]).
pub fn spawn(
    policy: Arc<Policy>,
    pools: Vec<watch::Receiver<PoolState>>,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> (PolicyHandle, mpsc::UnboundedSender<PolicyReload>) {
    let start = Instant::now();
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    let mut engine = Engine::new(Arc::clone(&policy));
    let first = Arc::new(engine.plan(PolicyInstant::ZERO));
    let (assignment_tx, assignment_rx) = watch::channel(first);
    let (work_tx, work_rx) = mpsc::channel(WORK_QUEUE);
    let (membership_tx, membership_rx) = mpsc::channel(MEMBERSHIP_QUEUE);

    for (index, state) in pools.into_iter().enumerate() {
        tasks.spawn(watch_health(
            PoolId(index),
            state,
            membership_tx.clone(),
            shutdown.clone(),
        ));
    }
    let task = PolicyTask {
        engine,
        start,
        rebalance_every: policy.config.rebalance_every,
        work: work_rx,
        membership: membership_rx,
        membership_tx: membership_tx.clone(),
        reloads: reload_rx,
        removed: vec![false; policy.pools.len()],
        tasks: tasks.clone(),
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
    (handle, reload_tx)
}

/// Turns a pool's state changes into up/down observations.
async fn watch_health(
    pool: PoolId,
    mut state: watch::Receiver<PoolState>,
    to_policy: mpsc::Sender<Observation>,
    shutdown: CancellationToken,
) {
    let mut was_up = false;
    loop {
        let up = state.borrow_and_update().up;
        if up != was_up {
            was_up = up;
            let observation = if up {
                Observation::PoolUp { pool }
            } else {
                Observation::PoolDown { pool }
            };
            if to_policy.send(observation).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}

struct PolicyTask {
    engine: Engine,
    start: Instant,
    rebalance_every: Duration,
    work: mpsc::Receiver<Observation>,
    membership: mpsc::Receiver<Observation>,
    membership_tx: mpsc::Sender<Observation>,
    reloads: mpsc::UnboundedReceiver<PolicyReload>,
    removed: Vec<bool>,
    tasks: tokio_util::task::TaskTracker,
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
                Some(observation) = self.work.recv() => self.engine.observe(observation, self.now()),
                () = &mut replan, if replan_armed => {
                    replan_armed = false;
                    self.publish();
                }
                _ = tick.tick() => self.publish(),
                Some(reload) = self.reloads.recv() => {
                    if reload.policy.config.rebalance_every != self.rebalance_every {
                        self.rebalance_every = reload.policy.config.rebalance_every;
                        tick = tokio::time::interval(self.rebalance_every);
                        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                    self.reload(reload);
                }
            }
        }
    }

    fn reload(&mut self, reload: PolicyReload) {
        if self.engine.reconfigure(reload.policy).is_err() {
            warn!("a reloaded policy renames or drops the engine's pools; it is ignored");
            return;
        }
        // The policy series of a pool just taken out go now: this task is
        // their only writer, and it skips removed pools from here on.
        for (index, (&now, &before)) in reload.removed.iter().zip(&self.removed).enumerate() {
            if now && !before {
                let name = &self.engine.policy().pools[index].name;
                let _ = self.metrics.policy_target.remove_label_values(&[name]);
                let _ = self.metrics.policy_cap.remove_label_values(&[name]);
                let _ = self.metrics.policy_delivered.remove_label_values(&[name]);
            }
        }
        self.removed = reload.removed;
        for (pool, state) in reload.watch {
            self.tasks.spawn(watch_health(
                pool,
                state,
                self.membership_tx.clone(),
                self.shutdown.clone(),
            ));
        }
        self.publish();
    }

    fn now(&self) -> PolicyInstant {
        PolicyInstant::from_duration(self.start.elapsed())
    }

    fn publish(&mut self) {
        let plan = self.engine.plan(self.now());
        for row in &plan.pools {
            if self.removed.get(row.pool.index()) == Some(&true) {
                continue;
            }
            let pool = row.name.as_str();
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
        self.assignment.send_replace(Arc::new(plan));
    }
}
