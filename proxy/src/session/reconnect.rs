//! Asking a miner to reconnect, for a layout every pool can take.
//!
//! When some pool's extranonce2 turns out too small for the configured
//! layout, new miners get a narrower one ([`crate::jobs::Layouts`]); miners
//! already connected are asked once, with a bare `client.reconnect` (to the
//! same server), to come back and get it. Requests are spread
//! out proxy-wide so a farm does not reconnect all at once.

use std::sync::Mutex;

use hashsplit_stratum::{Id, Method, ServerMethod};
use tokio::time::Instant;
use tracing::info;

use super::{Disconnect, Session};

/// How many reconnect requests the proxy sends per second at most.
const PER_SECOND: f64 = 5.0;

/// A token bucket for reconnect requests, shared by every session.
#[derive(Debug)]
pub struct ReconnectLimiter {
    state: Mutex<(f64, Instant)>,
}

impl Default for ReconnectLimiter {
    fn default() -> Self {
        ReconnectLimiter {
            state: Mutex::new((PER_SECOND, Instant::now())),
        }
    }
}

impl ReconnectLimiter {
    /// Takes a token if one is free at `now`.
    pub fn try_take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("limiter lock");
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * PER_SECOND)
            .min(PER_SECOND);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

impl Session {
    /// Asks the miner to reconnect if it has a layout some pool cannot
    /// take and it was not asked before; returns once the request is sent.
    pub(super) async fn maybe_ask_reconnect(&mut self) -> Result<(), Disconnect> {
        if self.reconnect_asked || self.layout == self.shared.layouts.for_new_miner() {
            return Ok(());
        }
        if !self.shared.reconnects.try_take(Instant::now()) {
            return Ok(());
        }
        self.reconnect_asked = true;
        self.shared.metrics.downstream_reconnect_requests.inc();
        info!(miner = %self.miner, peer = %self.peer, "asking the miner to reconnect for a narrower extranonce2");
        // No host or port: "the same server", which stays right behind
        // NAT or a load balancer, where the proxy's own address would not.
        let reconnect = ServerMethod::Reconnect {
            host: None,
            port: None,
            wait_secs: None,
        };
        self.send(reconnect.to_line(Id::Null)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_allows_a_burst_then_a_steady_rate() {
        let limiter = ReconnectLimiter::default();
        let start = Instant::now();
        let burst = (0..20).filter(|_| limiter.try_take(start)).count();
        assert_eq!(burst, 5);
        assert!(!limiter.try_take(start + Duration::from_millis(100)));
        assert!(limiter.try_take(start + Duration::from_millis(250)));
        let later = start + Duration::from_secs(10);
        assert_eq!((0..20).filter(|_| limiter.try_take(later)).count(), 5);
    }
}
