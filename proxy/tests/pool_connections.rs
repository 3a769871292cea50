//! Past one upstream connection's extranonce space: with one-byte miner
//! extranonce1s and at most two miners per pool connection, the proxy
//! opens more connections to each pool as miners arrive, every miner mines
//! accepted shares on whichever pool the policy sends it to, the extra
//! connections close once their miners have gone for a while, and a reload
//! that takes a pool out and puts it back closes and reopens them all.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Bed, POOL_USER, config, fast_policy, pool_entry};
use hashsplit_stratum::Difficulty;
use miner_sim::{SimMiner, SimPoolConfig, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One-byte miner extranonce1s, two miners a connection: a third miner
/// needs a second connection to every pool.
const DOWNSTREAM: &str = "[downstream]\nextranonce1_size = 1\nextranonce2_size = 2\n\
                          miners_per_pool_connection = 2\nmin_difficulty = 0.000001\n";

/// A pool whose 3-byte extranonce2 holds exactly the proxy's 1 + 2.
fn small_pool(job_interval: Duration) -> SimPoolConfig {
    SimPoolConfig {
        extranonce2_size: 3,
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        job_interval,
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    }
}

fn connections(bed: &Bed, pool: &str) -> f64 {
    bed.proxy
        .metrics()
        .sum("hashsplit_upstream_connections", &[("pool", pool)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_miners_than_one_connection_holds_all_mine_on_every_pool() {
    let five_seconds = Duration::from_secs(5);
    let bed = Bed::start_with(
        vec![
            (small_pool(five_seconds), ""),
            (small_pool(five_seconds), ""),
        ],
        &fast_policy(0.5),
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    // Five miners: two, two and one on connections 0, 1 and 2 of each pool.
    let miners = bed.asic_miners(5, 3e5);
    let three_each = eventually(Duration::from_secs(20), || {
        bed.pools.iter().all(|p| p.stats().connections_open == 3)
            && (0..2).all(|i| connections(&bed, &format!("pool{i}")) == 3.0)
    })
    .await;
    assert!(
        three_each,
        "each pool sees three connections: {:?}",
        bed.pools
            .iter()
            .map(|p| p.stats().connections_open)
            .collect::<Vec<_>>()
    );
    let prefixes: Vec<_> = miners
        .iter()
        .filter_map(|m| m.stats().extranonce1)
        .collect();
    let distinct: HashSet<_> = prefixes.iter().collect();
    assert!(
        distinct.len() < prefixes.len(),
        "miners on different connections share extranonce1s: {prefixes:?}"
    );

    // Every miner mines accepted shares, and the policy moves them between
    // the pools (each time onto that pool's connection for its space).
    let mining = eventually(Duration::from_secs(60), || {
        miners.iter().all(|m| m.stats().accepted >= 5)
            && bed
                .pools
                .iter()
                .all(|p| p.stats().worker(POOL_USER).accepted >= 10)
    })
    .await;
    assert!(
        mining,
        "{:?}",
        miners.iter().map(SimMiner::stats).collect::<Vec<_>>()
    );
    assert!(
        bed.proxy
            .metrics()
            .sum("hashsplit_pool_switches_total", &[])
            > 0.0,
        "miners were moved between pools"
    );
    for pool in &bed.pools {
        // A share sent on another connection than its job's would build a
        // coinbase the pool does not expect, and be refused.
        assert_eq!(
            pool.stats().worker(POOL_USER).rejected,
            0,
            "{:?}",
            pool.stats()
        );
    }
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.reconnects, 0, "{stats:?}");
    }
    bed.stop().await;
}

/// A miner that subscribes, authorizes and holds its connection without
/// mining; returns its stream and extranonce1 (hex) once it has a job.
async fn idle_miner(addr: SocketAddr, name: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let hello = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}}\n\
         {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"{name}\",\"x\"]}}\n"
    );
    stream.write_all(hello.as_bytes()).await.expect("write");
    let mut lines = BufReader::new(&mut stream).lines();
    let mut extranonce1 = None;
    let got_job = miner_sim::within(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let value: serde_json::Value = serde_json::from_str(&line).expect("json");
            if value["id"] == 1 {
                extranonce1 = value["result"][1].as_str().map(str::to_owned);
            }
            if value["method"] == "mining.notify" {
                return;
            }
        }
        panic!("the proxy closed the connection of {name}");
    })
    .await;
    assert!(got_job.is_some(), "{name} got a job");
    (stream, extranonce1.expect("a subscribe answer"))
}

#[tokio::test(start_paused = true)]
async fn extra_connections_close_when_their_miners_have_gone_and_open_again() {
    let bed = Bed::start_with(
        vec![(small_pool(Duration::from_secs(30)), "")],
        &fast_policy(1.0),
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    let mut miners = Vec::new();
    for i in 0..4 {
        miners.push(idle_miner(bed.addr(), &format!("m{i}")).await);
    }
    let pool = &bed.pools[0];
    assert!(
        eventually(Duration::from_secs(10), || pool.stats().connections_open
            == 2)
        .await,
        "{:?}",
        pool.stats()
    );
    assert_eq!(connections(&bed, "pool0"), 2.0);
    // The second connection's miners have the first one's prefixes: the
    // pool's own extranonce1 for each connection keeps their work apart.
    let first: HashSet<_> = miners[..2].iter().map(|m| m.1.clone()).collect();
    let second: HashSet<_> = miners[2..].iter().map(|m| m.1.clone()).collect();
    assert_eq!(first, second);

    // The second connection's miners leave; it stays open a while.
    miners.truncate(2);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(pool.stats().connections_open, 2, "not closed at once");
    let closed = eventually(Duration::from_secs(60), || {
        pool.stats().connections_open == 1 && connections(&bed, "pool0") == 1.0
    })
    .await;
    assert!(closed, "the idle connection closed: {:?}", pool.stats());

    // More miners than the first connection holds: it opens again.
    miners.push(idle_miner(bed.addr(), "m4").await);
    assert!(
        eventually(Duration::from_secs(10), || pool.stats().connections_open
            == 2
            && connections(&bed, "pool0") == 2.0)
        .await,
        "{:?}",
        pool.stats()
    );
    assert_eq!(
        pool.stats().connections_accepted,
        3,
        "the first connection stayed"
    );
    drop(miners);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_taken_out_closes_every_connection_and_put_back_opens_them() {
    let five_seconds = Duration::from_secs(5);
    let bed = Bed::start_with(
        vec![
            (small_pool(five_seconds), ""),
            (small_pool(five_seconds), ""),
        ],
        &fast_policy(1.0),
        DOWNSTREAM,
    )
    .await;
    bed.pools_up().await;
    let miners = bed.asic_miners(5, 2e5);
    let toml = |pools: usize| {
        let mut toml = format!("{}\n{DOWNSTREAM}\n", fast_policy(1.0));
        for (i, pool) in bed.pools.iter().enumerate().take(pools) {
            toml.push_str(&pool_entry(i, pool.addr(), ""));
        }
        config(&toml)
    };
    assert!(
        eventually(Duration::from_secs(20), || bed.pools[1]
            .stats()
            .connections_open
            == 3)
        .await,
        "{:?}",
        bed.pools[1].stats()
    );
    bed.proxy.reload(toml(1));
    let out = eventually(Duration::from_secs(30), || {
        bed.pools[1].stats().connections_open == 0
    });
    assert!(out.await, "every connection of the removed pool closed");
    assert_eq!(
        bed.pools[0].stats().connections_open,
        3,
        "the other pool keeps its own"
    );

    bed.proxy.reload(toml(2));
    let before = bed.pools[1].stats().worker(POOL_USER).accepted;
    let back = eventually(Duration::from_secs(30), || {
        bed.pools[1].stats().connections_open == 3
            && bed.pools[1].stats().worker(POOL_USER).accepted > before + 10
    });
    assert!(back.await, "{:?}", bed.pools[1].stats());
    for pool in &bed.pools {
        assert_eq!(
            pool.stats().worker(POOL_USER).rejected,
            0,
            "{:?}",
            pool.stats()
        );
    }
    for miner in miners {
        assert_eq!(miner.stop().await.reconnects, 0);
    }
    bed.stop().await;
}
