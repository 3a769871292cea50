//! The hashsplit daemon: miner sessions, pool upstreams, the policy task and
//! metrics.
//!
//! Miners connect to a [`session`]; each submit is validated with
//! `hashsplit_stratum` and forwarded through the handle of the [`pool`] the
//! policy engine (`hashsplit_policy`, run by [`policy_task`]) assigned.
//! [`jobs`] translates pool jobs so a miner can move between pools without
//! reconnecting; [`vardiff`] and [`extranonce`] are per-miner state;
//! [`metrics`] counts every share; [`config`] is the TOML file;
//! [`simulate`] prints `hashsplit simulate`'s report; [`reload`] checks a
//! config file reloaded on SIGHUP; [`transport`] opens a pool's
//! connection, plain TCP or TLS; [`drain`] takes the proxy out of a farm
//! (SIGUSR1).
//!
//! [`Proxy::start`] takes an already-bound listener, so tests bind
//! `127.0.0.1:0` and pass it in; [`run`] serves until a shutdown future.

#![forbid(unsafe_code)]

pub mod config;
pub mod demo;
pub mod drain;
pub mod exporter;
pub mod extranonce;
pub mod jobs;
pub mod metrics;
pub mod node;
pub mod policy_task;
pub mod pool;
pub mod proxy_protocol;
pub mod reload;
pub mod session;
pub mod simulate;
pub mod transport;
pub mod vardiff;

mod accept;

pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashsplit_policy::{Assignment, PolicyConfig, PoolId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::drain::Drain;
use crate::jobs::{JobIds, Layout, Layouts};
use crate::metrics::Metrics;
use crate::policy_task::{PolicyInbox, PolicyReload};
use crate::pool::PoolRegistry;
use crate::reload::{KnownPool, Reloaded};
use crate::session::{ReconnectLimiter, Shared};

/// How long shutdown waits for forwarded shares' answers.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    /// The config the proxy started with.
    config: Arc<Config>,
    /// The `[policy]` section in force; held while a reload is applied, so
    /// reloads apply one at a time.
    policy: Mutex<PolicyConfig>,
    /// Every pool's handle; the proxy is the set's only writer.
    pools: PoolRegistry,
    /// What a new pool is started with.
    pool_context: pool::Context,
    policy_inbox: PolicyInbox,
    metrics: Metrics,
    assignment: watch::Receiver<Arc<Assignment>>,
    accepting: CancellationToken,
    draining: CancellationToken,
    drain: Arc<Drain>,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl Proxy {
    /// Starts the pools, the policy task and the accept loop on
    /// `listener`.
    pub fn start(config: Config, listener: TcpListener) -> std::io::Result<Proxy> {
        let local_addr = listener.local_addr()?;
        let config = Arc::new(config);
        let pool_names: Vec<String> = config.policy.pools.iter().map(|p| p.name.clone()).collect();
        let mut metrics = Metrics::new(&pool_names);
        if config.metrics.per_worker {
            metrics = metrics.with_per_worker(config.metrics.max_workers as usize);
        }
        let stopping = CancellationToken::new();
        let accepting = stopping.child_token();
        let draining = CancellationToken::new();
        let tasks = TaskTracker::new();
        let layouts = Arc::new(Layouts::new(Layout {
            extranonce1_size: usize::from(config.downstream.extranonce1_size),
            extranonce2_size: usize::from(config.downstream.extranonce2_size),
        }));
        let pools = PoolRegistry::default();
        let (policy, policy_inbox) = policy_task::spawn(
            Arc::new(config.policy.clone()),
            pools.subscribe(),
            metrics.clone(),
            stopping.clone(),
            &tasks,
        );
        let pool_context = pool::Context {
            metrics: metrics.clone(),
            ids: Arc::new(JobIds::default()),
            layouts: Arc::clone(&layouts),
            version_mask: config.downstream.version_mask,
            policy: policy_inbox.clone(),
            shutdown: stopping.clone(),
            tasks: tasks.clone(),
        };
        for (index, entry) in config.policy.pools.iter().enumerate() {
            pools.put(pool::spawn(
                &pool_context,
                PoolId(index),
                entry.clone(),
                None,
            ));
        }
        let assignment = policy.assignment.clone();
        let drain = Arc::new(Drain::new(
            config.server.drain_period,
            accepting.clone(),
            stopping.clone(),
            metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            config: Arc::clone(&config),
            metrics: metrics.clone(),
            pools: pools.subscribe(),
            policy,
            layouts,
            reconnects: ReconnectLimiter::default(),
            draining: draining.clone(),
            drain: Arc::clone(&drain),
            line_budget: hashsplit_stratum::LineBudget::new(config.server.line_buffer_budget),
        });
        tasks.spawn(accept::run(
            listener,
            shared,
            accepting.clone(),
            stopping.clone(),
            tasks.clone(),
        ));
        info!(listen = %local_addr, pools = pool_names.len(), "hashsplit listening for miners");
        Ok(Proxy {
            local_addr,
            policy: Mutex::new(config.policy.config.clone()),
            config,
            pools,
            pool_context,
            policy_inbox,
            metrics,
            assignment,
            accepting,
            draining,
            drain,
            stopping,
            tasks,
        })
    }

    /// Returns the address miners connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns the proxy's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (see
    /// [`exporter`]) until the proxy stops.
    pub fn serve_metrics(&self, listener: TcpListener) {
        let metrics = self.metrics.clone();
        self.tasks
            .spawn(exporter::serve(listener, metrics, self.stopping.clone()));
    }

    /// Returns the proxy's drain, to start it (see [`Drain::run`]) from
    /// wherever the request comes.
    pub fn drain(&self) -> Arc<Drain> {
        Arc::clone(&self.drain)
    }

    /// Returns the latest plan of the policy engine.
    pub fn assignment(&self) -> Arc<Assignment> {
        Arc::clone(&self.assignment.borrow())
    }

    /// Applies a reloaded config file (see [`reload`]): the next plan
    /// uses its policy, new pools are connected, removed ones disconnected,
    /// a pool with a new url, user or password reconnected, and no miner is
    /// disconnected. Logs and counts what changed.
    pub fn reload(&self, config: Config) -> Reloaded {
        let mut policy = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        let set = self.pools.snapshot();
        let known: Vec<KnownPool> = set
            .handles()
            .iter()
            .map(|pool| KnownPool {
                entry: pool.entry(),
                retired: pool.is_retired(),
            })
            .collect();
        let reloaded = reload::plan(&self.config, &policy, &known, &config);
        let entry = |pool: PoolId| reloaded.pools[pool.index()].entry.clone();
        for &pool in &reloaded.reconfigure {
            if let Some(handle) = set.get(pool) {
                handle.reconfigure(entry(pool));
            }
        }
        for &pool in &reloaded.removed {
            if let Some(handle) = set.get(pool) {
                // Its owner removes the pool's series once it has settled
                // what it held.
                handle.retire();
            }
        }
        // The engine hears of the new pools before any can report being up.
        self.policy_inbox.reload(PolicyReload {
            policy: Arc::new(reloaded.policy()),
        });
        for &pool in &reloaded.added {
            // A pool back in the file: its new owner waits for the old one
            // to have finished, and starts after its epoch.
            let handle = pool::spawn(&self.pool_context, pool, entry(pool), set.get(pool));
            self.pools.put(handle);
        }
        *policy = reloaded.config.clone();
        self.count_reload(true);
        info!(changes = ?reloaded.changes, "config reloaded");
        if !reloaded.restart_needed.is_empty() {
            warn!(
                sections = ?reloaded.restart_needed,
                "these sections changed and take effect only at the next start"
            );
        }
        reloaded
    }

    /// Counts a reload whose file could not be read or parsed (its problems
    /// are the reader's to log): the running policy stays in force.
    pub fn reload_unreadable(&self) {
        self.count_reload(false);
        error!("config reload refused: the file is invalid; the running policy stays in force");
    }

    fn count_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.metrics
            .config_last_reload_successful
            .set(i64::from(applied));
    }

    /// Stops accepting miners, waits up to `drain` for the answers of shares
    /// already forwarded, then stops every task.
    pub async fn shutdown(self, drain: Duration) {
        self.accepting.cancel();
        self.draining.cancel();
        let deadline = tokio::time::Instant::now() + drain;
        while self.metrics.sum("hashsplit_shares_in_flight", &[]) > 0.0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unanswered = self.metrics.sum("hashsplit_shares_in_flight", &[]);
        if unanswered > 0.0 {
            warn!(
                unanswered,
                "stopping with shares still unanswered by their pools"
            );
        }
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(drain, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop in time");
        }
        info!("hashsplit stopped");
    }
}

/// Serves miners on `listener` (and metrics on `metrics`, if given) until
/// `shutdown` completes, or until `drain` does and the drain (see
/// [`Drain::run`]) is over, then shuts down gracefully (see
/// [`Proxy::shutdown`]). Each config on `reloads` is applied with
/// [`Proxy::reload`]; `None` stands for a file that could not be loaded.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    drain: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Option<Config>>,
) -> std::io::Result<()> {
    let proxy = Proxy::start(config, listener)?;
    if let Some(metrics) = metrics {
        proxy.serve_metrics(metrics);
    }
    tokio::pin!(shutdown);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut drain => {
                let draining = proxy.drain();
                tokio::select! {
                    () = draining.run() => {}
                    () = &mut shutdown => {}
                }
                break;
            }
            Some(reload) = reloads.recv() => match reload {
                Some(config) => {
                    proxy.reload(config);
                }
                None => proxy.reload_unreadable(),
            },
        }
    }
    info!("shutting down: no new miners, waiting for answers in flight");
    proxy.shutdown(SHUTDOWN_DRAIN).await;
    Ok(())
}
