//! Helpers shared by the integration tests: pools with jobs only on demand,
//! and shares crafted for a job a client was sent.

#![allow(dead_code)]

use std::time::Duration;

use hashsplit_stratum::{Difficulty, Job, Notify, ShareContext, Submission};
use miner_sim::client::{Handshake, StratumClient};
use miner_sim::{SimPool, SimPoolConfig, find_low_share, find_share_rolled};

/// How long a test waits for something that should happen at once.
pub const SOON: Duration = Duration::from_secs(20);

/// Returns a config with jobs only when the test asks and an easy
/// difficulty, so shares take milliseconds to find.
pub fn quiet_config() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        job_interval: Duration::ZERO,
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    }
}

pub async fn quiet_pool() -> SimPool {
    SimPool::start(quiet_config()).await.unwrap()
}

/// A client that went through subscribe and authorize.
pub struct Miner {
    pub client: StratumClient,
    pub hello: Handshake,
    pub user: String,
}

impl Miner {
    pub async fn connect(pool: &SimPool, user: &str) -> Miner {
        let mut client = StratumClient::connect(pool.addr()).await.unwrap();
        let hello = client.handshake(user).await.unwrap();
        Miner {
            client,
            hello,
            user: user.into(),
        }
    }

    pub fn extranonce1(&self) -> Vec<u8> {
        self.hello.subscribed.extranonce1.clone()
    }

    /// Returns a share for `job` meeting `difficulty`, with `en2_byte`
    /// filling extranonce2 and optional rolled version bits.
    pub fn share(
        &self,
        job: &Notify,
        difficulty: f64,
        en2_byte: u8,
        version_bits: Option<u32>,
    ) -> Submission {
        share_for(
            job,
            &self.extranonce1(),
            self.hello.subscribed.extranonce2_size,
            difficulty,
            en2_byte,
            version_bits,
        )
    }

    /// Returns a share for `job` that misses `difficulty`.
    pub fn low_share(&self, job: &Notify, difficulty: f64) -> Submission {
        let en1 = self.extranonce1();
        let en2 = vec![0x5a; self.hello.subscribed.extranonce2_size];
        let prepared = Job::from_notify(job, en1.len() + en2.len()).unwrap();
        let target = Difficulty::try_new(difficulty).unwrap().to_target();
        let ctx = ShareContext {
            extranonce1: &en1,
            version_mask: None,
            miner_target: target,
            pool_target: target,
        };
        find_low_share(&prepared, &ctx, &en2, job.ntime, 0, 10_000).unwrap()
    }

    pub async fn submit(
        &mut self,
        job: &Notify,
        share: &Submission,
    ) -> hashsplit_stratum::Response {
        let user = self.user.clone();
        self.client.submit(&user, &job.job_id, share).await.unwrap()
    }
}

/// Returns a share for `job` by the holder of `en1` meeting `difficulty`.
pub fn share_for(
    job: &Notify,
    en1: &[u8],
    en2_size: usize,
    difficulty: f64,
    en2_byte: u8,
    version_bits: Option<u32>,
) -> Submission {
    let en2 = vec![en2_byte; en2_size];
    let prepared = Job::from_notify(job, en1.len() + en2.len()).unwrap();
    let target = Difficulty::try_new(difficulty).unwrap().to_target();
    let ctx = ShareContext {
        extranonce1: en1,
        // The header is the same under any mask holding the rolled bits
        // and none of the job's own version bits.
        version_mask: version_bits.map(|_| 0x1fff_e000),
        miner_target: target,
        pool_target: target,
    };
    find_share_rolled(&prepared, &ctx, &en2, job.ntime, version_bits, 0, u32::MAX)
        .expect("a share exists")
        .0
}

/// Returns the error code of an answer, or `None` when it accepted.
pub fn code(response: &hashsplit_stratum::Response) -> Option<i64> {
    response.error.as_ref().map(|e| e.code)
}
