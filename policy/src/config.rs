//! The `[policy]` section and the `[[pool]]` list of the hashsplit TOML file,
//! and their validation.
//!
//! Raw structs mirror the file (`deny_unknown_fields`, spans kept); the
//! validated [`Policy`] uses durations, [`Ratio`]s and parsed pool URLs. The
//! proxy's config loader composes these with its own sections.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use crate::diag::{ConfigError, Diagnostics, Problem};
use crate::units::{PoolId, Ratio};

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

/// How the proxy talks to a pool: the scheme of its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `stratum+tcp://`: plain TCP.
    #[default]
    Tcp,
    /// `stratum+ssl://`: TLS (the name most pools advertise).
    Ssl,
    /// `stratum+tls://`: TLS, the same as `stratum+ssl://`.
    Tls,
}

impl Scheme {
    /// Returns whether the connection is wrapped in TLS.
    pub fn is_tls(self) -> bool {
        self != Scheme::Tcp
    }

    fn prefix(self) -> &'static str {
        match self {
            Scheme::Tcp => "stratum+tcp://",
            Scheme::Ssl => "stratum+ssl://",
            Scheme::Tls => "stratum+tls://",
        }
    }
}

/// A pool's address from `stratum+tcp://host:port` (or `stratum+ssl://`,
/// `stratum+tls://` for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUrl {
    /// Plain TCP or TLS.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets); also the name a
    /// TLS pool's certificate must be valid for.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl PoolUrl {
    /// Returns the address of a `stratum+tcp://`, `stratum+ssl://` or
    /// `stratum+tls://` `host:port` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = [Scheme::Tcp, Scheme::Ssl, Scheme::Tls]
            .into_iter()
            .find_map(|scheme| Some((scheme, url.strip_prefix(scheme.prefix())?)))
            .ok_or_else(|| {
                format!(
                    "url {url:?} must start with stratum+tcp://, stratum+ssl:// or stratum+tls://"
                )
            })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("url {url:?} has an unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = port.ok_or_else(|| format!("url {url:?} has no port (host:port)"))?;
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("url {url:?} has no valid host"));
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(PoolUrl {
                scheme,
                host: host.to_owned(),
                port,
            }),
            _ => Err(format!("url {url:?} has an invalid port {port:?}")),
        }
    }
}

impl fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.scheme.prefix();
        if self.host.contains(':') {
            write!(f, "{prefix}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{prefix}{}:{}", self.host, self.port)
        }
    }
}

/// How a TLS pool's certificate is checked. Both fields stay at their
/// defaults for a `stratum+tcp://` pool (validation refuses them there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolTls {
    /// A PEM file of the CA certificates trusted for this pool, instead of
    /// the built-in public roots (for a pool with a private CA).
    pub ca_file: Option<PathBuf>,
    /// Whether the pool's certificate goes unchecked (`tls_insecure`):
    /// the traffic is encrypted but anyone on the path can impersonate
    /// the pool.
    pub insecure: bool,
}

/// One validated `[[pool]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Unique name, used in logs, metrics and fleet events.
    pub name: String,
    /// Where the pool listens.
    pub url: PoolUrl,
    /// How its certificate is checked, for a TLS url.
    pub tls: PoolTls,
    /// Worker name the proxy authorizes with.
    pub user: String,
    /// Password the proxy authorizes with.
    pub password: String,
    /// Relative weight in the split, > 0.
    pub weight: f64,
    /// This pool's cap, overriding `[policy].max_share`.
    pub max_share: Option<Ratio>,
    /// This pool's share of the whole Bitcoin network, if known.
    pub network_share: Option<Ratio>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    url: Spanned<String>,
    user: Spanned<String>,
    #[serde(default = "default_password")]
    password: String,
    weight: Option<Spanned<f64>>,
    max_share: Option<Spanned<f64>>,
    network_share: Option<Spanned<f64>>,
    ca_file: Option<Spanned<String>>,
    tls_insecure: Option<Spanned<bool>>,
    enabled: Option<bool>,
}

fn default_password() -> String {
    "x".to_owned()
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
    if window < rebalance_every * 4 {
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

fn validate_pool(diag: &mut Diagnostics<'_>, path: &str, raw: RawPool) -> PoolConfig {
    if raw.name.get_ref().trim().is_empty() {
        diag.error(
            format!("{path}.name"),
            Some(raw.name.span()),
            "name must not be empty",
        );
    }
    if raw.user.get_ref().trim().is_empty() {
        diag.error(
            format!("{path}.user"),
            Some(raw.user.span()),
            "user must not be empty",
        );
    }
    let url = PoolUrl::parse(raw.url.get_ref()).unwrap_or_else(|message| {
        diag.error(format!("{path}.url"), Some(raw.url.span()), message);
        PoolUrl {
            scheme: Scheme::Tcp,
            host: String::new(),
            port: 0,
        }
    });
    let tls = validate_tls(diag, path, &url, raw.ca_file, raw.tls_insecure);
    let weight = match raw.weight {
        Some(w) if !(w.get_ref().is_finite() && *w.get_ref() > 0.0) => {
            diag.error(
                format!("{path}.weight"),
                Some(w.span()),
                format!("weight must be finite and > 0, got {}", w.get_ref()),
            );
            1.0
        }
        Some(w) => w.into_inner(),
        None => 1.0,
    };
    let max_share = cap(diag, &format!("{path}.max_share"), raw.max_share);
    let network_share = raw.network_share.and_then(|share| {
        let span = share.span();
        let value = share.into_inner();
        let ratio = Ratio::new(value);
        if ratio.is_none() {
            diag.error(
                format!("{path}.network_share"),
                Some(span),
                format!("network_share must be in [0, 1], got {value}"),
            );
        }
        ratio
    });
    PoolConfig {
        name: raw.name.into_inner(),
        url,
        tls,
        user: raw.user.into_inner(),
        password: raw.password,
        weight,
        max_share,
        network_share,
    }
}

/// Reads `ca_file` and `tls_insecure`, which only a TLS url can have and
/// which contradict each other; turning verification off is allowed but
/// warned about, since it leaves the pool open to impersonation.
fn validate_tls(
    diag: &mut Diagnostics<'_>,
    path: &str,
    url: &PoolUrl,
    ca_file: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
) -> PoolTls {
    let insecure = insecure.filter(|flag| *flag.get_ref());
    if !url.scheme.is_tls() {
        for (key, span) in [
            ("ca_file", ca_file.as_ref().map(Spanned::span)),
            ("tls_insecure", insecure.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                diag.error(
                    format!("{path}.{key}"),
                    Some(span),
                    format!(
                        "{key} applies only to a TLS pool: its url must start with \
                         stratum+ssl:// or stratum+tls://"
                    ),
                );
            }
        }
        return PoolTls::default();
    }
    if let Some(file) = &ca_file {
        if file.get_ref().trim().is_empty() {
            diag.error(
                format!("{path}.ca_file"),
                Some(file.span()),
                "ca_file must name a PEM file",
            );
        }
        if let Some(flag) = &insecure {
            diag.error(
                format!("{path}.tls_insecure"),
                Some(flag.span()),
                "tls_insecure = true turns off the check that ca_file is for: set one or the other",
            );
        }
    }
    if let Some(flag) = &insecure {
        diag.warning(
            format!("{path}.tls_insecure"),
            Some(flag.span()),
            "TLS CERTIFICATE VERIFICATION IS OFF for this pool: anyone on the network path can \
             impersonate it and read or change its traffic; trust a private CA with ca_file instead",
        );
    }
    PoolTls {
        ca_file: ca_file.map(|file| PathBuf::from(file.into_inner())),
        insecure: insecure.is_some(),
    }
}

/// Returns a cap in (0, 1], or records why the value is not one.
fn cap(diag: &mut Diagnostics<'_>, path: &str, value: Option<Spanned<f64>>) -> Option<Ratio> {
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

/// Names reserved for labels that mean "no pool" in the proxy's metrics.
const RESERVED_NAMES: [&str; 1] = ["none"];

fn check_unique_names(diag: &mut Diagnostics<'_>, pools: &[PoolConfig], spans: &[Range<usize>]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, pool) in pools.iter().enumerate() {
        if pool.name.is_empty() || RESERVED_NAMES.contains(&pool.name.as_str()) {
            diag.error(
                format!("pool[{index}].name"),
                spans.get(index).cloned(),
                format!("pool name {:?} is empty or reserved", pool.name),
            );
        }
        if let Some(first) = seen.insert(&pool.name, index) {
            seen.insert(&pool.name, first);
            diag.error(
                format!("pool[{index}].name"),
                spans.get(index).cloned(),
                format!("duplicate pool name {:?} (also pool[{first}])", pool.name),
            );
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
