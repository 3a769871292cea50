//! Runs every fuzz target over its committed seeds and every crash found
//! so far (`fuzz/corpus/TARGET`, `fuzz/crashes/TARGET`), so a normal
//! `cargo test` keeps what the fuzzer once broke fixed.

use std::path::Path;

#[test]
fn every_seed_and_past_crash_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, run) in hashsplit_fuzz::TARGETS {
        let mut ran = 0;
        for folder in ["corpus", "crashes"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable folder").path();
                let data = std::fs::read(&path).expect("a readable file");
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                ran += 1;
            }
        }
        assert!(ran > 0, "{name} has seeds in fuzz/corpus/{name}");
    }
}
