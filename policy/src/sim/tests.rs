use super::*;

fn policy(caps: &[f64], extra: &str) -> Policy {
    let mut text = format!("[policy]\n{extra}\n");
    for (i, cap) in caps.iter().enumerate() {
        text += &format!(
            "[[pool]]\nname = \"p{i}\"\nurl = \"stratum+tcp://p{i}.example:3333\"\nuser = \"u\"\nmax_share = {cap}\n"
        );
    }
    Policy::from_toml_str(&text).unwrap().0
}

fn policy_with_spread(caps: &[f64]) -> Policy {
    policy(caps, "on_infeasible = \"spread\"")
}

fn fleet(policy: &Policy, text: &str) -> Fleet {
    Fleet::from_toml_str(text, policy).unwrap()
}

const ONE_MINER: &str = "[[miner]]\nname = \"rig\"\nhashrate = \"100TH/s\"\n";

#[test]
fn a_single_miner_is_time_sliced_one_third_each_over_three_pools() {
    let policy = policy(&[0.34, 0.34, 0.34], "");
    let report = simulate(&policy, &fleet(&policy, ONE_MINER), SimOptions::default());
    assert_eq!(report.cap_violations, 0);
    for pool in &report.pools {
        assert!(pool.max_window_share < 0.35, "{pool:?}");
        assert!((pool.share - 1.0 / 3.0).abs() < 0.01, "{pool:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let policy = policy(&[0.4, 0.4, 0.4], "");
    let fleet = fleet(
        &policy,
        "[[miner]]\nname = \"a\"\nhashrate = \"90TH/s\"\ncount = 4\n",
    );
    let options = SimOptions {
        duration: Duration::from_secs(1800),
        seed: 9,
    };
    assert_eq!(
        simulate(&policy, &fleet, options),
        simulate(&policy, &fleet, options)
    );
}
#[test]
fn identical_miners_split_evenly_under_tight_caps() {
    // Ten identical machines: their hashrate estimates differ only by
    // noise, which must not be mistaken for real differences.
    let policy = policy(&[0.34, 0.34, 0.34], "");
    let fleet = fleet(
        &policy,
        "[[miner]]\nname = \"s19\"\nhashrate = \"100TH/s\"\ncount = 10\n",
    );
    for seed in 1..=3 {
        let report = simulate(
            &policy,
            &fleet,
            SimOptions {
                seed,
                ..SimOptions::default()
            },
        );
        assert_eq!(report.cap_violations, 0, "{report:?}");
        for pool in &report.pools {
            assert!(pool.max_window_share <= 0.345, "{report:?}");
        }
    }
}

#[test]
fn windows_while_infeasible_are_not_violations_and_are_counted_as_such() {
    let policy = policy(&[0.5, 0.5, 0.5], "");
    let text = "[[miner]]\nname = \"a\"\nhashrate = \"100TH/s\"\ncount = 6\n\
                [[event]]\nat = \"20m\"\npool_down = \"p0\"\n\
                [[event]]\nat = \"21m\"\npool_down = \"p1\"\n\
                [[event]]\nat = \"31m\"\npool_up = \"p1\"\n";
    let options = SimOptions {
        duration: Duration::from_secs(3600),
        seed: 4,
    };
    let report = simulate(&policy, &fleet(&policy, text), options);
    // From 21m to 31m only p2 is up: caps 0.5 cannot take everything.
    assert_eq!(report.infeasible_seconds, 600.0);
    assert!(report.pools[2].max_window_share > 0.6, "{report:?}");
    assert_eq!(report.cap_violations, 0, "{report:?}");
}

#[test]
fn a_fallback_pool_takes_the_remainder_and_every_other_pool_keeps_its_cap() {
    // Two pools capped at 0.3 and a fallback capped at 0.1: the caps sum
    // to 0.7, so the fallback takes 0.4 and the others stay at 0.3.
    let policy = policy(&[0.3, 0.3, 0.1], "fallback = \"p2\"");
    let fleet = fleet(
        &policy,
        "[[miner]]\nname = \"s19\"\nhashrate = \"100TH/s\"\ncount = 12\n",
    );
    let options = SimOptions {
        duration: Duration::from_secs(3600),
        seed: 3,
    };
    let report = simulate(&policy, &fleet, options);
    assert_eq!(report.infeasible_seconds, 3600.0, "{report:?}");
    for pool in &report.pools[..2] {
        assert!(
            pool.max_window_share <= 0.3 + CAP_TOLERANCE,
            "{pool:?} in {report:?}"
        );
    }
    assert!((report.pools[2].share - 0.4).abs() < 0.03, "{report:?}");
    assert_eq!(report.cap_violations, 0, "{report:?}");
    // Without the fallback, "spread" exceeds every cap in proportion.
    let spread = policy_with_spread(&[0.3, 0.3, 0.1]);
    let report = simulate(&spread, &fleet, options);
    assert!(report.pools[0].max_window_share > 0.35, "{report:?}");
}

#[test]
fn with_the_fallback_down_the_other_caps_give_way_as_on_infeasible_says() {
    let policy = policy(
        &[0.3, 0.3, 0.1],
        "fallback = \"p2\"\non_infeasible = \"ordered\"",
    );
    let text = "[[miner]]\nname = \"a\"\nhashrate = \"100TH/s\"\ncount = 12\n\
                [[event]]\nat = \"20m\"\npool_down = \"p2\"\n";
    let options = SimOptions {
        duration: Duration::from_secs(3600),
        seed: 5,
    };
    let report = simulate(&policy, &fleet(&policy, text), options);
    // From 20m, "ordered" gives p2's 0.4 to p0; those windows are not held
    // against p0's cap, as the operator chose.
    assert!(report.pools[0].max_window_share > 0.6, "{report:?}");
    assert_eq!(report.cap_violations, 0, "{report:?}");
}

#[test]
fn a_miner_group_that_joins_later_starts_absent() {
    // Two equal machines over two pools capped at half each: together they
    // sit one per pool; alone, the first must be time-sliced between them.
    let policy = policy(&[0.5, 0.5], "");
    let machines = "[[miner]]\nname = \"a\"\nhashrate = \"10TH/s\"\n\
                    [[miner]]\nname = \"b\"\nhashrate = \"10TH/s\"\n";
    let late = format!("{machines}[[event]]\nat = \"30m\"\nminer_join = \"b\"\n");
    let options = SimOptions {
        duration: Duration::from_secs(25 * 60),
        seed: 1,
    };
    let together = simulate(&policy, &fleet(&policy, machines), options);
    let alone = simulate(&policy, &fleet(&policy, &late), options);
    assert_eq!(alone.miners, 2);
    assert!(
        alone.switches >= together.switches + 4,
        "b is absent before 30m, so a is sliced: {} vs {} switches",
        alone.switches,
        together.switches
    );
    assert_eq!(alone.cap_violations, 0, "{alone:?}");
}

#[test]
fn fleet_files_report_every_problem_with_its_line() {
    let policy = policy(&[1.0], "");
    let text = "share_rate = 0\n[[miner]]\nname = \"a\"\nhashrate = \"fast\"\ncount = 0\n\
                [[event]]\nat = \"5m\"\npool_down = \"nowhere\"\n\
                [[event]]\nat = \"5m\"\n";
    let error = Fleet::from_toml_str(text, &policy).unwrap_err();
    let found: Vec<(&str, Option<usize>)> = error
        .errors
        .iter()
        .map(|p| (p.path.as_str(), p.location.map(|l| l.0)))
        .collect();
    assert_eq!(
        found,
        [
            ("share_rate", Some(1)),
            ("miner[0].hashrate", Some(4)),
            ("miner[0].count", Some(5)),
            ("event[0].pool_down", Some(8)),
            ("event[1]", Some(10)),
        ]
    );
}

#[test]
fn duplicate_miner_names_are_an_error_at_the_second_name() {
    let policy = policy(&[1.0], "");
    let text = "[[miner]]\nname = \"a\"\nhashrate = \"1TH/s\"\n\
                [[miner]]\nname = \"a\"\nhashrate = \"2TH/s\"\n";
    let error = Fleet::from_toml_str(text, &policy).unwrap_err();
    assert_eq!(error.errors[0].path, "miner[1].name");
    assert_eq!(error.errors[0].location, Some((5, 8)));
}
