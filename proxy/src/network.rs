//! Live network shares: the pools' shares of the whole network fetched
//! from the `[network] source` every `refresh`, and applied through the
//! same reload path as SIGHUP and the control API.
//!
//! Each fetch ([`fetch`]) is read as one of the shapes of [`source`],
//! matched to our pools by `[network] names` (or their own names), and
//! handed to the proxy's reload entry point, which sets those pools'
//! `network_share` over the file's values ([`overlay`]), now and at every
//! later reload, until a fetch brings others. A fetch that fails (no
//! answer, not 200, a body of none of the shapes, none of our pools named)
//! changes nothing: the last good values stay in force, the failure is
//! logged and counted, and `hashsplit_network_share_age_seconds` keeps
//! rising; past `max_age` the shares are logged as stale (and the
//! `HashsplitNetworkSharesStale` alert compares the age with
//! `hashsplit_network_share_max_age_seconds`). Series: [`metrics`].

pub mod fetch;
pub mod metrics;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hashsplit_policy::{Policy, Ratio};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, NetworkConfig};
use fetch::FetchError;
use metrics::NetworkMetrics;
use source::{NetworkShares, SourceError};

/// Pools' fetched network shares, by our pool name.
pub type Fetched = BTreeMap<String, Ratio>;

/// The proxy's entry point for fetched shares: applies them as a reload
/// would.
pub type Apply = Arc<dyn Fn(Fetched) + Send + Sync>;

/// How often the age series is brought up to date between fetches.
const AGE_TICK: Duration = Duration::from_secs(1);

/// Why a refresh brought no shares.
#[derive(Debug, Error)]
pub enum RefreshError {
    /// The source could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The answer is none of the shapes.
    #[error("{url}: {source}")]
    Source {
        /// The source.
        url: String,
        /// What is wrong with the answer.
        #[source]
        source: SourceError,
    },
    /// The answer names none of our pools.
    #[error("{url} lists {listed} pools but none of ours (looked for {looked_for})")]
    NoPool {
        /// The source.
        url: String,
        /// How many pools it lists.
        listed: usize,
        /// The names looked for.
        looked_for: String,
    },
}

/// Sets the `network_share` of each pool of `policy` that has a fetched
/// share to that share.
pub fn overlay(policy: &mut Policy, fetched: &Fetched) {
    for pool in policy.pools.iter_mut().chain(&mut policy.disabled) {
        if let Some(&share) = fetched.get(&pool.name) {
            pool.network_share = Some(share);
        }
    }
}

/// Returns the shares `shares` gives the pools of `policy`, and the pools
/// it does not list.
pub fn match_pools(
    network: &NetworkConfig,
    policy: &Policy,
    shares: &NetworkShares,
) -> (Fetched, Vec<String>) {
    let mut fetched = Fetched::new();
    let mut missing = Vec::new();
    for pool in policy.pools.iter().chain(&policy.disabled) {
        let share = shares
            .get(network.source_name(&pool.name))
            .and_then(Ratio::new);
        match share {
            Some(share) => {
                fetched.insert(pool.name.clone(), share);
            }
            None => missing.push(pool.name.clone()),
        }
    }
    (fetched, missing)
}

/// The task that keeps the network shares fresh.
pub struct Refresher {
    /// `[network]` as started with.
    pub config: NetworkConfig,
    /// The config in force: its pools are the ones looked up.
    pub current: watch::Receiver<Arc<Config>>,
    /// Where fetched shares are applied.
    pub apply: Apply,
    /// Its series.
    pub metrics: NetworkMetrics,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Refresher {
    /// Fetches at once and then every `refresh`, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let started = Instant::now();
        let mut last_good: Option<Instant> = None;
        let mut stale = false;
        let mut next_fetch = started;
        let mut tick = tokio::time::interval(AGE_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.metrics.max_age.set(self.config.max_age.as_secs_f64());
        info!(source = %self.config.source, refresh = ?self.config.refresh, "fetching network shares");
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next_fetch) => {
                    let refreshed = tokio::select! {
                        () = shutdown.cancelled() => return,
                        refreshed = self.refresh() => refreshed,
                    };
                    next_fetch = Instant::now() + self.config.refresh;
                    match refreshed {
                        Ok(fetched) => {
                            last_good = Some(Instant::now());
                            self.metrics.fetches.with_label_values(&["ok"]).inc();
                            self.metrics.share.reset();
                            for (pool, share) in &fetched {
                                self.metrics.share.with_label_values(&[pool]).set(share.get());
                            }
                            (self.apply)(fetched);
                            if stale {
                                stale = false;
                                info!(source = %self.config.source, "network shares are fresh again");
                            }
                        }
                        Err(error) => {
                            self.metrics.fetches.with_label_values(&["error"]).inc();
                            let age = last_good.unwrap_or(started).elapsed();
                            warn!(
                                %error,
                                age = ?Duration::from_secs(age.as_secs()),
                                "network shares not refreshed; the last good values stay in force"
                            );
                        }
                    }
                }
                _ = tick.tick() => {}
            }
            let age = last_good.unwrap_or(started).elapsed();
            self.metrics.age.set(age.as_secs_f64());
            if age > self.config.max_age && !stale {
                stale = true;
                warn!(
                    source = %self.config.source,
                    age = ?Duration::from_secs(age.as_secs()),
                    max_age = ?self.config.max_age,
                    "network shares are stale; the last good values stay in force"
                );
            }
        }
    }

    /// Fetches the source once and matches it to the pools in force.
    async fn refresh(&self) -> Result<Fetched, RefreshError> {
        let url = &self.config.source;
        let body = fetch::fetch(url).await?;
        let shares = source::parse(&body).map_err(|source| RefreshError::Source {
            url: url.to_string(),
            source,
        })?;
        let config = Arc::clone(&self.current.borrow());
        let (fetched, missing) = match_pools(&self.config, &config.policy, &shares);
        if fetched.is_empty() {
            let looked_for: Vec<&str> = config
                .policy
                .pools
                .iter()
                .chain(&config.policy.disabled)
                .map(|pool| self.config.source_name(&pool.name))
                .collect();
            return Err(RefreshError::NoPool {
                url: url.to_string(),
                listed: shares.len(),
                looked_for: looked_for.join(", "),
            });
        }
        if !missing.is_empty() {
            warn!(
                source = %url,
                pools = ?missing,
                "the source does not list these pools; they keep the file's network_share"
            );
        }
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[policy]\nmax_network_share = 0.2\n\
        [[pool]]\nname = \"ocean\"\nurl = \"stratum+tcp://o.example:3333\"\nuser = \"u\"\nnetwork_share = 0.01\n\
        [[pool]]\nname = \"big\"\nurl = \"stratum+tcp://b.example:3333\"\nuser = \"u\"\n\
        [[pool]]\nname = \"off\"\nurl = \"stratum+tcp://x.example:3333\"\nuser = \"u\"\nenabled = false\n\
        [network]\nsource = \"http://127.0.0.1:1/pools\"\n[network.names]\nbig = \"Foundry USA\"\n";

    #[test]
    fn pools_are_found_by_their_mapped_or_own_names_and_overlaid() {
        let (config, _) = Config::from_toml_str(TEXT).unwrap();
        let network = config.network.clone().unwrap();
        let shares = source::parse(br#"{"FOUNDRY USA": 30, "Ocean": 10, "others": 60}"#).unwrap();
        let (fetched, missing) = match_pools(&network, &config.policy, &shares);
        let got: Vec<(&str, f64)> = fetched.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
        assert_eq!(got, [("big", 0.3), ("ocean", 0.1)]);
        assert_eq!(missing, ["off"]);

        let mut policy = config.policy.clone();
        overlay(&mut policy, &fetched);
        assert_eq!(policy.pools[0].network_share.map(Ratio::get), Some(0.1));
        assert_eq!(policy.pools[1].network_share.map(Ratio::get), Some(0.3));
        assert_eq!(
            policy.disabled[0].network_share, None,
            "not fetched: as in the file"
        );
    }
}
