//! The hashsplit daemon: miner sessions, pool upstreams, the policy task and
//! metrics.
//!
//! Miners connect to a session; each submit is validated with
//! `hashsplit_stratum` and routed to the upstream the policy engine
//! (`hashsplit_policy`) assigned.

#![forbid(unsafe_code)]

pub mod config;
pub mod extranonce;
pub mod jobs;
pub mod metrics;
pub mod simulate;
pub mod upstream;
pub mod vardiff;

pub use config::Config;
