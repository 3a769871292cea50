//! The Grafana dashboards and the alert rules, checked without Grafana or
//! Prometheus: structure (unique uids and panel ids, every panel with the
//! `datasource` variable and a query, every variable defined) and every
//! metric they name being one the proxy exports. `grafana/verify.py` runs
//! the same queries against a live proxy.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hashsplit::metrics::{Metrics, PoolSeries};
use hashsplit::network::metrics::NetworkMetrics;
use serde_json::Value;

/// Variables Grafana defines itself.
const BUILTINS: [&str; 5] = [
    "__rate_interval",
    "__interval",
    "__range",
    "__range_s",
    "__all",
];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana")
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = grafana_dir().join("dashboards");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("${DS_"),
                "{name}: uses an import-time ${{DS_...}} input"
            );
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// Returns every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

fn datasource_is_the_variable(value: &Value) -> bool {
    value["type"] == "prometheus" && value["uid"] == "${datasource}"
}

/// Returns the names of the `$name` and `${name}` variables `text` uses.
fn variables_used(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

/// Returns every `hashsplit_...` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hashsplit_") {
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !preceded_by_word {
            names.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    names
}

/// Returns the names of every series the proxy can export, histogram
/// series included.
fn exported() -> HashSet<String> {
    let metrics = Metrics::new(&["a".into()]).with_per_worker(1);
    // A pool's families exist while the pool does: its owner registers them.
    let pool = PoolSeries::new("a");
    metrics.add_pool_series(&pool);
    let _worker = metrics.workers.join("rig");
    metrics.workers.credit("rig", 1.0, SystemTime::now());
    // Registered only with a [network] section.
    let network = NetworkMetrics::register(metrics.registry()).unwrap();
    network.share.with_label_values(&["a"]).set(0.1);
    let mut names = HashSet::new();
    for line in metrics.encode().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

#[test]
fn both_dashboards_exist_with_unique_uids() {
    let boards = dashboards();
    let names: Vec<&str> = boards.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["overview.json", "workers.json"]);
    let mut uids = HashSet::new();
    for (name, board) in &boards {
        let uid = board["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no uid"));
        assert!(!uid.is_empty() && uid.len() <= 40, "{name}: uid {uid:?}");
        assert!(uids.insert(uid.to_owned()), "{name}: uid {uid} used twice");
        assert!(board["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(board["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
        assert!(
            board.get("__inputs").is_none(),
            "{name}: import-time inputs"
        );
    }
}

#[test]
fn every_dashboard_picks_its_prometheus_through_a_datasource_variable() {
    for (name, board) in dashboards() {
        let variables = board["templating"]["list"].as_array().expect("templating");
        let datasource = variables
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(datasource["type"], "datasource", "{name}");
        assert_eq!(datasource["query"], "prometheus", "{name}");
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            assert!(
                datasource_is_the_variable(&variable["datasource"]),
                "{name}: variable {} does not query ${{datasource}}",
                variable["name"]
            );
        }
    }
}

#[test]
fn every_panel_has_the_datasource_and_a_query() {
    for (name, board) in dashboards() {
        let mut ids = HashSet::new();
        for panel in panels(&board) {
            let title = panel["title"].as_str().unwrap_or("?");
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {title}: no id"));
            assert!(ids.insert(id), "{name}: panel id {id} used twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
                "{name}: {title}: gridPos"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert!(
                datasource_is_the_variable(&panel["datasource"]),
                "{name}: {title}: datasource is not ${{datasource}}"
            );
            let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(!targets.is_empty(), "{name}: {title}: no query");
            let mut ref_ids = HashSet::new();
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(!expr.trim().is_empty(), "{name}: {title}: empty expr");
                assert!(
                    ref_ids.insert(target["refId"].as_str().unwrap_or("").to_owned()),
                    "{name}: {title}: refId twice"
                );
                if let Some(datasource) = target.get("datasource") {
                    assert!(datasource_is_the_variable(datasource), "{name}: {title}");
                }
            }
        }
    }
}

#[test]
fn every_variable_a_query_uses_is_defined() {
    for (name, board) in dashboards() {
        let defined: HashSet<String> = board["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .chain(BUILTINS.iter().map(|b| (*b).to_owned()))
            .collect();
        for panel in panels(&board) {
            let mut texts: Vec<&str> = panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str())
                .collect();
            texts.extend(panel["title"].as_str());
            if let Some(repeat) = panel["repeat"].as_str() {
                assert!(defined.contains(repeat), "{name}: repeats on ${repeat}");
            }
            for text in texts {
                for used in variables_used(text) {
                    assert!(defined.contains(&used), "{name}: ${used} in {text:?}");
                }
            }
        }
    }
}

#[test]
fn every_metric_the_dashboards_and_alerts_name_is_exported() {
    let exported = exported();
    let mut files: Vec<(String, String)> = dashboards()
        .into_iter()
        .map(|(name, board)| (name, board.to_string()))
        .collect();
    for rules in ["alerts.yml", "alerts.test.yml"] {
        let text = std::fs::read_to_string(grafana_dir().join(rules)).unwrap();
        files.push((rules.to_owned(), text));
    }
    for (name, text) in files {
        let named = metric_names(&text);
        assert!(!named.is_empty(), "{name}: names no metric");
        for metric in named {
            assert!(
                exported.contains(&metric),
                "{name}: {metric} is not exported"
            );
        }
    }
}

#[test]
fn the_helpers_find_what_they_look_for() {
    assert_eq!(
        variables_used(r#"rate(x{pool=~"$pool"}[$__rate_interval]) ${worker}"#),
        ["pool", "__rate_interval", "worker"]
    );
    let names = metric_names("sum(hashsplit_a_total) / my_hashsplit_b + hashsplit_c{x=\"y\"}");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["hashsplit_a_total", "hashsplit_c"]
    );
}
