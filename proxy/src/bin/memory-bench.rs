//! `memory-bench`: what a connected miner costs the proxy in memory.
//!
//! Runs `hashsplit run` (the binary built next to this one) in front of a
//! simulated pool on 127.0.0.1, connects idle miners that subscribe,
//! authorize and get their first job, and prints the proxy process's
//! resident memory (`VmRSS` from `/proc`) as the miners arrive, and what
//! each one added. Linux only; loopback only.
//!
//! ```sh
//! cargo build --release -p hashsplit
//! ./target/release/memory-bench --miners 2000
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use miner_sim::{SimPool, SimPoolConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

/// Measures the proxy's memory per connected miner.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Miners to connect in all (1..=10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    miners: u32,
    /// Times the proxy's memory is read on the way (evenly spaced).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    steps: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let pool = SimPool::start(SimPoolConfig::default()).await?;
    let dir = std::env::temp_dir().join(format!("hashsplit-memory-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("hashsplit.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_ip = {}\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [policy]\nmax_share = 1.0\n\
             [[pool]]\nname = \"sim\"\nurl = \"stratum+tcp://{}\"\nuser = \"bench\"\n",
            args.miners + 10,
            pool.addr()
        ),
    )?;
    let binary = std::env::current_exe()?.with_file_name("hashsplit");
    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} (build it first)", binary.display()))?;
    let result = measure(&mut child, &args).await;
    let _ = child.kill();
    let _ = child.wait();
    pool.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(child: &mut Child, args: &Args) -> anyhow::Result<()> {
    let addr = listen_address(child)?;
    let pid = child.id();
    // The first miner waits for the pool to be up and serving jobs.
    let mut miners = vec![connect(addr).await?];
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
    println!("   miners    rss MiB   per miner KiB");
    println!("{:>9} {:>10.1}", miners.len(), base as f64 / 1024.0);
    for step in 1..=args.steps {
        let goal = (args.miners as u64 * u64::from(step) / u64::from(args.steps)) as usize;
        while miners.len() < goal {
            let batch = (goal - miners.len()).min(100);
            let connecting: Vec<_> = (0..batch).map(|_| tokio::spawn(connect(addr))).collect();
            for handle in connecting {
                miners.push(handle.await??);
            }
        }
        // Let allocations settle before reading.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_kib(pid)?;
        let added = rss.saturating_sub(base) as f64 / (miners.len() - 1).max(1) as f64;
        println!(
            "{:>9} {:>10.1} {:>15.1}",
            miners.len(),
            rss as f64 / 1024.0,
            added
        );
    }
    Ok(())
}

/// Reads the proxy's log until it says where it listens.
fn listen_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stderr = child.stderr.take().context("stderr is piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
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

/// Connects one miner: subscribe, authorize, and wait for its first job.
async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            b"{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"bench/1.0\"]}\n\
              {\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"bench.w\",\"x\"]}\n",
        )
        .await?;
    let mut lines = AsyncBufReader::new(&mut stream).lines();
    let first_job = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("mining.notify") {
                return Ok(());
            }
        }
        bail!("the proxy closed the connection")
    });
    first_job.await.context("no job within 30 s")??;
    Ok(stream)
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
