use std::time::Duration;

use super::*;

fn enabled(max_workers: usize) -> (Registry, WorkerMetrics) {
    let registry = Registry::new();
    let workers = WorkerMetrics::new(&registry, max_workers).unwrap();
    (registry, workers)
}

/// Returns `(worker label, credited difficulty)` of every series, sorted.
fn credited(registry: &Registry) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "hashsplit_worker_credited_difficulty_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            (
                m.get_label()[0].value().to_owned(),
                m.get_counter().get_value(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn last_share(registry: &Registry, worker: &str) -> Option<f64> {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "hashsplit_worker_last_share_timestamp_seconds")
        .flat_map(|f| f.get_metric().iter())
        .find(|m| m.get_label()[0].value() == worker)
        .map(|m| m.get_gauge().get_value())
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn credits_difficulty_and_last_share_time_per_worker() {
    let (registry, workers) = enabled(10);
    let _a = workers.join("rig.a");
    let _b = workers.join("rig.b");
    workers.credit("rig.a", 2.0, at(100));
    workers.credit("rig.a", 0.5, at(160));
    assert_eq!(
        credited(&registry),
        [("rig.a".into(), 2.5), ("rig.b".into(), 0.0)]
    );
    assert_eq!(last_share(&registry, "rig.a"), Some(160.0));
    assert_eq!(last_share(&registry, "rig.b"), None, "no share yet");
}

#[test]
fn series_are_removed_when_the_last_connection_leaves() {
    let (registry, workers) = enabled(10);
    let first = workers.join("rig.a");
    let second = workers.join("rig.a");
    workers.credit("rig.a", 1.0, at(5));
    drop(first);
    assert_eq!(credited(&registry), [("rig.a".into(), 1.0)]);
    drop(second);
    assert!(credited(&registry).is_empty());
    assert_eq!(last_share(&registry, "rig.a"), None);
    // A share after the worker left creates nothing.
    workers.credit("rig.a", 1.0, at(6));
    assert!(registry.gather().is_empty());
}

#[test]
fn workers_past_the_cap_share_one_series() {
    let (registry, workers) = enabled(2);
    let held: Vec<_> = ["a", "b", "c", "d"].map(|w| workers.join(w)).into();
    for worker in ["a", "b", "c", "d"] {
        workers.credit(worker, 1.0, at(1));
    }
    assert_eq!(
        credited(&registry),
        [(OVERFLOW.into(), 2.0), ("a".into(), 1.0), ("b".into(), 1.0)]
    );
    let [a, b, c, d]: [Option<WorkerSeries>; 4] = held.try_into().unwrap();
    drop(c);
    assert_eq!(credited(&registry).len(), 3, "d is still in the overflow");
    drop(d);
    assert_eq!(credited(&registry).len(), 2, "the overflow series went");
    // A freed slot goes to the next worker that joins.
    drop(a);
    let _e = workers.join("e");
    let names: Vec<String> = credited(&registry).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["b", "e"]);
    drop(b);
}

#[test]
fn a_cap_of_zero_folds_everyone_into_the_overflow() {
    let (registry, workers) = enabled(0);
    let _a = workers.join("a");
    workers.credit("a", 3.0, at(1));
    assert_eq!(credited(&registry), [(OVERFLOW.into(), 3.0)]);
}

#[test]
fn odd_names_are_truncated_and_never_panic() {
    let (registry, workers) = enabled(10);
    let long = "é".repeat(300);
    let odd = [
        long.as_str(),
        "quote\"back\\slash",
        "{brace}=,",
        "\u{1F600} emoji",
        "",
        OVERFLOW,
    ];
    let _held: Vec<_> = odd.iter().map(|w| workers.join(w)).collect();
    for worker in odd {
        workers.credit(worker, 1.0, at(1));
    }
    let rows = credited(&registry);
    assert!(
        rows.iter()
            .all(|(label, _)| label.chars().count() <= MAX_LABEL_CHARS)
    );
    assert!(rows.contains(&("é".repeat(MAX_LABEL_CHARS), 1.0)));
    // The empty name and a worker calling itself the overflow share it.
    assert!(rows.contains(&(OVERFLOW.into(), 2.0)));
    let text = {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(text.contains(r#"worker="quote\"back\\slash""#), "{text}");
}

#[test]
fn names_sharing_a_truncated_prefix_share_a_series() {
    let (registry, workers) = enabled(10);
    let prefix = "x".repeat(MAX_LABEL_CHARS);
    let one = workers.join(&format!("{prefix}1"));
    let two = workers.join(&format!("{prefix}2"));
    assert_eq!(credited(&registry).len(), 1);
    drop(one);
    assert_eq!(credited(&registry).len(), 1, "the other still holds it");
    drop(two);
    assert!(credited(&registry).is_empty());
}
