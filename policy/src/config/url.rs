//! A pool's address: `stratum+tcp://host:port`, or `stratum+ssl://` and
//! `stratum+tls://` for TLS, or `http://` for a node's JSON-RPC.

use std::fmt;

use thiserror::Error;

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
    /// `http://`: a Bitcoin Core node's JSON-RPC (a node pool, see
    /// [`super::NodeConfig`]).
    Http,
}

impl Scheme {
    /// Returns whether the connection is wrapped in TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Ssl | Scheme::Tls)
    }

    fn prefix(self) -> &'static str {
        match self {
            Scheme::Tcp => "stratum+tcp://",
            Scheme::Ssl => "stratum+ssl://",
            Scheme::Tls => "stratum+tls://",
            Scheme::Http => "http://",
        }
    }
}

/// Why a pool url was refused; the message quotes the url.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    /// The scheme is not one of the three.
    #[error(
        "url {0:?} must start with stratum+tcp://, stratum+ssl:// or stratum+tls:// (a pool), \
         or http:// (a node's JSON-RPC)"
    )]
    Scheme(String),
    /// `[` without `]`.
    #[error("url {0:?} has an unclosed '['")]
    Bracket(String),
    /// No `:port`.
    #[error("url {0:?} has no port (host:port)")]
    NoPort(String),
    /// An empty host, or one with characters no host has.
    #[error("url {0:?} has no valid host")]
    Host(String),
    /// A port that is not 1..=65535.
    #[error("url {url:?} has an invalid port {port:?}")]
    Port {
        /// The url.
        url: String,
        /// What stood where the port goes.
        port: String,
    },
}

/// A pool's address from `stratum+tcp://host:port` (or `stratum+ssl://`,
/// `stratum+tls://` for TLS, `http://` for a node's JSON-RPC).
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
    /// Returns the address of a `stratum+tcp://`, `stratum+ssl://`,
    /// `stratum+tls://` or `http://` `host:port` URL.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = [Scheme::Tcp, Scheme::Ssl, Scheme::Tls, Scheme::Http]
            .into_iter()
            .find_map(|scheme| Some((scheme, url.strip_prefix(scheme.prefix())?)))
            .ok_or_else(|| UrlError::Scheme(url.to_owned()))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| UrlError::Bracket(url.to_owned()))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = port.ok_or_else(|| UrlError::NoPort(url.to_owned()))?;
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(UrlError::Host(url.to_owned()));
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(PoolUrl {
                scheme,
                host: host.to_owned(),
                port,
            }),
            _ => Err(UrlError::Port {
                url: url.to_owned(),
                port: port.to_owned(),
            }),
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
