//! Stratum v1 as hashsplit speaks it: the wire protocol and the share math.
//!
//! This crate sits at both edges of the data path. Sessions (miner side) and
//! upstreams (pool side) turn each line into a typed message here, once, and
//! every share a miner submits is checked by the hash path here before the
//! router sees it. It opens no sockets and knows nothing of policy.
//!
//! - [`codec`]: splits a byte stream into lines, with a maximum length.
//! - [`message`]: the JSON-RPC envelope: requests, notifications, responses,
//!   ids and Stratum errors.
//! - [`method`]: typed methods for both directions and typed results.
//! - [`error`]: what was wrong with a line that could not be read.
//! - [`units`]: [`Difficulty`], [`Target`].
//! - [`share`]: a prepared [`Job`], a decoded [`Submission`], and validation
//!   into a [`SubmitResult`] or a [`Reject`] ([`reject`]), on a SHA-256d path
//!   that drives raw compressions.
//! - [`header_scan`]: a header's midstate hashed for many nonces (miners).
//! - `bin/share-bench`: how close that path runs to the SHA-256 floor.

#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod header_scan;
pub mod message;
pub mod method;
pub mod reject;
mod sha256d;
pub mod share;
pub mod units;

pub use codec::{CodecError, LenientLineCodec, Line, LineBudget, LineCodec};
pub use error::{ParseError, ParseErrorKind};
pub use header_scan::HeaderScan;
pub use message::{Id, IdNumber, Message, Notification, Request, Response, StratumError};
pub use method::{
    ClientMethod, Configure, ConfigureResult, Incoming, Method, Notify, ServerMethod, Submit,
    SubmitResult, SubscribeResult, VersionRolling,
};
pub use units::{Difficulty, Target, UnitError};

pub use reject::{Field, Reject};
pub use share::{Job, JobError, JobParts, ShareContext, ShareKey, Submission, Verdict};
