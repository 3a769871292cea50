//! The soak's timeline: cycles of load and trouble, each ending at a quiet
//! point, with a check of the accounting invariant every minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use miner_sim::SimPool;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::chaos::{self, POOLS};
use crate::child::{Exposition, Proxy};
use crate::operator::{ConfigFile, Operator, Variant};
use crate::report::{self, Quiet, Summary};
use crate::traffic::{self, HostileCounts, MINER_HASHRATE, Miners};

/// How long a miner may take to be let in or to be turned away.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A block candidate about this often, at the average hashrate.
const BLOCK_EVERY: Duration = Duration::from_secs(180);
/// The longest a quiet point waits for miners to leave, shares to drain
/// and pools to be back.
const QUIET_WAIT: Duration = Duration::from_secs(150);

/// What to run.
pub struct Plan {
    pub total: Duration,
    pub cycle: Duration,
    pub base_miners: usize,
    pub wave_miners: usize,
}

/// One thing that happens at an offset into a cycle (in 300ths of it).
#[derive(Debug, Clone, Copy)]
enum Step {
    Join(usize),
    Leave(usize),
    Hostile,
    Fault { pool: usize, n: u64 },
    Clear { pool: usize },
    Sighup(Variant),
    Api(Variant),
}

struct Soak {
    plan: Plan,
    proxy: Proxy,
    pools: Vec<SimPool>,
    operator: Operator,
    miners: Miners,
    hostile: Arc<HostileCounts>,
    hostile_task: Option<JoinHandle<()>>,
    hostile_rounds: u64,
    started: Instant,
    next_minute: Instant,
    next_sample: Instant,
    failures: Vec<String>,
    violations: u64,
    peak_rss_kib: u64,
    /// The latest value of a counter per pool, and the sums of every
    /// increase seen (a removed pool's series start again).
    last_seen: BTreeMap<(&'static str, String), f64>,
    shares: f64,
    quiet: Vec<Quiet>,
    faults: u64,
    candidates: f64,
}

/// Runs the whole soak; returns whether every check passed.
pub async fn soak(plan: Plan) -> anyhow::Result<bool> {
    // Base miners all cycle long, three waves a fifth of it each.
    let average_miners = plan.base_miners as f64 + plan.wave_miners as f64 * 0.6;
    let pools = chaos::start_pools(average_miners * MINER_HASHRATE, BLOCK_EVERY).await?;
    let dir = std::env::temp_dir().join(format!("hashsplit-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the soak's folder")?;
    let config = ConfigFile::create(&dir, &pools, HANDSHAKE_TIMEOUT)?;
    let proxy = Proxy::start(&config.path, dir.join("hashsplit.log"))?;
    println!(
        "soak: hashsplit (pid {}, {} build) on {}, metrics on {}, log {}",
        proxy.pid(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        proxy.miners,
        proxy.http,
        proxy.log_path.display()
    );
    let now = Instant::now();
    let mut soak = Soak {
        plan,
        proxy,
        pools,
        operator: Operator::new(config),
        miners: Miners::default(),
        hostile: Arc::default(),
        hostile_task: None,
        hostile_rounds: 0,
        started: now,
        next_minute: now + Duration::from_secs(60),
        next_sample: now,
        failures: Vec::new(),
        violations: 0,
        peak_rss_kib: 0,
        last_seen: BTreeMap::new(),
        shares: 0.0,
        quiet: Vec::new(),
        faults: 0,
        candidates: 0.0,
    };
    soak.wait_for_quiet("start").await;
    if let Ok(before) = soak.read_quiet().await {
        println!(
            "soak: before any load rss_mib={:.1} fds={} tasks={}",
            before.rss_kib as f64 / 1024.0,
            before.fds,
            before.tasks
        );
    }
    let mut k = 0;
    while soak.started.elapsed() + soak.plan.cycle <= soak.plan.total + Duration::from_secs(30) {
        soak.cycle(k).await;
        k += 1;
    }
    let passed = soak.finish(&dir).await;
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(passed)
}

impl Soak {
    /// Returns the steps of cycle `k`, in order.
    fn steps(&self, k: u64) -> Vec<(u64, Step)> {
        let (base, wave) = (self.plan.base_miners, self.plan.wave_miners);
        let mut steps = vec![(0, Step::Join(base))];
        for w in 0..3 {
            steps.push((15 + 80 * w, Step::Join(wave)));
            steps.push((75 + 80 * w, Step::Leave(wave)));
        }
        for h in 0..9 {
            steps.push((30 * h, Step::Hostile));
        }
        for (at, n) in [(40, 2 * k), (150, 2 * k + 1)] {
            let pool = (n % POOLS.len() as u64) as usize;
            steps.push((at, Step::Fault { pool, n }));
            if let Some(lasts) = chaos::trouble(n).lasts {
                // Modes last their time, but end within the step's slot.
                let lasts = self.offset_of(lasts).min(90);
                steps.push((at + lasts, Step::Clear { pool }));
            }
        }
        steps.push((120, Step::Sighup(Variant::nth(2 * k))));
        steps.push((200, Step::Api(Variant::nth(2 * k + 1))));
        steps.sort_by_key(|(at, _)| *at);
        steps
    }

    /// Converts a duration to 300ths of a cycle.
    fn offset_of(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * 300.0 / self.plan.cycle.as_secs_f64()).ceil() as u64
    }

    async fn cycle(&mut self, k: u64) {
        let start = Instant::now();
        let cycle = self.plan.cycle;
        let at = move |offset: u64| start + cycle * offset as u32 / 300;
        for (offset, step) in self.steps(k) {
            self.wait_until(at(offset)).await;
            self.step(step).await;
        }
        self.wait_until(at(255)).await;
        self.quiet_point(k).await;
        self.wait_until(at(300)).await;
    }

    async fn step(&mut self, step: Step) {
        match step {
            Step::Join(n) => self.miners.join(self.proxy.miners, n),
            Step::Leave(n) => self.miners.leave(n).await,
            Step::Hostile => {
                if self
                    .hostile_task
                    .as_ref()
                    .is_none_or(JoinHandle::is_finished)
                {
                    self.hostile_rounds += 1;
                    self.hostile_task = Some(tokio::spawn(traffic::hostile_burst(
                        self.proxy.miners,
                        HANDSHAKE_TIMEOUT,
                        self.hostile_rounds,
                        Arc::clone(&self.hostile),
                    )));
                }
            }
            Step::Fault { pool, n } => {
                let trouble = chaos::trouble(n);
                println!("soak: pool {} gets {}", POOLS[pool], trouble.name);
                self.pools[pool].set_fault(trouble.fault);
                self.faults += 1;
            }
            Step::Clear { pool } => self.pools[pool].clear_faults(),
            Step::Sighup(variant) => self.sighup(variant),
            Step::Api(variant) => self.api(variant).await,
        }
    }

    fn sighup(&mut self, variant: Variant) {
        if let Err(e) = self.operator.sighup(&self.proxy, variant) {
            self.fail(format!("{e:#}"));
        }
    }

    async fn api(&mut self, variant: Variant) {
        for failure in self.operator.api(&self.proxy, variant).await {
            self.fail(failure);
        }
    }

    /// Sleeps until `deadline`, running the minute checks and samples that
    /// fall due meanwhile.
    async fn wait_until(&mut self, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= self.next_sample {
                self.next_sample = now + Duration::from_secs(10);
                self.sample().await;
            }
            if now >= self.next_minute {
                self.next_minute += Duration::from_secs(60);
                self.minute().await;
            }
            if now >= deadline {
                return;
            }
            let wake = deadline.min(self.next_sample).min(self.next_minute);
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Reads memory (for the peak) and the share counters.
    async fn sample(&mut self) {
        if let Ok(rss) = self.proxy.rss_kib() {
            self.peak_rss_kib = self.peak_rss_kib.max(rss);
        }
        if let Ok(metrics) = self.proxy.scrape().await {
            self.tally(&metrics);
        }
    }

    /// Adds what each pool's submitted and block candidate counters rose
    /// by since last time.
    fn tally(&mut self, metrics: &Exposition) {
        for (metric, total) in [
            ("hashsplit_shares_submitted_total", &mut self.shares),
            ("hashsplit_block_candidates_total", &mut self.candidates),
        ] {
            for (pool, value) in metrics.by_label(metric, "pool") {
                let last = self.last_seen.insert((metric, pool), value).unwrap_or(0.0);
                // A pool removed and added back counts from zero again.
                *total += if value >= last { value - last } else { value };
            }
        }
    }

    /// The minute check: the proxy runs, and the invariant holds.
    async fn minute(&mut self) {
        if let Some(status) = self.proxy.exited() {
            self.fail(format!("the proxy exited: {status}"));
            return;
        }
        let balanced = self.invariant().await;
        let minute = (self.started.elapsed().as_secs() + 30) / 60;
        let (rss, fds) = (
            self.proxy.rss_kib().unwrap_or(0),
            self.proxy.open_fds().unwrap_or(0),
        );
        match balanced {
            Ok(m) => println!(
                "soak: minute {minute} miners={} rss_mib={:.1} fds={fds} tasks={} submitted={} \
                 in_flight={} blocks={} pools_up={}",
                self.miners.len(),
                rss as f64 / 1024.0,
                m.sum("hashsplit_tasks", &[]),
                m.sum("hashsplit_shares_submitted_total", &[]),
                m.sum("hashsplit_shares_in_flight", &[]),
                m.sum("hashsplit_block_candidates_total", &[]),
                m.sum("hashsplit_pool_up", &[]),
            ),
            Err(e) => {
                self.violations += 1;
                self.fail(format!("minute {minute}: {e:#}"));
            }
        }
    }

    /// Scrapes until submitted = settled + in flight (a share being judged
    /// while the scrape reads can unbalance one scrape, never twenty).
    async fn invariant(&mut self) -> anyhow::Result<Exposition> {
        let mut last = String::new();
        for _ in 0..20 {
            let metrics = self.proxy.scrape().await?;
            let off = metrics.unaccounted();
            if off == 0.0 {
                self.tally(&metrics);
                return Ok(metrics);
            }
            last = format!(
                "submitted {} != settled {} + in flight {} (off by {off})",
                metrics.sum("hashsplit_shares_submitted_total", &[]),
                metrics.sum("hashsplit_shares_total", &[]),
                metrics.sum("hashsplit_shares_in_flight", &[]),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the accounting invariant did not hold in 20 scrapes: {last}")
    }

    /// Ends a cycle: everyone leaves, faults clear, the base config comes
    /// back; then shares in flight must drain and the proxy is measured.
    async fn quiet_point(&mut self, k: u64) {
        let everyone = self.miners.len();
        self.miners.leave(everyone).await;
        if let Some(task) = self.hostile_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
        for pool in &self.pools {
            pool.clear_faults();
        }
        self.sighup(Variant::BASE);
        let what = format!("quiet point {}", k + 1);
        self.wait_for_quiet(&what).await;
        match self.invariant().await {
            Ok(_) => {}
            Err(e) => {
                self.violations += 1;
                self.fail(format!("{what}: {e:#}"));
            }
        }
        match self.read_quiet().await {
            Ok(quiet) => {
                println!(
                    "soak: {what} at minute {} rss_mib={:.1} fds={} tasks={}",
                    self.started.elapsed().as_secs() / 60,
                    quiet.rss_kib as f64 / 1024.0,
                    quiet.fds,
                    quiet.tasks
                );
                self.quiet.push(quiet);
            }
            Err(e) => self.fail(format!("{what}: {e:#}")),
        }
    }

    /// Waits until no miner is connected, nothing is in flight and every
    /// pool is up.
    async fn wait_for_quiet(&mut self, what: &str) {
        let deadline = Instant::now() + QUIET_WAIT;
        let mut last = String::from("no scrape");
        while Instant::now() < deadline {
            if let Ok(m) = self.proxy.scrape().await {
                let (miners, in_flight, up) = (
                    m.sum("hashsplit_downstream_connections", &[]),
                    m.sum("hashsplit_shares_in_flight", &[]),
                    m.sum("hashsplit_pool_up", &[]),
                );
                if miners == 0.0 && in_flight == 0.0 && up == POOLS.len() as f64 {
                    return;
                }
                last = format!("{miners} miners connected, {in_flight} in flight, {up} pools up");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.fail(format!("{what}: not quiet within {QUIET_WAIT:?}: {last}"));
    }

    /// Reads memory, files and tasks; gives tasks and files that are on
    /// their way out (a retired pool's linger) a few seconds to end first.
    async fn read_quiet(&mut self) -> anyhow::Result<Quiet> {
        let reference = self.quiet.first().copied();
        let mut quiet = Quiet::default();
        for _ in 0..30 {
            let metrics = self.proxy.scrape().await?;
            anyhow::ensure!(
                metrics.has("hashsplit_tasks"),
                "the proxy exports no hashsplit_tasks"
            );
            quiet = Quiet {
                minute: self.started.elapsed().as_secs() / 60,
                rss_kib: self.proxy.rss_kib()?,
                fds: self.proxy.open_fds()?,
                tasks: metrics.sum("hashsplit_tasks", &[]),
            };
            match reference {
                Some(first) if quiet.fds > first.fds || quiet.tasks > first.tasks => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => break,
            }
        }
        self.peak_rss_kib = self.peak_rss_kib.max(quiet.rss_kib);
        Ok(quiet)
    }

    /// Compares the last quiet point with the first, checks what the
    /// proxy and the hostile clients counted, stops the proxy, and prints
    /// the summary.
    async fn finish(mut self, dir: &std::path::Path) -> bool {
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        match self.proxy.scrape().await {
            Ok(m) => {
                self.tally(&m);
                for failure in self.operator.check(&m) {
                    self.fail(failure);
                }
            }
            Err(e) => self.fail(format!("the last scrape: {e:#}")),
        }
        let hostile = Arc::clone(&self.hostile);
        for (count, what) in [
            (
                &hostile.not_disconnected,
                "clients sending garbage were not disconnected",
            ),
            (
                &hostile.idle_kept,
                "idle clients outlived the handshake timeout",
            ),
            (&hostile.unanswered, "bad lines got no answer"),
        ] {
            let n = count.load(Ordering::Relaxed);
            if n > 0 {
                self.fail(format!("{n} {what}"));
            }
        }
        if self.quiet.len() < 2 {
            self.fail("fewer than two quiet points were measured".into());
        }
        let mut summary = Summary {
            minutes,
            peak_rss_kib: self.peak_rss_kib,
            first: self.quiet.first().copied().unwrap_or_default(),
            rss_base: report::rss_baseline(&self.quiet).unwrap_or_default(),
            last: self.quiet.last().copied().unwrap_or_default(),
            shares: self.shares,
            invariant_violations: self.violations,
            failures: 0,
        };
        for failure in summary.growth_failures() {
            self.fail(failure);
        }
        let errors = self.proxy.log.errors.load(Ordering::Relaxed);
        let panics = self.proxy.log.panics.load(Ordering::Relaxed);
        if panics > 0 {
            self.fail(format!(
                "the proxy logged {panics} panics (see {})",
                dir.display()
            ));
        }
        if !self.proxy.stop(Duration::from_secs(15)).await {
            self.fail("the proxy did not exit 0 within 15 s of SIGINT".into());
        }
        let blocks: u64 = self.pools.iter().map(|p| p.stats().blocks_found).sum();
        for pool in std::mem::take(&mut self.pools) {
            pool.shutdown().await;
        }
        for failure in &self.failures {
            println!("soak: FAILED: {failure}");
        }
        let done = &self.miners.done;
        println!(
            "soak: miners submitted {} shares, {} accepted, {} rejected, {} reconnects; \
             {} hostile clients; {} pool faults; {} block candidates, {blocks} blocks at the pools; \
             {errors} error lines in the proxy's log",
            done.submitted,
            done.accepted,
            done.rejected,
            done.reconnects,
            hostile.clients.load(Ordering::Relaxed),
            self.faults,
            self.candidates,
        );
        summary.failures = self.failures.len();
        println!("{summary}");
        self.failures.is_empty()
    }

    fn fail(&mut self, failure: String) {
        eprintln!("soak: check failed: {failure}");
        self.failures.push(failure);
    }
}
