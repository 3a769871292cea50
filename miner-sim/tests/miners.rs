//! SimMiners of every profile against a SimPool: they mine with no false
//! rejects, follow the pool's changes the way their firmware does, and
//! reconnect when told or dropped.

mod common;

use std::time::Duration;

use common::{SOON, quiet_config};
use hashsplit_stratum::Difficulty;
use miner_sim::pool::Fault;
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig, eventually};

fn miner(pool: &SimPool, profile: Profile, user: &str) -> SimMiner {
    SimMiner::start(SimMinerConfig {
        hashrate: Some(300_000.0),
        ..SimMinerConfig::new(pool.addr(), profile, user)
    })
}

/// A pool sending a new job (same block) every 100 ms.
async fn busy_pool(config: SimPoolConfig) -> SimPool {
    SimPool::start(SimPoolConfig {
        job_interval: Duration::from_millis(100),
        ..config
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn every_profile_mines_with_no_rejects() {
    let pool = busy_pool(quiet_config()).await;
    let miners: Vec<_> = Profile::ALL
        .into_iter()
        .map(|p| (p, miner(&pool, p, &format!("acct.{p}"))))
        .collect();
    for (profile, m) in &miners {
        assert!(
            eventually(SOON, || m.stats().accepted >= 5).await,
            "{profile}: {:?}",
            m.stats()
        );
    }
    let stats = pool.stats();
    for (profile, m) in miners {
        let seen = m.stop().await;
        let worker = stats.worker(&format!("acct.{profile}"));
        assert_eq!(seen.rejected, 0, "{profile}: {seen:?}");
        assert_eq!(worker.rejected, 0, "{profile}: {:?}", worker.rejects);
        assert!(worker.accepted >= 5);
        assert_eq!(seen.difficulty, Some(1e-5));
        assert_eq!(seen.extranonce2_size, Some(8));
        assert!(seen.jobs_received >= 1 && seen.hashes > 0);
        let rolls = profile != Profile::Cpuminer;
        assert_eq!(seen.version_mask.is_some(), rolls, "{profile}");
    }
    assert!(eventually(SOON, || pool.stats().connections_open == 0).await);
    pool.shutdown().await;
}

#[tokio::test]
async fn an_asic_suggests_its_difficulty_and_is_credited_at_it() {
    let pool = busy_pool(quiet_config()).await;
    let asic = SimMiner::start(SimMinerConfig {
        hashrate: Some(300_000.0),
        suggest_difficulty: Some(Difficulty::try_new(2e-5).unwrap()),
        ..SimMinerConfig::new(pool.addr(), Profile::Asic, "asic")
    });
    assert!(eventually(SOON, || asic.stats().accepted >= 3).await);
    assert_eq!(asic.stats().difficulty, Some(2e-5));
    let worker = pool.stats().worker("asic");
    assert!((worker.accepted_difficulty / worker.accepted as f64 - 2e-5).abs() < 1e-12);
    assert_eq!(asic.stop().await.version_mask, Some(0x1fff_e000));
    pool.shutdown().await;
}

#[tokio::test]
async fn shares_for_a_replaced_block_are_only_ever_refused_as_stale() {
    let pool = busy_pool(quiet_config()).await;
    let m = miner(&pool, Profile::Asic, "w");
    for _ in 0..3 {
        let before = m.stats().accepted;
        pool.new_block();
        assert!(eventually(SOON, || m.stats().accepted >= before + 2).await);
    }
    let seen = m.stop().await;
    // A share crossing a new block on the wire is a real stale, not a false
    // reject; nothing else may be refused.
    assert!(
        seen.rejects_by_code.keys().all(|code| *code == 21),
        "{seen:?}"
    );
    let worker = pool.stats().worker("w");
    assert_eq!(worker.rejected, worker.rejected_for("stale"));
    pool.shutdown().await;
}

#[tokio::test]
async fn an_asic_takes_a_new_extranonce_from_the_next_job() {
    let pool = busy_pool(quiet_config()).await;
    let asic = miner(&pool, Profile::Asic, "w");
    assert!(eventually(SOON, || asic.stats().accepted >= 2).await);
    let first = asic.stats().extranonce1;
    pool.set_fault(Fault::SetExtranonce { to_all: false });
    assert!(eventually(SOON, || asic.stats().extranonce1 != first).await);
    let accepted = asic.stats().accepted;
    assert!(eventually(SOON, || asic.stats().accepted >= accepted + 3).await);
    assert_eq!(asic.stats().rejected, 0, "{:?}", asic.stats());
    assert_eq!(asic.stats().reconnects, 0);
    asic.stop().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn cpuminer_ignores_set_extranonce_and_its_shares_stop_counting() {
    let pool = busy_pool(quiet_config()).await;
    let cpu = miner(&pool, Profile::Cpuminer, "w");
    assert!(eventually(SOON, || cpu.stats().accepted >= 1).await);
    let first = cpu.stats().extranonce1;
    pool.set_fault(Fault::SetExtranonce { to_all: true });
    assert!(eventually(SOON, || cpu.stats().ignored_set_extranonce == 1).await);
    // The pool checks new jobs with the new extranonce1; cpuminer does not.
    assert!(eventually(SOON, || cpu.stats().rejects_by_code.get(&23) >= Some(&2)).await);
    assert_eq!(cpu.stats().extranonce1, first);
    assert_eq!(cpu.stats().reconnects, 0);
    cpu.stop().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn a_strict_miner_drops_the_connection_on_garbage_and_an_asic_does_not() {
    let pool = busy_pool(quiet_config()).await;
    let strict = miner(&pool, Profile::Strict, "strict");
    let asic = miner(&pool, Profile::Asic, "asic");
    assert!(
        eventually(SOON, || strict.stats().accepted >= 1
            && asic.stats().accepted >= 1)
        .await
    );
    let jobs = asic.stats().jobs_received;
    pool.set_fault(Fault::Garbage);
    assert!(eventually(SOON, || strict.stats().reconnects == 1).await);
    assert!(strict.stats().last_error.unwrap().contains("unexpected"));
    // The asic read past the garbage (a later job) and stayed connected.
    assert!(eventually(SOON, || asic.stats().jobs_received > jobs + 1).await);
    assert_eq!(asic.stats().reconnects, 0);
    let accepted = strict.stats().accepted;
    assert!(eventually(SOON, || strict.stats().accepted > accepted).await);
    assert_eq!(pool.stats().connections_accepted, 3);
    strict.stop().await;
    asic.stop().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn a_strict_miner_drops_a_set_extranonce_it_did_not_subscribe_to() {
    let pool = busy_pool(quiet_config()).await;
    let strict = miner(&pool, Profile::Strict, "strict");
    assert!(eventually(SOON, || strict.stats().connected).await);
    pool.set_fault(Fault::SetExtranonce { to_all: true });
    assert!(eventually(SOON, || strict.stats().reconnects == 1).await);
    assert!(eventually(SOON, || strict.stats().connected).await);
    strict.stop().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn every_profile_reconnects_after_the_pool_closes_connections() {
    let pool = busy_pool(quiet_config()).await;
    let miners: Vec<_> = Profile::ALL
        .into_iter()
        .map(|p| miner(&pool, p, p.as_str()))
        .collect();
    assert!(eventually(SOON, || miners.iter().all(|m| m.stats().accepted >= 1)).await);
    pool.set_fault(Fault::CloseAll);
    for m in &miners {
        assert!(eventually(SOON, || m.stats().reconnects == 1 && m.stats().connected).await);
        let accepted = m.stats().accepted;
        assert!(eventually(SOON, || m.stats().accepted > accepted).await);
    }
    assert_eq!(pool.stats().connections_accepted, 6);
    for m in miners {
        m.stop().await;
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn client_reconnect_moves_a_miner_to_another_pool() {
    let from = busy_pool(quiet_config()).await;
    let to = busy_pool(quiet_config()).await;
    let m = miner(&from, Profile::Asic, "w");
    assert!(eventually(SOON, || m.stats().accepted >= 1).await);
    from.set_fault(Fault::Reconnect {
        host: Some("127.0.0.1".into()),
        port: Some(to.addr().port()),
        wait_secs: Some(0),
    });
    assert!(eventually(SOON, || to.stats().worker("w").accepted >= 2).await);
    let seen = m.stop().await;
    assert_eq!(seen.addr, Some(to.addr()));
    assert_eq!(seen.reconnects, 1);
    from.shutdown().await;
    to.shutdown().await;
}

#[tokio::test]
async fn a_miner_rolling_bits_outside_the_granted_mask_is_refused_for_it() {
    // The pool grants only 0x00ffe000 of the 0x1fffe000 the miner asks for.
    let narrow = SimPoolConfig {
        version_mask: Some(0x00ff_e000),
        ..quiet_config()
    };
    let pool = busy_pool(narrow).await;
    let buggy = SimMiner::start(SimMinerConfig {
        hashrate: Some(300_000.0),
        rolls_outside_mask: true,
        ..SimMinerConfig::new(pool.addr(), Profile::Asic, "buggy")
    });
    let good = miner(&pool, Profile::Asic, "good");
    assert!(
        eventually(SOON, || pool
            .stats()
            .worker("buggy")
            .rejected_for("bad-version-bits")
            >= 3)
        .await
    );
    assert!(eventually(SOON, || good.stats().accepted >= 3).await);
    let seen = buggy.stop().await;
    assert!(seen.rejects_by_code.get(&20) >= Some(&3), "{seen:?}");
    assert_eq!(seen.version_mask, Some(0x00ff_e000));
    let good = good.stop().await;
    assert_eq!((good.rejected, good.version_mask), (0, Some(0x00ff_e000)));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_miner_never_connects_off_loopback() {
    let m = SimMiner::start(SimMinerConfig::new(
        "192.0.2.1:3333".parse().unwrap(),
        Profile::Cpuminer,
        "w",
    ));
    assert!(eventually(SOON, || m.stats().last_error.is_some()).await);
    assert!(m.stats().last_error.unwrap().contains("loopback"));
    assert!(!m.stop().await.connected);
}
