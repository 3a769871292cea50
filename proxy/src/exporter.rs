//! The Prometheus endpoint: a minimal HTTP/1.1 responder on its own
//! listener (`[metrics] listen`).
//!
//! - `GET /metrics`: the text exposition of [`Metrics`].
//! - `GET /healthz`: `200 ok` while the process serves (liveness; restarting
//!   the proxy does not bring a pool back, so pools play no part here).
//! - `GET /readyz`: `200 ready` while at least one pool is up and the proxy
//!   does not drain, `503` otherwise (readiness, see
//!   [`crate::drain::readiness`]: a load balancer should not send miners to
//!   a proxy with nowhere to send their work, or one on its way out).
//! - Anything else: `404`, or `405` for a method other than GET or HEAD.
//!
//! One request per connection (`Connection: close`). Requests are bounded in
//! size and in time, and so is the number of connections served at once, so
//! a stuck or hostile client costs a socket for a few seconds at most.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed straight away.
const MAX_CONNECTIONS: usize = 64;

/// The exposition's content type (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(listen = %addr, "serving metrics on /metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropping the set when serve returns aborts what is still running.
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(%peer, "too many metrics connections; closing");
            continue;
        };
        let metrics = metrics.clone();
        connections.spawn(async move {
            let served = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &metrics)).await;
            if !matches!(served, Ok(Ok(()))) {
                debug!(%peer, "metrics request abandoned");
            }
            drop(slot);
        });
    }
}

/// Reads one request head and writes its answer.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return write(
            &mut stream,
            "431 Request Header Fields Too Large",
            "",
            b"",
            true,
        )
        .await;
    };
    let mut words = head.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return write(&mut stream, "405 Method Not Allowed", "", b"", with_body).await;
    }
    match path {
        "/metrics" => {
            let body = metrics.encode();
            write(
                &mut stream,
                "200 OK",
                CONTENT_TYPE,
                body.as_bytes(),
                with_body,
            )
            .await
        }
        "/healthz" => write(&mut stream, "200 OK", "text/plain", b"ok\n", with_body).await,
        "/readyz" => match crate::drain::readiness(metrics) {
            Ok(()) => write(&mut stream, "200 OK", "text/plain", b"ready\n", with_body).await,
            Err(why) => {
                let body = format!("{why}\n");
                let status = "503 Service Unavailable";
                write(
                    &mut stream,
                    status,
                    "text/plain",
                    body.as_bytes(),
                    with_body,
                )
                .await
            }
        },
        _ => {
            write(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                with_body,
            )
            .await
        }
    }
}

/// Returns the request line once the whole head has arrived, `None` if the
/// head is over [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n").or_else(|| find(&buf, b"\n\n")) {
            let head = String::from_utf8_lossy(&buf[..end]);
            let line = head.lines().next().unwrap_or("").trim().to_owned();
            return Ok(Some(line));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests;
