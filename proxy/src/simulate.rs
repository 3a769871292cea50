//! The output of `hashsplit simulate` and `hashsplit check`: a readable
//! table per pool, or one JSON object.

use std::fmt::Write as _;

use hashsplit_policy::{Engine, Instant, Observation, PoolId, SimReport};

use crate::config::Config;
use crate::transport;

/// Returns the report as one JSON object: `pools` (name, cap, target,
/// share, max_window_share, switches, fallback), `miners`, `switches`,
/// `cap_violations` and `infeasible_seconds`.
pub fn to_json(report: &SimReport) -> serde_json::Result<String> {
    serde_json::to_string(report)
}

/// Returns the report as a table, one row per pool, and a summary line.
pub fn to_table(report: &SimReport) -> String {
    let width = report
        .pools
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>7}  {:>7}  {:>10}  {:>8}\n",
        "pool", "cap", "target", "share", "max window", "switches"
    );
    for pool in &report.pools {
        let over = pool.max_window_share > pool.cap + hashsplit_policy::sim::CAP_TOLERANCE;
        let flag = match (over, pool.fallback) {
            (true, true) => "  over cap (fallback: takes the rest)",
            (true, false) => "  over cap",
            (false, _) => "",
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>6.3}  {:>7.4}  {:>7.4}  {:>10.4}  {:>8}{flag}",
            pool.name, pool.cap, pool.target, pool.share, pool.max_window_share, pool.switches
        );
    }
    let _ = writeln!(
        out,
        "\n{} miners, {} switches, {} cap violations, {:.0} s infeasible",
        report.miners, report.switches, report.cap_violations, report.infeasible_seconds
    );
    out
}

/// Returns the summary `hashsplit check` prints for a valid config: each
/// pool with its cap, the target it would get with every pool up and, for
/// a TLS pool, how its certificate is checked.
pub fn check_summary(config: &Config) -> String {
    let policy = &config.policy;
    let mut engine = Engine::new(policy.clone());
    for pool in 0..policy.pools.len() {
        engine.observe(Observation::PoolUp { pool: PoolId(pool) }, Instant::ZERO);
    }
    let plan = engine.plan(Instant::ZERO);
    let c = &policy.config;
    let mut out = format!(
        "config ok: {} pools, window {:?}, min_dwell {:?}, rebalance_every {:?}, \
         on_infeasible {}{}\nminers listen on {}{}, metrics on {}\n\n",
        policy.pools.len(),
        c.window,
        c.min_dwell,
        c.rebalance_every,
        c.on_infeasible,
        match &c.fallback {
            Some(name) => format!(", fallback {name}"),
            None => String::new(),
        },
        config.server.listen,
        if config.server.proxy_protocol {
            " (behind a balancer: PROXY protocol header required)"
        } else {
            ""
        },
        config.metrics.listen,
    );
    let _ = writeln!(out, "{:<16}  {:>6}  {:>7}  url", "pool", "cap", "target");
    for (row, pool) in plan.pools.iter().zip(&policy.pools) {
        let mut note = String::new();
        if let Some(trust) = transport::describe_trust(&pool.url, &pool.tls) {
            let _ = write!(note, "  ({trust})");
        }
        if let Some(node) = &pool.node {
            let _ = write!(
                note,
                "  (own node, chain {}, pays {})",
                node.chain, node.payout_address
            );
        }
        if row.avoided {
            note.push_str("  (avoided: network share)");
        }
        let _ = writeln!(
            out,
            "{:<16}  {:>6.3}  {:>7.4}  {}{note}",
            row.name,
            row.cap.get(),
            row.target,
            pool.url
        );
    }
    for pool in &policy.disabled {
        let _ = writeln!(
            out,
            "{:<16}  {:>6}  {:>7}  {}  (disabled)",
            pool.name, "-", "-", pool.url
        );
    }
    if !plan.feasible {
        let _ = writeln!(
            out,
            "\ninfeasible with every pool up: caps fall short by {:.3}{}",
            plan.shortfall,
            match &c.fallback {
                Some(name) => format!(", taken by the fallback pool {name}"),
                None => String::new(),
            }
        );
    }
    if let Some(network) = &config.network {
        let names: Vec<String> = policy
            .pools
            .iter()
            .chain(&policy.disabled)
            .map(|pool| format!("{} = {:?}", pool.name, network.source_name(&pool.name)))
            .collect();
        let _ = writeln!(
            out,
            "\nnetwork shares from {} every {:?}, stale after {:?}; the file's network_share \
             values apply until the first fetch\n  looked up as: {}",
            network.source,
            network.refresh,
            network.max_age,
            names.join(", ")
        );
    }
    for pool in policy.pools.iter().filter(|pool| pool.tls.insecure) {
        let _ = writeln!(
            out,
            "\nWARNING: pool {} is reached over TLS WITHOUT CERTIFICATE VERIFICATION \
             (tls_insecure = true): anyone on the network path can impersonate it",
            pool.name
        );
    }
    out
}
