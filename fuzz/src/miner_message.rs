//! Miner → proxy: `Incoming<ClientMethod>` from one line.

use hashsplit_stratum::ClientMethod;

use crate::round_trip::check_line;

/// Parses one line as the session reads a miner's; a call or answer must
/// round-trip, an error must be short and answerable.
pub fn run(data: &[u8]) {
    check_line::<ClientMethod>(data, |_| {});
}
