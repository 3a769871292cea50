//! `hashsplit check` (and `check --probe`) with a node pool, as an
//! operator runs them: the example file, payout addresses with their line
//! and column, and a probe of a test node and a simulated pool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use bitcoin::{Address, Network};
use miner_sim::node::{TestNode, TestNodeConfig};
use miner_sim::{SimPool, SimPoolConfig};

const REGTEST: &str = "bcrt1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpvxat9t";
/// BIP 173's testnet P2WPKH example.
const TESTNET: &str = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx";

fn hashsplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashsplit"))
        .args(args)
        .output()
        .expect("the hashsplit binary runs")
}

/// Writes `toml` to a file of its own and runs `check` (with `extra`
/// arguments) on it.
fn check(name: &str, toml: &str, extra: &[&str]) -> (Output, PathBuf) {
    let dir = std::env::temp_dir().join(format!("hashsplit-node-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args = vec!["check", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = hashsplit(&args);
    std::fs::remove_dir_all(&dir).ok();
    (output, path)
}

fn node_entry(url: &str, chain: &str, address: &str) -> String {
    format!(
        "[policy]\nmax_share = 1.0\n\n[[pool]]\nname = \"own-node\"\nurl = \"{url}\"\n\
         user = \"hashsplit\"\npassword = \"hashsplit\"\nchain = \"{chain}\"\n\
         payout_address = \"{address}\"\n"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_own_node_example_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/own-node.toml");
    let output = hashsplit(&["check", "--config", example.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.starts_with("config ok: 2 pools"), "{stdout}");
    assert!(
        stdout.contains("(own node, chain regtest, pays bcrt1q"),
        "{stdout}"
    );
    // Its address parses as a regtest address.
    assert!(
        Address::from_str(REGTEST)
            .unwrap()
            .is_valid_for_network(Network::Regtest)
    );
}

#[test]
fn a_payout_address_of_another_chain_or_malformed_is_an_error_at_its_place() {
    let wrong = node_entry("http://127.0.0.1:8332", "main", REGTEST);
    let (output, path) = check("wrong", &wrong, &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    let place = format!("{}:10:18: pool[0].payout_address:", path.display());
    assert!(stderr.contains(&place), "{stderr}");
    assert!(stderr.contains("chain main"), "{stderr}");

    let malformed = node_entry("http://127.0.0.1:8332", "main", "bc1qnotanaddress");
    let (output, _) = check("malformed", &malformed, &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("pool[0].payout_address: \"bc1qnotanaddress\" is not a bitcoin address"),
        "{stderr}"
    );
}

#[test]
fn an_address_shaped_pool_user_that_is_no_address_is_a_warning() {
    let toml = "[policy]\nmax_share = 1.0\n[[pool]]\nname = \"p\"\n\
                url = \"stratum+tcp://127.0.0.1:3333\"\n\
                user = \"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx.rig\"\n";
    let (output, path) = check("user", toml, &[]);
    assert!(output.status.success(), "only a warning");
    let stderr = text(&output.stderr);
    let place = format!("{}:6:8: pool[0].user:", path.display());
    assert!(stderr.contains(&place), "{stderr}");
    assert!(stderr.contains("(warning)"), "{stderr}");
}

async fn test_node(payout_address: &str, network: Network) -> TestNode {
    let payout = Address::from_str(payout_address)
        .unwrap()
        .require_network(network)
        .unwrap()
        .script_pubkey();
    TestNode::start(
        TestNodeConfig::regtest(payout),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("test node starts")
}

/// Runs `check --probe` without blocking the runtime the simulators run on.
async fn probe(name: &'static str, toml: String) -> Output {
    tokio::task::spawn_blocking(move || check(name, &toml, &["--probe"]).0)
        .await
        .expect("joined")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_what_the_node_and_the_pool_offer_without_sending_work() {
    let node = test_node(REGTEST, Network::Regtest).await;
    let pool = SimPool::start(SimPoolConfig::default()).await.unwrap();
    let toml = format!(
        "{}max_share = 0.5\n\n[[pool]]\nname = \"pool\"\nurl = \"stratum+tcp://{}\"\nuser = \"proxy.rig\"\n",
        node_entry(&format!("http://{}", node.addr()), "regtest", REGTEST),
        pool.addr()
    );
    let output = probe("probe", toml).await;
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for expected in [
        "chain regtest (config: regtest), synced (blocks 200, headers 200)",
        &format!("payout address {REGTEST} is an address of regtest"),
        "template for height 201 with 6 transactions",
        "extranonce1 4 bytes, extranonce2 8 bytes (fits the miners' 7)",
        "version rolling: mask 1fffe000",
        "worker authorized",
        "2 of 2 pools usable: the configuration will work",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert_eq!(node.submitted(), 0, "no block sent");
    let stats = pool.stats();
    assert_eq!(
        stats.worker("proxy.rig").accepted + stats.worker("proxy.rig").rejected,
        0
    );
    node.shutdown().await;
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_fails_for_a_node_on_another_chain_or_a_wrong_login() {
    let node = test_node(REGTEST, Network::Regtest).await;
    let url = format!("http://{}", node.addr());
    let output = probe("chain", node_entry(&url, "test", TESTNET)).await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("problem: the node runs chain \"regtest\", the config says test"),
        "{stdout}"
    );
    assert!(stdout.contains("0 of 1 pools usable"), "{stdout}");

    let wrong_login = node_entry(&url, "regtest", REGTEST)
        .replace("password = \"hashsplit\"", "password = \"nope\"");
    let output = probe("login", wrong_login).await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("refused the login (HTTP 401)"), "{stdout}");
    assert!(node.unauthorized() >= 1);
    node.shutdown().await;
}
