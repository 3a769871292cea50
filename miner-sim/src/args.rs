//! Readers for the command line's values: durations, hashrates, masks,
//! compact targets and loopback addresses.

use std::net::SocketAddr;
use std::time::Duration;

use miner_sim::{NBITS_MAINNET, NBITS_REGTEST};

/// A version-rolling mask, or none (version rolling refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mask(pub Option<u32>);

/// A hashrate limit in H/s, or none (flat out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

/// Reads `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Reads `2MH/s`, `500kH/s`, `750k`, `1.5G`, a plain H/s figure, or
/// `max` for no limit.
pub fn hashrate(text: &str) -> Result<Rate, String> {
    let lower = text.trim().to_ascii_lowercase();
    if matches!(lower.as_str(), "max" | "flat" | "unlimited") {
        return Ok(Rate(None));
    }
    let bare = lower.trim_end_matches("/s").trim_end_matches('h');
    let (number, scale) = match bare.chars().last() {
        Some('k') => (&bare[..bare.len() - 1], 1e3),
        Some('m') => (&bare[..bare.len() - 1], 1e6),
        Some('g') => (&bare[..bare.len() - 1], 1e9),
        Some('t') => (&bare[..bare.len() - 1], 1e12),
        _ => (bare, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(Rate(Some(value * scale))),
        _ => Err(format!(
            "{text:?} is not a hashrate like 2MH/s, 500k or max"
        )),
    }
}

/// Reads a mask in hex (`1fffe000`, with or without `0x`) or `none`.
pub fn mask(text: &str) -> Result<Mask, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Mask(None));
    }
    hex_word(text).map(|m| Mask(Some(m)))
}

/// Reads nbits in hex, or `mainnet` (no block ever) or `regtest` (a
/// block every other share).
pub fn nbits(text: &str) -> Result<u32, String> {
    match text.to_ascii_lowercase().as_str() {
        "mainnet" => Ok(NBITS_MAINNET),
        "regtest" => Ok(NBITS_REGTEST),
        _ => hex_word(text),
    }
}

fn hex_word(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0x");
    u32::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not 8 hex digits"))
}

/// Resolves `HOST:PORT` to a loopback address: the simulators never send
/// fake work off this machine.
pub async fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addrs = tokio::net::lookup_host(text)
        .await
        .map_err(|e| format!("{text}: {e}"))?;
    let mut seen = Vec::new();
    for addr in addrs {
        if addr.ip().is_loopback() {
            return Ok(addr);
        }
        seen.push(addr);
    }
    Err(format!(
        "{text} resolves to {seen:?}: miner-sim connects to loopback addresses only"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_plain_seconds() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(duration("soon").is_err());
        assert!(duration("5d").is_err());
    }

    #[test]
    fn hashrates_take_si_prefixes_and_max() {
        assert_eq!(hashrate("2MH/s"), Ok(Rate(Some(2e6))));
        assert_eq!(hashrate("500kH/s"), Ok(Rate(Some(5e5))));
        assert_eq!(hashrate("750k"), Ok(Rate(Some(7.5e5))));
        assert_eq!(hashrate("1.5G"), Ok(Rate(Some(1.5e9))));
        assert_eq!(hashrate("1000"), Ok(Rate(Some(1000.0))));
        assert_eq!(hashrate("max"), Ok(Rate(None)));
        assert!(hashrate("-1M").is_err());
        assert!(hashrate("fast").is_err());
    }

    #[test]
    fn masks_and_nbits_read_hex_or_names() {
        assert_eq!(mask("1fffe000"), Ok(Mask(Some(0x1fff_e000))));
        assert_eq!(mask("none"), Ok(Mask(None)));
        assert_eq!(nbits("regtest"), Ok(NBITS_REGTEST));
        assert_eq!(nbits("0x1d00ffff"), Ok(0x1d00_ffff));
        assert!(nbits("zz").is_err());
    }

    #[tokio::test]
    async fn only_loopback_addresses_are_taken() {
        assert_eq!(
            loopback("127.0.0.1:3333").await,
            Ok("127.0.0.1:3333".parse().unwrap())
        );
        assert!(
            loopback("192.0.2.1:3333")
                .await
                .unwrap_err()
                .contains("loopback")
        );
    }
}
