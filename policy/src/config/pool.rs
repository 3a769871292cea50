//! One `[[pool]]` entry: its validated form and how it is read.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::cap;
use super::node::{self, NodeConfig};
use super::url::{PoolUrl, Scheme};
use crate::diag::Diagnostics;
use crate::units::Ratio;

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
    /// For a node pool (an `http://` url): its chain, payout address and
    /// coinbase tag; `user` and `password` are then its RPC login (empty
    /// with a cookie file).
    pub node: Option<NodeConfig>,
}

impl PoolConfig {
    /// Returns whether this pool is the operator's own node.
    pub fn is_node(&self) -> bool {
        self.node.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: Spanned<String>,
    url: Spanned<String>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    weight: Option<Spanned<f64>>,
    max_share: Option<Spanned<f64>>,
    network_share: Option<Spanned<f64>>,
    ca_file: Option<Spanned<String>>,
    tls_insecure: Option<Spanned<bool>>,
    pub(super) enabled: Option<bool>,
    chain: Option<Spanned<String>>,
    payout_address: Option<Spanned<String>>,
    cookie_file: Option<Spanned<String>>,
    coinbase_tag: Option<Spanned<String>>,
    template_refresh: Option<Spanned<String>>,
}

pub(super) fn validate_pool(diag: &mut Diagnostics<'_>, path: &str, raw: RawPool) -> PoolConfig {
    if raw.name.get_ref().trim().is_empty() {
        diag.error(
            format!("{path}.name"),
            Some(raw.name.span()),
            "name must not be empty",
        );
    }
    if let Some(user) = &raw.user
        && user.get_ref().trim().is_empty()
    {
        diag.error(
            format!("{path}.user"),
            Some(user.span()),
            "user must not be empty",
        );
    }
    let url = PoolUrl::parse(raw.url.get_ref()).unwrap_or_else(|error| {
        diag.error(
            format!("{path}.url"),
            Some(raw.url.span()),
            error.to_string(),
        );
        PoolUrl {
            scheme: Scheme::Tcp,
            host: String::new(),
            port: 0,
        }
    });
    let keys = node::NodeKeys {
        chain: raw.chain,
        payout_address: raw.payout_address,
        cookie_file: raw.cookie_file,
        coinbase_tag: raw.coinbase_tag,
        template_refresh: raw.template_refresh,
    };
    let (node, user, password) = if url.scheme == Scheme::Http {
        let login = node::NodeLogin {
            user: raw.user,
            password: raw.password,
        };
        node::validate_node(diag, path, raw.url.span(), keys, login)
    } else {
        node::refuse_node_keys(diag, path, &keys);
        if raw.user.is_none() {
            diag.error(
                path.to_owned(),
                Some(raw.name.span()),
                "missing field `user` (the worker name the pool is logged in with)",
            );
        }
        let password = raw
            .password
            .map_or_else(|| "x".to_owned(), Spanned::into_inner);
        (
            None,
            raw.user.map(Spanned::into_inner).unwrap_or_default(),
            password,
        )
    };
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
        user,
        password,
        weight,
        max_share,
        network_share,
        node,
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

/// Names reserved for labels that mean "no pool" in the proxy's metrics.
const RESERVED_NAMES: [&str; 1] = ["none"];

pub(super) fn check_unique_names(
    diag: &mut Diagnostics<'_>,
    pools: &[PoolConfig],
    spans: &[Range<usize>],
) {
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
