//! AFL entry point for [`hashsplit_fuzz::codec`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::codec::run(data));
}
