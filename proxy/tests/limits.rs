//! Memory under hostile-but-legal traffic is bounded by configuration:
//! long unfinished lines from many connections share one budget.

mod common;

use std::time::Duration;

use common::{Bed, fast_policy};
use miner_sim::client::StratumClient;
use miner_sim::{SimPoolConfig, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LINE: usize = 250_000;
const BUDGET: usize = 1 << 20;
/// What one partial line takes from the budget (the first 4 KiB are free).
const CHARGE: usize = LINE - hashsplit_stratum::LenientLineCodec::FREE_PARTIAL;

/// Ends the partial line on `stream` and returns true if the proxy still
/// answers (an error for the unreadable line), false if it closed.
async fn answers(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"\n").await.is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(1))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_partial_lines_share_one_budget_and_give_it_back() {
    let bed = Bed::start_with(
        vec![(SimPoolConfig::default(), "")],
        &fast_policy(1.0),
        &format!("[server]\nmax_line_length = 262144\nline_buffer_budget = {BUDGET}\n"),
    )
    .await;
    bed.pools_up().await;
    let metrics = bed.proxy.metrics();

    // Five connections each hold most of a 250 KB line: four fit.
    let mut holders = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(bed.addr()).await.unwrap();
        stream.write_all(&vec![b'x'; LINE]).await.unwrap();
        holders.push(stream);
    }
    let closed = || {
        metrics.sum(
            "hashsplit_downstream_disconnects_total",
            &[("reason", "line-too-long")],
        )
    };
    assert!(
        eventually(Duration::from_secs(10), || closed() >= 1.0).await,
        "a connection past the budget is closed"
    );
    // A miner with ordinary lines is not affected.
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();
    miner
        .handshake("w")
        .await
        .expect("served while the budget is full");

    let mut alive = 0;
    for stream in &mut holders {
        if answers(stream).await {
            alive += 1;
        }
    }
    assert!(alive * CHARGE <= BUDGET, "{alive} partial lines held");
    assert!(
        alive >= 3,
        "only the connections past the budget closed: {alive} left"
    );

    // Ended lines gave their bytes back: four long lines fit again.
    let mut again = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(bed.addr()).await.unwrap();
        stream.write_all(&vec![b'y'; LINE]).await.unwrap();
        again.push(stream);
    }
    let before = closed();
    for stream in &mut again {
        assert!(answers(stream).await, "the budget was given back");
    }
    assert_eq!(closed(), before);
    bed.stop().await;
}
