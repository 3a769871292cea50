//! What goes wrong on the pool side: the simulated pools and their faults.

use std::time::Duration;

use hashsplit_stratum::{Difficulty, Target};
use miner_sim::{BadDifficulty, Fault, SimPool, SimPoolConfig};

/// Pool names, in file order.
pub const POOLS: [&str; 3] = ["a", "b", "c"];
/// Share difficulty of every simulated pool: one share in four to eight
/// of a soak miner's meets it and is forwarded.
const POOL_DIFFICULTY: f64 = 6e-5;

/// Returns the compact network target whose difficulty is `difficulty`
/// (below 1 as the soak needs, so that its miners find blocks).
pub fn nbits_for(difficulty: f64) -> u32 {
    // Difficulty 1 is mantissa 0xffff at exponent 0x1d.
    let mut mantissa = f64::from(0xffff) / difficulty;
    let mut exponent = 0x1du32;
    while mantissa > f64::from(0x7f_ffff) {
        mantissa /= 256.0;
        exponent += 1;
    }
    (exponent << 24) | (mantissa as u32)
}

/// Starts the pools, with a network target that makes a block candidate
/// about every `block_every` at `hashrate` hashes a second in all.
pub async fn start_pools(hashrate: f64, block_every: Duration) -> anyhow::Result<Vec<SimPool>> {
    let network = hashrate * block_every.as_secs_f64() / 2f64.powi(32);
    let nbits = nbits_for(network);
    let got = Target::from_compact(nbits)?.to_difficulty();
    anyhow::ensure!(
        (got / network - 1.0).abs() < 0.01,
        "nbits {nbits:08x} is difficulty {got}, not {network}"
    );
    let mut pools = Vec::new();
    for _ in POOLS {
        pools.push(
            SimPool::start(SimPoolConfig {
                difficulty: Difficulty::try_new(POOL_DIFFICULTY)?,
                nbits,
                // Blocks now and then make older jobs stale under load.
                clean_interval: Duration::from_secs(97),
                ..SimPoolConfig::default()
            })
            .await?,
        );
    }
    Ok(pools)
}

/// A fault switched on for a while (a mode) or once.
pub struct Trouble {
    pub name: &'static str,
    pub fault: Fault,
    /// How long a mode lasts; `None` for a one-shot fault.
    pub lasts: Option<Duration>,
}

/// Returns the `n`th fault of the rotation: pools that hang, drop, go
/// away and come back, refuse every share, answer slowly, or send
/// nonsense.
pub fn trouble(n: u64) -> Trouble {
    let secs = Duration::from_secs;
    let (name, fault, lasts) = match n % 10 {
        0 => ("blackhole", Fault::Blackhole, Some(secs(45))),
        1 => ("close-all", Fault::CloseAll, None),
        2 => ("reject-all", Fault::RejectAll, Some(secs(60))),
        3 => (
            "refuse-connections",
            Fault::RefuseConnections,
            Some(secs(30)),
        ),
        4 => ("delay", Fault::Delay(secs(2)), Some(secs(40))),
        5 => ("garbage", Fault::Garbage, None),
        6 => (
            "bad-difficulty",
            Fault::BadDifficulty(BadDifficulty::NaN),
            None,
        ),
        7 => (
            "set-extranonce",
            Fault::SetExtranonce { to_all: true },
            None,
        ),
        8 => ("huge-line", Fault::HugeLine, None),
        _ => (
            "reconnect",
            Fault::Reconnect {
                host: None,
                port: None,
                wait_secs: Some(1),
            },
            None,
        ),
    };
    Trouble { name, fault, lasts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbits_give_the_difficulty_asked_for() {
        for difficulty in [1.0, 0.5, 0.03, 0.001, 1e-6] {
            let got = Target::from_compact(nbits_for(difficulty))
                .unwrap()
                .to_difficulty();
            assert!((got / difficulty - 1.0).abs() < 1e-3, "{difficulty}: {got}");
        }
        assert_eq!(nbits_for(1.0), 0x1d00_ffff);
    }
}
