//! Leaving a draining proxy (see [`crate::drain`]): when the session's
//! turn comes, the miner is asked with a bare `client.reconnect` (the same
//! address: through the balancer, to another instance) as soon as none of
//! its shares is waiting for a pool's answer, so no accepted share is lost
//! on the way out. The session keeps answering until the miner goes, so a
//! share it sent before reading the request is answered too.

use std::time::Duration;

use hashsplit_stratum::{Id, Method, ServerMethod};
use tokio::time::Instant;
use tracing::debug;

use super::{Disconnect, Session};

/// Longest a turn waits for the miner's shares in flight to be answered
/// (a pool answers or times out within 5 s).
const SETTLE: Duration = Duration::from_secs(6);
/// Longest the miner has to go once asked.
const GRACE: Duration = Duration::from_secs(5);

/// Where a session whose turn to leave came stands.
#[derive(Debug, Clone, Copy)]
pub(super) struct Leaving {
    /// Whether the miner was asked to reconnect.
    pub(super) asked: bool,
    /// When to ask anyway (not asked yet), or to close (asked).
    pub(super) by: Instant,
}

impl Session {
    /// Starts leaving: the drain gave this session its turn.
    pub(super) fn on_turn(&mut self) {
        self.leaving = Some(Leaving {
            asked: false,
            by: Instant::now() + SETTLE,
        });
    }

    /// Asks the miner to reconnect once its shares are settled (or `due`:
    /// the wait is over), and ends the session once the miner had its
    /// grace to go.
    pub(super) async fn leave_when_settled(&mut self, due: bool) -> Result<(), Disconnect> {
        let Some(leaving) = self.leaving else {
            return Ok(());
        };
        if leaving.asked {
            return if due {
                Err(Disconnect::Drained)
            } else {
                Ok(())
            };
        }
        if !self.pending.is_empty() && !due {
            return Ok(());
        }
        if !self.handshake.is_subscribed() {
            return Err(Disconnect::Drained);
        }
        self.shared.metrics.downstream_reconnect_requests.inc();
        debug!(miner = %self.miner, peer = %self.peer, "asking the miner to reconnect: this proxy drains");
        let reconnect = ServerMethod::Reconnect {
            host: None,
            port: None,
            wait_secs: None,
        };
        self.send(reconnect.to_line(Id::Null)).await?;
        self.leaving = Some(Leaving {
            asked: true,
            by: Instant::now() + GRACE,
        });
        Ok(())
    }

    /// Returns why a session ended whose miner closed the connection.
    pub(super) fn closed(&self) -> Disconnect {
        if self.leaving.is_some_and(|leaving| leaving.asked) {
            Disconnect::Drained
        } else {
            Disconnect::Closed
        }
    }
}
