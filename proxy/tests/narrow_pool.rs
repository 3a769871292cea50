//! A pool whose extranonce2 is too small for the proxy's layout: new miners
//! get a narrower extranonce2, connected ones are asked once to reconnect,
//! and from then on every miner can be switched to every pool.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER};
use hashsplit_stratum::Difficulty;
use miner_sim::{Fault, SimMiner, SimPoolConfig, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_reconnect_once_for_a_narrow_pool_and_then_mine_it() {
    let wide = SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        ..SimPoolConfig::default()
    };
    // 5 bytes of extranonce2 cannot hold the proxy's 3 + 4.
    let narrow = SimPoolConfig {
        extranonce2_size: 5,
        ..wide.clone()
    };
    let policy = "[policy]\nmax_share = 0.5\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";
    // The narrow pool is unreachable from the start: the miners join with
    // the configured layout and mine the wide pool.
    let bed = Bed::start_prepared(
        vec![(wide, ""), (narrow, "")],
        policy,
        "[downstream]\nmin_difficulty = 0.000001\n",
        |pools| pools[1].set_fault(Fault::RefuseConnections),
    )
    .await;
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(10), || metrics
            .sum("hashsplit_pool_up", &[("pool", "pool0")])
            == 1.0)
        .await
    );
    let miners = bed.asic_miners(2, 3e5);
    assert!(
        eventually(Duration::from_secs(15), || miners
            .iter()
            .all(|m| m.stats().accepted > 2))
        .await,
        "the miners mine the wide pool first"
    );
    assert!(miners.iter().all(|m| m.stats().extranonce2_size == Some(4)));

    // The narrow pool comes back: each miner is asked once to reconnect,
    // returns with a 2-byte extranonce2, and the policy uses both pools.
    bed.pools[1].clear_faults();
    let narrowed = eventually(Duration::from_secs(30), || {
        miners.iter().all(|m| m.stats().extranonce2_size == Some(2))
    })
    .await;
    assert!(
        narrowed,
        "{:?}",
        miners.iter().map(SimMiner::stats).collect::<Vec<_>>()
    );
    // Shares mined with the 2-byte extranonce2 are accepted too.
    let before: Vec<u64> = miners.iter().map(|m| m.stats().accepted).collect();
    let mining = eventually(Duration::from_secs(20), || {
        miners
            .iter()
            .zip(&before)
            .all(|(m, &before)| m.stats().accepted > before)
    })
    .await;
    assert!(mining, "the narrowed miners mine on");
    let both_used = eventually(Duration::from_secs(30), || {
        bed.pools[1].stats().worker(POOL_USER).accepted > 10
    })
    .await;
    assert!(
        both_used,
        "the narrow pool gets work: {:?}",
        bed.pools[1].stats()
    );

    assert_eq!(
        metrics.sum("hashsplit_downstream_reconnect_requests_total", &[]),
        2.0
    );
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.reconnects, 1, "exactly one reconnect: {stats:?}");
    }
    assert_eq!(bed.pools[1].stats().worker(POOL_USER).rejected, 0);
    bed.stop().await;
}
