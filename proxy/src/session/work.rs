//! The work a mining miner is sent: its pool's newest job, the difficulty
//! vardiff chose (capped at the pool's), and the version-rolling mask its
//! pool takes.

use std::sync::Arc;

use hashsplit_stratum::{Difficulty, Id, Method, ServerMethod};
use tokio::time::Instant;

use super::{Disconnect, Session};
use crate::extranonce::Space;
use crate::jobs::PoolJob;

impl Session {
    /// Sends the current pool's newest job if the miner does not have it.
    pub(super) async fn on_pool_state(&mut self) -> Result<(), Disconnect> {
        let Some(pool) = self.current else {
            self.pools[0].borrow_and_update();
            return self.start_mining().await;
        };
        let (up, job, pool_mask) = {
            let state = self.pools[pool.index()].borrow_and_update();
            let pool_mask = state.configured.then(|| state.version_mask.unwrap_or(0));
            (state.up, state.job_for(self.layout).cloned(), pool_mask)
        };
        self.fit_version_mask(pool_mask).await?;
        let Some(job) = job.filter(|_| up) else {
            // A pool that went down moves its miners at the next plan; an
            // extra connection of it that went down (which the policy does
            // not hear of) moves its space's miners now. Until then the
            // miner hashes the last job, judged by its epoch.
            if self.extranonce1.space() != Space::FIRST {
                return self.follow_assignment().await;
            }
            return Ok(());
        };
        let same = self
            .sent_job
            .as_ref()
            .is_some_and(|sent| Arc::ptr_eq(sent, &job));
        if same {
            return Ok(());
        }
        let clean = job.notify.clean_jobs
            || self
                .sent_job
                .as_ref()
                .is_some_and(|sent| sent.epoch != job.epoch || sent.pool != job.pool);
        self.send_job(job, clean).await
    }

    pub(super) async fn send_job(
        &mut self,
        job: Arc<PoolJob>,
        clean: bool,
    ) -> Result<(), Disconnect> {
        self.vardiff.cap(job.pool_difficulty, Instant::now());
        self.send_difficulty().await?;
        // Every miner with this layout is sent the same bytes: rendered
        // once per job, not once per miner.
        self.write(job.notify_line(clean)).await?;
        self.book.sent(Arc::clone(&job), self.vardiff.current());
        self.sent_job = Some(job);
        Ok(())
    }

    /// Narrows the miner's version-rolling mask to what its pool takes (a
    /// pool that answered `mining.configure` late, or sent
    /// `mining.set_version_mask`), telling the miner with
    /// `mining.set_version_mask`.
    async fn fit_version_mask(&mut self, pool_mask: Option<u32>) -> Result<(), Disconnect> {
        let (Some(mine), Some(pool_mask)) = (self.version_mask, pool_mask) else {
            return Ok(());
        };
        if mine & !pool_mask == 0 {
            return Ok(());
        }
        let narrowed = mine & pool_mask;
        self.version_mask = (narrowed != 0).then_some(narrowed);
        self.send(ServerMethod::SetVersionMask(narrowed).to_line(Id::Null))
            .await
    }

    /// Sends `mining.set_difficulty` if vardiff's difficulty differs from
    /// what the miner was last told.
    pub(super) async fn send_difficulty(&mut self) -> Result<(), Disconnect> {
        let difficulty = self.vardiff.current();
        if self.sent_difficulty == Some(difficulty) {
            return Ok(());
        }
        if self.sent_difficulty.is_some_and(|sent| difficulty < sent) {
            self.book.lower_difficulty(difficulty);
        }
        self.sent_difficulty = Some(difficulty);
        self.send(ServerMethod::SetDifficulty(difficulty).to_line(Id::Null))
            .await
    }

    /// Returns the difficulty vardiff may not exceed: the current pool's.
    pub(super) fn ceiling(&self) -> Difficulty {
        self.sent_job
            .as_ref()
            .map_or(Difficulty::try_new(f64::MAX).expect("finite"), |job| {
                job.pool_difficulty
            })
    }

    pub(super) async fn retarget(&mut self) -> Result<(), Disconnect> {
        if self.sent_job.is_none() {
            return Ok(());
        }
        let ceiling = self.ceiling();
        if self.vardiff.retarget(ceiling, Instant::now()).is_some() {
            self.send_difficulty().await?;
        }
        Ok(())
    }
}
