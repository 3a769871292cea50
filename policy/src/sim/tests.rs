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
