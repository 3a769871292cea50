//! Every worked example in `policy/examples/` loads, validates and
//! simulates without a cap violation.

use std::path::Path;

use hashsplit_policy::{Fleet, Policy, SimOptions, simulate};

#[test]
fn every_example_pair_simulates_without_cap_violations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name.strip_suffix(".fleet.toml") else {
            continue;
        };
        let config = dir.join(format!("{stem}.toml"));
        let policy_text = std::fs::read_to_string(&config).expect("policy of the example");
        let (policy, _warnings) = Policy::from_toml_str(&policy_text)
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let fleet_text = std::fs::read_to_string(&path).expect("fleet file");
        let fleet = Fleet::from_toml_str(&fleet_text, &policy)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let report = simulate(&policy, &fleet, SimOptions::default());
        assert_eq!(report.cap_violations, 0, "{stem}: {report:?}");
        assert_eq!(report.miners, fleet.machines());
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}
