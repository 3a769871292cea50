//! The hashsplit daemon: miner sessions, pool upstreams, the router and the
//! policy task, metrics.
//!
//! Miners connect to a session; each submit is validated with
//! `hashsplit_stratum` and routed to the upstream the policy engine
//! (`hashsplit_policy`) assigned. So far the crate holds [`config`] (the
//! whole TOML file, validated) and [`simulate`] (the output of
//! `hashsplit simulate`); the daemon lands with the proxy issue.

#![forbid(unsafe_code)]

pub mod config;
pub mod simulate;

pub use config::Config;
