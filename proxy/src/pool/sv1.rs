//! The Stratum v1 backend: one connection to a pool, from connect to loss.
//!
//! The handshake is pipelined the way ASIC firmware does it: configure
//! (version rolling), subscribe, extranonce.subscribe, authorize. Requests
//! carry the proxy's own ids and answers are matched by them, never by the
//! ids miners used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_policy::{PoolTls, PoolUrl};
use hashsplit_stratum::{
    ClientMethod, Configure, ConfigureResult, Difficulty, Id, Incoming, LineCodec, Method,
    Response, ServerMethod, SubmitResult, SubscribeResult,
};
use tokio::time::{Instant, interval, sleep_until, timeout};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod health;
mod wire;

pub(super) use health::Refusals;

use super::backend::{Ended, LinkError};
use super::owner::Pool;
use super::{Forward, Settlement};
use crate::jobs::{PoolExtranonce, PoolJob};
use crate::metrics::{Outcome, PoolReject};
use crate::transport::{self, Stream};

/// Time allowed to open the connection (with its TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from connect to an authorized connection with a job.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A pool without a new job for this long is unhealthy.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// A pool that has answered nothing for this long since it was sent a
/// share is dead, whether it still sends jobs or not.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Unreadable lines in a row before the connection is given up.
const MAX_BAD_LINES: u32 = 50;
/// Longest a write to the pool may take: a pool that stops reading is lost,
/// rather than holding every share and timer behind a full socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pool with jobs but no `mining.set_difficulty` yet stays down:
/// its first job often comes just before its difficulty, and miners must
/// not be sent work at the default difficulty 1 in between.
const DIFFICULTY_GRACE: Duration = Duration::from_secs(2);
/// Longest wait a pool's client.reconnect may ask for.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(60);

/// What an outstanding request of ours was.
enum Pending {
    Configure,
    Subscribe,
    ExtranonceSubscribe,
    Authorize,
    Submit {
        settlement: Settlement,
        sent: Instant,
    },
}

/// The state of one live connection.
struct Link {
    next_id: u64,
    pending: HashMap<u64, Pending>,
    extranonce: Option<PoolExtranonce>,
    authorized: bool,
    difficulty: Difficulty,
    /// Whether the pool said its difficulty (else it is Stratum's default 1).
    difficulty_known: bool,
    first_job: Option<Instant>,
    last_job: Option<Instant>,
    /// The pool's latest job as sent, to translate for a new layout.
    last_notify: Option<hashsplit_stratum::Notify>,
    /// When the first share sent since the pool's last answer went out:
    /// the pool owes an answer from then on.
    owed_since: Option<Instant>,
    connected: Instant,
    bad_lines: u32,
    healthy: bool,
    /// The worker name as a JSON string, spliced into every submit.
    worker_json: String,
}

/// The byte stream to a pool: TCP, or TLS over it.
pub(super) type PoolStream = Stream;

/// Opens the stream to the pool at `url` (with its TLS handshake, for a
/// `stratum+ssl://` pool) within [`CONNECT_TIMEOUT`]: the one place a
/// pool's transport is chosen.
pub(super) async fn connect(url: &PoolUrl, tls: &PoolTls) -> Result<PoolStream, LinkError> {
    match timeout(CONNECT_TIMEOUT, transport::connect(url, tls)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(LinkError::Transport(error)),
        Err(_) => Err(LinkError::ConnectTimeout {
            url: url.to_string(),
        }),
    }
}

/// Completes when the pool must stop: at shutdown, or when the grace of a
/// pool taken out of the config is over.
async fn stop_requested(shutdown: &CancellationToken, retire_at: Option<Instant>) {
    match retire_at {
        Some(at) => tokio::select! {
            () = shutdown.cancelled() => {}
            () = sleep_until(at) => {}
        },
        None => shutdown.cancelled().await,
    }
}

/// Runs one connection until it is lost or the pool stops.
pub(super) async fn run(up: &mut Pool) -> Ended {
    let url = up.entry.url.clone();
    let tls = up.entry.tls.clone();
    let stream = tokio::select! {
        () = stop_requested(&up.shutdown, up.retire_at) => return Ended::Stopped,
        Ok(()) = up.desired.changed() => {
            // Start over with whatever was reloaded (or stop, if retired).
            up.take_desired();
            return Ended::Lost {
                reason: LinkError::Reloaded,
                healthy: true,
                wait: Some(Duration::ZERO),
            };
        }
        result = connect(&url, &tls) => match result {
            Ok(stream) => stream,
            Err(reason) => return lost(reason, false),
        },
    };
    let mut framed = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
    let now = Instant::now();
    let mut link = Link {
        next_id: 0,
        pending: HashMap::new(),
        extranonce: None,
        authorized: false,
        difficulty: Difficulty::ONE,
        difficulty_known: false,
        first_job: None,
        last_job: None,
        last_notify: None,
        owed_since: None,
        connected: now,
        bad_lines: 0,
        healthy: false,
        worker_json: wire::json_string(&up.entry.user),
    };
    info!(pool = %up.name, %url, "connected to pool");

    let mut handshake = Vec::new();
    if up.version_mask != 0 {
        handshake.push((
            Pending::Configure,
            ClientMethod::Configure(Configure::version_rolling(up.version_mask, 0)),
        ));
    }
    handshake.push((
        Pending::Subscribe,
        ClientMethod::Subscribe {
            user_agent: Some(format!("hashsplit/{}", env!("CARGO_PKG_VERSION"))),
            session_id: None,
        },
    ));
    handshake.push((
        Pending::ExtranonceSubscribe,
        ClientMethod::ExtranonceSubscribe,
    ));
    handshake.push((
        Pending::Authorize,
        ClientMethod::Authorize {
            user: up.entry.user.clone(),
            password: Some(up.entry.password.clone()),
        },
    ));
    for (pending, method) in handshake {
        let id = link.request(pending);
        if let Err(reason) = write(&mut framed, method.to_line(Id::from(id))).await {
            return link.fail(up, reason);
        }
    }

    let mut tick = interval(Duration::from_secs(1));
    let mut layouts = up.layouts.watch();
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&up.shutdown, up.retire_at) => {
                link.drain(up);
                return Ended::Stopped;
            }
            // Health first: a busy pool must not starve its own timeouts.
            _ = tick.tick() => {
                if let Err(reason) = link.check_health(up) {
                    return link.fail(up, reason);
                }
            }
            Some(share) = up.blocks.recv() => {
                if let Err(reason) = link.forward(up, &mut framed, share).await {
                    return link.fail(up, reason);
                }
            }
            line = framed.next() => match line {
                Some(Ok(line)) => {
                    match link.on_line(up, &mut framed, &line).await {
                        Ok(None) => {}
                        Ok(Some(ended)) => {
                            link.drain(up);
                            return ended;
                        }
                        Err(reason) => return link.fail(up, reason),
                    }
                }
                Some(Err(e)) => return link.fail(up, LinkError::Read(e)),
                None => return link.fail(up, LinkError::Closed),
            },
            Some(share) = up.shares.recv() => {
                if let Err(reason) = link.forward(up, &mut framed, share).await {
                    return link.fail(up, reason);
                }
            }
            Ok(()) = layouts.changed() => link.republish(up, true),
            Ok(()) = up.desired.changed() => {
                // A weight or cap is the policy's business; a retired pool
                // keeps its connection for its grace.
                if up.take_desired() {
                    info!(pool = %up.name, "the pool's url or credentials were reloaded: reconnecting");
                    link.drain(up);
                    return Ended::Lost {
                        reason: LinkError::Reloaded,
                        healthy: true,
                        wait: Some(Duration::ZERO),
                    };
                }
            }
        }
    }
}

/// Makes sure miners can mine a pool with `extranonce`: narrows the layout
/// of new miners if the configured one does not fit (and says so, once).
fn fit_layouts(up: &Pool, extranonce: &PoolExtranonce) -> Result<(), LinkError> {
    match up.layouts.narrow_to_fit(extranonce.extranonce2_size) {
        Ok(None) => Ok(()),
        Ok(Some(narrow)) => {
            warn!(
                pool = %up.name,
                pool_extranonce2 = extranonce.extranonce2_size,
                miner_extranonce2 = narrow.extranonce2_size,
                "the pool's extranonce2 cannot hold extranonce1 + the configured extranonce2: \
                 new miners get a narrower extranonce2, and connected miners are asked once \
                 (rate-limited) to reconnect for it"
            );
            Ok(())
        }
        Err(e) => Err(LinkError::Unusable(e)),
    }
}

/// Writes one line to the pool within [`WRITE_TIMEOUT`].
async fn write(framed: &mut PoolFramed, line: String) -> Result<(), LinkError> {
    match timeout(WRITE_TIMEOUT, framed.send(line)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LinkError::Write(e)),
        Err(_) => Err(LinkError::WriteStalled(WRITE_TIMEOUT.as_secs())),
    }
}

fn lost(reason: LinkError, healthy: bool) -> Ended {
    Ended::Lost {
        reason,
        healthy,
        wait: None,
    }
}

type PoolFramed = Framed<PoolStream, LineCodec>;

impl Link {
    fn request(&mut self, pending: Pending) -> u64 {
        self.next_id += 1;
        self.pending.insert(self.next_id, pending);
        self.next_id
    }

    /// Ends the connection: every share waiting on it is unavailable.
    fn fail(&mut self, up: &Pool, reason: LinkError) -> Ended {
        self.drain(up);
        lost(reason, self.healthy)
    }

    fn drain(&mut self, up: &Pool) {
        let mut unanswered = 0;
        for (_, pending) in self.pending.drain() {
            if let Pending::Submit { settlement, .. } = pending {
                settlement.settle(Outcome::PoolUnavailable);
                unanswered += 1;
            }
        }
        if unanswered > 0 {
            info!(pool = %up.name, unanswered, "the connection ended with shares unanswered: settled as pool-unavailable");
        }
    }

    /// Writes `first` and every share queued behind it (block candidates
    /// first, at most [`wire::MAX_BATCH`]), then flushes once, all within
    /// [`WRITE_TIMEOUT`].
    async fn forward(
        &mut self,
        up: &mut Pool,
        framed: &mut PoolFramed,
        first: Forward,
    ) -> Result<(), LinkError> {
        let mut next = Some(first);
        let mut fed = 0;
        let batch = async {
            while let Some(share) = next.take() {
                if let Some(line) = self.submit(up, share) {
                    framed.feed(line).await.map_err(LinkError::Write)?;
                }
                fed += 1;
                if fed < wire::MAX_BATCH {
                    next = up.blocks.try_recv().or_else(|_| up.shares.try_recv()).ok();
                }
            }
            SinkExt::<String>::flush(framed)
                .await
                .map_err(LinkError::Write)
        };
        // A share taken from the queue is in `pending` before any await, so
        // a stalled write loses none: failing the link settles them all.
        timeout(WRITE_TIMEOUT, batch)
            .await
            .unwrap_or(Err(LinkError::WriteStalled(WRITE_TIMEOUT.as_secs())))
    }

    /// Records `share` as sent and returns its line; settles it as
    /// unavailable instead if the connection cannot take shares yet.
    fn submit(&mut self, up: &Pool, share: Forward) -> Option<String> {
        if !self.authorized || self.extranonce.is_none() {
            up.settle_unsent(share);
            return None;
        }
        let sent = Instant::now();
        self.next_id += 1;
        let line = wire::submit_line(self.next_id, &self.worker_json, &share);
        self.pending.insert(
            self.next_id,
            Pending::Submit {
                settlement: share.settlement,
                sent,
            },
        );
        self.owed_since.get_or_insert(sent);
        Some(line)
    }

    /// Handles one line from the pool; `Ok(Some(_))` ends the connection
    /// without it being the pool's fault (a reconnect request).
    async fn on_line(
        &mut self,
        up: &Pool,
        framed: &mut PoolFramed,
        line: &str,
    ) -> Result<Option<Ended>, LinkError> {
        let incoming = match Incoming::<ServerMethod>::from_line(line) {
            Ok(incoming) => incoming,
            Err(e) => {
                self.bad_lines += 1;
                warn!(pool = %up.name, error = %e, "unreadable line from pool");
                if let Some(response) = e.to_response() {
                    write(framed, response.to_line()).await?;
                }
                if self.bad_lines >= MAX_BAD_LINES {
                    return Err(LinkError::BadLines(MAX_BAD_LINES));
                }
                return Ok(None);
            }
        };
        self.bad_lines = 0;
        match incoming {
            Incoming::Response(response) => self.on_response(up, response),
            Incoming::Call { id, method } => self.on_call(up, framed, id, method).await,
        }
    }

    fn on_response(&mut self, up: &Pool, response: Response) -> Result<Option<Ended>, LinkError> {
        // Any answer, even a late one to a share already timed out, shows
        // the pool is still working through what it was sent.
        self.owed_since = None;
        let Some(pending) = response.id.as_u64().and_then(|id| self.pending.remove(&id)) else {
            debug!(pool = %up.name, id = ?response.id, "answer to no request of ours");
            return Ok(None);
        };
        match pending {
            Pending::Submit { settlement, sent } => {
                up.observe_submit(sent.elapsed());
                let outcome = match SubmitResult::from_response(&response) {
                    Ok(SubmitResult::Accepted) => Outcome::AcceptedByPool,
                    Ok(SubmitResult::Rejected(error)) => {
                        debug!(pool = %up.name, %error.code, %error.message, "pool rejected a share");
                        Outcome::RejectedByPool(PoolReject::from_code(error.code))
                    }
                    Err(_) => Outcome::RejectedByPool(PoolReject::Other),
                };
                settlement.settle(outcome);
                self.judge_answer(up, outcome);
            }
            Pending::Subscribe => {
                if let Some(error) = &response.error {
                    return Err(LinkError::SubscribeRefused(error.message.clone()));
                }
                let result = SubscribeResult::from_result(&response.result)
                    .map_err(LinkError::SubscribeUnreadable)?;
                let extranonce = PoolExtranonce {
                    extranonce1: result.extranonce1,
                    extranonce2_size: result.extranonce2_size,
                };
                fit_layouts(up, &extranonce)?;
                self.extranonce = Some(extranonce);
                // A job that came before this answer can be served now.
                self.republish(up, false);
            }
            Pending::Authorize => {
                let accepted = response.error.is_none() && response.result.as_bool() != Some(false);
                if !accepted {
                    return Err(LinkError::WorkerRefused(up.entry.user.clone()));
                }
                self.authorized = true;
                // Pools often send the first job before this answer.
                self.maybe_up(up);
            }
            Pending::Configure => {
                let mask = ConfigureResult::from_result(&response.result)
                    .ok()
                    .and_then(|r| r.version_rolling)
                    .filter(|_| response.error.is_none());
                up.publish(|state| {
                    state.version_mask = mask;
                    state.configured = true;
                    true
                });
            }
            Pending::ExtranonceSubscribe => {}
        }
        Ok(None)
    }

    async fn on_call(
        &mut self,
        up: &Pool,
        framed: &mut PoolFramed,
        id: Id,
        method: ServerMethod,
    ) -> Result<Option<Ended>, LinkError> {
        match method {
            ServerMethod::Notify(notify) => self.on_notify(up, &notify),
            ServerMethod::SetDifficulty(difficulty) => {
                self.difficulty = difficulty;
                self.difficulty_known = true;
                up.metrics
                    .pool_difficulty
                    .with_label_values(&[&up.name])
                    .set(difficulty.as_f64());
                // Pools apply a new difficulty at once, often without a new
                // job: the current job is offered again at the new one, so
                // miners' vardiff ceiling and the forwarding target follow.
                self.republish(up, false);
                self.maybe_up(up);
            }
            ServerMethod::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                let extranonce = PoolExtranonce {
                    extranonce1,
                    extranonce2_size,
                };
                fit_layouts(up, &extranonce)?;
                self.extranonce = Some(extranonce);
                // Jobs translated for the old extranonce1 build coinbases the
                // pool no longer expects: void them until the next job.
                self.last_notify = None;
                up.void_jobs(true);
            }
            ServerMethod::SetVersionMask(mask) => {
                up.publish(|state| {
                    state.version_mask = Some(mask);
                    true
                });
            }
            ServerMethod::Reconnect { wait_secs, .. } => {
                // Pools come only from the TOML file: reconnect to the same
                // address, never where the pool points.
                let wait = Duration::from_secs(wait_secs.unwrap_or(0)).min(MAX_RECONNECT_WAIT);
                info!(pool = %up.name, ?wait, "pool asked to reconnect; reconnecting to the configured address");
                return Ok(Some(Ended::Lost {
                    reason: LinkError::ReconnectAsked,
                    // Only a pool that served jobs resets the backoff: one
                    // that answers every connection with a reconnect waits.
                    healthy: self.healthy,
                    wait: Some(wait.max(Duration::from_millis(100))),
                }));
            }
            ServerMethod::ShowMessage(message) => {
                let message: String = message.chars().take(200).collect();
                info!(pool = %up.name, %message, "message from pool");
            }
            ServerMethod::GetVersion => {
                if !id.is_null() {
                    let version = format!("hashsplit/{}", env!("CARGO_PKG_VERSION"));
                    write(framed, Response::ok(id, version).to_line()).await?;
                }
            }
        }
        Ok(None)
    }

    fn on_notify(&mut self, up: &Pool, notify: &hashsplit_stratum::Notify) {
        self.last_notify = Some(notify.clone());
        if self.extranonce.is_none() {
            debug!(pool = %up.name, "job before subscribe answered; kept for then");
            return;
        }
        let epoch = up.state().epoch + u64::from(notify.clean_jobs);
        let jobs = self.translate(up, notify, epoch, &[]);
        if jobs.is_empty() {
            return;
        }
        let now = Instant::now();
        self.first_job.get_or_insert(now);
        self.last_job = Some(now);
        up.metrics.job_received(&up.name);
        up.publish(|state| {
            state.epoch = epoch;
            state.jobs = jobs;
            true
        });
        self.maybe_up(up);
    }

    /// Translates the latest job again and publishes it, in the same epoch
    /// and without clean_jobs: after a new difficulty or extranonce answer
    /// (`keep_existing = false`), or for a layout that appeared since
    /// (`keep_existing = true`, the other layouts keep their job).
    fn republish(&mut self, up: &Pool, keep_existing: bool) {
        let Some(mut notify) = self.last_notify.clone() else {
            return;
        };
        notify.clean_jobs = false;
        let (epoch, have) = {
            let state = up.state();
            let have = if keep_existing {
                state.jobs.clone()
            } else {
                Vec::new()
            };
            (state.epoch, have)
        };
        let mut jobs = self.translate(up, &notify, epoch, &have);
        if jobs.is_empty() {
            return;
        }
        if self.first_job.is_none() {
            let now = Instant::now();
            self.first_job = Some(now);
            self.last_job = Some(now);
            up.metrics.job_received(&up.name);
        }
        jobs.splice(0..0, have);
        up.publish(|state| {
            state.jobs = jobs;
            true
        });
    }

    /// Translates `notify` for every layout that fits this pool and is not
    /// among `have`.
    fn translate(
        &self,
        up: &Pool,
        notify: &hashsplit_stratum::Notify,
        epoch: u64,
        have: &[Arc<PoolJob>],
    ) -> Vec<Arc<PoolJob>> {
        let Some(extranonce) = &self.extranonce else {
            return Vec::new();
        };
        up.layouts
            .all()
            .into_iter()
            .filter(|layout| layout.padding_for(extranonce).is_some())
            .filter(|layout| !have.iter().any(|job| job.layout == *layout))
            .filter_map(|layout| {
                PoolJob::translate(
                    up.id,
                    notify,
                    extranonce,
                    layout,
                    self.difficulty,
                    epoch,
                    &up.ids,
                )
                .map_err(|e| warn!(pool = %up.name, error = %e, "pool job unusable"))
                .ok()
                .map(Arc::new)
            })
            .collect()
    }
}
