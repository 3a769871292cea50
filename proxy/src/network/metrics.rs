//! The series of the network-share refresher, registered in the proxy's
//! registry only when `[network]` is configured.

use prometheus::{Gauge, GaugeVec, IntCounterVec, Opts, Registry};

/// The refresher's series.
#[derive(Debug, Clone)]
pub struct NetworkMetrics {
    /// Seconds since the shares in force were fetched (since the start,
    /// before any fetch succeeded).
    pub age: Gauge,
    /// `[network] max_age`, so an alert needs no copy of the config.
    pub max_age: Gauge,
    /// Each pool's share of the network as last fetched.
    pub share: GaugeVec,
    /// Fetches by result (`ok`, `error`).
    pub fetches: IntCounterVec,
}

impl NetworkMetrics {
    /// Registers the series in `registry`.
    ///
    /// # Errors
    /// If they are registered already.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = NetworkMetrics {
            age: Gauge::new(
                "hashsplit_network_share_age_seconds",
                "Seconds since the pools' network shares were last fetched (since the start before any fetch succeeded)",
            )?,
            max_age: Gauge::new(
                "hashsplit_network_share_max_age_seconds",
                "The configured age past which network shares are stale ([network] max_age)",
            )?,
            share: GaugeVec::new(
                Opts::new(
                    "hashsplit_network_share_ratio",
                    "A pool's share of the whole network, as last fetched",
                ),
                &["pool"],
            )?,
            fetches: IntCounterVec::new(
                Opts::new(
                    "hashsplit_network_share_fetches_total",
                    "Fetches of the network-share source, by result: ok or error",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(metrics.age.clone()))?;
        registry.register(Box::new(metrics.max_age.clone()))?;
        registry.register(Box::new(metrics.share.clone()))?;
        registry.register(Box::new(metrics.fetches.clone()))?;
        for result in ["ok", "error"] {
            metrics.fetches.with_label_values(&[result]);
        }
        Ok(metrics)
    }
}
