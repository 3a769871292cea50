//! `forward-bench`: what forwarding a share costs the proxy, next to what
//! the pool spends on the same share.
//!
//! In one process, on runtimes of their own (so each one's CPU time can be
//! read per thread from `/proc/self/task`): a simulated pool at a tiny
//! difficulty (every share meets its target, so the proxy forwards every
//! one), the proxy in front of it, and `miner-sim`'s load generator. The
//! same load runs first straight at the pool, then through the proxy; the
//! bench prints the sustained answer rate, refusals, p50/p99 latency both
//! ways and CPU per forwarded share of the proxy and of the pool in the
//! proxied run, and ends with one machine-readable line:
//!
//! ```text
//! forward-bench rate=<n> direct_p50_ms=<f> proxy_p50_ms=<f> proxy_cpu_us=<f> pool_cpu_us=<f> cpu_ratio=<f> refused=<n>
//! ```
//!
//! `refused` counts every share the miners were refused through the proxy
//! (at this difficulty every one is valid). Linux only; loopback only.
//!
//! ```sh
//! cargo build --release -p hashsplit --bin forward-bench
//! ./target/release/forward-bench --rate 20000 --miners 50 --seconds 10
//! ```

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use hashsplit::{Config, Proxy};
use hashsplit_stratum::Difficulty;
use miner_sim::{LoadConfig, LoadReport, SimPool, SimPoolConfig, run_load};
use tokio::runtime::Runtime;

/// Thread-name prefixes of the three runtimes (a thread's name in `/proc`
/// keeps 15 bytes).
const POOL_THREADS: &str = "fb-pool";
const PROXY_THREADS: &str = "fb-proxy";
const LOAD_THREADS: &str = "fb-load";

/// Measures the proxy's cost per forwarded share against the pool's.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Shares a second offered over all connections.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Miner connections.
    #[arg(long, default_value_t = 50)]
    miners: usize,
    /// Seconds each run submits.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Worker threads of the proxy's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    proxy_threads: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = |name: &'static str, threads: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))
    };
    let pool_rt = runtime(POOL_THREADS, 1)?;
    let proxy_rt = runtime(PROXY_THREADS, args.proxy_threads as usize)?;
    let load_rt = runtime(LOAD_THREADS, 1)?;

    let pool = pool_rt.block_on(SimPool::start(SimPoolConfig {
        difficulty: Difficulty::try_new(1e-12).expect("positive"),
        // No new block during a run: no stale share muddies the figures.
        job_interval: Duration::ZERO,
        clean_interval: Duration::ZERO,
        max_connections: args.miners + 16,
        ..SimPoolConfig::default()
    }))?;
    let load = |target| {
        let mut config = LoadConfig::new(
            target,
            args.miners,
            args.rate,
            Duration::from_secs(args.seconds),
        );
        config.drain = Duration::from_secs(5);
        config
    };

    println!(
        "forward-bench: {} shares/s offered over {} connections for {} s, pool difficulty 1e-12 \
         (every share forwarded), proxy on {} worker thread(s)",
        args.rate, args.miners, args.seconds, args.proxy_threads
    );
    let (direct, direct_pool_cpu) = measured(&load_rt, load(pool.addr()), &[POOL_THREADS])?;
    print_run("direct", &direct);
    println!(
        "  pool CPU {:.2} us/share",
        per_share(direct_pool_cpu[0], direct.answered)
    );

    let proxy = start_proxy(&proxy_rt, &pool, &args)?;
    let judged = |stats: miner_sim::PoolStats| stats.totals.accepted + stats.totals.rejected;
    let judged_before = judged(pool.stats());
    let (proxied, cpu) = measured(
        &load_rt,
        load(proxy.local_addr()),
        &[PROXY_THREADS, POOL_THREADS],
    )?;
    print_run("through the proxy", &proxied);
    let forwarded = judged(pool.stats()) - judged_before;
    let proxy_cpu = per_share(cpu[0], proxied.answered);
    let pool_cpu = per_share(cpu[1], proxied.answered);
    let metrics = proxy.metrics();
    let unavailable = metrics.sum("hashsplit_shares_total", &[("reason", "pool-unavailable")]);
    println!(
        "  proxy CPU {proxy_cpu:.2} us/share, pool CPU {pool_cpu:.2} us/share (ratio {:.2}); \
         pool-unavailable {unavailable}, in flight {}, shares the pool judged: {forwarded}",
        proxy_cpu / pool_cpu,
        metrics.sum("hashsplit_shares_in_flight", &[])
    );
    proxy_rt.block_on(proxy.shutdown(Duration::from_secs(2)));
    pool_rt.block_on(pool.shutdown());

    let ms = |us: Option<u64>| us.map_or(f64::NAN, |us| us as f64 / 1000.0);
    println!(
        "forward-bench rate={:.0} direct_p50_ms={:.3} proxy_p50_ms={:.3} proxy_cpu_us={proxy_cpu:.2} \
         pool_cpu_us={pool_cpu:.2} cpu_ratio={:.2} refused={}",
        proxied.answered_per_sec,
        ms(direct.latency_p50_us),
        ms(proxied.latency_p50_us),
        proxy_cpu / pool_cpu,
        proxied.rejected + proxied.unanswered,
    );
    Ok(())
}

/// Starts the proxy in front of `pool` on its runtime and waits for the
/// pool to be up.
fn start_proxy(runtime: &Runtime, pool: &SimPool, args: &Args) -> anyhow::Result<Proxy> {
    let toml = format!(
        "[server]\nmax_connections_per_ip = {}\n\
         [downstream]\nmin_difficulty = 0.000000000001\ninitial_difficulty = 0.000000000001\n\
         [policy]\nmax_share = 1.0\n\
         [[pool]]\nname = \"sim\"\nurl = \"stratum+tcp://{}\"\nuser = \"bench\"\n",
        args.miners + 16,
        pool.addr()
    );
    let (config, _) = Config::from_toml_str(&toml).context("the bench's proxy config")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Proxy::start(config, listener)?;
        let metrics = proxy.metrics().clone();
        let up = miner_sim::eventually(Duration::from_secs(10), || {
            metrics.sum("hashsplit_pool_up", &[]) == 1.0
        })
        .await;
        if !up {
            bail!("the proxy did not get the pool up within 10 s");
        }
        Ok(proxy)
    })
}

/// Runs `load` and returns its report with the CPU time (µs) the threads
/// of each of `runtimes` spent meanwhile.
fn measured(
    runtime: &Runtime,
    load: LoadConfig,
    runtimes: &[&str],
) -> anyhow::Result<(LoadReport, Vec<f64>)> {
    let before: Vec<f64> = runtimes
        .iter()
        .map(|r| cpu_us(r))
        .collect::<Result<_, _>>()?;
    let report = runtime.block_on(run_load(load))?;
    let after: Vec<f64> = runtimes
        .iter()
        .map(|r| cpu_us(r))
        .collect::<Result<_, _>>()?;
    Ok((
        report,
        after.iter().zip(&before).map(|(a, b)| a - b).collect(),
    ))
}

fn print_run(name: &str, report: &LoadReport) {
    let ms = |us: Option<u64>| us.map_or(f64::NAN, |us| us as f64 / 1000.0);
    println!(
        "{name}: {:.0} answers/s, {} submitted, {} accepted, {} refused, {} unanswered, {} unsolved, \
         {} connection errors; latency p50 {:.3} ms, p99 {:.3} ms",
        report.answered_per_sec,
        report.submitted,
        report.accepted,
        report.rejected,
        report.unanswered,
        report.unsolved,
        report.connection_errors,
        ms(report.latency_p50_us),
        ms(report.latency_p99_us),
    );
    for (reason, n) in &report.rejects {
        println!("  refused {n}: {reason}");
    }
}

fn per_share(cpu_us: f64, shares: u64) -> f64 {
    cpu_us / shares.max(1) as f64
}

/// Returns the CPU time, in µs, of this process's threads whose name
/// starts with `prefix`: from `schedstat` (nanoseconds on the CPU) where
/// the kernel has it, else from `stat` (user + system clock ticks).
fn cpu_us(prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let dir = task?.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            // The thread ended meanwhile.
            continue;
        };
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        if let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        {
            total += ns / 1000.0;
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        // Fields after the parenthesised name: state is field 3, utime 14,
        // stime 15; USER_HZ is 100 on Linux.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        total += ticks * 10_000.0;
    }
    Ok(total)
}
