//! Miners connecting and leaving in waves leave the proxy's memory where
//! it was: a farm whose machines reboot, or that reconnects after a
//! network blip, must not grow the proxy a little every time.
//!
//! Resident memory is read from `/proc/self/statm` (Linux), for this whole
//! test process: the proxy, the simulated pool and the miners' sockets.
//! The test runs itself again with `MALLOC_ARENA_MAX=1`: glibc gives
//! threads heaps of their own as they come and go, which steps resident
//! memory by a MiB or two at random (1 run in 4 failed on that alone) and
//! hides a leak of a KiB per miner; with one heap what the proxy keeps is
//! what shows.

mod common;

use std::time::Duration;

use hashsplit::Proxy;
use miner_sim::{SimPool, SimPoolConfig, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Miners per wave.
const WAVE: usize = 500;
/// Waves after the first (which sets the baseline).
const WAVES: usize = 12;
/// How far above the baseline memory may be after a wave has left. The
/// allocator settles over the first waves (3.1 to 3.3 MiB here, and it
/// varies with how many threads touched their own heaps); growth that does
/// not settle is the next bound's to catch.
const SLACK_BYTES: u64 = 6 << 20;
/// How much memory may grow between the waves of the second quarter and
/// those of the last, once the allocator has settled: the highest of the
/// second quarter against the lowest of the last, so a step does not trip
/// it and growth that goes on does. A leak of a kilobyte per miner adds
/// half a MiB a wave, 2.5 MiB between the two quarters.
const SETTLED_SLACK_BYTES: u64 = 1 << 20;
/// Linux's page size on x86-64 and most arm64 kernels.
const PAGE: u64 = 4096;

/// The variable that gives glibc's allocator one heap for all threads.
const ONE_HEAP: (&str, &str) = ("MALLOC_ARENA_MAX", "1");

#[test]
fn memory_returns_to_its_baseline_after_each_wave_of_miners() {
    if std::env::var(ONE_HEAP.0).as_deref() == Ok(ONE_HEAP.1) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(waves_of_miners());
        return;
    }
    // The allocator reads the variable when the process starts: run this
    // test again, alone, in a process that has it.
    let name = "memory_returns_to_its_baseline_after_each_wave_of_miners";
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(ONE_HEAP.0, ONE_HEAP.1)
        .status()
        .unwrap();
    assert!(status.success(), "the run with one heap failed: {status}");
}

async fn waves_of_miners() {
    let pool = SimPool::start(SimPoolConfig::default()).await.unwrap();
    // The policy remembers miners that left for one window (their work
    // still counts in it): a short window keeps that out of the figures.
    let policy = "[policy]\nmax_share = 1.0\nwindow = \"2s\"\nmin_dwell = \"500ms\"\n\
                  rebalance_every = \"500ms\"\n";
    let config = common::config(&format!(
        "{policy}\n{}",
        common::pool_entry(0, pool.addr(), "")
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(config, listener).unwrap();

    // The first wave grows the allocator's pools to what a wave needs.
    wave(&proxy).await;
    let baseline = resident_bytes();
    let mut peaks = Vec::new();
    let mut after = Vec::new();
    for _ in 0..WAVES {
        peaks.push(wave(&proxy).await);
        after.push(resident_bytes());
    }
    let mib = |bytes: &[u64]| {
        bytes
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / f64::from(1 << 20)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "resident MiB: baseline {}, peaks {}, after each wave {}",
        mib(&[baseline]),
        mib(&peaks),
        mib(&after)
    );
    for (i, &rss) in after.iter().enumerate() {
        assert!(
            rss <= baseline + SLACK_BYTES,
            "after wave {} of {WAVE} miners memory stayed {} KiB above its baseline \
             (peaks {}, after {} MiB)",
            i + 1,
            rss.saturating_sub(baseline) / 1024,
            mib(&peaks),
            mib(&after)
        );
    }
    let settled = *after[WAVES / 4..WAVES / 2].iter().max().unwrap();
    let late = *after[WAVES * 3 / 4..].iter().min().unwrap();
    assert!(
        late <= settled + SETTLED_SLACK_BYTES,
        "memory kept growing with churn: the last {} waves' lowest is {} KiB above the \
         second quarter's highest (after {} MiB)",
        WAVES / 4,
        late.saturating_sub(settled) / 1024,
        mib(&after)
    );
    proxy.shutdown(Duration::from_secs(2)).await;
    pool.shutdown().await;
}

/// Connects [`WAVE`] miners that each subscribe, authorize and get a job,
/// reads resident memory while they are all connected, disconnects them
/// and waits until the proxy has let every one go. Returns the peak.
async fn wave(proxy: &Proxy) -> u64 {
    let addr = proxy.local_addr();
    let mut connecting = Vec::new();
    for i in 0..WAVE {
        connecting.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let hello = format!(
                "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}}\n\
                 {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"rig{i}\",\"x\"]}}\n"
            );
            stream.write_all(hello.as_bytes()).await.unwrap();
            let mut lines = BufReader::new(&mut stream).lines();
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("mining.notify") {
                    break;
                }
            }
            stream
        }));
    }
    let mut miners = Vec::new();
    for handle in connecting {
        miners.push(handle.await.unwrap());
    }
    let metrics = proxy.metrics();
    assert_eq!(
        metrics.sum("hashsplit_downstream_connections", &[]),
        WAVE as f64
    );
    let peak = resident_bytes();
    drop(miners);
    let gone = eventually(Duration::from_secs(30), || {
        metrics.sum("hashsplit_downstream_connections", &[]) == 0.0
    })
    .await;
    assert!(gone, "every miner of the wave was let go");
    peak
}

/// Returns this process's resident memory.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's second field is resident pages");
    pages * PAGE
}
