//! `hashsplit`: the command line of the proxy.

use clap::Parser;

/// Stratum v1 proxy that caps every pool's share of your hashrate.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the proxy daemon is not built yet; see the README")
}
