//! One share is credited once: under every job id its pool work was
//! offered with, and after its extranonce1 was handed to another miner.

mod common;

use std::time::Duration;

use common::scripted::ScriptedPool;
use common::{config, fast_policy, pool_entry};
use hashsplit::Proxy;
use hashsplit_stratum::{Difficulty, Job, Notify, ShareContext, Submission, Target};
use miner_sim::client::{Handshake, StratumClient};
use miner_sim::{eventually, find_share_rolled};

/// A scripted pool at difficulty 1e-6 with one job out, and a proxy in
/// front of it (with `downstream` config lines) once the pool is up.
async fn bed(downstream: &str) -> (ScriptedPool, Proxy) {
    common::logs();
    let pool = ScriptedPool::start(&[0xaa; 4], 8, None, false).await;
    pool.set_difficulty(1e-6);
    pool.notify("j1", true);
    let toml = format!(
        "{}\n[downstream]\nmin_difficulty = 0.000001\n{downstream}\n{}",
        fast_policy(1.0),
        pool_entry(0, pool.addr, "")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(config(&toml), listener).unwrap();
    let metrics = proxy.metrics();
    assert!(
        eventually(Duration::from_secs(10), || metrics
            .sum("hashsplit_pool_up", &[])
            == 1.0)
        .await
    );
    (pool, proxy)
}

/// Finds a share on `job` meeting the miner's difficulty and the pool's.
fn share_on(handshake: &Handshake, job: &Notify) -> Submission {
    let en1 = &handshake.subscribed.extranonce1;
    let prepared =
        Job::from_notify(job, en1.len() + handshake.subscribed.extranonce2_size).unwrap();
    let pool = Difficulty::try_new(1e-6).unwrap().to_target();
    let ctx = ShareContext {
        extranonce1: en1,
        version_mask: None,
        miner_target: pool.min(handshake.difficulty.to_target()),
        pool_target: Target::MAX,
    };
    find_share_rolled(&prepared, &ctx, &[0, 0, 0, 1], job.ntime, None, 0, 1 << 22)
        .unwrap()
        .0
}

async fn submit(miner: &mut StratumClient, job_id: &str, share: &Submission) -> Option<i64> {
    let answer = miner.submit("w", job_id, share).await.unwrap();
    answer.error.map(|e| e.code)
}

fn refused_as(proxy: &Proxy, reason: &str) -> f64 {
    let labels = [("result", "rejected"), ("reason", reason)];
    proxy.metrics().sum("hashsplit_shares_total", &labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_under_a_re_offered_job_id_is_a_duplicate() {
    let (pool, proxy) = bed("").await;
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    let first = handshake.job.clone();
    let share = share_on(&handshake, &first);
    assert_eq!(submit(&mut miner, &first.job_id, &share).await, None);

    // A new pool difficulty re-offers the same work under a new id; so does
    // the pool sending the same notify again.
    pool.set_difficulty(2e-6);
    let second = miner.next_job().await.unwrap();
    pool.notify("j1", false);
    let third = miner.next_job().await.unwrap();
    assert_ne!(second.job_id, first.job_id);
    assert_ne!(third.job_id, second.job_id);

    assert_eq!(submit(&mut miner, &second.job_id, &share).await, Some(22));
    assert_eq!(submit(&mut miner, &third.job_id, &share).await, Some(22));
    assert_eq!(refused_as(&proxy, "duplicate"), 2.0);
    assert_eq!(pool.submits.lock().unwrap().len(), 1, "forwarded once");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_not_credited_again_under_a_reused_extranonce1() {
    // One-byte prefixes: the 255th connection after a miner left gets its
    // extranonce1 back.
    let (pool, proxy) = bed("extranonce1_size = 1").await;
    let metrics = proxy.metrics();
    let mut first = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = first.handshake("w").await.unwrap();
    let share = share_on(&handshake, &handshake.job);
    assert_eq!(
        submit(&mut first, &handshake.job.job_id, &share).await,
        None
    );
    drop(first);
    let connected = || metrics.sum("hashsplit_downstream_connections", &[]);
    assert!(eventually(Duration::from_secs(5), || connected() == 0.0).await);

    for _ in 0..254 {
        let bare = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .unwrap();
        drop(bare);
    }
    assert!(eventually(Duration::from_secs(10), || connected() == 0.0).await);
    let mut second = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let again = second.handshake("w").await.unwrap();
    assert_eq!(
        again.subscribed.extranonce1, handshake.subscribed.extranonce1,
        "the prefix came back"
    );
    assert_eq!(again.job.job_id, handshake.job.job_id, "the same job");
    assert_eq!(
        submit(&mut second, &again.job.job_id, &share).await,
        Some(22)
    );
    // Other shares of the new holder are its own.
    assert_eq!(refused_as(&proxy, "duplicate"), 1.0);
    assert_eq!(pool.submits.lock().unwrap().len(), 1, "forwarded once");
    proxy.shutdown(Duration::from_secs(1)).await;
}
