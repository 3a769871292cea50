//! AFL entry point for [`hashsplit_fuzz::miner_message`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::miner_message::run(data));
}
