//! The operator's own node as a pool, end to end: simulated miners mine
//! through the proxy into a test node (Bitcoin Core's JSON-RPC over a
//! chain that checks every block with the `bitcoin` crate) and a simulated
//! pool, with a cap on the node.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::{Address, Network};
use common::POOL_USER;
use hashsplit::Proxy;
use hashsplit_stratum::Difficulty;
use miner_sim::node::{TestNode, TestNodeConfig};
use miner_sim::{SimMiner, SimPool, SimPoolConfig, eventually};
use tokio::net::TcpListener;

const PAYOUT: &str = "bcrt1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpvxat9t";
/// A network target of difficulty 2^-12: a block every 2^20 hashes, about
/// every two seconds per simulated miner, while miners' shares come at
/// 2^-17 to 2^-15, so most shares are not blocks (at regtest's 0x207fffff
/// about every other one would be).
const EASY_BITS: u32 = 0x1e0f_fff0;
/// Difficulty 256: no block in a test's lifetime.
const HARD_BITS: u32 = 0x1c00_ffff;
/// The node's cap.
const NODE_CAP: f64 = 0.4;

fn payout() -> bitcoin::ScriptBuf {
    Address::from_str(PAYOUT)
        .unwrap()
        .require_network(Network::Regtest)
        .unwrap()
        .script_pubkey()
}

/// A test node, a simulated pool and the proxy in front of both.
struct Bed {
    node: TestNode,
    pool: SimPool,
    proxy: Proxy,
}

/// The caps of a bed: the node's, the pool's, and the fallback if any.
struct Caps {
    node: f64,
    pool: Option<f64>,
    fallback: bool,
}

impl Bed {
    async fn start(bits: u32) -> Bed {
        let caps = Caps {
            node: NODE_CAP,
            pool: None,
            fallback: false,
        };
        Bed::start_with(bits, &caps).await
    }

    async fn start_with(bits: u32, caps: &Caps) -> Bed {
        common::logs();
        let node = TestNode::start(
            TestNodeConfig {
                bits,
                ..TestNodeConfig::regtest(payout())
            },
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("test node starts");
        let pool = SimPool::start(SimPoolConfig {
            difficulty: Difficulty::try_new(1.0 / 131_072.0).unwrap(),
            job_interval: Duration::from_secs(2),
            ..SimPoolConfig::default()
        })
        .await
        .expect("sim pool starts");
        let toml = format!(
            "{policy}\n[downstream]\nmin_difficulty = 0.00000762939453125\n\
             initial_difficulty = 0.00000762939453125\nshare_rate = 600\n\n\
             {entry}\n[[pool]]\nname = \"own-node\"\nurl = \"http://{node}\"\n\
             user = \"hashsplit\"\npassword = \"hashsplit\"\nchain = \"regtest\"\n\
             payout_address = \"{PAYOUT}\"\nmax_share = {node_cap}\n",
            policy = common::fast_policy(1.0)
                + if caps.fallback {
                    "fallback = \"own-node\"\n"
                } else {
                    ""
                },
            entry = common::pool_entry(
                0,
                pool.addr(),
                &caps
                    .pool
                    .map(|cap| format!("max_share = {cap}"))
                    .unwrap_or_default()
            ),
            node = node.addr(),
            node_cap = caps.node,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy::start(common::config(&toml), listener).expect("proxy starts");
        let metrics = proxy.metrics();
        assert!(
            eventually(Duration::from_secs(10), || metrics
                .sum("hashsplit_pool_up", &[])
                == 2.0)
            .await,
            "the pool and the node came up at the proxy"
        );
        Bed { node, pool, proxy }
    }

    fn miners(&self, count: usize) -> Vec<SimMiner> {
        (0..count)
            .map(|i| {
                let mut config = miner_sim::SimMinerConfig::new(
                    self.proxy.local_addr(),
                    miner_sim::Profile::Asic,
                    &format!("m{i}"),
                );
                config.hashrate = Some(500_000.0);
                SimMiner::start(config)
            })
            .collect()
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.proxy.metrics().sum(name, labels)
    }

    /// Waits (at most a minute) until `shares` shares were accepted: some
    /// hundreds make a window or more, enough to measure a split.
    async fn accepted_at_least(&self, shares: u32) -> bool {
        eventually(Duration::from_secs(60), || {
            self.metric("hashsplit_shares_total", &[("result", "accepted")]) >= f64::from(shares)
        })
        .await
    }

    /// Returns the difficulty credited to `pool` for accepted shares.
    fn credited(&self, pool: &str) -> f64 {
        self.metric(
            "hashsplit_credited_difficulty_total",
            &[("pool", pool), ("result", "accepted")],
        )
    }

    async fn stop(self, miners: Vec<SimMiner>) {
        for miner in miners {
            miner.stop().await;
        }
        self.proxy.shutdown(Duration::from_secs(2)).await;
        self.pool.shutdown().await;
        self.node.shutdown().await;
    }
}

/// Returns the prevhash a `mining.notify` carries for a tip (the hash's
/// 32-bit words each byte-reversed), as hex.
fn stratum_prevhash(tip: bitcoin::BlockHash) -> String {
    use bitcoin::hashes::Hash;
    let mut bytes = tip.to_byte_array();
    for word in bytes.chunks_exact_mut(4) {
        word.reverse();
    }
    hex::encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_found_on_the_node_pass_every_check_and_are_counted() {
    let bed = Bed::start(EASY_BITS).await;
    let miners = bed.miners(4);
    let start_height = bed.node.chain().height();
    let found = eventually(Duration::from_secs(90), || {
        bed.node.chain().accepted().len() >= 3
    })
    .await;
    let accepted = bed.node.chain().accepted().to_vec();
    let rejected = bed.node.chain().rejected().to_vec();
    assert!(found, "three blocks accepted by the node: {accepted:?}");
    // Every block the proxy sent passed the chain's checks: it decodes,
    // its merkle root and witness commitment match, it meets the target,
    // carries its height and pays the whole coinbase value to the payout.
    assert!(rejected.is_empty(), "refused blocks: {rejected:?}");
    for (i, block) in accepted.iter().enumerate() {
        let height = start_height + 1 + i as u64;
        assert_eq!(block.bip34_block_height(), Ok(height));
        assert!(block.check_witness_commitment());
        let script = block.txdata[0].input[0].script_sig.as_bytes();
        assert!(
            script.windows(11).any(|w| w == b"/hashsplit/"),
            "the default coinbase tag"
        );
        assert_eq!(block.txdata[0].output[0].script_pubkey, payout());
    }
    // Blocks are counted as submitted and accepted, and shares below the
    // network target were credited on the node like any pool's.
    let node = [("pool", "own-node")];
    assert!(
        eventually(Duration::from_secs(5), || {
            bed.metric(
                "hashsplit_blocks_submitted_total",
                &[("pool", "own-node"), ("result", "accepted")],
            ) == bed.node.chain().accepted().len() as f64
        })
        .await,
        "every accepted block counted"
    );
    assert_eq!(
        bed.metric(
            "hashsplit_blocks_submitted_total",
            &[("pool", "own-node"), ("result", "rejected")]
        ),
        0.0
    );
    let local = bed.metric(
        "hashsplit_shares_total",
        &[
            ("pool", "own-node"),
            ("result", "accepted"),
            ("reason", "below-pool-target"),
        ],
    );
    assert!(
        local > bed.metric("hashsplit_block_candidates_total", &node),
        "most shares on the node are not blocks: {local} credited locally"
    );
    bed.stop(miners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tip_moves_every_miner_on_the_node_and_the_node_keeps_its_cap() {
    let bed = Bed::start(HARD_BITS).await;
    let miners = bed.miners(5);
    let tip = stratum_prevhash(bed.node.chain().best_block_hash());
    let on_node = |miners: &[SimMiner], prevhash: &str| -> Vec<usize> {
        (0..miners.len())
            .filter(|&i| miners[i].stats().prevhash.as_deref() == Some(prevhash))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(30), || !on_node(&miners, &tip)
            .is_empty())
        .await,
        "some miners mine on the node"
    );
    let before: Vec<u64> = miners
        .iter()
        .map(|m| m.stats().clean_jobs_received)
        .collect();
    let moved = on_node(&miners, &tip);
    bed.node.advance();
    let new_tip = stratum_prevhash(bed.node.chain().best_block_hash());
    // Within a second or so of the tip moving, nobody mines the old one,
    // and each miner that did got a clean job.
    assert!(
        eventually(Duration::from_secs(5), || on_node(&miners, &tip).is_empty()).await,
        "every miner left the old tip"
    );
    for &i in &moved {
        assert!(
            miners[i].stats().clean_jobs_received > before[i],
            "miner {i} was sent clean jobs"
        );
    }
    assert!(
        !on_node(&miners, &new_tip).is_empty() || moved.is_empty(),
        "miners mine the new tip"
    );
    // Over some hundreds of shares (a window or more) the node gets no
    // more than its cap.
    assert!(
        bed.accepted_at_least(800).await,
        "enough shares to measure the split"
    );
    let credited = |pool: &str| bed.credited(pool);
    let node = credited("own-node");
    let total = node + credited("pool0");
    assert!(node > 0.0, "the node was mined");
    assert!(
        node / total <= NODE_CAP + 0.08,
        "the node's share {:.3} stays near its cap {NODE_CAP}",
        node / total
    );
    assert!(
        bed.pool.stats().worker(POOL_USER).accepted > 0,
        "the pool got the rest"
    );
    assert_eq!(bed.node.submitted(), 0, "no block at difficulty 256");
    bed.stop(miners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_node_takes_what_the_capped_pools_cannot_and_they_keep_their_caps() {
    // Caps of 0.2 and 0.2 (one of the five equal miners each) cannot take
    // all the hashrate. Without a fallback both would be stretched past
    // their caps (spread: about half each); with the node as the fallback,
    // the pool stays at its cap and the node mines the rest.
    let caps = Caps {
        node: 0.2,
        pool: Some(0.2),
        fallback: true,
    };
    let bed = Bed::start_with(HARD_BITS, &caps).await;
    let miners = bed.miners(5);
    assert!(
        bed.accepted_at_least(800).await,
        "enough shares to measure the split"
    );
    let credited = |pool: &str| bed.credited(pool);
    let (node, pool) = (credited("own-node"), credited("pool0"));
    let pool_share = pool / (node + pool);
    assert!(pool > 0.0, "the pool was mined");
    assert!(
        pool_share <= 0.2 + 0.08,
        "the capped pool's share {pool_share:.3} stays near its cap 0.2"
    );
    assert!(
        pool_share < 0.4,
        "the remainder went to the node, not spread: pool share {pool_share:.3}"
    );
    bed.stop(miners).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_a_pool_down() {
    let bed = Bed::start(HARD_BITS).await;
    let Bed { node, pool, proxy } = bed;
    node.shutdown().await;
    let metrics = proxy.metrics();
    assert!(
        eventually(Duration::from_secs(15), || metrics
            .sum("hashsplit_pool_up", &[("pool", "own-node")])
            == 0.0)
        .await,
        "the node went down at the proxy"
    );
    assert_eq!(
        metrics.sum("hashsplit_pool_up", &[("pool", "pool0")]),
        1.0,
        "the pool stays up"
    );
    proxy.shutdown(Duration::from_secs(2)).await;
    pool.shutdown().await;
}

/// A miner alone on the node, speaking Stratum line by line.
async fn lone_miner_on_the_node() -> (TestNode, Proxy, miner_sim::client::StratumClient) {
    common::logs();
    let node = TestNode::start(
        TestNodeConfig::regtest(payout()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("test node starts");
    let toml = format!(
        "{policy}\n[[pool]]\nname = \"own-node\"\nurl = \"http://{node}\"\n\
         user = \"hashsplit\"\npassword = \"hashsplit\"\nchain = \"regtest\"\n\
         payout_address = \"{PAYOUT}\"\n",
        policy = common::fast_policy(1.0),
        node = node.addr(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy = Proxy::start(common::config(&toml), listener).expect("proxy starts");
    let metrics = proxy.metrics();
    assert!(
        eventually(Duration::from_secs(10), || metrics
            .sum("hashsplit_pool_up", &[])
            == 1.0)
        .await,
        "the node came up at the proxy"
    );
    let client = miner_sim::client::StratumClient::connect(proxy.local_addr())
        .await
        .expect("connects");
    (node, proxy, client)
}

/// Returns a share of `notify` that meets the network target.
fn block_share(
    notify: &hashsplit_stratum::Notify,
    subscribed: &hashsplit_stratum::SubscribeResult,
) -> hashsplit_stratum::Submission {
    let job = hashsplit_stratum::Job::from_notify(
        notify,
        subscribed.extranonce1.len() + subscribed.extranonce2_size,
    )
    .expect("a usable job");
    let ctx = hashsplit_stratum::ShareContext {
        extranonce1: &subscribed.extranonce1,
        version_mask: None,
        miner_target: job.network_target(),
        pool_target: job.network_target(),
    };
    let extranonce2 = vec![7; subscribed.extranonce2_size];
    miner_sim::find_share(&job, &ctx, &extranonce2, notify.ntime, 0, 1 << 16)
        .expect("regtest: about every other hash is a block")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_for_a_stale_template_is_refused_as_stale_and_a_current_one_is_accepted() {
    let (node, proxy, mut client) = lone_miner_on_the_node().await;
    let hello = client.handshake("lone").await.expect("handshake");
    let tip = stratum_prevhash(node.chain().best_block_hash());
    assert_eq!(hex::encode(hello.job.prevhash), tip, "the node's work");
    let old = block_share(&hello.job, &hello.subscribed);

    // Another miner's block: the node's tip moves, the miner is sent clean
    // jobs on the new one, and a block on the old one cannot be a block.
    node.advance();
    let new_tip = stratum_prevhash(node.chain().best_block_hash());
    let fresh = loop {
        let job = client.next_job().await.expect("a job");
        if hex::encode(job.prevhash) == new_tip {
            break job;
        }
    };
    assert!(fresh.clean_jobs, "a new tip is sent as clean jobs");
    let answer = client
        .submit("lone", &hello.job.job_id, &old)
        .await
        .expect("answer");
    assert_eq!(answer.error.map(|e| e.code), Some(21), "stale");
    let metrics = proxy.metrics();
    let node_label = [("pool", "own-node")];
    assert_eq!(
        metrics.sum("hashsplit_block_candidates_stale_total", &node_label),
        1.0
    );
    assert_eq!(node.submitted(), 0, "a stale block is not sent");

    // A block on the new tip goes to the node and is accepted.
    let share = block_share(&fresh, &hello.subscribed);
    let answer = client
        .submit("lone", &fresh.job_id, &share)
        .await
        .expect("answer");
    assert!(answer.error.is_none(), "accepted: {answer:?}");
    assert_eq!(node.chain().accepted().len(), 1);
    assert_eq!(
        metrics.sum(
            "hashsplit_blocks_submitted_total",
            &[("pool", "own-node"), ("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        metrics.sum("hashsplit_block_candidates_total", &node_label),
        1.0
    );
    proxy.shutdown(Duration::from_secs(2)).await;
    node.shutdown().await;
}
