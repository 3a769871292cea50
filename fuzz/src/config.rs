//! The TOML config loader on arbitrary text: it never panics, reading the
//! same text twice gives the same answer, a loaded config keeps every
//! documented bound, and every problem reported points inside the file.

use hashsplit::Config;

/// Loads `data` as a config file.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = Config::from_toml_str(text);
    assert_eq!(loaded, Config::from_toml_str(text), "the same text twice");
    let lines = text.split('\n').count();
    match loaded {
        Ok((config, warnings)) => {
            let server = &config.server;
            assert!((256..=1_048_576).contains(&server.max_line_length));
            assert!(server.max_connections >= 1 && server.max_connections_per_ip >= 1);
            let downstream = &config.downstream;
            assert!((1..=4).contains(&downstream.extranonce1_size));
            assert!((1..=8).contains(&downstream.extranonce2_size));
            assert!(downstream.min_difficulty.as_f64() > 0.0);
            assert!(downstream.initial_difficulty >= downstream.min_difficulty);
            for problem in &warnings {
                assert!(
                    problem.location.is_none_or(|(line, _)| line <= lines),
                    "{problem}"
                );
            }
        }
        Err(error) => {
            assert!(!error.errors.is_empty(), "an error names a problem");
            for problem in error.errors.iter().chain(&error.warnings) {
                assert!(
                    problem.location.is_none_or(|(line, _)| line <= lines),
                    "{problem}"
                );
            }
        }
    }
}
