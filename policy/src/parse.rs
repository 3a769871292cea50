//! Parsers for the human units in the TOML files: durations (`"10m"`,
//! `"1h30m"`, `"500ms"`) and hashrates (`"110TH/s"`).

use std::time::Duration;

use crate::units::Hashrate;

/// Errors from parsing a duration or a hashrate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A duration that is not a sequence of `<number><unit>` parts.
    #[error(
        "bad duration {0:?}: expected e.g. \"30s\", \"10m\", \"1h30m\", \"500ms\" (units ms, s, m, h, d)"
    )]
    Duration(String),
    /// A hashrate that is not `<number><prefix>H/s`.
    #[error(
        "bad hashrate {0:?}: expected e.g. \"110TH/s\" (H/s, KH/s, MH/s, GH/s, TH/s, PH/s, EH/s)"
    )]
    Hashrate(String),
}

/// Returns the duration written as `<number><unit>` parts, e.g. `"1h30m"`.
///
/// Units are `ms`, `s`, `m`, `h` and `d`; numbers may have a fraction.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let bad = || ParseError::Duration(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Returns the hashrate written as `<number><prefix>H/s`, e.g. `"110TH/s"`.
///
/// The prefix is one of `K`, `M`, `G`, `T`, `P`, `E` (either case) or none;
/// a space between the number and the unit is allowed.
pub fn parse_hashrate(text: &str) -> Result<Hashrate, ParseError> {
    let bad = || ParseError::Hashrate(text.to_owned());
    let trimmed = text.trim();
    let number_len = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let number: f64 = trimmed[..number_len].parse().map_err(|_| bad())?;
    let unit = trimmed[number_len..].trim();
    let unit = unit
        .strip_suffix("H/s")
        .or_else(|| unit.strip_suffix("h/s"))
        .ok_or_else(bad)?;
    let scale = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "T" | "t" => 1e12,
        "P" | "p" => 1e15,
        "E" | "e" => 1e18,
        _ => return Err(bad()),
    };
    let rate = number * scale;
    if rate.is_finite() && rate > 0.0 {
        Ok(Hashrate::from_hashes_per_sec(rate))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_combined() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_without_units_or_with_unknown_units_are_rejected() {
        for bad in ["", "10", "10 minutes", "m", "-5s", "1.2.3s", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn hashrates_with_every_prefix() {
        let rate = |text| parse_hashrate(text).map(Hashrate::as_hashes_per_sec);
        assert_eq!(rate("110TH/s"), Ok(110e12));
        assert_eq!(rate("110 TH/s"), Ok(110e12));
        assert_eq!(rate("5H/s"), Ok(5.0));
        assert_eq!(rate("2.5KH/s"), Ok(2500.0));
        assert_eq!(rate("3MH/s"), Ok(3e6));
        assert_eq!(rate("4GH/s"), Ok(4e9));
        assert_eq!(rate("1PH/s"), Ok(1e15));
        assert_eq!(rate("1EH/s"), Ok(1e18));
    }

    #[test]
    fn hashrates_without_a_unit_or_zero_are_rejected() {
        for bad in ["", "110", "110TH", "0TH/s", "TH/s", "110 ZH/s", "-1TH/s"] {
            assert!(parse_hashrate(bad).is_err(), "{bad:?} parsed");
        }
    }
}
