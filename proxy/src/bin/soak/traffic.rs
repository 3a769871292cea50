//! What reaches the proxy from the miner side: simulated miners that
//! really hash (joining and leaving in waves), and a slice of hostile
//! clients, each kind bounded in count and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hashsplit_stratum::{ClientMethod, Job, ShareContext, Target};
use miner_sim::client::StratumClient;
use miner_sim::{MinerStats, Profile, SimMiner, SimMinerConfig, find_share, within};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Hashes a second of each simulated miner: enough for tens of shares a
/// minute at the difficulties of the soak, little CPU (SHA-NI does it in
/// about 1% of a core).
pub const MINER_HASHRATE: f64 = 50_000.0;

/// Simulated miners that are running now.
#[derive(Default)]
pub struct Miners {
    running: Vec<SimMiner>,
    started: u64,
    /// What the miners that stopped counted, summed.
    pub done: MinerStats,
}

impl Miners {
    /// Starts `count` miners, rotating through the firmware profiles.
    pub fn join(&mut self, addr: SocketAddr, count: usize) {
        for _ in 0..count {
            let profile = Profile::ALL[(self.started % Profile::ALL.len() as u64) as usize];
            let mut config = SimMinerConfig::new(addr, profile, &format!("soak.{}", self.started));
            config.hashrate = Some(MINER_HASHRATE);
            self.running.push(SimMiner::start(config));
            self.started += 1;
        }
    }

    /// Stops the `count` miners that joined last (all, if fewer).
    pub async fn leave(&mut self, count: usize) {
        let keep = self.running.len().saturating_sub(count);
        let leaving = self.running.split_off(keep);
        for miner in leaving {
            let stats = miner.stop().await;
            self.done.submitted += stats.submitted;
            self.done.accepted += stats.accepted;
            self.done.rejected += stats.rejected;
            self.done.reconnects += stats.reconnects;
        }
    }

    /// Returns how many miners run.
    pub fn len(&self) -> usize {
        self.running.len()
    }
}

/// What the hostile clients saw that the README says cannot happen.
#[derive(Debug, Default)]
pub struct HostileCounts {
    /// Clients that ran.
    pub clients: AtomicU64,
    /// A client kept talking garbage and was not disconnected.
    pub not_disconnected: AtomicU64,
    /// An idle client was not closed after the handshake timeout.
    pub idle_kept: AtomicU64,
    /// A bad line got no answer.
    pub unanswered: AtomicU64,
}

/// One burst of hostile clients, at most about 30 connections, each done
/// within `handshake_timeout` + 20 s.
pub async fn hostile_burst(
    addr: SocketAddr,
    handshake_timeout: Duration,
    round: u64,
    counts: Arc<HostileCounts>,
) {
    let mut set = JoinSet::new();
    for i in 0..4 {
        set.spawn(garbage(addr, i, Arc::clone(&counts)));
    }
    for i in 0..3 {
        set.spawn(half_line(addr, 1000 + 1500 * i));
    }
    set.spawn(long_line(addr));
    for _ in 0..3 {
        set.spawn(idle(addr, handshake_timeout, Arc::clone(&counts)));
    }
    for i in 0..2 {
        set.spawn(authorize_storm(addr, round * 2 + i));
    }
    for i in 0..3 {
        set.spawn(bad_submits(addr, round * 3 + i, Arc::clone(&counts)));
    }
    for _ in 0..10 {
        set.spawn(async move {
            // Connect and leave at once: churn of the accept path.
            let _ = TcpStream::connect(addr).await;
        });
    }
    counts
        .clients
        .fetch_add(set.len() as u64, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
}

/// Sends 25 unreadable lines in a row (not JSON, not UTF-8, unknown
/// methods): each gets an error, and the proxy disconnects after 20.
async fn garbage(addr: SocketAddr, variant: u64, counts: Arc<HostileCounts>) {
    let Ok(mut client) = StratumClient::connect(addr).await else {
        return;
    };
    for n in 0..25u64 {
        let sent = match (variant + n) % 4 {
            0 => client.send_line("}{ not json at all").await,
            1 => client.send_bytes(b"\xff\xfe\xfd not utf-8\n").await,
            2 => {
                client
                    .send_line(&format!(
                        r#"{{"id":{n},"method":"mining.frobnicate","params":[]}}"#
                    ))
                    .await
            }
            _ => client.send_line("[1,2,3]").await,
        };
        if sent.is_err() {
            break;
        }
    }
    if !client.closed_within(Duration::from_secs(15)).await {
        counts.not_disconnected.fetch_add(1, Ordering::Relaxed);
    }
}

/// Subscribes, then sends part of a line and holds it for a while.
async fn half_line(addr: SocketAddr, bytes: usize) {
    let Ok(mut client) = StratumClient::connect(addr).await else {
        return;
    };
    let subscribe = ClientMethod::Subscribe {
        user_agent: Some("soak/half-line".into()),
        session_id: None,
    };
    if client.call(&subscribe).await.is_err() {
        return;
    }
    let mut part = br#"{"id":9,"method":"mining.submit","params":["w","#.to_vec();
    part.resize(bytes, b'a');
    if client.send_bytes(&part).await.is_ok() {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Sends a line longer than `max_line_length`; the proxy hangs up.
async fn long_line(addr: SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let line = vec![b'x'; 40 * 1024];
    let _ = stream.write_all(&line).await;
    let _ = within(Duration::from_secs(10), async {
        let mut buf = [0u8; 512];
        while matches!(
            tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await,
            Ok(n) if n > 0
        ) {}
    })
    .await;
}

/// Connects and says nothing; the proxy closes it after the handshake
/// timeout.
async fn idle(addr: SocketAddr, handshake_timeout: Duration, counts: Arc<HostileCounts>) {
    let Ok(mut client) = StratumClient::connect(addr).await else {
        return;
    };
    if !client
        .closed_within(handshake_timeout + Duration::from_secs(15))
        .await
    {
        counts.idle_kept.fetch_add(1, Ordering::Relaxed);
    }
}

/// Subscribes and authorizes 80 new worker names (the proxy takes 64 per
/// connection and refuses the rest), then leaves.
async fn authorize_storm(addr: SocketAddr, round: u64) {
    let Ok(mut client) = StratumClient::connect(addr).await else {
        return;
    };
    let subscribe = ClientMethod::Subscribe {
        user_agent: Some("soak/storm".into()),
        session_id: None,
    };
    if client.call(&subscribe).await.is_err() {
        return;
    }
    for n in 0..80 {
        if client
            .authorize(&format!("storm-{round}-{n}-{}", "x".repeat(32)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A miner that submits badly: before authorizing, malformed, for an
/// unknown job, too easy, and one good share twice (a duplicate).
async fn bad_submits(addr: SocketAddr, round: u64, counts: Arc<HostileCounts>) {
    let Ok(mut client) = StratumClient::connect(addr).await else {
        return;
    };
    let early =
        r#"{"id":1,"method":"mining.submit","params":["w","1","00000000","00000000","00000000"]}"#;
    if answered(&mut client, early, &counts).await.is_none() {
        return;
    }
    let worker = format!("bad.{round}");
    let Ok(handshake) = client.handshake(&worker).await else {
        return;
    };
    let malformed =
        format!(r#"{{"id":2,"method":"mining.submit","params":["{worker}","1","zz","00","00"]}}"#);
    let unknown = format!(
        r#"{{"id":3,"method":"mining.submit","params":["{worker}","ffffff","00000000","{:08x}","00000000"]}}"#,
        handshake.job.ntime
    );
    let odd_id = format!(
        r#"{{"id":{{"x":1}},"method":"mining.submit","params":["{worker}","1","00","00","00"]}}"#
    );
    for line in [&malformed, &unknown, &odd_id] {
        if answered(&mut client, line, &counts).await.is_none() {
            return;
        }
    }
    // One good share, twice: the second is a duplicate.
    let job = handshake.job.clone();
    let extranonce1 = handshake.subscribed.extranonce1.clone();
    let extranonce2 = vec![0xee; handshake.subscribed.extranonce2_size];
    let Ok(prepared) = Job::from_notify(&job, extranonce1.len() + extranonce2.len()) else {
        return;
    };
    let miner_target = handshake.difficulty.to_target();
    let search = tokio::task::spawn_blocking(move || {
        let ctx = ShareContext {
            extranonce1: &extranonce1,
            version_mask: None,
            miner_target,
            pool_target: Target::MAX,
        };
        find_share(&prepared, &ctx, &extranonce2, job.ntime, 0, 1 << 24)
    });
    let Ok(Some((share, _))) = search.await else {
        return;
    };
    for _ in 0..2 {
        if client
            .submit(&worker, &handshake.job.job_id, &share)
            .await
            .is_err()
        {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Sends a raw line and waits for an answer; counts it if none comes.
async fn answered(client: &mut StratumClient, line: &str, counts: &HostileCounts) -> Option<()> {
    client.send_line(line).await.ok()?;
    match client.read_until_response().await {
        Ok(_) => Some(()),
        Err(_) => {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
