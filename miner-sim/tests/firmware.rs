//! What each SimMiner profile sends, line by line, seen by a scripted pool:
//! the handshake order, the ids, and the submit shape its firmware uses.

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, Difficulty, Id, Incoming, LineCodec, Method, Response, ServerMethod, Submit,
    SubscribeResult,
};
use miner_sim::pool::JobFactory;
use miner_sim::{NBITS_MAINNET, Profile, SimMiner, SimMinerConfig, eventually};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const SOON: Duration = Duration::from_secs(20);

/// The pool end of one connection, driven by the test.
struct Script {
    lines: Framed<TcpStream, LineCodec>,
}

impl Script {
    async fn accept(listener: &TcpListener) -> Script {
        let (stream, _) = tokio::time::timeout(SOON, listener.accept())
            .await
            .unwrap()
            .unwrap();
        Script {
            lines: Framed::new(stream, LineCodec::new(LineCodec::DOWNSTREAM_MAX_LENGTH)),
        }
    }

    async fn next(&mut self) -> (Id, ClientMethod) {
        let line = tokio::time::timeout(SOON, self.lines.next())
            .await
            .expect("the miner speaks")
            .unwrap()
            .unwrap();
        match Incoming::<ClientMethod>::from_line(&line).unwrap() {
            Incoming::Call { id, method } => (id, method),
            other => panic!("{other:?}"),
        }
    }

    async fn send(&mut self, line: String) {
        self.lines.send(line).await.unwrap();
    }

    async fn answer(&mut self, id: Id, result: impl Into<serde_json::Value>) {
        self.send(Response::ok(id, result).to_line()).await;
    }

    /// Sends a tiny difficulty and a job, so shares come fast.
    async fn start_mining(&mut self) {
        let job = JobFactory::new(NBITS_MAINNET, 2, 12).next(true).unwrap();
        let difficulty = Difficulty::try_new(1e-7).unwrap();
        self.send(ServerMethod::SetDifficulty(difficulty).to_line(Id::Null))
            .await;
        self.send(ServerMethod::Notify(job.notify.clone()).to_line(Id::Null))
            .await;
    }

    async fn next_submit(&mut self) -> (Id, Submit) {
        match self.next().await {
            (id, ClientMethod::Submit(submit)) => (id, submit),
            other => panic!("expected a submit, got {other:?}"),
        }
    }
}

fn subscribed() -> SubscribeResult {
    SubscribeResult::new("s1", vec![1, 2, 3, 4], 8)
}

fn start(addr: std::net::SocketAddr, profile: Profile) -> SimMiner {
    SimMiner::start(SimMinerConfig {
        hashrate: Some(5_000.0),
        suggest_difficulty: Some(Difficulty::try_new(0.5).unwrap()),
        ..SimMinerConfig::new(addr, profile, "acct.rig")
    })
}

#[tokio::test]
async fn cpuminer_subscribes_authorizes_and_submits_every_share_with_id_4() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let miner = start(listener.local_addr().unwrap(), Profile::Cpuminer);
    let mut pool = Script::accept(&listener).await;
    let (id, call) = pool.next().await;
    assert_eq!(id, Id::from(1));
    assert!(
        matches!(&call, ClientMethod::Subscribe { user_agent: Some(ua), .. } if ua.starts_with("cpuminer"))
    );
    pool.answer(id, subscribed()).await;
    let (id, call) = pool.next().await;
    assert_eq!(id, Id::from(2));
    assert!(matches!(call, ClientMethod::Authorize { ref user, .. } if user == "acct.rig"));
    pool.answer(id, true).await;

    pool.start_mining().await;
    for _ in 0..3 {
        let (id, submit) = pool.next_submit().await;
        assert_eq!(id, Id::from(4));
        assert_eq!(submit.version_bits, None);
        assert_eq!(submit.extranonce2.len(), 16);
        pool.answer(id, true).await;
    }
    assert!(eventually(SOON, || miner.stats().accepted >= 3).await);

    // cpuminer knows nothing of set_extranonce: it keeps its extranonce1.
    let set = ServerMethod::SetExtranonce {
        extranonce1: vec![9, 9, 9, 9],
        extranonce2_size: 8,
    };
    pool.send(set.to_line(Id::Null)).await;
    assert!(eventually(SOON, || miner.stats().ignored_set_extranonce == 1).await);
    assert_eq!(miner.stats().extranonce1.as_deref(), Some("01020304"));
    miner.stop().await;
}

#[tokio::test]
async fn an_asic_configures_first_then_subscribes_extranonce_and_suggests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let miner = start(listener.local_addr().unwrap(), Profile::Asic);
    let mut pool = Script::accept(&listener).await;
    let (id, call) = pool.next().await;
    let ClientMethod::Configure(configure) = call else {
        panic!("{call:?}")
    };
    assert_eq!(configure.version_rolling.unwrap().mask, 0x1fff_e000);
    pool.answer(
        id,
        serde_json::json!({"version-rolling": true, "version-rolling.mask": "1fffe000"}),
    )
    .await;
    let (id, call) = pool.next().await;
    assert!(matches!(call, ClientMethod::Subscribe { .. }));
    pool.answer(id, subscribed()).await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        let (id, call) = pool.next().await;
        pool.answer(id, true).await;
        rest.push(call.name());
    }
    assert_eq!(
        rest,
        [
            "mining.extranonce.subscribe",
            "mining.suggest_difficulty",
            "mining.authorize"
        ]
    );

    pool.start_mining().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (id, submit) = pool.next_submit().await;
        let bits = u32::from_str_radix(submit.version_bits.as_deref().unwrap(), 16).unwrap();
        assert_eq!(bits & !0x1fff_e000, 0);
        pool.answer(id.clone(), true).await;
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        assert!(
            !ids[i + 1..].contains(id),
            "every submit has its own id: {ids:?}"
        );
    }

    // Subscribed to extranonce changes: the next job uses the new one.
    let set = ServerMethod::SetExtranonce {
        extranonce1: vec![9, 9, 9, 9],
        extranonce2_size: 4,
    };
    pool.send(set.to_line(Id::Null)).await;
    pool.start_mining().await;
    assert!(
        eventually(SOON, || miner.stats().extranonce1.as_deref()
            == Some("09090909"))
        .await
    );
    assert_eq!(miner.stats().extranonce2_size, Some(4));
    loop {
        let (id, submit) = pool.next_submit().await;
        pool.answer(id, true).await;
        if submit.extranonce2.len() == 8 {
            break;
        }
    }
    miner.stop().await;
}

#[tokio::test]
async fn a_strict_miner_hangs_up_on_an_answer_to_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let miner = start(listener.local_addr().unwrap(), Profile::Strict);
    let mut pool = Script::accept(&listener).await;
    let (id, call) = pool.next().await;
    assert!(matches!(call, ClientMethod::Configure(_)));
    pool.answer(id, serde_json::json!({"version-rolling": false}))
        .await;
    let (id, _) = pool.next().await;
    pool.answer(id, subscribed()).await;
    let (id, call) = pool.next().await;
    assert!(
        matches!(call, ClientMethod::Authorize { .. }),
        "no extranonce.subscribe"
    );
    pool.answer(id, true).await;
    pool.answer(Id::from(999), true).await;
    // It comes back on a new connection and says why it left.
    let mut again = Script::accept(&listener).await;
    assert!(matches!(again.next().await.1, ClientMethod::Configure(_)));
    assert!(
        miner
            .stats()
            .last_error
            .unwrap()
            .contains("answer to nothing")
    );
    miner.stop().await;
}
