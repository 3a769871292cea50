//! Scaling out: three `hashsplit run` instances behind a real HAProxy
//! (`examples/haproxy/`: TCP mode, `send-proxy-v2`, health checks on
//! `/readyz`), all on the same pools with the same caps. The pools' own
//! accounting shows every cap holding for the farm as a whole, before and
//! after an instance dies; the instances' per-IP limits count the miners'
//! own addresses from the PROXY header, not HAProxy's.
//!
//! Needs `haproxy` (Debian: `apt-get install haproxy`); without it the test
//! says so and passes, unless `HASHSPLIT_REQUIRE_HAPROXY` is set (CI).

mod common;

use std::time::Duration;

use common::farm::{Farm, FarmOptions, PATIENCE, POOLS, TARGETS, source, split, stale_rejects};
use miner_sim::{SimMiner, eventually};

/// The farm's miners' hashrates, cycled.
const RATES: [f64; 4] = [2e5, 1.5e5, 1e5, 5e4];
/// Pool shares a split is measured over: the counting noise of a 0.4 share
/// over 1000 shares is about 0.015, so [`TOLERANCE`] is generous.
const MEASURED_SHARES: u64 = 1000;
const TOLERANCE: f64 = 0.05;
/// One policy window of the test's instances: their estimates are young
/// before it.
const WINDOW: Duration = Duration::from_secs(20);

/// What the pools had accepted at one moment.
struct Reading {
    delivered: Vec<f64>,
    shares: u64,
}

fn reading(farm: &Farm) -> Reading {
    Reading {
        delivered: farm.delivered(),
        shares: farm.pool_shares(),
    }
}

/// Waits at least `at_least` and for [`MEASURED_SHARES`] more pool shares,
/// then returns each pool's share of the difficulty delivered since `from`.
async fn split_since(farm: &Farm, from: &Reading, at_least: Duration) -> Vec<f64> {
    tokio::time::sleep(at_least).await;
    // On a slow machine the miners hash less: measure over enough shares,
    // however long that takes (bounded).
    let enough = eventually(Duration::from_secs(120), || {
        farm.pool_shares() >= from.shares + MEASURED_SHARES
    });
    assert!(enough.await, "{MEASURED_SHARES} pool shares to measure on");
    split(&from.delivered, &farm.delivered())
}

fn assert_caps_hold(split: &[f64], when: &str) {
    eprintln!("{when}: the pools' split {split:?}");
    for ((name, cap), share) in POOLS.iter().zip(split) {
        assert!(
            *share <= cap + TOLERANCE,
            "{when}: {name} over its cap {cap} at the pools: {split:?}"
        );
    }
}

/// In a steady farm the split is also the policy's targets.
fn assert_near_targets(split: &[f64], when: &str) {
    for ((name, _), (target, share)) in POOLS.iter().zip(TARGETS.iter().zip(split)) {
        assert!(
            (share - target).abs() < 0.08,
            "{when}: {name} near its target {target} at the pools: {split:?}"
        );
    }
}

/// Returns how many miners reconnected at least once.
fn reconnected(miners: &[SimMiner]) -> u64 {
    miners.iter().filter(|m| m.stats().reconnects > 0).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_behind_haproxy_holds_every_cap_and_survives_losing_an_instance() {
    let options = FarmOptions {
        max_per_ip: 2,
        instance_lines: Vec::new(),
    };
    let Some(mut farm) = Farm::start(options).await else {
        return;
    };

    // Twelve miners at six addresses, two at each. HAProxy connects to the
    // instances from 127.0.0.1, so an instance counting that address
    // against its limit of 2 could hold only two of them.
    let mut miners = Vec::new();
    for i in 0..12u8 {
        let rate = RATES[usize::from(i % 4)];
        miners.push(farm.miner(&format!("m{i}"), source(2 + i / 2), rate));
        // One at a time: an instance lets one direct address (HAProxy's)
        // have only max_connections_per_ip connections whose PROXY header
        // is still being read, and this farm's limit is 2.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        eventually(PATIENCE, || miners.iter().all(|m| m.stats().connected)).await,
        "every miner connected through HAProxy"
    );
    let sessions: Vec<u64> = farm.servers().iter().map(|(_, _, n)| *n).collect();
    assert_eq!(sessions.iter().sum::<u64>(), 12, "{:?}", farm.servers());
    assert!(
        sessions.iter().all(|&n| n > 2),
        "every instance holds more miners than its per-IP limit: {sessions:?}"
    );
    for instance in &farm.instances {
        let log = instance.log();
        let peers: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("miner authorized"))
            .filter_map(|line| line.split("peer=").nth(1)?.split_whitespace().next())
            .collect();
        assert!(!peers.is_empty(), "{} authorized miners", instance.name);
        assert!(
            peers.iter().all(|peer| !peer.starts_with("127.0.0.1:")),
            "{} sees the miners' own addresses: {peers:?}",
            instance.name
        );
    }

    // After the first window, the farm's split at the pools.
    tokio::time::sleep(WINDOW).await;
    let start = reading(&farm);
    let steady = split_since(&farm, &start, WINDOW).await;
    assert_caps_hold(&steady, "three instances");
    assert_near_targets(&steady, "three instances");
    for pool in farm.pool_stats() {
        for instance in &farm.instances {
            let worker = format!("farm.{}", instance.name);
            assert!(
                pool.worker(&worker).accepted > 0,
                "every instance mines on every pool: {worker} {:?}",
                pool.workers.keys()
            );
        }
    }
    let came_back: Vec<_> = miners
        .iter()
        .map(SimMiner::stats)
        .filter(|stats| stats.reconnects > 0)
        .collect();
    assert!(came_back.is_empty(), "no miner reconnected: {came_back:#?}");

    // Seven miners at one address: three instances take two each, so one
    // is always refused, whichever instance HAProxy picks for it.
    let crowd: Vec<SimMiner> = (0..7)
        .map(|i| farm.miner(&format!("c{i}"), source(9), 1e4))
        .collect();
    let connected = || crowd.iter().filter(|m| m.stats().connected).count();
    assert!(
        eventually(PATIENCE, || connected() == 6).await,
        "six of the seven got in: {}",
        connected()
    );
    for _ in 0..20 {
        assert!(connected() <= 6, "never more than two per instance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = farm.metric(
        "hashsplit_downstream_disconnects_total",
        &[("reason", "connection-limit")],
    );
    assert!(refused > 0.0, "the seventh was refused by the per-IP limit");
    for miner in crowd {
        miner.stop().await;
    }
    let back_to_twelve = eventually(PATIENCE, || {
        farm.servers().iter().map(|(_, _, n)| n).sum::<u64>() == 12
    });
    assert!(back_to_twelve.await, "{:?}", farm.servers());

    // An instance dies: its miners come back through HAProxy to the
    // others, and the caps hold at the pools through the move (the
    // instances that take them in start new windows, and hold the capped
    // pool further below its cap while their estimates are young).
    let (_, on_hs2) = farm.server("hs2").expect("hs2 in HAProxy's stats");
    let at_kill = reading(&farm);
    farm.instances[1].kill();
    farm.wait_status("hs2", "DOWN").await;
    let moved = eventually(PATIENCE, || {
        miners.iter().all(|m| m.stats().connected) && reconnected(&miners) >= on_hs2
    });
    assert!(moved.await, "hs2's {on_hs2} miners reconnected elsewhere");
    let after = split_since(&farm, &at_kill, WINDOW).await;
    assert_caps_hold(&after, "after hs2 died");
    // (A miner may need two tries: the burst from HAProxy's one address
    // meets the instances' limit on connections still reading a header.)
    assert_eq!(
        reconnected(&miners),
        on_hs2,
        "only hs2's miners reconnected"
    );

    // A share on the wire when its pool announces a new block is stale
    // (refused by the proxy, or by the pool if the block came while it was
    // forwarded): that race is the only refusal a farm sees, and it is rare.
    let mut stale = 0;
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(
            stats.rejected,
            stale_rejects(&stats),
            "a share refused: {stats:#?}"
        );
        stale += stats.rejected;
    }
    assert!(stale <= 3, "{stale} stale shares");
    farm.assert_pools_refused_only_stale();
    farm.stop().await;
}
