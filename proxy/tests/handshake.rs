//! The handshake as real firmware does it, line by line.

mod common;

use common::{Bed, fast_policy};
use hashsplit_stratum::{ClientMethod, Configure, ConfigureResult, Difficulty, ServerMethod};
use miner_sim::SimPoolConfig;
use miner_sim::client::StratumClient;
use serde_json::json;

async fn one_pool(pool: SimPoolConfig) -> Bed {
    let bed = Bed::start(vec![(pool, "")], &fast_policy(1.0)).await;
    bed.pools_up().await;
    bed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpuminer_subscribes_authorizes_and_gets_difficulty_then_a_clean_job() {
    let bed = one_pool(SimPoolConfig::default()).await;
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();

    // cpuminer: subscribe with a user agent, then authorize.
    miner
        .send_line(r#"{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5.1"]}"#)
        .await
        .unwrap();
    let subscribed = miner.response_to(&1u64.into()).await.unwrap();
    assert!(subscribed.error.is_none());
    let result = hashsplit_stratum::SubscribeResult::from_result(&subscribed.result).unwrap();
    assert_eq!(
        result.extranonce1.len(),
        3,
        "the proxy's own extranonce1 (P = 3)"
    );
    assert_eq!(result.extranonce2_size, 4, "the miner rolls D = 4 bytes");

    miner
        .send_line(r#"{"id":2,"method":"mining.authorize","params":["rig1","x"]}"#)
        .await
        .unwrap();
    assert_eq!(
        miner.response_to(&2u64.into()).await.unwrap().result,
        json!(true)
    );

    // The proxy sends the difficulty first, then a job with clean_jobs.
    let (_, first) = miner.next_call().await.unwrap();
    let ServerMethod::SetDifficulty(difficulty) = first else {
        panic!("expected set_difficulty first, got {first:?}");
    };
    // Never above the pool's difficulty (0.001), as a power of two.
    assert_eq!(difficulty, Difficulty::try_new(1.0 / 1024.0).unwrap());
    let job = miner.next_job().await.unwrap();
    assert!(job.clean_jobs);
    // coinb1 carries the pool's extranonce1 (4 bytes) and padding (8 − 3 − 4).
    let pool_job = bed.pools[0].current_job();
    assert_eq!(job.coinb1.len(), pool_job.notify.coinb1.len() + 4 + 1);
    assert_eq!(
        job.coinb1[..pool_job.notify.coinb1.len()],
        pool_job.notify.coinb1[..]
    );
    assert_eq!(job.coinb2, pool_job.notify.coinb2);

    // An unknown method gets an error under the miner's own id. (cpuminer's
    // id 4 on every submit is mined through in mining.rs's
    // every_profile_gets_shares_accepted_at_the_pool.)
    miner
        .send_line(r#"{"id":4,"method":"mining.ping","params":[]}"#)
        .await
        .unwrap();
    let answer = miner.response_to(&4u64.into()).await.unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(20));
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asic_configures_version_rolling_and_gets_the_mask_every_pool_can_take() {
    // The pool allows fewer bits than the proxy's default 1fffe000.
    let pool = SimPoolConfig {
        version_mask: Some(0x0fff_e000),
        ..SimPoolConfig::default()
    };
    let bed = Bed::start_with(
        vec![(pool, "")],
        &fast_policy(1.0),
        "[downstream]\nmin_difficulty = 0.00001\n",
    )
    .await;
    bed.pools_up().await;
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();

    let answer = miner
        .call(&ClientMethod::Configure(Configure::version_rolling(
            0x1fff_e000,
            2,
        )))
        .await
        .unwrap();
    let granted = ConfigureResult::from_result(&answer.result).unwrap();
    assert_eq!(granted.version_rolling, Some(0x0fff_e000));

    assert!(
        miner
            .call(&ClientMethod::ExtranonceSubscribe)
            .await
            .unwrap()
            .error
            .is_none()
    );
    let suggested = Difficulty::try_new(0.0001).unwrap();
    assert!(
        miner
            .call(&ClientMethod::SuggestDifficulty(suggested))
            .await
            .unwrap()
            .error
            .is_none()
    );
    let handshake = miner.handshake("s19.a").await.unwrap();
    // The suggestion is honoured as a power of two (2^-13), being above the
    // configured minimum and below the pool's difficulty.
    assert_eq!(
        handshake.difficulty,
        Difficulty::try_new(1.0 / 8192.0).unwrap()
    );
    assert!(handshake.job.clean_jobs);

    // Extensions other than version rolling are answered as not supported.
    let line = r#"{"id":9,"method":"mining.configure","params":[["minimum-difficulty"],{"minimum-difficulty.value":2048}]}"#;
    miner.send_line(line).await.unwrap();
    let answer = miner.response_to(&9u64.into()).await.unwrap();
    assert_eq!(answer.result["minimum-difficulty"], json!(false));

    // get_transactions is answered with an error, not ignored.
    let answer = miner
        .call(&ClientMethod::GetTransactions {
            job_id: Some(handshake.job.job_id.clone()),
        })
        .await
        .unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(20));
    bed.stop().await;
}

// Paused time: the default 30 s handshake timeout passes at once.
#[tokio::test(start_paused = true)]
async fn a_miner_that_never_authorizes_is_dropped_after_the_handshake_timeout() {
    let pool = SimPoolConfig::default();
    let sim = miner_sim::SimPool::start(pool).await.unwrap();
    let toml = format!(
        "{}\n[server]\nhandshake_timeout = \"30s\"\n{}",
        fast_policy(1.0),
        common::pool_entry(0, sim.addr(), "")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = hashsplit::Proxy::start(common::config(&toml), listener).unwrap();
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    miner
        .send_line(r#"{"id":1,"method":"mining.subscribe","params":[]}"#)
        .await
        .unwrap();
    assert!(
        miner
            .closed_within(std::time::Duration::from_secs(35))
            .await
    );
    let metrics = proxy.metrics();
    let counted = miner_sim::eventually(std::time::Duration::from_secs(2), || {
        metrics.sum(
            "hashsplit_downstream_disconnects_total",
            &[("reason", "handshake-timeout")],
        ) == 1.0
    })
    .await;
    assert!(counted, "the disconnect is counted by reason");
    proxy.shutdown(std::time::Duration::from_secs(1)).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_line_closes_the_connection_and_others_keep_mining() {
    let bed = one_pool(SimPoolConfig::default()).await;
    let mut good = StratumClient::connect(bed.addr()).await.unwrap();
    good.handshake("good").await.unwrap();

    let mut bad = StratumClient::connect(bed.addr()).await.unwrap();
    let huge = format!(
        r#"{{"id":1,"method":"mining.subscribe","params":["{}"]}}"#,
        "a".repeat(20_000)
    );
    let _ = bad.send_line(&huge).await;
    assert!(bad.closed_within(std::time::Duration::from_secs(5)).await);

    // The neighbour is not stalled: a new block still reaches it.
    bed.pools[0].new_block();
    let job = good.next_job().await.unwrap();
    assert!(job.clean_jobs);
    let metrics = bed.proxy.metrics();
    let counted = miner_sim::eventually(std::time::Duration::from_secs(2), || {
        metrics.sum(
            "hashsplit_downstream_disconnects_total",
            &[("reason", "line-too-long")],
        ) == 1.0
    })
    .await;
    assert!(counted, "the disconnect is counted by reason");
    bed.stop().await;
}

/// Reads the next line, which must be the answer to `id` (nothing sent in
/// between), and returns its error code.
async fn next_answer_code(miner: &mut StratumClient, id: u64) -> Option<i64> {
    match miner.read().await.unwrap() {
        miner_sim::client::Heard::Response(answer) => {
            assert_eq!(answer.id, id.into(), "the answer comes next");
            answer.error.map(|e| e.code)
        }
        other => panic!("expected the answer to {id}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handshake_state_refuses_a_submit_until_the_miner_mines() {
    let bed = one_pool(SimPoolConfig::default()).await;
    let submit = |id: u64, worker: &str| {
        format!(
            r#"{{"id":{id},"method":"mining.submit","params":["{worker}","1","00000000","65432100","00000001"]}}"#
        )
    };

    // Connected: a submit is refused as not subscribed (25).
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();
    miner.send_line(&submit(1, "rig1")).await.unwrap();
    assert_eq!(next_answer_code(&mut miner, 1).await, Some(25));

    // Subscribed: refused as unauthorized (24), and no work is sent yet.
    miner
        .send_line(r#"{"id":2,"method":"mining.subscribe","params":[]}"#)
        .await
        .unwrap();
    assert_eq!(next_answer_code(&mut miner, 2).await, None);
    miner.send_line(&submit(3, "rig1")).await.unwrap();
    assert_eq!(next_answer_code(&mut miner, 3).await, Some(24));

    // Mining: the authorized worker gets work; another worker of the same
    // connection is still refused until it authorizes.
    miner
        .send_line(r#"{"id":4,"method":"mining.authorize","params":["rig1","x"]}"#)
        .await
        .unwrap();
    assert_eq!(next_answer_code(&mut miner, 4).await, None);
    let job = miner.next_job().await.unwrap();
    assert!(job.clean_jobs);
    miner.send_line(&submit(5, "rig2")).await.unwrap();
    assert_eq!(
        miner
            .response_to(&5u64.into())
            .await
            .unwrap()
            .error
            .map(|e| e.code),
        Some(24)
    );

    // The protocol lets a miner authorize before it subscribes: that is
    // accepted, but it mines only once it subscribes.
    let mut early = StratumClient::connect(bed.addr()).await.unwrap();
    early
        .send_line(r#"{"id":1,"method":"mining.authorize","params":["rig3","x"]}"#)
        .await
        .unwrap();
    assert_eq!(next_answer_code(&mut early, 1).await, None);
    early.send_line(&submit(2, "rig3")).await.unwrap();
    assert_eq!(next_answer_code(&mut early, 2).await, Some(25));
    early
        .send_line(r#"{"id":3,"method":"mining.subscribe","params":[]}"#)
        .await
        .unwrap();
    assert_eq!(next_answer_code(&mut early, 3).await, None);
    assert!(early.next_job().await.unwrap().clean_jobs);

    let refused = |reason| bed.shares(&[("pool", "none"), ("reason", reason)]);
    assert_eq!(refused("not-subscribed"), 2.0);
    assert_eq!(refused("unauthorized"), 2.0);
    bed.stop().await;
}
