//! What an operator scrapes from a running proxy: a stub pool and a stub
//! miner on loopback, the proxy between them with per-worker metrics on,
//! and `/metrics` read over HTTP as Prometheus would.
//!
//! Transcript: the pool sends a job; the miner subscribes, authorizes as
//! `rig.1`, mines a real share (SHA-256d at a tiny difficulty) and submits
//! it; the pool accepts it. The scrape shows the share, the pool's job time
//! and the worker's series; when the miner leaves, its series go.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit::{Config, Proxy};
use hashsplit_stratum::{
    ClientMethod, ConfigureResult, Difficulty, Id, Incoming, Job, LineCodec, Method, Notify,
    Response, ServerMethod, ShareContext, Submission, Submit, SubscribeResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// The miners' difficulty: a share is about 400k hashes.
const DIFFICULTY: f64 = 1e-4;
/// The pool's, lower: every share the miner finds is forwarded.
const POOL_DIFFICULTY: f64 = 1e-5;

type Lines = Framed<TcpStream, LineCodec>;

async fn next_line(lines: &mut Lines) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.next())
        .await
        .expect("a line within 20 s")
        .expect("connection open")
        .expect("a readable line")
}

/// A pool that accepts one connection, sends one job after authorize and
/// accepts every share.
async fn stub_pool(listener: TcpListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut pool = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
    while let Some(Ok(line)) = pool.next().await {
        let Ok(Incoming::Call { id, method }) = Incoming::<ClientMethod>::from_line(&line) else {
            continue;
        };
        let result = match &method {
            ClientMethod::Subscribe { .. } => {
                SubscribeResult::new("1", vec![0xaa; 4], 8).to_value()
            }
            ClientMethod::Configure(configure) => {
                ConfigureResult::reply_to(configure, Some(0x1fff_e000)).to_value()
            }
            _ => true.into(),
        };
        let _ = pool.send(Response::ok(id, result).to_line()).await;
        if let ClientMethod::Authorize { .. } = method {
            let difficulty = Difficulty::try_new(POOL_DIFFICULTY).unwrap();
            let _ = pool
                .send(ServerMethod::SetDifficulty(difficulty).to_line(Id::Null))
                .await;
            let _ = pool
                .send(ServerMethod::Notify(job()).to_line(Id::Null))
                .await;
        }
    }
}

fn job() -> Notify {
    Notify {
        job_id: "1".into(),
        prevhash: [7; 32],
        coinb1: hex::decode(
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20",
        )
        .unwrap(),
        coinb2: hex::decode("ffffffff0100f2052a01000000015100000000").unwrap(),
        merkle_branch: vec![[9; 32]],
        version: 0x2000_0000,
        // A real network target: no share here is a block.
        nbits: 0x1703_a30c,
        ntime: 1_700_000_000,
        clean_jobs: true,
    }
}

/// A miner that subscribes, authorizes as `worker`, and waits for a job.
struct StubMiner {
    lines: Lines,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    difficulty: Difficulty,
    job: Notify,
}

impl StubMiner {
    async fn connect(proxy: SocketAddr, worker: &str) -> StubMiner {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let mut lines = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
        let subscribe = ClientMethod::Subscribe {
            user_agent: Some("stub/1".into()),
            session_id: None,
        };
        lines.send(subscribe.to_line(Id::from(1))).await.unwrap();
        let authorize = ClientMethod::Authorize {
            user: worker.into(),
            password: Some("x".into()),
        };
        lines.send(authorize.to_line(Id::from(2))).await.unwrap();
        let (mut subscribed, mut difficulty) = (None, None);
        let job = loop {
            match Incoming::<ServerMethod>::from_line(&next_line(&mut lines).await).unwrap() {
                Incoming::Response(r) if r.id == Id::from(1) => {
                    subscribed = Some(SubscribeResult::from_result(&r.result).unwrap());
                }
                Incoming::Call { method, .. } => match method {
                    ServerMethod::SetDifficulty(d) => difficulty = Some(d),
                    ServerMethod::Notify(notify) => break notify,
                    _ => {}
                },
                Incoming::Response(_) => {}
            }
        };
        let subscribed = subscribed.expect("subscribe answered before the job");
        StubMiner {
            lines,
            extranonce1: subscribed.extranonce1,
            extranonce2_size: subscribed.extranonce2_size,
            difficulty: difficulty.expect("difficulty before the job"),
            job,
        }
    }

    /// Hashes nonces until one meets the difficulty, submits it, and
    /// returns whether the proxy accepted it.
    async fn mine_and_submit(&mut self, worker: &str) -> bool {
        let job =
            Job::from_notify(&self.job, self.extranonce1.len() + self.extranonce2_size).unwrap();
        let extranonce2 = vec![0; self.extranonce2_size];
        let target = self.difficulty.to_target();
        let ctx = ShareContext {
            extranonce1: &self.extranonce1,
            version_mask: None,
            miner_target: target,
            pool_target: target,
        };
        let nonce = (0..u32::MAX)
            .find(|nonce| {
                let share = Submission::new(&extranonce2, self.job.ntime, *nonce, None);
                job.judge(&ctx, &share).is_ok_and(|v| v.meets_miner)
            })
            .unwrap();
        let submit = ClientMethod::Submit(Submit {
            worker: worker.into(),
            job_id: self.job.job_id.clone(),
            extranonce2: hex::encode(&extranonce2),
            ntime: format!("{:08x}", self.job.ntime),
            nonce: format!("{nonce:08x}"),
            version_bits: None,
        });
        self.lines.send(submit.to_line(Id::from(3))).await.unwrap();
        loop {
            let line = next_line(&mut self.lines).await;
            if let Ok(Incoming::Response(r)) = Incoming::<ServerMethod>::from_line(&line)
                && r.id == Id::from(3)
            {
                return r.error.is_none() && r.result.as_bool() == Some(true);
            }
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Returns the value of the sample `series` (name and labels as exposed).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn config(pool: SocketAddr) -> Config {
    let text = format!(
        r#"
[downstream]
initial_difficulty = {DIFFICULTY}
min_difficulty = {DIFFICULTY}

[metrics]
per_worker = true

[policy]
max_share = 1.0

[[pool]]
name = "alpha"
url = "stratum+tcp://{pool}"
user = "proxy"
"#
    );
    Config::from_toml_str(&text).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_shares_jobs_and_workers_of_a_live_proxy() {
    let pool_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pool_addr = pool_listener.local_addr().unwrap();
    tokio::spawn(stub_pool(pool_listener));
    let proxy = Proxy::start(
        config(pool_addr),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .unwrap();
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = metrics_listener.local_addr().unwrap();
    proxy.serve_metrics(metrics_listener);

    let mut miner = StubMiner::connect(proxy.local_addr(), "rig.1").await;
    assert!(
        miner.mine_and_submit("rig.1").await,
        "the share was refused"
    );

    let scrape = http_get(metrics, "/metrics").await;
    assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"));
    let accepted =
        r#"hashsplit_shares_total{pool="alpha",reason="pool-accepted",result="accepted"}"#;
    assert_eq!(sample(&scrape, accepted), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, r#"hashsplit_pool_up{pool="alpha"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, r#"hashsplit_upstream_jobs_total{pool="alpha"}"#),
        Some(1.0)
    );
    let job_time = sample(
        &scrape,
        r#"hashsplit_upstream_last_job_timestamp_seconds{pool="alpha"}"#,
    );
    assert!(job_time.is_some_and(|t| t > 1.6e9), "{job_time:?}");
    let credited = sample(
        &scrape,
        r#"hashsplit_worker_credited_difficulty_total{worker="rig.1"}"#,
    );
    assert!(credited.is_some_and(|d| d > 0.0), "{credited:?}");
    let last_share = sample(
        &scrape,
        r#"hashsplit_worker_last_share_timestamp_seconds{worker="rig.1"}"#,
    );
    assert!(last_share.is_some_and(|t| t > 1.6e9), "{last_share:?}");
    assert!(
        http_get(metrics, "/readyz")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );

    // The miner leaves: its worker's series go with it.
    drop(miner);
    let mut gone = false;
    for _ in 0..200 {
        if !http_get(metrics, "/metrics")
            .await
            .contains(r#"worker="rig.1""#)
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "rig.1's series outlived its connection");
    proxy.shutdown(Duration::from_secs(1)).await;
}
