//! SimPool as a miner sees it, line by line: the handshake, jobs, and the
//! real verdict on every kind of share, counted per worker.

mod common;

use std::time::Duration;

use common::{Miner, SOON, code, quiet_config, quiet_pool, share_for};
use hashsplit_stratum::{ClientMethod, Configure, ConfigureResult, Difficulty, ServerMethod};
use miner_sim::client::StratumClient;
use miner_sim::{NBITS_REGTEST, SimPool, SimPoolConfig, eventually};

#[tokio::test]
async fn a_share_that_meets_the_difficulty_is_accepted_and_credited() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "acct.rig1").await;
    assert_eq!(miner.hello.subscribed.extranonce1.len(), 4);
    assert_eq!(miner.hello.subscribed.extranonce2_size, 8);
    assert_eq!(miner.hello.difficulty.as_f64(), 1e-5);
    assert!(miner.hello.job.clean_jobs, "the first job is clean");

    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    assert_eq!(code(&miner.submit(&job, &share).await), None);

    let stats = pool.stats();
    assert_eq!(stats.worker("acct.rig1").accepted, 1);
    assert_eq!(stats.worker("acct.rig1").accepted_difficulty, 1e-5);
    assert_eq!(stats.totals.rejected, 0);
    assert_eq!(stats.connections_accepted, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn duplicates_stale_and_unknown_jobs_are_refused_with_their_codes() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    assert_eq!(code(&miner.submit(&job, &share).await), None);
    assert_eq!(code(&miner.submit(&job, &share).await), Some(22));

    // A job on the same block stays valid; a new block makes both stale.
    pool.new_job();
    let second = miner.client.next_job().await.unwrap();
    assert!(!second.clean_jobs);
    let other = miner.share(&job, 1e-5, 2, None);
    assert_eq!(code(&miner.submit(&job, &other).await), None);
    pool.new_block();
    let third = miner.client.next_job().await.unwrap();
    assert!(third.clean_jobs);
    let late = miner.share(&second, 1e-5, 3, None);
    assert_eq!(code(&miner.submit(&second, &late).await), Some(21));

    let mut unknown = third.clone();
    unknown.job_id = "not-a-job".into();
    let share = miner.share(&unknown, 1e-5, 4, None);
    assert_eq!(code(&miner.submit(&unknown, &share).await), Some(21));

    let stats = pool.stats().worker("w");
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.rejected_for("duplicate"), 1);
    assert_eq!(stats.rejected_for("stale"), 1);
    assert_eq!(stats.rejected_for("job-not-found"), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn low_difficulty_and_bad_ntime_are_refused() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    let job = miner.hello.job.clone();
    let low = miner.low_share(&job, 1e-5);
    assert_eq!(code(&miner.submit(&job, &low).await), Some(23));

    let mut early = miner.share(&job, 1e-5, 1, None);
    early.ntime -= 1;
    assert_eq!(code(&miner.submit(&job, &early).await), Some(20));

    let stats = pool.stats();
    assert_eq!(stats.totals.rejected_for("low-difficulty"), 1);
    assert_eq!(stats.totals.rejected_for("ntime-out-of-range"), 1);
    assert_eq!(stats.totals.accepted, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn version_rolling_is_granted_within_the_pools_mask_and_enforced() {
    let pool = SimPool::start(SimPoolConfig {
        version_mask: Some(0x00ff_e000),
        ..quiet_config()
    })
    .await
    .unwrap();
    let mut client = StratumClient::connect(pool.addr()).await.unwrap();
    let configure = ClientMethod::Configure(Configure::version_rolling(0x1fff_e000, 2));
    let answer = client.call(&configure).await.unwrap();
    let granted = ConfigureResult::from_result(&answer.result).unwrap();
    assert_eq!(granted.version_rolling, Some(0x00ff_e000));
    let hello = client.handshake("w").await.unwrap();
    let mut miner = Miner {
        client,
        hello,
        user: "w".into(),
    };
    let job = miner.hello.job.clone();
    let inside = miner.share(&job, 1e-5, 1, Some(0x0000_6000));
    assert_eq!(code(&miner.submit(&job, &inside).await), None);
    let outside = miner.share(&job, 1e-5, 2, Some(0x1000_0000));
    assert_eq!(code(&miner.submit(&job, &outside).await), Some(20));
    assert_eq!(pool.stats().worker("w").rejected_for("bad-version-bits"), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_pool_without_version_rolling_refuses_it_and_rolled_shares() {
    let pool = SimPool::start(SimPoolConfig {
        version_mask: None,
        ..quiet_config()
    })
    .await
    .unwrap();
    let mut client = StratumClient::connect(pool.addr()).await.unwrap();
    let configure = ClientMethod::Configure(Configure::version_rolling(0x1fff_e000, 2));
    let answer = client.call(&configure).await.unwrap();
    let refused = ConfigureResult::from_result(&answer.result).unwrap();
    assert_eq!(refused.version_rolling, None);
    assert_eq!(refused.other["version-rolling"], false);
    let hello = client.handshake("w").await.unwrap();
    let mut miner = Miner {
        client,
        hello,
        user: "w".into(),
    };
    let job = miner.hello.job.clone();
    let rolled = miner.share(&job, 1e-5, 1, Some(0x0000_2000));
    assert_eq!(code(&miner.submit(&job, &rolled).await), Some(20));
    pool.shutdown().await;
}

#[tokio::test]
async fn submits_need_a_subscription_and_an_authorized_worker_name() {
    let pool = quiet_pool().await;
    let mut client = StratumClient::connect(pool.addr()).await.unwrap();
    let job = pool.current_job().notify.clone();
    let share = share_for(&job, &[0; 4], 8, 1e-5, 1, None);
    let answer = client.submit("w", &job.job_id, &share).await.unwrap();
    assert_eq!(code(&answer), Some(25));

    let mut miner = Miner::connect(&pool, "bc1qexample.rig").await;
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    let answer = miner
        .client
        .submit("someone.else", &job.job_id, &share)
        .await
        .unwrap();
    assert_eq!(code(&answer), Some(24));
    // A second worker authorized on the same connection is credited apart.
    assert_eq!(
        miner.client.authorize("proxy.worker").await.unwrap().result,
        true
    );
    let answer = miner
        .client
        .submit("proxy.worker", &job.job_id, &share)
        .await
        .unwrap();
    assert_eq!(code(&answer), None);

    let stats = pool.stats();
    assert_eq!(stats.worker("w").rejected_for("not-subscribed"), 1);
    assert_eq!(stats.worker("someone.else").rejected_for("unauthorized"), 1);
    assert_eq!(stats.worker("proxy.worker").accepted, 1);
    assert_eq!(stats.worker("bc1qexample.rig").accepted, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn malformed_submits_are_answered_and_counted() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    miner
        .client
        .send_line(r#"{"id":77,"method":"mining.submit","params":["w","1"]}"#)
        .await
        .unwrap();
    let answer = miner.client.response_to(&77u64.into()).await.unwrap();
    assert_eq!(code(&answer), Some(20));
    assert_eq!(pool.stats().totals.rejected_for("malformed"), 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_suggested_difficulty_applies_to_the_jobs_that_follow() {
    let pool = quiet_pool().await;
    let mut client = StratumClient::connect(pool.addr()).await.unwrap();
    let suggest = ClientMethod::SuggestDifficulty(Difficulty::try_new(2e-5).unwrap());
    assert_eq!(client.call(&suggest).await.unwrap().result, true);
    let hello = client.handshake("w").await.unwrap();
    assert_eq!(hello.difficulty.as_f64(), 2e-5);
    let mut miner = Miner {
        client,
        hello,
        user: "w".into(),
    };
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 2e-5, 1, None);
    assert_eq!(code(&miner.submit(&job, &share).await), None);
    assert_eq!(pool.stats().worker("w").accepted_difficulty, 2e-5);

    // Lowered mid-session: sent at once, applied from the next job on.
    let suggest = ClientMethod::SuggestDifficulty(Difficulty::try_new(1e-6).unwrap());
    miner.client.call(&suggest).await.unwrap();
    let (_, call) = miner.client.next_call().await.unwrap();
    assert_eq!(
        call,
        ServerMethod::SetDifficulty(Difficulty::try_new(1e-6).unwrap())
    );
    pool.new_job();
    let next = miner.client.next_job().await.unwrap();
    let share = miner.share(&next, 1e-6, 2, None);
    assert_eq!(code(&miner.submit(&next, &share).await), None);
    assert_eq!(pool.stats().worker("w").accepted_difficulty, 2e-5 + 1e-6);
    pool.shutdown().await;
}

#[tokio::test]
async fn every_connection_gets_its_own_extranonce1_of_the_configured_sizes() {
    let pool = SimPool::start(SimPoolConfig {
        extranonce1_size: 2,
        extranonce2_size: 4,
        ..quiet_config()
    })
    .await
    .unwrap();
    let a = Miner::connect(&pool, "a").await;
    let mut b = Miner::connect(&pool, "b").await;
    assert_ne!(a.extranonce1(), b.extranonce1());
    assert_eq!(a.extranonce1().len(), 2);
    assert_eq!(b.hello.subscribed.extranonce2_size, 4);
    // A share made with the other connection's extranonce1 does not count.
    let job = b.hello.job.clone();
    let foreign = share_for(&job, &a.extranonce1(), 4, 1e-5, 1, None);
    let mine = b.share(&job, 1e-5, 1, None);
    assert_ne!(foreign, mine);
    // Hashed with b's extranonce1 it is a random hash: low difficulty
    // (it could meet 1e-5 by chance once in ~43000 runs).
    assert_eq!(code(&b.submit(&job, &foreign).await), Some(23));
    assert_eq!(code(&b.submit(&job, &mine).await), None);
    pool.shutdown().await;
}

#[tokio::test]
async fn shares_meeting_an_easy_network_target_are_counted_as_blocks() {
    let pool = SimPool::start(SimPoolConfig {
        nbits: NBITS_REGTEST,
        ..quiet_config()
    })
    .await
    .unwrap();
    let mut miner = Miner::connect(&pool, "lucky").await;
    let job = miner.hello.job.clone();
    for en2 in 1..=3 {
        let share = miner.share(&job, 1e-5, en2, None);
        assert_eq!(code(&miner.submit(&job, &share).await), None);
    }
    let stats = pool.stats();
    assert_eq!(stats.blocks_found, 3, "every share beats regtest's target");
    assert_eq!(stats.worker("lucky").blocks, 3);
    assert!(stats.last_block_hash.is_some());
    pool.shutdown().await;
}

#[tokio::test]
async fn jobs_and_blocks_come_on_their_timers() {
    let pool = SimPool::start(SimPoolConfig {
        job_interval: Duration::from_millis(100),
        clean_interval: Duration::from_millis(350),
        ..quiet_config()
    })
    .await
    .unwrap();
    let mut miner = Miner::connect(&pool, "w").await;
    let (mut same_block, mut new_block) = (0, 0);
    for _ in 0..20 {
        let job = miner.client.next_job().await.unwrap();
        if job.clean_jobs {
            new_block += 1;
            assert_ne!(job.prevhash, miner.hello.job.prevhash);
        } else {
            same_block += 1;
        }
        if same_block > 0 && new_block > 0 {
            break;
        }
    }
    assert!(same_block > 0 && new_block > 0);
    assert!(eventually(SOON, || pool.stats().jobs > 2).await);
    pool.shutdown().await;
}
