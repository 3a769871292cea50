//! What a miner asks: each line parsed once into a typed call, answered
//! here, with the handshake's state kept by [`Handshake`].

use hashsplit_policy::Observation;
use hashsplit_stratum::{
    ClientMethod, Configure, ConfigureResult, Id, Incoming, ParseError, Response, StratumError,
    SubscribeResult,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::handshake::Authorized;
use super::{Disconnect, MAX_BAD_LINES, Session};

impl Session {
    pub(super) async fn on_line(&mut self, line: &str) -> Result<(), Disconnect> {
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

    pub(super) async fn on_bad_line(&mut self, error: ParseError) -> Result<(), Disconnect> {
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
            return Err(Disconnect::BadInput);
        }
        Ok(())
    }

    async fn on_call(&mut self, id: Id, method: ClientMethod) -> Result<(), Disconnect> {
        match method {
            ClientMethod::Subscribe { .. } => {
                self.handshake.subscribe();
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

    pub(super) async fn reply(
        &mut self,
        id: Id,
        result: serde_json::Value,
    ) -> Result<(), Disconnect> {
        if id.is_null() {
            return Ok(());
        }
        self.send(Response::ok(id, result).to_line()).await
    }

    pub(super) async fn reply_error(
        &mut self,
        id: Id,
        error: StratumError,
    ) -> Result<(), Disconnect> {
        if id.is_null() {
            return Ok(());
        }
        self.send(Response::error(id, error).to_line()).await
    }

    async fn on_authorize(&mut self, id: Id, user: String) -> Result<(), Disconnect> {
        let workers = &self.shared.metrics.workers;
        let name = user.clone();
        let authorized = self.handshake.authorize(user, workers);
        if matches!(authorized, Ok(Authorized::First | Authorized::Another)) {
            self.shared.directory.authorized(self.miner, &name);
        }
        match authorized {
            Err(refused) => self.reply_error(id, refused).await,
            Ok(Authorized::Another | Authorized::Again) => self.reply(id, true.into()).await,
            Ok(Authorized::First) => {
                self.reply(id, true.into()).await?;
                let worker = self.handshake.first_worker();
                info!(miner = %self.miner, peer = %self.peer, %worker, "miner authorized");
                self.shared
                    .policy
                    .membership(Observation::MinerJoined { miner: self.miner })
                    .await;
                self.start_mining().await
            }
        }
    }

    async fn on_configure(&mut self, id: Id, configure: &Configure) -> Result<(), Disconnect> {
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
}
