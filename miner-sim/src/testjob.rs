//! A pool job for unit tests.

use hashsplit_stratum::Job;

use crate::pool::template::JobFactory;

/// Returns a job with four fake transactions and 12 bytes of extranonce
/// (extranonce1 of 4 and extranonce2 of 8).
pub(crate) fn test_job() -> Job {
    let mut factory = JobFactory::new(crate::NBITS_MAINNET, 4, 12);
    factory.next(true).expect("valid job").job.clone()
}
