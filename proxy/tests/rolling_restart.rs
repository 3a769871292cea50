//! A rolling restart of the farm behind HAProxy (`examples/haproxy/`):
//! each instance in turn is drained with SIGUSR1 (its `/readyz` fails and
//! HAProxy's check takes it out, its miners are asked to reconnect one at a
//! time over `drain_period` and come back through HAProxy to the others),
//! exits 0, and is started again. No accepted share is lost, and never more
//! than a sixth of the farm's miners are reconnecting at once.
//!
//! Needs `haproxy`, like `haproxy.rs`.

mod common;

use std::time::Duration;

use common::farm::{Farm, FarmOptions, PATIENCE, eventually_sync, source, stale_rejects};
use miner_sim::{SimMiner, eventually};
use tokio::time::Instant;

const MINERS: u8 = 12;
/// The test's drain period: four miners per instance get one turn every
/// 1.2 s.
const DRAIN_PERIOD: Duration = Duration::from_secs(6);
/// The most of the farm's miners between two sessions at any moment. The
/// drain asks one at a time, but until HAProxy's check has seen the
/// instance go, a miner's new connection may be refused by the draining
/// instance and redispatched after HAProxy's one-second turn-around, so
/// two gaps may overlap; asking an instance's four miners at once could
/// not stay within this.
const MAX_AT_ONCE: usize = MINERS as usize / 6;

fn reconnects(miners: &[SimMiner]) -> u64 {
    miners.iter().map(|m| m.stats().reconnects).sum()
}

/// Returns the most gaps open at one moment.
fn most_at_once(gaps: &[(Instant, Instant)]) -> usize {
    // Ends sort before starts at the same instant: back-to-back is not
    // at once.
    let mut edges: Vec<(Instant, i32)> = gaps
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        open += step;
        most = most.max(open);
    }
    usize::try_from(most).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_no_share_and_moves_miners_a_few_at_a_time() {
    let options = FarmOptions {
        max_per_ip: 64,
        instance_lines: vec![(
            "drain_period = \"2m\"",
            format!("drain_period = \"{}s\"", DRAIN_PERIOD.as_secs()),
        )],
    };
    let Some(mut farm) = Farm::start(options).await else {
        return;
    };
    let mut miners = Vec::new();
    for i in 0..MINERS {
        miners.push(farm.miner(&format!("m{i}"), source(2 + i / 2), 1e5));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_connected = |miners: &[SimMiner]| miners.iter().all(|m| m.stats().connected);
    assert!(eventually(PATIENCE, || all_connected(&miners)).await);

    let mut moved = 0;
    for n in 0..farm.instances.len() {
        let name = farm.instances[n].name.clone();
        let (_, on_it) = farm.server(&name).expect("in HAProxy's stats");
        assert!(on_it > 0, "{name} has miners to move: {:?}", farm.servers());
        let signalled = Instant::now();
        farm.instances[n].signal("USR1");
        let instance = &farm.instances[n];
        let unready = eventually_sync(PATIENCE, || instance.readyz() == Some(503));
        assert!(unready.await, "{name}'s /readyz fails while it drains");
        farm.wait_status(&name, "DOWN").await;
        let status = farm.instances[n].exited(PATIENCE).await;
        assert!(
            status.success(),
            "{name} exits 0 after its drain: {status:?}"
        );

        moved += on_it;
        let settled = eventually(PATIENCE, || {
            all_connected(&miners) && reconnects(&miners) == moved
        });
        assert!(
            settled.await,
            "{name}'s {on_it} miners moved to the others, once each: {} reconnects",
            reconnects(&miners)
        );
        // Over the drain period, not all at once.
        let starts: Vec<Instant> = miners
            .iter()
            .flat_map(SimMiner::reconnect_gaps)
            .map(|(start, _)| start)
            .filter(|start| *start > signalled)
            .collect();
        let first = starts.iter().min().expect("a gap");
        let last = starts.iter().max().expect("a gap");
        assert!(
            on_it < 3 || *last - *first >= DRAIN_PERIOD / 3,
            "{name}'s miners were asked over its drain period: {:?}",
            *last - *first
        );

        farm.instances[n].start();
        farm.wait_status(&name, "UP").await;
    }

    let gaps: Vec<_> = miners.iter().flat_map(SimMiner::reconnect_gaps).collect();
    assert_eq!(gaps.len() as u64, moved);
    let most = most_at_once(&gaps);
    eprintln!("{moved} miners moved; at most {most} reconnecting at once");
    assert!(
        most <= MAX_AT_ONCE,
        "{most} of {MINERS} miners reconnecting at once"
    );

    // Every share a miner sent reached a pool and was accepted there
    // (the miners mine at the pools' difficulty, so each share is
    // forwarded): none was lost on the way out of a draining instance.
    let (mut submitted, mut stale) = (0, 0);
    for miner in miners {
        let stats = miner.stop().await;
        let stale_here = stale_rejects(&stats);
        // A share on the wire when its pool announces a new block is
        // stale: a race of the network, not of the drain.
        assert_eq!(stats.rejected, stale_here, "a share refused: {stats:#?}");
        submitted += stats.submitted;
        stale += stale_here;
    }
    assert!(stale <= 3, "{stale} stale shares");
    let all_landed = eventually(Duration::from_secs(15), || {
        farm.pool_shares() == submitted - stale
    });
    assert!(
        all_landed.await,
        "the pools accepted {} of the {submitted} shares sent ({stale} stale)",
        farm.pool_shares()
    );
    farm.assert_pools_refused_only_stale();
    farm.stop().await;
}
