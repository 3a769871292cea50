//! What talks to a pool, behind its owner.
//!
//! A backend runs one connection (or whatever its kind of pool has instead)
//! from start to loss: it publishes Stratum-shaped jobs through the owner
//! (`Pool::publish`, `set_up`, `void_jobs`), takes shares from the owner's
//! queues (block candidates first) and settles every one of them
//! (`Pool::settle`). The owner does the rest: backoff, reloads, retirement,
//! draining, series. A new kind of pool is a new [`Backend`] variant; the
//! handle, sessions and the policy task stay as they are.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use hashsplit_stratum::{CodecError, ParseErrorKind};

use super::owner::Pool;
use super::sv1;
use crate::jobs::TranslateError;

/// How a backend's connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The proxy is shutting down, or the pool's retirement grace is over.
    Stopped,
    /// The connection was lost or given up; `healthy` says whether it got
    /// as far as serving jobs (the backoff starts over if so), `wait` is a
    /// delay the pool asked for.
    Lost {
        reason: LinkError,
        healthy: bool,
        wait: Option<Duration>,
    },
}

/// Why a connection to a pool ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error("connect to {url}: timed out")]
    ConnectTimeout { url: String },
    #[error("reconnecting with the reloaded url or credentials")]
    Reloaded,
    #[error("pool asked to reconnect")]
    ReconnectAsked,
    #[error("write: {0}")]
    Write(CodecError),
    #[error("pool stopped reading (no write in {0}s)")]
    WriteStalled(u64),
    #[error("read: {0}")]
    Read(CodecError),
    #[error("pool closed the connection")]
    Closed,
    #[error("{0} unreadable lines in a row")]
    BadLines(u32),
    #[error("subscribe refused: {0}")]
    SubscribeRefused(String),
    #[error("subscribe answer unreadable: {0}")]
    SubscribeUnreadable(ParseErrorKind),
    #[error("pool refused worker {0:?}")]
    WorkerRefused(String),
    #[error("{0}: the pool cannot be used")]
    Unusable(TranslateError),
    #[error("pool stopped answering (no answer for {0}s since a share was sent)")]
    Silent(u64),
    #[error("no authorized job within the handshake time")]
    NoFirstJob,
    #[error("no new job for {0}s")]
    NoNewJob(u64),
    #[error("{0}")]
    Node(super::node::NodeError),
}

/// The kinds of pool the proxy can run.
enum Backend {
    /// Stratum v1 over a byte stream.
    Stratum1,
    /// The operator's own Bitcoin Core, mined on its templates.
    Node(hashsplit_policy::NodeConfig),
}

impl Backend {
    /// Returns the backend for a pool's entry: a node pool (an `http://`
    /// url with node settings) is polled for templates; every other url is
    /// Stratum v1 (a `stratum+ssl://` one too: its stream comes from
    /// [`sv1::connect`]). Stratum V2 would be a variant of its own.
    fn for_pool(pool: &Pool) -> Self {
        match &pool.entry.node {
            Some(node) => Backend::Node(node.clone()),
            None => Backend::Stratum1,
        }
    }
}

/// Runs one connection of `pool` until it is lost or the pool stops.
pub(super) async fn run(pool: &mut Pool) -> Ended {
    match Backend::for_pool(pool) {
        Backend::Stratum1 => sv1::run(pool).await,
        Backend::Node(node) => super::node::run(pool, node).await,
    }
}

/// Completes when a backend must stop: at shutdown, or when the grace of a
/// pool taken out of the config is over.
pub(super) async fn stop_requested(shutdown: &CancellationToken, retire_at: Option<Instant>) {
    match retire_at {
        Some(at) => tokio::select! {
            () = shutdown.cancelled() => {}
            () = sleep_until(at) => {}
        },
        None => shutdown.cancelled().await,
    }
}
