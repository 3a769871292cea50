use super::*;
use crate::units::Work;

fn policy(caps: &[f64], dwell: &str) -> Policy {
    let mut text = format!("[policy]\nmin_dwell = \"{dwell}\"\n");
    for (i, cap) in caps.iter().enumerate() {
        text += &format!(
            "[[pool]]\nname = \"p{i}\"\nurl = \"stratum+tcp://p{i}.example:3333\"\nuser = \"u\"\nmax_share = {cap}\n"
        );
    }
    Policy::from_toml_str(&text).unwrap().0
}

fn up_engine(caps: &[f64]) -> Engine {
    let mut engine = Engine::new(policy(caps, "30s"));
    for i in 0..caps.len() {
        engine.observe(Observation::PoolUp { pool: PoolId(i) }, Instant::ZERO);
    }
    engine
}

/// Joins miners 0..count at time zero.
fn join(engine: &mut Engine, count: u64) {
    for id in 0..count {
        engine.observe(
            Observation::MinerJoined { miner: MinerId(id) },
            Instant::ZERO,
        );
    }
}

#[test]
fn pools_start_down_so_nobody_is_assigned() {
    let mut engine = Engine::new(policy(&[1.0], "30s"));
    engine.observe(
        Observation::MinerJoined { miner: MinerId(1) },
        Instant::ZERO,
    );
    let plan = engine.plan(Instant::ZERO);
    assert_eq!(plan.pool_for(MinerId(1)), None);
    assert!(!plan.feasible);
}

#[test]
fn a_new_miner_without_an_estimate_is_assigned_at_once() {
    let mut engine = up_engine(&[0.6, 0.6]);
    engine.observe(
        Observation::MinerJoined { miner: MinerId(7) },
        Instant::ZERO,
    );
    let plan = engine.plan(Instant::ZERO);
    assert!(plan.pool_for(MinerId(7)).is_some());
    assert!(plan.feasible);
}

#[test]
fn a_miner_on_a_failed_pool_moves_at_the_next_plan_despite_min_dwell() {
    let mut engine = up_engine(&[0.6, 0.6]);
    engine.observe(
        Observation::MinerJoined { miner: MinerId(1) },
        Instant::ZERO,
    );
    let first = engine.plan(Instant::ZERO).pool_for(MinerId(1)).unwrap();
    let now = Instant::from_secs(5);
    engine.observe(Observation::PoolDown { pool: first }, now);
    let plan = engine.plan(now);
    let second = plan.pool_for(MinerId(1)).unwrap();
    assert_ne!(first, second);
    assert!(!plan.pools[first.0].healthy);
}

#[test]
fn a_miner_that_left_is_no_longer_assigned() {
    let mut engine = up_engine(&[1.0]);
    engine.observe(
        Observation::MinerJoined { miner: MinerId(1) },
        Instant::ZERO,
    );
    engine.plan(Instant::ZERO);
    engine.observe(
        Observation::MinerLeft { miner: MinerId(1) },
        Instant::from_secs(1),
    );
    let plan = engine.plan(Instant::from_secs(5));
    assert_eq!(plan.pool_for(MinerId(1)), None);
    assert_eq!(plan.miner_count(), 0);
}

#[test]
fn work_for_an_unknown_miner_joins_it() {
    let mut engine = up_engine(&[1.0]);
    let work = Work::from_difficulty(1000.0);
    let observation = Observation::Work {
        miner: MinerId(3),
        pool: PoolId(0),
        work,
    };
    engine.observe(observation, Instant::from_secs(1));
    let plan = engine.plan(Instant::from_secs(5));
    assert_eq!(plan.pool_for(MinerId(3)), Some(PoolId(0)));
    assert!(plan.pools[0].hashrate.as_hashes_per_sec() > 0.0);
}

#[test]
fn the_plan_reports_targets_caps_and_infeasibility() {
    let mut engine = up_engine(&[0.3, 0.3]);
    engine.observe(
        Observation::MinerJoined { miner: MinerId(1) },
        Instant::ZERO,
    );
    let plan = engine.plan(Instant::ZERO);
    assert!(!plan.feasible);
    assert!((plan.shortfall - 0.4).abs() < 1e-9);
    assert_eq!(plan.pools[0].cap.get(), 0.3);
    assert!((plan.pools[0].target - 0.5).abs() < 1e-9);
}

#[test]
fn a_new_policy_changes_the_targets_and_keeps_the_miners() {
    let mut engine = up_engine(&[1.0, 1.0]);
    join(&mut engine, 4);
    let before = engine.plan(Instant::ZERO);
    assert!((before.pools[0].target - 0.5).abs() < 1e-9);

    engine.reconfigure(policy(&[0.25, 1.0], "30s")).unwrap();
    let now = Instant::from_secs(5);
    let after = engine.plan(now);
    assert_eq!(after.pools[0].cap.get(), 0.25);
    // No estimates yet, so the new cap is held with a margin.
    let row = &after.pools[0];
    assert!(row.margin > 0.0);
    assert!((row.target + row.margin - 0.25).abs() < 1e-9, "{row:?}");
    assert!((row.limit - row.target).abs() < 1e-9, "{row:?}");
    assert!(after.pools.iter().all(|row| row.healthy), "health is kept");
    for id in 0..4 {
        assert!(after.pool_for(MinerId(id)).is_some(), "miner {id} is kept");
    }
}

#[test]
fn a_pool_added_by_a_new_policy_is_used_once_up() {
    let mut engine = up_engine(&[1.0, 1.0]);
    join(&mut engine, 6);
    engine.plan(Instant::ZERO);
    engine.reconfigure(policy(&[1.0, 1.0, 1.0], "1s")).unwrap();
    let down = engine.plan(Instant::from_secs(5));
    assert_eq!(down.pools.len(), 3);
    assert!(!down.pools[2].healthy, "new pools start down");
    engine.observe(
        Observation::PoolUp { pool: PoolId(2) },
        Instant::from_secs(5),
    );
    let up = engine.plan(Instant::from_secs(10));
    assert!((up.pools[2].target - 1.0 / 3.0).abs() < 1e-9);
    assert!(up.pools[2].miners > 0, "{:?}", up.pools);
}

#[test]
fn a_policy_with_other_pools_is_refused_and_changes_nothing() {
    let mut engine = up_engine(&[1.0, 1.0]);
    assert!(engine.reconfigure(policy(&[1.0], "30s")).is_err());
    let mut renamed = policy(&[0.5, 1.0], "30s");
    renamed.pools[1].name = "other".into();
    assert!(engine.reconfigure(renamed).is_err());
    assert_eq!(engine.policy().cap(PoolId(0)).get(), 1.0);
}

/// Plans every 5 s for `secs`, crediting each miner one share of its
/// `(rate, pool)` work per tick, and returns the last plan.
fn run_noiseless(engine: &mut Engine, rates: &[f64], from: u64, secs: u64) -> Assignment {
    let mut plan = engine.plan(Instant::from_secs(from));
    for t in (from..from + secs).step_by(5) {
        plan = engine.plan(Instant::from_secs(t));
        for (id, &rate) in rates.iter().enumerate() {
            let miner = MinerId(id as u64);
            if let Some(pool) = plan.pool_for(miner) {
                let work = Work::from_hashes(rate * 5.0);
                engine.observe(
                    Observation::Work { miner, pool, work },
                    Instant::from_secs(t + 5),
                );
            }
        }
    }
    plan
}

#[test]
fn a_capped_pool_is_held_below_its_cap_while_estimates_are_young() {
    // A big and a small machine; the first pool's cap binds and the second
    // has room for the margin.
    let mut engine = up_engine(&[0.3, 1.0]);
    join(&mut engine, 2);
    let rates = [3e14, 1e14];
    let young = run_noiseless(&mut engine, &rates, 0, 600);
    let old = run_noiseless(&mut engine, &rates, 600, 3000);
    for plan in [&young, &old] {
        let row = &plan.pools[0];
        assert_eq!(row.cap.get(), 0.3, "the cap is reported as configured");
        assert!(row.margin > 0.0, "{row:?}");
        assert!((row.target + row.margin - 0.3).abs() < 1e-9, "{row:?}");
    }
    // The estimates average over three windows, so the margin shrinks
    // towards what that many shares still leave, not to nothing.
    assert!(
        old.pools[0].margin < young.pools[0].margin * 0.75,
        "{} then {}",
        young.pools[0].margin,
        old.pools[0].margin
    );
}
