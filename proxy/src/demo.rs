//! `hashsplit demo`: a whole farm on loopback, no internet.
//!
//! Three simulated pools, a dozen simulated miners of mixed firmware and
//! hashrate, and the proxy between them, with a policy whose cap binds:
//! one pool is weighted high but capped at 0.4. Every few seconds it prints
//! what each pool was promised and what it really got, measured at the
//! pools' own accounting.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use hashsplit_stratum::Difficulty;
use miner_sim::{Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::{Config, HttpOptions, Proxy, SHUTDOWN_DRAIN};

/// The worker name the proxy uses at every demo pool.
const POOL_USER: &str = "demo.proxy";

/// The demo pools: name, weight, extra TOML.
const POOLS: [(&str, &str); 3] = [
    ("big-pool", "weight = 3.0\nmax_share = 0.4"),
    ("mid-pool", "weight = 1.0"),
    ("small-pool", "weight = 1.0"),
];

/// The demo fleet: profile and hashrate (H/s). About 4 MH/s in all, so the
/// demo leaves a 2-core machine usable.
const FLEET: [(Profile, f64); 12] = [
    (Profile::Asic, 800e3),
    (Profile::Asic, 600e3),
    (Profile::Asic, 500e3),
    (Profile::Strict, 400e3),
    (Profile::Asic, 400e3),
    (Profile::Cpuminer, 300e3),
    (Profile::Asic, 300e3),
    (Profile::Strict, 200e3),
    (Profile::Cpuminer, 200e3),
    (Profile::Asic, 150e3),
    (Profile::Cpuminer, 100e3),
    (Profile::Asic, 50e3),
];

/// What the demo prints per pool, measured since the previous report.
struct Report {
    start: Instant,
    last: Vec<f64>,
}

/// Runs the demo until `stop` completes (Ctrl-C) or `duration` passes.
pub async fn run(
    duration: Option<Duration>,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let pool_config = SimPoolConfig {
        // Low enough that a few MH/s give several shares a second to measure.
        difficulty: Difficulty::try_new(1e-4).expect("positive"),
        job_interval: Duration::from_secs(10),
        clean_interval: Duration::from_secs(60),
        ..SimPoolConfig::default()
    };
    let mut pools = Vec::new();
    let mut toml = String::from(
        "[policy]\nmax_share = 0.5\nwindow = \"60s\"\nmin_dwell = \"6s\"\nrebalance_every = \"2s\"\n\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\n\
         [downstream]\nmin_difficulty = 0.000001\ninitial_difficulty = 0.0001\n\n",
    );
    for (name, extra) in POOLS {
        let pool = SimPool::start(pool_config.clone())
            .await
            .context("starting a simulated pool")?;
        let _ = writeln!(
            toml,
            "[[pool]]\nname = \"{name}\"\nurl = \"stratum+tcp://{}\"\nuser = \"{POOL_USER}\"\n{extra}\n",
            pool.addr()
        );
        pools.push(pool);
    }
    let config = match Config::from_toml_str(&toml) {
        Ok((config, _)) => config,
        Err(error) => anyhow::bail!("the demo's own config is invalid: {error:?}"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy = Proxy::start(config, listener)?;
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = metrics_listener.local_addr()?;
    // The chart samples every 2 s so it fills while you watch.
    proxy.serve_http(
        metrics_listener,
        HttpOptions {
            config_file: None,
            sample_every: Duration::from_secs(2),
        },
    )?;

    println!(
        "hashsplit demo: 3 simulated pools, {} simulated miners, all on 127.0.0.1",
        FLEET.len()
    );
    println!("  miners connect to   stratum+tcp://{}", proxy.local_addr());
    println!("  status page         http://{metrics_addr}/");
    println!("  metrics             http://{metrics_addr}/metrics");
    println!(
        "  policy              max_share 0.5; big-pool weight 3 but capped at 0.4, so targets near 0.4 / 0.3 / 0.3\n                      (each cap less a margin for hashrate-estimate noise, which shrinks as estimates mature)"
    );
    println!("  Ctrl-C to stop\n");

    let miners: Vec<SimMiner> = FLEET
        .iter()
        .enumerate()
        .map(|(i, &(profile, rate))| {
            let mut config =
                SimMinerConfig::new(proxy.local_addr(), profile, &format!("rig{i:02}"));
            config.hashrate = Some(rate);
            SimMiner::start(config)
        })
        .collect();

    let mut report = Report {
        start: Instant::now(),
        last: vec![0.0; pools.len()],
    };
    let deadline = duration.map(|d| Instant::now() + d);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = sleep_until_opt(deadline) => break,
            _ = tick.tick() => print!("{}", report.render(&proxy, &pools)),
        }
    }

    println!("\nstopping: miners, then the proxy (answers in flight first), then the pools");
    let mut reconnects = 0;
    let mut rejected = 0;
    let mut accepted = 0;
    for miner in miners {
        let stats = miner.stop().await;
        reconnects += stats.reconnects;
        rejected += stats.rejected;
        accepted += stats.accepted;
    }
    print!("{}", report.render(&proxy, &pools));
    println!("miners: {accepted} shares accepted, {rejected} rejected, {reconnects} reconnects");
    proxy.shutdown(SHUTDOWN_DRAIN).await;
    for pool in pools {
        pool.shutdown().await;
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The demo policy's window (`window = "60s"` above).
const DEMO_WINDOW: Duration = Duration::from_secs(60);

impl Report {
    /// Returns the table: the policy's view next to each pool's accounting.
    fn render(&mut self, proxy: &Proxy, pools: &[SimPool]) -> String {
        let plan = proxy.assignment();
        let metrics = proxy.metrics();
        let totals: Vec<f64> = pools
            .iter()
            .map(|p| p.stats().worker(POOL_USER).accepted_difficulty)
            .collect();
        let run_sum: f64 = totals.iter().sum();
        let recent: Vec<f64> = totals
            .iter()
            .zip(&self.last)
            .map(|(now, before)| now - before)
            .collect();
        let recent_sum: f64 = recent.iter().sum();
        self.last = totals.clone();

        let mut out = String::new();
        let _ = writeln!(
            out,
            "t={:>4}s  {:<11} {:>5} {:>7} {:>10} {:>9} {:>9} {:>7} {:>6}",
            self.start.elapsed().as_secs(),
            "pool",
            "cap",
            "target",
            "window*",
            "run**",
            "recent**",
            "miners",
            "moves"
        );
        for (i, row) in plan.pools.iter().enumerate() {
            let share = |part: f64, sum: f64| if sum > 0.0 { part / sum } else { 0.0 };
            let _ = writeln!(
                out,
                "         {:<11} {:>5.2} {:>7.3} {:>10.3} {:>9.3} {:>9.3} {:>7} {:>6}{}",
                row.name,
                row.cap.get(),
                row.target,
                row.delivered,
                share(totals[i], run_sum),
                share(recent[i], recent_sum),
                row.miners,
                metrics.sum("hashsplit_pool_switches_total", &[("pool", &row.name)]),
                if row.healthy { "" } else { "  DOWN" },
            );
        }
        let filling = self.start.elapsed() < DEMO_WINDOW;
        let _ = writeln!(
            out,
            "         * the policy's estimate over its window; ** measured at the pools (accepted difficulty){}{}\n",
            if filling {
                "\n         (the first 1-minute window is still filling, on young hashrate estimates: caps hold over full windows)"
            } else {
                ""
            },
            if plan.feasible {
                ""
            } else {
                "; caps INFEASIBLE"
            }
        );
        out
    }
}
