//! The policy at work over real TCP: miners move between pools without
//! reconnecting, and the caps hold at the pools' own accounting.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER};
use hashsplit_stratum::Difficulty;
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPoolConfig, eventually};

/// Pools at a low difficulty, so a short run has many shares to measure.
fn busy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        job_interval: Duration::from_secs(2),
        ..SimPoolConfig::default()
    }
}

const DOWNSTREAM: &str = "[downstream]\nmin_difficulty = 0.000001\n";

fn miner(bed: &Bed, profile: Profile, name: &str, hashrate: f64) -> SimMiner {
    let mut config = SimMinerConfig::new(bed.addr(), profile, name);
    config.hashrate = Some(hashrate);
    SimMiner::start(config)
}

fn accepted(bed: &Bed, pool: usize) -> u64 {
    bed.pools[pool].stats().worker(POOL_USER).accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_miner_is_time_sliced_between_pools_without_reconnecting() {
    // Two pools capped at half each: one miner cannot satisfy that except
    // by moving between them.
    let policy = "[policy]\nmax_share = 0.5\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";
    let bed = Bed::start_with(
        vec![(busy_pool(), ""), (busy_pool(), "")],
        policy,
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    let asic = miner(&bed, Profile::Asic, "solo", 5e5);

    // Over one window and a half the miner has to go back and forth.
    let metrics = bed.proxy.metrics();
    let moved = eventually(Duration::from_secs(40), || {
        metrics.sum("hashsplit_pool_switches_total", &[]) >= 2.0
    })
    .await;
    let both = eventually(Duration::from_secs(10), || {
        accepted(&bed, 0) > 20 && accepted(&bed, 1) > 20
    })
    .await;
    let switches = metrics.sum("hashsplit_pool_switches_total", &[]);
    let stats = asic.stop().await;
    assert!(
        both,
        "both pools got the miner's shares: {} and {}",
        accepted(&bed, 0),
        accepted(&bed, 1)
    );
    assert!(
        moved,
        "the miner was moved back and forth: {switches} switches"
    );
    assert_eq!(stats.reconnects, 0, "moved without a reconnect: {stats:?}");
    // Shares in flight across a switch still land: nothing refused.
    assert_eq!(stats.rejected, 0, "{stats:?}");
    for pool in &bed.pools {
        assert_eq!(pool.stats().worker(POOL_USER).rejected, 0);
    }
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pools_get_their_capped_targets_at_their_own_accounting() {
    // pool0 is weighted 3:1:1 but capped at 0.4: the water-filled targets
    // are 0.4, 0.3, 0.3.
    let policy = "[policy]\nmax_share = 1.0\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";
    let bed = Bed::start_with(
        vec![
            (busy_pool(), "weight = 3.0\nmax_share = 0.4"),
            (busy_pool(), "weight = 1.0"),
            (busy_pool(), "weight = 1.0"),
        ],
        policy,
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    let rates = [4e5, 3e5, 2e5, 2e5, 1.5e5, 1e5];
    let profiles = [Profile::Asic, Profile::Cpuminer, Profile::Strict];
    let miners: Vec<_> = rates
        .iter()
        .enumerate()
        .map(|(i, &rate)| miner(&bed, profiles[i % 3], &format!("m{i}"), rate))
        .collect();

    // Measure from the end of the first window, when the engine has
    // estimates, for two more windows.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let before: Vec<f64> = bed
        .pools
        .iter()
        .map(|p| p.stats().worker(POOL_USER).accepted_difficulty)
        .collect();
    let shares_before: u64 = (0..3).map(|i| accepted(&bed, i)).sum();
    tokio::time::sleep(Duration::from_secs(40)).await;
    // On a slow machine the miners hash less: measure over enough shares
    // for the tolerance below, however long that takes.
    let enough = eventually(Duration::from_secs(90), || {
        (0..3).map(|i| accepted(&bed, i)).sum::<u64>() >= shares_before + 1000
    });
    assert!(enough.await, "1000 pool shares to measure on");
    let after: Vec<f64> = bed
        .pools
        .iter()
        .map(|p| p.stats().worker(POOL_USER).accepted_difficulty)
        .collect();
    let mut reconnects = 0;
    for m in miners {
        reconnects += m.stop().await.reconnects;
    }

    let delivered: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: f64 = delivered.iter().sum();
    let shares: Vec<f64> = delivered.iter().map(|d| d / total).collect();
    // Over at least 1000 pool shares the counting noise of a 0.4 share is
    // about 0.015, so 0.05 is generous.
    assert!(shares[0] <= 0.4 + 0.05, "pool0 over its cap: {shares:?}");
    assert!(
        (shares[0] - 0.4).abs() < 0.08,
        "pool0 near its target: {shares:?}"
    );
    assert!(
        (shares[1] - 0.3).abs() < 0.08,
        "pool1 near its target: {shares:?}"
    );
    assert!(
        (shares[2] - 0.3).abs() < 0.08,
        "pool2 near its target: {shares:?}"
    );
    assert_eq!(reconnects, 0);
    bed.stop().await;
}
