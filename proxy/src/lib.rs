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
//! config file reloaded on SIGHUP (or through the control API of
//! [`http`], which also serves `/metrics`, the status page and the read
//! API); [`transport`] opens a pool's connection, plain TCP or TLS;
//! [`drain`] takes the proxy out of a farm (SIGUSR1); [`node`] builds work
//! from the operator's own node's templates; [`probe`] asks every pool
//! what it offers (`hashsplit check --probe`).
//!
//! [`Proxy::start`] takes an already-bound listener, so tests bind
//! `127.0.0.1:0` and pass it in; [`run`] serves until a shutdown future.

#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod directory;
pub mod drain;
pub mod extranonce;
pub mod http;
pub mod jobs;
pub mod listen;
pub mod metrics;
pub mod network;
pub mod node;
pub mod policy_task;
pub mod pool;
pub mod probe;
pub mod proxy_protocol;
pub mod reload;
#[cfg(target_os = "linux")]
pub mod service;
pub mod session;
pub mod simulate;
pub mod transport;
pub mod vardiff;

mod accept;

pub use config::Config;
pub use http::HttpOptions;

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

use crate::directory::MinerDirectory;
use crate::drain::Drain;
use crate::extranonce::ExtranonceAllocator;
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
    /// Where reloaded configs are applied (SIGHUP and the control API).
    reloader: Arc<Reloader>,
    metrics: Metrics,
    assignment: watch::Receiver<Arc<Assignment>>,
    /// Each miner's authorized workers, for the API.
    directory: Arc<MinerDirectory>,
    accepting: CancellationToken,
    draining: CancellationToken,
    drain: Arc<Drain>,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

/// What applying a reloaded config needs: the one place SIGHUP and the
/// control API change the running proxy.
#[derive(Debug)]
struct Reloader {
    /// The config the proxy started with.
    config: Arc<Config>,
    /// The config in force, for the status page and the control API.
    current: watch::Sender<Arc<Config>>,
    /// The `[policy]` section in force; held while a reload is applied, so
    /// reloads apply one at a time.
    policy: Mutex<PolicyConfig>,
    /// Network shares fetched from `[network] source`, set over the file's
    /// values at every reload (written under the `policy` lock).
    fetched: Mutex<network::Fetched>,
    /// Every pool's handle; the proxy is the set's only writer.
    pools: PoolRegistry,
    /// What a new pool is started with.
    pool_context: pool::Context,
    policy_inbox: PolicyInbox,
    metrics: Metrics,
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
        let downstream = &config.downstream;
        let extranonces = ExtranonceAllocator::for_miners(
            usize::from(downstream.extranonce1_size),
            downstream.miners_per_pool_connection.map(|n| n as usize),
            config.server.max_connections as usize,
        );
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
            spaces: extranonces.occupied(),
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
        let directory = Arc::new(MinerDirectory::default());
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
            directory: Arc::clone(&directory),
        });
        tasks.spawn(accept::run(
            listener,
            shared,
            extranonces,
            accepting.clone(),
            stopping.clone(),
            tasks.clone(),
        ));
        info!(listen = %local_addr, pools = pool_names.len(), "hashsplit listening for miners");
        let (current, _) = watch::channel(Arc::clone(&config));
        let reloader = Arc::new(Reloader {
            policy: Mutex::new(config.policy.config.clone()),
            fetched: Mutex::default(),
            config,
            current,
            pools,
            pool_context,
            policy_inbox,
            metrics: metrics.clone(),
        });
        if let Some(network) = &reloader.config.network {
            let metrics = network::metrics::NetworkMetrics::register(metrics.registry())
                .expect("network series are registered once");
            let applier = Arc::clone(&reloader);
            let refresher = network::Refresher {
                config: network.clone(),
                current: reloader.current.subscribe(),
                apply: Arc::new(move |fetched| applier.network_shares(fetched)),
                metrics,
            };
            tasks.spawn(refresher.run(stopping.clone()));
        }
        Ok(Proxy {
            local_addr,
            reloader,
            metrics,
            assignment,
            directory,
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

    /// Serves `/metrics`, `/healthz`, `/readyz`, the status page and the
    /// read API on `listener` (see [`http`]) until the proxy stops, with
    /// the control API off.
    pub fn serve_metrics(&self, listener: TcpListener) {
        self.serve(listener, HttpOptions::default(), None);
    }

    /// Like [`Proxy::serve_metrics`], with the control API on if the
    /// config names a `[http] token_file`.
    ///
    /// # Errors
    /// If the token file cannot be read or holds no token.
    pub fn serve_http(&self, listener: TcpListener, options: HttpOptions) -> std::io::Result<()> {
        let config = &self.reloader.config.http;
        let token = match &config.token_file {
            Some(path) => Some(http::read_token(path)?),
            None => None,
        };
        self.serve(listener, options, token);
        Ok(())
    }

    fn serve(&self, listener: TcpListener, options: HttpOptions, token: Option<String>) {
        let config = self.reloader.current.subscribe();
        let snapshot = http::history::spawn(
            http::history::Sources {
                metrics: self.metrics.clone(),
                assignment: self.assignment.clone(),
                config: config.clone(),
            },
            options.sample_every,
            self.stopping.clone(),
            &self.tasks,
        );
        let control = token.map(|token| {
            // The control API's one way in: a validated config, applied as
            // SIGHUP applies one.
            let reloader = Arc::clone(&self.reloader);
            let apply: http::control::Apply = Arc::new(move |config| reloader.reload(config));
            http::control::Control::new(http::control::ControlSettings {
                token,
                apply,
                config,
                file: options.config_file.clone(),
                write_back: self.reloader.config.http.write_config,
                metrics: self.metrics.clone(),
            })
        });
        let site = http::Site::new(self.metrics.clone()).with_view(
            http::api::View {
                metrics: self.metrics.clone(),
                assignment: self.assignment.clone(),
                snapshot,
                directory: Arc::clone(&self.directory),
                control: control.is_some(),
            },
            control,
        );
        self.tasks
            .spawn(http::serve(listener, Arc::new(site), self.stopping.clone()));
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
        self.reloader.reload(config)
    }

    /// Counts a reload whose file could not be read or parsed (its problems
    /// are the reader's to log): the running policy stays in force.
    pub fn reload_unreadable(&self) {
        self.metrics.count_reload(false);
        error!("config reload refused: the file is invalid; the running policy stays in force");
    }

    /// Returns the config in force: the one started with, or the last
    /// reloaded.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.reloader.current.borrow())
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

/// What a reload applies.
enum Change {
    /// A config file (SIGHUP) or an edit of the config in force (the
    /// control API).
    File(Box<Config>),
    /// Network shares fetched from `[network] source`, over the config in
    /// force.
    NetworkShares(network::Fetched),
}

impl Reloader {
    /// Applies a reloaded config file (see [`reload`]): the next plan
    /// uses its policy, new pools are connected, removed ones disconnected,
    /// a pool with a new url, user or password reconnected, and no miner is
    /// disconnected. Logs and counts what changed.
    fn reload(&self, config: Config) -> Reloaded {
        self.apply(Change::File(Box::new(config)))
    }

    /// Applies fetched network shares as a reload of the config in force
    /// that changes only those pools' `network_share`; not counted as a
    /// config reload, and nothing is done when no share changed.
    fn network_shares(&self, fetched: network::Fetched) {
        self.apply(Change::NetworkShares(fetched));
    }

    fn apply(&self, change: Change) -> Reloaded {
        let mut policy = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        let from_file = matches!(change, Change::File(_));
        let mut config = match change {
            Change::File(config) => *config,
            Change::NetworkShares(fetched) => {
                *self.fetched.lock().unwrap_or_else(|e| e.into_inner()) = fetched;
                Config::clone(&self.current.borrow())
            }
        };
        network::overlay(
            &mut config.policy,
            &self.fetched.lock().unwrap_or_else(|e| e.into_inner()),
        );
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
        if !from_file && reloaded.changes.is_empty() {
            return reloaded;
        }
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
        if from_file {
            self.metrics.count_reload(true);
            info!(changes = ?reloaded.changes, "config reloaded");
        } else {
            info!(changes = ?reloaded.changes, "network shares applied");
        }
        if from_file && !reloaded.restart_needed.is_empty() {
            warn!(
                sections = ?reloaded.restart_needed,
                "these sections changed and take effect only at the next start"
            );
        }
        self.current.send_replace(Arc::new(config));
        reloaded
    }
}

/// Serves miners on `listener` (and HTTP on `http`, if given: see
/// [`Proxy::serve_http`]) until `shutdown` completes, or until `drain` does
/// and the drain (see [`Drain::run`]) is over, then shuts down gracefully
/// (see [`Proxy::shutdown`]). Each config on `reloads` is applied with
/// [`Proxy::reload`]; `None` stands for a file that could not be loaded.
pub async fn run(
    config: Config,
    listener: TcpListener,
    http: Option<(TcpListener, HttpOptions)>,
    shutdown: impl Future<Output = ()>,
    drain: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Option<Config>>,
) -> std::io::Result<()> {
    let proxy = Proxy::start(config, listener)?;
    if let Some((listener, options)) = http {
        proxy.serve_http(listener, options)?;
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
