//! The policy at work over real TCP: miners move between pools without
//! reconnecting, and the caps hold at the pools' own accounting.

mod common;

use std::io;
use std::time::Duration;

use common::{Bed, POOL_USER};
use hashsplit_stratum::Difficulty;
use miner_sim::{LoadConfig, LoadReport, SimPoolConfig, eventually, run_load};
use tokio::task::JoinHandle;

/// Pools at a tiny difficulty: every share a miner below finds (in a few
/// hashes) is a pool share, so the pools' own accounting sees all of them.
/// No new blocks: a share sent as one comes would be refused as stale.
fn busy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-9).unwrap(),
        job_interval: Duration::from_secs(2),
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    }
}

const DOWNSTREAM: &str = "[downstream]\nmin_difficulty = 0.000000001\n";

/// A miner submitting `rate` shares a second for `duration`, on the tokio
/// clock: with time paused, its hashrate (rate x difficulty) is exact, and
/// windows and dwells pass without waiting. Every share is at the pools'
/// difficulty (vardiff's ceiling), so hashrates are in the ratio of rates.
fn miner(
    bed: &Bed,
    name: &str,
    rate: f64,
    duration: Duration,
) -> JoinHandle<io::Result<LoadReport>> {
    let mut config = LoadConfig::new(bed.addr(), 1, rate, duration);
    config.user = name.to_owned();
    tokio::spawn(run_load(config))
}

fn accepted(bed: &Bed, pool: usize) -> u64 {
    bed.pools[pool].stats().worker(POOL_USER).accepted
}

/// Waits for a miner's report: it mined without losing its connection and
/// every share was answered and accepted.
async fn mined_cleanly(miner: JoinHandle<io::Result<LoadReport>>) {
    let report = miner.await.unwrap().unwrap();
    assert_eq!(report.connection_errors, 0, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert!(report.accepted > 0, "{report:?}");
}

#[tokio::test(start_paused = true)]
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
    let solo = miner(&bed, "solo", 20.0, Duration::from_secs(60));

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
    // Moved by new jobs on one connection, and shares in flight across a
    // switch still land: nothing refused.
    mined_cleanly(solo).await;
    for pool in &bed.pools {
        assert_eq!(pool.stats().worker(POOL_USER).rejected, 0);
    }
    bed.stop().await;
}

#[tokio::test(start_paused = true)]
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
    // Six miners of different sizes, for three windows and a little more.
    let rates = [40.0, 30.0, 20.0, 20.0, 15.0, 10.0];
    let miners: Vec<_> = rates
        .iter()
        .enumerate()
        .map(|(i, &rate)| miner(&bed, &format!("m{i}"), rate, Duration::from_secs(65)))
        .collect();

    // Measure from the end of the first window, when the engine has
    // estimates, for two more windows (on the paused clock: at once).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let before: Vec<f64> = bed
        .pools
        .iter()
        .map(|p| p.stats().worker(POOL_USER).accepted_difficulty)
        .collect();
    let shares_before: u64 = (0..3).map(|i| accepted(&bed, i)).sum();
    tokio::time::sleep(Duration::from_secs(40)).await;
    let after: Vec<f64> = bed
        .pools
        .iter()
        .map(|p| p.stats().worker(POOL_USER).accepted_difficulty)
        .collect();
    let shares: u64 = (0..3).map(|i| accepted(&bed, i)).sum::<u64>() - shares_before;
    assert!(shares >= 1000, "{shares} pool shares to measure on");
    for miner in miners {
        mined_cleanly(miner).await;
    }

    let delivered: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: f64 = delivered.iter().sum();
    let shares: Vec<f64> = delivered.iter().map(|d| d / total).collect();
    // The miners' rates are exact, and the engine estimates them from over
    // a thousand pool shares: what is left is moving whole miners once a
    // second, and 0.05 is generous for that.
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
    bed.stop().await;
}
