//! What the pool says: answers to the proxy's requests (matched by the
//! proxy's own ids) and the pool's own calls (jobs, difficulty, a new
//! extranonce, version mask, reconnect).

use std::time::Duration;

use hashsplit_stratum::{
    ConfigureResult, Id, Incoming, Response, ServerMethod, SubmitResult, SubscribeResult,
};
use tracing::{debug, info, warn};

use super::jobs::fit_layouts;
use super::{Link, MAX_BAD_LINES, MAX_RECONNECT_WAIT, Pending, PoolFramed, write};
use crate::jobs::PoolExtranonce;
use crate::metrics::{Outcome, PoolReject};
use crate::pool::backend::{Ended, LinkError};
use crate::pool::owner::Pool;

impl Link {
    /// Handles one line from the pool; `Ok(Some(_))` ends the connection
    /// without it being the pool's fault (a reconnect request).
    pub(super) async fn on_line(
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
                up.series.difficulty.set(difficulty.as_f64());
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
}
