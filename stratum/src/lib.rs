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
//! - [`units`]: difficulty, targets, work and hashrate.

#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod message;
pub mod method;
pub mod units;

pub use codec::{CodecError, LineCodec};
pub use error::{Field, ParseError, ParseErrorKind};
pub use message::{Id, Message, Notification, Request, Response, StratumError};
pub use method::{
    ClientMethod, Configure, ConfigureResult, Incoming, Method, Notify, ServerMethod, Submit,
    SubscribeResult, Verdict, VersionRolling,
};
pub use units::{Difficulty, Hashrate, Target, UnitError, Work};
