//! The Stratum v1 backend: one connection to a pool, from connect to loss.
//!
//! The handshake is pipelined the way ASIC firmware does it: configure
//! (version rolling), subscribe, extranonce.subscribe, authorize. Requests
//! carry the proxy's own ids and answers are matched by them, never by the
//! ids miners used. This file runs the connection's loop; what the pool
//! says is read in [`answers`], its jobs are translated in [`jobs`], shares
//! go out in batches in [`wire`], and [`health`] decides when the pool is
//! up, quiet, or to be quarantined.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_policy::{PoolTls, PoolUrl};
use hashsplit_stratum::{ClientMethod, Configure, Difficulty, Id, LineCodec, Method};
use tokio::time::{Instant, interval, timeout};
use tokio_util::codec::Framed;
use tracing::info;

mod answers;
mod health;
mod jobs;
mod wire;

pub(super) use health::Refusals;

use super::Settlement;
use super::backend::{Ended, LinkError, stop_requested};
use super::owner::Pool;
use crate::jobs::PoolExtranonce;
use crate::metrics::Outcome;
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
    /// The submit line being written (one buffer for every share).
    line: String,
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
        line: String::new(),
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
}
