//! The `miner-sim` binary as a user runs it: each command ends on
//! `--duration` and prints its summary; the pool writes its stats file.

mod common;

use std::process::{Command, Output};

use common::quiet_config;
use hashsplit_stratum::Difficulty;
use miner_sim::{SimPool, SimPoolConfig};

/// Runs the binary off the runtime's threads and returns what it printed.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_miner-sim"))
            .args(&args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn the_pool_writes_its_stats_file_and_a_summary_when_it_ends() {
    let file = std::env::temp_dir().join(format!("miner-sim-stats-{}.json", std::process::id()));
    let path = file.to_str().unwrap();
    let output = run(args(&[
        "pool",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "300ms",
        "--stats-file",
        path,
    ]))
    .await;
    let text = stdout(&output);
    assert!(text.contains("sim pool listening on 127.0.0.1:"), "{text}");
    assert!(text.contains("shares: 0 accepted"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["totals"]["accepted"], 0);
    assert!(json["jobs"].as_u64().unwrap() >= 1);
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn miners_mine_on_a_pool_and_report_per_miner() {
    let pool = SimPool::start(quiet_config()).await.unwrap();
    let output = run(args(&[
        "miners",
        "--connect",
        &pool.addr().to_string(),
        "--count",
        "2",
        "--hashrate",
        "200k",
        "--profile",
        "cpuminer",
        "--user",
        "cli",
        "--duration",
        "1s",
    ]))
    .await;
    let text = stdout(&output);
    assert!(text.contains("cli.0: "), "{text}");
    assert!(text.contains("cli.1: "), "{text}");
    assert!(text.contains("hashed in total"), "{text}");
    let stats = pool.stats();
    assert!(stats.worker("cli.0").accepted + stats.worker("cli.1").accepted > 0);
    assert_eq!(stats.totals.rejected, 0);
    pool.shutdown().await;
}

#[tokio::test]
async fn load_reports_its_figures_as_json() {
    let pool = SimPool::start(SimPoolConfig {
        difficulty: Difficulty::try_new(1e-12).unwrap(),
        ..quiet_config()
    })
    .await
    .unwrap();
    let output = run(args(&[
        "load",
        "--connect",
        &pool.addr().to_string(),
        "--miners",
        "2",
        "--rate",
        "100",
        "--duration",
        "500ms",
        "--json",
    ]))
    .await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(report["submitted"].as_u64().unwrap() > 0);
    assert_eq!(report["answered"], report["submitted"]);
    assert!(report["latency_p99_us"].is_u64());
    assert_eq!(
        pool.stats().totals.accepted,
        report["accepted"].as_u64().unwrap()
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn commands_refuse_addresses_off_loopback() {
    for command in ["miners", "load"] {
        let output = run(args(&[
            command,
            "--connect",
            "192.0.2.1:3333",
            "--duration",
            "1s",
        ]))
        .await;
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
    }
}

/// Sends one JSON-RPC call to a node as Bitcoin Core's clients do.
fn rpc(addr: &str, login: &str, method: &str) -> String {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let body = format!(r#"{{"jsonrpc":"1.0","id":1,"method":"{method}","params":[]}}"#);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        base64::engine::general_purpose::STANDARD.encode(login),
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test]
async fn the_node_serves_its_chain_with_a_login_moves_its_tip_and_sums_up() {
    let output = tokio::task::spawn_blocking(|| {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_miner-sim"))
            .args([
                "node",
                "--listen",
                "127.0.0.1:0",
                "--advance-every",
                "200ms",
                "--duration",
                "2s",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .rsplit("http://")
            .next()
            .expect("its address")
            .to_owned();
        let refused = rpc(&addr, "hashsplit:wrong", "getbestblockhash");
        let info = rpc(&addr, "hashsplit:hashsplit", "getblockchaininfo");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        assert!(child.wait().unwrap().success());
        (first, refused, info, rest)
    })
    .await
    .unwrap();
    let (first, refused, info, rest) = output;
    assert!(
        first.starts_with("test node (regtest, nbits 207fffff) listening on http://127.0.0.1:"),
        "{first}"
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    assert!(info.contains(r#""chain":"regtest""#), "{info}");
    let height: u64 = rest
        .trim()
        .strip_prefix("test node stopped at height ")
        .and_then(|r| r.split(':').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {rest}"));
    assert!(height > 200, "the tip moved on its timer: {rest}");
}
