use super::*;

const POLICY: &str = r#"
[policy]
max_share = 0.34

[[pool]]
name = "a"
url = "stratum+tcp://a.example:3333"
user = "me"

[[pool]]
name = "b"
url = "stratum+tcp://b.example:3333"
user = "me"

[[pool]]
name = "c"
url = "stratum+tcp://c.example:3333"
user = "me"
"#;

#[test]
fn a_file_with_only_policy_and_pools_is_complete() {
    let (config, warnings) = Config::from_toml_str(POLICY).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.downstream, DownstreamConfig::default());
    assert_eq!(config.metrics, MetricsConfig::default());
    assert_eq!(config.server.listen.port(), 3333);
    assert_eq!(config.metrics.listen.to_string(), "127.0.0.1:9184");
    assert_eq!(config.downstream.version_mask, 0x1fff_e000);
    assert_eq!(config.policy.pools.len(), 3);
}

#[test]
fn every_section_can_be_set() {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:4000"
max_connections = 50
max_connections_per_ip = 5
handshake_timeout = "10s"
idle_timeout = "1h"
max_line_length = 4096
line_buffer_budget = 2097152
proxy_protocol = true

[downstream]
extranonce1_size = 2
extranonce2_size = 8
share_rate = 30
min_difficulty = 1
initial_difficulty = 1000
version_mask = "0x00ffe000"

[metrics]
listen = "0.0.0.0:9100"
per_worker = true
max_workers = 20
{POLICY}"#
    );
    let (config, _) = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:4000");
    assert_eq!(config.server.max_connections, 50);
    assert_eq!(config.server.handshake_timeout, Duration::from_secs(10));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(3600));
    assert_eq!(config.server.max_line_length, 4096);
    assert_eq!(config.server.line_buffer_budget, 2 << 20);
    assert_eq!(ServerConfig::default().line_buffer_budget, 16 << 20);
    let small = format!("[server]\nline_buffer_budget = 65536\n{POLICY}");
    let error = Config::from_toml_str(&small).unwrap_err();
    assert_eq!(error.errors[0].path, "server.line_buffer_budget");
    assert!(config.server.proxy_protocol);
    assert!(!ServerConfig::default().proxy_protocol);
    assert!(crate::simulate::check_summary(&config).contains("PROXY protocol header required"));
    assert_eq!(config.downstream.extranonce1_size, 2);
    assert_eq!(config.downstream.extranonce2_size, 8);
    assert_eq!(config.downstream.share_rate, 30.0);
    assert_eq!(config.downstream.version_mask, 0x00ff_e000);
    assert!(config.metrics.per_worker);
    assert_eq!(config.metrics.max_workers, 20);
}

#[test]
fn problems_in_every_section_are_reported_together_with_paths_and_lines() {
    let text = r#"[server]
listen = "not an address"
max_connections = 0

[downstream]
extranonce2_size = 9
min_difficulty = 10
initial_difficulty = 1

[metrics]
listen = "127.0.0.1:9184"
colour = "blue"

[policy]
window = "1m"
rebalance_every = "30s"

[[pool]]
name = "a"
url = "stratum+tcp://a.example:3333"
user = "me"
max_share = 2

[[pool]]
name = "b"
url = "stratum+tcp://b.example"
user = "me"

[surprise]
"#;
    let error = Config::from_toml_str(text).unwrap_err();
    let found: Vec<(&str, Option<(usize, usize)>)> = error
        .errors
        .iter()
        .map(|p| (p.path.as_str(), p.location))
        .collect();
    for expected in [
        ("server.listen", Some((2, 10))),
        ("server.max_connections", Some((3, 19))),
        ("downstream.extranonce2_size", Some((6, 20))),
        ("downstream.initial_difficulty", Some((8, 22))),
        ("metrics.colour", Some((12, 1))),
        ("policy.window", Some((15, 10))),
        ("pool[0].max_share", Some((22, 13))),
        ("pool[1].url", Some((26, 7))),
        ("surprise", Some((29, 2))),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    assert_eq!(error.errors.len(), 9, "{found:?}");
}

#[test]
fn a_syntax_error_is_reported_with_its_line() {
    let error = Config::from_toml_str("[server]\nlisten = \n").unwrap_err();
    assert_eq!(error.errors[0].location.map(|l| l.0), Some(2));
}

#[test]
fn a_narrow_extranonce1_for_max_connections_is_warned_about() {
    // 255 one-byte prefixes on each of at most 64 connections to a pool.
    let text = format!("[downstream]\nextranonce1_size = 1\n{POLICY}");
    let (_, warnings) = Config::from_toml_str(&text).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.path == "downstream.extranonce1_size" && w.message.contains("16320")),
        "{warnings:?}"
    );
    let text =
        format!("[server]\nmax_connections = 16000\n[downstream]\nextranonce1_size = 1\n{POLICY}");
    assert!(Config::from_toml_str(&text).unwrap().1.is_empty());
    // Two-byte prefixes take 100,000 miners in two connections a pool.
    let text = format!("[downstream]\nextranonce1_size = 2\n{POLICY}");
    assert!(Config::from_toml_str(&text).unwrap().1.is_empty());
    let text =
        format!("[downstream]\nextranonce1_size = 2\nminers_per_pool_connection = 1000\n{POLICY}");
    let (config, warnings) = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.downstream.miners_per_pool_connection, Some(1000));
    assert!(
        warnings.iter().any(|w| w.message.contains("64000")),
        "{warnings:?}"
    );
}

#[test]
fn difficulties_are_read_as_difficulties_and_a_subnormal_one_is_refused() {
    let text = format!("[downstream]\nmin_difficulty = 0.5\ninitial_difficulty = 2\n{POLICY}");
    let (config, _) = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.downstream.min_difficulty.as_f64(), 0.5);
    assert_eq!(config.downstream.initial_difficulty.as_f64(), 2.0);

    // Above zero, but its target overflows: refused where it is written,
    // not replaced later by a default.
    let text = format!("[downstream]\nmin_difficulty = 1e-310\n{POLICY}");
    let error = Config::from_toml_str(&text).unwrap_err();
    let problem = &error.errors[0];
    assert_eq!(problem.path, "downstream.min_difficulty");
    assert_eq!(problem.location, Some((2, 18)));
    assert!(
        problem.message.contains("at least 2.2250738585072014e-308"),
        "{problem}"
    );
}
