//! Reading a network-share source: the JSON shapes pool statistics sites
//! answer with, normalised to shares of the whole.
//!
//! Accepted shapes:
//! - an array of pool objects: `[{"name": "Ocean", "blocks": 12}, ...]`;
//! - an object with such an array under `pools` or `data` (the "mining
//!   pools over the last week" answer of block explorers, whose entries
//!   carry `blockCount`);
//! - an object of name: number, `{"Ocean": 0.012, ...}`.
//!
//! A pool object is named by `name`, `poolName` or `pool`, and measured by
//! the first of `share`, `blocks`, `blockCount`, `hashrate`, `count` it
//! has; every entry must use the same measure. Numbers (or numeric
//! strings) must be finite and ≥ 0. Whatever the measure (fractions,
//! percentages, block counts, hashrates), each pool's share is its number
//! divided by the sum of all of them, so a source must list every pool
//! (an "unknown" or "others" entry included) for the shares to be of the
//! whole network. Names are compared ignoring case; a name listed twice
//! has its numbers added.

use serde_json::{Map, Value};
use thiserror::Error;

/// Keys a pool object's name may be under, in order of preference.
pub const NAME_KEYS: [&str; 3] = ["name", "poolName", "pool"];
/// Keys a pool object's number may be under, in order of preference.
pub const MEASURE_KEYS: [&str; 5] = ["share", "blocks", "blockCount", "hashrate", "count"];
/// Keys of an object that hold the array of pools.
const LIST_KEYS: [&str; 2] = ["pools", "data"];

/// Why a source's answer could not be read.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SourceError {
    /// Not JSON.
    #[error("the answer is not JSON: {0}")]
    Json(String),
    /// JSON, but none of the shapes.
    #[error(
        "expected an array of pools, an object with a \"pools\" array, or an object of \
         name: number; found {0}"
    )]
    Shape(String),
    /// A pool object without a name.
    #[error("pool entry {0} has no name (name, poolName or pool)")]
    NoName(usize),
    /// A pool object without the measure the others use.
    #[error("pool {name:?} has no {measure} (the first entry's measure)")]
    NoMeasure {
        /// The pool's name.
        name: String,
        /// The key it lacks.
        measure: String,
    },
    /// A pool whose first entry has no number under any known key.
    #[error("pool {0:?} has none of share, blocks, blockCount, hashrate, count")]
    NoNumber(String),
    /// A number that is not finite and ≥ 0.
    #[error("pool {name:?} has {value}, not a finite number >= 0")]
    BadNumber {
        /// The pool's name.
        name: String,
        /// The value as JSON.
        value: String,
    },
    /// No pool at all.
    #[error("the source lists no pools")]
    Empty,
    /// Every number is 0.
    #[error("the source's numbers add up to 0")]
    ZeroTotal,
}

/// Pools' shares of the network, as a source gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkShares {
    /// Lower-cased name and share, in the source's order.
    shares: Vec<(String, f64)>,
}

impl NetworkShares {
    /// Returns the share of the pool the source calls `name` (any case).
    pub fn get(&self, name: &str) -> Option<f64> {
        let name = name.to_lowercase();
        self.shares
            .iter()
            .find(|(listed, _)| *listed == name)
            .map(|&(_, share)| share)
    }

    /// Returns how many pools the source lists.
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    /// Returns whether the source lists no pool (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }
}

/// Reads a source's answer.
pub fn parse(body: &[u8]) -> Result<NetworkShares, SourceError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| SourceError::Json(e.to_string()))?;
    let numbers = match &value {
        Value::Array(entries) => from_entries(entries)?,
        Value::Object(object) => match LIST_KEYS
            .iter()
            .find_map(|key| object.get(*key).and_then(Value::as_array))
        {
            Some(entries) => from_entries(entries)?,
            None => from_object(object)?,
        },
        other => return Err(SourceError::Shape(kind(other).to_owned())),
    };
    normalise(numbers)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Returns `value` as a number if it is one, or a string holding one.
fn number(name: &str, value: &Value) -> Result<f64, SourceError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(SourceError::BadNumber {
            name: name.to_owned(),
            value: value.to_string(),
        }),
    }
}

fn from_entries(entries: &[Value]) -> Result<Vec<(String, f64)>, SourceError> {
    let mut measure: Option<&str> = None;
    let mut numbers = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(SourceError::Shape(format!(
                "{} as pool entry {index}",
                kind(entry)
            )));
        };
        let name = NAME_KEYS
            .iter()
            .find_map(|key| entry.get(*key).and_then(Value::as_str))
            .ok_or(SourceError::NoName(index))?;
        let key = match measure {
            Some(key) => key,
            None => {
                let key = MEASURE_KEYS
                    .into_iter()
                    .find(|key| entry.contains_key(*key))
                    .ok_or_else(|| SourceError::NoNumber(name.to_owned()))?;
                measure = Some(key);
                key
            }
        };
        let value = entry.get(key).ok_or_else(|| SourceError::NoMeasure {
            name: name.to_owned(),
            measure: key.to_owned(),
        })?;
        numbers.push((name.to_owned(), number(name, value)?));
    }
    Ok(numbers)
}

fn from_object(object: &Map<String, Value>) -> Result<Vec<(String, f64)>, SourceError> {
    if object.values().any(|v| !v.is_number() && !v.is_string()) {
        return Err(SourceError::Shape(
            "an object whose values are not all numbers".to_owned(),
        ));
    }
    object
        .iter()
        .map(|(name, value)| Ok((name.clone(), number(name, value)?)))
        .collect()
}

fn normalise(numbers: Vec<(String, f64)>) -> Result<NetworkShares, SourceError> {
    if numbers.is_empty() {
        return Err(SourceError::Empty);
    }
    let total: f64 = numbers.iter().map(|(_, x)| x).sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(SourceError::ZeroTotal);
    }
    let mut shares: Vec<(String, f64)> = Vec::with_capacity(numbers.len());
    for (name, x) in numbers {
        let name = name.trim().to_lowercase();
        let share = (x / total).min(1.0);
        match shares.iter_mut().find(|(listed, _)| *listed == name) {
            Some((_, sum)) => *sum = (*sum + share).min(1.0),
            None => shares.push((name, share)),
        }
    }
    Ok(NetworkShares { shares })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn block_counts_of_an_explorers_weekly_answer_become_shares() {
        let body = br#"{"pools": [
            {"poolId": 111, "name": "Foundry USA", "blockCount": 300, "rank": 1},
            {"poolId": 112, "name": "OCEAN", "blockCount": 20, "rank": 9},
            {"poolId": 1, "name": "Unknown", "blockCount": 80, "rank": 3}
        ], "blockCount": 400, "lastEstimatedHashrate": 8.1e20}"#;
        let shares = parse(body).unwrap();
        assert_eq!(shares.len(), 3);
        assert!(close(shares.get("foundry usa"), 0.75));
        assert!(close(shares.get("Ocean"), 0.05));
        assert_eq!(shares.get("braiins"), None);
    }

    #[test]
    fn arrays_of_shares_hashrates_or_percentages_and_plain_objects() {
        let shares = parse(br#"[{"name": "a", "share": 0.6}, {"pool": "b", "share": "0.4"}]"#);
        assert!(close(shares.unwrap().get("b"), 0.4));
        let percent = parse(
            br#"{"data": [{"poolName": "a", "hashrate": 30}, {"poolName": "b", "hashrate": 70}]}"#,
        );
        assert!(close(percent.unwrap().get("a"), 0.3));
        let object = parse(br#"{"a": 2, "b": 6, "A": 2}"#).unwrap();
        assert_eq!(object.len(), 2, "names differing only in case are one pool");
        assert!(close(object.get("a"), 0.4));
        assert!(close(object.get("b"), 0.6));
    }

    #[test]
    fn answers_that_are_not_pool_shares_are_refused_with_the_reason() {
        for (body, wanted) in [
            (&b"<html>"[..], "not JSON"),
            (b"42", "found a number"),
            (b"[]", "lists no pools"),
            (b"[1, 2]", "a number as pool entry 0"),
            (br#"[{"blocks": 3}]"#, "entry 0 has no name"),
            (br#"[{"name": "a", "rank": 1}]"#, "none of share"),
            (
                br#"[{"name": "a", "blocks": 3}, {"name": "b", "share": 0.1}]"#,
                "no blocks",
            ),
            (br#"[{"name": "a", "blocks": -3}]"#, "not a finite number"),
            (br#"{"a": {"blocks": 3}}"#, "not all numbers"),
            (br#"{"a": 0, "b": 0}"#, "add up to 0"),
        ] {
            let error = parse(body).unwrap_err().to_string();
            assert!(
                error.contains(wanted),
                "{}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
