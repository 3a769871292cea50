//! A pool's jobs, translated for every miner layout that fits the pool and
//! published through the owner: on a notify, and again after a new
//! difficulty, extranonce answer or miner layout.

use std::sync::Arc;

use hashsplit_stratum::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Link;
use crate::jobs::{PoolExtranonce, PoolJob};
use crate::pool::backend::LinkError;
use crate::pool::owner::Pool;

/// Makes sure miners can mine a pool with `extranonce`: narrows the layout
/// of new miners if the configured one does not fit (and says so, once).
pub(super) fn fit_layouts(up: &Pool, extranonce: &PoolExtranonce) -> Result<(), LinkError> {
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

impl Link {
    /// Takes in a new job from the pool and publishes its translations.
    pub(super) fn on_notify(&mut self, up: &Pool, notify: &Notify) {
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
        up.count_job();
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
    pub(super) fn republish(&mut self, up: &Pool, keep_existing: bool) {
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
            up.count_job();
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
        notify: &Notify,
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
