//! The fleet file `hashsplit simulate` runs against: miners with hashrates
//! and counts, the share rate, and timed events.
//!
//! ```toml
//! share_rate = 20           # shares per minute per miner, default 20
//! [[miner]]
//! name = "s19"
//! hashrate = "110TH/s"
//! count = 10                # default 1
//! [[event]]
//! at = "30m"
//! pool_down = "ocean"       # or pool_up, miner_join, miner_leave
//! ```
//!
//! `miner_leave` and `miner_join` act on every machine of the named
//! `[[miner]]` group; a group whose first event is `miner_join` starts
//! absent.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Policy;
use crate::diag::{ConfigError, Diagnostics};
use crate::parse::{parse_duration, parse_hashrate};
use crate::units::{Hashrate, PoolId};

/// A validated fleet file.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Shares per minute each miner submits (the vardiff target).
    pub share_rate: f64,
    /// Groups of identical miners.
    pub miners: Vec<MinerGroup>,
    /// Events in time order.
    pub events: Vec<Event>,
}

/// `count` identical miners.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerGroup {
    /// Group name, used by events.
    pub name: String,
    /// Hashrate of each machine.
    pub hashrate: Hashrate,
    /// Number of machines.
    pub count: u32,
}

/// Something that happens to the fleet or a pool at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Time since the start of the run.
    pub at: Duration,
    /// What happens.
    pub kind: EventKind,
}

/// What an [`Event`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The pool stops taking work.
    PoolDown(PoolId),
    /// The pool takes work again.
    PoolUp(PoolId),
    /// Every machine of the group (index into [`Fleet::miners`]) connects.
    MinerJoin(usize),
    /// Every machine of the group disconnects.
    MinerLeave(usize),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMiner {
    name: Spanned<String>,
    hashrate: Spanned<String>,
    count: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<String>,
    pool_down: Option<Spanned<String>>,
    pool_up: Option<Spanned<String>>,
    miner_join: Option<Spanned<String>>,
    miner_leave: Option<Spanned<String>>,
}

impl Fleet {
    /// Parses and validates a fleet file against the pools of `policy`,
    /// reporting every problem at once.
    pub fn from_toml_str(text: &str, policy: &Policy) -> Result<Fleet, ConfigError> {
        let mut diag = Diagnostics::new(text);
        let mut share_rate = 20.0;
        let mut miners = Vec::new();
        let mut raw_events = Vec::new();
        let mut name_spans = Vec::new();
        for entry in diag.parse_document().unwrap_or_default() {
            match entry.key.as_str() {
                "share_rate" => match diag.deserialize::<f64>("share_rate", entry.value.clone()) {
                    Some(rate) if rate.is_finite() && rate > 0.0 => share_rate = rate,
                    Some(rate) => diag.error(
                        "share_rate",
                        Some(entry.value.span()),
                        format!("share_rate must be > 0 shares per minute, got {rate}"),
                    ),
                    None => {}
                },
                "miner" => {
                    for (i, value) in diag
                        .array_of_tables("miner", entry.value)
                        .into_iter()
                        .enumerate()
                    {
                        let path = format!("miner[{i}]");
                        if let Some(raw) = diag.deserialize::<RawMiner>(&path, value) {
                            name_spans.push(raw.name.span());
                            miners.push(read_miner(&mut diag, &path, raw));
                        }
                    }
                }
                "event" => {
                    for (i, value) in diag
                        .array_of_tables("event", entry.value)
                        .into_iter()
                        .enumerate()
                    {
                        let path = format!("event[{i}]");
                        if let Some(raw) = diag.deserialize::<RawEvent>(&path, value) {
                            raw_events.push((path, raw));
                        }
                    }
                }
                other => diag.error(
                    other,
                    Some(entry.key_span),
                    format!("unknown key `{other}`, expected share_rate, miner or event"),
                ),
            }
        }
        for (i, group) in miners.iter().enumerate() {
            if let Some(first) = miners[..i].iter().position(|g| g.name == group.name) {
                diag.error(
                    format!("miner[{i}].name"),
                    name_spans.get(i).cloned(),
                    format!(
                        "duplicate miner name {:?} (also miner[{first}])",
                        group.name
                    ),
                );
            }
        }
        if miners.is_empty() && diag.error_count() == 0 {
            diag.error("miner", None, "at least one [[miner]] is needed");
        }
        let mut events: Vec<Event> = raw_events
            .into_iter()
            .filter_map(|(path, raw)| read_event(&mut diag, &path, raw, &miners, policy))
            .collect();
        events.sort_by_key(|e| e.at);
        diag.finish(|| Fleet {
            share_rate,
            miners,
            events,
        })
        .map(|(fleet, _)| fleet)
    }

    /// Returns the number of machines.
    pub fn machines(&self) -> usize {
        self.miners.iter().map(|g| g.count as usize).sum()
    }
}

fn read_miner(diag: &mut Diagnostics<'_>, path: &str, raw: RawMiner) -> MinerGroup {
    let hashrate = parse_hashrate(raw.hashrate.get_ref()).unwrap_or_else(|e| {
        diag.error(
            format!("{path}.hashrate"),
            Some(raw.hashrate.span()),
            e.to_string(),
        );
        Hashrate::ZERO
    });
    let count = match raw.count {
        None => 1,
        Some(count) => match u32::try_from(*count.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                diag.error(
                    format!("{path}.count"),
                    Some(count.span()),
                    format!("count must be a positive integer, got {}", count.get_ref()),
                );
                1
            }
        },
    };
    MinerGroup {
        name: raw.name.into_inner(),
        hashrate,
        count,
    }
}

fn read_event(
    diag: &mut Diagnostics<'_>,
    path: &str,
    raw: RawEvent,
    miners: &[MinerGroup],
    policy: &Policy,
) -> Option<Event> {
    let at = match parse_duration(raw.at.get_ref()) {
        Ok(at) => Some(at),
        Err(e) => {
            diag.error(format!("{path}.at"), Some(raw.at.span()), e.to_string());
            None
        }
    };
    let named = [
        ("pool_down", raw.pool_down),
        ("pool_up", raw.pool_up),
        ("miner_join", raw.miner_join),
        ("miner_leave", raw.miner_leave),
    ];
    let given: Vec<(&str, Spanned<String>)> = named
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect();
    let at_span = raw.at.span();
    let [(key, name)] = <[_; 1]>::try_from(given)
        .map_err(|given: Vec<_>| {
            let span = given.get(1).map_or(at_span, |(_, v)| v.span());
            diag.error(
                path,
                Some(span),
                "an event needs exactly one of pool_down, pool_up, miner_join, miner_leave",
            );
        })
        .ok()?;
    let field = format!("{path}.{key}");
    let pool = || policy.pool_by_name(name.get_ref());
    let group = || miners.iter().position(|g| &g.name == name.get_ref());
    let kind = match key {
        "pool_down" => pool().map(EventKind::PoolDown),
        "pool_up" => pool().map(EventKind::PoolUp),
        "miner_join" => group().map(EventKind::MinerJoin),
        _ => group().map(EventKind::MinerLeave),
    };
    if kind.is_none() {
        let what = if key.starts_with("pool") {
            "pool"
        } else {
            "[[miner]]"
        };
        diag.error(
            field,
            Some(name.span()),
            format!("no {what} named {:?}", name.get_ref()),
        );
    }
    Some(Event {
        at: at?,
        kind: kind?,
    })
}
