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
