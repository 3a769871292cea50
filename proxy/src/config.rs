//! The whole hashsplit TOML file: `[server]`, `[downstream]`, `[metrics]` and
//! `[http]` (all optional, with defaults), `[network]` (optional, see
//! [`network`]) plus `[policy]` and `[[pool]]` (read and validated by the
//! policy crate).
//!
//! Every section is deserialized on its own, so one bad section does not
//! hide the problems in the others; every problem comes back at once with
//! its TOML path and line:column.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hashsplit_policy::Policy;
use hashsplit_policy::config::read_policy;
use hashsplit_policy::diag::{ConfigError, Diagnostics, Problem};
use hashsplit_stratum::Difficulty;
use serde::Deserialize;
use toml::Spanned;

pub mod network;

pub use network::{NetworkConfig, SourceUrl};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where miners connect, and the limits on them.
    pub server: ServerConfig,
    /// What miners are told: extranonce sizes, difficulty, version rolling.
    pub downstream: DownstreamConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The control API on the metrics listener.
    pub http: HttpConfig,
    /// Where pools' network shares are fetched from, if anywhere.
    pub network: Option<NetworkConfig>,
    /// The policy and the pools.
    pub policy: Policy,
    /// The TOML text it was read from (the control API edits it).
    pub source: Arc<str>,
}

/// `[server]`: the miner-facing listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address miners connect to (default `0.0.0.0:3333`).
    pub listen: SocketAddr,
    /// Most miner connections at once (default 100000).
    pub max_connections: u32,
    /// Most connections from one IP address (default 1000).
    pub max_connections_per_ip: u32,
    /// Subscribe and authorize must finish within this (default 30 s).
    pub handshake_timeout: Duration,
    /// A miner silent this long is disconnected (default 10 min).
    pub idle_timeout: Duration,
    /// Longest line a miner may send, in bytes (default 16384).
    pub max_line_length: usize,
    /// Bytes of unfinished lines all miners together may hold beyond the
    /// first 4 KiB of each (default 16 MiB): what bounds memory when many
    /// connections each send a long line slowly.
    pub line_buffer_budget: usize,
    /// Whether every connection starts with a PROXY protocol header (v1 or
    /// v2, from HAProxy and the like) naming the miner's address (default
    /// false).
    pub proxy_protocol: bool,
    /// A drain (SIGUSR1) asks the miners to reconnect elsewhere evenly over
    /// this long, then the proxy stops (default 2 min).
    pub drain_period: Duration,
}

/// `[downstream]`: what each miner is told.
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamConfig {
    /// Bytes of the proxy-chosen per-miner extranonce1 prefix (default 3:
    /// room for 16 million miners, where 2 bytes stop at 65,280).
    pub extranonce1_size: u8,
    /// Bytes of extranonce2 the miner rolls, 1..=8 (default 4).
    pub extranonce2_size: u8,
    /// Most miners on one upstream connection to a pool (default: every
    /// extranonce1 prefix); past it, each pool gets another connection.
    pub miners_per_pool_connection: Option<u32>,
    /// Shares per minute vardiff aims for (default 20).
    pub share_rate: f64,
    /// Lowest difficulty vardiff may set (default 0.001).
    pub min_difficulty: Difficulty,
    /// Difficulty a new miner starts at (default 8192, about 0.6 TH/s at
    /// 20 shares a minute; vardiff takes it from there).
    pub initial_difficulty: Difficulty,
    /// Version bits miners may roll (default `1fffe000`, BIP 320).
    pub version_mask: u32,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint (default `127.0.0.1:9184`).
    pub listen: SocketAddr,
    /// Whether to export per-worker series (default false).
    pub per_worker: bool,
    /// Most workers with their own series (default 500).
    pub max_workers: u32,
}

/// `[http]`: the control API served next to `/metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpConfig {
    /// File holding the bearer token control requests must carry; without
    /// one the control API is off.
    pub token_file: Option<PathBuf>,
    /// Whether changes made through the control API are written to the
    /// config file, so a reload or a restart keeps them (default false).
    pub write_config: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 3333)),
            max_connections: 100_000,
            max_connections_per_ip: 1000,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_line_length: 16_384,
            line_buffer_budget: 16 << 20,
            proxy_protocol: false,
            drain_period: Duration::from_secs(120),
        }
    }
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        DownstreamConfig {
            extranonce1_size: 3,
            extranonce2_size: 4,
            miners_per_pool_connection: None,
            share_rate: 20.0,
            min_difficulty: Difficulty::try_new(0.001).expect("a valid difficulty"),
            initial_difficulty: Difficulty::try_new(8192.0).expect("a valid difficulty"),
            version_mask: 0x1fff_e000,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9184)),
            per_worker: false,
            max_workers: 500,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_ip: Option<Spanned<i64>>,
    handshake_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_line_length: Option<Spanned<i64>>,
    line_buffer_budget: Option<Spanned<i64>>,
    proxy_protocol: Option<bool>,
    drain_period: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownstream {
    extranonce1_size: Option<Spanned<i64>>,
    extranonce2_size: Option<Spanned<i64>>,
    miners_per_pool_connection: Option<Spanned<i64>>,
    share_rate: Option<Spanned<f64>>,
    min_difficulty: Option<Spanned<f64>>,
    initial_difficulty: Option<Spanned<f64>>,
    version_mask: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
    per_worker: Option<bool>,
    max_workers: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    token_file: Option<Spanned<String>>,
    write_config: Option<bool>,
}

impl Config {
    /// Parses and validates a whole config file, returning it with its
    /// warnings, or every problem at once.
    pub fn from_toml_str(text: &str) -> Result<(Config, Vec<Problem>), ConfigError> {
        let mut diag = Diagnostics::new(text);
        let mut server = ServerConfig::default();
        let mut downstream = DownstreamConfig::default();
        let mut metrics = MetricsConfig::default();
        let mut http = HttpConfig::default();
        let (mut network, mut network_names) = (None, None);
        let (mut policy, mut pools) = (None, None);
        let entries = diag.parse_document();
        let parsed = entries.is_some();
        for entry in entries.unwrap_or_default() {
            match entry.key.as_str() {
                "server" => {
                    if let Some(raw) = diag.deserialize("server", entry.value) {
                        server = read_server(&mut diag, raw);
                    }
                }
                "downstream" => {
                    if let Some(raw) = diag.deserialize("downstream", entry.value) {
                        downstream = read_downstream(&mut diag, raw);
                    }
                }
                "metrics" => {
                    if let Some(raw) = diag.deserialize("metrics", entry.value) {
                        metrics = read_metrics(&mut diag, raw);
                    }
                }
                "http" => {
                    if let Some(raw) = diag.deserialize::<RawHttp>("http", entry.value) {
                        http = read_http(&mut diag, raw);
                    }
                }
                "network" => {
                    if let Some(raw) = diag.deserialize("network", entry.value) {
                        let (read, names) = network::read_network(&mut diag, raw);
                        (network, network_names) = (read, Some(names));
                    }
                }
                "policy" => policy = Some(entry.value),
                "pool" => pools = Some(entry.value),
                other => diag.error(
                    other,
                    Some(entry.key_span),
                    format!(
                        "unknown section `{other}`, expected server, downstream, metrics, \
                         http, network, policy or pool"
                    ),
                ),
            }
        }
        warn_extranonce_space(&mut diag, &server, &downstream);
        addresses::check(&mut diag, pools.as_ref());
        let policy = if parsed {
            read_policy(&mut diag, policy, pools)
        } else {
            None
        };
        if let (Some(names), Some(policy)) = (&network_names, &policy) {
            network::check_names(&mut diag, names, policy);
        }
        let (policy, warnings) = diag.finish(|| policy)?;
        // read_policy returns nothing only after recording an error, which
        // finish has already reported.
        let policy = policy.ok_or_else(|| ConfigError {
            errors: Vec::new(),
            warnings: Vec::new(),
        })?;
        let config = Config {
            server,
            downstream,
            metrics,
            http,
            network,
            policy,
            source: Arc::from(text),
        };
        Ok((config, warnings))
    }
}

/// Warns when `max_connections` miners cannot all get an extranonce1: the
/// prefixes (their first byte is never zero, see [`crate::extranonce`])
/// of every connection the proxy may open to a pool run out first, and
/// later miners are refused.
fn warn_extranonce_space(
    diag: &mut Diagnostics<'_>,
    server: &ServerConfig,
    downstream: &DownstreamConfig,
) {
    let size = u32::from(downstream.extranonce1_size);
    let prefixes = 255u64 << (8 * (size - 1));
    let per_connection = downstream
        .miners_per_pool_connection
        .map_or(prefixes, |n| u64::from(n).min(prefixes));
    let space = per_connection * crate::extranonce::MAX_SPACES as u64;
    if u64::from(server.max_connections) > space {
        diag.warning(
            "downstream.extranonce1_size",
            None,
            format!(
                "{size}-byte extranonce1s give {per_connection} miners per pool connection, \
                 {space} at most in {} connections, fewer than server.max_connections ({}): \
                 later miners are refused",
                crate::extranonce::MAX_SPACES,
                server.max_connections
            ),
        );
    }
}

fn read_server(diag: &mut Diagnostics<'_>, raw: RawServer) -> ServerConfig {
    let d = ServerConfig::default();
    let server = ServerConfig {
        listen: address(diag, "server.listen", raw.listen).unwrap_or(d.listen),
        max_connections: count(
            diag,
            "server.max_connections",
            raw.max_connections,
            1,
            u32::MAX,
        )
        .map_or(d.max_connections, |n| n as u32),
        max_connections_per_ip: count(
            diag,
            "server.max_connections_per_ip",
            raw.max_connections_per_ip,
            1,
            u32::MAX,
        )
        .map_or(d.max_connections_per_ip, |n| n as u32),
        handshake_timeout: diag
            .positive_duration("server.handshake_timeout", raw.handshake_timeout)
            .unwrap_or(d.handshake_timeout),
        idle_timeout: diag
            .positive_duration("server.idle_timeout", raw.idle_timeout)
            .unwrap_or(d.idle_timeout),
        max_line_length: count(
            diag,
            "server.max_line_length",
            raw.max_line_length,
            256,
            1 << 20,
        )
        .map_or(d.max_line_length, |n| n as usize),
        line_buffer_budget: count(
            diag,
            "server.line_buffer_budget",
            raw.line_buffer_budget,
            1 << 20,
            1_i64 << 34,
        )
        .map_or(d.line_buffer_budget, |n| n as usize),
        proxy_protocol: raw.proxy_protocol.unwrap_or(d.proxy_protocol),
        drain_period: diag
            .positive_duration("server.drain_period", raw.drain_period)
            .unwrap_or(d.drain_period),
    };
    if server.max_connections_per_ip > server.max_connections {
        diag.warning(
            "server.max_connections_per_ip",
            None,
            "max_connections_per_ip is above max_connections, so it never applies",
        );
    }
    server
}

fn read_downstream(diag: &mut Diagnostics<'_>, raw: RawDownstream) -> DownstreamConfig {
    let d = DownstreamConfig::default();
    let min_span = raw.initial_difficulty.as_ref().map(Spanned::span);
    let downstream = DownstreamConfig {
        extranonce1_size: count(
            diag,
            "downstream.extranonce1_size",
            raw.extranonce1_size,
            1,
            4,
        )
        .map_or(d.extranonce1_size, |n| n as u8),
        extranonce2_size: count(
            diag,
            "downstream.extranonce2_size",
            raw.extranonce2_size,
            1,
            8,
        )
        .map_or(d.extranonce2_size, |n| n as u8),
        miners_per_pool_connection: count(
            diag,
            "downstream.miners_per_pool_connection",
            raw.miners_per_pool_connection,
            1,
            u32::MAX,
        )
        .map(|n| n as u32),
        share_rate: positive(diag, "downstream.share_rate", raw.share_rate).unwrap_or(d.share_rate),
        min_difficulty: difficulty(diag, "downstream.min_difficulty", raw.min_difficulty)
            .unwrap_or(d.min_difficulty),
        initial_difficulty: difficulty(
            diag,
            "downstream.initial_difficulty",
            raw.initial_difficulty,
        )
        .unwrap_or(d.initial_difficulty),
        version_mask: raw
            .version_mask
            .and_then(|mask| {
                let text = mask.get_ref().trim_start_matches("0x");
                let parsed = u32::from_str_radix(text, 16).ok();
                if parsed.is_none() {
                    diag.error(
                        "downstream.version_mask",
                        Some(mask.span()),
                        format!(
                            "version_mask {:?} is not a 32-bit hex number",
                            mask.get_ref()
                        ),
                    );
                }
                parsed
            })
            .unwrap_or(d.version_mask),
    };
    if downstream.initial_difficulty < downstream.min_difficulty {
        diag.error(
            "downstream.initial_difficulty",
            min_span,
            format!(
                "initial_difficulty {} is below min_difficulty {}",
                downstream.initial_difficulty, downstream.min_difficulty
            ),
        );
    }
    downstream
}

fn read_metrics(diag: &mut Diagnostics<'_>, raw: RawMetrics) -> MetricsConfig {
    let d = MetricsConfig::default();
    MetricsConfig {
        listen: address(diag, "metrics.listen", raw.listen).unwrap_or(d.listen),
        per_worker: raw.per_worker.unwrap_or(d.per_worker),
        max_workers: count(diag, "metrics.max_workers", raw.max_workers, 0, u32::MAX)
            .map_or(d.max_workers, |n| n as u32),
    }
}

fn read_http(diag: &mut Diagnostics<'_>, raw: RawHttp) -> HttpConfig {
    let token_file = raw.token_file.and_then(|path| {
        if path.get_ref().trim().is_empty() {
            diag.error(
                "http.token_file",
                Some(path.span()),
                "token_file must name a file",
            );
            return None;
        }
        Some(PathBuf::from(path.into_inner()))
    });
    HttpConfig {
        token_file,
        write_config: raw.write_config.unwrap_or(false),
    }
}

fn address(
    diag: &mut Diagnostics<'_>,
    path: &str,
    value: Option<Spanned<String>>,
) -> Option<SocketAddr> {
    let value = value?;
    let parsed = value.get_ref().parse().ok();
    if parsed.is_none() {
        diag.error(
            path,
            Some(value.span()),
            format!("{:?} is not an ip:port address", value.get_ref()),
        );
    }
    parsed
}

fn count(
    diag: &mut Diagnostics<'_>,
    path: &str,
    value: Option<Spanned<i64>>,
    min: i64,
    max: impl Into<i64>,
) -> Option<i64> {
    let value = value?;
    let max = max.into();
    let n = *value.get_ref();
    if (min..=max).contains(&n) {
        Some(n)
    } else {
        diag.error(
            path,
            Some(value.span()),
            format!("must be in {min}..={max}, got {n}"),
        );
        None
    }
}

/// Reads a share difficulty: a finite number above zero.
fn difficulty(
    diag: &mut Diagnostics<'_>,
    path: &str,
    value: Option<Spanned<f64>>,
) -> Option<Difficulty> {
    let value = value?;
    let x = *value.get_ref();
    match Difficulty::try_new(x) {
        Ok(difficulty) => Some(difficulty),
        Err(_) => {
            // Subnormals too: their target overflows.
            diag.error(
                path,
                Some(value.span()),
                format!(
                    "must be finite and at least {:e}, got {x}",
                    f64::MIN_POSITIVE
                ),
            );
            None
        }
    }
}

fn positive(diag: &mut Diagnostics<'_>, path: &str, value: Option<Spanned<f64>>) -> Option<f64> {
    let value = value?;
    let x = *value.get_ref();
    if x.is_finite() && x > 0.0 {
        Some(x)
    } else {
        diag.error(
            path,
            Some(value.span()),
            format!("must be finite and > 0, got {x}"),
        );
        None
    }
}

mod addresses;
#[cfg(test)]
mod tests;
