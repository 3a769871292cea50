//! [`SimMiner`]: a miner that connects to a pool (or the proxy), really
//! hashes, submits the shares that meet its difficulty, and behaves like a
//! firmware [`Profile`].
//!
//! - `connection`: the Stratum side, one connection after another.
//! - `hasher`: the hashing thread.

mod connection;
mod hasher;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashsplit_stratum::Difficulty;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use hasher::Hasher;

/// The version-rolling mask ASIC firmware asks for (BIP 310 default).
pub const ASIC_VERSION_MASK: u32 = 0x1fff_e000;

/// Firmware a [`SimMiner`] behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// cpuminer: no version rolling, ignores `mining.set_extranonce`, and
    /// sends every submit with JSON-RPC id 4.
    Cpuminer,
    /// ASIC firmware (cgminer/bmminer lineage): version rolling with mask
    /// 1fffe000, `mining.extranonce.subscribe`, and
    /// `mining.suggest_difficulty` when configured.
    Asic,
    /// A strict miner: version rolling, and it drops the connection on
    /// anything it did not expect (an unreadable line, an unknown method,
    /// an answer to nothing, `set_extranonce` it did not subscribe to).
    Strict,
}

impl Profile {
    /// Every profile, for tests and the CLI.
    pub const ALL: [Profile; 3] = [Profile::Cpuminer, Profile::Asic, Profile::Strict];

    /// Returns the user agent sent in `mining.subscribe`.
    pub fn user_agent(self) -> &'static str {
        match self {
            Profile::Cpuminer => "cpuminer/2.5.1",
            Profile::Asic => "bmminer/2.0.0",
            Profile::Strict => "strict-miner/1.0",
        }
    }

    /// Returns the name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Cpuminer => "cpuminer",
            Profile::Asic => "asic",
            Profile::Strict => "strict",
        }
    }

    fn rolls_version(self) -> bool {
        matches!(self, Profile::Asic | Profile::Strict)
    }

    fn subscribes_extranonce(self) -> bool {
        self == Profile::Asic
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown profile {s:?} (cpuminer, asic or strict)"))
    }
}

/// How a [`SimMiner`] behaves.
#[derive(Debug, Clone)]
pub struct SimMinerConfig {
    /// The pool or proxy to connect to (loopback only).
    pub addr: SocketAddr,
    /// The firmware to behave like.
    pub profile: Profile,
    /// The worker name authorized and submitted with.
    pub user: String,
    /// The password sent with it.
    pub password: String,
    /// Hashes a second; `None` hashes as fast as one core goes.
    pub hashrate: Option<f64>,
    /// Sent as `mining.suggest_difficulty` by the ASIC profile.
    pub suggest_difficulty: Option<Difficulty>,
    /// A firmware bug: rolls the bits it asked for instead of the bits the
    /// pool granted, so a pool with a narrower mask refuses its shares.
    pub rolls_outside_mask: bool,
    /// The first wait after a dropped connection; it doubles per failure.
    pub reconnect_backoff: Duration,
    /// The longest wait before reconnecting (backoff, or the wait a
    /// `client.reconnect` asks for).
    pub max_reconnect_wait: Duration,
    /// The local address to connect from (a loopback address such as
    /// 127.0.0.7), so tests can stand for miners at several addresses;
    /// `None` lets the system choose.
    pub source: Option<IpAddr>,
}

impl SimMinerConfig {
    /// Returns a config for `profile` mining at 500 kH/s as `user`.
    pub fn new(addr: SocketAddr, profile: Profile, user: &str) -> Self {
        SimMinerConfig {
            addr,
            profile,
            user: user.to_owned(),
            password: "x".to_owned(),
            hashrate: Some(500_000.0),
            suggest_difficulty: None,
            rolls_outside_mask: false,
            reconnect_backoff: Duration::from_millis(100),
            max_reconnect_wait: Duration::from_secs(5),
            source: None,
        }
    }
}

/// What a miner counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MinerStats {
    /// Connected and subscribed now.
    pub connected: bool,
    /// The address of the current (or last) connection.
    pub addr: Option<SocketAddr>,
    /// Sessions opened after the first (drops, `client.reconnect`).
    pub reconnects: u64,
    /// Shares sent.
    pub submitted: u64,
    /// Shares the pool accepted.
    pub accepted: u64,
    /// Shares the pool refused.
    pub rejected: u64,
    /// Refused shares by the pool's error code.
    pub rejects_by_code: BTreeMap<i64, u64>,
    /// Refused shares by the pool's error message.
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Shares found for a block the pool had moved on from, not sent.
    pub stale_dropped: u64,
    /// Shares found while the connection was not taking them, not sent.
    pub queue_dropped: u64,
    /// Jobs received.
    pub jobs_received: u64,
    /// Jobs received with `clean_jobs` (a new block, or a move to another
    /// pool).
    pub clean_jobs_received: u64,
    /// The previous-block hash of the job being mined, as the notify sent
    /// it (hex).
    pub prevhash: Option<String>,
    /// Hashes done.
    pub hashes: u64,
    /// The difficulty of the job being mined.
    pub difficulty: Option<f64>,
    /// The extranonce1 in use, hex.
    pub extranonce1: Option<String>,
    /// The extranonce2 size in use.
    pub extranonce2_size: Option<usize>,
    /// The version-rolling mask the pool granted.
    pub version_mask: Option<u32>,
    /// `mining.set_extranonce` calls ignored (cpuminer, or not subscribed).
    pub ignored_set_extranonce: u64,
    /// Why the last connection ended, or the last thing that went wrong.
    pub last_error: Option<String>,
}

impl fmt::Display for MinerStats {
    /// One line for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} submitted, {} accepted, {} rejected, {} reconnects, {} jobs, {} hashes",
            self.submitted,
            self.accepted,
            self.rejected,
            self.reconnects,
            self.jobs_received,
            self.hashes
        )?;
        if !self.rejects_by_reason.is_empty() {
            write!(f, ", rejects {:?}", self.rejects_by_reason)?;
        }
        if let Some(error) = &self.last_error {
            write!(f, ", last error: {error}")?;
        }
        Ok(())
    }
}

/// Counters shared by the miner's tasks.
#[derive(Debug, Default)]
pub(crate) struct MinerShared {
    stats: Mutex<MinerStats>,
    hashes: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    gaps: Mutex<Gaps>,
}

/// When the last mining session ended, and every gap so far between a
/// session ending and the next one subscribing.
#[derive(Debug, Default)]
struct Gaps {
    ended: Option<Instant>,
    closed: Vec<(Instant, Instant)>,
}

impl MinerShared {
    pub(crate) fn update(&self, change: impl FnOnce(&mut MinerStats)) {
        change(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether a session is subscribed now.
    pub(crate) fn snapshot_connected(&self) -> bool {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connected
    }

    /// Notes that a session that had subscribed ended.
    pub(crate) fn session_ended(&self) {
        let mut gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
        gaps.ended = Some(Instant::now());
    }

    /// Notes that a session subscribed, closing the gap since the last.
    pub(crate) fn session_subscribed(&self) {
        let mut gaps = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ended) = gaps.ended.take() {
            gaps.closed.push((ended, Instant::now()));
        }
    }

    fn snapshot(&self) -> MinerStats {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        stats.hashes = self.hashes.load(Ordering::Relaxed);
        stats.queue_dropped = self.dropped.load(Ordering::Relaxed);
        stats
    }
}

/// A simulated miner running in the background until [`SimMiner::stop`].
#[derive(Debug)]
pub struct SimMiner {
    shared: Arc<MinerShared>,
    token: CancellationToken,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    hasher: Option<std::thread::JoinHandle<()>>,
}

impl SimMiner {
    /// Starts mining: connects in the background and reconnects when the
    /// connection drops. Must be called within a tokio runtime.
    ///
    /// # Panics
    /// If the hashing thread cannot be started.
    pub fn start(config: SimMinerConfig) -> SimMiner {
        let shared = Arc::new(MinerShared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (work_tx, work_rx) = watch::channel(None);
        let (found_tx, found_rx) = mpsc::channel(256);
        let hasher = Hasher {
            work: work_rx,
            found: found_tx,
            stop: stop.clone(),
            hashes: shared.hashes.clone(),
            dropped: shared.dropped.clone(),
            rate: config.hashrate,
        }
        .spawn()
        .expect("start the hashing thread");
        let token = CancellationToken::new();
        let task = tokio::spawn(connection::run(
            config,
            shared.clone(),
            token.clone(),
            work_tx,
            found_rx,
        ));
        SimMiner {
            shared,
            token,
            stop,
            task,
            hasher: Some(hasher),
        }
    }

    /// Returns a snapshot of what the miner counted.
    pub fn stats(&self) -> MinerStats {
        self.shared.snapshot()
    }

    /// Returns every time the miner was between two sessions: from a
    /// subscribed session's end (a drop, `client.reconnect`) to the next
    /// session's subscription, on the tokio clock.
    pub fn reconnect_gaps(&self) -> Vec<(Instant, Instant)> {
        let gaps = self.shared.gaps.lock().unwrap_or_else(|p| p.into_inner());
        gaps.closed.clone()
    }

    /// Disconnects, stops hashing, and returns the final counts.
    pub async fn stop(mut self) -> MinerStats {
        self.token.cancel();
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
        if let Some(hasher) = self.hasher.take() {
            let _ = tokio::task::spawn_blocking(move || hasher.join()).await;
        }
        self.stats()
    }
}

impl Drop for SimMiner {
    fn drop(&mut self) {
        self.token.cancel();
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_their_own_names() {
        for profile in Profile::ALL {
            assert_eq!(profile.as_str().parse::<Profile>(), Ok(profile));
        }
        assert!("antminer".parse::<Profile>().is_err());
    }
}
