//! What the status page and the read API show, kept by one task.
//!
//! Every [`POLL`] the task reads the plan (the policy task's watch), the
//! config in force (the reload path's watch) and one gather of the
//! metrics, and publishes a [`Snapshot`] on a watch: each pool's row, a
//! ring of samples of each pool's share (one every `sample_every`, an hour
//! at the default 10 s) and a bounded ring of events it saw happen (pools
//! going up or down, miners moved, reloads, block candidates). Readers load
//! the latest snapshot; nothing here is shared behind a lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashsplit_policy::Assignment;
use prometheus::proto::{MetricFamily, MetricType};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;

/// How often the snapshot is refreshed.
pub const POLL: Duration = Duration::from_secs(1);
/// Default time between two samples of the chart.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: an hour at the default interval.
pub const SAMPLES: usize = 360;
/// Events kept.
pub const EVENTS: usize = 200;

/// One pool as the page and `/api/v1/pools` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolRow {
    /// Its name from the config.
    pub name: String,
    /// `host:port`.
    pub url: String,
    /// `up`, `down`, `quarantined` (connected, but refusing nearly every
    /// share) or `disabled` (`enabled = false` in the config).
    pub state: &'static str,
    /// Its cap (its `max_share`, or `[policy] max_share`).
    pub cap: f64,
    /// Its weight.
    pub weight: f64,
    /// Its share of the Bitcoin network, if configured.
    pub network_share: Option<f64>,
    /// Whether the policy avoids it for its network share.
    pub avoided: bool,
    /// The share the policy aims for now.
    pub target: f64,
    /// How far below the cap the policy holds it for estimate noise.
    pub margin: f64,
    /// Its share over the policy's window, by the policy's accounting.
    pub window_share: f64,
    /// Its share of the difficulty credited since the proxy started.
    pub run_share: f64,
    /// Miners on it now.
    pub miners: usize,
    /// Their estimated hashrate, H/s.
    pub hashrate: f64,
    /// Miners moved onto it since the proxy started.
    pub switches: u64,
    /// Mean time for the pool to answer a share over the last sample
    /// (since the start if it answered none since), in milliseconds.
    pub latency_ms: Option<f64>,
    /// Seconds since its last job.
    pub last_job_age_seconds: Option<f64>,
    /// Block candidates found on it.
    pub block_candidates: u64,
}

/// One point of the chart: each pool's shares at time `t`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the proxy started.
    pub t: f64,
    /// Wall-clock time, seconds since the Unix epoch.
    pub unix: f64,
    /// By pool name.
    pub pools: BTreeMap<String, PoolSample>,
}

/// A pool's figures in a [`Sample`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PoolSample {
    /// Its cap.
    pub cap: f64,
    /// The policy's target.
    pub target: f64,
    /// Its share over the policy's window.
    pub window: f64,
    /// Its share since the start.
    pub run: f64,
}

/// Something the page lists under "recent events".
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Wall-clock time, seconds since the Unix epoch.
    pub unix: f64,
    /// `pool-up`, `pool-down`, `switch`, `reload`, `reload-refused`,
    /// `block-candidate`, `stale-block-candidate`, or for a node pool
    /// `block-accepted` / `block-refused` (its node's answer to
    /// `submitblock`).
    pub kind: &'static str,
    /// The pool it is about, if one.
    pub pool: Option<String>,
    /// What happened, for people.
    pub message: String,
}

/// What readers load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Seconds between samples.
    pub sample_every: f64,
    /// Seconds since the proxy started.
    pub uptime_seconds: f64,
    /// The pools in the config in force, in file order, disabled ones last.
    pub pools: Vec<PoolRow>,
    /// Oldest first.
    pub samples: VecDeque<Sample>,
    /// Oldest first.
    pub events: VecDeque<Event>,
}

/// The sources the history task reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The proxy's metrics.
    pub metrics: Metrics,
    /// The latest plan.
    pub assignment: watch::Receiver<Arc<Assignment>>,
    /// The config in force.
    pub config: watch::Receiver<Arc<Config>>,
}

/// Starts the task; returns the watch its snapshots are published on.
pub fn spawn(
    sources: Sources,
    sample_every: Duration,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> watch::Receiver<Arc<Snapshot>> {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let mut config = sources.config.clone();
    let mut keeper = Keeper::new(sources, sample_every);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(POLL.min(sample_every));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                // A reload shows at once, not at the next poll.
                Ok(()) = config.changed() => {}
            }
            keeper.poll();
            tx.send_replace(Arc::new(keeper.snapshot.clone()));
        }
    });
    rx
}

/// A pool's counters at the previous poll.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    up: bool,
    switches: u64,
    blocks: f64,
    stale_blocks: f64,
    /// Blocks a node pool submitted: accepted, and refused or undelivered.
    node_blocks: (f64, f64),
    /// Submit-latency histogram sum and count at the last sample.
    latency: (f64, f64),
    latency_ms: Option<f64>,
}

struct Keeper {
    sources: Sources,
    sample_every: Duration,
    start: Instant,
    next_sample: Instant,
    seen: HashMap<String, Seen>,
    /// Miners moved onto each pool since the last switch event.
    moved: BTreeMap<String, u64>,
    reloads: (f64, f64),
    snapshot: Snapshot,
}

impl Keeper {
    fn new(sources: Sources, sample_every: Duration) -> Self {
        let start = Instant::now();
        Keeper {
            sources,
            sample_every,
            start,
            next_sample: start,
            seen: HashMap::new(),
            moved: BTreeMap::new(),
            reloads: (0.0, 0.0),
            snapshot: Snapshot {
                sample_every: sample_every.as_secs_f64(),
                ..Snapshot::default()
            },
        }
    }

    fn poll(&mut self) {
        let plan = Arc::clone(&self.sources.assignment.borrow());
        let config = Arc::clone(&self.sources.config.borrow());
        let gathered = Gathered(self.sources.metrics.registry().gather());
        let now = Instant::now();
        let unix = unix_now();
        let sampling = now >= self.next_sample;
        if sampling {
            self.next_sample = now + self.sample_every;
        }

        let credited: HashMap<&str, f64> = config
            .policy
            .pools
            .iter()
            .map(|pool| {
                let work = gathered.value(
                    "hashsplit_credited_difficulty_total",
                    &[("pool", &pool.name), ("result", "accepted")],
                );
                (pool.name.as_str(), work)
            })
            .collect();
        let credited_total: f64 = credited.values().sum();

        let mut rows = Vec::new();
        for (index, pool) in config.policy.pools.iter().enumerate() {
            let name = pool.name.as_str();
            let row = plan.pools.iter().find(|row| row.name == name);
            let up = gathered.value("hashsplit_pool_up", &[("pool", name)]) > 0.0;
            let quarantined =
                !up && gathered.value("hashsplit_pool_quarantined", &[("pool", name)]) > 0.0;
            let blocks = gathered.value("hashsplit_block_candidates_total", &[("pool", name)]);
            let stale_blocks =
                gathered.value("hashsplit_block_candidates_stale_total", &[("pool", name)]);
            let latency = gathered.histogram("hashsplit_upstream_submit_seconds", name);
            let last_job = gathered.value(
                "hashsplit_upstream_last_job_timestamp_seconds",
                &[("pool", name)],
            );
            let switches = row.map_or(0, |row| row.switches);
            let seen = self.seen.entry(pool.name.clone()).or_default();
            if up != seen.up {
                let (kind, message) = if up {
                    ("pool-up", format!("{name} is up"))
                } else if quarantined {
                    (
                        "pool-down",
                        format!("{name} is quarantined: it refuses nearly every share"),
                    )
                } else {
                    ("pool-down", format!("{name} is down"))
                };
                push_event(&mut self.snapshot.events, unix, kind, Some(name), message);
            }
            if switches > seen.switches {
                *self.moved.entry(pool.name.clone()).or_default() += switches - seen.switches;
            }
            if blocks > seen.blocks {
                let message = format!("block candidate found on {name}");
                push_event(
                    &mut self.snapshot.events,
                    unix,
                    "block-candidate",
                    Some(name),
                    message,
                );
            }
            if stale_blocks > seen.stale_blocks {
                let message = format!("block candidate on a stale job of {name} (lost)");
                push_event(
                    &mut self.snapshot.events,
                    unix,
                    "stale-block-candidate",
                    Some(name),
                    message,
                );
            }
            let node_blocks = (
                gathered.value(
                    "hashsplit_blocks_submitted_total",
                    &[("pool", name), ("result", "accepted")],
                ),
                gathered.value("hashsplit_blocks_submitted_total", &[("pool", name)]),
            );
            let node_blocks = (node_blocks.0, node_blocks.1 - node_blocks.0);
            if node_blocks.0 > seen.node_blocks.0 {
                let message = format!("block accepted by {name}'s node");
                push_event(
                    &mut self.snapshot.events,
                    unix,
                    "block-accepted",
                    Some(name),
                    message,
                );
            }
            if node_blocks.1 > seen.node_blocks.1 {
                let message = format!("block refused by, or not delivered to, {name}'s node");
                push_event(
                    &mut self.snapshot.events,
                    unix,
                    "block-refused",
                    Some(name),
                    message,
                );
            }
            seen.node_blocks = node_blocks;
            if sampling {
                let (sum, count) = latency;
                let recent = (count > seen.latency.1)
                    .then(|| (sum - seen.latency.0) / (count - seen.latency.1));
                let overall = (count > 0.0).then(|| sum / count);
                seen.latency_ms = recent.or(overall).map(|s| s * 1000.0);
                seen.latency = latency;
            }
            seen.up = up;
            seen.switches = switches;
            seen.blocks = blocks;
            seen.stale_blocks = stale_blocks;
            let cap = config.policy.cap(hashsplit_policy::PoolId(index)).get();
            rows.push(PoolRow {
                name: pool.name.clone(),
                url: pool.url.to_string(),
                state: if up {
                    "up"
                } else if quarantined {
                    "quarantined"
                } else {
                    "down"
                },
                cap,
                weight: pool.weight,
                network_share: pool.network_share.map(|s| s.get()),
                avoided: row.is_some_and(|row| row.avoided),
                target: row.map_or(0.0, |row| row.target),
                margin: row.map_or(0.0, |row| row.margin),
                window_share: row.map_or(0.0, |row| row.delivered),
                run_share: share(credited[name], credited_total),
                miners: row.map_or(0, |row| row.miners),
                hashrate: row.map_or(0.0, |row| row.hashrate.as_hashes_per_sec()),
                switches,
                latency_ms: seen.latency_ms,
                last_job_age_seconds: (last_job > 0.0).then(|| (unix - last_job).max(0.0)),
                block_candidates: blocks as u64,
            });
        }
        for pool in &config.policy.disabled {
            rows.push(PoolRow {
                name: pool.name.clone(),
                url: pool.url.to_string(),
                state: "disabled",
                cap: pool
                    .max_share
                    .unwrap_or(config.policy.config.max_share)
                    .get(),
                weight: pool.weight,
                network_share: pool.network_share.map(|s| s.get()),
                avoided: false,
                target: 0.0,
                margin: 0.0,
                window_share: 0.0,
                run_share: 0.0,
                miners: 0,
                hashrate: 0.0,
                switches: 0,
                latency_ms: None,
                last_job_age_seconds: None,
                block_candidates: 0,
            });
        }
        // Moves are many on a busy farm: one event a sample says them all.
        if sampling && !self.moved.is_empty() {
            let moved: Vec<String> = std::mem::take(&mut self.moved)
                .into_iter()
                .map(|(pool, n)| format!("{n} to {pool}"))
                .collect();
            let message = format!("miners moved: {}", moved.join(", "));
            push_event(&mut self.snapshot.events, unix, "switch", None, message);
        }
        let applied = gathered.value("hashsplit_config_reloads_total", &[("result", "applied")]);
        let refused = gathered.value("hashsplit_config_reloads_total", &[("result", "rejected")]);
        if applied > self.reloads.0 {
            let message = "config reloaded".to_owned();
            push_event(&mut self.snapshot.events, unix, "reload", None, message);
        }
        if refused > self.reloads.1 {
            let message = "config reload refused: the file is invalid".to_owned();
            push_event(
                &mut self.snapshot.events,
                unix,
                "reload-refused",
                None,
                message,
            );
        }
        self.reloads = (applied, refused);

        let t = now.duration_since(self.start).as_secs_f64();
        if sampling {
            let pools = rows
                .iter()
                .filter(|row| row.state != "disabled")
                .map(|row| {
                    let sample = PoolSample {
                        cap: row.cap,
                        target: row.target,
                        window: row.window_share,
                        run: row.run_share,
                    };
                    (row.name.clone(), sample)
                })
                .collect();
            if self.snapshot.samples.len() == SAMPLES {
                self.snapshot.samples.pop_front();
            }
            self.snapshot.samples.push_back(Sample { t, unix, pools });
        }
        self.snapshot.uptime_seconds = t;
        self.snapshot.pools = rows;
    }
}

fn share(part: f64, total: f64) -> f64 {
    if total > 0.0 { part / total } else { 0.0 }
}

fn push_event(
    events: &mut VecDeque<Event>,
    unix: f64,
    kind: &'static str,
    pool: Option<&str>,
    message: String,
) {
    if events.len() == EVENTS {
        // Rarer events (a pool down, a block) outlive the many moves.
        let oldest_move = events.iter().position(|e| e.kind == "switch");
        events.remove(oldest_move.unwrap_or(0));
    }
    events.push_back(Event {
        unix,
        kind,
        pool: pool.map(str::to_owned),
        message,
    });
}

/// Seconds since the Unix epoch (the clock people read; the chart's own
/// axis is time since start).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One gather of the registry, read many times.
struct Gathered(Vec<MetricFamily>);

impl Gathered {
    fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.0.iter().find(|family| family.name() == name)
    }

    /// Returns the sum of the counter or gauge samples carrying `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(family) = self.family(name) else {
            return 0.0;
        };
        let counter = family.get_field_type() == MetricType::COUNTER;
        family
            .get_metric()
            .iter()
            .filter(|sample| has_labels(sample, labels))
            .map(|sample| {
                if counter {
                    sample.get_counter().get_value()
                } else {
                    sample.get_gauge().get_value()
                }
            })
            .sum()
    }

    /// Returns a pool's histogram sum and count.
    fn histogram(&self, name: &str, pool: &str) -> (f64, f64) {
        let Some(family) = self.family(name) else {
            return (0.0, 0.0);
        };
        family
            .get_metric()
            .iter()
            .filter(|sample| has_labels(sample, &[("pool", pool)]))
            .map(|sample| {
                let h = sample.get_histogram();
                (h.get_sample_sum(), h.get_sample_count() as f64)
            })
            .fold((0.0, 0.0), |(s, c), (s2, c2)| (s + s2, c + c2))
    }
}

fn has_labels(sample: &prometheus::proto::Metric, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(name, value)| {
        sample
            .get_label()
            .iter()
            .any(|l| l.name() == *name && l.value() == *value)
    })
}

#[cfg(test)]
mod tests {
    use hashsplit_policy::Engine;

    use super::*;

    fn sources() -> Sources {
        let text = "[policy]\nmax_share = 0.6\n\
            [[pool]]\nname = \"a\"\nurl = \"stratum+tcp://a.example:3333\"\nuser = \"u\"\n\
            [[pool]]\nname = \"b\"\nurl = \"stratum+tcp://b.example:3333\"\nuser = \"u\"\n\
            [[pool]]\nname = \"c\"\nurl = \"stratum+tcp://c.example:3333\"\nuser = \"u\"\n\
            enabled = false\n";
        let (config, _) = Config::from_toml_str(text).unwrap();
        let metrics = Metrics::new(&["a".into(), "b".into()]);
        let plan = Engine::new(config.policy.clone()).plan(hashsplit_policy::Instant::ZERO);
        Sources {
            metrics,
            assignment: watch::channel(Arc::new(plan)).1,
            config: watch::channel(Arc::new(config)).1,
        }
    }

    fn kinds(keeper: &Keeper) -> Vec<&'static str> {
        keeper.snapshot.events.iter().map(|e| e.kind).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_a_node_submitted_become_events_by_its_answer() {
        let sources = sources();
        let metrics = sources.metrics.clone();
        let b = metrics.pool_for_test("b");
        let mut keeper = Keeper::new(sources, SAMPLE_EVERY);
        keeper.poll();
        b.block_submitted(crate::metrics::BlockResult::Accepted);
        keeper.poll();
        b.block_submitted(crate::metrics::BlockResult::Rejected);
        b.block_submitted(crate::metrics::BlockResult::Error);
        keeper.poll();
        keeper.poll();
        assert_eq!(kinds(&keeper), ["block-accepted", "block-refused"]);
        assert_eq!(keeper.snapshot.events[0].pool.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn pools_going_up_and_blocks_become_events_and_rows_follow_the_metrics() {
        let sources = sources();
        let metrics = sources.metrics.clone();
        let mut keeper = Keeper::new(sources, SAMPLE_EVERY);
        keeper.poll();
        assert!(keeper.snapshot.events.is_empty());
        let states: Vec<_> = keeper.snapshot.pools.iter().map(|p| p.state).collect();
        assert_eq!(states, ["down", "down", "disabled"]);

        let pools = [metrics.pool_for_test("a"), metrics.pool_for_test("b")];
        pools[0].up.set(1);
        pools[0].block_candidates.inc();
        for (pool, credited) in pools.iter().zip([3.0, 1.0]) {
            pool.shares
                .submit(credited)
                .settle(crate::metrics::Outcome::AcceptedLocal);
        }
        keeper.poll();
        assert_eq!(kinds(&keeper), ["pool-up", "block-candidate"]);
        let a = &keeper.snapshot.pools[0];
        assert_eq!((a.state, a.block_candidates, a.run_share), ("up", 1, 0.75));
        assert_eq!(keeper.snapshot.pools[1].run_share, 0.25);

        pools[0].up.set(0);
        pools[0].quarantined.set(1);
        keeper.poll();
        assert_eq!(kinds(&keeper).last(), Some(&"pool-down"));
        assert_eq!(keeper.snapshot.pools[0].state, "quarantined");
    }

    #[tokio::test(start_paused = true)]
    async fn one_sample_per_interval_and_an_hour_of_them_at_most() {
        let mut keeper = Keeper::new(sources(), SAMPLE_EVERY);
        keeper.poll();
        keeper.poll();
        assert_eq!(
            keeper.snapshot.samples.len(),
            1,
            "polls between samples add none"
        );
        for _ in 0..SAMPLES + 20 {
            tokio::time::advance(SAMPLE_EVERY).await;
            keeper.poll();
        }
        assert_eq!(keeper.snapshot.samples.len(), SAMPLES);
        let samples = &keeper.snapshot.samples;
        let span = samples[SAMPLES - 1].t - samples[0].t;
        assert_eq!(span, (SAMPLES - 1) as f64 * SAMPLE_EVERY.as_secs_f64());
        // Enabled pools only.
        assert_eq!(samples[0].pools.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_full_ring_drops_the_oldest_move_before_rarer_events() {
        let mut events = VecDeque::new();
        push_event(&mut events, 0.0, "pool-down", Some("a"), "a is down".into());
        for i in 1..EVENTS {
            push_event(&mut events, i as f64, "switch", None, "moved".into());
        }
        push_event(&mut events, 1e6, "pool-up", Some("a"), "a is up".into());
        assert_eq!(events.len(), EVENTS);
        assert_eq!(events[0].kind, "pool-down");
        assert_eq!(events[1].unix, 2.0, "the oldest move went");
        assert_eq!(events[EVENTS - 1].kind, "pool-up");
    }
}
