//! Proxy-chosen extranonce1 prefixes, unique among connected miners.
//!
//! Every miner gets `P` bytes of extranonce1 that no other connected miner
//! has, so two miners mining the same pool job never search the same
//! coinbase. The first byte is never zero: a miner with a narrower
//! extranonce2 has zero padding where a wider miner's extranonce1 sits (see
//! [`crate::jobs::Layouts`]), and a non-zero first byte keeps the two apart. A prefix returns to the pool of free ones when its
//! [`Extranonce1`] guard is dropped (the session ended).
//!
//! A prefix handed out again builds the same coinbases as before, so a
//! share its last holder had accepted would pass again for the same job.
//! The ending session therefore leaves the shares it accepted on work that
//! is still current with the prefix ([`Extranonce1::retire`]), and the next
//! session given the prefix takes them over ([`Extranonce1::take_inherited`])
//! and refuses them as duplicates. What is left behind is pruned once its
//! work is stale, so it is bounded by the shares of the current block.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use hashsplit_policy::PoolId;

use crate::jobs::Retired;

/// Retired records looked at per retirement for pruning: a handful keeps
/// the cost constant while pruning faster than sessions end.
const PRUNE_PER_RETIRE: usize = 4;

/// Hands out unique extranonce1 prefixes of a fixed size.
#[derive(Debug, Clone)]
pub struct ExtranonceAllocator {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    size: usize,
    /// The smallest prefix: the first byte is 1.
    low: u128,
    /// Number of distinct prefixes: 255 · 2^(8·(size − 1)).
    space: u128,
    in_use: HashSet<u64>,
    /// Where the next search starts, so a freed prefix is not handed out
    /// again at once (late answers for the old miner cannot be confused).
    cursor: u64,
    /// Shares of ended sessions on still-current work, by prefix.
    retired: HashMap<u64, Retired>,
    /// Prefixes in `retired`, oldest first, for pruning.
    retired_order: VecDeque<u64>,
}

impl ExtranonceAllocator {
    /// Returns an allocator of `size`-byte prefixes (1..=8).
    ///
    /// # Panics
    /// If `size` is 0 or more than 8; the config validates it.
    pub fn new(size: usize) -> Self {
        assert!(
            (1..=8).contains(&size),
            "extranonce1 size {size} outside 1..=8"
        );
        ExtranonceAllocator {
            inner: Arc::new(Mutex::new(Inner {
                size,
                low: 1u128 << (8 * (size - 1)),
                space: (1u128 << (8 * size)) - (1u128 << (8 * (size - 1))),
                in_use: HashSet::new(),
                cursor: 0,
                retired: HashMap::new(),
                retired_order: VecDeque::new(),
            })),
        }
    }

    /// Returns a prefix no connected miner holds, or `None` when all are
    /// taken.
    pub fn allocate(&self) -> Option<Extranonce1> {
        let mut inner = self.inner.lock().expect("allocator lock");
        if inner.in_use.len() as u128 >= inner.space {
            return None;
        }
        loop {
            let candidate = (inner.low + u128::from(inner.cursor)) as u64;
            inner.cursor = ((u128::from(inner.cursor) + 1) % inner.space) as u64;
            if inner.in_use.insert(candidate) {
                let bytes = candidate.to_be_bytes()[8 - inner.size..].to_vec();
                let inherited = inner.retired.remove(&candidate);
                return Some(Extranonce1 {
                    value: candidate,
                    bytes,
                    inherited,
                    allocator: Arc::clone(&self.inner),
                });
            }
        }
    }

    /// Returns how many prefixes are held now.
    pub fn in_use(&self) -> usize {
        self.inner.lock().expect("allocator lock").in_use.len()
    }

    /// Returns how many free prefixes carry shares of their last holder.
    pub fn retired(&self) -> usize {
        self.inner.lock().expect("allocator lock").retired.len()
    }
}

/// A held extranonce1 prefix; dropping it frees the prefix.
#[derive(Debug)]
pub struct Extranonce1 {
    value: u64,
    bytes: Vec<u8>,
    /// Shares the prefix's last holder accepted, until the session takes them.
    inherited: Option<Retired>,
    allocator: Arc<Mutex<Inner>>,
}

impl Extranonce1 {
    /// Returns the prefix bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the shares the prefix's last holder accepted on work that was
    /// current when it ended.
    pub fn take_inherited(&mut self) -> Option<Retired> {
        self.inherited.take()
    }

    /// Leaves `shares` with the prefix for its next holder (the prefix is
    /// still held, so none can take it before it is freed). `current_epoch`
    /// (a pool's epoch now, `None` if unknown) also prunes what earlier
    /// sessions left that has gone stale.
    pub fn retire(&self, shares: Retired, current_epoch: impl Fn(PoolId) -> Option<u64>) {
        let Ok(mut inner) = self.allocator.lock() else {
            return;
        };
        for _ in 0..PRUNE_PER_RETIRE {
            let Some(&oldest) = inner.retired_order.front() else {
                break;
            };
            if inner
                .retired
                .get(&oldest)
                .is_some_and(|old| old.is_current(&current_epoch))
            {
                break;
            }
            // Stale, or taken by a new holder since.
            inner.retired_order.pop_front();
            inner.retired.remove(&oldest);
        }
        if !shares.is_empty() && shares.is_current(&current_epoch) {
            inner.retired.insert(self.value, shares);
            inner.retired_order.push_back(self.value);
        }
    }
}

impl Drop for Extranonce1 {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.allocator.lock() {
            inner.in_use.remove(&self.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_while_held_and_reused_after_release() {
        let allocator = ExtranonceAllocator::new(1);
        let held: Vec<_> = (0..255).map(|_| allocator.allocate().unwrap()).collect();
        let distinct: HashSet<_> = held.iter().map(|e| e.as_bytes().to_vec()).collect();
        assert_eq!(distinct.len(), 255);
        assert!(held.iter().all(|e| e.as_bytes().len() == 1));
        assert!(
            held.iter().all(|e| e.as_bytes()[0] != 0),
            "never a zero first byte"
        );
        assert!(allocator.allocate().is_none(), "space exhausted");

        drop(held);
        assert_eq!(allocator.in_use(), 0);
        assert!(allocator.allocate().is_some(), "freed prefixes come back");
    }

    #[test]
    fn a_freed_prefix_is_not_handed_out_next() {
        let allocator = ExtranonceAllocator::new(2);
        let first = allocator.allocate().unwrap();
        let first_bytes = first.as_bytes().to_vec();
        drop(first);
        let second = allocator.allocate().unwrap();
        assert_ne!(second.as_bytes(), &first_bytes[..]);
        assert_eq!(second.as_bytes().len(), 2);
    }
}
