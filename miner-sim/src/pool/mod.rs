//! [`SimPool`]: a Stratum v1 pool server on loopback, strict about shares,
//! with per-worker accounting and faults a test can switch on at run time.
//!
//! - [`template`]: the jobs it hands out (coinbase, merkle branch, blocks).
//! - [`checker`]: the verdict on each share, per connection.
//! - [`stats`]: what it counted.
//! - [`fault`]: what can go wrong on purpose.
//! - `session`: one task per connection.

pub mod checker;
pub mod fault;
mod session;
pub mod stats;
pub mod template;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashsplit_stratum::{Difficulty, Target};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use checker::{Credit, ShareChecker};
pub use fault::{BadDifficulty, Fault, HUGE_LINE_BYTES};
pub use stats::{INJECTED_REJECT, PoolStats, WorkerStats};
pub use template::{JobFactory, PoolJob};

use fault::Modes;
use stats::StatsBook;

/// Compact target of regtest: about every other hash is a block, so a test
/// can exercise block candidates.
pub const NBITS_REGTEST: u32 = 0x207f_ffff;
/// A mainnet-like compact target: no simulated share will ever be a block.
pub const NBITS_MAINNET: u32 = 0x1703_4219;

/// How a [`SimPool`] behaves. `Default` is what tests want most of the time.
#[derive(Debug, Clone)]
pub struct SimPoolConfig {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// Bytes of extranonce1 given to each connection (0..=16).
    pub extranonce1_size: usize,
    /// Bytes of extranonce2 each connection rolls (1..=16).
    pub extranonce2_size: usize,
    /// Share difficulty for new connections.
    pub difficulty: Difficulty,
    /// Version bits the pool lets miners roll; `None` refuses version
    /// rolling in `mining.configure`.
    pub version_mask: Option<u32>,
    /// A new job (same block) this often; zero: only on [`SimPool::new_job`].
    pub job_interval: Duration,
    /// A new block (clean_jobs) this often; zero: only on
    /// [`SimPool::new_block`].
    pub clean_interval: Duration,
    /// Transactions besides the coinbase (they set the merkle branch length).
    pub fake_txs: usize,
    /// Compact network target; see [`NBITS_REGTEST`] and [`NBITS_MAINNET`].
    pub nbits: u32,
    /// Applies `mining.suggest_difficulty` to the connection's next jobs.
    pub honour_suggested_difficulty: bool,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for SimPoolConfig {
    fn default() -> Self {
        SimPoolConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            extranonce1_size: 4,
            extranonce2_size: 8,
            difficulty: Difficulty::try_new(0.001).expect("positive"),
            version_mask: Some(0x1fff_e000),
            job_interval: Duration::from_secs(5),
            clean_interval: Duration::from_secs(30),
            fake_txs: 4,
            nbits: NBITS_MAINNET,
            honour_suggested_difficulty: true,
            max_connections: 4096,
        }
    }
}

impl SimPoolConfig {
    fn validate(&self) -> io::Result<()> {
        let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if self.extranonce1_size > 16 {
            return bad(format!("extranonce1 size {} > 16", self.extranonce1_size));
        }
        if !(1..=16).contains(&self.extranonce2_size) {
            return bad(format!(
                "extranonce2 size {} outside 1..=16",
                self.extranonce2_size
            ));
        }
        if let Err(e) = Target::from_compact(self.nbits) {
            return bad(e.to_string());
        }
        Ok(())
    }
}

/// State every connection of one pool shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimPoolConfig,
    factory: Mutex<JobFactory>,
    pub(crate) jobs: watch::Sender<Arc<PoolJob>>,
    pub(crate) events: broadcast::Sender<Fault>,
    pub(crate) modes: watch::Sender<Modes>,
    pub(crate) stats: StatsBook,
    next_extranonce1: AtomicU64,
}

impl Shared {
    /// Makes a job and sends it to every ready connection.
    fn publish(&self, clean: bool) {
        let job = self
            .factory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next(clean)
            .expect("the config was validated");
        self.stats.update(|s| s.jobs += 1);
        self.jobs.send_replace(job);
    }

    /// Returns true if the pool ever issued job `id`.
    pub(crate) fn issued(&self, id: &str) -> bool {
        let next = self
            .factory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq();
        u64::from_str_radix(id, 16).is_ok_and(|seq| seq < next)
    }

    /// Returns an extranonce1 no other connection of this pool has.
    pub(crate) fn new_extranonce1(&self) -> Vec<u8> {
        let n = self.next_extranonce1.fetch_add(1, Ordering::Relaxed);
        let size = self.config.extranonce1_size;
        let mut bytes = vec![0u8; size.saturating_sub(8)];
        bytes.extend_from_slice(&n.to_be_bytes()[8 - size.min(8)..]);
        bytes
    }
}

/// A simulated pool, serving until [`SimPool::shutdown`] (or drop).
#[derive(Debug)]
pub struct SimPool {
    addr: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl SimPool {
    /// Binds `config.listen` and starts serving.
    pub async fn start(config: SimPoolConfig) -> io::Result<SimPool> {
        let listener = TcpListener::bind(config.listen).await?;
        SimPool::from_listener(listener, config)
    }

    /// Starts serving on an already bound listener (`config.listen` is
    /// ignored). Must be called within a tokio runtime.
    pub fn from_listener(listener: TcpListener, config: SimPoolConfig) -> io::Result<SimPool> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let extranonce_len = config.extranonce1_size + config.extranonce2_size;
        let mut factory = JobFactory::new(config.nbits, config.fake_txs, extranonce_len);
        let first = factory.next(true).map_err(io::Error::other)?;
        // Starts where a random pool would, so two pools' extranonces differ.
        let first_extranonce1 = rand::random::<u32>().into();
        let shared = Arc::new(Shared {
            factory: Mutex::new(factory),
            jobs: watch::Sender::new(first),
            events: broadcast::Sender::new(64),
            modes: watch::Sender::new(Modes::default()),
            stats: StatsBook::default(),
            next_extranonce1: AtomicU64::new(first_extranonce1),
            config,
        });
        shared.stats.update(|s| s.jobs = 1);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(make_jobs(shared.clone(), token.clone()));
        tracker.spawn(accept(
            listener,
            shared.clone(),
            token.clone(),
            tracker.clone(),
        ));
        Ok(SimPool {
            addr,
            shared,
            token,
            tracker,
        })
    }

    /// Returns the address the pool listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the configuration the pool runs with.
    pub fn config(&self) -> &SimPoolConfig {
        &self.shared.config
    }

    /// Returns a snapshot of what the pool counted.
    pub fn stats(&self) -> PoolStats {
        self.shared.stats.snapshot()
    }

    /// Returns the newest job (what a connection that becomes ready gets).
    pub fn current_job(&self) -> Arc<PoolJob> {
        self.shared.jobs.borrow().clone()
    }

    /// Sends a new job on the same block now.
    pub fn new_job(&self) {
        self.shared.publish(false);
    }

    /// Moves to a new block now: a job with `clean_jobs`, which makes every
    /// earlier job stale.
    pub fn new_block(&self) {
        self.shared.publish(true);
    }

    /// Switches on a mode, or makes a one-shot fault happen to every open
    /// connection (see [`Fault`]).
    pub fn set_fault(&self, fault: Fault) {
        let mut is_mode = false;
        self.shared.modes.send_if_modified(|modes| {
            let before = modes.clone();
            is_mode = modes.switch_on(&fault);
            *modes != before
        });
        if !is_mode {
            // No receiver just means no connection is open.
            let _ = self.shared.events.send(fault);
        }
    }

    /// Switches every mode off.
    pub fn clear_faults(&self) {
        self.shared.modes.send_replace(Modes::default());
    }

    /// Stops listening, closes every connection and waits (at most 5 s)
    /// for the pool's tasks to end.
    pub async fn shutdown(self) {
        self.token.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

impl Drop for SimPool {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Publishes a new job every `job_interval` and a new block every
/// `clean_interval` (either off when zero).
async fn make_jobs(shared: Arc<Shared>, token: CancellationToken) {
    let every = |period: Duration| {
        (!period.is_zero()).then(|| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        })
    };
    let mut jobs = every(shared.config.job_interval);
    let mut blocks = every(shared.config.clean_interval);
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            _ = tick(&mut blocks) => {
                shared.publish(true);
                // A fresh block restarts the job clock, as a pool's does.
                if let Some(jobs) = &mut jobs {
                    jobs.reset();
                }
            }
            _ = tick(&mut jobs) => shared.publish(false),
        }
    }
}

/// Waits for the next tick, or forever when there is no timer.
async fn tick(ticks: &mut Option<tokio::time::Interval>) -> tokio::time::Instant {
    match ticks {
        Some(ticks) => ticks.tick().await,
        None => std::future::pending().await,
    }
}

/// Accepts connections until cancelled, each served by its own task.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "sim pool: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let refuse = shared.modes.borrow().refuse_connections
            || shared.stats.read(|s| s.connections_open) >= shared.config.max_connections as u64;
        if refuse {
            // Reset rather than close, as a host with nothing listening would.
            let _ = stream.set_zero_linger();
            drop(stream);
            shared.stats.update(|s| s.connections_refused += 1);
            continue;
        }
        let _ = stream.set_nodelay(true);
        shared.stats.update(|s| {
            s.connections_accepted += 1;
            s.connections_open += 1;
        });
        tracker.spawn(session::serve(stream, shared.clone(), token.child_token()));
    }
}
