//! The proxy's HTTP server on `[metrics] listen` (hyper, HTTP/1.1).
//!
//! - `GET /metrics`: the text exposition of [`Metrics`].
//! - `GET /healthz`: `200 ok` while the process serves (liveness; restarting
//!   the proxy does not bring a pool back, so pools play no part here).
//! - `GET /readyz`: `200 ready` when [`crate::drain::readiness`] says so
//!   (a pool is up and the proxy does not drain), `503` otherwise.
//! - Anything else: `404`, or `405` for a method the path does not take.
//!
//! Every connection is its own task, so a client that is idle, slow or
//! never reads costs only its own socket: the request head must arrive
//! within [`HEADER_TIMEOUT`] (also between keep-alive requests), a body
//! within [`BODY_TIMEOUT`], and a connection is wound up after
//! [`MAX_LIFETIME`]. Only past [`MAX_CONNECTIONS`] open at once are new
//! ones closed at once, a number no handful of idle clients reaches.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Time a client has to send a request head, counted from the connection
/// or the previous answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection is served before it is asked to close (a
/// client that stops reading its answer holds nothing longer).
pub const MAX_LIFETIME: Duration = Duration::from_secs(120);
/// How long a connection winding up may finish its answer.
const GRACE: Duration = Duration::from_secs(5);
/// Largest request head; a scrape's is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; with the timeouts above, reaching this
/// takes a flood, not a few idle clients.
pub const MAX_CONNECTIONS: usize = 4096;

/// The exposition's content type (text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response with its whole body.
pub type Answer = Response<Full<Bytes>>;

/// What the server answers from.
#[derive(Debug, Clone)]
pub struct Site {
    metrics: Metrics,
}

impl Site {
    /// Returns a site serving `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Site { metrics }
    }

    /// Answers one request.
    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let read_only = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/metrics" | "/healthz" | "/readyz" if !read_only => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
            }
            "/metrics" => {
                let mut answer = text(StatusCode::OK, self.metrics.encode());
                answer
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                answer
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match crate::drain::readiness(&self.metrics) {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Returns a plain-text answer.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut answer = Response::new(Full::new(body.into()));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// Serves `site` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, site: Arc<Site>, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "serving HTTP: /metrics, /healthz, /readyz");
    }
    // Dropping the set when serve returns aborts what is still running.
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if connections.len() >= MAX_CONNECTIONS {
            debug!(%peer, "too many HTTP connections; closing");
            continue;
        }
        connections.spawn(connection(stream, Arc::clone(&site), shutdown.clone()));
    }
    // Answers being written get a moment to finish.
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one connection: keep-alive requests, each head within
/// [`HEADER_TIMEOUT`], for at most [`MAX_LIFETIME`].
async fn connection(stream: TcpStream, site: Arc<Site>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let site = Arc::clone(&site);
        async move { Ok::<_, Infallible>(site.answer(request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "HTTP connection ended");
            }
            return;
        }
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(MAX_LIFETIME) => {}
    }
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, served).await;
}

#[cfg(test)]
mod tests;
