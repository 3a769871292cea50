//! `memory-bench`: what a connected miner costs the proxy in memory, and
//! how fast a new block reaches every miner.
//!
//! Runs `hashsplit run` (the binary built next to this one) in front of a
//! simulated pool on 127.0.0.1 and connects idle miners in bursts (each
//! burst's connects all at once, as a farm coming back after a power cut
//! does), each miner subscribing, authorizing and waiting for its first
//! job. It prints the proxy's resident memory (`VmRSS` from `/proc`) as the
//! miners arrive and what each one added; then the pool finds a new block
//! and it measures how long the last miner waits for its `mining.notify`.
//! Linux only; loopback only. The last line is for machines:
//! `memory-bench miners=<n> rss_mib=<f> per_miner_kib=<f> notify_last_ms=<f>`.
//!
//! ```sh
//! cargo build --release -p hashsplit
//! ./target/release/memory-bench --miners 100000
//! ```
//!
//! Each miner is a file descriptor in the bench and one in the proxy, so
//! the bench raises its open-file limit (the proxy inherits it), which past
//! the hard limit needs root. One source address has about 28,000
//! ephemeral ports towards one listener, so miners connect from several
//! (127.0.1.1, 127.0.1.2, ...).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use miner_sim::{SimPool, SimPoolConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Measures the proxy's memory per connected miner and how fast a new
/// block reaches them all.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Miners to connect in all.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    miners: u32,
    /// Times the proxy's memory is read on the way (evenly spaced).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    steps: u32,
    /// Connects sent at once, without waiting for one to be answered.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    burst: u32,
    /// Miners per source address (one address has about 28,000 ports).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=28_000))]
    per_source: u32,
}

/// File descriptors the bench needs besides its miners.
const SPARE_FILES: u64 = 128;
/// Longest wait for a miner's first job, or for the new block's.
const MINER_WAIT: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let needed = u64::from(args.miners) + SPARE_FILES;
    let limit =
        hashsplit::listen::raise_open_files(needed).context("raising the open-file limit")?;
    if !limit.enough() {
        bail!(
            "memory-bench needs {needed} open files for {} miners (the proxy needs as many), \
             but the limit is {} (hard {}): raising the hard limit takes root with \
             CAP_SYS_RESOURCE (`ulimit -Hn {needed}`, or LimitNOFILE= in systemd); \
             or connect fewer miners",
            args.miners,
            limit.soft,
            limit.hard
        );
    }
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    // Jobs every 30 s as a real pool sends them (a pool silent for 120 s
    // would be marked down); blocks only when the bench says.
    let pool = SimPool::start(SimPoolConfig {
        job_interval: Duration::from_secs(30),
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("hashsplit-memory-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("hashsplit.toml");
    // Limits that let every miner in (all from a few addresses), and
    // timeouts longer than connecting them all takes.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = {limit}\n\
             max_connections_per_ip = {limit}\nhandshake_timeout = \"10m\"\n\
             idle_timeout = \"2h\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [policy]\nmax_share = 1.0\n\
             [[pool]]\nname = \"sim\"\nurl = \"stratum+tcp://{}\"\nuser = \"bench\"\n",
            pool.addr(),
            limit = args.miners + 10,
        ),
    )?;
    let binary = std::env::current_exe()?.with_file_name("hashsplit");
    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,hashsplit=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} (build it first)", binary.display()))?;
    let result = measure(&mut child, &pool, &args).await;
    let _ = child.kill();
    let _ = child.wait();
    pool.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(child: &mut Child, pool: &SimPool, args: &Args) -> anyhow::Result<()> {
    let addr = listen_address(child)?;
    let pid = child.id();
    let mut sources = Sources::new(args.per_source);
    // The first miner waits for the pool to be up and serving jobs.
    let mut miners = vec![handshake(sources.connect(addr).await?).await?];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_kib(pid)?;
    println!(
        "memory-bench: hashsplit (pid {pid}, {} build) in front of a simulated pool, idle miners on {addr}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "   miners    rss MiB   per miner KiB   burst: connects  refused  slowest connect ms  all got a job ms"
    );
    println!("{:>9} {:>10.1}", miners.len(), base as f64 / 1024.0);
    let mut refused_in_all = 0;
    for step in 1..=args.steps {
        let goal = (args.miners as u64 * u64::from(step) / u64::from(args.steps)) as usize;
        let mut bursts = Vec::new();
        while miners.len() + refused_in_all < goal {
            let size = (goal - miners.len() - refused_in_all).min(args.burst as usize);
            let burst = burst(addr, &mut sources, size).await;
            refused_in_all += burst.refused;
            miners.extend(burst.miners);
            bursts.push((size, burst.refused, burst.slowest_connect, burst.all_ready));
        }
        // Let allocations settle before reading.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let rss = rss_kib(pid)?;
        let added = rss.saturating_sub(base) as f64 / (miners.len() - 1).max(1) as f64;
        let (connects, refused, slowest, ready) = bursts
            .iter()
            .fold((0, 0, Duration::ZERO, Duration::ZERO), |(c, r, s, a), b| {
                (c + b.0, r + b.1, s.max(b.2), a.max(b.3))
            });
        println!(
            "{:>9} {:>10.1} {:>15.2} {:>16} {:>8} {:>19.0} {:>17.0}",
            miners.len(),
            rss as f64 / 1024.0,
            added,
            connects,
            refused,
            slowest.as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3,
        );
    }
    let rss = rss_kib(pid)?;
    let per_miner = rss.saturating_sub(base) as f64 / (miners.len() - 1).max(1) as f64;
    let miners_count = miners.len();
    let cpu_before = cpu_ms(pid);
    let (notify_last, missed) = new_block_reaches_all(pool, miners).await;
    // What the fan-out cost the proxy itself, whatever else the machine
    // was doing meanwhile (on a busy machine the wait is mostly for a CPU).
    if let (Ok(before), Ok(after)) = (cpu_before, cpu_ms(pid)) {
        let spent = after - before;
        println!(
            "new block: the proxy spent {spent:.1} ms of CPU on it ({:.1} µs per miner)",
            spent * 1000.0 / (miners_count.max(1)) as f64
        );
    }
    if refused_in_all > 0 || missed > 0 {
        println!(
            "refused {refused_in_all} connects; {missed} miners got no new block within {MINER_WAIT:?}"
        );
    }
    println!(
        "new block: the pool sent it, the last of {} miners had its mining.notify after {:.1} ms",
        args.miners as usize - refused_in_all - missed,
        notify_last.as_secs_f64() * 1e3
    );
    println!(
        "memory-bench miners={} rss_mib={:.1} per_miner_kib={:.2} notify_last_ms={:.1}",
        args.miners as usize - refused_in_all,
        rss as f64 / 1024.0,
        per_miner,
        notify_last.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Hands out loopback source addresses, `per_source` miners each.
struct Sources {
    per_source: u32,
    used: u32,
}

impl Sources {
    fn new(per_source: u32) -> Self {
        Sources {
            per_source,
            used: 0,
        }
    }

    /// Connects a new miner to `addr` from the current source address.
    async fn connect(&mut self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let source = self.next();
        let socket = TcpSocket::new_v4()?;
        // Bound first, so the port is picked for this source address.
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    }

    fn next(&mut self) -> IpAddr {
        let index = self.used / self.per_source;
        self.used += 1;
        // 127.0.1.1, 127.0.1.2, ...: all loopback on Linux.
        let [_, _, high, low] = (0x7f00_0101u32 + index).to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(127, 0, high, low))
    }
}

/// What one burst of connects came to.
struct Burst {
    miners: Vec<TcpStream>,
    refused: usize,
    slowest_connect: Duration,
    all_ready: Duration,
}

/// Connects `size` miners at once, then has each subscribe, authorize
/// and wait for its first job.
async fn burst(addr: SocketAddr, sources: &mut Sources, size: usize) -> Burst {
    let start = Instant::now();
    let mut connecting = JoinSet::new();
    for _ in 0..size {
        let source = sources.next();
        connecting.spawn(async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(addr).await?;
            let connected = start.elapsed();
            let stream = handshake(stream).await?;
            anyhow::Ok((stream, connected))
        });
    }
    let mut result = Burst {
        miners: Vec::with_capacity(size),
        refused: 0,
        slowest_connect: Duration::ZERO,
        all_ready: Duration::ZERO,
    };
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok((stream, connected))) => {
                result.slowest_connect = result.slowest_connect.max(connected);
                result.miners.push(stream);
            }
            Ok(Err(e)) => {
                if result.refused == 0 {
                    eprintln!("memory-bench: a miner was refused: {e:#}");
                }
                result.refused += 1;
            }
            Err(e) => {
                eprintln!("memory-bench: a miner's task failed: {e}");
                result.refused += 1;
            }
        }
    }
    result.all_ready = start.elapsed();
    result
}

/// Subscribes and authorizes on `stream` and waits for the first job.
async fn handshake(mut stream: TcpStream) -> anyhow::Result<TcpStream> {
    stream
        .write_all(
            b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench/1.0\"]}\n\
              {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"bench.w\",\"x\"]}\n",
        )
        .await?;
    let mut lines = AsyncBufReader::with_capacity(2048, &mut stream).lines();
    let first_job = tokio::time::timeout(MINER_WAIT, async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("mining.notify") {
                return Ok(());
            }
        }
        bail!("the proxy closed the connection")
    });
    first_job.await.context("no job in time")??;
    Ok(stream)
}

/// Has the pool find a new block and returns how long after it the last
/// miner got the block's `mining.notify`, and how many got none in time.
async fn new_block_reaches_all(pool: &SimPool, miners: Vec<TcpStream>) -> (Duration, usize) {
    let block_sent = Arc::new(AtomicBool::new(false));
    let mut waiting = JoinSet::new();
    for stream in miners {
        waiting.spawn(clean_notify(stream, Arc::clone(&block_sent)));
    }
    // Every reader is waiting before the block comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    block_sent.store(true, Ordering::SeqCst);
    pool.new_block();
    let (mut waits, mut missed) = (Vec::new(), 0);
    while let Some(joined) = waiting.join_next().await {
        match joined {
            Ok(Some(at)) => waits.push(at.saturating_duration_since(sent)),
            _ => missed += 1,
        }
    }
    waits.sort();
    let at = |q: f64| {
        let index = ((waits.len() as f64 - 1.0) * q).round() as usize;
        waits.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "new block: the first miner had it after {:.1} ms, half of them after {:.1} ms, 99% after {:.1} ms",
        at(0.0),
        at(0.5),
        at(0.99)
    );
    (waits.last().copied().unwrap_or_default(), missed)
}

/// Reads until a `mining.notify` with `clean_jobs` true comes after the
/// block was sent; returns when it came, or `None` if none did in time.
async fn clean_notify(mut stream: TcpStream, block_sent: Arc<AtomicBool>) -> Option<Instant> {
    let read = async {
        let mut line = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            let at = Instant::now();
            for &byte in &chunk[..n] {
                if byte != b'\n' {
                    line.push(byte);
                    continue;
                }
                let text = String::from_utf8_lossy(&line);
                let clean = text.contains("mining.notify") && text.trim_end().ends_with("true]}");
                // One read before the block was sent is an earlier job.
                if clean && block_sent.load(Ordering::SeqCst) {
                    return Some(at);
                }
                line.clear();
            }
        }
    };
    tokio::time::timeout(MINER_WAIT, read).await.ok().flatten()
}

/// Reads the proxy's log until it says where it listens.
fn listen_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stderr = child.stderr.take().context("stderr is piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            // The proxy's warnings say what went wrong at this scale.
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("hashsplit: {line}");
            }
            // Keep draining so the proxy never blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .context("hashsplit did not start listening")?;
        if line.contains("listening for miners")
            && let Some(addr) = line
                .split("listen=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
        {
            return addr.parse().context("the listen address in the log");
        }
    }
}

/// Returns the CPU time, in ms, every thread of process `pid` has had
/// (nanoseconds on the CPU from `schedstat`).
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let mut total = 0.0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).context("reading /proc")?;
    for task in tasks {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"));
        // A thread that ended meanwhile has nothing to add.
        if let Some(ns) = schedstat
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        {
            total += ns / 1e6;
        }
    }
    Ok(total)
}

/// Returns a process's resident memory in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc (memory-bench needs Linux)")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}
