//! The `[policy]` section and the `[[pool]]` list of the hashsplit TOML file,
//! and their validation.
//!
//! Raw structs mirror the file (`deny_unknown_fields`, spans kept); the
//! validated [`Policy`] uses durations, [`Ratio`]s and parsed pool URLs. The
//! proxy's config loader composes these with its own sections. This file
//! holds `[policy]` and the checks across pools; `pool` one `[[pool]]`
//! entry (TLS settings included), `url` its address.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::diag::{ConfigError, Diagnostics, Problem};
use crate::units::{PoolId, Ratio};

mod pool;
mod url;

pub use pool::{PoolConfig, PoolTls};
pub use url::{PoolUrl, Scheme, UrlError};

use pool::{RawPool, check_unique_names, validate_pool};

mod node;

pub use node::{Chain, DEFAULT_COINBASE_TAG, DEFAULT_TEMPLATE_REFRESH, NodeConfig};

/// What the engine does when the healthy pools' caps sum to less than 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInfeasible {
    /// Every healthy pool's cap is scaled up by the same factor so the
    /// targets sum to 1: every cap is exceeded, in proportion.
    #[default]
    Spread,
    /// Every healthy pool is held at its cap, and what the caps leave over
    /// goes to the first healthy pool in file order (the operator's
    /// preferred pool).
    Ordered,
}

impl fmt::Display for OnInfeasible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnInfeasible::Spread => "spread",
            OnInfeasible::Ordered => "ordered",
        })
    }
}

/// The validated `[policy]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Default cap for every pool, in (0, 1].
    pub max_share: Ratio,
    /// Caps hold over every window of this length.
    pub window: Duration,
    /// A miner stays at least this long on a pool (unless the pool fails).
    pub min_dwell: Duration,
    /// How often the proxy asks the engine for a new plan.
    pub rebalance_every: Duration,
    /// What to do when the healthy pools' caps sum to less than 1.
    pub on_infeasible: OnInfeasible,
    /// Pools whose `network_share` is above this are avoided while the
    /// others can take the work.
    pub max_network_share: Option<Ratio>,
    /// The pool (by name; validated to be one of the `[[pool]]` entries)
    /// that takes what the other healthy pools' caps cannot, so that they
    /// all stay at their caps; `on_infeasible` applies only while it is
    /// down. Typically the operator's own node.
    pub fallback: Option<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_share: Ratio::new(DEFAULT_MAX_SHARE).unwrap_or(Ratio::ONE),
            window: Duration::from_secs(600),
            min_dwell: Duration::from_secs(30),
            rebalance_every: Duration::from_secs(5),
            on_infeasible: OnInfeasible::Spread,
            max_network_share: None,
            fallback: None,
        }
    }
}

/// The default cap: no pool gets a majority of the proxy's hashrate.
const DEFAULT_MAX_SHARE: f64 = 0.5;

/// The validated policy: the `[policy]` section and the pools in file order
/// ([`PoolId`] `i` is `pools[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The `[policy]` section.
    pub config: PolicyConfig,
    /// The `[[pool]]` entries in file order, less the disabled ones.
    pub pools: Vec<PoolConfig>,
    /// The `[[pool]]` entries with `enabled = false`, in file order: kept
    /// out of the split as if they were not in the file.
    pub disabled: Vec<PoolConfig>,
}

impl Policy {
    /// Returns the cap of `pool`: its own `max_share` or the default.
    pub fn cap(&self, pool: PoolId) -> Ratio {
        self.pools[pool.0]
            .max_share
            .unwrap_or(self.config.max_share)
    }

    /// Returns the id of the fallback pool, if one is named.
    pub fn fallback(&self) -> Option<PoolId> {
        self.config
            .fallback
            .as_deref()
            .and_then(|name| self.pool_by_name(name))
    }

    /// Returns the id of the pool called `name`.
    pub fn pool_by_name(&self, name: &str) -> Option<PoolId> {
        self.pools.iter().position(|p| p.name == name).map(PoolId)
    }

    /// Parses and validates a file holding only `[policy]` and `[[pool]]`,
    /// returning the policy and its warnings, or every problem at once.
    pub fn from_toml_str(text: &str) -> Result<(Policy, Vec<Problem>), ConfigError> {
        let mut diag = Diagnostics::new(text);
        let mut policy = None;
        let mut pools = None;
        for entry in diag.parse_document().unwrap_or_default() {
            match entry.key.as_str() {
                "policy" => policy = Some(entry.value),
                "pool" => pools = Some(entry.value),
                other => diag.error(
                    other,
                    Some(entry.key_span),
                    format!("unknown section `{other}`, expected `policy` or `pool`"),
                ),
            }
        }
        let built = read_policy(&mut diag, policy, pools);
        let (built, warnings) = diag.finish(|| built)?;
        // read_policy returns nothing only after recording an error, which
        // finish has already turned into Err.
        let policy = built.ok_or_else(|| ConfigError {
            errors: Vec::new(),
            warnings: Vec::new(),
        })?;
        Ok((policy, warnings))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    max_share: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
    min_dwell: Option<Spanned<String>>,
    rebalance_every: Option<Spanned<String>>,
    on_infeasible: Option<OnInfeasible>,
    max_network_share: Option<Spanned<f64>>,
    fallback: Option<Spanned<String>>,
}

/// Reads and validates `[policy]` and `[[pool]]` (either may be missing,
/// which is an error), recording every problem in `diag`.
///
/// Returns the policy only if neither section had an error.
pub fn read_policy(
    diag: &mut Diagnostics<'_>,
    policy: Option<Spanned<DeValue<'_>>>,
    pools: Option<Spanned<DeValue<'_>>>,
) -> Option<Policy> {
    let errors_before = diag.error_count();
    let mut fallback = None;
    let (config, policy_span) = match policy {
        Some(value) => {
            let span = value.span();
            let raw = diag.deserialize::<RawPolicy>("policy", value);
            fallback = raw.as_ref().and_then(|raw| raw.fallback.clone());
            (raw.map(|raw| validate_policy(diag, raw)), Some(span))
        }
        None => {
            diag.error("policy", None, "missing [policy] section");
            (None, None)
        }
    };
    let mut read_pools = Vec::new();
    let mut enabled = Vec::new();
    let mut name_spans = Vec::new();
    match pools {
        Some(value) => {
            for (index, entry) in diag.array_of_tables("pool", value).into_iter().enumerate() {
                let path = format!("pool[{index}]");
                if let Some(raw) = diag.deserialize::<RawPool>(&path, entry) {
                    name_spans.push(raw.name.span());
                    enabled.push(raw.enabled.unwrap_or(true));
                    read_pools.push(validate_pool(diag, &path, raw));
                }
            }
            if read_pools.is_empty() && diag.error_count() == errors_before {
                diag.error("pool", None, "at least one [[pool]] is needed");
            } else if !read_pools.is_empty() && !enabled.contains(&true) {
                diag.error(
                    "pool",
                    None,
                    "every [[pool]] has enabled = false: at least one must be enabled",
                );
            }
        }
        None => diag.error(
            "pool",
            None,
            "missing [[pool]]: at least one pool is needed",
        ),
    }
    check_unique_names(diag, &read_pools, &name_spans);
    if let Some(name) = &fallback
        && !read_pools.iter().any(|p| p.name == *name.get_ref())
    {
        diag.error(
            "policy.fallback",
            Some(name.span()),
            format!(
                "fallback {:?} is not the name of any [[pool]]",
                name.get_ref()
            ),
        );
    }
    let config = config?;
    if diag.error_count() != errors_before {
        return None;
    }
    let (pools, disabled): (Vec<_>, Vec<_>) = read_pools
        .into_iter()
        .zip(enabled)
        .partition(|(_, enabled)| *enabled);
    let policy = Policy {
        config,
        pools: pools.into_iter().map(|(pool, _)| pool).collect(),
        disabled: disabled.into_iter().map(|(pool, _)| pool).collect(),
    };
    if let Some(name) = &fallback
        && policy.disabled.iter().any(|p| p.name == *name.get_ref())
    {
        diag.warning(
            "policy.fallback",
            Some(name.span()),
            format!(
                "the fallback pool {:?} is disabled: there is no fallback while it is",
                name.get_ref()
            ),
        );
    }
    warn_about_limits(diag, &policy, policy_span);
    Some(policy)
}

fn validate_policy(diag: &mut Diagnostics<'_>, raw: RawPolicy) -> PolicyConfig {
    let defaults = PolicyConfig::default();
    let max_share = cap(diag, "policy.max_share", raw.max_share).unwrap_or(defaults.max_share);
    let mut duration = |key: &str, value: Option<Spanned<String>>, default: Duration| {
        diag.positive_duration(&format!("policy.{key}"), value)
            .unwrap_or(default)
    };
    let window_span = raw.window.as_ref().map(Spanned::span);
    let window = duration("window", raw.window, defaults.window);
    let min_dwell = duration("min_dwell", raw.min_dwell, defaults.min_dwell);
    let rebalance_every = duration(
        "rebalance_every",
        raw.rebalance_every,
        defaults.rebalance_every,
    );
    if rebalance_every
        .checked_mul(4)
        .is_none_or(|four| window < four)
    {
        diag.error(
            "policy.window",
            window_span,
            format!("window {window:?} must be at least 4 x rebalance_every ({rebalance_every:?})"),
        );
    }
    let max_network_share = raw
        .max_network_share
        .and_then(|v| cap(diag, "policy.max_network_share", Some(v)));
    PolicyConfig {
        max_share,
        window,
        min_dwell,
        rebalance_every,
        on_infeasible: raw.on_infeasible.unwrap_or_default(),
        max_network_share,
        fallback: raw.fallback.map(Spanned::into_inner),
    }
}

/// Returns a cap in (0, 1], or records why the value is not one.
pub(super) fn cap(
    diag: &mut Diagnostics<'_>,
    path: &str,
    value: Option<Spanned<f64>>,
) -> Option<Ratio> {
    let value = value?;
    let span = value.span();
    let value = value.into_inner();
    match Ratio::new(value) {
        Some(ratio) if value > 0.0 => Some(ratio),
        _ => {
            diag.error(path, Some(span), format!("must be in (0, 1], got {value}"));
            None
        }
    }
}

/// Warns about caps that cannot be met even with every pool healthy, and
/// about a window too short for one miner to visit every pool.
fn warn_about_limits(diag: &mut Diagnostics<'_>, policy: &Policy, span: Option<Range<usize>>) {
    let caps: f64 = (0..policy.pools.len())
        .map(|i| policy.cap(PoolId(i)).get())
        .sum();
    if caps < 1.0 - 1e-9 {
        diag.warning(
            "policy.max_share",
            span.clone(),
            format!(
                "the caps of all pools sum to {caps:.3} < 1 even with every pool healthy: \
                 shortfall {:.3}; {}",
                1.0 - caps,
                match &policy.config.fallback {
                    Some(name) => format!("it goes to the fallback pool {name:?}"),
                    None => format!(
                        "on_infeasible = \"{}\" decides where it goes",
                        policy.config.on_infeasible
                    ),
                }
            ),
        );
    }
    if let Some(limit) = policy.config.max_network_share {
        let small: f64 = (0..policy.pools.len())
            .filter(|&i| policy.pools[i].network_share.is_none_or(|s| s <= limit))
            .map(|i| policy.cap(PoolId(i)).get())
            .sum();
        if small < 1.0 - 1e-9 && caps >= 1.0 - 1e-9 {
            diag.warning(
                "policy.max_network_share",
                span.clone(),
                format!(
                    "pools at or below max_network_share {limit} can take only {small:.3} \
                     of the hashrate; the rest goes to larger pools"
                ),
            );
        }
    }
    let pools = policy.pools.len() as u32;
    let config = &policy.config;
    if pools > 1 && config.window < config.min_dwell * pools {
        diag.warning(
            "policy.window",
            span,
            format!(
                "window {:?} is shorter than {pools} pools x min_dwell {:?}: a single miner \
                 cannot visit every pool within one window, so a fleet of very few miners \
                 may exceed its caps",
                config.window, config.min_dwell
            ),
        );
    }
}

#[cfg(test)]
mod tests;
