//! Lines a miner sends that cannot be read: each is answered and the
//! connection stays until 20 come in a row; every submit attempt is
//! counted, whatever its id.

mod common;

use std::time::Duration;

use common::{Bed, fast_policy};
use hashsplit_stratum::{ClientMethod, StratumError};
use miner_sim::client::{Heard, StratumClient};
use miner_sim::{SimPoolConfig, eventually};

async fn one_pool() -> Bed {
    let bed = Bed::start(vec![(SimPoolConfig::default(), "")], &fast_policy(1.0)).await;
    bed.pools_up().await;
    bed
}

/// Reads until an answer and returns its error.
async fn error_of_next_answer(miner: &mut StratumClient) -> (String, Option<StratumError>) {
    match miner.read_until_response().await.unwrap() {
        Heard::Response(r) => (serde_json::to_string(&r.id).unwrap(), r.error),
        other => panic!("expected an answer, got {other:?}"),
    }
}

async fn authorized(bed: &Bed) -> StratumClient {
    let mut miner = StratumClient::connect(bed.addr()).await.unwrap();
    miner.handshake("w").await.unwrap();
    miner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_that_are_not_utf8_are_answered_and_only_twenty_in_a_row_disconnect() {
    let bed = one_pool().await;
    let mut miner = authorized(&bed).await;

    for _ in 0..19 {
        miner
            .send_bytes(b"{\"id\":5,\"method\":\"\xff\"}\n")
            .await
            .unwrap();
        let (id, error) = error_of_next_answer(&mut miner).await;
        assert_eq!(id, "null");
        let error = error.expect("an error");
        assert_eq!(error.code, 20);
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
    }
    // A readable line ends the run; the miner is still served.
    let answer = miner
        .call(&ClientMethod::ExtranonceSubscribe)
        .await
        .expect("still connected after 19 unreadable lines");
    assert!(answer.error.is_none());

    for _ in 0..20 {
        if miner.send_bytes(b"\xc3\x28\n").await.is_err() {
            break;
        }
    }
    assert!(miner.closed_within(Duration::from_secs(5)).await);
    let metrics = bed.proxy.metrics();
    assert!(
        eventually(Duration::from_secs(2), || {
            metrics.sum(
                "hashsplit_downstream_disconnects_total",
                &[("reason", "bad-input")],
            ) == 1.0
        })
        .await,
        "disconnected as bad input after 20 in a row"
    );
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unreadable_line_is_answered_and_every_submit_counted_whatever_its_id() {
    let bed = one_pool().await;
    let mut miner = authorized(&bed).await;

    // Not JSON, and JSON that is not an object: answered with a null id.
    for line in ["hello", "[1,2]", "{\"id\":1,"] {
        miner.send_line(line).await.unwrap();
        let (id, error) = error_of_next_answer(&mut miner).await;
        assert_eq!(id, "null", "{line}");
        assert_eq!(error.map(|e| e.code), Some(20), "{line}");
    }

    // Submits whose id cannot be one: answered, and counted as malformed.
    let submit =
        r#""method":"mining.submit","params":["w","no-such-job","00000000","00000000","00000000"]"#;
    for id in ["{\"a\":1}", "[7]", "true", "false"] {
        miner
            .send_line(&format!("{{\"id\":{id},{submit}}}"))
            .await
            .unwrap();
        let (answered, error) = error_of_next_answer(&mut miner).await;
        assert_eq!(answered, "null", "id {id}");
        assert_eq!(error.map(|e| e.code), Some(20), "id {id}");
    }
    // Ids no machine integer holds, or that a float would rewrite, come
    // back exactly as sent.
    for id in [
        "18446744073709551616",
        "123456789012345678901234567890",
        "4.0",
        "1e3",
    ] {
        miner
            .send_line(&format!("{{\"id\":{id},{submit}}}"))
            .await
            .unwrap();
        let (answered, error) = error_of_next_answer(&mut miner).await;
        assert_eq!(answered, id);
        assert_eq!(error.map(|e| e.code), Some(21), "an unknown job, id {id}");
    }

    let metrics = bed.proxy.metrics();
    assert_eq!(metrics.sum("hashsplit_shares_submitted_total", &[]), 8.0);
    assert_eq!(
        metrics.sum(
            "hashsplit_shares_total",
            &[("result", "rejected"), ("reason", "malformed")]
        ),
        4.0
    );
    assert_eq!(
        metrics.sum(
            "hashsplit_shares_total",
            &[("result", "rejected"), ("reason", "job-not-found")]
        ),
        4.0
    );
    bed.stop().await;
}
