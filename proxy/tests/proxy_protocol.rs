//! Behind HAProxy (`[server] proxy_protocol = true`): each connection's
//! PROXY header names the miner, whose own address the per-IP limit counts;
//! a connection without a header is refused.

mod common;

use std::time::Duration;

use common::{Bed, fast_policy};
use miner_sim::{SimPoolConfig, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SUBSCRIBE: &str = "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"test/1.0\"]}\n";

/// Connects as the balancer does for a miner at `source`, subscribes, and
/// returns the first line the proxy answers (`None` if it closed instead).
async fn subscribe_as(bed: &Bed, header: &[u8]) -> (Option<String>, TcpStream) {
    let mut stream = TcpStream::connect(bed.addr()).await.unwrap();
    stream.write_all(header).await.unwrap();
    // The write may fail if the proxy already closed: that is an answer.
    let _ = stream.write_all(SUBSCRIBE.as_bytes()).await;
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    let answer = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .expect("the proxy answers or closes");
    let answered = matches!(answer, Ok(n) if n > 0).then_some(line);
    (answered, stream)
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 192.0.2.1 40000 3333\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_limit_counts_the_miners_behind_the_balancer() {
    let bed = Bed::start_with(
        vec![(SimPoolConfig::default(), "")],
        &fast_policy(1.0),
        "[server]\nproxy_protocol = true\nmax_connections_per_ip = 1\n",
    )
    .await;
    bed.pools_up().await;

    // All three come from 127.0.0.1; two name the same miner address.
    let (first, _keep) = subscribe_as(&bed, &v1("203.0.113.7")).await;
    assert!(first.expect("served").contains("\"id\":1"));
    let (second, _) = subscribe_as(&bed, &v1("203.0.113.7")).await;
    assert_eq!(
        second, None,
        "a second connection for 203.0.113.7 is over its limit"
    );
    let (other, _keep_other) = subscribe_as(&bed, &v1("203.0.113.8")).await;
    assert!(other.expect("another miner is served").contains("\"id\":1"));

    // No header: refused as bad input, before any Stratum is read.
    let (bare, _) = subscribe_as(&bed, b"").await;
    assert_eq!(bare, None);
    let metrics = bed.proxy.metrics();
    let counted = eventually(Duration::from_secs(5), || {
        metrics.sum(
            "hashsplit_downstream_disconnects_total",
            &[("reason", "bad-input")],
        ) == 1.0
            && metrics.sum(
                "hashsplit_downstream_disconnects_total",
                &[("reason", "connection-limit")],
            ) == 1.0
    });
    assert!(counted.await);
    assert_eq!(metrics.sum("hashsplit_downstream_connections", &[]), 2.0);

    // A direct client holding a connection without a header takes its
    // address's one header slot: it cannot fill the proxy with them.
    let _silent = TcpStream::connect(bed.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (refused, _) = subscribe_as(&bed, &v1("203.0.113.9")).await;
    assert_eq!(refused, None);
    let limited = eventually(Duration::from_secs(5), || {
        metrics.sum(
            "hashsplit_downstream_disconnects_total",
            &[("reason", "connection-limit")],
        ) == 2.0
    });
    assert!(limited.await);
    bed.stop().await;
}
