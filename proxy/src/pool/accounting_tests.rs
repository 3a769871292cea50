//! Every way a forwarded share can end settles it exactly once, through
//! its pool's share counters: the pool accepts or refuses it, the
//! connection drops with it unanswered, the pool is down when it is
//! queued, the pool is retired, the proxy stops. After each, submitted =
//! settled + in flight, and the session's answer is the outcome counted.

use std::time::Duration;

use hashsplit_stratum::Difficulty;
use miner_sim::{Fault, SimPool, SimPoolConfig, eventually};

use super::*;
use crate::jobs::Layout;
use crate::metrics::{PoolReject, Tally};
use crate::policy_task;

/// A pool's owner, run against one address, with what the test needs.
struct Bench {
    handle: PoolHandle,
    metrics: Metrics,
    shutdown: CancellationToken,
    layout: Layout,
    next_extranonce2: u32,
}

impl Bench {
    fn start(addr: std::net::SocketAddr) -> Bench {
        let toml = format!(
            "[policy]\nmax_share = 1.0\n[[pool]]\nname = \"p\"\nurl = \"stratum+tcp://{addr}\"\nuser = \"u\"\n"
        );
        let (config, _) = crate::Config::from_toml_str(&toml).expect("a valid config");
        let metrics = Metrics::new(&["p".to_owned()]);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let registry = PoolRegistry::default();
        let (_policy, inbox) = policy_task::spawn(
            Arc::new(config.policy.clone()),
            registry.subscribe(),
            metrics.clone(),
            shutdown.clone(),
            &tasks,
        );
        let layout = Layout {
            extranonce1_size: 3,
            extranonce2_size: 4,
        };
        let context = Context {
            metrics: metrics.clone(),
            ids: Arc::new(JobIds::default()),
            layouts: Arc::new(Layouts::new(layout)),
            version_mask: 0,
            spaces: tokio::sync::watch::channel(vec![true]).1,
            policy: inbox,
            shutdown: shutdown.clone(),
            tasks,
        };
        let entry = config.policy.pools[0].clone();
        let handle = spawn(&context, PoolId(0), entry, None);
        Bench {
            handle,
            metrics,
            shutdown,
            layout,
            next_extranonce2: 0,
        }
    }

    async fn up(&self) -> bool {
        let handle = self.handle.clone();
        let layout = self.layout;
        eventually(Duration::from_secs(10), move || {
            let state = handle.state();
            state.up && state.job_for(layout).is_some()
        })
        .await
    }

    async fn down(&self) -> bool {
        let handle = self.handle.clone();
        eventually(Duration::from_secs(10), move || !handle.state().up).await
    }

    /// Returns a share of the pool's current job (a new one each call, so
    /// a pool at a tiny difficulty accepts it) and its session's answer.
    fn share(&mut self) -> (Forward, oneshot::Receiver<Outcome>) {
        self.next_extranonce2 += 1;
        let job = self.handle.state().jobs.first().cloned();
        let (pool_job_id, extranonce2, ntime) = match job {
            Some(job) => (
                Arc::clone(&job.pool_job_id),
                job.pool_extranonce2(&[0, 0, 1], &self.next_extranonce2.to_be_bytes()),
                job.notify.ntime,
            ),
            None => (
                Arc::from("none"),
                crate::jobs::PoolExtranonce2::new(8, &[], &[]),
                0,
            ),
        };
        let (reply, answer) = oneshot::channel();
        let share = Forward {
            pool_job_id,
            extranonce2,
            ntime,
            nonce: 0,
            version_bits: None,
            settlement: Settlement::new(self.handle.shares().submit(1.0), reply),
        };
        (share, answer)
    }

    /// Forwards a share and returns the outcome its session hears, which a
    /// caller whose share was not queued settles itself (as a session
    /// does).
    async fn forward(&mut self) -> Outcome {
        let (share, answer) = self.share();
        match self.handle.forward(share, false).await {
            Ok(()) => answer.await.expect("settled, never dropped"),
            Err(unqueued) => {
                let outcome = unqueued.outcome();
                unqueued.into_share().settlement.settle(outcome);
                outcome
            }
        }
    }

    /// Returns the pool's counts, after checking submitted = settled + in
    /// flight.
    fn tally(&self, outcome: Outcome) -> Tally {
        let tally = self.handle.shares().tally(outcome);
        let in_flight = u64::try_from(tally.in_flight).expect("never negative");
        assert_eq!(tally.submitted, tally.settled + in_flight, "{tally:?}");
        tally
    }
}

fn sim_config() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(1e-12).expect("positive"),
        job_interval: Duration::ZERO,
        clean_interval: Duration::ZERO,
        ..SimPoolConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forwarded_share_is_settled_once_whatever_becomes_of_its_pool() {
    let sim = SimPool::start(sim_config()).await.expect("a pool");
    let mut bench = Bench::start(sim.addr());
    assert!(bench.up().await, "the pool comes up");

    // The pool accepts it.
    let accepted = Outcome::AcceptedByPool;
    assert_eq!(bench.forward().await, accepted);
    assert_eq!(bench.tally(accepted).with_outcome, 1);

    // The pool refuses it.
    sim.set_fault(Fault::RejectAll);
    let refused = Outcome::RejectedByPool(PoolReject::Other);
    assert_eq!(bench.forward().await, refused);
    assert_eq!(bench.tally(refused).with_outcome, 1);
    sim.clear_faults();

    // The connection drops while the pool holds it unanswered.
    sim.set_fault(Fault::Blackhole);
    let (share, answer) = bench.share();
    bench.handle.forward(share, false).await.expect("queued");
    let stats = || sim.stats().unanswered;
    assert!(eventually(Duration::from_secs(5), || stats() >= 1).await);
    sim.set_fault(Fault::CloseAll);
    let unavailable = Outcome::PoolUnavailable;
    assert_eq!(answer.await.expect("settled"), unavailable);
    assert_eq!(bench.tally(unavailable).with_outcome, 1);

    // The pool is down (it is gone) while shares come for it.
    sim.shutdown().await;
    assert!(bench.down().await, "the pool goes down");
    for _ in 0..3 {
        assert_eq!(bench.forward().await, unavailable);
    }
    assert_eq!(bench.tally(unavailable).with_outcome, 4);

    // Retired: what comes after is settled too, and its series leave the
    // exposition once its owner has settled what it held.
    bench.handle.retire();
    assert_eq!(bench.forward().await, unavailable);
    let finished = bench.handle.shared.finished.clone();
    tokio::time::timeout(Duration::from_secs(10), finished.cancelled())
        .await
        .expect("the retired pool's owner ends");
    assert_eq!(bench.forward().await, unavailable);
    let tally = bench.tally(unavailable);
    assert_eq!((tally.with_outcome, tally.submitted), (6, 8));
    assert_eq!(tally.in_flight, 0);
    assert!(
        !bench
            .metrics
            .encode()
            .contains(r#"hashsplit_shares_total{pool="p""#)
    );
    bench.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_proxy_settles_the_shares_a_pool_holds() {
    let sim = SimPool::start(sim_config()).await.expect("a pool");
    let mut bench = Bench::start(sim.addr());
    assert!(bench.up().await, "the pool comes up");
    sim.set_fault(Fault::Blackhole);
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (share, answer) = bench.share();
        bench.handle.forward(share, false).await.expect("queued");
        answers.push(answer);
    }
    let unanswered = || sim.stats().unanswered;
    assert!(eventually(Duration::from_secs(5), || unanswered() >= 5).await);
    assert_eq!(bench.tally(Outcome::PoolUnavailable).in_flight, 5);
    bench.shutdown.cancel();
    for answer in answers {
        assert_eq!(answer.await.expect("settled"), Outcome::PoolUnavailable);
    }
    let tally = bench.tally(Outcome::PoolUnavailable);
    assert_eq!((tally.with_outcome, tally.in_flight), (5, 0));
    let exposed = |name| bench.metrics.sum(name, &[("pool", "p")]);
    assert_eq!(exposed("hashsplit_shares_submitted_total"), 5.0);
    assert_eq!(exposed("hashsplit_shares_total"), 5.0);
    assert_eq!(exposed("hashsplit_shares_in_flight"), 0.0);
}
