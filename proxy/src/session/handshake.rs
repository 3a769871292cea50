//! Where a miner stands in the handshake, as a value: connected →
//! subscribed → mining (subscribed and authorized). The protocol lets a
//! miner authorize before it subscribes (some firmware does), so that
//! order reaches mining too, through [`Handshake::Authorized`].
//!
//! A submit is judged only with a [`MayMine`] that [`Handshake::may_mine`]
//! gives for an authorized worker of a mining session, so a share from a
//! miner that has not subscribed and authorized cannot be accepted.

use hashsplit_stratum::{Reject, StratumError};

use crate::metrics::{WorkerMetrics, WorkerSeries};

/// Worker names longer than this are refused.
const MAX_WORKER_NAME: usize = 256;
/// Distinct worker names one connection may authorize.
const MAX_WORKERS_PER_CONNECTION: usize = 64;

/// The workers authorized on one connection, first first (a farm proxy
/// has one; a `Vec` costs less than a set and 64 at most are searched).
/// One `Vec` for names and per-worker series keeps an idle miner small.
#[derive(Debug, Default)]
pub(super) struct Workers(Vec<Worker>);

#[derive(Debug)]
struct Worker {
    name: String,
    /// This connection's hold on the worker's per-worker series.
    _series: Option<WorkerSeries>,
}

impl Workers {
    /// Returns the first worker authorized.
    pub(super) fn first(&self) -> &str {
        self.0.first().map_or("", |worker| worker.name.as_str())
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|worker| worker.name == name)
    }

    /// Adds `user`, or refuses it; an already authorized name is fine.
    fn add(&mut self, user: String, metrics: &WorkerMetrics) -> Result<(), StratumError> {
        let printable = user.chars().all(|c| !c.is_control());
        if user.is_empty() || user.len() > MAX_WORKER_NAME || !printable {
            return Err(StratumError::unauthorized());
        }
        if self.contains(&user) {
            return Ok(());
        }
        if self.0.len() >= MAX_WORKERS_PER_CONNECTION {
            return Err(StratumError::other("too many workers on one connection"));
        }
        let series = metrics.join(&user);
        // Nearly every miner authorizes one worker: room for exactly that
        // many, not the four a first push would reserve in every idle miner.
        self.0.reserve_exact(1);
        self.0.push(Worker {
            name: user,
            _series: series,
        });
        Ok(())
    }
}

/// Where a miner stands in the handshake.
#[derive(Debug, Default)]
pub(super) enum Handshake {
    /// Neither subscribed nor authorized (configure and the like may
    /// have come).
    #[default]
    Connected,
    /// Subscribed; no worker authorized yet.
    Subscribed,
    /// A worker authorized before the miner subscribed.
    Authorized(Workers),
    /// Subscribed, with at least one worker authorized: jobs are sent and
    /// shares taken.
    Mining(Workers),
}

/// What an authorize did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authorized {
    /// The miner's first worker: it joins the policy.
    First,
    /// Another worker of the same connection.
    Another,
    /// A worker already authorized.
    Again,
}

/// Proof that a submit comes from an authorized worker of a miner that is
/// mining: the only way to judge a share.
#[derive(Debug)]
pub(super) struct MayMine(());

impl Handshake {
    /// Takes in a `mining.subscribe` (a second one changes nothing).
    pub(super) fn subscribe(&mut self) {
        *self = match std::mem::take(self) {
            Handshake::Connected | Handshake::Subscribed => Handshake::Subscribed,
            Handshake::Authorized(workers) | Handshake::Mining(workers) => {
                Handshake::Mining(workers)
            }
        };
    }

    /// Takes in a `mining.authorize` for `user`, or refuses it with the
    /// error the miner is sent (the state stays as it was).
    pub(super) fn authorize(
        &mut self,
        user: String,
        metrics: &WorkerMetrics,
    ) -> Result<Authorized, StratumError> {
        match self {
            Handshake::Authorized(workers) | Handshake::Mining(workers) => {
                if workers.contains(&user) {
                    return Ok(Authorized::Again);
                }
                workers.add(user, metrics).map(|()| Authorized::Another)
            }
            Handshake::Connected | Handshake::Subscribed => {
                let mut workers = Workers::default();
                workers.add(user, metrics)?;
                *self = match self {
                    Handshake::Subscribed => Handshake::Mining(workers),
                    _ => Handshake::Authorized(workers),
                };
                Ok(Authorized::First)
            }
        }
    }

    /// Returns whether the miner subscribed.
    pub(super) fn is_subscribed(&self) -> bool {
        matches!(self, Handshake::Subscribed | Handshake::Mining(_))
    }

    /// Returns the first worker authorized ("" if none).
    pub(super) fn first_worker(&self) -> &str {
        match self {
            Handshake::Authorized(workers) | Handshake::Mining(workers) => workers.first(),
            Handshake::Connected | Handshake::Subscribed => "",
        }
    }

    /// Returns whether a worker authorized (the miner is known to the
    /// policy).
    pub(super) fn has_workers(&self) -> bool {
        matches!(self, Handshake::Authorized(_) | Handshake::Mining(_))
    }

    /// Returns the workers of a mining miner.
    pub(super) fn mining(&self) -> Option<&Workers> {
        match self {
            Handshake::Mining(workers) => Some(workers),
            _ => None,
        }
    }

    /// Returns the proof a share of `worker` may be judged, or why it is
    /// refused: the miner has not subscribed, or the worker has not
    /// authorized.
    pub(super) fn may_mine(&self, worker: &str) -> Result<MayMine, Reject> {
        match self {
            Handshake::Connected | Handshake::Authorized(_) => Err(Reject::NotSubscribed),
            Handshake::Subscribed => Err(Reject::Unauthorized),
            Handshake::Mining(workers) if workers.contains(worker) => Ok(MayMine(())),
            Handshake::Mining(_) => Err(Reject::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> WorkerMetrics {
        WorkerMetrics::disabled()
    }

    #[test]
    fn a_connected_miner_may_not_submit_and_is_told_to_subscribe() {
        let handshake = Handshake::Connected;
        assert_eq!(handshake.may_mine("w").err(), Some(Reject::NotSubscribed));
        assert!(!handshake.is_subscribed() && !handshake.has_workers());
    }

    #[test]
    fn a_subscribed_miner_may_not_submit_until_a_worker_authorizes() {
        let mut handshake = Handshake::Connected;
        handshake.subscribe();
        assert_eq!(handshake.may_mine("w").err(), Some(Reject::Unauthorized));
        assert!(handshake.mining().is_none());
        assert_eq!(
            handshake.authorize("w".into(), &metrics()),
            Ok(Authorized::First)
        );
        assert!(handshake.may_mine("w").is_ok());
        // Another worker of the same connection must authorize too.
        assert_eq!(handshake.may_mine("x").err(), Some(Reject::Unauthorized));
        assert_eq!(
            handshake.authorize("x".into(), &metrics()),
            Ok(Authorized::Another)
        );
        assert!(handshake.may_mine("x").is_ok());
        assert_eq!(handshake.mining().map(Workers::first), Some("w"));
    }

    #[test]
    fn authorizing_first_is_allowed_but_mining_waits_for_subscribe() {
        let mut handshake = Handshake::Connected;
        assert_eq!(
            handshake.authorize("w".into(), &metrics()),
            Ok(Authorized::First)
        );
        assert!(handshake.has_workers() && !handshake.is_subscribed());
        assert_eq!(handshake.may_mine("w").err(), Some(Reject::NotSubscribed));
        assert!(handshake.mining().is_none());
        handshake.subscribe();
        assert!(handshake.may_mine("w").is_ok());
        // A second subscribe leaves the miner mining.
        handshake.subscribe();
        assert!(handshake.may_mine("w").is_ok());
    }

    #[test]
    fn a_refused_worker_changes_nothing() {
        let mut handshake = Handshake::Connected;
        handshake.subscribe();
        for bad in [
            String::new(),
            "a\nb".into(),
            "w".repeat(MAX_WORKER_NAME + 1),
        ] {
            assert!(handshake.authorize(bad, &metrics()).is_err());
            assert!(matches!(handshake, Handshake::Subscribed));
        }
        for i in 0..MAX_WORKERS_PER_CONNECTION {
            handshake.authorize(format!("w{i}"), &metrics()).unwrap();
        }
        let error = handshake.authorize("one-more".into(), &metrics());
        assert_eq!(
            error.unwrap_err().message,
            "too many workers on one connection"
        );
        // One already authorized is still fine.
        assert_eq!(
            handshake.authorize("w0".into(), &metrics()),
            Ok(Authorized::Again)
        );
        assert_eq!(
            handshake.may_mine("one-more").err(),
            Some(Reject::Unauthorized)
        );
    }
}
