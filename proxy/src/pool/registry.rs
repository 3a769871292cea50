//! The set of pools by [`PoolId`]: one writer (the proxy, at start and on
//! reload) publishes a new snapshot whenever a pool is added or replaced;
//! readers load the snapshot and notice a new one without a lock.

use std::sync::Arc;

use hashsplit_policy::PoolId;
use tokio::sync::watch;

use super::PoolHandle;

/// Every pool the proxy has run, indexed by [`PoolId`]. A removed pool
/// keeps its index (its handle says it is retired) and can be given a new
/// owner if it comes back.
#[derive(Debug, Default)]
pub struct PoolSet {
    handles: Vec<PoolHandle>,
}

impl PoolSet {
    /// Returns the handle of `pool`.
    pub fn get(&self, pool: PoolId) -> Option<&PoolHandle> {
        self.handles.get(pool.index())
    }

    /// Returns every handle, in [`PoolId`] order.
    pub fn handles(&self) -> &[PoolHandle] {
        &self.handles
    }
}

/// The one writer of the pool set.
#[derive(Debug)]
pub struct PoolRegistry {
    set: watch::Sender<Arc<PoolSet>>,
}

impl Default for PoolRegistry {
    fn default() -> Self {
        PoolRegistry {
            set: watch::Sender::new(Arc::default()),
        }
    }
}

impl PoolRegistry {
    /// Returns a reader of the set.
    pub fn subscribe(&self) -> Pools {
        Pools {
            set: self.set.subscribe(),
        }
    }

    /// Returns the set as it is now.
    pub fn snapshot(&self) -> Arc<PoolSet> {
        Arc::clone(&self.set.borrow())
    }

    /// Puts `handle` at its pool's index (the next index: a new pool) and
    /// publishes the new set.
    ///
    /// # Panics
    /// If the handle's index would leave a gap: ids are handed out in order.
    pub fn put(&self, handle: PoolHandle) {
        self.set.send_modify(|set| {
            let mut handles = set.handles.clone();
            let index = handle.id().index();
            assert!(index <= handles.len(), "pool ids are handed out in order");
            if index < handles.len() {
                handles[index] = handle;
            } else {
                handles.push(handle);
            }
            *set = Arc::new(PoolSet { handles });
        });
    }
}

/// A reader of the pool set.
#[derive(Debug, Clone)]
pub struct Pools {
    set: watch::Receiver<Arc<PoolSet>>,
}

impl Pools {
    /// Returns the set as it is now.
    pub fn snapshot(&self) -> Arc<PoolSet> {
        Arc::clone(&self.set.borrow())
    }

    /// Returns the set if it changed since this reader last looked (a
    /// version check, no lock, when it did not).
    pub fn if_changed(&mut self) -> Option<Arc<PoolSet>> {
        if !self.set.has_changed().unwrap_or(false) {
            return None;
        }
        Some(Arc::clone(&self.set.borrow_and_update()))
    }

    /// Returns the handle of `pool` in the current set.
    pub fn get(&self, pool: PoolId) -> Option<PoolHandle> {
        self.set.borrow().get(pool).cloned()
    }
}
