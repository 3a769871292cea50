//! The status page in a real headless Chromium against a running farm:
//! the chart and every pool row render with live numbers. A screenshot is
//! left in `target/tmp/status-page.png`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); `CHROMIUM` names
//! another binary. Without one the test says so and passes, except under
//! CI (`CI` set), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::fast_policy;
use common::http::get;
use common::web::{LOW_DIFFICULTY, WebFarm, WebFarmSetup};

/// Longest a browser run may take (it is killed after).
const BROWSER_LIMIT: &str = "90";
/// Virtual time the page runs for: the first fetch and a refresh.
const VIRTUAL_MS: &str = "7000";

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
fn browse(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg(BROWSER_LIMIT)
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_MS}"))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the value of `name` in the tag starting at `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// Returns every start tag `<name ...>` in `dom`.
fn tags<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    dom.match_indices(&format!("<{name} "))
        .filter_map(|(at, _)| dom[at..].find('>').map(|end| &dom[at..at + end]))
        .collect()
}

/// Returns the text of cell `key` in the row of `pool`.
fn cell<'a>(dom: &'a str, pool: &str, key: &str) -> &'a str {
    let row_at = dom
        .find(&format!("<tr data-pool=\"{pool}\""))
        .unwrap_or_else(|| panic!("no row for {pool}"));
    let row = &dom[row_at..row_at + dom[row_at..].find("</tr>").expect("row ends")];
    let cell_at = row
        .find(&format!("data-k=\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} cell for {pool}: {row}"));
    let text = &row[cell_at..];
    let start = text.find('>').expect("cell tag ends") + 1;
    let end = text.find("</td>").expect("cell ends");
    &text[start..end]
}

fn percent(text: &str) -> f64 {
    text.strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_the_chart_and_every_pool_with_live_numbers() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium for this test (.ci/run installs it)"
        );
        eprintln!("no chromium on PATH (or CHROMIUM): status page test skipped");
        return;
    };
    // Three pools, one capped below its weight, and six miners.
    let farm = WebFarm::start(WebFarmSetup {
        pools: &["weight = 3.0\nmax_share = 0.4", "", ""],
        policy: &fast_policy(0.6),
        extra: LOW_DIFFICULTY,
        miners: 6,
        config_file: None,
    })
    .await;
    let http = farm.http;
    // A few samples, so the chart has lines to draw.
    for _ in 0..100 {
        let history = get(http, "/api/v1/history").await.json();
        if history["samples"].as_array().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let profile = std::env::temp_dir().join(format!("hashsplit-chromium-{}", std::process::id()));
    let url = format!("http://{http}/");
    let dom = {
        let (browser, profile, url) = (browser.clone(), profile.clone(), url.clone());
        tokio::task::spawn_blocking(move || browse(&browser, &profile, &url, &["--dump-dom"]))
            .await
            .unwrap()
    };

    let updated = tags(&dom, "span")
        .into_iter()
        .find(|tag| attribute(tag, "id") == Some("updated"))
        .expect("the updated stamp");
    assert_ne!(
        attribute(updated, "data-updated"),
        Some("0"),
        "the page never loaded the API: {dom}"
    );

    let mut miners_on_pools = 0;
    let mut run_total = 0.0;
    for (pool, cap) in [("pool0", 40.0), ("pool1", 60.0), ("pool2", 60.0)] {
        assert_eq!(cell(&dom, pool, "state"), "up");
        assert_eq!(percent(cell(&dom, pool, "cap")), cap);
        let target = percent(cell(&dom, pool, "target"));
        assert!(target > 0.0 && target <= cap, "{pool} target {target}");
        percent(cell(&dom, pool, "window"));
        run_total += percent(cell(&dom, pool, "run"));
        miners_on_pools += cell(&dom, pool, "miners").parse::<usize>().unwrap();
        assert!(cell(&dom, pool, "hashrate").ends_with("H/s"));
        assert_ne!(cell(&dom, pool, "lastjob"), "\u{2014}", "{pool} has jobs");
    }
    assert_eq!(miners_on_pools, 6, "every miner is on a pool");
    assert!(
        (run_total - 100.0).abs() < 0.5,
        "run shares add up: {run_total}"
    );

    // The chart: a share line and a cap line per pool, with several points.
    let lines = tags(&dom, "polyline");
    for pool in ["pool0", "pool1", "pool2"] {
        for class in ["share", "cap"] {
            let line = lines
                .iter()
                .find(|tag| {
                    attribute(tag, "class") == Some(class)
                        && attribute(tag, "data-pool") == Some(pool)
                })
                .unwrap_or_else(|| panic!("no {class} line for {pool}: {dom}"));
            let points = attribute(line, "points").unwrap_or("").split(' ').count();
            assert!(points >= 2, "{class} line of {pool} has {points} points");
        }
    }
    assert!(
        dom.contains("data-kind=\"pool-up\""),
        "pool-up events listed"
    );
    // Each miner is listed by the worker name it authorized.
    for worker in ["m0", "m1", "m2", "m3", "m4", "m5"] {
        assert!(
            dom.contains(&format!("<td data-k=\"workers\">{worker}</td>")),
            "{worker} listed: {dom}"
        );
    }

    // A screenshot for people, as a test artifact.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let argument = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        browse(
            &browser,
            &profile,
            &url,
            &[&argument, "--window-size=1280,1500"],
        );
        std::fs::remove_dir_all(&profile).ok();
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());

    farm.stop().await;
}
