use super::*;
use proptest::prelude::*;

fn pool(cap: f64) -> PoolInput {
    PoolInput {
        healthy: true,
        weight: 1.0,
        cap,
        network_share: None,
        margin: 0.0,
        fallback: false,
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

#[test]
fn equal_weights_split_evenly_under_loose_caps() {
    let t = targets(&[pool(0.34); 3], None, OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(close(&t.target, &[1.0 / 3.0; 3]), "{:?}", t.target);
}

#[test]
fn what_a_cap_cuts_off_goes_to_the_pools_below_their_caps() {
    let mut pools = [pool(0.1), pool(1.0), pool(1.0)];
    pools[1].weight = 3.0;
    let t = targets(&pools, None, OnInfeasible::Spread);
    // 0.1 fixed; 0.9 split 3:1.
    assert!(close(&t.target, &[0.1, 0.675, 0.225]), "{:?}", t.target);
}

#[test]
fn down_pools_get_nothing() {
    let mut pools = [pool(0.6); 3];
    pools[1].healthy = false;
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(close(&t.target, &[0.5, 0.0, 0.5]), "{:?}", t.target);
}

#[test]
fn spread_scales_every_cap_up_in_proportion() {
    let t = targets(&[pool(0.2), pool(0.4)], None, OnInfeasible::Spread);
    assert!(!t.feasible);
    assert!((t.shortfall - 0.4).abs() < 1e-9);
    assert!(close(&t.target, &[1.0 / 3.0, 2.0 / 3.0]), "{:?}", t.target);
    assert!(close(&t.limit, &t.target));
}

#[test]
fn ordered_holds_caps_and_gives_the_rest_to_the_first_healthy_pool() {
    let mut pools = [pool(0.2), pool(0.3), pool(0.3)];
    pools[0].healthy = false;
    let t = targets(&pools, None, OnInfeasible::Ordered);
    assert!(!t.feasible);
    assert!(close(&t.target, &[0.0, 0.7, 0.3]), "{:?}", t.target);
}

#[test]
fn the_fallback_pool_takes_what_the_caps_cannot_and_the_others_stay_at_their_caps() {
    let mut pools = [pool(0.3), pool(0.3), pool(0.1)];
    pools[2].fallback = true;
    for on_infeasible in [OnInfeasible::Spread, OnInfeasible::Ordered] {
        let t = targets(&pools, None, on_infeasible);
        assert!(!t.feasible);
        assert!((t.shortfall - 0.3).abs() < 1e-9, "{}", t.shortfall);
        assert!(close(&t.target, &[0.3, 0.3, 0.4]), "{:?}", t.target);
        assert!(close(&t.limit, &[0.3, 0.3, 0.4]), "{:?}", t.limit);
    }
}

#[test]
fn a_fallback_pool_that_is_down_leaves_the_remainder_to_on_infeasible() {
    let mut pools = [pool(0.3), pool(0.3), pool(0.5)];
    pools[2].fallback = true;
    pools[2].healthy = false;
    let t = targets(&pools, None, OnInfeasible::Ordered);
    assert!(close(&t.target, &[0.7, 0.3, 0.0]), "{:?}", t.target);
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(close(&t.target, &[0.5, 0.5, 0.0]), "{:?}", t.target);
}

#[test]
fn a_fallback_pool_is_capped_like_any_other_while_the_caps_are_feasible() {
    let mut pools = [pool(0.5), pool(0.5), pool(0.2)];
    pools[2].fallback = true;
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(t.target[2] <= 0.2 + 1e-9, "{:?}", t.target);
    assert!((t.target.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn pools_above_the_network_share_are_avoided_while_others_can_take_the_work() {
    let mut pools = [pool(0.5), pool(0.5), pool(0.5)];
    pools[0].network_share = Some(0.3);
    let t = targets(&pools, Some(0.25), OnInfeasible::Spread);
    assert!(t.feasible && !t.network_fallback);
    assert_eq!(t.avoided, [true, false, false]);
    assert!(close(&t.target, &[0.0, 0.5, 0.5]), "{:?}", t.target);
}

#[test]
fn avoided_pools_take_only_what_the_others_cannot() {
    let mut pools = [pool(0.5), pool(0.4), pool(0.4)];
    pools[0].network_share = Some(0.3);
    let t = targets(&pools, Some(0.25), OnInfeasible::Spread);
    assert!(t.feasible && t.network_fallback);
    assert!(close(&t.target, &[0.2, 0.4, 0.4]), "{:?}", t.target);
}

#[test]
fn no_healthy_pool_is_infeasible_with_no_targets() {
    let mut pools = [pool(1.0); 2];
    pools.iter_mut().for_each(|p| p.healthy = false);
    let t = targets(&pools, None, OnInfeasible::Ordered);
    assert!(!t.feasible);
    assert!(close(&t.target, &[0.0, 0.0]));
}

#[test]
fn margins_hold_capped_pools_below_their_caps_where_there_is_room() {
    let mut pools = [pool(0.2), pool(1.0), pool(1.0)];
    pools[0].margin = 0.03;
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(close(&t.margin, &[0.03, 0.0, 0.0]), "{:?}", t.margin);
    assert!(close(&t.target, &[0.17, 0.415, 0.415]), "{:?}", t.target);
    assert!(close(&t.limit, &[0.17, 1.0, 1.0]), "{:?}", t.limit);
}

#[test]
fn margins_share_what_room_the_caps_leave_and_never_make_them_infeasible() {
    // Room 0.04, of which the margins may take three quarters.
    let mut pools = [pool(0.52), pool(0.52)];
    pools.iter_mut().for_each(|p| p.margin = 0.05);
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(close(&t.margin, &[0.015, 0.015]), "{:?}", t.margin);
    assert!(close(&t.target, &[0.5, 0.5]), "{:?}", t.target);
    assert!(close(&t.limit, &[0.505, 0.505]), "{:?}", t.limit);

    let mut tight = [pool(0.5), pool(0.5)];
    tight.iter_mut().for_each(|p| p.margin = 0.05);
    let t = targets(&tight, None, OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(close(&t.margin, &[0.0, 0.0]), "{:?}", t.margin);
}

#[test]
fn margins_do_not_send_work_to_avoided_pools() {
    // The preferred pools' caps take all the work only at their caps.
    let mut pools = [pool(0.5), pool(0.5), pool(1.0)];
    pools[0].margin = 0.05;
    pools[1].margin = 0.05;
    pools[2].network_share = Some(0.4);
    let t = targets(&pools, Some(0.25), OnInfeasible::Spread);
    assert!(t.feasible);
    assert!(!t.network_fallback);
    assert!(close(&t.target, &[0.5, 0.5, 0.0]), "{:?}", t.target);
}

#[test]
fn a_margin_takes_at_most_half_a_cap() {
    let mut pools = [pool(0.1), pool(1.0)];
    pools[0].margin = 0.5;
    let t = targets(&pools, None, OnInfeasible::Spread);
    assert!(close(&t.target, &[0.05, 0.95]), "{:?}", t.target);
}

proptest! {
    #[test]
    fn targets_sum_to_one_and_respect_caps_when_feasible(
        caps in proptest::collection::vec(0.05f64..=1.0, 1..6),
        weights in proptest::collection::vec(0.1f64..10.0, 6),
        margins in proptest::collection::vec(0.0f64..0.2, 6),
    ) {
        let pools: Vec<PoolInput> = caps
            .iter()
            .zip(&weights)
            .zip(&margins)
            .map(|((&cap, &weight), &margin)| PoolInput {
                healthy: true,
                weight,
                cap,
                network_share: None,
                margin,
                fallback: false,
            })
            .collect();
        let t = targets(&pools, None, OnInfeasible::Spread);
        let sum: f64 = t.target.iter().sum();
        prop_assert!((sum - 1.0).abs() < 1e-6, "sum {}", sum);
        prop_assert_eq!(t.feasible, caps.iter().sum::<f64>() >= 1.0 - 1e-9);
        for (target, limit) in t.target.iter().zip(&t.limit) {
            prop_assert!(*target <= limit + 1e-9);
        }
        if t.feasible {
            for i in 0..caps.len() {
                prop_assert!(t.margin[i] <= margins[i] + 1e-12);
                prop_assert!((t.limit[i] - (caps[i] - t.margin[i])).abs() < 1e-9);
                prop_assert!(t.target[i] > 0.0);
            }
        }
    }
}
