//! Fetching a source over HTTP/1.1 with hyper's client: one GET per
//! refresh on a connection of its own, plain TCP for `http://` and TLS
//! (rustls, the public webpki roots, as for pools) for `https://`.
//!
//! Bounded in every way a source could stall or flood the proxy: the whole
//! fetch within [`FETCH_TIMEOUT`], the body at most [`MAX_BODY`] bytes.
//! Only `200` is an answer; a redirect is an error that names the status.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::SourceUrl;
use crate::transport::{self, TransportError};
use hashsplit_policy::{PoolTls, PoolUrl, Scheme};

/// Longest a fetch may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read (a week of pools is a few KiB).
pub const MAX_BODY: usize = 4 << 20;

/// Why a fetch failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The TCP connection failed.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The source.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS connection failed (certificate, handshake).
    #[error("connecting to {url}: {source}")]
    Tls {
        /// The source.
        url: String,
        /// The underlying error.
        #[source]
        source: TransportError,
    },
    /// The request could not be built from the url.
    #[error("building the request for {url}: {source}")]
    Request {
        /// The source.
        url: String,
        /// The underlying error.
        #[source]
        source: hyper::http::Error,
    },
    /// HTTP failed (the connection closed, a malformed answer).
    #[error("HTTP with {url}: {source}")]
    Http {
        /// The source.
        url: String,
        /// The underlying error.
        #[source]
        source: hyper::Error,
    },
    /// An answer other than 200.
    #[error("{url} answered {status}")]
    Status {
        /// The source.
        url: String,
        /// What it answered.
        status: StatusCode,
    },
    /// The body could not be read whole.
    #[error("reading the answer of {url}: {source}")]
    Body {
        /// The source.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The body is over [`MAX_BODY`].
    #[error("the answer of {url} is over {MAX_BODY} bytes")]
    TooLarge {
        /// The source.
        url: String,
    },
    /// No whole answer within [`FETCH_TIMEOUT`].
    #[error("{url} did not answer within {FETCH_TIMEOUT:?}")]
    Timeout {
        /// The source.
        url: String,
    },
}

/// Aborts the connection's task when the fetch ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// GETs `url` and returns the body of its `200` answer.
pub async fn fetch(url: &SourceUrl) -> Result<Bytes, FetchError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_unbounded(url))
        .await
        .unwrap_or_else(|_| {
            Err(FetchError::Timeout {
                url: url.to_string(),
            })
        })
}

async fn fetch_unbounded(url: &SourceUrl) -> Result<Bytes, FetchError> {
    let name = || url.to_string();
    let request = Request::get(url.path.as_str())
        .header(HOST, url.authority.as_str())
        .header(USER_AGENT, concat!("hashsplit/", env!("CARGO_PKG_VERSION")))
        .header(ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|source| FetchError::Request {
            url: name(),
            source,
        })?;
    let http = |source| FetchError::Http {
        url: name(),
        source,
    };
    let (mut sender, _connection) = if url.tls {
        let address = PoolUrl {
            scheme: Scheme::Tls,
            host: url.host.clone(),
            port: url.port,
        };
        let stream = transport::connect(&address, &PoolTls::default())
            .await
            .map_err(|source| FetchError::Tls {
                url: name(),
                source,
            })?;
        handshake(stream).await.map_err(http)?
    } else {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| FetchError::Connect {
                url: name(),
                source,
            })?;
        handshake(stream).await.map_err(http)?
    };
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != StatusCode::OK {
        return Err(FetchError::Status {
            url: name(),
            status: response.status(),
        });
    }
    match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(FetchError::TooLarge { url: name() }),
        Err(source) => Err(FetchError::Body {
            url: name(),
            source,
        }),
    }
}

/// Starts HTTP/1.1 on `stream`; the connection is driven by a task that
/// lives as long as the returned guard.
async fn handshake<S>(stream: S) -> Result<(SendRequest<Empty<Bytes>>, AbortOnDrop), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        // Its error, if any, is the request's too.
        let _ = connection.await;
    });
    Ok((sender, AbortOnDrop(driver)))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::ring;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    fn source(addr: SocketAddr) -> SourceUrl {
        SourceUrl::parse(&format!("http://{addr}/pools")).unwrap()
    }

    /// A server that reads one request head and answers `reply` (or
    /// nothing, keeping the connection open, for `None`).
    async fn server(reply: Option<Vec<u8>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let _ = stream.read(&mut head).await;
            match reply {
                Some(reply) => {
                    // The client may hang up early on a body over the limit.
                    let _ = stream.write_all(&reply).await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_200_answer_is_its_body_and_other_statuses_are_errors() {
        let ok = server(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ))
        .await;
        assert_eq!(fetch(&source(ok)).await.unwrap(), Bytes::from_static(b"{}"));
        let moved = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
        let moved = server(Some(moved.to_vec())).await;
        let error = fetch(&source(moved)).await.unwrap_err();
        assert!(
            matches!(error, FetchError::Status { status, .. } if status == 301),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .into_bytes();
        reply.resize(reply.len() + MAX_BODY + 1, b' ');
        let addr = server(Some(reply)).await;
        let error = fetch(&source(addr)).await.unwrap_err();
        assert!(matches!(error, FetchError::TooLarge { .. }), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_never_answers_times_out() {
        let addr = server(None).await;
        let started = tokio::time::Instant::now();
        let error = fetch(&source(addr)).await.unwrap_err();
        assert!(matches!(error, FetchError::Timeout { .. }), "{error}");
        assert_eq!(started.elapsed(), FETCH_TIMEOUT);
    }

    #[tokio::test]
    async fn an_https_source_is_verified_like_a_tls_pool() {
        // A self-signed certificate chains to no trusted root.
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(stream).await;
        });
        let url = SourceUrl::parse(&format!("https://localhost:{port}/pools")).unwrap();
        let error = fetch(&url).await.unwrap_err();
        assert!(matches!(error, FetchError::Tls { .. }), "{error}");
        assert!(
            error.to_string().contains("not signed by a trusted CA"),
            "{error}"
        );
    }
}
