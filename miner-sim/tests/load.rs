//! `miner-sim load` against a SimPool: every share it sends is answered and
//! counted on both sides, and what goes wrong is reported by reason.

mod common;

use std::time::Duration;

use common::quiet_config;
use hashsplit_stratum::Difficulty;
use miner_sim::pool::Fault;
use miner_sim::{LoadConfig, SimPool, SimPoolConfig, run_load};

/// A pool where every hash is a share.
async fn easy_pool() -> SimPool {
    SimPool::start(SimPoolConfig {
        difficulty: Difficulty::try_new(1e-12).unwrap(),
        ..quiet_config()
    })
    .await
    .unwrap()
}

fn short(pool: &SimPool, miners: usize) -> LoadConfig {
    LoadConfig::new(pool.addr(), miners, 400.0, Duration::from_millis(800))
}

#[tokio::test]
async fn every_share_is_answered_accepted_and_timed() {
    let pool = easy_pool().await;
    let report = run_load(short(&pool, 4)).await.unwrap();
    assert_eq!(report.connections, 4, "{report}");
    assert_eq!(report.connection_errors, 0);
    assert!(report.submitted > 0);
    assert_eq!(report.answered, report.submitted);
    assert_eq!(report.accepted, report.answered);
    assert_eq!(
        (report.rejected, report.unanswered, report.unsolved),
        (0, 0, 0)
    );
    let (p50, p99, max) = (
        report.latency_p50_us.unwrap(),
        report.latency_p99_us.unwrap(),
        report.latency_max_us.unwrap(),
    );
    assert!(p50 <= p99 && p99 <= max);
    // Measured on loopback, not left at a default: a round trip takes time.
    assert!(max > 0, "{report}");
    assert!(report.answered_per_sec > 0.0);

    let stats = pool.stats();
    assert_eq!(stats.totals.accepted, report.accepted);
    assert!((0..4).all(|i| stats.worker(&format!("load.{i}")).accepted > 0));
    assert!(report.to_string().contains("p50"));
    pool.shutdown().await;
}

#[tokio::test]
async fn rejects_are_reported_by_code_and_reason() {
    let pool = easy_pool().await;
    pool.set_fault(Fault::RejectAll);
    let report = run_load(short(&pool, 2)).await.unwrap();
    assert!(report.submitted > 0);
    assert_eq!(report.accepted, 0);
    assert_eq!(
        report.rejects.get("20 rejected (injected fault)"),
        Some(&report.submitted),
        "{report}"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_wide_extranonce2_from_the_server_is_filled_not_a_panic() {
    let pool = SimPool::start(SimPoolConfig {
        difficulty: Difficulty::try_new(1e-12).unwrap(),
        extranonce2_size: 12,
        ..quiet_config()
    })
    .await
    .unwrap();
    let report = run_load(short(&pool, 1)).await.unwrap();
    assert!(report.submitted > 0, "{report}");
    assert_eq!(report.accepted, report.submitted, "{report}");
    pool.shutdown().await;
}

#[tokio::test]
async fn shares_the_search_cannot_find_are_unsolved_not_sent() {
    // At difficulty 1 a share takes 2^32 hashes: far past the budget.
    let pool = SimPool::start(SimPoolConfig {
        difficulty: Difficulty::ONE,
        ..quiet_config()
    })
    .await
    .unwrap();
    let report = run_load(short(&pool, 1)).await.unwrap();
    assert!(report.unsolved > 0);
    assert_eq!(report.submitted, 0);
    assert!(report.to_string().contains("unsolved"));
    pool.shutdown().await;
}

#[tokio::test]
async fn connection_errors_are_counted_when_nothing_listens() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = run_load(LoadConfig::new(addr, 3, 10.0, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!((report.connections, report.connection_errors), (0, 3));
    assert_eq!(report.errors.values().sum::<u64>(), 3);
}

#[tokio::test]
async fn load_is_refused_off_loopback_and_beyond_its_bounds() {
    let remote = "192.0.2.1:3333".parse().unwrap();
    let err = run_load(LoadConfig::new(remote, 1, 1.0, Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let local = "127.0.0.1:3333".parse().unwrap();
    for config in [
        LoadConfig::new(local, 0, 1.0, Duration::from_secs(1)),
        LoadConfig::new(local, 1, 0.0, Duration::from_secs(1)),
        LoadConfig::new(local, 1, 1.0, Duration::from_secs(7200)),
    ] {
        assert!(run_load(config).await.is_err());
    }
}

#[tokio::test]
async fn a_stopped_run_ends_early_and_drains_its_answers() {
    let pool = easy_pool().await;
    let config = LoadConfig::new(pool.addr(), 2, 200.0, Duration::from_secs(3600));
    let stop = tokio::time::sleep(Duration::from_millis(300));
    // Ignoring the stop would run for the hour: the test would time out
    // here instead of hanging.
    let run = miner_sim::run_load_until(config, stop);
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run stops when told")
        .unwrap();
    assert!(report.duration_secs < 30.0, "{report}");
    assert!(report.submitted > 0);
    assert_eq!(report.answered, report.submitted);
    pool.shutdown().await;
}
