//! One pool connection: the Stratum handshake, jobs, share verdicts, and
//! the faults switched on for the pool.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, CodecError, ConfigureResult, Difficulty, Id, Incoming, LineCodec, Method, Reject,
    Response, ServerMethod, StratumError, Submit, SubscribeResult,
};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::checker::ShareChecker;
use super::fault::{self, Fault, Modes};
use super::stats::INJECTED_REJECT;
use super::template::PoolJob;

/// Serves one connection until it closes, fails or the pool stops.
pub(super) async fn serve(stream: TcpStream, shared: Arc<Shared>, token: CancellationToken) {
    let mut session = Session::new(stream, shared.clone(), token);
    if let Err(e) = session.run().await {
        tracing::debug!(error = %e, "sim pool: connection ended");
    }
    shared.stats.update(|s| s.connections_open -= 1);
}

/// What to do after handling something.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Session {
    lines: Framed<TcpStream, LineCodec>,
    shared: Arc<Shared>,
    token: CancellationToken,
    jobs: watch::Receiver<Arc<PoolJob>>,
    events: tokio::sync::broadcast::Receiver<Fault>,
    modes: watch::Receiver<Modes>,
    extranonce1: Vec<u8>,
    difficulty: Difficulty,
    version_mask: Option<u32>,
    subscribed: bool,
    extranonce_subscribed: bool,
    authorized: HashSet<String>,
    /// Subscribed and authorized: jobs are being sent.
    mining: bool,
    checker: ShareChecker,
    /// Answers held back by [`Fault::Delay`], oldest first.
    delayed: VecDeque<(Instant, String)>,
}

impl Session {
    fn new(stream: TcpStream, shared: Arc<Shared>, token: CancellationToken) -> Self {
        Session {
            lines: Framed::new(stream, LineCodec::new(LineCodec::DOWNSTREAM_MAX_LENGTH)),
            jobs: shared.jobs.subscribe(),
            events: shared.events.subscribe(),
            modes: shared.modes.subscribe(),
            extranonce1: shared.new_extranonce1(),
            difficulty: shared.config.difficulty,
            version_mask: None,
            subscribed: false,
            extranonce_subscribed: false,
            authorized: HashSet::new(),
            mining: false,
            checker: ShareChecker::new(),
            delayed: VecDeque::new(),
            shared,
            token,
        }
    }

    async fn run(&mut self) -> Result<(), CodecError> {
        loop {
            let due = self.delayed.front().map(|(at, _)| *at);
            let blackholed = self.modes.borrow().blackhole;
            tokio::select! {
                biased;
                () = self.token.cancelled() => return Ok(()),
                event = self.events.recv() => match event {
                    Ok(fault) => {
                        if self.on_fault(fault).await? == Flow::Close {
                            return Ok(());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok(()),
                },
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.flush_delayed().await?;
                }
                changed = self.modes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    // Polled before the jobs arm, so a blackhole switched on
                    // with a new job sends nothing. Only marks the change
                    // seen: the other arms read the modes.
                    self.modes.borrow_and_update();
                }
                changed = self.jobs.changed(), if self.mining && !blackholed => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.send_job(false).await?;
                }
                line = self.lines.next() => match line {
                    None => return Ok(()),
                    Some(line) => self.on_line(&line?).await?,
                },
            }
        }
    }

    async fn on_line(&mut self, line: &str) -> Result<(), CodecError> {
        if self.modes.borrow().blackhole {
            self.shared.stats.update(|s| s.unanswered += 1);
            return Ok(());
        }
        match Incoming::<ClientMethod>::from_line(line) {
            Ok(Incoming::Call { id, method }) => self.on_call(id, method).await,
            // Answers to our own calls (none are sent that need one).
            Ok(Incoming::Response(_)) => Ok(()),
            Err(e) => {
                if e.is_submit() {
                    self.shared.stats.rejected(None, Reject::Malformed.as_str());
                }
                match e.to_response() {
                    Some(response) => self.answer(response).await,
                    None => Ok(()),
                }
            }
        }
    }

    async fn on_call(&mut self, id: Id, method: ClientMethod) -> Result<(), CodecError> {
        let response = match method {
            ClientMethod::Subscribe { .. } => {
                self.subscribed = true;
                let subscription = hex::encode(&self.extranonce1);
                let result = SubscribeResult::new(
                    &subscription,
                    self.extranonce1.clone(),
                    self.shared.config.extranonce2_size,
                );
                self.answer(Response::ok(id, result)).await?;
                return self.start_mining().await;
            }
            ClientMethod::Authorize { user, .. } => {
                // Any worker name is welcome; it names the account credited.
                self.authorized.insert(user);
                self.answer(Response::ok(id, true)).await?;
                return self.start_mining().await;
            }
            ClientMethod::Configure(request) => {
                let result = ConfigureResult::reply_to(&request, self.shared.config.version_mask);
                if request.version_rolling.is_some() {
                    self.version_mask = result.version_rolling;
                }
                Response::ok(id, result)
            }
            ClientMethod::ExtranonceSubscribe => {
                self.extranonce_subscribed = true;
                Response::ok(id, true)
            }
            ClientMethod::SuggestDifficulty(difficulty) => {
                if self.shared.config.honour_suggested_difficulty {
                    self.difficulty = difficulty;
                    if self.mining {
                        // Applies from the next job, as set_difficulty does.
                        self.send_difficulty().await?;
                    }
                }
                Response::ok(id, true)
            }
            ClientMethod::GetTransactions { .. } => {
                Response::error(id, StratumError::other("not supported"))
            }
            ClientMethod::Submit(submit) => self.on_submit(id, &submit),
        };
        self.answer(response).await
    }

    /// Judges a share, counts it, and returns the answer.
    fn on_submit(&mut self, id: Id, submit: &Submit) -> Response {
        let stats = &self.shared.stats;
        let verdict = if !self.subscribed {
            Err(Reject::NotSubscribed)
        } else if !self.authorized.contains(&submit.worker) {
            Err(Reject::Unauthorized)
        } else if self.modes.borrow().reject_all {
            stats.rejected(Some(&submit.worker), INJECTED_REJECT);
            return Response::error(id, StratumError::other("rejected (injected fault)"));
        } else {
            let shared = &self.shared;
            self.checker.check(
                submit,
                shared.config.extranonce2_size,
                self.version_mask,
                |job_id| shared.issued(job_id),
            )
        };
        match verdict {
            Ok(credit) => {
                if credit.block {
                    tracing::info!(worker = %submit.worker, "sim pool: block found");
                }
                stats.accepted(
                    &submit.worker,
                    credit.difficulty.as_f64(),
                    credit.block.then_some(&credit.hash),
                );
                Response::ok(id, true)
            }
            Err(reject) => {
                stats.rejected(Some(&submit.worker), reject.as_str());
                Response::error(id, StratumError::new(reject.code(), reject.to_string()))
            }
        }
    }

    /// Starts sending jobs once the connection is subscribed and has an
    /// authorized worker, as pools do.
    async fn start_mining(&mut self) -> Result<(), CodecError> {
        if self.mining || !self.subscribed || self.authorized.is_empty() {
            return Ok(());
        }
        self.mining = true;
        self.send_difficulty().await?;
        self.send_job(true).await
    }

    async fn send_difficulty(&mut self) -> Result<(), CodecError> {
        let line = ServerMethod::SetDifficulty(self.difficulty).to_line(Id::Null);
        self.write(line).await
    }

    /// Sends the newest job; `first` marks it clean whatever it was.
    async fn send_job(&mut self, first: bool) -> Result<(), CodecError> {
        let job = self.jobs.borrow_and_update().clone();
        let clean = first || job.notify.clean_jobs;
        let mut notify = job.notify.clone();
        notify.clean_jobs = clean;
        self.checker
            .sent(job, clean, self.difficulty, &self.extranonce1);
        self.write(ServerMethod::Notify(notify).to_line(Id::Null))
            .await
    }

    async fn on_fault(&mut self, fault: Fault) -> Result<Flow, CodecError> {
        match fault {
            Fault::CloseAll => return Ok(Flow::Close),
            Fault::Garbage => {
                for line in fault::garbage_lines() {
                    self.write(line).await?;
                }
            }
            Fault::BadDifficulty(bad) => self.write(fault::bad_difficulty_line(bad)).await?,
            Fault::HugeLine => self.write(fault::huge_line()).await?,
            Fault::Reconnect {
                host,
                port,
                wait_secs,
            } => {
                let call = ServerMethod::Reconnect {
                    host,
                    port,
                    wait_secs,
                };
                self.write(call.to_line(Id::Null)).await?;
            }
            Fault::SetExtranonce { to_all } => {
                if self.subscribed && (self.extranonce_subscribed || to_all) {
                    // Jobs sent from now on are checked with the new one.
                    self.extranonce1 = self.shared.new_extranonce1();
                    let call = ServerMethod::SetExtranonce {
                        extranonce1: self.extranonce1.clone(),
                        extranonce2_size: self.shared.config.extranonce2_size,
                    };
                    self.write(call.to_line(Id::Null)).await?;
                }
            }
            // Modes travel on the modes channel, never here.
            Fault::Blackhole | Fault::Delay(_) | Fault::RejectAll | Fault::RefuseConnections => {}
        }
        Ok(Flow::Continue)
    }

    /// Sends an answer now, or later under [`Fault::Delay`]. Notifications
    /// are not answered.
    async fn answer(&mut self, response: Response) -> Result<(), CodecError> {
        if response.id.is_null() {
            return Ok(());
        }
        let delay = self.modes.borrow().delay;
        match delay {
            Some(by) => {
                self.delayed
                    .push_back((Instant::now() + by, response.to_line()));
                Ok(())
            }
            None => self.write(response.to_line()).await,
        }
    }

    async fn flush_delayed(&mut self) -> Result<(), CodecError> {
        let now = Instant::now();
        while self.delayed.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, line)) = self.delayed.pop_front() {
                self.write(line).await?;
            }
        }
        Ok(())
    }

    /// Writes one line, giving up when the pool stops (a peer that does not
    /// read must not hold up shutdown).
    async fn write(&mut self, line: String) -> Result<(), CodecError> {
        tokio::select! {
            biased;
            () = self.token.cancelled() => {
                Err(io::Error::from(io::ErrorKind::ConnectionAborted).into())
            }
            sent = self.lines.send(line) => sent,
        }
    }
}
