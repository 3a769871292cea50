use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::Duration;

use super::*;

struct Server {
    addr: SocketAddr,
    /// The series of pools alpha and beta.
    pools: [crate::metrics::PoolSeries; 2],
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::new(&["alpha".into(), "beta".into()]);
    let pools = [
        metrics.pool_for_test("alpha"),
        metrics.pool_for_test("beta"),
    ];
    let shutdown = CancellationToken::new();
    let site = Arc::new(Site::new(metrics.clone()));
    let task = tokio::spawn(serve(listener, site, shutdown.clone()));
    Server {
        addr,
        pools,
        shutdown,
        task,
    }
}

/// Sends `request` as is and returns everything the server wrote.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\nConnection: close\r\n\r\n");
    exchange(addr, request.as_bytes()).await
}

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn metrics_serves_the_text_exposition() {
    let server = start().await;
    server.pools[0].up.set(1);
    let answer = get(server.addr, "/metrics").await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    let body = body(&answer);
    assert!(lower.contains(&format!("content-length: {}\r\n", body.len())));
    assert!(body.contains("# TYPE hashsplit_shares_total counter"));
    assert!(body.contains(r#"hashsplit_pool_up{pool="alpha"} 1"#));
    assert!(body.contains(r#"hashsplit_pool_up{pool="beta"} 0"#));
}

#[tokio::test]
async fn a_query_string_does_not_change_the_path() {
    let server = start().await;
    let answer = get(server.addr, "/metrics?name[]=x").await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn healthz_is_ok_even_with_every_pool_down() {
    let server = start().await;
    let answer = get(server.addr, "/healthz").await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
    assert_eq!(body(&answer), "ok\n");
}

#[tokio::test]
async fn readyz_is_503_until_a_pool_is_up() {
    let server = start().await;
    let answer = get(server.addr, "/readyz").await;
    assert_eq!(status(&answer), "HTTP/1.1 503 Service Unavailable");
    server.pools[1].up.set(1);
    let answer = get(server.addr, "/readyz").await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let server = start().await;
    assert_eq!(
        status(&get(server.addr, "/").await),
        "HTTP/1.1 404 Not Found"
    );
    let post = exchange(
        server.addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
}

#[tokio::test]
async fn head_gets_the_headers_without_the_body() {
    let server = start().await;
    let answer = exchange(
        server.addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
    assert_eq!(body(&answer), "");
    // The length the GET body has, announced without sending it.
    let get = get(server.addr, "/metrics").await;
    let length = |answer: &str| {
        answer.lines().find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
    };
    let announced: usize = length(&answer).expect("Content-Length").parse().unwrap();
    assert!(announced > 0);
    assert_eq!(length(&get), Some(body(&get).len().to_string()));
}

#[tokio::test]
async fn an_oversized_request_is_refused() {
    let server = start().await;
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Junk: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    request.extend(b"\r\n\r\n");
    let answer = exchange(server.addr, &request).await;
    assert_eq!(
        status(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    // The paused clock runs forward to the server's deadline.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn concurrent_scrapes_are_all_answered() {
    let server = start().await;
    let scrapes: Vec<_> = (0..32)
        .map(|_| tokio::spawn(get(server.addr, "/metrics")))
        .collect();
    for scrape in scrapes {
        let answer = scrape.await.unwrap();
        assert_eq!(status(&answer), "HTTP/1.1 200 OK");
        assert!(body(&answer).contains("hashsplit_build_info"));
    }
}

/// Opens `count` connections that never send a byte.
async fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    idle
}

#[tokio::test]
async fn idle_clients_cannot_lock_out_health_checks_or_scrapes() {
    // 64 idle connections used to take every slot of the hand-written
    // server (issue 13).
    let server = start().await;
    let idle = idle_connections(server.addr, 200).await;
    for _ in 0..5 {
        assert_eq!(
            status(&get(server.addr, "/healthz").await),
            "HTTP/1.1 200 OK"
        );
        let scrape = get(server.addr, "/metrics").await;
        assert_eq!(status(&scrape), "HTTP/1.1 200 OK");
        assert!(body(&scrape).contains("hashsplit_build_info"));
    }
    drop(idle);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_header_timeout() {
    let server = start().await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        HEADER_TIMEOUT + Duration::from_secs(1),
        idle.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "still open after the header timeout");
}

#[tokio::test]
async fn an_answer_closes_the_connection_so_clients_may_read_to_the_end() {
    // Health checkers and scripts send HTTP/1.1 without `Connection: close`
    // and read until the server closes.
    let server = start().await;
    let answer = exchange(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("connection: close\r\n")
    );
}

#[tokio::test]
async fn serve_returns_on_shutdown() {
    let server = start().await;
    server.shutdown.cancel();
    server.task.await.unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}
