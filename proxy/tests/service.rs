//! hashsplit as a systemd service: the unit file in `dist/systemd` passes
//! `systemd-analyze verify`, and `hashsplit run` speaks sd_notify's
//! protocol on `NOTIFY_SOCKET` (ready, reloading, stopping, watchdog) as
//! `Type=notify` with `WatchdogSec=` expects.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hashsplit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo().join("dist/systemd/hashsplit.service"))
        .expect("dist/systemd/hashsplit.service");
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // verify checks that ExecStart's binary exists: point it at the one
    // cargo built, where the unit expects `cargo install` to put it.
    let dir = scratch("unit");
    let path = dir.join("hashsplit.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/hashsplit", env!("CARGO_BIN_EXE_hashsplit")),
    )
    .expect("unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify exits 0 on many problems it only warns about: any word about
    // the unit is a problem.
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("hashsplit.service"),
        "systemd-analyze verify complained:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

/// Returns the next notice, waiting at most 20 s (a bound, not a measure).
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("a notice from hashsplit within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn run_notifies_ready_reloading_stopping_and_pings_the_watchdog() {
    let dir = scratch("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let config = dir.join("hashsplit.toml");
    // The pool is a closed port: readiness does not wait for pools.
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [policy]\nmax_share = 1.0\n\
         [[pool]]\nname = \"p\"\nurl = \"stratum+tcp://127.0.0.1:9\"\nuser = \"u\"\n",
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashsplit"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hashsplit starts");

    assert_eq!(next(&socket), "READY=1");
    assert_eq!(next(&socket), "WATCHDOG=1");
    signal(&child, "HUP");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let notice = next(&socket);
        if notice != "WATCHDOG=1" {
            seen.push(notice);
        }
    }
    assert_eq!(seen, ["RELOADING=1", "READY=1"]);
    signal(&child, "TERM");
    let stopping = loop {
        let notice = next(&socket);
        if notice != "WATCHDOG=1" {
            break notice;
        }
    };
    assert_eq!(stopping, "STOPPING=1");
    let status = child.wait().expect("hashsplit exits");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
