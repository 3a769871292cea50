//! `hashsplit run` as a process: SIGHUP reloads the policy without dropping
//! a miner, an invalid file is refused with its problems logged, and
//! SIGTERM stops the proxy cleanly with exit code 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hashsplit_stratum::Difficulty;
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig, eventually};

/// The proxy's log lines, read on a thread, without colour codes.
struct Log(mpsc::Receiver<String>);

impl Log {
    fn of(child: &mut Child) -> Log {
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(strip_ansi(&line)).is_err() {
                    return;
                }
            }
        });
        Log(rx)
    }

    /// Returns the first line from now on that contains `needle`.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.0.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{name} {}", child.id())])
        .status()
        .expect("sh runs");
    assert!(status.success(), "kill -{name}");
}

fn write_config(path: &Path, pools: &[SocketAddr], pool0_lines: &str) {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [downstream]\nmin_difficulty = 0.000001\n\
         [policy]\nmax_share = 1.0\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n",
    );
    for (i, addr) in pools.iter().enumerate() {
        let extra = if i == 0 { pool0_lines } else { "" };
        text += &format!(
            "[[pool]]\nname = \"pool{i}\"\nurl = \"stratum+tcp://{addr}\"\nuser = \"proxy.rig\"\n{extra}\n"
        );
    }
    std::fs::write(path, text).expect("config written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_sigterm_stops_with_exit_code_0() {
    let pool_config = SimPoolConfig {
        difficulty: Difficulty::try_new(1e-5).unwrap(),
        ..SimPoolConfig::default()
    };
    let pools = [
        SimPool::start(pool_config.clone()).await.unwrap(),
        SimPool::start(pool_config).await.unwrap(),
    ];
    let addrs: Vec<SocketAddr> = pools.iter().map(SimPool::addr).collect();
    let dir = std::env::temp_dir().join(format!("hashsplit-signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hashsplit.toml");
    write_config(&path, &addrs, "");

    let mut child = Command::new(env!("CARGO_BIN_EXE_hashsplit"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("hashsplit starts");
    let log = Log::of(&mut child);
    let listening = log.wait_for("hashsplit listening for miners");
    let addr: SocketAddr = listening
        .split("listen=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"));

    let mut config = SimMinerConfig::new(addr, Profile::Asic, "m0");
    config.hashrate = Some(2e5);
    let miner = SimMiner::start(config);
    assert!(eventually(Duration::from_secs(15), || miner.stats().accepted > 0).await);

    write_config(&path, &addrs, "max_share = 0.3");
    signal(&child, "HUP");
    let reloaded = log.wait_for("config reloaded");
    assert!(reloaded.contains("pool0.max_share"), "{reloaded}");

    // An invalid file: every problem is logged with its place in the file,
    // and the proxy keeps running with the policy in force.
    write_config(&path, &addrs, "max_share = 2.0");
    signal(&child, "HUP");
    let problem = log.wait_for("max_share");
    assert!(problem.contains("hashsplit.toml:"), "{problem}");
    log.wait_for("config reload refused");

    let before = miner.stats().accepted;
    assert!(
        eventually(Duration::from_secs(10), || miner.stats().accepted > before).await,
        "the miner keeps mining through both reloads"
    );
    signal(&child, "TERM");
    let mut status = None;
    for _ in 0..300 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("hashsplit did not stop within 15 s of SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    log.wait_for("hashsplit stopped");
    let stats = miner.stop().await;
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    for pool in pools {
        pool.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
