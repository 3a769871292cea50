//! Pools that bend the rules, scripted line by line: the proxy keeps
//! miners' work valid for the pool and every share accounted for.

mod common;

use std::time::Duration;

use common::scripted::{Script, ScriptedPool};
use common::{config, fast_policy, pool_entry};
use hashsplit::Proxy;
use hashsplit_stratum::{
    ClientMethod, Configure, ConfigureResult, Difficulty, Id, Incoming, Job, Method, Notify,
    ServerMethod, ShareContext, Submission, Target,
};
use miner_sim::client::{Handshake, StratumClient};
use miner_sim::{eventually, find_share_rolled};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn proxy_for(pool: &ScriptedPool, downstream: &str) -> Proxy {
    common::logs();
    let toml = format!(
        "{}\n{downstream}\n{}",
        fast_policy(1.0),
        pool_entry(0, pool.addr, "")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Proxy::start(config(&toml), listener).unwrap()
}

async fn pool_up(proxy: &Proxy) -> bool {
    let metrics = proxy.metrics();
    eventually(Duration::from_secs(10), || {
        metrics.sum("hashsplit_pool_up", &[]) == 1.0
    })
    .await
}

fn d(value: f64) -> Difficulty {
    Difficulty::try_new(value).unwrap()
}

/// A scripted pool at a tiny difficulty with one job out, and a proxy in
/// front of it with the pool up.
async fn tiny_pool(version_mask: Option<u32>, hold_configure: bool) -> (ScriptedPool, Proxy) {
    let pool = ScriptedPool::start(&[0xaa; 4], 8, version_mask, hold_configure).await;
    pool.set_difficulty(1e-6);
    pool.notify("j1", true);
    let proxy = proxy_for(&pool, "[downstream]\nmin_difficulty = 0.000001\n").await;
    assert!(pool_up(&proxy).await);
    (pool, proxy)
}

/// Finds a share on `job` (as the proxy sent it) for the miner that got
/// `handshake`, meeting both its difficulty and the pool's 1e-6.
fn share_on(
    handshake: &Handshake,
    job: &Notify,
    extranonce2: u32,
    version_bits: Option<u32>,
) -> Submission {
    let en1 = &handshake.subscribed.extranonce1;
    let prepared =
        Job::from_notify(job, en1.len() + handshake.subscribed.extranonce2_size).unwrap();
    let ctx = ShareContext {
        extranonce1: en1,
        version_mask: version_bits.map(|_| 0x1fff_e000),
        miner_target: d(1e-6).to_target().min(handshake.difficulty.to_target()),
        pool_target: Target::MAX,
    };
    find_share_rolled(
        &prepared,
        &ctx,
        &extranonce2.to_be_bytes(),
        job.ntime,
        version_bits,
        0,
        1 << 22,
    )
    .unwrap()
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_lowering_its_difficulty_reaches_miners_without_a_new_job() {
    let pool = ScriptedPool::start(&[0xaa; 4], 8, Some(0x1fff_e000), false).await;
    pool.set_difficulty(4096.0);
    pool.notify("j1", true);
    let proxy = proxy_for(&pool, "").await;
    assert!(pool_up(&proxy).await);
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    assert_eq!(handshake.difficulty, d(4096.0), "never above the pool's");

    pool.set_difficulty(256.0);
    let (_, call) = miner.next_call().await.unwrap();
    assert_eq!(call, ServerMethod::SetDifficulty(d(256.0)));
    let job = miner.next_job().await.unwrap();
    assert!(
        !job.clean_jobs,
        "the same work, offered at the new difficulty"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_sending_its_job_before_its_difficulty_never_gets_miners_at_difficulty_one() {
    let pool = ScriptedPool::start(&[0xaa; 4], 8, Some(0x1fff_e000), false).await;
    let proxy = proxy_for(&pool, "").await;
    assert!(
        eventually(Duration::from_secs(5), || pool.connections() == 1).await,
        "the proxy connected to the pool"
    );
    pool.notify("j1", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pool.set_difficulty(65536.0);
    assert!(pool_up(&proxy).await);
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    // The configured initial difficulty, not Stratum's default 1 that was
    // in force for the 300 ms before the pool said its difficulty.
    assert_eq!(handshake.difficulty, d(8192.0));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_extranonce_from_the_pool_voids_the_jobs_built_on_the_old_one() {
    let (pool, proxy) = tiny_pool(None, false).await;
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    let share = share_on(&handshake, &handshake.job, 1, None);

    let new_extranonce = ServerMethod::SetExtranonce {
        extranonce1: vec![0xbb; 4],
        extranonce2_size: 8,
    };
    pool.send_line(new_extranonce.to_line(Id::Null));
    let metrics = proxy.metrics();
    let down = eventually(Duration::from_secs(5), || {
        metrics.sum("hashsplit_pool_up", &[]) == 0.0
    });
    assert!(down.await, "no usable job until the next one");
    let answer = miner
        .submit("w", &handshake.job.job_id, &share)
        .await
        .unwrap();
    let code = answer.error.map(|e| e.code);
    assert_eq!(code, Some(21), "built on the old extranonce1: stale");
    assert!(pool.submits.lock().unwrap().is_empty(), "never forwarded");

    // The next job is built on the new extranonce1 and mined as usual.
    pool.notify("j2", false);
    let fresh = miner.next_job().await.unwrap();
    let share = share_on(&handshake, &fresh, 2, None);
    let answer = miner.submit("w", &fresh.job_id, &share).await.unwrap();
    assert!(answer.error.is_none(), "{answer:?}");
    let forwarded = eventually(Duration::from_secs(5), || {
        pool.submits.lock().unwrap().len() == 1
    });
    assert!(forwarded.await);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_refusing_version_rolling_late_narrows_the_miners_mask() {
    // The pool answers mining.configure only after the miner has its mask.
    let (pool, proxy) = tiny_pool(None, true).await;
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let configure = ClientMethod::Configure(Configure::version_rolling(0x1fff_e000, 2));
    let answer = miner.call(&configure).await.unwrap();
    let granted = ConfigureResult::from_result(&answer.result)
        .unwrap()
        .version_rolling;
    assert_eq!(granted, Some(0x1fff_e000), "no pool has refused yet");
    let handshake = miner.handshake("w").await.unwrap();

    pool.send(Script::AnswerConfigure);
    let (_, call) = miner.next_call().await.unwrap();
    assert_eq!(
        call,
        ServerMethod::SetVersionMask(0),
        "the miner is told to stop rolling"
    );

    let rolled = share_on(&handshake, &handshake.job, 3, Some(0x2000));
    let answer = miner
        .submit("w", &handshake.job.job_id, &rolled)
        .await
        .unwrap();
    let code = answer.error.map(|e| e.code);
    assert_eq!(code, Some(20), "rolled bits the pool cannot take");
    assert!(pool.submits.lock().unwrap().is_empty(), "never forwarded");
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A raw miner that writes `shares` valid shares at once (each meets a
/// pool difficulty of 1e-9) while reading every answer, so only the pool
/// side can back up. Returns the number of answers read so far, by kind.
async fn flood(proxy: &Proxy, shares: u32) -> std::sync::Arc<std::sync::Mutex<Answers>> {
    let stream = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let subscribe = ClientMethod::Subscribe {
        user_agent: None,
        session_id: None,
    };
    let authorize = ClientMethod::Authorize {
        user: "w".into(),
        password: None,
    };
    for (id, call) in [(1u64, subscribe), (2, authorize)] {
        write
            .write_all(format!("{}\n", call.to_line(Id::from(id))).as_bytes())
            .await
            .unwrap();
    }
    let (mut en1, mut notify, mut difficulty) = (None, None, None);
    while notify.is_none() {
        let line = lines.next_line().await.unwrap().unwrap();
        match Incoming::<ServerMethod>::from_line(&line).unwrap() {
            Incoming::Response(r) if r.id.as_u64() == Some(1) => {
                en1 = Some(
                    hashsplit_stratum::SubscribeResult::from_result(&r.result)
                        .unwrap()
                        .extranonce1,
                );
            }
            Incoming::Call {
                method: ServerMethod::SetDifficulty(d),
                ..
            } => difficulty = Some(d),
            Incoming::Call {
                method: ServerMethod::Notify(n),
                ..
            } => notify = Some(n),
            _ => {}
        }
    }
    let (en1, notify, difficulty) = (en1.unwrap(), notify.unwrap(), difficulty.unwrap());
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Answers::default()));
    let counted = std::sync::Arc::clone(&answers);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(Incoming::Response(r)) = Incoming::<ServerMethod>::from_line(&line) {
                let mut answers = counted.lock().unwrap();
                match r.error {
                    None => answers.accepted += 1,
                    Some(e) => *answers.refused.entry(e.message).or_default() += 1,
                }
            }
        }
    });
    let job = Job::from_notify(&notify, en1.len() + 4).unwrap();
    let ctx = ShareContext {
        extranonce1: &en1,
        version_mask: None,
        miner_target: difficulty.to_target().min(d(1e-9).to_target()),
        pool_target: Target::MAX,
    };
    let mut flood = String::new();
    for i in 0..shares {
        let (share, _) =
            find_share_rolled(&job, &ctx, &i.to_be_bytes(), notify.ntime, None, 0, 1 << 16)
                .unwrap();
        let submit = miner_sim::client::submit_params("w", &notify.job_id, &share);
        flood.push_str(&ClientMethod::Submit(submit).to_line(Id::from(u64::from(i) + 10)));
        flood.push('\n');
    }
    // The proxy may stop reading while the pool backs up: write from a
    // task of its own, and keep the connection open afterwards.
    tokio::spawn(async move {
        write.write_all(flood.as_bytes()).await.unwrap();
        std::future::pending::<()>().await;
    });
    answers
}

/// What the flooding miner was answered.
#[derive(Debug, Default)]
struct Answers {
    accepted: u64,
    refused: std::collections::BTreeMap<String, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_stops_reading_is_given_up_and_every_share_is_settled() {
    let pool = ScriptedPool::start(&[0xaa; 4], 8, None, false).await;
    pool.set_difficulty(1e-9);
    pool.notify("j1", true);
    let proxy = proxy_for(&pool, "[downstream]\nmin_difficulty = 0.000000001\n").await;
    assert!(pool_up(&proxy).await);
    pool.send(Script::StopReading);

    let _answers = flood(&proxy, 40_000).await;

    // Given up when a write blocks for 5 s, or, if the socket buffers took
    // the whole flood, when it has answered nothing for 30 s.
    let metrics = proxy.metrics();
    assert!(
        eventually(Duration::from_secs(45), || metrics
            .sum("hashsplit_pool_up", &[])
            == 0.0)
        .await,
        "a pool that stopped reading is marked down"
    );
    // While the pool is deemed up, shares wait for room rather than being
    // refused; once it is given up, those on their way are answered as
    // unavailable, and later ones as stale (its jobs are void), until the
    // miner is disconnected for sending nothing but stale work. Whatever
    // the proxy read, it settled exactly once.
    let settled = eventually(Duration::from_secs(20), || {
        metrics.sum("hashsplit_shares_in_flight", &[]) == 0.0
            && metrics.sum("hashsplit_shares_submitted_total", &[])
                == metrics.sum("hashsplit_shares_total", &[])
    })
    .await;
    assert!(
        settled,
        "in flight: {}",
        metrics.sum("hashsplit_shares_in_flight", &[])
    );
    let unavailable = metrics.sum("hashsplit_shares_total", &[("reason", "pool-unavailable")]);
    assert!(unavailable > 0.0, "shares on their way were answered");
    // A liveness bound, not a speed one: shutdown must end with the pool
    // still not reading.
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        proxy.shutdown(Duration::from_secs(2)),
    );
    assert!(stopped.await.is_ok(), "shutdown ends");
}

// Paused time: the 5 s answer timeout and the 30 s a pool may owe an
// answer pass at once.
#[tokio::test(start_paused = true)]
async fn a_pool_that_sends_jobs_but_answers_no_share_is_given_up() {
    let (pool, proxy) = tiny_pool(None, false).await;
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    pool.send(Script::IgnoreSubmits);

    let share = share_on(&handshake, &handshake.job, 1, None);
    let answer = miner
        .submit("w", &handshake.job.job_id, &share)
        .await
        .unwrap();
    assert!(answer.error.is_some(), "unanswered: {answer:?}");
    let metrics = proxy.metrics();
    assert_eq!(
        metrics.sum("hashsplit_shares_total", &[("reason", "pool-timeout")]),
        1.0
    );
    // New jobs keep coming, yet the pool owes an answer it never gives.
    let jobs = tokio::spawn(async move {
        for i in 0.. {
            pool.notify(&format!("k{i}"), false);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let down = eventually(Duration::from_secs(40), || {
        metrics.sum("hashsplit_pool_up", &[]) == 0.0
    });
    assert!(down.await, "a pool that answers no share is marked down");
    jobs.abort();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanishing_pool_difficulty_never_breaks_a_miner() {
    let (pool, proxy) = tiny_pool(None, false).await;
    let mut miner = StratumClient::connect(proxy.local_addr()).await.unwrap();
    let handshake = miner.handshake("w").await.unwrap();
    // A subnormal difficulty is unreadable (skipped); a tiny normal one is
    // followed, below the proxy's own minimum, as a pool's difficulty is.
    pool.send_line(r#"{"id":null,"method":"mining.set_difficulty","params":[1e-310]}"#.into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    pool.set_difficulty(1e-300);
    let (_, call) = miner.next_call().await.unwrap();
    let ServerMethod::SetDifficulty(difficulty) = call else {
        panic!("expected a new difficulty, got {call:?}");
    };
    assert!(difficulty.as_f64() <= 1e-300, "{difficulty:?}");
    let share = share_on(&handshake, &handshake.job, 1, None);
    let answer = miner
        .submit("w", &handshake.job.job_id, &share)
        .await
        .unwrap();
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(
        proxy.metrics().sum("hashsplit_downstream_connections", &[]),
        1.0
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_a_slow_pool_waits_for_room_and_every_share_reaches_it() {
    let pool = ScriptedPool::start(&[0xaa; 4], 8, None, false).await;
    pool.set_difficulty(1e-9);
    pool.notify("j1", true);
    let proxy = proxy_for(&pool, "[downstream]\nmin_difficulty = 0.000000001\n").await;
    assert!(pool_up(&proxy).await);
    // The pool stops reading for a moment (well within the time a write
    // may take): its socket and then its queue (1024) fill, and the
    // session must wait for room rather than refuse valid work.
    pool.send(Script::PauseReading(Duration::from_secs(2)));
    let shares = 20_000;
    let answers = flood(&proxy, shares).await;

    let metrics = proxy.metrics();
    let drained = eventually(Duration::from_secs(60), || {
        metrics.sum("hashsplit_shares_submitted_total", &[]) == f64::from(shares)
            && metrics.sum("hashsplit_shares_in_flight", &[]) == 0.0
    })
    .await;
    assert!(
        drained,
        "submitted {} in flight {}",
        metrics.sum("hashsplit_shares_submitted_total", &[]),
        metrics.sum("hashsplit_shares_in_flight", &[])
    );
    assert_eq!(
        metrics.sum("hashsplit_shares_total", &[]),
        f64::from(shares),
        "every share settled once"
    );
    assert_eq!(
        metrics.sum("hashsplit_shares_total", &[("reason", "pool-unavailable")]),
        0.0,
        "no valid share refused while the pool is up"
    );
    assert_eq!(
        pool.submits.lock().unwrap().len(),
        shares as usize,
        "every share reached the pool"
    );
    let answered = eventually(Duration::from_secs(10), || {
        let answers = answers.lock().unwrap();
        answers.accepted + answers.refused.values().sum::<u64>() == u64::from(shares)
    })
    .await;
    assert!(answered, "the miner heard about every share: {answers:?}");
    assert_eq!(metrics.sum("hashsplit_pool_up", &[]), 1.0, "never given up");
    proxy.shutdown(Duration::from_secs(2)).await;
}
