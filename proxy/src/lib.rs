//! The hashsplit daemon: miner sessions, pool upstreams, the router and the
//! policy task, metrics.
//!
//! Miners connect to a session; each submit is validated with
//! `hashsplit_stratum` and routed to the upstream the policy engine
//! (`hashsplit_policy`) assigned. The daemon lands with the proxy issue.
pub mod extranonce;
pub mod vardiff;
pub mod config;
pub mod metrics;
pub mod jobs;
pub mod upstream;
