//! Which workers each connected miner authorized, for the API's miner
//! list (the policy knows miners only by id).
//!
//! Sessions write their miner's names when it authorizes and take them
//! out when it leaves; the API reads them for the miners it lists. The
//! lock is held for a map operation, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hashsplit_policy::MinerId;

/// Worker names kept per miner: a farm proxy authorizing hundreds of
/// workers on one connection is shown by its first few and a count.
pub const NAMES_KEPT: usize = 4;

/// A miner's authorized workers as the API shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workers {
    /// The first [`NAMES_KEPT`] names, first authorized first.
    pub names: Vec<Arc<str>>,
    /// How many names it authorized in all.
    pub count: usize,
}

/// Every connected miner's authorized workers.
#[derive(Debug, Default)]
pub struct MinerDirectory {
    miners: Mutex<HashMap<MinerId, Workers>>,
}

impl MinerDirectory {
    /// Records that `miner` authorized `worker`, a name it had not
    /// authorized before.
    pub fn authorized(&self, miner: MinerId, worker: &str) {
        let mut miners = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        let workers = miners.entry(miner).or_default();
        if workers.names.len() < NAMES_KEPT {
            workers.names.push(Arc::from(worker));
        }
        workers.count += 1;
    }

    /// Forgets `miner`, which left.
    pub fn left(&self, miner: MinerId) {
        let mut miners = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        miners.remove(&miner);
    }

    /// Returns the workers of each of `miners`, in the same order (none
    /// for a miner that has not authorized or has left).
    pub fn workers_of(&self, miners: impl IntoIterator<Item = MinerId>) -> Vec<Workers> {
        let known = self.miners.lock().unwrap_or_else(|e| e.into_inner());
        miners
            .into_iter()
            .map(|miner| known.get(&miner).cloned().unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miner_is_listed_by_its_first_names_until_it_leaves() {
        let directory = MinerDirectory::default();
        let (farm, rig) = (MinerId(1), MinerId(2));
        for i in 0..6 {
            directory.authorized(farm, &format!("acct.w{i}"));
        }
        directory.authorized(rig, "acct.rig");
        let listed = directory.workers_of([farm, rig, MinerId(3)]);
        let names: Vec<&str> = listed[0].names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["acct.w0", "acct.w1", "acct.w2", "acct.w3"]);
        assert_eq!(listed[0].count, 6);
        assert_eq!(&*listed[1].names[0], "acct.rig");
        assert_eq!(listed[2], Workers::default());

        directory.left(farm);
        assert_eq!(directory.workers_of([farm])[0].count, 0);
    }
}
