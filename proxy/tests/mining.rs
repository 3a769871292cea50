//! Miners mining through the proxy: shares reach the pools and the answers
//! come back true.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER, fast_policy};
use hashsplit_stratum::{Difficulty, Job, ShareContext, Submission, Target};
use miner_sim::client::{Handshake, StratumClient};
use miner_sim::{
    LoadConfig, Profile, SimMiner, SimMinerConfig, SimPoolConfig, eventually, find_share, run_load,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_gets_shares_accepted_at_the_pool() {
    // A low pool difficulty, so each miner finds shares every second even
    // while other tests hash on the same two cores.
    let pool = SimPoolConfig {
        difficulty: hashsplit_stratum::Difficulty::try_new(1e-4).unwrap(),
        ..SimPoolConfig::default()
    };
    let bed = Bed::start(vec![(pool, "")], &fast_policy(1.0)).await;
    bed.pools_up().await;
    let miners: Vec<_> = Profile::ALL
        .iter()
        .map(|&profile| {
            let mut config = SimMinerConfig::new(bed.addr(), profile, profile.as_str());
            config.hashrate = Some(2e6);
            SimMiner::start(config)
        })
        .collect();

    let accepted_everywhere = eventually(Duration::from_secs(60), || {
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

/// Returns submitted − settled − in flight, over every pool: zero when
/// every share is accounted for.
fn unaccounted(bed: &Bed) -> f64 {
    let m = bed.proxy.metrics();
    m.sum("hashsplit_shares_submitted_total", &[])
        - m.sum("hashsplit_shares_total", &[])
        - m.sum("hashsplit_shares_in_flight", &[])
}

/// Finds a share on the handshake's job that meets the miner's difficulty
/// (and so, with a regtest network target, is a block candidate).
fn block_on(handshake: &Handshake, extranonce2: u32) -> Submission {
    let extranonce1 = &handshake.subscribed.extranonce1;
    let size = extranonce1.len() + handshake.subscribed.extranonce2_size;
    let job = Job::from_notify(&handshake.job, size).unwrap();
    let ctx = ShareContext {
        extranonce1,
        version_mask: None,
        miner_target: handshake.difficulty.to_target(),
        pool_target: Target::MAX,
    };
    let extranonce2 = extranonce2.to_be_bytes();
    let (share, verdict) =
        find_share(&job, &ctx, &extranonce2, handshake.job.ntime, 0, 1 << 24).unwrap();
    assert!(verdict.meets_network, "a regtest share is a block");
    share
}

// Paused time, and shares crafted by the test rather than mined by a
// hashing thread: the test counts shares, not seconds, so a loaded machine
// cannot make it miss a deadline.
#[tokio::test(start_paused = true)]
async fn every_block_candidate_reaches_the_pool() {
    // A regtest-easy network target: every share is a block candidate. No
    // new block on a timer, so no share turns stale on its way.
    let pool = SimPoolConfig {
        nbits: miner_sim::NBITS_REGTEST,
        difficulty: Difficulty::try_new(1e-6).unwrap(),
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    };
    let bed = Bed::start_with(
        vec![(pool, "")],
        &fast_policy(1.0),
        "[downstream]\nmin_difficulty = 0.000001\n",
    )
    .await;
    bed.pools_up().await;
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();
    let handshake = miner.handshake("lucky").await.unwrap();
    for extranonce2 in 1..=3 {
        let share = block_on(&handshake, extranonce2);
        let answer = miner
            .submit("lucky", &handshake.job.job_id, &share)
            .await
            .unwrap();
        assert!(
            answer.error.is_none(),
            "block {extranonce2} refused: {answer:?}"
        );
    }

    // Every candidate the proxy saw was delivered: none dropped.
    let metrics = bed.proxy.metrics();
    assert_eq!(
        bed.pools[0].stats().blocks_found,
        3,
        "{:?}",
        bed.pools[0].stats()
    );
    assert_eq!(metrics.sum("hashsplit_block_candidates_total", &[]), 3.0);
    assert_eq!(metrics.sum("hashsplit_shares_in_flight", &[]), 0.0);
    assert_eq!(unaccounted(&bed), 0.0);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_killed_mid_run_loses_its_miners_to_the_others_and_no_share_is_lost() {
    let policy = "[policy]\nmax_share = 0.5\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";
    // A low difficulty: ~4 shares a second in all, so "kept mining" is
    // measured on dozens of shares, not a handful.
    let pool = SimPoolConfig {
        difficulty: hashsplit_stratum::Difficulty::try_new(1e-4).unwrap(),
        ..SimPoolConfig::default()
    };
    let pools = (0..3).map(|_| (pool.clone(), "")).collect();
    let mut bed = Bed::start_with(pools, policy, "[downstream]\nmin_difficulty = 0.00001\n").await;
    bed.pools_up().await;
    let miners = bed.asic_miners(4, 5e5);
    let all_used = eventually(Duration::from_secs(30), || {
        bed.pools
            .iter()
            .all(|p| p.stats().worker(POOL_USER).accepted > 0)
    })
    .await;
    assert!(all_used, "every pool got work before the failure");

    let killed = bed.pools.remove(2);
    killed.shutdown().await;
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(5), || metrics
            .sum("hashsplit_pool_up", &[("pool", "pool2")])
            == 0.0)
        .await,
        "the proxy noticed"
    );
    let before: u64 = bed
        .pools
        .iter()
        .map(|p| p.stats().worker(POOL_USER).accepted)
        .sum();
    let carried_on = eventually(Duration::from_secs(20), || {
        bed.pools
            .iter()
            .map(|p| p.stats().worker(POOL_USER).accepted)
            .sum::<u64>()
            >= before + 10
    })
    .await;
    let mut reconnects = 0;
    for miner in miners {
        reconnects += miner.stop().await.reconnects;
    }
    assert!(carried_on, "the miners kept mining on the other pools");
    assert_eq!(reconnects, 0, "no miner had to reconnect");
    // In flight drains to zero and submitted = accepted + rejected.
    assert!(
        eventually(Duration::from_secs(6), || metrics
            .sum("hashsplit_shares_in_flight", &[])
            == 0.0)
        .await
    );
    assert_eq!(unaccounted(&bed), 0.0);
    bed.stop().await;
}

// Paused time, and miners paced on the tokio clock (the load generator):
// the quarantine, the policy's moves and the 5 s answer wait pass at once.
#[tokio::test(start_paused = true)]
async fn a_pool_refusing_every_share_is_given_no_miners() {
    // pool0 takes the connection and sends jobs but refuses every share
    // (as a pool does for an account it will not pay). A tiny difficulty:
    // every share the miners find is a pool share. No new blocks, so no
    // share is refused as stale.
    let pool = SimPoolConfig {
        difficulty: Difficulty::try_new(1e-9).unwrap(),
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    };
    let bed = Bed::start_prepared(
        vec![(pool.clone(), ""), (pool, "")],
        &fast_policy(1.0),
        "[downstream]\nmin_difficulty = 0.000000001\n",
        |pools| pools[0].set_fault(miner_sim::Fault::RejectAll),
    )
    .await;
    bed.pools_up().await;
    let mut config = LoadConfig::new(bed.addr(), 4, 40.0, Duration::from_secs(45));
    config.user = "m".into();
    let miners = tokio::spawn(run_load(config));
    let metrics = bed.proxy.metrics();
    let quarantined = eventually(Duration::from_secs(30), || {
        metrics.sum("hashsplit_pool_up", &[("pool", "pool0")]) == 0.0
    })
    .await;
    assert!(quarantined, "{:?}", bed.pools[0].stats().totals);
    assert_eq!(
        metrics.sum("hashsplit_pool_quarantined", &[("pool", "pool0")]),
        1.0
    );
    assert_eq!(
        metrics.sum("hashsplit_pool_quarantined", &[("pool", "pool1")]),
        0.0
    );
    let emptied = eventually(Duration::from_secs(10), || {
        bed.proxy.assignment().pools[0].miners == 0
    });
    assert!(emptied.await, "the policy moves every miner off pool0");
    // Once shares already on their way are answered (within the 5 s
    // submit timeout), pool0 gets no more work: the miners mine pool1.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let refused = bed.pools[0].stats().totals.rejected;
    let accepted_before = bed.pools[1].stats().worker(POOL_USER).accepted;
    let moved = eventually(Duration::from_secs(20), || {
        bed.pools[1].stats().worker(POOL_USER).accepted >= accepted_before + 30
    })
    .await;
    assert!(moved, "the miners mine pool1");
    assert_eq!(bed.pools[0].stats().totals.rejected, refused);
    // No miner lost its connection, and every share was answered.
    let report = miners.await.unwrap().unwrap();
    assert_eq!(report.connection_errors, 0, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    assert_eq!(bed.pools[1].stats().worker(POOL_USER).rejected, 0);
    bed.stop().await;
}
