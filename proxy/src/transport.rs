//! How the proxy reaches a pool: plain TCP for `stratum+tcp://`, TLS for
//! `stratum+ssl://` and `stratum+tls://`.
//!
//! TLS is rustls with the `ring` provider (it builds with a plain C
//! compiler, where `aws-lc-rs` wants cmake). A pool's certificate chain and
//! host name are verified against the Mozilla roots compiled in from
//! `webpki-roots` (the same on every machine and in a minimal container
//! with no system store), or, when the pool has a `ca_file`, against the
//! CAs in that file only. `tls_insecure` skips the certificate check (the
//! handshake signatures are still checked) and is warned about at every
//! connection.
//!
//! [`connect`] returns a [`Stream`] the upstream frames lines on, whatever
//! the transport.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hashsplit_policy::{PoolTls, PoolUrl};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tracing::warn;

/// Why a pool could not be reached.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The TCP connection failed.
    #[error("connect to {url}: {source}")]
    Connect {
        /// The pool's url.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The pool's `ca_file` could not be read or parsed.
    #[error("ca_file {} is unusable: {reason}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool's host cannot be a TLS server name.
    #[error("{host:?} is not a valid TLS server name")]
    ServerName {
        /// The url's host.
        host: String,
    },
    /// The pool's certificate does not name the host the proxy dialled.
    #[error(
        "certificate for pool {url} is not valid for name {host:?} (it is for {}): \
         refusing it, the pool may be impersonated",
        names(.presented)
    )]
    WrongName {
        /// The pool's url.
        url: String,
        /// The name the certificate had to be valid for.
        host: String,
        /// The names in the certificate.
        presented: Vec<String>,
    },
    /// The pool's certificate chain ends at no trusted CA (or at one with
    /// a trusted CA's name but not its key).
    #[error(
        "certificate for pool {url} is not signed by a trusted CA (trusted: {trust}): refusing it"
    )]
    UntrustedIssuer {
        /// The pool's url.
        url: String,
        /// What was trusted: the public roots or the ca_file.
        trust: String,
    },
    /// Any other problem with the pool's certificate (expired, revoked...).
    #[error("certificate for pool {url} refused: {error:?}")]
    Certificate {
        /// The pool's url.
        url: String,
        /// What rustls found.
        error: CertificateError,
    },
    /// The pool answered the TLS handshake with something that is not TLS.
    #[error("pool {url} did not answer in TLS: is the port a plain stratum+tcp:// one? ({source})")]
    NotTls {
        /// The pool's url.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed for another reason (no common protocol
    /// version or cipher suite, the connection dropped).
    #[error("tls handshake with pool {url}: {source}")]
    Handshake {
        /// The pool's url.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// rustls refused the client configuration.
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        "no name".to_owned()
    } else {
        presented.join(", ")
    }
}

/// Returns a name as the certificate holds it: webpki presents them as
/// `DnsName("pool.example")` or `IpAddress(127.0.0.1)`.
fn plain_name(presented: &str) -> String {
    let inner = presented
        .strip_prefix("DnsName(")
        .or_else(|| presented.strip_prefix("IpAddress("))
        .and_then(|rest| rest.strip_suffix(')'));
    match inner {
        Some(inner) => inner.trim_matches('"').to_owned(),
        None => presented.to_owned(),
    }
}

/// A connection to a pool, plain or TLS, read and written the same way.
#[derive(Debug)]
pub enum Stream {
    /// `stratum+tcp://`.
    Tcp(TcpStream),
    /// `stratum+ssl://` or `stratum+tls://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to the pool at `url`, over TLS if its scheme says so, checking
/// its certificate as `tls` says. The caller bounds the time it may take.
pub async fn connect(url: &PoolUrl, tls: &PoolTls) -> Result<Stream, TransportError> {
    // A broken ca_file or server name fails before any traffic is sent.
    let tls_setup = if url.scheme.is_tls() {
        let name =
            ServerName::try_from(url.host.clone()).map_err(|_| TransportError::ServerName {
                host: url.host.clone(),
            })?;
        // Read at every connection, so a renewed CA is picked up on the
        // next reconnect; a few KiB read once per connection cannot stall
        // the runtime.
        let roots = match &tls.ca_file {
            Some(path) => Some(roots_from_pem(path, std::fs::read(path))?),
            None => None,
        };
        Some((name, client_config(tls, roots)?))
    } else {
        None
    };
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| TransportError::Connect {
            url: url.to_string(),
            source,
        })?;
    // Shares are small lines that should leave at once.
    let _ = tcp.set_nodelay(true);
    let Some((name, config)) = tls_setup else {
        return Ok(Stream::Tcp(tcp));
    };
    if tls.insecure {
        warn!(
            %url,
            "TLS CERTIFICATE VERIFICATION IS OFF for this pool (tls_insecure = true): \
             the connection is encrypted but the pool is not authenticated"
        );
    }
    match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
        Err(e) => Err(handshake_error(url, tls, e)),
    }
}

/// Returns the CAs in the PEM file at `path`, checking it as a connection
/// to its pool would (for `hashsplit check`); returns how many it holds.
pub fn check_ca_file(path: &Path) -> Result<usize, TransportError> {
    roots_from_pem(path, std::fs::read(path)).map(|roots| roots.len())
}

/// Returns one line saying how a pool's certificate is checked, for
/// `hashsplit check`; `None` for a plain TCP pool.
pub fn describe_trust(url: &PoolUrl, tls: &PoolTls) -> Option<String> {
    if !url.scheme.is_tls() {
        return None;
    }
    Some(if tls.insecure {
        "tls, CERTIFICATE NOT VERIFIED: tls_insecure = true".to_owned()
    } else {
        format!("tls, verified against {}", trust_source(tls))
    })
}

fn trust_source(tls: &PoolTls) -> String {
    match &tls.ca_file {
        Some(path) => format!("ca_file {}", path.display()),
        None => "the public webpki roots".to_owned(),
    }
}

/// Returns the CAs in `pem`, the contents of `path` as read.
fn roots_from_pem(path: &Path, pem: io::Result<Vec<u8>>) -> Result<RootCertStore, TransportError> {
    let problem = |reason: String| TransportError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = pem.map_err(|e| problem(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| problem(format!("certificate {}: {e}", index + 1)))?;
        roots
            .add(cert)
            .map_err(|e| problem(format!("certificate {}: {e}", index + 1)))?;
    }
    if roots.is_empty() {
        return Err(problem("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// Returns the client configuration: `roots` (from the ca_file) or the
/// public roots, or no check at all for an insecure pool.
fn client_config(
    tls: &PoolTls,
    roots: Option<RootCertStore>,
) -> Result<ClientConfig, TransportError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
    } else {
        let roots = roots.unwrap_or_else(|| RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
        builder.with_root_certificates(roots)
    };
    Ok(config.with_no_client_auth())
}

/// Turns a failed handshake into the error an operator can act on.
fn handshake_error(url: &PoolUrl, tls: &PoolTls, error: io::Error) -> TransportError {
    let url_text = url.to_string();
    let refused = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match refused {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::NotValidForNameContext { presented, .. } => {
                TransportError::WrongName {
                    url: url_text,
                    host: url.host.clone(),
                    presented: presented.iter().map(|name| plain_name(name)).collect(),
                }
            }
            CertificateError::NotValidForName => TransportError::WrongName {
                url: url_text,
                host: url.host.clone(),
                presented: Vec::new(),
            },
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                let trust = match &tls.ca_file {
                    Some(path) => format!("only the CAs in ca_file {}", path.display()),
                    None => {
                        "the public webpki roots; a pool with a private CA needs ca_file".to_owned()
                    }
                };
                TransportError::UntrustedIssuer {
                    url: url_text,
                    trust,
                }
            }
            other => TransportError::Certificate {
                url: url_text,
                error: other.clone(),
            },
        },
        Some(rustls::Error::InvalidMessage(_)) => TransportError::NotTls {
            url: url_text,
            source: error,
        },
        _ => TransportError::Handshake {
            url: url_text,
            source: error,
        },
    }
}

/// A verifier that accepts any certificate, for `tls_insecure` pools. It
/// still checks the handshake signatures, so the session is at least bound
/// to whatever key the pool presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
