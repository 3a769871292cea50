//! Every local rejection, with the code a miner expects and the reason the
//! metrics count; and the shares that pass, as the pool sees them.

mod common;

use std::time::Duration;

use common::{Bed, POOL_USER, fast_policy};
use hashsplit_stratum::{Job, Notify, ShareContext, Submission, Target};
use miner_sim::client::{StratumClient, submit_params};
use miner_sim::{SimPoolConfig, eventually, find_low_share, find_share, find_share_rolled};

/// A miner that computes its own shares on the job the proxy sent.
struct Crafter {
    client: StratumClient,
    extranonce1: Vec<u8>,
    notify: Notify,
    job: Job,
    target: Target,
    mask: Option<u32>,
}

impl Crafter {
    async fn connect(bed: &Bed, worker: &str, mask: Option<u32>) -> Crafter {
        let mut client = StratumClient::connect(bed.addr()).await.unwrap();
        let mut granted = None;
        if let Some(mask) = mask {
            let answer = client
                .call(&hashsplit_stratum::ClientMethod::Configure(
                    hashsplit_stratum::Configure::version_rolling(mask, 2),
                ))
                .await
                .unwrap();
            granted = hashsplit_stratum::ConfigureResult::from_result(&answer.result)
                .unwrap()
                .version_rolling;
        }
        let handshake = client.handshake(worker).await.unwrap();
        let extranonce1 = handshake.subscribed.extranonce1.clone();
        let size = extranonce1.len() + handshake.subscribed.extranonce2_size;
        let job = Job::from_notify(&handshake.job, size).unwrap();
        Crafter {
            client,
            extranonce1,
            notify: handshake.job,
            job,
            // Shares meet the pool's difficulty too, so each good share is
            // forwarded and the pool's verdict is what the miner hears.
            target: handshake
                .difficulty
                .to_target()
                .min(pool_difficulty().to_target()),
            mask: granted,
        }
    }

    fn ctx(&self) -> ShareContext<'_> {
        ShareContext {
            extranonce1: &self.extranonce1,
            version_mask: self.mask,
            miner_target: self.target,
            pool_target: self.target,
        }
    }

    fn good_share(&self, extranonce2: u32) -> Submission {
        find_share(
            &self.job,
            &self.ctx(),
            &extranonce2.to_be_bytes(),
            self.notify.ntime,
            0,
            1 << 20,
        )
        .expect("a share at the miner's difficulty")
        .0
    }

    async fn submit(&mut self, worker: &str, share: &Submission) -> Option<i64> {
        let answer = self
            .client
            .submit(worker, &self.notify.job_id.clone(), share)
            .await
            .unwrap();
        answer.error.map(|e| e.code)
    }
}

fn pool_difficulty() -> hashsplit_stratum::Difficulty {
    hashsplit_stratum::Difficulty::try_new(1e-6).unwrap()
}

/// One pool at a tiny difficulty, so a crafted share costs a few thousand
/// hashes and every good share is also a pool share (forwarded).
async fn bed() -> Bed {
    let pool = SimPoolConfig {
        difficulty: pool_difficulty(),
        ..SimPoolConfig::default()
    };
    let bed = Bed::start_with(
        vec![(pool, "")],
        &fast_policy(1.0),
        "[downstream]\nmin_difficulty = 0.000001\n",
    )
    .await;
    bed.pools_up().await;
    bed
}

fn rejected(bed: &Bed, reason: &str) -> f64 {
    bed.shares(&[("result", "rejected"), ("reason", reason)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_low_difficulty_and_bad_version_are_refused_with_their_codes() {
    let bed = bed().await;
    let mut miner = Crafter::connect(&bed, "w", Some(0x1fff_e000)).await;

    let share = miner.good_share(1);
    assert_eq!(
        miner.submit("w", &share).await,
        None,
        "a good share is accepted"
    );
    assert_eq!(
        miner.submit("w", &share).await,
        Some(22),
        "the same share again is a duplicate"
    );

    let low = find_low_share(
        &miner.job,
        &miner.ctx(),
        &2u32.to_be_bytes(),
        miner.notify.ntime,
        0,
        1 << 16,
    )
    .unwrap();
    assert_eq!(miner.submit("w", &low).await, Some(23));

    let outside = Submission::new(
        &3u32.to_be_bytes(),
        miner.notify.ntime,
        7,
        Some(0x2000_0000),
    );
    assert_eq!(miner.submit("w", &outside).await, Some(20));

    let late = Submission::new(&4u32.to_be_bytes(), miner.notify.ntime + 7001, 7, None);
    assert_eq!(miner.submit("w", &late).await, Some(20));

    assert_eq!(rejected(&bed, "duplicate"), 1.0);
    assert_eq!(rejected(&bed, "low-difficulty"), 1.0);
    assert_eq!(rejected(&bed, "bad-version-bits"), 1.0);
    assert_eq!(rejected(&bed, "ntime-out-of-range"), 1.0);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_version_share_reaches_the_pool_and_is_accepted_there() {
    let bed = bed().await;
    let mut miner = Crafter::connect(&bed, "w", Some(0x1fff_e000)).await;
    let rolled = find_share_rolled(
        &miner.job,
        &miner.ctx(),
        &9u32.to_be_bytes(),
        miner.notify.ntime,
        Some(0x0aaa_e000),
        0,
        1 << 20,
    )
    .unwrap()
    .0;
    assert_eq!(miner.submit("w", &rolled).await, None);
    // The pool difficulty equals the miner's here, so the share was
    // forwarded; the pool checked the rolled header itself.
    let pool = bed.pools[0].stats();
    assert_eq!(pool.worker(POOL_USER).accepted, 1, "{pool:?}");
    assert_eq!(pool.worker(POOL_USER).rejected, 0, "{pool:?}");
    assert_eq!(bed.shares(&[("reason", "pool-accepted")]), 1.0);

    // A miner that never configured rolling may not roll.
    let mut plain = Crafter::connect(&bed, "p", None).await;
    let bits = Submission::new(
        &1u32.to_be_bytes(),
        plain.notify.ntime,
        1,
        Some(0x0000_2000),
    );
    assert_eq!(plain.submit("p", &bits).await, Some(20));
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_unknown_jobs_are_refused_with_code_21() {
    let bed = bed().await;
    let mut miner = Crafter::connect(&bed, "w", None).await;
    let old_share = miner.good_share(5);
    let old_job = miner.notify.job_id.clone();

    bed.pools[0].new_block();
    let fresh = miner.client.next_job().await.unwrap();
    assert!(fresh.clean_jobs);
    let answer = miner
        .client
        .submit("w", &old_job, &old_share)
        .await
        .unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(21));
    assert_eq!(rejected(&bed, "stale"), 1.0);

    let answer = miner
        .client
        .submit("w", "ffffff", &old_share)
        .await
        .unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(21));
    assert_eq!(rejected(&bed, "job-not-found"), 1.0);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_unauthorized_and_malformed_submits_are_refused_and_counted() {
    let bed = bed().await;
    let share = Submission::new(&[0; 4], 1, 1, None);

    let mut early = StratumClient::connect(bed.addr()).await.unwrap();
    let answer = early.submit("w", "1", &share).await.unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(25));

    let mut miner = Crafter::connect(&bed, "w", None).await;
    let job_id = miner.notify.job_id.clone();
    let good = miner.good_share(6);
    let answer = miner
        .client
        .submit("someone-else", &job_id, &good)
        .await
        .unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(24));

    let mut params = submit_params("w", &job_id, &good);
    params.nonce = "xyz12345".into();
    let answer = miner
        .client
        .call(&hashsplit_stratum::ClientMethod::Submit(params))
        .await
        .unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(20));

    miner
        .client
        .send_line(r#"{"id":77,"method":"mining.submit","params":["w","1"]}"#)
        .await
        .unwrap();
    let answer = miner.client.response_to(&77u64.into()).await.unwrap();
    assert_eq!(answer.error.map(|e| e.code), Some(20));

    assert_eq!(rejected(&bed, "not-subscribed"), 1.0);
    assert_eq!(rejected(&bed, "unauthorized"), 1.0);
    assert_eq!(rejected(&bed, "bad-hex"), 1.0);
    assert_eq!(rejected(&bed, "malformed"), 1.0);
    // Every attempt is accounted for.
    let metrics = bed.proxy.metrics();
    assert_eq!(
        metrics.sum("hashsplit_shares_submitted_total", &[]),
        metrics.sum("hashsplit_shares_total", &[]) + metrics.sum("hashsplit_shares_in_flight", &[])
    );
    bed.stop().await;
}

// Paused time: the 5 s the proxy waits for a silent pool pass at once.
#[tokio::test(start_paused = true)]
async fn a_share_the_pool_refuses_is_reported_to_the_miner_as_refused() {
    let bed = bed().await;
    let mut miner = Crafter::connect(&bed, "w", None).await;
    bed.pools[0].set_fault(miner_sim::Fault::RejectAll);
    let share = miner.good_share(8);
    assert_eq!(miner.submit("w", &share).await, Some(20));
    assert_eq!(rejected(&bed, "pool-other"), 1.0);
    bed.pools[0].clear_faults();

    // A pool that stops answering: the miner hears within the bounded wait.
    bed.pools[0].set_fault(miner_sim::Fault::Blackhole);
    let share = miner.good_share(9);
    let answered = tokio::time::timeout(Duration::from_secs(15), miner.submit("w", &share)).await;
    assert_eq!(
        answered.expect("an answer within the bounded wait"),
        Some(20)
    );
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(2), || rejected(&bed, "pool-timeout")
            == 1.0)
        .await,
        "counted as a pool timeout"
    );
    assert_eq!(metrics.sum("hashsplit_shares_in_flight", &[]), 0.0);
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_sending_only_bad_shares_is_disconnected_after_a_long_run() {
    let bed = bed().await;
    let mut miner = Crafter::connect(&bed, "w", None).await;
    let garbage = Submission::new(&[0; 4], miner.notify.ntime, 1, None);
    // Every one is refused as stale/unknown; the connection is closed after
    // 256 in a row, and each was counted.
    for i in 0..300u64 {
        let call =
            hashsplit_stratum::ClientMethod::Submit(submit_params("w", "no-such-job", &garbage));
        let line = hashsplit_stratum::Method::to_line(&call, hashsplit_stratum::Id::from(100 + i));
        if miner.client.send_line(&line).await.is_err() {
            break; // closed by the proxy
        }
    }
    assert!(miner.client.closed_within(Duration::from_secs(5)).await);
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(2), || {
            metrics.sum(
                "hashsplit_downstream_disconnects_total",
                &[("reason", "too-many-rejects")],
            ) == 1.0
        })
        .await
    );
    assert_eq!(rejected(&bed, "job-not-found"), 256.0);
    bed.stop().await;
}
