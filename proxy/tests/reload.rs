//! Reloading the config (what SIGHUP does): new caps are planned with at
//! once, pools come and go and move to new addresses, and no miner
//! reconnects.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER, config, pool_entry};
use hashsplit_policy::PoolId;
use hashsplit_stratum::Difficulty;
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPoolConfig, eventually};

const POLICY: &str =
    "[policy]\nmax_share = 1.0\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";
const DOWNSTREAM: &str = "[downstream]\nmin_difficulty = 0.000001\n";

/// The bed's config file as rewritten by an operator: `pool_lines[i]` are
/// the extra lines of pool i.
fn rewritten(bed: &Bed, policy: &str, pool_lines: &[&str]) -> hashsplit::Config {
    let mut toml = format!("{policy}\n{DOWNSTREAM}\n");
    for (i, lines) in pool_lines.iter().enumerate() {
        let addr = bed.pools.get(i).map_or(bed.pools[0].addr(), |p| p.addr());
        toml.push_str(&pool_entry(i, addr, lines));
    }
    config(&toml)
}

/// A pool at a low difficulty, so miners find shares every second.
fn busy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        ..SimPoolConfig::default()
    }
}

/// Two busy pools, up at the proxy.
async fn two_pools() -> Bed {
    let bed = Bed::start_with(
        vec![(busy_pool(), ""), (busy_pool(), "")],
        POLICY,
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    bed
}

fn cap(bed: &Bed, pool: usize) -> f64 {
    bed.proxy.assignment().pools[pool].cap.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_cap_is_planned_with_at_once_and_no_miner_reconnects() {
    let bed = two_pools().await;
    let miners = bed.asic_miners(4, 2e5);
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(15), || miners
            .iter()
            .all(|m| m.stats().accepted > 0))
        .await
    );
    assert_eq!(cap(&bed, 0), 1.0);

    let reloaded = bed
        .proxy
        .reload(rewritten(&bed, POLICY, &["max_share = 0.2", ""]));
    assert_eq!(reloaded.changes.len(), 1, "{:?}", reloaded.changes);
    assert!(reloaded.restart_needed.is_empty());
    let planned = eventually(Duration::from_secs(5), || {
        let plan = bed.proxy.assignment();
        // The target is the cap less the margin for estimate noise.
        plan.pools[0].cap.get() == 0.2 && plan.pools[0].target <= 0.2 + 1e-9
    });
    assert!(planned.await, "{:?}", bed.proxy.assignment().pools);
    assert_eq!(
        metrics.sum("hashsplit_policy_cap_ratio", &[("pool", "pool0")]),
        0.2
    );
    // Four equal miners under a 0.2 cap: at most one (time-sliced) stays.
    let moved = eventually(Duration::from_secs(10), || {
        bed.proxy.assignment().pools[0].miners <= 1
    });
    assert!(moved.await, "{:?}", bed.proxy.assignment().pools);
    assert_eq!(
        metrics.sum("hashsplit_config_reloads_total", &[("result", "applied")]),
        1.0
    );

    // A file that could not be read: counted, and the 0.2 cap stays.
    bed.proxy.reload_unreadable();
    assert_eq!(cap(&bed, 0), 0.2);
    assert_eq!(
        metrics.sum("hashsplit_config_reloads_total", &[("result", "rejected")]),
        1.0
    );
    assert_eq!(
        metrics.sum("hashsplit_config_last_reload_successful", &[]),
        0.0
    );

    // A [server] change waits for a restart; the policy part applies.
    let server = format!("{POLICY}\n[server]\nmax_connections = 50\n");
    let reloaded = bed.proxy.reload(rewritten(&bed, &server, &["", ""]));
    assert_eq!(reloaded.restart_needed, vec!["[server]"]);
    assert!(eventually(Duration::from_secs(5), || cap(&bed, 0) == 1.0).await);
    assert_eq!(
        metrics.sum("hashsplit_config_last_reload_successful", &[]),
        1.0
    );

    assert_eq!(
        metrics.sum("hashsplit_downstream_disconnects_total", &[]),
        0.0,
        "no miner was dropped"
    );
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.reconnects, 0, "{stats:?}");
        assert!(stats.accepted > 0);
    }
    for pool in &bed.pools {
        assert_eq!(pool.stats().worker(POOL_USER).rejected, 0);
    }
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_pool_url_reconnects_that_pool_only() {
    let bed = two_pools().await;
    let mut rig = SimMinerConfig::new(bed.addr(), Profile::Asic, "m0");
    rig.hashrate = Some(3e5);
    let miner = SimMiner::start(rig);
    assert!(eventually(Duration::from_secs(15), || miner.stats().accepted > 0).await);

    // The operator moves pool1 to another server (a nearer region, say).
    let moved_to = miner_sim::SimPool::start(busy_pool()).await.unwrap();
    let mut toml = format!("{POLICY}\n{DOWNSTREAM}\n");
    toml.push_str(&pool_entry(0, bed.pools[0].addr(), ""));
    toml.push_str(&pool_entry(1, moved_to.addr(), ""));
    let reloaded = bed.proxy.reload(config(&toml));
    assert_eq!(reloaded.reconfigure, vec![PoolId(1)]);

    let reconnected = eventually(Duration::from_secs(10), || {
        moved_to.stats().connections_open == 1 && bed.pools[1].stats().connections_open == 0
    });
    assert!(reconnected.await, "pool1 now reaches the new server");
    assert_eq!(
        bed.pools[0].stats().connections_accepted,
        1,
        "pool0 untouched"
    );
    let mined = eventually(Duration::from_secs(30), || {
        moved_to.stats().worker(POOL_USER).accepted > 0
    });
    assert!(mined.await, "the miner's work reaches the new server");
    let stats = miner.stop().await;
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    moved_to.shutdown().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_added_and_removed_by_a_reload_get_and_lose_their_miners() {
    let bed = two_pools().await;
    let miners = bed.asic_miners(4, 2e5);
    assert!(
        eventually(Duration::from_secs(15), || bed.pools[1]
            .stats()
            .worker(POOL_USER)
            .accepted
            > 0)
        .await
    );

    // pool1 leaves the file; pool2, a new server, joins it.
    let joining = miner_sim::SimPool::start(busy_pool()).await.unwrap();
    let mut toml = format!("{POLICY}\n{DOWNSTREAM}\n");
    toml.push_str(&pool_entry(0, bed.pools[0].addr(), ""));
    toml.push_str(&pool_entry(2, joining.addr(), ""));
    let reloaded = bed.proxy.reload(config(&toml));
    assert_eq!(
        (reloaded.added, reloaded.removed),
        (vec![PoolId(2)], vec![PoolId(1)])
    );

    let metrics = bed.proxy.metrics();
    // pool1 keeps its connection for the grace period (shares on their
    // way still land), then closes it.
    let swapped = eventually(Duration::from_secs(30), || {
        bed.pools[1].stats().connections_open == 0
            && metrics.sum("hashsplit_pool_up", &[("pool", "pool2")]) == 1.0
    });
    assert!(swapped.await, "pool1 disconnected and pool2 up");
    let mined = eventually(Duration::from_secs(30), || {
        joining.stats().worker(POOL_USER).accepted > 5
    });
    assert!(mined.await, "the new pool gets the miners' work");
    let plan = bed.proxy.assignment();
    assert_eq!(plan.pools[1].miners, 0, "{:?}", plan.pools);
    let gone = bed.pools[1].stats().worker(POOL_USER).accepted;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bed.pools[1].stats().worker(POOL_USER).accepted, gone);
    // The removed pool's series leave /metrics; the new pool's are there.
    let exposition = metrics.encode();
    assert!(!exposition.contains("pool=\"pool1\""), "{exposition}");
    assert!(exposition.contains("hashsplit_policy_cap_ratio{pool=\"pool2\"} 1"));

    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.reconnects, 0, "{stats:?}");
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
    joining.shutdown().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_taken_out_and_put_back_mines_again() {
    let bed = two_pools().await;
    let miners = bed.asic_miners(4, 2e5);
    let metrics = bed.proxy.metrics();
    let without = format!(
        "{POLICY}\n{DOWNSTREAM}\n{}",
        pool_entry(0, bed.pools[0].addr(), "")
    );
    bed.proxy.reload(config(&without));
    let out = eventually(Duration::from_secs(30), || {
        bed.pools[1].stats().connections_open == 0
    });
    assert!(out.await, "pool1 disconnected");

    // Back at once, under the same name: the same engine id, a new upstream.
    let reloaded = bed.proxy.reload(rewritten(&bed, POLICY, &["", ""]));
    assert_eq!(reloaded.added, vec![PoolId(1)]);
    let before = bed.pools[1].stats().worker(POOL_USER).accepted;
    let back = eventually(Duration::from_secs(30), || {
        metrics.sum("hashsplit_pool_up", &[("pool", "pool1")]) == 1.0
            && bed.pools[1].stats().worker(POOL_USER).accepted > before + 5
    });
    assert!(back.await, "pool1 is up and mined again");
    assert!(
        metrics
            .encode()
            .contains("hashsplit_policy_cap_ratio{pool=\"pool1\"} 1")
    );
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!((stats.reconnects, stats.rejected), (0, 0), "{stats:?}");
    }
    bed.stop().await;
}
