//! The simulators in a test whose tokio clock is paused, as the proxy's
//! integration tests run: virtual time jumps whenever the runtime idles,
//! while loopback I/O and the hashing threads take real time.

mod common;

use common::{SOON, quiet_pool};
use miner_sim::{Profile, SimMiner, SimMinerConfig, eventually};

#[tokio::test(start_paused = true)]
async fn a_miner_gets_shares_accepted_with_the_clock_paused() {
    let pool = quiet_pool().await;
    let miner = SimMiner::start(SimMinerConfig {
        hashrate: Some(300_000.0),
        ..SimMinerConfig::new(pool.addr(), Profile::Asic, "paused")
    });
    assert!(
        eventually(SOON, || miner.stats().accepted >= 3).await,
        "{}",
        miner.stats()
    );
    let seen = miner.stop().await;
    assert_eq!(seen.rejected, 0);
    assert_eq!(seen.reconnects, 0);
    assert_eq!(pool.stats().worker("paused").accepted, seen.accepted);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_transcript_runs_with_the_clock_paused() {
    let pool = quiet_pool().await;
    let mut miner = common::Miner::connect(&pool, "w").await;
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    assert_eq!(common::code(&miner.submit(&job, &share).await), None);
    pool.new_block();
    assert!(miner.client.next_job().await.unwrap().clean_jobs);
    pool.set_fault(miner_sim::Fault::CloseAll);
    assert!(miner.client.closed_within(SOON).await);
    pool.shutdown().await;
}
