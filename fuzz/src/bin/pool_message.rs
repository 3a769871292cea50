//! AFL entry point for [`hashsplit_fuzz::pool_message`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::pool_message::run(data));
}
