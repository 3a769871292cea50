//! AFL entry point for [`hashsplit_fuzz::config`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::config::run(data));
}
