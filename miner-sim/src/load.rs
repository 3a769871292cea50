//! The load generator behind `miner-sim load`: N connections that submit
//! shares at a fixed total rate for a fixed time, and a report of what came
//! back (answers per second, latency from submit to answer, rejects by
//! reason, connection errors).
//!
//! Shares are searched for like a miner's, but with a budget of a few
//! hundred hashes: at a very low difficulty (every hash counts) each share
//! costs one hash, so the load measures the server, not the generator.
//! Shares the budget cannot find are counted as `unsolved`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, Difficulty, Id, Incoming, Job, LineCodec, Method, Response, ServerMethod,
    ShareContext, SubmitResult, SubscribeResult,
};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::client::submit_params;
use crate::scan::find_share;

/// Hashes tried for one share before it is given up as unsolved.
const SEARCH_BUDGET: u32 = 256;
/// How often each connection sends what its rate allows.
const TICK: Duration = Duration::from_millis(10);
/// How long a connection may take to connect, subscribe, authorize and get
/// a job.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections, shares a second and seconds a run may ask for.
const MAX_MINERS: usize = 10_000;
const MAX_RATE: f64 = 1_000_000.0;
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What load to put on a server.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The pool or proxy (loopback only).
    pub connect: SocketAddr,
    /// Connections to open.
    pub miners: usize,
    /// Shares a second over all connections.
    pub rate: f64,
    /// How long to submit.
    pub duration: Duration,
    /// Worker name prefix; connection `i` authorizes `user.i`.
    pub user: String,
    /// Submits awaiting an answer per connection before it holds back.
    pub max_in_flight: usize,
    /// How long to wait for the last answers after submitting stops.
    pub drain: Duration,
}

impl LoadConfig {
    /// Returns a config for `miners` connections at `rate` shares a second
    /// for `duration`.
    pub fn new(connect: SocketAddr, miners: usize, rate: f64, duration: Duration) -> Self {
        LoadConfig {
            connect,
            miners,
            rate,
            duration,
            user: "load".into(),
            max_in_flight: 1000,
            drain: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if !self.connect.ip().is_loopback() {
            return bad(format!("{} is not a loopback address", self.connect));
        }
        if !(1..=MAX_MINERS).contains(&self.miners) {
            return bad(format!("miners must be 1..={MAX_MINERS}"));
        }
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return bad(format!("rate must be in (0, {MAX_RATE}] shares/s"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad("duration must be in (0, 1 h]".into());
        }
        Ok(())
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The submitting window, seconds.
    pub duration_secs: f64,
    /// Connections that got to submitting.
    pub connections: usize,
    /// Connections that failed (to connect, to get ready, or later).
    pub connection_errors: u64,
    /// Connection errors by message.
    pub errors: BTreeMap<String, u64>,
    /// Shares sent.
    pub submitted: u64,
    /// Answers received.
    pub answered: u64,
    /// Answers that accepted.
    pub accepted: u64,
    /// Answers that refused.
    pub rejected: u64,
    /// Refusals by `code message`.
    pub rejects: BTreeMap<String, u64>,
    /// Shares never answered.
    pub unanswered: u64,
    /// Shares not found within the search budget (difficulty too high).
    pub unsolved: u64,
    /// Answers a second over the window.
    pub answered_per_sec: f64,
    /// Latency from submit to answer, microseconds: median.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile.
    pub latency_p99_us: Option<u64>,
    /// Slowest.
    pub latency_max_us: Option<u64>,
}

/// One connection's share of the report.
#[derive(Debug, Default)]
struct Tally {
    report: LoadReport,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.report.connection_errors += 1;
        *self.report.errors.entry(message).or_default() += 1;
    }
}

/// Runs the load and returns what it measured.
pub async fn run_load(config: LoadConfig) -> io::Result<LoadReport> {
    run_load_until(config, std::future::pending()).await
}

/// Runs the load until its duration is over or `stop` resolves (then the
/// connections stop submitting and drain their answers).
pub async fn run_load_until(
    config: LoadConfig,
    stop: impl Future<Output = ()>,
) -> io::Result<LoadReport> {
    config.validate()?;
    let config = Arc::new(config);
    let start = Instant::now();
    let end = start + config.duration;
    let stopping = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.miners {
        tasks.spawn(connection(config.clone(), index, end, stopping.clone()));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    let mut submitting_ended = None;
    tokio::pin!(stop);
    loop {
        let joined = tokio::select! {
            () = &mut stop, if !stopping.is_cancelled() => {
                stopping.cancel();
                submitting_ended = Some(Instant::now());
                continue;
            }
            joined = tasks.join_next() => joined,
        };
        let Some(joined) = joined else { break };
        let tally = joined.map_err(io::Error::other)?;
        merge(&mut report, tally.report);
        latencies.extend(tally.latencies_us);
    }
    let window = submitting_ended.map_or(config.duration, |at| at - start);
    report.duration_secs = window.as_secs_f64();
    report.answered_per_sec = report.answered as f64 / report.duration_secs.max(1e-3);
    latencies.sort_unstable();
    let at = |q: f64| {
        let last = latencies.len().checked_sub(1)?;
        latencies.get(((last as f64) * q).round() as usize).copied()
    };
    report.latency_p50_us = at(0.5);
    report.latency_p99_us = at(0.99);
    report.latency_max_us = latencies.last().copied();
    Ok(report)
}

fn merge(into: &mut LoadReport, from: LoadReport) {
    into.connections += from.connections;
    into.connection_errors += from.connection_errors;
    into.submitted += from.submitted;
    into.answered += from.answered;
    into.accepted += from.accepted;
    into.rejected += from.rejected;
    into.unanswered += from.unanswered;
    into.unsolved += from.unsolved;
    for (k, v) in from.errors {
        *into.errors.entry(k).or_default() += v;
    }
    for (k, v) in from.rejects {
        *into.rejects.entry(k).or_default() += v;
    }
}

/// The work a connection submits shares for.
struct Mining {
    job_id: String,
    job: Job,
    ntime: u32,
    difficulty: Difficulty,
}

/// One connection's submitting state.
struct Conn {
    lines: Framed<TcpStream, LineCodec>,
    subscribed: SubscribeResult,
    mining: Mining,
    user: String,
    tally: Tally,
    in_flight: HashMap<u64, Instant>,
    next_id: u64,
    pending_difficulty: Option<Difficulty>,
    extranonce2: u64,
    nonce: u32,
    budget: f64,
}

/// Runs one connection until `end`, then drains its answers.
async fn connection(
    config: Arc<LoadConfig>,
    index: usize,
    end: Instant,
    stopping: CancellationToken,
) -> Tally {
    let mut tally = Tally::default();
    let user = format!("{}.{index}", config.user);
    let ready = tokio::time::timeout(READY_TIMEOUT, get_ready(config.connect, &user)).await;
    let (lines, subscribed, mining) = match ready {
        Ok(Ok(ready)) => ready,
        Ok(Err(e)) => {
            tally.error(e.to_string());
            return tally;
        }
        Err(_) => {
            tally.error("not ready in time (connect, subscribe, authorize, first job)".into());
            return tally;
        }
    };
    tally.report.connections = 1;
    let mut conn = Conn {
        lines,
        subscribed,
        mining,
        user,
        tally,
        in_flight: HashMap::new(),
        next_id: 3,
        pending_difficulty: None,
        extranonce2: 0,
        nonce: 0,
        budget: 0.0,
    };
    let per_tick = config.rate / config.miners as f64 * TICK.as_secs_f64();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut drain_end = end + config.drain;
    loop {
        let submitting = Instant::now() < end && !stopping.is_cancelled();
        if !submitting && conn.in_flight.is_empty() {
            break;
        }
        let step = tokio::select! {
            () = tokio::time::sleep_until(drain_end) => break,
            () = stopping.cancelled(), if submitting => {
                drain_end = drain_end.min(Instant::now() + config.drain);
                Ok(())
            }
            _ = ticks.tick(), if submitting => conn.submit_due(per_tick, config.max_in_flight).await,
            line = conn.lines.next() => match line {
                Some(Ok(line)) => {
                    conn.on_line(&line);
                    Ok(())
                }
                Some(Err(e)) => Err(e.to_string()),
                None => Err("closed by the server".to_owned()),
            },
        };
        if let Err(e) = step {
            conn.tally.error(e);
            break;
        }
    }
    conn.tally.report.unanswered += conn.in_flight.len() as u64;
    conn.tally
}

impl Conn {
    /// Sends the shares the rate allows since the last tick.
    async fn submit_due(&mut self, per_tick: f64, max_in_flight: usize) -> Result<(), String> {
        // Never more than a second's worth at once after a stall.
        self.budget = (self.budget + per_tick).min(per_tick * 100.0 + 1.0);
        while self.budget >= 1.0 && self.in_flight.len() < max_in_flight {
            self.budget -= 1.0;
            // The counter in the low bytes, zero-padded in front to the
            // size the server gave (which may exceed 8 bytes).
            let size = self.subscribed.extranonce2_size;
            let counter = self.extranonce2.to_be_bytes();
            let mut en2 = vec![0u8; size];
            let low = size.min(counter.len());
            en2[size - low..].copy_from_slice(&counter[counter.len() - low..]);
            let en2 = &en2[..];
            let target = self.mining.difficulty.to_target();
            let ctx = ShareContext {
                extranonce1: &self.subscribed.extranonce1,
                version_mask: None,
                miner_target: target,
                pool_target: target,
            };
            let job = &self.mining.job;
            let found = find_share(job, &ctx, en2, self.mining.ntime, self.nonce, SEARCH_BUDGET);
            let Some((share, _)) = found else {
                self.tally.report.unsolved += 1;
                self.extranonce2 += 1;
                self.nonce = 0;
                continue;
            };
            match share.nonce.checked_add(1) {
                Some(next) => self.nonce = next,
                None => {
                    self.extranonce2 += 1;
                    self.nonce = 0;
                }
            }
            let submit = submit_params(&self.user, &self.mining.job_id, &share);
            let line = ClientMethod::Submit(submit).to_line(Id::from(self.next_id));
            self.lines.feed(line).await.map_err(|e| e.to_string())?;
            self.in_flight.insert(self.next_id, Instant::now());
            self.next_id += 1;
            self.tally.report.submitted += 1;
        }
        SinkExt::<String>::flush(&mut self.lines)
            .await
            .map_err(|e| e.to_string())
    }

    fn on_line(&mut self, line: &str) {
        match Incoming::<ServerMethod>::from_line(line) {
            Ok(Incoming::Response(r)) => {
                let sent = r.id.as_u64().and_then(|id| self.in_flight.remove(&id));
                if let Some(sent) = sent {
                    let latency = sent.elapsed().as_micros();
                    self.tally.latencies_us.push(latency as u64);
                    count_answer(&mut self.tally.report, &r);
                }
            }
            Ok(Incoming::Call {
                method: ServerMethod::SetDifficulty(d),
                ..
            }) => self.pending_difficulty = Some(d),
            Ok(Incoming::Call {
                method: ServerMethod::Notify(notify),
                ..
            }) => {
                let len = self.subscribed.extranonce1.len() + self.subscribed.extranonce2_size;
                if let Ok(job) = Job::from_notify(&notify, len) {
                    let difficulty = self.pending_difficulty.take();
                    self.mining = Mining {
                        job_id: notify.job_id,
                        job,
                        ntime: notify.ntime,
                        difficulty: difficulty.unwrap_or(self.mining.difficulty),
                    };
                }
            }
            _ => {}
        }
    }
}

fn count_answer(report: &mut LoadReport, response: &Response) {
    report.answered += 1;
    match SubmitResult::from_response(response) {
        Ok(SubmitResult::Accepted) => report.accepted += 1,
        Ok(SubmitResult::Rejected(e)) => {
            report.rejected += 1;
            *report
                .rejects
                .entry(format!("{} {}", e.code, e.message))
                .or_default() += 1;
        }
        Err(e) => {
            report.rejected += 1;
            *report.rejects.entry(e.to_string()).or_default() += 1;
        }
    }
}

type Ready = (Framed<TcpStream, LineCodec>, SubscribeResult, Mining);

/// Connects, subscribes, authorizes `user` and waits for the first job.
async fn get_ready(addr: SocketAddr, user: &str) -> io::Result<Ready> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut lines = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
    let subscribe = ClientMethod::Subscribe {
        user_agent: Some("miner-sim-load/1.0".into()),
        session_id: None,
    };
    let authorize = ClientMethod::Authorize {
        user: user.into(),
        password: Some("x".into()),
    };
    let send = |e: hashsplit_stratum::CodecError| io::Error::other(e);
    lines
        .send(subscribe.to_line(Id::from(1)))
        .await
        .map_err(send)?;
    lines
        .send(authorize.to_line(Id::from(2)))
        .await
        .map_err(send)?;
    let mut subscribed = None;
    let mut difficulty = Difficulty::ONE;
    loop {
        let line = lines
            .next()
            .await
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "closed while getting ready")
            })?
            .map_err(io::Error::other)?;
        match Incoming::<ServerMethod>::from_line(&line) {
            Ok(Incoming::Response(r)) if r.id == Id::from(1) => {
                let result = SubscribeResult::from_result(&r.result)
                    .map_err(|e| io::Error::other(format!("subscribe: {e}")))?;
                subscribed = Some(result);
            }
            Ok(Incoming::Response(r))
                if r.id == Id::from(2)
                    && !SubmitResult::from_response(&r).is_ok_and(|v| v.is_accepted()) =>
            {
                return Err(io::Error::other("authorize refused"));
            }
            Ok(Incoming::Call {
                method: ServerMethod::SetDifficulty(d),
                ..
            }) => difficulty = d,
            Ok(Incoming::Call {
                method: ServerMethod::Notify(notify),
                ..
            }) => {
                let Some(subscribed) = subscribed else {
                    return Err(io::Error::other("job before the subscribe answer"));
                };
                let len = subscribed.extranonce1.len() + subscribed.extranonce2_size;
                let job = Job::from_notify(&notify, len).map_err(io::Error::other)?;
                let mining = Mining {
                    job_id: notify.job_id,
                    job,
                    ntime: notify.ntime,
                    difficulty,
                };
                return Ok((lines, subscribed, mining));
            }
            _ => {}
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us =
            |v: Option<u64>| v.map_or("-".to_owned(), |us| format!("{:.3} ms", us as f64 / 1000.0));
        writeln!(
            f,
            "load: {:.1} s, {} connections ({} errors)",
            self.duration_secs, self.connections, self.connection_errors
        )?;
        writeln!(
            f,
            "shares: {} submitted, {} answered ({:.1}/s), {} accepted, {} rejected, {} unanswered, {} unsolved",
            self.submitted,
            self.answered,
            self.answered_per_sec,
            self.accepted,
            self.rejected,
            self.unanswered,
            self.unsolved
        )?;
        writeln!(
            f,
            "latency submit→answer: p50 {}, p99 {}, max {}",
            us(self.latency_p50_us),
            us(self.latency_p99_us),
            us(self.latency_max_us)
        )?;
        for (reason, n) in &self.rejects {
            writeln!(f, "  rejected {n}: {reason}")?;
        }
        for (error, n) in &self.errors {
            writeln!(f, "  connection error {n}: {error}")?;
        }
        if self.unsolved > 0 {
            writeln!(
                f,
                "  (unsolved shares: the server's difficulty is too high for load; try --difficulty 1e-12 on the pool)"
            )?;
        }
        Ok(())
    }
}
