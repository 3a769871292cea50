//! The keys of a node pool: a `[[pool]]` whose url is `http://host:port`
//! is the operator's own Bitcoin Core node, mined solo on its block
//! templates. It names the chain the node runs, the address the coinbase
//! pays, and how to log in to its JSON-RPC (`user` and `password`, or the
//! node's `cookie_file`).
//!
//! The address itself is checked against the chain by the proxy, which has
//! the `bitcoin` crate; this crate keeps to the file's shape.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::diag::Diagnostics;

/// What a node pool writes in its coinbase script when `coinbase_tag` is
/// not given.
pub const DEFAULT_COINBASE_TAG: &str = "/hashsplit/";

/// How often a node pool fetches a fresh template for fees when the tip
/// has not moved, unless `template_refresh` says otherwise.
pub const DEFAULT_TEMPLATE_REFRESH: Duration = Duration::from_secs(30);

/// Longest coinbase tag: with the height and the extranonce it must fit in
/// the 100 bytes a coinbase script may have.
const MAX_TAG: usize = 64;

/// The chain a node runs, named as Bitcoin Core's `getblockchaininfo` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Mainnet (`main`).
    Main,
    /// testnet3 (`test`).
    Test,
    /// testnet4 (`testnet4`).
    Testnet4,
    /// signet (`signet`).
    Signet,
    /// regtest (`regtest`).
    Regtest,
}

impl Chain {
    /// Every chain, in the order the docs list them.
    pub const ALL: [Chain; 5] = [
        Chain::Main,
        Chain::Test,
        Chain::Testnet4,
        Chain::Signet,
        Chain::Regtest,
    ];

    /// Returns the chain's name in the file and in `getblockchaininfo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Main => "main",
            Chain::Test => "test",
            Chain::Testnet4 => "testnet4",
            Chain::Signet => "signet",
            Chain::Regtest => "regtest",
        }
    }

    /// Returns the chain called `name`.
    pub fn from_name(name: &str) -> Option<Chain> {
        Chain::ALL.into_iter().find(|chain| chain.as_str() == name)
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node pool adds to a `[[pool]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The chain the node must be on.
    pub chain: Chain,
    /// Where every block's coinbase pays (checked against `chain` by the
    /// proxy).
    pub payout_address: String,
    /// The node's `.cookie` file, read at every request, instead of a user
    /// and password.
    pub cookie_file: Option<PathBuf>,
    /// Written into every coinbase script after the height.
    pub coinbase_tag: String,
    /// A fresh template (for fees) this often while the tip stays.
    pub template_refresh: Duration,
}

/// The node-only keys as written.
pub(super) struct NodeKeys {
    pub chain: Option<Spanned<String>>,
    pub payout_address: Option<Spanned<String>>,
    pub cookie_file: Option<Spanned<String>>,
    pub coinbase_tag: Option<Spanned<String>>,
    pub template_refresh: Option<Spanned<String>>,
}

/// `user` and `password` as written.
pub(super) struct NodeLogin {
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
}

/// Reads a node pool's keys, recording every problem; returns the node
/// settings (if usable) with the RPC user and password (empty for a cookie
/// file).
pub(super) fn validate_node(
    diag: &mut Diagnostics<'_>,
    path: &str,
    url_span: Range<usize>,
    keys: NodeKeys,
    login: NodeLogin,
) -> (Option<NodeConfig>, String, String) {
    let mut missing = Vec::new();
    let chain = match &keys.chain {
        Some(name) => {
            let chain = Chain::from_name(name.get_ref());
            if chain.is_none() {
                diag.error(
                    format!("{path}.chain"),
                    Some(name.span()),
                    format!(
                        "chain {:?} is not one of main, test, testnet4, signet, regtest",
                        name.get_ref()
                    ),
                );
            }
            chain
        }
        None => {
            missing.push("chain");
            None
        }
    };
    let payout_address = match keys.payout_address {
        Some(address) if address.get_ref().trim().is_empty() => {
            diag.error(
                format!("{path}.payout_address"),
                Some(address.span()),
                "payout_address must not be empty",
            );
            None
        }
        Some(address) => Some(address.into_inner()),
        None => {
            missing.push("payout_address");
            None
        }
    };
    if !missing.is_empty() {
        diag.error(
            format!("{path}.url"),
            Some(url_span.clone()),
            format!(
                "an http:// url makes this a node pool (Bitcoin Core JSON-RPC), which needs {}",
                missing.join(" and ")
            ),
        );
    }
    let (user, password, cookie_file) = read_login(diag, path, url_span, keys.cookie_file, login);
    let coinbase_tag = match keys.coinbase_tag {
        Some(tag) if tag.get_ref().len() > MAX_TAG => {
            diag.error(
                format!("{path}.coinbase_tag"),
                Some(tag.span()),
                format!(
                    "coinbase_tag of {} bytes is over {MAX_TAG}",
                    tag.get_ref().len()
                ),
            );
            String::new()
        }
        Some(tag) => tag.into_inner(),
        None => DEFAULT_COINBASE_TAG.to_owned(),
    };
    let template_refresh = diag
        .positive_duration(&format!("{path}.template_refresh"), keys.template_refresh)
        .unwrap_or(DEFAULT_TEMPLATE_REFRESH);
    let node = match (chain, payout_address) {
        (Some(chain), Some(payout_address)) => Some(NodeConfig {
            chain,
            payout_address,
            cookie_file,
            coinbase_tag,
            template_refresh,
        }),
        _ => None,
    };
    (node, user, password)
}

/// Reads how the node is logged in to: `user` with `password`, or
/// `cookie_file`, exactly one of the two.
fn read_login(
    diag: &mut Diagnostics<'_>,
    path: &str,
    url_span: Range<usize>,
    cookie_file: Option<Spanned<String>>,
    login: NodeLogin,
) -> (String, String, Option<PathBuf>) {
    match (login.user, login.password, cookie_file) {
        (Some(user), Some(password), None) => (user.into_inner(), password.into_inner(), None),
        (None, None, Some(cookie)) => {
            if cookie.get_ref().trim().is_empty() {
                diag.error(
                    format!("{path}.cookie_file"),
                    Some(cookie.span()),
                    "cookie_file must name the node's .cookie file",
                );
            }
            (
                String::new(),
                String::new(),
                Some(PathBuf::from(cookie.into_inner())),
            )
        }
        (user, password, Some(cookie)) if user.is_some() || password.is_some() => {
            diag.error(
                format!("{path}.cookie_file"),
                Some(cookie.span()),
                "a node is logged in to with user and password or with cookie_file, not both",
            );
            (String::new(), String::new(), None)
        }
        (Some(user), None, None) => {
            diag.error(
                format!("{path}.password"),
                Some(user.span()),
                "a node's rpcuser needs its rpcpassword (password = ...)",
            );
            (String::new(), String::new(), None)
        }
        (None, Some(password), None) => {
            diag.error(
                format!("{path}.user"),
                Some(password.span()),
                "a node's rpcpassword needs its rpcuser (user = ...)",
            );
            (String::new(), String::new(), None)
        }
        _ => {
            diag.error(
                format!("{path}.url"),
                Some(url_span),
                "a node pool needs user and password (rpcuser/rpcpassword) or cookie_file",
            );
            (String::new(), String::new(), None)
        }
    }
}

/// Records an error for each node-only key on a Stratum pool.
pub(super) fn refuse_node_keys(diag: &mut Diagnostics<'_>, path: &str, keys: &NodeKeys) {
    for (key, value) in [
        ("chain", &keys.chain),
        ("payout_address", &keys.payout_address),
        ("cookie_file", &keys.cookie_file),
        ("coinbase_tag", &keys.coinbase_tag),
        ("template_refresh", &keys.template_refresh),
    ] {
        if let Some(value) = value {
            diag.error(
                format!("{path}.{key}"),
                Some(value.span()),
                format!("{key} applies only to a node pool: its url must start with http://"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Policy;

    use super::*;

    fn node_pool(lines: &str) -> String {
        format!(
            "[policy]\nmax_share = 1.0\n[[pool]]\nname = \"node\"\n\
             url = \"http://127.0.0.1:18443\"\n{lines}"
        )
    }

    #[test]
    fn a_node_pool_with_a_login_or_a_cookie_loads() {
        let text = node_pool(
            "user = \"hashsplit\"\npassword = \"pw\"\nchain = \"regtest\"\n\
             payout_address = \"bcrt1q\"\n",
        );
        let (policy, _) = Policy::from_toml_str(&text).unwrap();
        let pool = &policy.pools[0];
        let node = pool.node.as_ref().expect("a node pool");
        assert_eq!(node.chain, Chain::Regtest);
        assert_eq!(node.coinbase_tag, DEFAULT_COINBASE_TAG);
        assert_eq!(
            (pool.user.as_str(), pool.password.as_str()),
            ("hashsplit", "pw")
        );
        assert_eq!(pool.url.to_string(), "http://127.0.0.1:18443");

        let text = node_pool(
            "cookie_file = \"/var/lib/bitcoind/.cookie\"\nchain = \"main\"\n\
             payout_address = \"bc1q\"\ncoinbase_tag = \"/me/\"\n",
        );
        let (policy, _) = Policy::from_toml_str(&text).unwrap();
        let node = policy.pools[0].node.clone().unwrap();
        assert_eq!(
            node.cookie_file,
            Some(PathBuf::from("/var/lib/bitcoind/.cookie"))
        );
        assert_eq!(node.coinbase_tag, "/me/");
    }

    #[test]
    fn node_problems_are_reported_with_their_line() {
        let text = node_pool("user = \"u\"\ncookie_file = \"c\"\nchain = \"mainnet\"\n");
        let error = Policy::from_toml_str(&text).unwrap_err();
        let found: Vec<(&str, Option<usize>)> = error
            .errors
            .iter()
            .map(|p| (p.path.as_str(), p.location.map(|l| l.0)))
            .collect();
        assert_eq!(
            found,
            [
                ("pool[0].url", Some(5)),
                ("pool[0].cookie_file", Some(7)),
                ("pool[0].chain", Some(8)),
            ],
            "{error}"
        );
        assert!(
            error.errors[0].message.contains("payout_address"),
            "{error}"
        );
    }

    #[test]
    fn node_keys_on_a_stratum_pool_and_a_stratum_pool_without_user_are_errors() {
        let text = "[policy]\nmax_share = 1.0\n[[pool]]\nname = \"p\"\n\
                    url = \"stratum+tcp://127.0.0.1:3333\"\nchain = \"main\"\n";
        let error = Policy::from_toml_str(text).unwrap_err();
        let paths: Vec<&str> = error.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["pool[0]", "pool[0].chain"], "{error}");
    }
}
