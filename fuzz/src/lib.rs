//! Coverage-guided fuzz targets for every parser hashsplit exposes to
//! miners, pools, load balancers and operators.
//!
//! Each module holds one target's harness as a plain function, `run(data)`,
//! that panics when the code under test breaks a promise: not only when it
//! panics itself, but when a parsed message does not re-serialize to one
//! that parses the same, when the codec's lines differ from a reference
//! reading of the same bytes, or when a judged share's hash differs from one
//! computed the long way. The AFL entry points in `src/bin/` (feature `afl`,
//! built by `fuzz/run.sh`) call these functions; `tests/corpora.rs` runs
//! them over the committed seeds and every crash found, in `cargo test`.
//!
//! Modules: [`codec`] (line framing), [`miner_message`] and
//! [`pool_message`] (the two directions of Stratum), [`share`] (hex fields,
//! checks and SHA-256d), [`proxy_header`] (PROXY protocol v1/v2),
//! [`config`] (the TOML loader).

pub mod codec;
pub mod config;
pub mod miner_message;
pub mod pool_message;
pub mod proxy_header;
pub mod share;

mod input;
mod round_trip;

/// A target's harness: panics when the code under test breaks a promise.
pub type Harness = fn(&[u8]);

/// Every target by name, as `fuzz/run.sh` and the corpus tests know them.
pub const TARGETS: [(&str, Harness); 6] = [
    ("codec", codec::run),
    ("miner_message", miner_message::run),
    ("pool_message", pool_message::run),
    ("share", share::run),
    ("proxy_header", proxy_header::run),
    ("config", config::run),
];
