//! `miner-sim`: run simulated pools, miners or a load test from the shell.

use clap::Parser;

/// Simulated Stratum v1 pools and miners.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the simulators are not built yet; see the README")
}
