//! `[network]`: where the pools' shares of the whole network are fetched
//! from, how often, how old they may get, and what the source calls our
//! pools.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hashsplit_policy::Policy;
use hashsplit_policy::diag::Diagnostics;
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

/// The validated `[network]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// The JSON endpoint (`http://` or `https://`).
    pub source: SourceUrl,
    /// Time between two fetches (default 1 h).
    pub refresh: Duration,
    /// Age past which the shares in force are stale: logged, and alerted
    /// on through `hashsplit_network_share_age_seconds` (default 3 x
    /// `refresh`).
    pub max_age: Duration,
    /// Our pool name -> the source's name for it; a pool not named here is
    /// looked up under its own name (either way ignoring case).
    pub names: BTreeMap<String, String>,
}

impl NetworkConfig {
    /// Returns the name `pool` goes by in the source.
    pub fn source_name<'a>(&'a self, pool: &'a str) -> &'a str {
        self.names.get(pool).map_or(pool, String::as_str)
    }
}

/// The default time between two fetches.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// An `http://` or `https://` URL, split for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    /// Whether the connection is TLS (`https://`).
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 or 443 unless given).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// The `Host` header: the authority as written.
    pub authority: String,
}

/// Why a source url was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceUrlError {
    /// Not a URL at all.
    #[error("source {0:?} is not a URL")]
    Invalid(String),
    /// A scheme other than http and https.
    #[error("source {0:?} must start with http:// or https://")]
    Scheme(String),
    /// No host.
    #[error("source {0:?} has no host")]
    NoHost(String),
    /// Credentials in the URL would end up in logs.
    #[error("source {0:?} must not carry a user or password")]
    UserInfo(String),
}

impl SourceUrl {
    /// Parses `http://host[:port]/path?query` or `https://...`.
    pub fn parse(text: &str) -> Result<Self, SourceUrlError> {
        let uri: hyper::Uri = text
            .parse()
            .map_err(|_| SourceUrlError::Invalid(text.to_owned()))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(SourceUrlError::Scheme(text.to_owned())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| SourceUrlError::NoHost(text.to_owned()))?;
        if authority.as_str().contains('@') {
            return Err(SourceUrlError::UserInfo(text.to_owned()));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(SourceUrlError::NoHost(text.to_owned()));
        }
        Ok(SourceUrl {
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            authority: authority.as_str().to_owned(),
        })
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

/// `[network]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    source: Spanned<String>,
    refresh: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    names: Option<BTreeMap<String, Spanned<String>>>,
}

/// Reads `[network]`; the names are checked against the pools later
/// ([`check_names`]), once the pools are read.
pub(super) fn read_network(
    diag: &mut Diagnostics<'_>,
    raw: RawNetwork,
) -> (Option<NetworkConfig>, BTreeMap<String, Spanned<String>>) {
    let source = match SourceUrl::parse(raw.source.get_ref()) {
        Ok(url) => Some(url),
        Err(error) => {
            diag.error("network.source", Some(raw.source.span()), error.to_string());
            None
        }
    };
    let refresh = diag
        .positive_duration("network.refresh", raw.refresh)
        .unwrap_or(DEFAULT_REFRESH);
    let max_age_span = raw.max_age.as_ref().map(Spanned::span);
    let max_age = diag
        .positive_duration("network.max_age", raw.max_age)
        .unwrap_or(refresh.saturating_mul(3));
    if max_age < refresh {
        diag.error(
            "network.max_age",
            max_age_span,
            format!(
                "max_age {max_age:?} must be at least refresh ({refresh:?}): the shares would \
                 be stale before the next fetch"
            ),
        );
    }
    let raw_names = raw.names.unwrap_or_default();
    let mut names = BTreeMap::new();
    for (pool, name) in &raw_names {
        if name.get_ref().trim().is_empty() {
            diag.error(
                format!("network.names.{pool}"),
                Some(name.span()),
                "the source's name for the pool must not be empty",
            );
        }
        names.insert(pool.clone(), name.get_ref().trim().to_owned());
    }
    let network = source.map(|source| NetworkConfig {
        source,
        refresh,
        max_age,
        names,
    });
    (network, raw_names)
}

/// Checks that `[network] names` names only pools of the file, and warns
/// when nothing uses the shares.
pub(super) fn check_names(
    diag: &mut Diagnostics<'_>,
    names: &BTreeMap<String, Spanned<String>>,
    policy: &Policy,
) {
    let all = policy.pools.iter().chain(&policy.disabled);
    let known: Vec<&str> = all.map(|pool| pool.name.as_str()).collect();
    for (pool, name) in names {
        if !known.contains(&pool.as_str()) {
            diag.error(
                format!("network.names.{pool}"),
                Some(name.span()),
                format!("there is no [[pool]] named {pool:?}"),
            );
        }
    }
    if policy.config.max_network_share.is_none() {
        diag.warning(
            "network",
            None,
            "policy.max_network_share is not set: the fetched network shares are shown and \
             exported but do not change the split",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls_split_into_a_connection() {
        let url = SourceUrl::parse("http://127.0.0.1:8080/api/pools?period=1w").unwrap();
        assert_eq!(
            (url.tls, url.host.as_str(), url.port, url.path.as_str()),
            (false, "127.0.0.1", 8080, "/api/pools?period=1w")
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:8080/api/pools?period=1w");
        let url = SourceUrl::parse("https://pools.example").unwrap();
        assert_eq!((url.tls, url.port, url.path.as_str()), (true, 443, "/"));
        let url = SourceUrl::parse("http://[::1]/x").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        for bad in [
            "ftp://pools.example/x",
            "pools.example/x",
            "http://user:pw@pools.example/x",
            "http:///x",
            "not a url",
        ] {
            assert!(SourceUrl::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
