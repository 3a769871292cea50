//! What the engine is told.

use crate::units::{MinerId, PoolId, Work};

/// Something the proxy saw, at the `now` passed with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Work credited to `miner` (an accepted share) while mining for `pool`.
    ///
    /// It feeds the miner's hashrate estimate; what each pool received is
    /// accounted from the plans (time on the pool × that estimate), so the
    /// pool is not needed for the accounting.
    Work {
        /// The miner.
        miner: MinerId,
        /// The pool it was mining for.
        pool: PoolId,
        /// Share difficulty × 2^32.
        work: Work,
    },
    /// A miner connected and authorized.
    MinerJoined {
        /// The miner.
        miner: MinerId,
    },
    /// A miner disconnected.
    MinerLeft {
        /// The miner.
        miner: MinerId,
    },
    /// A pool can take work (it has a job).
    PoolUp {
        /// The pool.
        pool: PoolId,
    },
    /// A pool cannot take work.
    PoolDown {
        /// The pool.
        pool: PoolId,
    },
}
