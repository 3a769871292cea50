//! Stratum v1 as hashsplit speaks it: the wire protocol and the share math.
//!
//! This crate sits at both edges of the data path. Sessions (miner side) and
//! upstreams (pool side) turn each line into a typed message here, once, and
//! every share a miner submits is checked by the hash path here before the
//! router sees it. It opens no sockets and knows nothing of policy.
//!
//! - `units`: [`Difficulty`], [`Target`], [`Work`], [`Hashrate`].
//! - `share`: a prepared [`Job`], a decoded [`Submission`], and validation
//!   into a [`Verdict`] or a [`Reject`] (`reject`), on a SHA-256d path that
//!   drives raw compressions (`sha256d`).
//! - `bin/share-bench`: how close that path runs to the SHA-256 floor.

#![forbid(unsafe_code)]

pub mod units;

pub use units::{Difficulty, Hashrate, Target, UnitError, Work};
pub mod reject;
mod sha256d;
pub mod share;

pub use reject::{Field, Reject};
pub use share::{Job, JobError, JobParts, ShareContext, ShareKey, Submission, Verdict};
