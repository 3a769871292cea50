//! Proxy-chosen extranonce1 prefixes, unique among connected miners.
//!
//! Every miner gets `P` bytes of extranonce1 that no other connected miner
//! in its [`Space`] has, so two miners mining the same pool job never
//! search the same coinbase. The first byte is never zero: a miner with a
//! narrower extranonce2 has zero padding where a wider miner's extranonce1
//! sits (see [`crate::jobs::Layouts`]), and a non-zero first byte keeps the
//! two apart. A prefix returns to the pool of free ones when its
//! [`Extranonce1`] guard is dropped (the session ended).
//!
//! One upstream connection gives the proxy one pool extranonce1, so it
//! holds as many miners as there are prefixes (or fewer, with
//! `[downstream] miners_per_pool_connection`). Past that, miners go to the
//! next space: space k is served by connection k of every pool, whose own
//! pool extranonce1 keeps the same prefix in two spaces apart. New miners
//! fill the lowest space with room, so extra spaces empty as miners come
//! and go; the allocator publishes which spaces hold miners
//! ([`ExtranonceAllocator::occupied`]) and each pool's owner opens and
//! closes its extra connections by it.
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
use tokio::sync::watch;

use crate::jobs::Retired;

/// Retired records looked at per retirement for pruning: a handful keeps
/// the cost constant while pruning faster than sessions end.
const PRUNE_PER_RETIRE: usize = 4;
/// Most connections the proxy opens to one pool, so most spaces.
pub const MAX_SPACES: usize = 64;

/// Which of the proxy's extranonce spaces a miner's prefix is in: space k
/// is served by connection k of every pool (space 0 by the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Space(pub u16);

impl Space {
    /// The first space, served by each pool's first connection.
    pub const FIRST: Space = Space(0);

    /// Returns the space as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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
    values: u128,
    /// Miners one space takes (at most `values`).
    per_space: usize,
    spaces: Vec<SpaceUse>,
    /// Shares of ended sessions on still-current work, by prefix.
    retired: HashMap<(Space, u64), Retired>,
    /// Prefixes in `retired`, oldest first, for pruning.
    retired_order: VecDeque<(Space, u64)>,
    /// Which spaces hold miners (space 0 always counts as held: each
    /// pool's first connection stays).
    occupied: watch::Sender<Vec<bool>>,
}

/// The prefixes held in one space.
#[derive(Debug, Default)]
struct SpaceUse {
    in_use: HashSet<u64>,
    /// Where the next search starts, so a freed prefix is not handed out
    /// again at once (late answers for the old miner cannot be confused).
    cursor: u64,
}

impl ExtranonceAllocator {
    /// Returns an allocator of `size`-byte prefixes (1..=8) in one space.
    ///
    /// # Panics
    /// If `size` is 0 or more than 8; the config validates it.
    pub fn new(size: usize) -> Self {
        Self::with_spaces(size, usize::MAX, 1)
    }

    /// Returns an allocator of `size`-byte prefixes (1..=8), at most
    /// `per_space` miners in each of `spaces` spaces (1..=[`MAX_SPACES`]).
    ///
    /// # Panics
    /// If `size` is 0 or more than 8, or `spaces` is out of range.
    pub fn with_spaces(size: usize, per_space: usize, spaces: usize) -> Self {
        assert!(
            (1..=8).contains(&size),
            "extranonce1 size {size} outside 1..=8"
        );
        assert!(
            (1..=MAX_SPACES).contains(&spaces),
            "{spaces} extranonce spaces outside 1..={MAX_SPACES}"
        );
        let values = (1u128 << (8 * size)) - (1u128 << (8 * (size - 1)));
        let per_space = per_space
            .min(usize::try_from(values).unwrap_or(usize::MAX))
            .max(1);
        let mut occupied = vec![false; spaces];
        occupied[0] = true;
        ExtranonceAllocator {
            inner: Arc::new(Mutex::new(Inner {
                size,
                low: 1u128 << (8 * (size - 1)),
                values,
                per_space,
                spaces: (0..spaces).map(|_| SpaceUse::default()).collect(),
                retired: HashMap::new(),
                retired_order: VecDeque::new(),
                occupied: watch::Sender::new(occupied),
            })),
        }
    }

    /// Returns the allocator for a proxy that takes up to `max_miners`:
    /// `size`-byte prefixes, `per_space` miners a space (default: every
    /// prefix), and as many spaces as those miners need, up to
    /// [`MAX_SPACES`].
    pub fn for_miners(size: usize, per_space: Option<usize>, max_miners: usize) -> Self {
        let values = 255usize.saturating_mul(1usize << (8 * (size.clamp(1, 8) - 1)).min(56));
        let per_space = per_space.unwrap_or(values).clamp(1, values);
        let spaces = max_miners.div_ceil(per_space).clamp(1, MAX_SPACES);
        Self::with_spaces(size, per_space, spaces)
    }

    /// Returns how many spaces there can be (each pool's connections).
    pub fn spaces(&self) -> usize {
        self.inner.lock().expect("allocator lock").spaces.len()
    }

    /// Returns a receiver of which spaces hold miners, by index.
    pub fn occupied(&self) -> watch::Receiver<Vec<bool>> {
        self.inner
            .lock()
            .expect("allocator lock")
            .occupied
            .subscribe()
    }

    /// Returns a prefix no connected miner of its space holds, in the
    /// lowest space with room, or `None` when every space is full.
    pub fn allocate(&self) -> Option<Extranonce1> {
        let mut inner = self.inner.lock().expect("allocator lock");
        let per_space = inner.per_space;
        let index = inner
            .spaces
            .iter()
            .position(|space| space.in_use.len() < per_space)?;
        let space = Space(u16::try_from(index).expect("at most MAX_SPACES spaces"));
        let (low, values) = (inner.low, inner.values);
        let held = &mut inner.spaces[index];
        let candidate = loop {
            let candidate = (low + u128::from(held.cursor)) as u64;
            held.cursor = ((u128::from(held.cursor) + 1) % values) as u64;
            if held.in_use.insert(candidate) {
                break candidate;
            }
        };
        if held.in_use.len() == 1 {
            inner
                .occupied
                .send_if_modified(|occupied| !std::mem::replace(&mut occupied[index], true));
        }
        let inherited = inner.retired.remove(&(space, candidate)).map(Box::new);
        Some(Extranonce1 {
            bytes: candidate.to_be_bytes(),
            size: inner.size as u8,
            space,
            inherited,
            allocator: Arc::clone(&self.inner),
        })
    }

    /// Returns how many prefixes are held now, in every space.
    pub fn in_use(&self) -> usize {
        let inner = self.inner.lock().expect("allocator lock");
        inner.spaces.iter().map(|space| space.in_use.len()).sum()
    }

    /// Returns how many free prefixes carry shares of their last holder.
    pub fn retired(&self) -> usize {
        self.inner.lock().expect("allocator lock").retired.len()
    }
}

/// A held extranonce1 prefix; dropping it frees the prefix.
#[derive(Debug)]
pub struct Extranonce1 {
    /// The prefix in the last `size` bytes, big-endian (held inline: every
    /// miner has one).
    bytes: [u8; 8],
    size: u8,
    space: Space,
    /// Shares the prefix's last holder accepted, until the session takes them.
    inherited: Option<Box<Retired>>,
    allocator: Arc<Mutex<Inner>>,
}

impl Extranonce1 {
    /// Returns the prefix bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[8 - usize::from(self.size)..]
    }

    fn value(&self) -> u64 {
        u64::from_be_bytes(self.bytes)
    }

    /// Returns the space the prefix is in: the miner mines on connection
    /// `space` of whichever pool it is given.
    pub fn space(&self) -> Space {
        self.space
    }

    /// Takes the shares the prefix's last holder accepted on work that was
    /// current when it ended.
    pub fn take_inherited(&mut self) -> Option<Retired> {
        self.inherited.take().map(|retired| *retired)
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
            // Another space's epochs are its connections' own: kept until
            // a session of that space looks.
            let current = inner
                .retired
                .get(&oldest)
                .is_some_and(|old| oldest.0 != self.space || old.is_current(&current_epoch));
            if current {
                break;
            }
            // Stale, or taken by a new holder since.
            inner.retired_order.pop_front();
            inner.retired.remove(&oldest);
        }
        if !shares.is_empty() && shares.is_current(&current_epoch) {
            let key = (self.space, self.value());
            inner.retired.insert(key, shares);
            inner.retired_order.push_back(key);
        }
    }
}

impl Drop for Extranonce1 {
    fn drop(&mut self) {
        let Ok(mut inner) = self.allocator.lock() else {
            return;
        };
        let index = self.space.index();
        let value = self.value();
        let Some(held) = inner.spaces.get_mut(index) else {
            return;
        };
        held.in_use.remove(&value);
        if held.in_use.is_empty() && self.space != Space::FIRST {
            inner
                .occupied
                .send_if_modified(|occupied| std::mem::replace(&mut occupied[index], false));
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
    fn a_full_space_sends_new_miners_to_the_next_and_an_emptied_one_is_released() {
        let allocator = ExtranonceAllocator::with_spaces(1, 3, 3);
        let mut occupied = allocator.occupied();
        assert_eq!(*occupied.borrow_and_update(), [true, false, false]);
        let mut first: Vec<_> = (0..3).map(|_| allocator.allocate().unwrap()).collect();
        assert!(first.iter().all(|e| e.space() == Space(0)));
        let second = allocator.allocate().unwrap();
        assert_eq!(second.space(), Space(1));
        assert_eq!(
            second.as_bytes(),
            first[0].as_bytes(),
            "a prefix is unique within its space only"
        );
        assert!(occupied.has_changed().unwrap());
        assert_eq!(*occupied.borrow_and_update(), [true, true, false]);

        // A place freed in the first space is taken before the second.
        drop(first.remove(0));
        let again = allocator.allocate().unwrap();
        assert_eq!(again.space(), Space(0));
        drop(second);
        assert_eq!(
            *occupied.borrow_and_update(),
            [true, false, false],
            "the first space always counts as held"
        );
    }

    #[test]
    fn every_space_full_refuses() {
        let allocator = ExtranonceAllocator::with_spaces(1, 2, 2);
        let held: Vec<_> = (0..4).map(|_| allocator.allocate().unwrap()).collect();
        assert_eq!(allocator.in_use(), 4);
        assert!(allocator.allocate().is_none());
        drop(held);
        assert_eq!(allocator.in_use(), 0);
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
