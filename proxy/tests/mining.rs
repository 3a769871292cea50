//! Miners mining through the proxy: shares reach the pools and the answers
//! come back true.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER, fast_policy};
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPoolConfig, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_gets_shares_accepted_at_the_pool() {
    let bed = Bed::start(vec![(SimPoolConfig::default(), "")], &fast_policy(1.0)).await;
    bed.pools_up().await;
    let miners: Vec<_> = Profile::ALL
        .iter()
        .map(|&profile| {
            let mut config = SimMinerConfig::new(bed.addr(), profile, profile.as_str());
            config.hashrate = Some(2e6);
            SimMiner::start(config)
        })
        .collect();

    let accepted_everywhere = eventually(Duration::from_secs(20), || {
        miners.iter().all(|m| m.stats().accepted >= 3)
    })
    .await;
    let pool = bed.pools[0].stats();
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.rejected, 0, "{stats:?}");
        assert_eq!(stats.reconnects, 0, "{stats:?}");
    }
    assert!(accepted_everywhere, "each profile got shares accepted");
    let at_pool = pool.worker(POOL_USER);
    assert!(at_pool.accepted > 0, "{pool:?}");
    assert_eq!(at_pool.rejected, 0, "{pool:?}");
    bed.stop().await;
}
