//! A test bed: simulated pools on 127.0.0.1, the proxy in front of them,
//! and a config written as the TOML an operator would write.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use hashsplit::{Config, Proxy};
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig};
use tokio::net::TcpListener;

/// The worker name the proxy authorizes with at every pool.
pub const POOL_USER: &str = "proxy.rig";

/// Pools, and the proxy in front of them.
pub struct Bed {
    pub pools: Vec<SimPool>,
    pub proxy: Proxy,
}

impl Bed {
    /// Starts `pools.len()` pools and a proxy whose `[policy]` section is
    /// `policy` (a `[[pool]]` entry is written for each pool, with the
    /// extra lines given for it).
    pub async fn start(pools: Vec<(SimPoolConfig, &str)>, policy: &str) -> Bed {
        Bed::start_with(pools, policy, "").await
    }

    /// Like [`Bed::start`], with extra sections (`[downstream]`, ...).
    pub async fn start_with(pools: Vec<(SimPoolConfig, &str)>, policy: &str, extra: &str) -> Bed {
        Bed::start_prepared(pools, policy, extra, |_| {}).await
    }

    /// Like [`Bed::start_with`], running `prepare` on the pools before the
    /// proxy starts (to inject a fault the proxy must meet first).
    pub async fn start_prepared(
        pools: Vec<(SimPoolConfig, &str)>,
        policy: &str,
        extra: &str,
        prepare: impl FnOnce(&[SimPool]),
    ) -> Bed {
        logs();
        let mut sims = Vec::new();
        let mut toml = format!("{policy}\n{extra}\n");
        for (i, (config, lines)) in pools.into_iter().enumerate() {
            let sim = SimPool::start(config).await.expect("sim pool starts");
            toml.push_str(&pool_entry(i, sim.addr(), lines));
            sims.push(sim);
        }
        prepare(&sims);
        let config = config(&toml);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy::start(config, listener).expect("proxy starts");
        Bed { pools: sims, proxy }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Starts `count` ASIC-like miners, `m0`, `m1`, ..., hashing at
    /// `hashrate` H/s each.
    pub fn asic_miners(&self, count: usize, hashrate: f64) -> Vec<SimMiner> {
        (0..count)
            .map(|i| {
                let mut config = SimMinerConfig::new(self.addr(), Profile::Asic, &format!("m{i}"));
                config.hashrate = Some(hashrate);
                SimMiner::start(config)
            })
            .collect()
    }

    /// Waits until every pool is up at the proxy.
    pub async fn pools_up(&self) {
        let metrics = self.proxy.metrics();
        let n = self.pools.len() as f64;
        assert!(
            miner_sim::eventually(Duration::from_secs(10), || {
                metrics.sum("hashsplit_pool_up", &[]) >= n
            })
            .await,
            "every pool came up at the proxy"
        );
    }

    /// Returns a share-accounting figure from the proxy's metrics.
    pub fn shares(&self, labels: &[(&str, &str)]) -> f64 {
        self.proxy.metrics().sum("hashsplit_shares_total", labels)
    }

    pub async fn stop(self) {
        self.proxy.shutdown(Duration::from_secs(2)).await;
        for pool in self.pools {
            pool.shutdown().await;
        }
    }
}

/// Returns the `[[pool]]` entry of pool `i` listening on `addr`.
pub fn pool_entry(i: usize, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[pool]]\nname = \"pool{i}\"\nurl = \"stratum+tcp://{addr}\"\nuser = \"{POOL_USER}\"\npassword = \"x\"\n{extra}\n"
    )
}

/// Parses a config the way `hashsplit run` does; panics with every
/// problem if it is invalid.
pub fn config(toml: &str) -> Config {
    match Config::from_toml_str(toml) {
        Ok((config, _warnings)) => config,
        Err(error) => panic!("test config is invalid: {error:?}\n{toml}"),
    }
}

/// A policy for tests: fast rebalancing over a short window.
pub fn fast_policy(max_share: f64) -> String {
    format!(
        "[policy]\nmax_share = {max_share}\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n"
    )
}

/// Sends the proxy's logs to the test output (shown for failing tests);
/// `RUST_LOG` filters them.
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
pub mod farm;
pub mod http;
pub mod scripted;
pub mod web;
