//! `miner-sim`: run simulated pools, miners, a load test or a test node
//! from the shell.
//! Each command runs until Ctrl-C or `--duration`, then prints a summary.

mod args;
mod node_cmd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hashsplit_policy::Hashrate;
use hashsplit_stratum::Difficulty;
use miner_sim::{LoadConfig, Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig};

/// Simulated Stratum v1 pools and miners, and a load generator, on loopback.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a simulated pool.
    Pool(PoolArgs),
    /// Runs simulated miners against a pool or the proxy.
    Miners(MinersArgs),
    /// Submits shares at a fixed rate and reports answer rate and latency.
    Load(LoadArgs),
    /// Runs a test Bitcoin Core node (JSON-RPC) that checks every block.
    Node(node_cmd::NodeArgs),
}

#[derive(Debug, Args)]
struct PoolArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3334")]
    listen: SocketAddr,
    /// Share difficulty.
    #[arg(long, default_value_t = 0.001)]
    difficulty: f64,
    /// Bytes of extranonce1 per connection.
    #[arg(long, default_value_t = 4)]
    extranonce1_size: usize,
    /// Bytes of extranonce2 miners roll.
    #[arg(long, default_value_t = 8)]
    extranonce2_size: usize,
    /// Version-rolling mask in hex, or `none` to refuse version rolling.
    #[arg(long, default_value = "1fffe000", value_parser = args::mask)]
    version_mask: args::Mask,
    /// A new job this often (0: never).
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    job_interval: Duration,
    /// A new block (clean_jobs) this often (0: never).
    #[arg(long, default_value = "30s", value_parser = args::duration)]
    clean_interval: Duration,
    /// Transactions in each block besides the coinbase.
    #[arg(long, default_value_t = 4)]
    fake_txs: usize,
    /// Network target: compact hex, `mainnet` (no blocks) or `regtest`.
    #[arg(long, default_value = "mainnet", value_parser = args::nbits)]
    nbits: u32,
    /// Ignore mining.suggest_difficulty.
    #[arg(long)]
    ignore_suggested_difficulty: bool,
    /// Write the stats as JSON to this file every --stats-interval and on exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// How often to write --stats-file.
    #[arg(long, default_value = "5s", value_parser = args::duration)]
    stats_interval: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = args::duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Args)]
struct MinersArgs {
    /// The pool or proxy, HOST:PORT (loopback only).
    #[arg(long, default_value = "127.0.0.1:3333")]
    connect: String,
    /// How many miners.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    count: u16,
    /// Hashrate of each miner: 2MH/s, 500k, ... or `max` (one core each).
    #[arg(long, default_value = "500kH/s", value_parser = args::hashrate)]
    hashrate: args::Rate,
    /// Firmware to behave like: cpuminer, asic or strict.
    #[arg(long, default_value = "asic")]
    profile: Profile,
    /// Worker name; with several miners, miner i uses NAME.i.
    #[arg(long, default_value = "sim")]
    user: String,
    /// Password sent with the worker name.
    #[arg(long, default_value = "x")]
    password: String,
    /// Difficulty the asic profile suggests.
    #[arg(long)]
    suggest_difficulty: Option<f64>,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = args::duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The pool or proxy, HOST:PORT (loopback only).
    #[arg(long)]
    connect: String,
    /// Connections to open.
    #[arg(long, default_value_t = 10)]
    miners: usize,
    /// Shares a second over all connections.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to submit.
    #[arg(long, default_value = "10s", value_parser = args::duration)]
    duration: Duration,
    /// Worker name prefix; connection i authorizes NAME.i.
    #[arg(long, default_value = "load")]
    user: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Pool(args) => pool(args).await,
        Command::Miners(args) => miners(args).await,
        Command::Load(args) => load(args).await,
        Command::Node(args) => node_cmd::node(args).await,
    }
}

/// Resolves when the run should end: Ctrl-C, or `duration` elapsed.
async fn until_done(duration: Option<Duration>) {
    let elapsed = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = elapsed => {}
    }
}

async fn pool(args: PoolArgs) -> anyhow::Result<()> {
    let config = SimPoolConfig {
        listen: args.listen,
        extranonce1_size: args.extranonce1_size,
        extranonce2_size: args.extranonce2_size,
        difficulty: Difficulty::try_new(args.difficulty).context("--difficulty")?,
        version_mask: args.version_mask.0,
        job_interval: args.job_interval,
        clean_interval: args.clean_interval,
        fake_txs: args.fake_txs,
        nbits: args.nbits,
        honour_suggested_difficulty: !args.ignore_suggested_difficulty,
        ..SimPoolConfig::default()
    };
    let pool = SimPool::start(config)
        .await
        .with_context(|| format!("start the pool on {}", args.listen))?;
    println!("sim pool listening on {}", pool.addr());
    let done = until_done(args.duration);
    tokio::pin!(done);
    let mut writes = tokio::time::interval(args.stats_interval.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = &mut done => break,
            _ = writes.tick() => {
                if let Some(path) = &args.stats_file {
                    write_stats(path, &pool.stats().to_json())?;
                }
            }
        }
    }
    let stats = pool.stats();
    if let Some(path) = &args.stats_file {
        write_stats(path, &stats.to_json())?;
    }
    pool.shutdown().await;
    println!("sim pool {} stopped", args.listen);
    print!("{stats}");
    Ok(())
}

/// Replaces `path` at once, so a reader never sees half a file.
fn write_stats(path: &Path, json: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, json).with_context(|| format!("write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("replace {}", path.display()))
}

async fn miners(args: MinersArgs) -> anyhow::Result<()> {
    let addr = args::loopback(&args.connect)
        .await
        .map_err(anyhow::Error::msg)?;
    let suggest = args
        .suggest_difficulty
        .map(Difficulty::try_new)
        .transpose()
        .context("--suggest-difficulty")?;
    let miners: Vec<(String, SimMiner)> = (0..args.count)
        .map(|i| {
            let user = if args.count == 1 {
                args.user.clone()
            } else {
                format!("{}.{i}", args.user)
            };
            let config = SimMinerConfig {
                password: args.password.clone(),
                hashrate: args.hashrate.0,
                suggest_difficulty: suggest,
                ..SimMinerConfig::new(addr, args.profile, &user)
            };
            (user, SimMiner::start(config))
        })
        .collect();
    let rate = args.hashrate.0.map_or("flat out".to_owned(), |r| {
        Hashrate::from_hashes_per_sec(r).to_string()
    });
    println!(
        "{} {} miner(s) at {rate} each mining on {addr}",
        args.count, args.profile
    );
    let started = tokio::time::Instant::now();
    let done = until_done(args.duration);
    tokio::pin!(done);
    let mut reports =
        tokio::time::interval_at(started + Duration::from_secs(10), Duration::from_secs(10));
    loop {
        tokio::select! {
            () = &mut done => break,
            _ = reports.tick() => {
                let (accepted, rejected) = miners.iter().fold((0, 0), |(a, r), (_, m)| {
                    let s = m.stats();
                    (a + s.accepted, r + s.rejected)
                });
                println!("{:.0} s: {accepted} accepted, {rejected} rejected", started.elapsed().as_secs_f64());
            }
        }
    }
    let elapsed = started.elapsed();
    let mut hashes = 0;
    for (user, miner) in miners {
        let stats = miner.stop().await;
        hashes += stats.hashes;
        println!("{user}: {stats}");
    }
    let achieved = Hashrate::from_hashes_per_sec(hashes as f64 / elapsed.as_secs_f64());
    println!("{:.1} s, {achieved} hashed in total", elapsed.as_secs_f64());
    Ok(())
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let addr = args::loopback(&args.connect)
        .await
        .map_err(anyhow::Error::msg)?;
    let config = LoadConfig {
        user: args.user,
        ..LoadConfig::new(addr, args.miners, args.rate, args.duration)
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = miner_sim::run_load_until(config, stop)
        .await
        .context("load")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
