//! AFL entry point for [`hashsplit_fuzz::share`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::share::run(data));
}
