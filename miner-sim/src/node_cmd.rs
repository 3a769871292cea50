//! `miner-sim node`: a test Bitcoin Core JSON-RPC on loopback, for the
//! proxy's own-node pool (`examples/own-node.toml` points at its default
//! address and login).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use bitcoin::{Address, Network};
use clap::Args;
use miner_sim::node::{TestNode, TestNodeConfig};

use crate::args;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:18443")]
    listen: SocketAddr,
    /// rpcuser.
    #[arg(long, default_value = "hashsplit")]
    user: String,
    /// rpcpassword.
    #[arg(long, default_value = "hashsplit")]
    password: String,
    /// The address every block must pay (a regtest address).
    #[arg(long, default_value = "bcrt1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpvxat9t")]
    payout_address: String,
    /// Network target: compact hex or `regtest` (a block every other hash).
    #[arg(long, default_value = "regtest", value_parser = args::nbits)]
    nbits: u32,
    /// Height of the tip at start.
    #[arg(long, default_value_t = 200)]
    height: u64,
    /// Moves the tip this often, as another miner would (0: never).
    #[arg(long, default_value = "0", value_parser = args::duration)]
    advance_every: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = args::duration)]
    duration: Option<Duration>,
}

pub async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let payout = Address::from_str(&args.payout_address)
        .context("--payout-address")?
        .require_network(Network::Regtest)
        .context("--payout-address must be a regtest address")?
        .script_pubkey();
    let config = TestNodeConfig {
        user: args.user,
        password: args.password,
        bits: args.nbits,
        height: args.height,
        advance_every: (!args.advance_every.is_zero()).then_some(args.advance_every),
        ..TestNodeConfig::regtest(payout)
    };
    let node = TestNode::start(config, args.listen)
        .await
        .with_context(|| format!("start the test node on {}", args.listen))?;
    println!(
        "test node (regtest, nbits {:08x}) listening on http://{}",
        args.nbits,
        node.addr()
    );
    crate::until_done(args.duration).await;
    let (height, accepted, rejected) = {
        let chain = node.chain();
        (
            chain.height(),
            chain.accepted().len(),
            chain.rejected().to_vec(),
        )
    };
    let calls = node.calls();
    node.shutdown().await;
    println!(
        "test node stopped at height {height}: {accepted} blocks accepted, {} refused {rejected:?}, {calls} calls",
        rejected.len()
    );
    Ok(())
}
