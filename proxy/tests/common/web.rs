//! A farm with the proxy's HTTP server on: busy pools, miners that have
//! each had a share accepted, and the address of the page and the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hashsplit::HttpOptions;
use hashsplit_stratum::Difficulty;
use miner_sim::{SimMiner, SimPoolConfig, eventually};
use tokio::net::TcpListener;

use super::Bed;

/// Pools, miners, the proxy and its HTTP server.
pub struct WebFarm {
    pub bed: Bed,
    pub miners: Vec<SimMiner>,
    /// Where the page and the API answer.
    pub http: SocketAddr,
}

/// What a [`WebFarm`] is made of.
pub struct WebFarmSetup<'a> {
    /// Extra `[[pool]]` lines, one entry a pool.
    pub pools: &'a [&'a str],
    /// The `[policy]` section.
    pub policy: &'a str,
    /// Sections besides `[policy]` and `[[pool]]` (`[downstream]` sets a
    /// difficulty low enough for the busy pools).
    pub extra: &'a str,
    /// ASIC-like miners at 200 kH/s each.
    pub miners: usize,
    /// Where the config in force is written, for `POST /api/v1/reload`
    /// and `write_config`.
    pub config_file: Option<PathBuf>,
}

/// The lowest miner difficulty, so miners at 200 kH/s find shares often.
pub const LOW_DIFFICULTY: &str = "[downstream]\nmin_difficulty = 0.000001\n";

/// A pool at a low difficulty, so miners find shares every second.
pub fn busy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        ..SimPoolConfig::default()
    }
}

impl WebFarm {
    /// Starts the pools and the proxy, serves HTTP (a chart sample every
    /// second), waits for every pool to be up, then starts the miners and
    /// waits until each has had a share accepted.
    pub async fn start(setup: WebFarmSetup<'_>) -> WebFarm {
        let pools = setup
            .pools
            .iter()
            .map(|lines| (busy_pool(), *lines))
            .collect();
        let bed = Bed::start_with(pools, setup.policy, setup.extra).await;
        if let Some(file) = &setup.config_file {
            std::fs::write(file, &*bed.proxy.config().source).unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        bed.proxy
            .serve_http(
                listener,
                HttpOptions {
                    config_file: setup.config_file,
                    sample_every: Duration::from_secs(1),
                },
            )
            .unwrap();
        bed.pools_up().await;
        let miners = bed.asic_miners(setup.miners, 2e5);
        assert!(
            eventually(Duration::from_secs(15), || miners
                .iter()
                .all(|m| m.stats().accepted > 0))
            .await,
            "every miner had a share accepted"
        );
        WebFarm { bed, miners, http }
    }

    /// Stops the miners, then the proxy and the pools.
    pub async fn stop(self) {
        for miner in self.miners {
            miner.stop().await;
        }
        self.bed.stop().await;
    }
}

/// Waits up to `limit` for an async `check` to hold, asking every 50 ms.
pub async fn eventually_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
