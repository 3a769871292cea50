//! One task per miner: the handshake, jobs and difficulty, switching pools,
//! and every submit validated before anything else sees it.
//!
//! The miner is told one extranonce1 and extranonce2 size for the life of
//! the connection; moving it to another pool is a `set_difficulty` (when it
//! changes) and a `mining.notify` with `clean_jobs = true` of that pool's
//! translated job (see [`crate::jobs`]). Shares for jobs of the previous
//! pool still land there: the session's [`JobBook`] remembers every job it
//! sent, whatever its pool.

mod calls;
mod handshake;
mod leave;
mod reconnect;
mod routing;
mod submit;
#[cfg(test)]
mod tests;
mod wire;
mod work;

pub use reconnect::ReconnectLimiter;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hashsplit_policy::{Assignment, MinerId, Observation, PoolId};
use hashsplit_stratum::{CodecError, Difficulty, Id, Line, LineBudget, ParseError, ParseErrorKind};
use tokio::net::TcpStream;
use tokio::sync::watch;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::directory::MinerDirectory;
use crate::drain::Drain;
use crate::extranonce::Extranonce1;
use crate::jobs::{JobBook, Layout, Layouts, PoolJob};
use crate::metrics::{Disconnect, Metrics};
use crate::policy_task::PolicyHandle;
use crate::pool::{PoolHandle, Pools};
use crate::vardiff::Vardiff;
use handshake::Handshake;
use wire::MinerWire;

/// Unreadable lines in a row before a miner is disconnected.
const MAX_BAD_LINES: u32 = 20;
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
    /// Where the miner stands: connected, subscribed, authorized, mining.
    handshake: Handshake,
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
    pending: submit::Answers,
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
            downstream.initial_difficulty,
            downstream.min_difficulty,
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
            handshake: Handshake::default(),
            version_mask: None,
            vardiff,
            sent_difficulty: None,
            current: None,
            sent_job: None,
            book,
            pools,
            pool_set,
            assignment,
            pending: submit::Answers::default(),
            bad_lines: 0,
            last_line: now,
            started: now,
        }
    }

    /// Serves the miner until it leaves, misbehaves, or the proxy stops;
    /// returns why it ended.
    ///
    /// Not an `async fn`: one moves its `self` argument into a local of
    /// its own, so every idle miner's task would hold the session twice. An
    /// `async move` block works on the session where it was captured.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the session twice"
    )]
    pub fn run(mut self) -> impl Future<Output = Disconnect> + Send {
        async move {
            let ended = self.serve().await;
            let pools = &self.pools;
            let current_epoch = |pool: PoolId| pools.get(pool.index()).map(|s| s.state().epoch);
            let retired = self.book.retire(current_epoch);
            self.extranonce1.retire(retired, current_epoch);
            self.shared.directory.left(self.miner);
            if self.handshake.has_workers() {
                self.shared
                    .policy
                    .membership(Observation::MinerLeft { miner: self.miner })
                    .await;
            }
            debug!(miner = %self.miner, peer = %self.peer, reason = ended.as_str(), "miner disconnected");
            ended
        }
    }

    async fn serve(&mut self) -> Disconnect {
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
            // Until it mines, a miner has the handshake's time; then it
            // may be idle for as long as the idle timeout.
            let mining = self.handshake.mining().is_some();
            let deadline = if mining {
                self.last_line + idle_timeout
            } else {
                self.started + handshake_timeout
            };
            let wake = if mining {
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
            let waiting = mining && !self.pools.is_empty();
            let watching = self.current.is_some() || waiting;
            let watched = self.current.unwrap_or(PoolId(0)).index();
            let event = tokio::select! {
                biased;
                () = &mut stopped => return Disconnect::Shutdown,
                Some(answer) = self.pending.next() => Event::PoolAnswer(answer),
                () = &mut drained, if !self.draining => Event::Draining,
                () = self.shared.drain.turn(), if self.leaving.is_none() => Event::Turn,
                line = self.wire.next_line(), if !self.draining => match line {
                    Some(Ok(line)) => Event::Line(line),
                    Some(Err(CodecError::LineTooLong { .. })) => return Disconnect::LineTooLong,
                    Some(Err(error @ CodecError::OverBudget { .. })) => {
                        warn!(miner = %self.miner, peer = %self.peer, %error, "a long unfinished line; disconnecting");
                        return Disconnect::LineTooLong;
                    }
                    Some(Err(_)) => return Disconnect::IoError,
                    None => return self.closed(),
                },
                Ok(()) = self.pools[watched].changed(), if watching => Event::PoolState,
                Ok(()) = self.assignment.changed(), if mining => Event::Assignment,
                () = &mut timer => {
                    let now = Instant::now();
                    if self.leaving.is_some_and(|leaving| now >= leaving.by) {
                        Event::LeaveDue
                    } else if now >= deadline {
                        return if mining { Disconnect::Idle } else { Disconnect::HandshakeTimeout };
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

    async fn on_event(&mut self, event: Event) -> Result<(), Disconnect> {
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
    async fn send(&mut self, mut line: String) -> Result<(), Disconnect> {
        if line.contains('\n') {
            // It would reach the miner as two lines.
            return Err(Disconnect::IoError);
        }
        line.push('\n');
        self.write(line.as_bytes()).await
    }

    /// Writes bytes that end in a newline (a rendered line) to the miner.
    async fn write(&mut self, line: &[u8]) -> Result<(), Disconnect> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.wire.write_line(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Disconnect::IoError),
        }
    }
}
