//! Every fault a test can switch on in a SimPool does what it says, seen
//! from a client on the wire.

mod common;

use std::time::Duration;

use common::{Miner, SOON, code, quiet_pool};
use hashsplit_stratum::{ClientMethod, Difficulty, Id, ServerMethod};
use miner_sim::client::{Heard, StratumClient};
use miner_sim::eventually;
use miner_sim::pool::{BadDifficulty, Fault, INJECTED_REJECT};

#[tokio::test]
async fn close_all_closes_every_connection_and_new_ones_still_work() {
    let pool = quiet_pool().await;
    let mut a = Miner::connect(&pool, "a").await;
    let mut b = Miner::connect(&pool, "b").await;
    pool.set_fault(Fault::CloseAll);
    assert!(a.client.closed_within(SOON).await);
    assert!(b.client.closed_within(SOON).await);
    assert!(eventually(SOON, || pool.stats().connections_open == 0).await);
    let mut again = Miner::connect(&pool, "a").await;
    let job = again.hello.job.clone();
    let share = again.share(&job, 1e-5, 1, None);
    assert_eq!(code(&again.submit(&job, &share).await), None);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_blackholed_pool_reads_but_never_answers_until_cleared() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    pool.set_fault(Fault::Blackhole);
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    let lost = miner
        .client
        .send(&ClientMethod::Submit(miner_sim::client::submit_params(
            "w",
            &job.job_id,
            &share,
        )))
        .await
        .unwrap();
    assert!(eventually(SOON, || pool.stats().unanswered == 1).await);
    pool.new_job();
    pool.new_job();

    pool.clear_faults();
    // Answers come in order, so the next one would be the lost submit's.
    let authorize = miner.client.send(&authorize("w2")).await.unwrap();
    match miner.client.read_until_response().await.unwrap() {
        Heard::Response(r) => assert_eq!(r.id, authorize, "{lost:?} was never answered"),
        other => panic!("{other:?}"),
    }
    // Jobs made while blackholed are not replayed; the newest one comes.
    let next = miner.client.next_job().await.unwrap();
    assert_eq!(next.job_id, pool.current_job().notify.job_id);
    assert_eq!(pool.stats().totals.accepted, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn delayed_answers_arrive_after_what_the_pool_sent_meanwhile() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    pool.set_fault(Fault::Delay(Duration::from_secs(2)));
    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    let id = miner
        .client
        .send(&ClientMethod::Submit(miner_sim::client::submit_params(
            "w",
            &job.job_id,
            &share,
        )))
        .await
        .unwrap();
    pool.new_job();
    // The job sent after the submit overtakes its answer.
    match miner.client.read().await.unwrap() {
        Heard::Call(_, ServerMethod::Notify(_)) => {}
        other => panic!("expected the new job first, got {other:?}"),
    }
    let answer = miner.client.response_to(&id).await.unwrap();
    assert_eq!(
        code(&answer),
        None,
        "a delayed answer is still the real one"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn garbage_lines_are_sent_and_the_connection_goes_on() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    pool.set_fault(Fault::Garbage);
    let mut unreadable = 0;
    for _ in 0..6 {
        match miner.client.read().await.unwrap() {
            Heard::Unreadable(_) => unreadable += 1,
            Heard::Response(r) => assert_eq!(r.id, Id::from(987_654), "an answer to nothing"),
            Heard::Call(id, method) => panic!("garbage parsed as {id:?} {method:?}"),
        }
    }
    assert_eq!(unreadable, 5);
    assert_eq!(miner.client.authorize("w2").await.unwrap().result, true);
    pool.shutdown().await;
}

#[tokio::test]
async fn bad_difficulties_go_on_the_wire_but_shares_are_judged_at_the_real_one() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    for bad in [
        BadDifficulty::NaN,
        BadDifficulty::Zero,
        BadDifficulty::Negative,
    ] {
        pool.set_fault(Fault::BadDifficulty(bad));
        assert!(
            matches!(miner.client.read().await.unwrap(), Heard::Unreadable(line) if line.contains("set_difficulty")),
            "{bad:?}"
        );
    }
    pool.set_fault(Fault::BadDifficulty(BadDifficulty::Huge));
    let (_, call) = miner.client.next_call().await.unwrap();
    assert_eq!(
        call,
        ServerMethod::SetDifficulty(Difficulty::try_new(1e300).unwrap())
    );

    let job = miner.hello.job.clone();
    let share = miner.share(&job, 1e-5, 1, None);
    assert_eq!(code(&miner.submit(&job, &share).await), None);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_huge_line_overflows_a_pool_side_reader() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    pool.set_fault(Fault::HugeLine);
    let err = miner.client.read().await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    pool.shutdown().await;
}

#[tokio::test]
async fn reject_all_refuses_good_shares_until_cleared() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    let job = miner.hello.job.clone();
    pool.set_fault(Fault::RejectAll);
    let share = miner.share(&job, 1e-5, 1, None);
    assert_eq!(code(&miner.submit(&job, &share).await), Some(20));
    pool.clear_faults();
    assert_eq!(
        code(&miner.submit(&job, &share).await),
        None,
        "never accepted, so not a duplicate"
    );
    let stats = pool.stats().worker("w");
    assert_eq!(
        (stats.accepted, stats.rejected_for(INJECTED_REJECT)),
        (1, 1)
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn refused_connections_are_reset_until_cleared() {
    let pool = quiet_pool().await;
    pool.set_fault(Fault::RefuseConnections);
    // The reset may land before or after the first write.
    let refused = match StratumClient::connect(pool.addr()).await {
        Err(_) => true,
        Ok(mut client) => client.handshake("w").await.is_err(),
    };
    assert!(refused);
    assert!(eventually(SOON, || pool.stats().connections_refused == 1).await);
    pool.clear_faults();
    Miner::connect(&pool, "w").await;
    assert_eq!(pool.stats().connections_accepted, 1);
    pool.shutdown().await;
}

#[tokio::test]
async fn reconnect_is_sent_with_its_params() {
    let pool = quiet_pool().await;
    let mut miner = Miner::connect(&pool, "w").await;
    pool.set_fault(Fault::Reconnect {
        host: Some("127.0.0.1".into()),
        port: Some(3999),
        wait_secs: Some(1),
    });
    let (id, call) = miner.client.next_call().await.unwrap();
    assert!(id.is_null());
    assert_eq!(
        call,
        ServerMethod::Reconnect {
            host: Some("127.0.0.1".into()),
            port: Some(3999),
            wait_secs: Some(1)
        }
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn set_extranonce_goes_to_subscribers_and_moves_the_next_jobs() {
    let pool = quiet_pool().await;
    let mut subscriber = StratumClient::connect(pool.addr()).await.unwrap();
    let answer = subscriber
        .call(&ClientMethod::ExtranonceSubscribe)
        .await
        .unwrap();
    assert_eq!(answer.result, true);
    let hello = subscriber.handshake("s").await.unwrap();
    let mut subscriber = Miner {
        client: subscriber,
        hello,
        user: "s".into(),
    };
    let mut other = Miner::connect(&pool, "o").await;

    pool.set_fault(Fault::SetExtranonce { to_all: false });
    let (_, call) = subscriber.client.next_call().await.unwrap();
    let ServerMethod::SetExtranonce {
        extranonce1,
        extranonce2_size,
    } = call
    else {
        panic!("{call:?}")
    };
    assert_ne!(extranonce1, subscriber.extranonce1());
    assert_eq!(extranonce2_size, 8);
    pool.new_job();
    let job = subscriber.client.next_job().await.unwrap();
    let old = subscriber.share(&job, 1e-5, 1, None);
    subscriber.hello.subscribed.extranonce1 = extranonce1;
    let new = subscriber.share(&job, 1e-5, 1, None);
    assert_eq!(code(&subscriber.submit(&job, &new).await), None);
    assert_eq!(code(&subscriber.submit(&job, &old).await), Some(23));

    // The other connection never subscribed: its next line is the job.
    let (_, call) = other.client.next_call().await.unwrap();
    assert!(matches!(call, ServerMethod::Notify(_)), "{call:?}");
    pool.set_fault(Fault::SetExtranonce { to_all: true });
    let (_, call) = other.client.next_call().await.unwrap();
    assert!(
        matches!(call, ServerMethod::SetExtranonce { .. }),
        "{call:?}"
    );
    pool.shutdown().await;
}

fn authorize(user: &str) -> ClientMethod {
    ClientMethod::Authorize {
        user: user.into(),
        password: None,
    }
}
