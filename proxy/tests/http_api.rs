//! The JSON API over real TCP: the read endpoints show pools, miners and
//! events of a running farm; control requests need the bearer token, are
//! validated like the file, and are applied like SIGHUP without a miner
//! reconnecting.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fast_policy;
use common::http::{Reply, get, request};
use common::web::{LOW_DIFFICULTY, WebFarm, WebFarmSetup, eventually_async};
use miner_sim::eventually;
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

/// A farm of two pools and four miners, its config in a file, and the
/// HTTP server with the control API on (when `control`).
struct Farm {
    web: WebFarm,
    http: SocketAddr,
    file: PathBuf,
    dir: PathBuf,
}

impl Farm {
    async fn start(name: &str, control: bool) -> Farm {
        let dir = std::env::temp_dir().join(format!("hashsplit-api-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let http_section = if control {
            format!(
                "[http]\ntoken_file = {:?}\nwrite_config = true\n",
                token_file.display().to_string()
            )
        } else {
            String::new()
        };
        let file = dir.join("hashsplit.toml");
        let web = WebFarm::start(WebFarmSetup {
            pools: &["", ""],
            policy: &fast_policy(1.0),
            extra: &format!("{LOW_DIFFICULTY}\n{http_section}"),
            miners: 4,
            config_file: Some(file.clone()),
        })
        .await;
        Farm {
            http: web.http,
            web,
            file,
            dir,
        }
    }

    async fn pools(&self) -> Vec<Value> {
        let reply = get(self.http, "/api/v1/pools").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["pools"].as_array().unwrap().clone()
    }

    async fn patch(&self, pool: &str, token: Option<&str>, body: &str) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("Authorization", b)])
            .unwrap_or_default();
        let path = format!("/api/v1/pools/{pool}");
        request(self.http, "PATCH", &path, &headers, body).await
    }

    fn cap_in_policy(&self, pool: usize) -> f64 {
        self.web.bed.proxy.assignment().pools[pool].cap.get()
    }

    /// Miners disconnected by the proxy or reconnecting on their own.
    fn disconnects(&self) -> (f64, u64) {
        let metrics = self.web.bed.proxy.metrics();
        let dropped = metrics.sum("hashsplit_downstream_disconnects_total", &[]);
        let reconnects = self.web.miners.iter().map(|m| m.stats().reconnects).sum();
        (dropped, reconnects)
    }

    async fn stop(self) {
        self.web.stop().await;
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Asks the proxy to reload its config file through the control API.
async fn reload_by_api(farm: &Farm) -> Reply {
    request(
        farm.http,
        "POST",
        "/api/v1/reload",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await
}

fn file_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_show_the_running_farm() {
    let farm = Farm::start("read", false).await;
    let http = farm.http;

    // The snapshot is refreshed every second: wait for one with the pools up.
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            let pools = farm.pools().await;
            pools
                .iter()
                .all(|p| p["state"] == "up" && p["last_job_age_seconds"].is_number())
        })
        .await
    );
    let pools = farm.pools().await;
    let names: Vec<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pool0", "pool1"]);
    for pool in &pools {
        assert_eq!(pool["state"], "up", "{pool}");
        assert_eq!(pool["cap"], 1.0);
        for key in ["target", "window_share", "run_share", "hashrate"] {
            assert!(pool[key].is_number(), "{key}: {pool}");
        }
    }
    // Work is credited to the pools, so the shares since the start add up.
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            let pools = farm.pools().await;
            let run: f64 = pools.iter().map(|p| p["run_share"].as_f64().unwrap()).sum();
            (run - 1.0).abs() < 1e-9
        })
        .await
    );

    let status = get(http, "/api/v1/status").await.json();
    assert_eq!(status["miners_connected"], 4);
    assert_eq!(status["pools_up"], 2);
    assert_eq!(status["control"], false);

    let miners = get(http, "/api/v1/miners?limit=3").await.json();
    assert_eq!(miners["count"], 4);
    let listed = miners["miners"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{miners}");
    let mut workers = Vec::new();
    for miner in listed {
        assert!(names.contains(&miner["pool"].as_str().unwrap()), "{miner}");
        assert!(miner["hashrate"].as_f64().unwrap() > 0.0, "{miner}");
        // Each sim miner authorizes one worker, named m0, m1, ...
        assert_eq!(miner["worker_count"], 1, "{miner}");
        workers.push(miner["workers"][0].as_str().unwrap().to_owned());
    }
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 3, "three different workers: {workers:?}");
    assert!(
        workers
            .iter()
            .all(|w| ["m0", "m1", "m2", "m3"].contains(&w.as_str())),
        "{workers:?}"
    );

    let events = get(http, "/api/v1/events").await.json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|&&k| k == "pool-up").count(),
        2,
        "{events}"
    );

    assert!(
        eventually_async(Duration::from_secs(10), || async {
            let history = get(http, "/api/v1/history").await.json();
            history["samples"].as_array().unwrap().len() >= 2
        })
        .await
    );

    let page = get(http, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg id=\"chart\""));

    // Without [http] token_file the control API is off.
    let off = farm
        .patch("pool0", Some(TOKEN), r#"{"max_share": 0.5}"#)
        .await;
    assert_eq!(off.status, 403, "{}", off.body);
    assert_eq!(farm.cap_in_policy(0), 1.0);
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_token_validates_like_the_file_and_drops_no_miner() {
    let farm = Farm::start("control", true).await;
    let before = file_text(&farm.file);
    let unauthorized = || {
        farm.web
            .bed
            .proxy
            .metrics()
            .sum("hashsplit_api_unauthorized_total", &[])
    };

    // No token, a wrong one: 401, counted, nothing changed.
    let missing = farm.patch("pool0", None, r#"{"max_share": 0.2}"#).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    let wrong = farm
        .patch("pool0", Some("guess"), r#"{"max_share": 0.2}"#)
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(unauthorized(), 2.0);
    assert_eq!(farm.cap_in_policy(0), 1.0);
    assert_eq!(farm.pools().await[0]["cap"], 1.0);
    assert_eq!(file_text(&farm.file), before);

    // With the token: applied through the reload path, shown by the API
    // and planned with by the policy, and written to the file.
    let applied = farm
        .patch("pool0", Some(TOKEN), r#"{"max_share": 0.2}"#)
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    let answer = applied.json();
    let change = answer["changes"][0].as_str().unwrap_or("");
    assert!(change.starts_with("pool0.max_share: "), "{answer}");
    assert_eq!(answer["written"], true);
    // The reload is planned with at once; one rebalance_every (1 s) bounds it.
    assert!(eventually(Duration::from_secs(1), || farm.cap_in_policy(0) == 0.2).await);
    assert!(
        eventually_async(Duration::from_secs(1), || async {
            farm.pools().await[0]["cap"] == 0.2
        })
        .await
    );
    assert_eq!(
        farm.web
            .bed
            .proxy
            .metrics()
            .sum("hashsplit_policy_cap_ratio", &[("pool", "pool0")]),
        0.2
    );
    assert!(file_text(&farm.file).contains("max_share = 0.2"));

    // A value the file would refuse gets the same error, and changes nothing.
    let invalid = farm
        .patch("pool0", Some(TOKEN), r#"{"max_share": 1.5}"#)
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    let error = invalid.json()["errors"][0].as_str().unwrap().to_owned();
    assert!(
        error.ends_with("pool[0].max_share: must be in (0, 1], got 1.5"),
        "{error}"
    );
    assert_eq!(farm.cap_in_policy(0), 0.2);
    let unknown = farm.patch("nope", Some(TOKEN), r#"{"weight": 2}"#).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // Disable a pool: its miners move, nobody reconnects; enable it again.
    let off = farm
        .patch("pool1", Some(TOKEN), r#"{"enabled": false}"#)
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["changes"][0], "pool removed: pool1");
    assert!(
        eventually_async(Duration::from_secs(1), || async {
            farm.pools().await[1]["state"] == "disabled"
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            farm.web.bed.proxy.assignment().pools[1].miners == 0
        })
        .await
    );
    let on = farm
        .patch("pool1", Some(TOKEN), r#"{"enabled": true}"#)
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert!(
        on.json()["changes"][0]
            .as_str()
            .unwrap()
            .starts_with("pool added: pool1")
    );

    // The file, edited by hand, reloaded through the API.
    let edited = file_text(&farm.file).replace("max_share = 0.2", "max_share = 0.3");
    std::fs::write(&farm.file, edited).unwrap();
    let reload = reload_by_api(&farm).await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert!(eventually(Duration::from_secs(1), || farm.cap_in_policy(0) == 0.3).await);
    let metric =
        |name: &str, labels: &[(&str, &str)]| farm.web.bed.proxy.metrics().sum(name, labels);
    assert_eq!(metric("hashsplit_config_last_reload_successful", &[]), 1.0);

    // A broken file reloaded through the API is refused like a SIGHUP of
    // it: 422, counted as a rejected reload (the alert's input), and the
    // policy in force stays.
    let rejected = metric("hashsplit_config_reloads_total", &[("result", "rejected")]);
    let good = file_text(&farm.file);
    std::fs::write(
        &farm.file,
        good.replace("max_share = 0.3", "max_share = 3.0"),
    )
    .unwrap();
    let broken = reload_by_api(&farm).await;
    assert_eq!(broken.status, 422, "{}", broken.body);
    assert_eq!(
        metric("hashsplit_config_reloads_total", &[("result", "rejected")]),
        rejected + 1.0
    );
    assert_eq!(metric("hashsplit_config_last_reload_successful", &[]), 0.0);
    assert_eq!(farm.cap_in_policy(0), 0.3);
    std::fs::write(&farm.file, good).unwrap();

    assert_eq!(unauthorized(), 2.0);
    assert_eq!(farm.disconnects(), (0.0, 0), "no miner was dropped");
    farm.stop().await;
}
