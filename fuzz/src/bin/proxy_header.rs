//! AFL entry point for [`hashsplit_fuzz::proxy_header`]; see `fuzz/run.sh`.

fn main() {
    afl::fuzz!(|data: &[u8]| hashsplit_fuzz::proxy_header::run(data));
}
