//! One task per miner: the handshake, jobs and difficulty, switching pools,
//! and every submit validated before anything else sees it.
//!
//! The miner is told one extranonce1 and extranonce2 size for the life of
//! the connection; moving it to another pool is a `set_difficulty` (when it
//! changes) and a `mining.notify` with `clean_jobs = true` of that pool's
//! translated job (see [`crate::jobs`]). Shares for jobs of the previous
//! pool still land there: the session's [`JobBook`] remembers every job it
//! sent, whatever its pool.

mod leave;
mod reconnect;
mod routing;
mod submit;
#[cfg(test)]
mod tests;
mod wire;

pub use reconnect::ReconnectLimiter;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hashsplit_policy::{Assignment, MinerId, Observation, PoolId};
use hashsplit_stratum::{
    ClientMethod, CodecError, Configure, ConfigureResult, Difficulty, Id, Incoming, Line,
    LineBudget, Method, ParseError, ParseErrorKind, Response, ServerMethod, StratumError,
    SubscribeResult,
};
use tokio::net::TcpStream;
use tokio::sync::watch;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::directory::MinerDirectory;
use crate::drain::Drain;
use crate::extranonce::{Extranonce1, Space};
use crate::jobs::{JobBook, Layout, Layouts, PoolJob};
use crate::metrics::{Metrics, WorkerSeries};
use crate::policy_task::PolicyHandle;
use crate::pool::{PoolHandle, Pools};
use crate::vardiff::Vardiff;
use wire::MinerWire;

/// Unreadable lines in a row before a miner is disconnected.
const MAX_BAD_LINES: u32 = 20;
/// Worker names longer than this are refused.
const MAX_WORKER_NAME: usize = 256;
/// Distinct worker names one connection may authorize.
const MAX_WORKERS_PER_CONNECTION: usize = 64;
/// How often vardiff is reconsidered.
const VARDIFF_TICK: Duration = Duration::from_secs(5);
/// Longest a write to a miner may take: a miner that stops reading is
/// dropped rather than holding its slot and extranonce1.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Shares rejected in a row (without one accepted) before the miner is
/// disconnected: something is wrong with it, or it is abusing the proxy.
const MAX_REJECTS_IN_A_ROW: u32 = 256;

static NEXT_MINER: AtomicU64 = AtomicU64::new(1);

/// What every session shares: configuration, metrics, the pools and the
/// policy.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The proxy's metrics.
    pub metrics: Metrics,
    /// Every pool's handle; a reload may add pools.
    pub pools: Pools,
    /// The policy task.
    pub policy: PolicyHandle,
    /// The miners' extranonce layouts.
    pub layouts: Arc<Layouts>,
    /// Spreads out requests to reconnect.
    pub reconnects: ReconnectLimiter,
    /// Cancelled when shutdown starts: sessions stop reading submits and
    /// only wait for the answers of shares already forwarded.
    pub draining: CancellationToken,
    /// Gives sessions their turn to leave when the proxy drains.
    pub drain: Arc<Drain>,
    /// What partial lines beyond each miner's first 4 KiB may hold, all
    /// miners together (`server.line_buffer_budget`).
    pub line_budget: LineBudget,
    /// Each miner's authorized workers, for the API.
    pub directory: Arc<MinerDirectory>,
}

/// Why a session ended: the `reason` label of the disconnect metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The miner closed the connection.
    Closed,
    /// No line within the idle timeout.
    Idle,
    /// No subscribe and authorize within the handshake timeout.
    HandshakeTimeout,
    /// A line over the maximum length.
    LineTooLong,
    /// Too many unreadable lines in a row.
    BadInput,
    /// Too many shares rejected in a row.
    TooManyRejects,
    /// A read or write failed.
    IoError,
    /// The proxy is shutting down.
    Shutdown,
    /// The proxy drains: the miner was asked to reconnect elsewhere.
    Drained,
}

impl Ended {
    /// Returns the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Idle => "idle",
            Ended::HandshakeTimeout => "handshake-timeout",
            Ended::LineTooLong => "line-too-long",
            Ended::BadInput => "bad-input",
            Ended::TooManyRejects => "too-many-rejects",
            Ended::IoError => "io-error",
            Ended::Shutdown => "shutdown",
            Ended::Drained => "drained",
        }
    }
}

/// What woke an idle session.
enum Event {
    PoolAnswer((Id, crate::metrics::Outcome)),
    Draining,
    /// The proxy drains and it is this session's turn to leave.
    Turn,
    /// The time to leave by has come.
    LeaveDue,
    Line(Line),
    PoolState,
    Assignment,
    Retarget,
}

/// One connected miner.
pub struct Session {
    shared: Arc<Shared>,
    miner: MinerId,
    peer: SocketAddr,
    extranonce1: Extranonce1,
    /// The miner's extranonce layout, fixed for the connection.
    layout: Layout,
    /// Whether the miner was asked to reconnect (asked once at most).
    reconnect_asked: bool,
    /// Local rejects since the last accepted share.
    rejects_in_a_row: u32,
    /// Whether shutdown started (no more submits are read).
    draining: bool,
    /// Set once the proxy drains and it is this session's turn to leave.
    leaving: Option<leave::Leaving>,
    wire: MinerWire,
    shutdown: CancellationToken,
    subscribed: bool,
    /// The workers authorized on this connection, first first (a farm
    /// proxy has one; a `Vec` costs less than a set and 64 at most are
    /// searched).
    workers: Vec<String>,
    /// This connection's hold on its workers' per-worker series.
    worker_series: Vec<WorkerSeries>,
    joined: bool,
    version_mask: Option<u32>,
    vardiff: Vardiff,
    /// The difficulty last sent to the miner.
    sent_difficulty: Option<Difficulty>,
    /// The pool whose jobs the miner gets now.
    current: Option<PoolId>,
    /// The job last sent, to send each job once.
    sent_job: Option<Arc<PoolJob>>,
    book: JobBook,
    /// This session's handles of every pool, by [`PoolId`]: each for the
    /// pool's connection that serves this miner's extranonce space, and
    /// each watching that connection's state for this session.
    pools: Vec<PoolHandle>,
    /// Where a new set of pools shows up after a reload.
    pool_set: Pools,
    assignment: watch::Receiver<Arc<Assignment>>,
    pending: FuturesUnordered<submit::PoolAnswer>,
    bad_lines: u32,
    last_line: Instant,
    started: Instant,
}

impl Session {
    /// Prepares the session of a miner that just connected.
    pub fn new(
        shared: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        mut extranonce1: Extranonce1,
        shutdown: CancellationToken,
    ) -> Self {
        let _ = stream.set_nodelay(true);
        let layout = shared.layouts.for_new_miner();
        let now = Instant::now();
        let downstream = &shared.config.downstream;
        let vardiff = Vardiff::new(
            Difficulty::try_new(downstream.initial_difficulty).unwrap_or(Difficulty::ONE),
            Difficulty::try_new(downstream.min_difficulty).unwrap_or(Difficulty::ONE),
            downstream.share_rate,
            now,
        );
        let wire = MinerWire::new(
            stream,
            shared.config.server.max_line_length,
            shared.line_budget.clone(),
        );
        let mut pool_set = shared.pools.clone();
        let set = pool_set.if_changed().unwrap_or_else(|| pool_set.snapshot());
        let pools = routing::handles_in(&set, extranonce1.space());
        let assignment = shared.policy.assignment.clone();
        // The prefix's last holder built the same coinbases: what it had
        // accepted is a duplicate here.
        let mut book = JobBook::default();
        if let Some(inherited) = extranonce1.take_inherited() {
            book.inherit(inherited);
        }
        Session {
            miner: MinerId(NEXT_MINER.fetch_add(1, Ordering::Relaxed)),
            shared,
            peer,
            extranonce1,
            layout,
            reconnect_asked: false,
            rejects_in_a_row: 0,
            draining: false,
            leaving: None,
            wire,
            shutdown,
            subscribed: false,
            workers: Vec::new(),
            worker_series: Vec::new(),
            joined: false,
            version_mask: None,
            vardiff,
            sent_difficulty: None,
            current: None,
            sent_job: None,
            book,
            pools,
            pool_set,
            assignment,
            pending: FuturesUnordered::new(),
            bad_lines: 0,
            last_line: now,
            started: now,
        }
    }

    /// Serves the miner until it leaves, misbehaves, or the proxy stops;
    /// returns why it ended.
    pub async fn run(mut self) -> Ended {
        let ended = self.serve().await;
        let pools = &self.pools;
        let current_epoch = |pool: PoolId| pools.get(pool.index()).map(|s| s.state().epoch);
        let retired = self.book.retire(current_epoch);
        self.extranonce1.retire(retired, current_epoch);
        self.shared.directory.left(self.miner);
        if self.joined {
            self.shared
                .policy
                .membership(Observation::MinerLeft { miner: self.miner })
                .await;
        }
        debug!(miner = %self.miner, peer = %self.peer, reason = ended.as_str(), "miner disconnected");
        ended
    }

    async fn serve(&mut self) -> Ended {
        let server = &self.shared.config.server;
        let (handshake_timeout, idle_timeout) = (server.handshake_timeout, server.idle_timeout);
        // One timer for the deadline and vardiff: an idle miner's task
        // holds a single `Sleep`, not an `Interval` of its own. It and the
        // cancellation waits live across events, so waking every miner for
        // a new block does not also re-register each of them.
        let mut next_retarget = Instant::now() + VARDIFF_TICK;
        let timer = sleep_until(self.started + handshake_timeout);
        let (shutdown, draining) = (self.shutdown.clone(), self.shared.draining.clone());
        let (stopped, drained) = (shutdown.cancelled(), draining.cancelled());
        tokio::pin!(timer, stopped, drained);
        loop {
            let authorized = !self.workers.is_empty();
            let deadline = if authorized {
                self.last_line + idle_timeout
            } else {
                self.started + handshake_timeout
            };
            let wake = if authorized {
                deadline.min(next_retarget)
            } else {
                deadline
            };
            let wake = self.leaving.map_or(wake, |leaving| wake.min(leaving.by));
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            // Before its first job, a miner watches the first pool: its
            // space's connection coming up (an extra one, which the policy
            // does not hear of) is when it can start.
            let waiting = authorized && self.subscribed && !self.pools.is_empty();
            let watching = self.current.is_some() || waiting;
            let watched = self.current.unwrap_or(PoolId(0)).index();
            let event = tokio::select! {
                biased;
                () = &mut stopped => return Ended::Shutdown,
                Some(answer) = self.pending.next() => Event::PoolAnswer(answer),
                () = &mut drained, if !self.draining => Event::Draining,
                () = self.shared.drain.turn(), if self.leaving.is_none() => Event::Turn,
                line = self.wire.next_line(), if !self.draining => match line {
                    Some(Ok(line)) => Event::Line(line),
                    Some(Err(CodecError::LineTooLong { .. })) => return Ended::LineTooLong,
                    Some(Err(error @ CodecError::OverBudget { .. })) => {
                        warn!(miner = %self.miner, peer = %self.peer, %error, "a long unfinished line; disconnecting");
                        return Ended::LineTooLong;
                    }
                    Some(Err(_)) => return Ended::IoError,
                    None => return self.closed(),
                },
                Ok(()) = self.pools[watched].changed(), if watching => Event::PoolState,
                Ok(()) = self.assignment.changed(), if authorized => Event::Assignment,
                () = &mut timer => {
                    let now = Instant::now();
                    if self.leaving.is_some_and(|leaving| now >= leaving.by) {
                        Event::LeaveDue
                    } else if now >= deadline {
                        return if authorized { Ended::Idle } else { Ended::HandshakeTimeout };
                    } else {
                        next_retarget = now + VARDIFF_TICK;
                        Event::Retarget
                    }
                }
            };
            // The handlers' futures are large (a submit's path is deep)
            // and live only while an event is handled: boxed, they cost an
            // idle miner nothing.
            let handled = Box::pin(async {
                self.on_event(event).await?;
                self.leave_when_settled(false).await
            });
            if let Err(ended) = handled.await {
                return ended;
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Result<(), Ended> {
        match event {
            Event::PoolAnswer(answer) => self.on_pool_answer(answer).await,
            Event::Draining => {
                self.draining = true;
                Ok(())
            }
            Event::Turn => {
                self.on_turn();
                Ok(())
            }
            Event::LeaveDue => self.leave_when_settled(true).await,
            Event::Line(line) => {
                self.last_line = Instant::now();
                match line {
                    Line::Text(line) => self.on_line(&line).await,
                    Line::NotUtf8 { valid_up_to } => {
                        let kind = ParseErrorKind::NotUtf8 { valid_up_to };
                        self.on_bad_line(ParseError::bare(kind)).await
                    }
                }
            }
            Event::PoolState => self.on_pool_state().await,
            Event::Assignment => self.follow_assignment().await,
            Event::Retarget => {
                // Also here, not only on a new plan: plans that move nobody
                // wake no session.
                self.maybe_ask_reconnect().await?;
                self.retarget().await
            }
        }
    }

    /// Writes one line to the miner.
    async fn send(&mut self, mut line: String) -> Result<(), Ended> {
        if line.contains('\n') {
            // It would reach the miner as two lines.
            return Err(Ended::IoError);
        }
        line.push('\n');
        self.write(line.as_bytes()).await
    }

    /// Writes bytes that end in a newline (a rendered line) to the miner.
    async fn write(&mut self, line: &[u8]) -> Result<(), Ended> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.wire.write_line(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Ended::IoError),
        }
    }

    async fn on_line(&mut self, line: &str) -> Result<(), Ended> {
        match Incoming::<ClientMethod>::from_line(line) {
            Ok(Incoming::Call { id, method }) => {
                self.bad_lines = 0;
                self.on_call(id, method).await
            }
            // Answers to client.get_version and the like: nothing to do.
            Ok(Incoming::Response(_)) => Ok(()),
            Err(error) => self.on_bad_line(error).await,
        }
    }

    async fn on_bad_line(&mut self, error: ParseError) -> Result<(), Ended> {
        if error.is_submit() {
            // A submit attempt still counts as a share, rejected as malformed.
            self.reject_malformed_submit(&error).await?;
        } else {
            debug!(miner = %self.miner, %error, "unreadable line from miner");
        }
        // A line without a usable id (not JSON, or an id that cannot be
        // one) is still answered, with a null id, so the miner hears why.
        let response = error
            .to_response()
            .unwrap_or_else(|| Response::error(Id::Null, StratumError::other(error.to_string())));
        self.send(response.to_line()).await?;
        self.bad_lines += 1;
        if self.bad_lines >= MAX_BAD_LINES {
            warn!(miner = %self.miner, peer = %self.peer, "too many unreadable lines; disconnecting");
            return Err(Ended::BadInput);
        }
        Ok(())
    }

    async fn on_call(&mut self, id: Id, method: ClientMethod) -> Result<(), Ended> {
        match method {
            ClientMethod::Subscribe { .. } => {
                self.subscribed = true;
                let result = SubscribeResult::new(
                    &format!("{:x}", self.miner.0),
                    self.extranonce1.as_bytes().to_vec(),
                    self.layout.extranonce2_size,
                );
                self.reply(id, result.to_value()).await?;
                self.start_mining().await
            }
            ClientMethod::Authorize { user, .. } => self.on_authorize(id, user).await,
            ClientMethod::Submit(submit) => self.on_submit(id, submit).await,
            ClientMethod::Configure(configure) => self.on_configure(id, &configure).await,
            ClientMethod::ExtranonceSubscribe => {
                // The miner's extranonce never changes, so there is nothing
                // it will ever be told; saying yes is the truth.
                self.reply(id, true.into()).await
            }
            ClientMethod::SuggestDifficulty(difficulty) => {
                let ceiling = self.ceiling();
                self.vardiff.suggest(difficulty, ceiling, Instant::now());
                self.reply(id, true.into()).await?;
                if self.sent_job.is_some() {
                    self.send_difficulty().await?;
                }
                Ok(())
            }
            ClientMethod::GetTransactions { .. } => {
                self.reply_error(
                    id,
                    StratumError::other("mining.get_transactions is not supported"),
                )
                .await
            }
        }
    }

    async fn reply(&mut self, id: Id, result: serde_json::Value) -> Result<(), Ended> {
        if id.is_null() {
            return Ok(());
        }
        self.send(Response::ok(id, result).to_line()).await
    }

    async fn reply_error(&mut self, id: Id, error: StratumError) -> Result<(), Ended> {
        if id.is_null() {
            return Ok(());
        }
        self.send(Response::error(id, error).to_line()).await
    }

    async fn on_authorize(&mut self, id: Id, user: String) -> Result<(), Ended> {
        let printable = user.chars().all(|c| !c.is_control());
        if user.is_empty() || user.len() > MAX_WORKER_NAME || !printable {
            return self.reply_error(id, StratumError::unauthorized()).await;
        }
        if self.workers.len() >= MAX_WORKERS_PER_CONNECTION && !self.workers.contains(&user) {
            return self
                .reply_error(
                    id,
                    StratumError::other("too many workers on one connection"),
                )
                .await;
        }
        let first = self.workers.is_empty();
        if !self.workers.contains(&user) {
            if let Some(series) = self.shared.metrics.workers.join(&user) {
                self.worker_series.push(series);
            }
            self.shared.directory.authorized(self.miner, &user);
            self.workers.push(user);
        }
        self.reply(id, true.into()).await?;
        if first {
            info!(miner = %self.miner, peer = %self.peer, worker = %self.workers[0], "miner authorized");
            self.joined = true;
            self.shared
                .policy
                .membership(Observation::MinerJoined { miner: self.miner })
                .await;
            self.start_mining().await?;
        }
        Ok(())
    }

    async fn on_configure(&mut self, id: Id, configure: &Configure) -> Result<(), Ended> {
        // The mask every pool can take, so any pool can get this miner's
        // shares: the configured mask, narrowed by each pool that answered.
        let mut allowed = self.shared.config.downstream.version_mask;
        for pool in &self.pools {
            let state = pool.state();
            if state.configured {
                allowed &= state.version_mask.unwrap_or(0);
            }
        }
        let result = ConfigureResult::reply_to(configure, Some(allowed));
        if configure.version_rolling.is_some() {
            self.version_mask = result.version_rolling;
        }
        self.reply(id, result.to_value()).await
    }

    /// Sends the current pool's newest job if the miner does not have it.
    async fn on_pool_state(&mut self) -> Result<(), Ended> {
        let Some(pool) = self.current else {
            self.pools[0].borrow_and_update();
            return self.start_mining().await;
        };
        let (up, job, pool_mask) = {
            let state = self.pools[pool.index()].borrow_and_update();
            let pool_mask = state.configured.then(|| state.version_mask.unwrap_or(0));
            (state.up, state.job_for(self.layout).cloned(), pool_mask)
        };
        self.fit_version_mask(pool_mask).await?;
        let Some(job) = job.filter(|_| up) else {
            // A pool that went down moves its miners at the next plan; an
            // extra connection of it that went down (which the policy does
            // not hear of) moves its space's miners now. Until then the
            // miner hashes the last job, judged by its epoch.
            if self.extranonce1.space() != Space::FIRST {
                return self.follow_assignment().await;
            }
            return Ok(());
        };
        let same = self
            .sent_job
            .as_ref()
            .is_some_and(|sent| Arc::ptr_eq(sent, &job));
        if same {
            return Ok(());
        }
        let clean = job.notify.clean_jobs
            || self
                .sent_job
                .as_ref()
                .is_some_and(|sent| sent.epoch != job.epoch || sent.pool != job.pool);
        self.send_job(job, clean).await
    }

    async fn send_job(&mut self, job: Arc<PoolJob>, clean: bool) -> Result<(), Ended> {
        self.vardiff.cap(job.pool_difficulty, Instant::now());
        self.send_difficulty().await?;
        // Every miner with this layout is sent the same bytes: rendered
        // once per job, not once per miner.
        self.write(job.notify_line(clean)).await?;
        self.book.sent(Arc::clone(&job), self.vardiff.current());
        self.sent_job = Some(job);
        Ok(())
    }

    /// Narrows the miner's version-rolling mask to what its pool takes (a
    /// pool that answered `mining.configure` late, or sent
    /// `mining.set_version_mask`), telling the miner with
    /// `mining.set_version_mask`.
    async fn fit_version_mask(&mut self, pool_mask: Option<u32>) -> Result<(), Ended> {
        let (Some(mine), Some(pool_mask)) = (self.version_mask, pool_mask) else {
            return Ok(());
        };
        if mine & !pool_mask == 0 {
            return Ok(());
        }
        let narrowed = mine & pool_mask;
        self.version_mask = (narrowed != 0).then_some(narrowed);
        self.send(ServerMethod::SetVersionMask(narrowed).to_line(Id::Null))
            .await
    }

    /// Sends `mining.set_difficulty` if vardiff's difficulty differs from
    /// what the miner was last told.
    async fn send_difficulty(&mut self) -> Result<(), Ended> {
        let difficulty = self.vardiff.current();
        if self.sent_difficulty == Some(difficulty) {
            return Ok(());
        }
        if self.sent_difficulty.is_some_and(|sent| difficulty < sent) {
            self.book.lower_difficulty(difficulty);
        }
        self.sent_difficulty = Some(difficulty);
        self.send(ServerMethod::SetDifficulty(difficulty).to_line(Id::Null))
            .await
    }

    /// Returns the difficulty vardiff may not exceed: the current pool's.
    fn ceiling(&self) -> Difficulty {
        self.sent_job
            .as_ref()
            .map_or(Difficulty::try_new(f64::MAX).expect("finite"), |job| {
                job.pool_difficulty
            })
    }

    async fn retarget(&mut self) -> Result<(), Ended> {
        if self.sent_job.is_none() {
            return Ok(());
        }
        let ceiling = self.ceiling();
        if self.vardiff.retarget(ceiling, Instant::now()).is_some() {
            self.send_difficulty().await?;
        }
        Ok(())
    }
}
