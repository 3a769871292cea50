//! The decentralization policy engine: which pool each miner mines for, now.
//!
//! Pure, synchronous and deterministic: the proxy's policy task feeds it
//! observations (work credited per miner and pool, pool health) with the time
//! passed in, and publishes the assignment it plans. It will hold the policy
//! TOML and its validation, the hashrate estimator, the allocator, and the
//! socket-free simulator behind `hashsplit simulate`.
