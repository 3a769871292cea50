//! Reloading the config file on SIGHUP without dropping a miner.
//!
//! Everything about pools can change in place: `[policy]`, each pool's
//! `weight`, `max_share` and `network_share`, and the pool list itself. The
//! engine keeps its miners, their estimates and the work in the window, so
//! nobody reconnects and the new caps hold from the next plan. A pool whose
//! `url`, `user`, `password`, `ca_file` or `tls_insecure` changed is
//! reconnected with them; a new pool is connected and given miners once it
//! is up; a pool gone from the file is disconnected, its miners move at
//! the next plan and its series leave `/metrics`. Pools are matched by
//! name, so reordering changes nothing and renaming is a removal and an
//! addition. The engine's pool ids never change: a removed pool keeps its
//! id (down for good, or until a pool of that name comes back) and a new
//! one gets the next. A pool with `enabled = false` counts as gone from
//! the file. `[server]`, `[downstream]`, `[metrics]`, `[http]` and
//! `[network]` take effect at the next start; a reload that changes them applies the rest
//! and says what waits.

use hashsplit_policy::{Policy, PolicyConfig, PoolConfig, PoolId};

use crate::config::Config;

/// A pool the proxy has run, as its handle describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownPool {
    /// Its `[[pool]]` entry, as last configured.
    pub entry: PoolConfig,
    /// Whether it was taken out of the config.
    pub retired: bool,
}

impl KnownPool {
    /// Returns every pool of a config as started, in [`PoolId`] order.
    pub fn all_of(policy: &Policy) -> Vec<KnownPool> {
        policy
            .pools
            .iter()
            .map(|entry| KnownPool {
                entry: entry.clone(),
                retired: false,
            })
            .collect()
    }
}

/// What a reload changed and what waits for a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// Each setting that changed, as `name: old -> new`, and each pool
    /// added or removed.
    pub changes: Vec<String>,
    /// Sections whose changes take effect at the next start.
    pub restart_needed: Vec<&'static str>,
    /// Pools whose entry changed (their handles are reconfigured; a new
    /// url, user, password or TLS setting reconnects).
    pub reconfigure: Vec<PoolId>,
    /// Pools to start: new ones (the next ids), or ones back in the file.
    pub added: Vec<PoolId>,
    /// Pools to retire: gone from the file.
    pub removed: Vec<PoolId>,
    /// Every pool once the reload is applied, in [`PoolId`] order.
    pub pools: Vec<KnownPool>,
    /// The `[policy]` section once the reload is applied.
    pub config: PolicyConfig,
}

impl Reloaded {
    /// Returns the policy in force once the reload is applied, with every
    /// pool ever run (removed ones too: they stay down).
    pub fn policy(&self) -> Policy {
        Policy {
            config: self.config.clone(),
            pools: self.pools.iter().map(|p| p.entry.clone()).collect(),
            // Disabled pools are retired ones here: the engine never sees
            // them.
            disabled: Vec::new(),
        }
    }
}

/// Works out what applying `new` to the running proxy (started with
/// `running`, with `config` in force and running `known`) changes.
pub fn plan(
    running: &Config,
    config: &PolicyConfig,
    known: &[KnownPool],
    new: &Config,
) -> Reloaded {
    let mut pools = known.to_vec();
    let mut changes = policy_changes(config, &new.policy.config);
    let (mut reconfigure, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for pool in &new.policy.pools {
        let Some(index) = pools.iter().position(|known| known.entry.name == pool.name) else {
            added.push(PoolId(pools.len()));
            pools.push(KnownPool {
                entry: pool.clone(),
                retired: false,
            });
            changes.push(format!("pool added: {} ({})", pool.name, pool.url));
            continue;
        };
        let known = &mut pools[index];
        if known.retired {
            known.retired = false;
            added.push(PoolId(index));
            changes.push(format!("pool added: {} ({})", pool.name, pool.url));
        } else if known.entry != *pool {
            reconfigure.push(PoolId(index));
            changes.extend(connection_changes(&known.entry, pool));
            changes.extend(pool_changes(&known.entry, pool));
        }
        known.entry = pool.clone();
    }
    for (index, known) in pools.iter_mut().enumerate() {
        let in_file = new.policy.pools.iter().any(|p| p.name == known.entry.name);
        if !in_file && !known.retired {
            known.retired = true;
            removed.push(PoolId(index));
            changes.push(format!("pool removed: {}", known.entry.name));
        }
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
    if running.http != new.http {
        restart_needed.push("[http]");
    }
    if running.network != new.network {
        restart_needed.push("[network]");
    }
    Reloaded {
        changes,
        restart_needed,
        reconfigure,
        added,
        removed,
        pools,
        config: new.policy.config.clone(),
    }
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
    changes.extend(change(
        &format!("{name}.ca_file"),
        &old.tls.ca_file,
        &new.tls.ca_file,
    ));
    changes.extend(change(
        &format!("{name}.tls_insecure"),
        &old.tls.insecure,
        &new.tls.insecure,
    ));
    if old.node != new.node {
        // A node's chain, payout address, tag or refresh: work starts over.
        changes.push(format!("{name}: node settings changed"));
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

    fn reload(old: &Config, new: &Config) -> Reloaded {
        plan(
            old,
            &old.policy.config,
            &KnownPool::all_of(&old.policy),
            new,
        )
    }

    #[test]
    fn policy_changes_are_listed_and_nothing_waits() {
        let old = config("", &[("a", ""), ("b", "")]);
        let new = config("window = \"20m\"\n", &[("a", "max_share = 0.3"), ("b", "")]);
        let reloaded = reload(&old, &new);
        assert_eq!(reloaded.changes.len(), 2, "{:?}", reloaded.changes);
        assert!(reloaded.changes[0].starts_with("policy.window"));
        assert!(reloaded.changes[1].starts_with("a.max_share"));
        assert!(reloaded.restart_needed.is_empty());
        assert_eq!(reloaded.policy(), new.policy);
        assert_eq!(reloaded.reconfigure, [PoolId(0)]);
        assert!(reloaded.added.is_empty() && reloaded.removed.is_empty());
    }

    #[test]
    fn pools_are_matched_by_name_and_keep_their_ids() {
        let old = config("", &[("a", ""), ("b", ""), ("c", "")]);
        // b leaves, d arrives, the rest is reordered.
        let new = config("", &[("d", ""), ("c", ""), ("a", "")]);
        let reloaded = reload(&old, &new);
        let names: Vec<_> = reloaded
            .pools
            .iter()
            .map(|p| (p.entry.name.as_str(), p.retired))
            .collect();
        assert_eq!(
            names,
            [("a", false), ("b", true), ("c", false), ("d", false)]
        );
        assert_eq!(
            (reloaded.added.clone(), reloaded.removed.clone()),
            (vec![PoolId(3)], vec![PoolId(1)])
        );
        assert_eq!(
            reloaded.changes,
            [
                "pool added: d (stratum+tcp://d.example:3333)",
                "pool removed: b"
            ]
        );

        // b comes back under its old id.
        let back = config("", &[("a", ""), ("b", ""), ("c", ""), ("d", "")]);
        let again = plan(&old, &reloaded.config, &reloaded.pools, &back);
        assert_eq!(again.added, vec![PoolId(1)]);
        assert!(again.removed.is_empty());
        assert!(again.pools.iter().all(|p| !p.retired));
    }

    #[test]
    fn new_addresses_reconnect_and_passwords_are_never_shown() {
        let old = config("", &[("a", ""), ("b", "")]);
        let mut moved = old.clone();
        moved.policy.pools[1].password = "secret".into();
        moved.policy.pools[1].url.port = 4444;
        let reloaded = reload(&old, &moved);
        assert_eq!(reloaded.reconfigure, vec![PoolId(1)]);
        assert_eq!(
            reloaded.changes,
            vec![
                "b.url: stratum+tcp://b.example:3333 -> stratum+tcp://b.example:4444",
                "b.password: changed"
            ]
        );
        assert!(!format!("{:?}", reloaded.changes).contains("secret"));
        assert_eq!(reloaded.pools[1].entry.password, "secret");
    }

    #[test]
    fn a_new_ca_file_or_tls_insecure_reconnects() {
        let old = config("", &[("a", ""), ("b", "")]);
        let mut moved = old.clone();
        moved.policy.pools[0].tls.ca_file = Some("/etc/hashsplit/a-ca.pem".into());
        moved.policy.pools[1].tls.insecure = true;
        let reloaded = reload(&old, &moved);
        assert_eq!(reloaded.reconfigure, vec![PoolId(0), PoolId(1)]);
        assert_eq!(
            reloaded.changes,
            vec![
                "a.ca_file: None -> Some(\"/etc/hashsplit/a-ca.pem\")",
                "b.tls_insecure: false -> true"
            ]
        );
    }

    #[test]
    fn server_changes_wait_for_a_restart() {
        let old = config("", &[("a", "")]);
        let new = config("[server]\nmax_connections = 5\n", &[("a", "")]);
        let reloaded = reload(&old, &new);
        assert_eq!(reloaded.restart_needed, vec!["[server]"]);
        assert!(reloaded.changes.is_empty());
    }
}
