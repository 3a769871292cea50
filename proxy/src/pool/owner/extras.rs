//! A pool's extra connections: one for each extranonce space past the
//! first that holds miners, opened when the space fills and closed once it
//! has been empty for [`EXTRA_IDLE`].

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{EXTRA_IDLE, Pool};

/// The owner's extra connections: one per space past the first, running
/// while the space holds miners (and [`EXTRA_IDLE`] after).
pub(super) struct Extras<'a> {
    pub(super) idle: &'a mut Vec<Option<Pool>>,
    pub(super) running: &'a mut JoinSet<Pool>,
    pub(super) closers: &'a mut Vec<Option<CancellationToken>>,
    pub(super) empty_since: &'a mut Vec<Option<Instant>>,
    pub(super) shutdown: &'a CancellationToken,
}

impl Extras<'_> {
    /// Opens a connection for each space that holds miners and has none,
    /// and notes since when each open one's space has been empty.
    pub(super) fn follow(&mut self, held: &[bool], now: Instant) {
        for (index, &held) in held.iter().enumerate().skip(1) {
            if index >= self.idle.len() {
                break;
            }
            if self.closers[index].is_some() {
                match (held, self.empty_since[index]) {
                    (true, _) => self.empty_since[index] = None,
                    (false, None) => self.empty_since[index] = Some(now),
                    (false, Some(_)) => {}
                }
            } else if held {
                self.open(index);
            }
        }
    }

    fn open(&mut self, index: usize) {
        let Some(mut pool) = self.idle[index].take() else {
            return;
        };
        if self.shutdown.is_cancelled() || pool.desired.borrow().retired {
            // A pool on its way out takes no new miners anywhere.
            self.idle[index] = Some(pool);
            return;
        }
        info!(pool = %pool.name, space = %pool.space, "the pool's connections are full: opening another");
        let close = self.shutdown.child_token();
        pool.shutdown = close.clone();
        self.closers[index] = Some(close);
        self.empty_since[index] = None;
        pool.start_like_first();
        self.running.spawn(async move {
            pool.serve().await;
            // Its jobs were for a pool extranonce1 nobody will use again.
            pool.void_jobs(true);
            pool
        });
    }

    /// Takes back a connection that stopped.
    pub(super) fn stopped(&mut self, joined: Result<Pool, tokio::task::JoinError>) {
        match joined {
            Ok(pool) => {
                let index = pool.space.index();
                info!(pool = %pool.name, space = %pool.space, "extra connection closed");
                self.closers[index] = None;
                self.empty_since[index] = None;
                self.idle[index] = Some(pool);
            }
            // A connection that panicked cannot be reopened: its space's
            // miners mine the other pools.
            Err(error) => warn!(%error, "an extra pool connection failed"),
        }
    }

    /// Returns when the next open connection's space will have been empty
    /// for [`EXTRA_IDLE`].
    pub(super) fn next_close(&self) -> Option<Instant> {
        self.empty_since
            .iter()
            .flatten()
            .min()
            .map(|since| *since + EXTRA_IDLE)
    }

    /// Closes every extra connection whose space has been empty for
    /// [`EXTRA_IDLE`].
    pub(super) fn close_idle(&mut self, now: Instant) {
        for index in 1..self.empty_since.len() {
            if self.empty_since[index].is_some_and(|since| now >= since + EXTRA_IDLE) {
                self.empty_since[index] = None;
                if let Some(close) = &self.closers[index] {
                    close.cancel();
                }
            }
        }
    }
}
