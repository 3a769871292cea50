//! Properties of the engine and the simulator over random fleets and caps.
//!
//! Case counts are small so the suite stays fast in a debug build; each case
//! is a whole simulated run.

use std::time::Duration;

use hashsplit_policy::{
    Assignment, Engine, Fleet, Instant, MinerId, Observation, Policy, PoolId, SimOptions, Work,
    simulate,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// Returns a policy with the given caps and default timing.
fn policy(caps: &[f64]) -> Policy {
    let mut text = String::from("[policy]\n");
    for (i, cap) in caps.iter().enumerate() {
        text += &format!(
            "[[pool]]\nname = \"p{i}\"\nurl = \"stratum+tcp://p{i}.example:3333\"\n\
             user = \"u\"\nmax_share = {cap}\n"
        );
    }
    Policy::from_toml_str(&text)
        .expect("generated policy is valid")
        .0
}

/// Returns a fleet file of groups `(hashrate in TH/s, count)`.
fn fleet(policy: &Policy, groups: &[(u32, u32)]) -> Fleet {
    let mut text = String::new();
    for (i, (th, count)) in groups.iter().enumerate() {
        text += &format!("[[miner]]\nname = \"g{i}\"\nhashrate = \"{th}TH/s\"\ncount = {count}\n");
    }
    Fleet::from_toml_str(&text, policy).expect("generated fleet is valid")
}

/// Caps for 2 to 5 pools whose sum is at least 1.1, so they are feasible
/// with room for the margins held for the noise of share counting.
fn feasible_caps() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(0.15f64..=1.0, 2..=5).prop_map(|raw| {
        let floor = 1.1 / raw.len() as f64;
        raw.into_iter()
            .map(|c| (c.max(floor) * 1000.0).ceil() / 1000.0)
            .map(|c| c.min(1.0))
            .collect()
    })
}

/// Caps for 2 to 5 pools, as uneven as they come, scaled to sum to 1.15 to
/// 3: a small cap next to large ones is where a mixed fleet's estimate noise
/// shows most.
fn uneven_caps() -> impl Strategy<Value = Vec<f64>> {
    (
        proptest::collection::vec(0.15f64..=1.0, 2..=5),
        1.15f64..=3.0,
    )
        .prop_map(|(raw, sum)| {
            let sum = sum.min(raw.len() as f64);
            let mut caps = raw;
            // Scaling up pushes some caps past 1; clamping those and scaling
            // again settles within a few rounds.
            for _ in 0..50 {
                let now: f64 = caps.iter().sum();
                caps = caps.iter().map(|c| (c * sum / now).min(1.0)).collect();
            }
            caps.iter()
                .map(|c| ((c * 1000.0).ceil() / 1000.0).min(1.0))
                .collect()
        })
}

/// One to three groups of 1 to 8 machines of 1 to 500 TH/s: from a lone
/// miner to two dozen of mixed sizes.
fn groups() -> impl Strategy<Value = Vec<(u32, u32)>> {
    proptest::collection::vec((1u32..=500, 1u32..=8), 1..=3)
}

/// One to twenty machines of 1 to 500 TH/s in up to four groups.
fn small_fleets() -> impl Strategy<Value = Vec<(u32, u32)>> {
    proptest::collection::vec((1u32..=500, 1u32..=8), 1..=4)
        .prop_filter("at most twenty machines", |g| {
            g.iter().map(|x| x.1).sum::<u32>() <= 20
        })
}

const RUN: Duration = Duration::from_secs(40 * 60);

/// The cases are drawn from a fixed seed, so every CI run checks the same
/// ones. With random seeds the residual rate the README's "Limits" gives
/// (about one run in 400 with small mixed fleets exceeds a cap by a hair
/// over 0.01) would fail a CI run now and then; `PROPTEST_CASES` and a
/// changed seed explore further by hand.
const SEED: u64 = 0x6861_7368_7370_6c74;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, rng_seed: RngSeed::Fixed(SEED), ..ProptestConfig::default() })]

    #[test]
    fn feasible_caps_hold_over_every_full_window(
        caps in feasible_caps(), groups in groups(), seed in any::<u64>(),
    ) {
        let policy = policy(&caps);
        let report = simulate(&policy, &fleet(&policy, &groups), SimOptions { duration: RUN, seed });
        prop_assert_eq!(report.cap_violations, 0, "{:?}", report);
        prop_assert_eq!(report.infeasible_seconds, 0.0);
    }

    #[test]
    fn small_mixed_fleets_hold_uneven_caps(
        caps in uneven_caps(), groups in small_fleets(), seed in any::<u64>(),
    ) {
        let policy = policy(&caps);
        let report = simulate(&policy, &fleet(&policy, &groups), SimOptions { duration: RUN, seed });
        prop_assert_eq!(report.cap_violations, 0, "{:?} {:?}", groups, report);
    }

    #[test]
    fn a_single_miner_is_split_by_time_slicing(caps in feasible_caps(), seed in any::<u64>()) {
        prop_assume!(caps.iter().all(|&c| c < 1.0));
        let policy = policy(&caps);
        let report = simulate(&policy, &fleet(&policy, &[(100, 1)]), SimOptions { duration: RUN, seed });
        let used = report.pools.iter().filter(|p| p.share > 0.0).count();
        prop_assert!(used >= 2, "{:?}", report);
        for pool in &report.pools {
            prop_assert!(pool.max_window_share <= pool.cap + 0.01, "{:?}", report);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_result(
        caps in feasible_caps(), groups in groups(), seed in any::<u64>(),
    ) {
        let policy = policy(&caps);
        let fleet = fleet(&policy, &groups);
        let options = SimOptions { duration: Duration::from_secs(15 * 60), seed };
        prop_assert_eq!(simulate(&policy, &fleet, options), simulate(&policy, &fleet, options));
    }
}

/// Drives an engine tick by tick with noiseless work, recording plans.
struct Harness {
    engine: Engine,
    miners: Vec<(MinerId, f64)>,
    now: Instant,
    tick: Duration,
}

impl Harness {
    fn new(caps: &[f64], groups: &[(u32, u32)]) -> Self {
        let policy = policy(caps);
        let tick = policy.config.rebalance_every;
        let mut engine = Engine::new(policy);
        for pool in 0..caps.len() {
            engine.observe(Observation::PoolUp { pool: PoolId(pool) }, Instant::ZERO);
        }
        let mut miners = Vec::new();
        for &(th, count) in groups {
            for _ in 0..count {
                let id = MinerId(miners.len() as u64);
                engine.observe(Observation::MinerJoined { miner: id }, Instant::ZERO);
                miners.push((id, f64::from(th) * 1e12));
            }
        }
        Harness {
            engine,
            miners,
            now: Instant::ZERO,
            tick,
        }
    }

    /// Applies `observations` now, plans, and lets the miners work a tick.
    fn step(&mut self, observations: &[Observation]) -> Assignment {
        for &observation in observations {
            self.engine.observe(observation, self.now);
        }
        let plan = self.engine.plan(self.now);
        let end = self.now + self.tick;
        for &(miner, rate) in &self.miners {
            if let Some(pool) = plan.pool_for(miner) {
                let work = Work::from_hashes(rate * self.tick.as_secs_f64());
                self.engine
                    .observe(Observation::Work { miner, pool, work }, end);
            }
        }
        self.now = end;
        plan
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, rng_seed: RngSeed::Fixed(SEED), ..ProptestConfig::default() })]

    #[test]
    fn min_dwell_is_respected_unless_the_pool_fails(
        caps in feasible_caps(),
        groups in groups(),
        outages in proptest::collection::vec((0usize..5, 0u64..480, 1u64..120), 0..4),
    ) {
        let mut harness = Harness::new(&caps, &groups);
        let dwell = harness.engine.policy().config.min_dwell;
        let mut since: Vec<(Option<PoolId>, Instant)> = vec![(None, Instant::ZERO); harness.miners.len()];
        for n in 0..480u64 {
            let mut observations = Vec::new();
            let mut failed = Vec::new();
            for &(pool, start, length) in &outages {
                let pool = PoolId(pool % caps.len());
                if n == start {
                    observations.push(Observation::PoolDown { pool });
                    failed.push(pool);
                } else if n == start + length {
                    observations.push(Observation::PoolUp { pool });
                }
            }
            let now = harness.now;
            let plan = harness.step(&observations);
            for (i, &(miner, _)) in harness.miners.iter().enumerate() {
                let pool = plan.pool_for(miner);
                let (before, at) = since[i];
                if pool != before {
                    let forced = before.is_none_or(|p| !plan.pools[p.0].healthy);
                    prop_assert!(
                        forced || now - at >= dwell,
                        "{miner} moved from {before:?} after {:?} at {now}", now - at
                    );
                    since[i] = (pool, now);
                }
            }
        }
    }

    #[test]
    fn a_failed_pool_loses_its_miners_at_once_and_is_used_again_when_back(
        caps in feasible_caps(),
        groups in groups(),
        down_at in 60u64..200,
        down_for in 1u64..100,
        which in 0usize..5,
    ) {
        let mut harness = Harness::new(&caps, &groups);
        let pool = PoolId(which % caps.len());
        let config = harness.engine.policy().config.clone();
        for _ in 0..down_at {
            harness.step(&[]);
        }
        let plan = harness.step(&[Observation::PoolDown { pool }]);
        prop_assert_eq!(plan.pools[pool.0].miners, 0);
        prop_assert!(harness.miners.iter().all(|&(m, _)| plan.pool_for(m).is_some()));
        for _ in 0..down_for {
            let plan = harness.step(&[]);
            prop_assert_eq!(plan.pools[pool.0].miners, 0);
        }
        harness.step(&[Observation::PoolUp { pool }]);
        // A time-sliced miner may owe the other pools the rest of their
        // slices first, so "soon" is one window and one dwell.
        let soon = (config.window + config.min_dwell + config.rebalance_every).as_secs()
            / config.rebalance_every.as_secs();
        let used = (0..soon).any(|_| harness.step(&[]).pools[pool.0].miners > 0);
        prop_assert!(used, "pool {} unused {} ticks after coming back", pool, soon);
    }
}

#[test]
fn a_returning_pool_takes_its_share_of_the_miners_not_all_of_them() {
    // 30 equal machines over three pools capped at 0.5. While p1 is down
    // the others carry half each; when it returns it is far behind in its
    // window, but it must not pull every miner over at once (and then again
    // a window later).
    let mut harness = Harness::new(&[0.5, 0.5, 0.5], &[(100, 30)]);
    for _ in 0..200 {
        harness.step(&[]);
    }
    harness.step(&[Observation::PoolDown { pool: PoolId(1) }]);
    for _ in 0..240 {
        harness.step(&[]);
    }
    harness.step(&[Observation::PoolUp { pool: PoolId(1) }]);
    for _ in 0..360 {
        let plan = harness.step(&[]);
        for row in &plan.pools {
            assert!(
                row.miners <= 16,
                "{} has {} of 30 miners at {}",
                row.name,
                row.miners,
                plan.at
            );
        }
    }
}
