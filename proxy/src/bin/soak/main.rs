//! `soak`: hours of a farm's life, compressed, against a `hashsplit run`
//! child process, checking that nothing accumulates.
//!
//! In front of three simulated pools on 127.0.0.1, every cycle (5 minutes
//! by default) brings: simulated miners that really hash, a base group for
//! the whole cycle and waves that join and leave; two pool faults (hangs,
//! drops, refused connections, refused shares, slow answers, garbage, a
//! new extranonce, `client.reconnect`, ...); a config change by SIGHUP
//! (caps, weights, a pool removed and added back, now and then a file
//! that must be refused) and one through the control API; a burst of
//! hostile clients every 30 s (garbage lines, half lines, over-long lines,
//! idle connections, authorize storms with new worker names, bad and
//! duplicate submits, bare connects); and a block candidate every few
//! minutes (the pools' network target is set from the miners' hashrate).
//! Each cycle ends quiet: every miner leaves, faults clear, the base
//! config is reloaded, and shares in flight must drain to zero.
//!
//! Every minute it checks the accounting invariant from `/metrics`
//! (submitted = settled by reason + in flight); at every quiet point it
//! reads the proxy's resident memory (`/proc/PID/status`), open files
//! (`/proc/PID/fd`) and live tokio tasks (`hashsplit_tasks`), and compares
//! the last quiet point with the first (after one whole cycle, so that
//! every path has run once). Memory in a run longer than an hour is
//! compared from the first quiet point after that hour, once the status
//! page's bounded history has filled. It ends with one line for machines:
//!
//! `soak minutes=<n> peak_rss_mib=<f> base_rss_mib=<f> base_minute=<n>
//! final_rss_mib=<f> rss_growth_pct=<f> shares=<n> invariant_violations=<n>
//! fd_start=<n> fd_end=<n> tasks_start=<n> tasks_end=<n> failures=<n>`
//!
//! and exits non-zero if any check failed (each is listed first).
//!
//! ```sh
//! cargo build --release -p hashsplit
//! ./target/release/soak --minutes 120
//! ```

mod chaos;
mod child;
mod operator;
mod report;
mod run;
mod traffic;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

/// Runs a compressed farm against a `hashsplit run` child and checks that
/// memory, files, tasks and share accounting stay flat.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// How long to run, in minutes (at least two cycles).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    minutes: u64,
    /// Seconds per cycle of load, faults, reloads and a quiet point.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(60..=3600))]
    cycle_secs: u64,
    /// Miners present for a whole cycle.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100))]
    base_miners: u64,
    /// Miners in each wave that joins and leaves.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(0..=100))]
    wave_miners: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cycle = Duration::from_secs(args.cycle_secs);
    let total = Duration::from_secs(args.minutes * 60);
    anyhow::ensure!(
        total >= cycle * 2,
        "--minutes {} is shorter than two cycles of {} s: memory, files and tasks are \
         compared between quiet points",
        args.minutes,
        args.cycle_secs
    );
    // Two workers: the miners hash on threads of their own, and the proxy
    // is another process; the soak itself needs little.
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run::soak(run::Plan {
            total,
            cycle,
            base_miners: args.base_miners as usize,
            wave_miners: args.wave_miners as usize,
        }))?;
    if !outcome {
        std::process::exit(1);
    }
    Ok(())
}
