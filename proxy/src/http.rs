//! The proxy's HTTP server on `[metrics] listen` (hyper, HTTP/1.1).
//!
//! - `GET /metrics`: the text exposition of [`Metrics`].
//! - `GET /healthz`: `200 ok` while the process serves (liveness; restarting
//!   the proxy does not bring a pool back, so pools play no part here).
//! - `GET /readyz`: `200 ready` when [`crate::drain::readiness`] says so
//!   (a pool is up and the proxy does not drain), `503` otherwise.
//! - `GET /`: the status page, one self-contained HTML file ([`PAGE`]) that
//!   reads the API below every few seconds.
//! - `GET /api/v1/{status,pools,miners,events,history}`: the read API
//!   ([`api`]), from the history task's snapshots ([`history`]).
//! - `PATCH /api/v1/pools/{name}`, `POST /api/v1/reload`: the control API
//!   ([`control`]), off unless `[http] token_file` is set.
//! - Anything else: `404`, or `405` for a method the path does not take.
//!
//! Every connection is its own task, so a client that is idle, slow or
//! never reads costs only its own socket: the request head must arrive
//! within [`HEADER_TIMEOUT`], a body
//! within [`BODY_TIMEOUT`], and a connection is wound up after
//! [`MAX_LIFETIME`]. Only past [`MAX_CONNECTIONS`] open at once are new
//! ones closed at once, a number no handful of idle clients reaches.

pub mod api;
pub mod control;
pub mod history;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
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
use api::View;
use control::Control;

/// Time a client has to send its request head, counted from the
/// connection.
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

/// Largest request body (a control request is a few dozen bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The status page.
pub const PAGE: &str = include_str!("http/page.html");

/// The exposition's content type (text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response with its whole body.
pub type Answer = Response<Full<Bytes>>;

/// How the HTTP server is run, beyond the config file.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The config file, for `POST /api/v1/reload` and for writing control
    /// changes back (`[http] write_config`).
    pub config_file: Option<PathBuf>,
    /// Time between two samples of the status page's chart.
    pub sample_every: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            config_file: None,
            sample_every: history::SAMPLE_EVERY,
        }
    }
}

/// Reads the control API's bearer token: the file's first line, trimmed.
///
/// # Errors
/// If the file cannot be read or its first line is empty.
pub fn read_token(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("reading the token file {}: {e}", path.display()),
        )
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the token file {} is empty", path.display()),
        ));
    }
    Ok(token.to_owned())
}

/// What the server answers from.
#[derive(Debug)]
pub struct Site {
    metrics: Metrics,
    view: Option<View>,
    control: Option<Control>,
}

impl Site {
    /// Returns a site serving `/metrics`, `/healthz` and `/readyz` only.
    pub fn new(metrics: Metrics) -> Self {
        Site {
            metrics,
            view: None,
            control: None,
        }
    }

    /// Adds the status page and the read API, and the control API if
    /// `control` is given.
    pub fn with_view(mut self, view: View, control: Option<Control>) -> Self {
        self.view = Some(view);
        self.control = control;
        self
    }

    /// Answers one request.
    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let method = request.method().clone();
        let read_only = method == Method::GET || method == Method::HEAD;
        if let Some(name) = path.strip_prefix("/api/v1/pools/") {
            if method != Method::PATCH {
                return text(StatusCode::METHOD_NOT_ALLOWED, "use PATCH\n");
            }
            let act = Act::ChangePool(name.to_owned());
            return self.control(request, act).await;
        }
        if path == "/api/v1/reload" {
            if method != Method::POST {
                return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
            }
            return self.control(request, Act::Reload).await;
        }
        if !read_only {
            return match path.as_str() {
                "/metrics" | "/healthz" | "/readyz" | "/" => {
                    text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                }
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            };
        }
        match path.as_str() {
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
            _ => match &self.view {
                Some(view) => read(view, &path, query.as_deref()),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }

    /// Runs a control request: refused with 403 when the control API is
    /// off, 401 without the token; otherwise `act` gets the body.
    async fn control(&self, request: Request<Incoming>, act: Act) -> Answer {
        let Some(control) = &self.control else {
            let body = serde_json::json!({
                "error": "the control API is off: set [http] token_file to turn it on"
            });
            return json(StatusCode::FORBIDDEN, &body);
        };
        if let Err(refused) = control.authorize(request.headers()) {
            let (status, body) = refused.to_answer();
            let mut answer = json(status, &body);
            answer.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            return answer;
        }
        let body = tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(request.into_body(), MAX_BODY).collect(),
        )
        .await;
        let body = match body {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => {
                let body = serde_json::json!({
                    "error": format!("the body could not be read or is over {MAX_BODY} bytes")
                });
                return json(StatusCode::PAYLOAD_TOO_LARGE, &body);
            }
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body was too slow\n"),
        };
        let done = match act {
            Act::ChangePool(name) => control.change_pool(&name, &body).await,
            Act::Reload => control.reload().await,
        };
        match done {
            Ok(applied) => json(StatusCode::OK, &applied.to_json()),
            Err(refused) => {
                let (status, body) = refused.to_answer();
                json(status, &body)
            }
        }
    }
}

/// What a control request asks for.
enum Act {
    /// `PATCH /api/v1/pools/{name}`.
    ChangePool(String),
    /// `POST /api/v1/reload`.
    Reload,
}

/// Answers a read of the page or the read API.
fn read(view: &View, path: &str, query: Option<&str>) -> Answer {
    let body = match path {
        "/" => {
            let mut answer = text(StatusCode::OK, PAGE);
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return answer;
        }
        "/api/v1/status" => view.status(),
        "/api/v1/pools" => view.pools(),
        "/api/v1/miners" => view.miners(query),
        "/api/v1/events" => view.events(),
        "/api/v1/history" => view.history(),
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    json(StatusCode::OK, &body)
}

/// Returns a JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Answer {
    let mut answer = text(status, body.to_string());
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
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
        info!(listen = %addr, "serving HTTP: /metrics, /healthz, /readyz, the status page and the API");
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

/// Serves one connection: one request, its head within
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
        // One request per connection, as before hyper: clients (scripts,
        // health checkers) may read an answer to EOF.
        .keep_alive(false);
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
