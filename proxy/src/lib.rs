//! The hashsplit daemon: miner sessions, pool upstreams, the policy task and
//! metrics.
//!
//! Miners connect to a [`session`]; each submit is validated with
//! `hashsplit_stratum` and forwarded to the [`upstream`] of the pool the
//! policy engine (`hashsplit_policy`, run by [`policy_task`]) assigned.
//! [`jobs`] translates pool jobs so a miner can move between pools without
//! reconnecting; [`vardiff`] and [`extranonce`] are per-miner state;
//! [`metrics`] counts every share; [`config`] is the TOML file;
//! [`simulate`] prints `hashsplit simulate`'s report; [`reload`] checks a
//! config file reloaded on SIGHUP; [`transport`] opens a pool's
//! connection, plain TCP or TLS.
//!
//! [`Proxy::start`] takes an already-bound listener, so tests bind
//! `127.0.0.1:0` and pass it in; [`run`] serves until a shutdown future.

#![forbid(unsafe_code)]

pub mod config;
pub mod demo;
pub mod exporter;
pub mod extranonce;
pub mod jobs;
pub mod metrics;
pub mod node;
pub mod policy_task;
pub mod proxy_protocol;
pub mod reload;
pub mod session;
pub mod simulate;
pub mod transport;
pub mod upstream;
pub mod vardiff;

mod accept;

pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashsplit_policy::{Assignment, PoolId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::jobs::{JobIds, Layout, Layouts};
use crate::metrics::Metrics;
use crate::policy_task::PolicyReload;
use crate::reload::{PoolTable, Reloaded};
use crate::session::{ReconnectLimiter, Shared};
use crate::upstream::{UpstreamConfig, UpstreamControl, Upstreams};

/// How long shutdown waits for forwarded shares' answers.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    /// The config the proxy started with.
    config: Arc<Config>,
    /// The pools as the engine knows them, and their upstreams' controls.
    pools: Mutex<(PoolTable, Vec<UpstreamControl>)>,
    upstreams: Arc<Upstreams>,
    /// What a new upstream is started with.
    layouts: Arc<Layouts>,
    ids: Arc<JobIds>,
    policy_reloads: mpsc::UnboundedSender<PolicyReload>,
    metrics: Metrics,
    assignment: watch::Receiver<Arc<Assignment>>,
    accepting: CancellationToken,
    draining: CancellationToken,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl Proxy {
    /// Starts the upstreams, the policy task and the accept loop on
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
        let ids = Arc::new(JobIds::default());
        let (handles, controls): (Vec<_>, Vec<_>) = config
            .policy
            .pools
            .iter()
            .enumerate()
            .map(|(index, pool)| {
                upstream::spawn(
                    UpstreamConfig {
                        pool: PoolId(index),
                        config: pool.clone(),
                        layouts: Arc::clone(&layouts),
                        version_mask: config.downstream.version_mask,
                        succeeds: None,
                    },
                    metrics.clone(),
                    Arc::clone(&ids),
                    &stopping,
                    &tasks,
                )
            })
            .unzip();
        let upstreams = Arc::new(Upstreams::new(handles));
        let (policy, policy_reloads) = policy_task::spawn(
            Arc::new(config.policy.clone()),
            upstreams.states(),
            metrics.clone(),
            stopping.clone(),
            &tasks,
        );
        let assignment = policy.assignment.clone();
        let shared = Arc::new(Shared {
            config: Arc::clone(&config),
            metrics: metrics.clone(),
            upstreams: Arc::clone(&upstreams),
            policy,
            layouts: Arc::clone(&layouts),
            reconnects: ReconnectLimiter::default(),
            draining: draining.clone(),
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
            pools: Mutex::new((PoolTable::new(config.policy.clone()), controls)),
            config,
            upstreams,
            layouts,
            ids,
            policy_reloads,
            metrics,
            assignment,
            accepting,
            draining,
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

    /// Returns the latest plan of the policy engine.
    pub fn assignment(&self) -> Arc<Assignment> {
        Arc::clone(&self.assignment.borrow())
    }

    /// Applies a reloaded config file (see [`reload`]): the next plan
    /// uses its policy, new pools are connected, removed ones disconnected,
    /// a pool with a new url, user or password reconnected, and no miner is
    /// disconnected. Logs and counts what changed.
    pub fn reload(&self, config: Config) -> Reloaded {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let (table, controls) = &mut *pools;
        let reloaded = reload::plan(&self.config, table, &config);
        let entries = &reloaded.table.policy.pools;
        for &pool in &reloaded.reconnect {
            controls[pool].entry.send_replace(entries[pool].clone());
        }
        for &pool in &reloaded.removed {
            // Its upstream removes the pool's series once it has settled
            // what it held.
            controls[pool].retire();
        }
        let mut watch = Vec::new();
        for &pool in &reloaded.added {
            // A pool back in the file: its new upstream waits for the old
            // one to have finished, and starts after its epoch.
            let succeeds = controls.get(pool).zip(self.upstreams.get(PoolId(pool)));
            let (handle, control) = upstream::spawn(
                UpstreamConfig {
                    pool: PoolId(pool),
                    config: entries[pool].clone(),
                    layouts: Arc::clone(&self.layouts),
                    version_mask: self.config.downstream.version_mask,
                    succeeds: succeeds.map(|(old, handle)| old.predecessor(&handle.state)),
                },
                self.metrics.clone(),
                Arc::clone(&self.ids),
                &self.stopping,
                &self.tasks,
            );
            watch.push((PoolId(pool), handle.state.clone()));
            self.upstreams.set(handle);
            if pool < controls.len() {
                controls[pool] = control;
            } else {
                controls.push(control);
            }
        }
        let _ = self.policy_reloads.send(PolicyReload {
            policy: Arc::new(reloaded.table.policy.clone()),
            watch,
            removed: reloaded.table.removed.clone(),
        });
        *table = reloaded.table.clone();
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
/// `shutdown` completes, then shuts down gracefully (see
/// [`Proxy::shutdown`]). Each config on `reloads` is applied with
/// [`Proxy::reload`]; `None` stands for a file that could not be loaded.
pub async fn run(
    config: Config,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Option<Config>>,
) -> std::io::Result<()> {
    let proxy = Proxy::start(config, listener)?;
    if let Some(metrics) = metrics {
        proxy.serve_metrics(metrics);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
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
