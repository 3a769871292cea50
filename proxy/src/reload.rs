//! Reloading the config file on SIGHUP without dropping a miner.
//!
//! What can change in place is the policy: `[policy]` and each pool's
//! `weight`, `max_share` and `network_share`. The engine keeps its miners,
//! their estimates and the work in the window, so nobody reconnects and the
//! new caps hold from the next plan. A pool whose `url`, `user` or
//! `password` changed is reconnected with them (its miners mine the other
//! pools meanwhile). The pool list itself names the engine's pools: a file
//! that adds, removes, renames or reorders pools is refused as a whole and
//! the running policy stays. `[server]`, `[downstream]` and `[metrics]`
//! take effect at the next start; a reload that changes them applies the
//! policy and says what waits.

use hashsplit_policy::{Policy, PolicyConfig, PoolConfig};

use crate::config::Config;

/// Why a reload was refused; the running policy stays in force.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReloadError {
    /// Pools were added, removed, renamed or reordered.
    #[error("the pool list changed ({before} -> {after}): restart hashsplit to change pools")]
    PoolsChanged {
        /// Pool names before, comma-separated.
        before: String,
        /// Pool names in the new file, comma-separated.
        after: String,
    },
}

/// What a reload changed and what waits for a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reloaded {
    /// Each policy setting that changed, as `name: old -> new`.
    pub changes: Vec<String>,
    /// Sections whose changes take effect at the next start.
    pub restart_needed: Vec<&'static str>,
    /// Pools (by index) to reconnect with a new url, user or password.
    pub reconnect: Vec<usize>,
}

/// Checks `new` against the running config and the policy in force;
/// returns what would change if the policy of `new` were applied.
pub fn compare(running: &Config, in_force: &Policy, new: &Config) -> Result<Reloaded, ReloadError> {
    let names = |policy: &Policy| {
        policy
            .pools
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names(in_force) != names(&new.policy) {
        return Err(ReloadError::PoolsChanged {
            before: names(in_force),
            after: names(&new.policy),
        });
    }
    let mut changes = policy_changes(&in_force.config, &new.policy.config);
    let mut reconnect = Vec::new();
    for (index, (old, pool)) in in_force.pools.iter().zip(&new.policy.pools).enumerate() {
        let moved = connection_changes(old, pool);
        if !moved.is_empty() {
            reconnect.push(index);
            changes.extend(moved);
        }
        changes.extend(pool_changes(old, pool));
    }
    let mut restart_needed = Vec::new();
    if running.server != new.server {
        restart_needed.push("[server]");
    }
    if running.downstream != new.downstream {
        restart_needed.push("[downstream]");
    }
    if running.metrics != new.metrics {
        restart_needed.push("[metrics]");
    }
    Ok(Reloaded {
        changes,
        restart_needed,
        reconnect,
    })
}

/// Lists a pool's changed connection settings; a password is named, never
/// shown.
fn connection_changes(old: &PoolConfig, new: &PoolConfig) -> Vec<String> {
    let name = &new.name;
    let mut changes = Vec::new();
    if old.url != new.url {
        changes.push(format!("{name}.url: {} -> {}", old.url, new.url));
    }
    changes.extend(change(&format!("{name}.user"), &old.user, &new.user));
    if old.password != new.password {
        changes.push(format!("{name}.password: changed"));
    }
    changes
}

/// Returns `name: old -> new` for a setting that differs.
fn change<T: PartialEq + std::fmt::Debug>(name: &str, old: &T, new: &T) -> Option<String> {
    (old != new).then(|| format!("{name}: {old:?} -> {new:?}"))
}

fn policy_changes(old: &PolicyConfig, new: &PolicyConfig) -> Vec<String> {
    [
        change("policy.max_share", &old.max_share, &new.max_share),
        change("policy.window", &old.window, &new.window),
        change("policy.min_dwell", &old.min_dwell, &new.min_dwell),
        change(
            "policy.rebalance_every",
            &old.rebalance_every,
            &new.rebalance_every,
        ),
        change(
            "policy.on_infeasible",
            &old.on_infeasible,
            &new.on_infeasible,
        ),
        change(
            "policy.max_network_share",
            &old.max_network_share,
            &new.max_network_share,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn pool_changes(old: &PoolConfig, new: &PoolConfig) -> Vec<String> {
    let name = &new.name;
    [
        change(&format!("{name}.weight"), &old.weight, &new.weight),
        change(&format!("{name}.max_share"), &old.max_share, &new.max_share),
        change(
            &format!("{name}.network_share"),
            &old.network_share,
            &new.network_share,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str, pools: &[(&str, &str)]) -> Config {
        let mut text = format!("[policy]\nmax_share = 0.6\n{extra}\n");
        for (name, lines) in pools {
            text += &format!(
                "[[pool]]\nname = \"{name}\"\nurl = \"stratum+tcp://{name}.example:3333\"\n\
                 user = \"u\"\n{lines}\n"
            );
        }
        Config::from_toml_str(&text).unwrap().0
    }

    #[test]
    fn policy_changes_are_listed_and_nothing_waits() {
        let old = config("", &[("a", ""), ("b", "")]);
        let new = config("window = \"20m\"\n", &[("a", "max_share = 0.3"), ("b", "")]);
        let reloaded = compare(&old, &old.policy, &new).unwrap();
        assert_eq!(reloaded.changes.len(), 2, "{:?}", reloaded.changes);
        assert!(reloaded.changes[0].starts_with("policy.window"));
        assert!(reloaded.changes[1].starts_with("a.max_share"));
        assert!(reloaded.restart_needed.is_empty());
    }

    #[test]
    fn other_pools_are_refused_and_new_addresses_reconnect() {
        let old = config("", &[("a", ""), ("b", "")]);
        let more = config("", &[("a", ""), ("b", ""), ("c", "")]);
        assert!(matches!(
            compare(&old, &old.policy, &more),
            Err(ReloadError::PoolsChanged { .. })
        ));
        let swapped = config("", &[("b", ""), ("a", "")]);
        assert!(compare(&old, &old.policy, &swapped).is_err());

        let mut moved = old.clone();
        moved.policy.pools[1].password = "secret".into();
        moved.policy.pools[1].url.port = 4444;
        let reloaded = compare(&old, &old.policy, &moved).unwrap();
        assert_eq!(reloaded.reconnect, vec![1]);
        assert_eq!(
            reloaded.changes,
            vec![
                "b.url: stratum+tcp://b.example:3333 -> stratum+tcp://b.example:4444",
                "b.password: changed"
            ]
        );
        assert!(!format!("{reloaded:?}").contains("secret"));
    }

    #[test]
    fn server_changes_wait_for_a_restart() {
        let old = config("", &[("a", "")]);
        let new = config("[server]\nmax_connections = 5\n", &[("a", "")]);
        let reloaded = compare(&old, &old.policy, &new).unwrap();
        assert_eq!(reloaded.restart_needed, vec!["[server]"]);
        assert!(reloaded.changes.is_empty());
    }
}
