//! Stand-in for the proxy's TOML configuration while the full loader lands
//! from the policy branch; field names follow that loader's.

use std::net::SocketAddr;
use std::time::Duration;

use hashsplit_policy::Policy;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[downstream]`.
    pub downstream: DownstreamConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[policy]` and `[[pool]]`.
    pub policy: Policy,
}

/// `[server]`: the miner-facing listener and its limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where miners connect.
    pub listen: SocketAddr,
    /// Most miners connected at once.
    pub max_connections: usize,
    /// Most miners connected at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time a miner has to subscribe and authorize.
    pub handshake_timeout: Duration,
    /// Time without a line from a miner before it is disconnected.
    pub idle_timeout: Duration,
    /// Longest line a miner may send.
    pub max_line_length: usize,
}

/// `[downstream]`: what every miner is given.
#[derive(Debug, Clone)]
pub struct DownstreamConfig {
    /// Proxy-chosen extranonce1 bytes per miner (P).
    pub extranonce1_size: usize,
    /// Extranonce2 bytes a miner rolls (D).
    pub extranonce2_size: usize,
    /// Vardiff target, shares per minute.
    pub share_rate: f64,
    /// Lowest difficulty vardiff goes to.
    pub min_difficulty: f64,
    /// Difficulty a new miner starts at.
    pub initial_difficulty: f64,
    /// Version-rolling mask offered to miners.
    pub version_mask: u32,
}

/// `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where `/metrics` is served.
    pub listen: SocketAddr,
    /// Export per-worker series.
    pub per_worker: bool,
    /// Most worker series.
    pub max_workers: usize,
}
