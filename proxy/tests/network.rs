//! Live network shares from a local JSON source over real TCP, on paused
//! time: fresh answers change the policy's network shares (and which pool
//! is avoided) within one refresh, a reload keeps the fetched values over
//! the file's, and a source that fails keeps the last good values while
//! the age series rises past max_age.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashsplit::Proxy;
use miner_sim::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the source answers: a JSON body with 200, or 503.
type Answer = Arc<Mutex<Option<String>>>;

/// Serves `answer` to every GET, one request a connection.
async fn source(answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            assert!(head.starts_with(b"GET /pools/1w HTTP/1.1\r\n"));
            let body = answer.lock().unwrap().clone();
            let reply = match body {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                         Connection: close\r\n\r\n"
                    .to_owned(),
            };
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    addr
}

/// A week of blocks in the shape block explorers answer with.
fn week(a: u32, b: u32) -> String {
    format!(
        r#"{{"pools": [{{"name": "Pool A", "blockCount": {a}}}, {{"name": "B", "blockCount": {b}}},
           {{"name": "Unknown", "blockCount": {}}}], "blockCount": 1000}}"#,
        1000 - a - b
    )
}

/// Two pools nobody listens for (the split does not need them up), a
/// network limit of 0.25, and the source.
fn config_text(source: SocketAddr) -> String {
    format!(
        "[policy]\nmax_network_share = 0.25\nmax_share = 1.0\n\
         [[pool]]\nname = \"a\"\nurl = \"stratum+tcp://127.0.0.1:1\"\nuser = \"u\"\nnetwork_share = 0.01\n\
         [[pool]]\nname = \"b\"\nurl = \"stratum+tcp://127.0.0.1:1\"\nuser = \"u\"\n\
         [network]\nsource = \"http://{source}/pools/1w\"\nrefresh = \"1m\"\nmax_age = \"3m\"\n\
         [network.names]\na = \"pool a\"\n"
    )
}

/// Each pool's network share in the config in force.
fn shares(proxy: &Proxy) -> Vec<Option<f64>> {
    let config = proxy.config();
    let pools = config.policy.pools.iter();
    pools.map(|p| p.network_share.map(|s| s.get())).collect()
}

/// Which pools the latest plan avoids.
fn avoided(proxy: &Proxy) -> Vec<bool> {
    proxy.assignment().pools.iter().map(|p| p.avoided).collect()
}

fn metric(proxy: &Proxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    proxy.metrics().sum(name, labels)
}

#[tokio::test(start_paused = true)]
async fn shares_refresh_from_the_source_and_stale_data_keeps_the_last_values() {
    common::logs();
    let answer: Answer = Arc::new(Mutex::new(Some(week(400, 100))));
    let addr = source(Arc::clone(&answer)).await;
    let text = config_text(addr);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(common::config(&text), listener).unwrap();

    // The first fetch replaces the file's 0.01: a is above the limit.
    assert!(
        eventually(Duration::from_secs(5), || shares(&proxy)
            == [Some(0.4), Some(0.1)])
        .await
    );
    assert!(eventually(Duration::from_secs(5), || avoided(&proxy) == [true, false]).await);
    let labels = [("pool", "a")];
    assert_eq!(
        metric(&proxy, "hashsplit_network_share_ratio", &labels),
        0.4
    );
    assert_eq!(
        metric(&proxy, "hashsplit_network_share_max_age_seconds", &[]),
        180.0
    );

    // The source changes: within one refresh the other pool is avoided.
    *answer.lock().unwrap() = Some(week(100, 400));
    assert!(
        eventually(Duration::from_secs(61), || shares(&proxy)
            == [Some(0.1), Some(0.4)])
        .await
    );
    assert!(eventually(Duration::from_secs(5), || avoided(&proxy) == [false, true]).await);
    assert!(metric(&proxy, "hashsplit_network_share_age_seconds", &[]) < 5.0);

    // A reload of the file keeps the fetched values over the file's.
    proxy.reload(common::config(&text));
    assert_eq!(shares(&proxy), [Some(0.1), Some(0.4)]);
    assert_eq!(
        metric(
            &proxy,
            "hashsplit_config_reloads_total",
            &[("result", "applied")]
        ),
        1.0,
        "a fetch is not counted as a config reload"
    );

    // The source fails: the last good values stay, the age rises past
    // max_age, and every failed fetch is counted.
    *answer.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(shares(&proxy), [Some(0.1), Some(0.4)]);
    assert_eq!(avoided(&proxy), [false, true]);
    let age = metric(&proxy, "hashsplit_network_share_age_seconds", &[]);
    assert!(age > 180.0, "age {age}");
    let errors = metric(
        &proxy,
        "hashsplit_network_share_fetches_total",
        &[("result", "error")],
    );
    assert!(errors >= 3.0, "{errors} failed fetches");

    // Back: fresh again within one refresh.
    *answer.lock().unwrap() = Some(week(400, 100));
    assert!(
        eventually(Duration::from_secs(61), || shares(&proxy)
            == [Some(0.4), Some(0.1)])
        .await
    );
    assert!(metric(&proxy, "hashsplit_network_share_age_seconds", &[]) < 5.0 + 1.0);
    proxy.shutdown(Duration::from_secs(1)).await;
}
