//! The `hashsplit` binary as an operator runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/examples")
}

fn hashsplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashsplit"))
        .args(args)
        .output()
        .expect("the hashsplit binary runs")
}

#[test]
fn simulate_json_prints_one_object_of_the_documented_shape() {
    let config = examples().join("farm.toml");
    let fleet = examples().join("farm.fleet.toml");
    let output = hashsplit(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--fleet",
        fleet.to_str().unwrap(),
        "--duration",
        "40m",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let object = json.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cap_violations",
            "infeasible_seconds",
            "miners",
            "pools",
            "switches"
        ]
    );
    assert_eq!(json["miners"], 33);
    assert_eq!(json["cap_violations"], 0);
    assert!(json["switches"].is_u64());
    assert!(json["infeasible_seconds"].is_f64());
    let pools = json["pools"].as_array().expect("pools array");
    let names: Vec<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ocean", "braiins", "pool-c", "pool-d"]);
    for pool in pools {
        let mut keys: Vec<&str> = pool
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cap",
                "fallback",
                "max_window_share",
                "name",
                "share",
                "switches",
                "target"
            ]
        );
        assert!(pool["share"].as_f64().unwrap() <= 1.0);
    }
    assert_eq!(pools[0]["cap"], 0.4);
}

#[test]
fn simulate_prints_a_table_by_default() {
    let config = examples().join("solo.toml");
    let fleet = examples().join("solo.fleet.toml");
    let output = hashsplit(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--fleet",
        fleet.to_str().unwrap(),
        "--duration",
        "30m",
    ]);
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("pool "), "{table}");
    assert!(table.contains("max window"), "{table}");
    assert!(table.contains("1 miners"), "{table}");
}

#[test]
fn check_prints_every_problem_with_line_and_column_and_fails() {
    let dir = std::env::temp_dir().join(format!("hashsplit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nope\"\n\n[policy]\nmax_share = 2\n\n[[pool]]\nname = \"a\"\n\
         url = \"stratum+tcp://a.example:3333\"\nuser = \"u\"\n",
    )
    .unwrap();
    let output = hashsplit(&["check", "--config", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:2:10: server.listen:"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:5:13: policy.max_share:"),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn check_summarises_a_valid_config() {
    let config = examples().join("network.toml");
    let output = hashsplit(&["check", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.starts_with("config ok: 3 pools"), "{summary}");
    assert!(summary.contains("avoided: network share"), "{summary}");
}

#[test]
fn check_reads_the_network_section_with_line_and_column() {
    let dir = std::env::temp_dir().join(format!("hashsplit-cli-network-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pools = "[policy]\nmax_network_share = 0.2\n\n[[pool]]\nname = \"ocean\"\n\
                 url = \"stratum+tcp://o.example:3333\"\nuser = \"u\"\n\n";
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "{pools}[network]\nsource = \"ftp://pools.example/week\"\nrefresh = \"1h\"\n\
             max_age = \"10m\"\n[network.names]\nocaen = \"OCEAN\"\n"
        ),
    )
    .unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "{pools}[network]\nsource = \"https://pools.example/week\"\n\
             [network.names]\nocean = \"OCEAN\"\n"
        ),
    )
    .unwrap();
    let refused = hashsplit(&["check", "--config", bad.to_str().unwrap()]);
    let accepted = hashsplit(&["check", "--config", good.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();

    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    for wanted in [
        "bad.toml:10:10: network.source: source \"ftp://pools.example/week\" must start with http:// or https://",
        "bad.toml:12:11: network.max_age: max_age 600s must be at least refresh (3600s)",
        "bad.toml:14:9: network.names.ocaen: there is no [[pool]] named \"ocaen\"",
        "3 error(s)",
    ] {
        assert!(stderr.contains(wanted), "{wanted}\n{stderr}");
    }

    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let summary = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        summary.contains(
            "network shares from https://pools.example/week every 3600s, stale after 10800s"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("looked up as: ocean = \"OCEAN\""),
        "{summary}"
    );
}

#[test]
fn simulate_reports_fleet_problems_with_their_lines_and_fails() {
    let dir = std::env::temp_dir().join(format!("hashsplit-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fleet.toml");
    std::fs::write(
        &path,
        "[[miner]]\nname = \"a\"\nhashrate = \"1TH/s\"\n[[event]]\nat = \"5m\"\npool_down = \"nowhere\"\n",
    )
    .unwrap();
    let config = examples().join("solo.toml");
    let output = hashsplit(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--fleet",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fleet.toml:6:13: event[0].pool_down: no pool named"),
        "{stderr}"
    );
}

#[test]
fn the_demo_mines_through_the_proxy_and_prints_its_tables() {
    // The README's first command, shortened.
    let output = hashsplit(&["demo", "--duration", "12s", "--every", "4s"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 simulated pools, 12 simulated miners"),
        "{stdout}"
    );
    let rows = |pool: &str| {
        stdout
            .lines()
            .filter(|line| line.trim_start().starts_with(&format!("{pool} ")))
            .count()
    };
    let tables = rows("big-pool");
    assert!(
        tables >= 3,
        "a table every 4 s and one at the end: {stdout}"
    );
    assert_eq!(
        (rows("mid-pool"), rows("small-pool")),
        (tables, tables),
        "{stdout}"
    );
    let last = stdout
        .lines()
        .find(|line| line.starts_with("miners: "))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let accepted: u64 = last
        .trim_start_matches("miners: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable summary {last:?}"));
    assert!(accepted > 0, "{last}");
    assert!(last.ends_with(", 0 rejected, 0 reconnects"), "{last}");
}
