//! Readers and writers for the field types Stratum params and results use:
//! strings, hex blobs, 32-byte hashes, 8-digit big-endian words, masks,
//! difficulties and small integers. Each reader names the field on error.

use serde_json::Value;

use crate::error::{Field, ParseErrorKind, excerpt};
use crate::units::Difficulty;

/// Returns param `index` (null when missing) with its name for errors.
pub(crate) fn param<'a>(
    params: &'a [Value],
    index: usize,
    name: &'static str,
) -> (&'a Value, Field) {
    (
        params.get(index).unwrap_or(&Value::Null),
        Field::Param { index, name },
    )
}

/// Fails unless `params` has between `min` and `max` entries; `expected`
/// says so in words for the error.
pub(crate) fn count(
    params: &[Value],
    min: usize,
    max: usize,
    expected: &'static str,
) -> Result<(), ParseErrorKind> {
    if (min..=max).contains(&params.len()) {
        Ok(())
    } else {
        Err(ParseErrorKind::ParamCount {
            expected,
            got: params.len(),
        })
    }
}

fn wrong_type(value: &Value, field: Field, expected: &'static str) -> ParseErrorKind {
    ParseErrorKind::WrongType {
        field,
        expected,
        value: excerpt(value),
    }
}

/// Reads a string.
pub(crate) fn string((value, field): (&Value, Field)) -> Result<String, ParseErrorKind> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| wrong_type(value, field, "a string"))
}

/// Reads a string that may be missing or null.
pub(crate) fn opt_string(
    (value, field): (&Value, Field),
) -> Result<Option<String>, ParseErrorKind> {
    match value {
        Value::Null => Ok(None),
        _ => string((value, field)).map(Some),
    }
}

/// Reads a boolean.
pub(crate) fn boolean((value, field): (&Value, Field)) -> Result<bool, ParseErrorKind> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(value, field, "a boolean"))
}

/// Reads hex of any even length (either case).
pub(crate) fn hex_bytes((value, field): (&Value, Field)) -> Result<Vec<u8>, ParseErrorKind> {
    let text = value
        .as_str()
        .ok_or_else(|| wrong_type(value, field, "a hex string"))?;
    hex::decode(text).map_err(|_| ParseErrorKind::BadHex {
        field,
        value: excerpt(value),
    })
}

/// Reads hex of exactly `N` bytes, kept in wire order.
pub(crate) fn hex_array<const N: usize>(
    (value, field): (&Value, Field),
) -> Result<[u8; N], ParseErrorKind> {
    let bytes = hex_bytes((value, field))?;
    let got = bytes.len();
    bytes.try_into().map_err(|_| ParseErrorKind::WrongLength {
        field,
        expected: N,
        got,
        value: excerpt(value),
    })
}

/// Reads an 8-digit hex word printed big-endian (version, nbits, ntime).
pub(crate) fn be_word(input: (&Value, Field)) -> Result<u32, ParseErrorKind> {
    hex_array::<4>(input).map(u32::from_be_bytes)
}

/// Writes an 8-digit lower-case hex word.
pub(crate) fn be_word_value(word: u32) -> Value {
    Value::String(format!("{word:08x}"))
}

/// Reads a version-rolling mask: BIP-0310 says 8 hex digits; shorter ones
/// are read as the number they spell, since no mask can be misread that way.
pub(crate) fn mask((value, field): (&Value, Field)) -> Result<u32, ParseErrorKind> {
    let text = value
        .as_str()
        .ok_or_else(|| wrong_type(value, field, "a hex string"))?;
    let is_hex = !text.is_empty() && text.len() <= 8 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return Err(ParseErrorKind::BadHex {
            field,
            value: excerpt(value),
        });
    }
    u32::from_str_radix(text, 16).map_err(|_| ParseErrorKind::BadHex {
        field,
        value: excerpt(value),
    })
}

/// Reads a number that peers send either as a JSON number or as a string
/// holding one (`1024`, `1024.0`, `1e3`, `"1024"`).
fn number((value, field): (&Value, Field)) -> Result<f64, ParseErrorKind> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| wrong_type(value, field, "a number"))
}

/// Reads a difficulty: finite and above zero.
pub(crate) fn difficulty((value, field): (&Value, Field)) -> Result<Difficulty, ParseErrorKind> {
    let d = number((value, field))?;
    Difficulty::try_new(d).map_err(|_| ParseErrorKind::OutOfRange {
        field,
        value: excerpt(value),
    })
}

/// Writes a difficulty as an integer when it is one (what pools print), or
/// as a float.
pub(crate) fn difficulty_value(d: Difficulty) -> Value {
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    let d = d.as_f64();
    if d.fract() == 0.0 && d < EXACT_INTEGERS {
        Value::from(d as u64)
    } else {
        Value::from(d)
    }
}

/// Reads a non-negative integer no larger than `max`, as a number or a
/// string of digits.
pub(crate) fn integer((value, field): (&Value, Field), max: u64) -> Result<u64, ParseErrorKind> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(ParseErrorKind::OutOfRange {
            field,
            value: excerpt(value),
        }),
        // Distinguish a negative or fractional number from a non-number.
        None if value.is_number() => Err(ParseErrorKind::OutOfRange {
            field,
            value: excerpt(value),
        }),
        None => Err(wrong_type(value, field, "an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const F: Field = Field::Param {
        index: 0,
        name: "x",
    };

    #[test]
    fn words_are_eight_hex_digits_big_endian() {
        assert_eq!(be_word((&json!("20000004"), F)), Ok(0x2000_0004));
        assert_eq!(be_word((&json!("170ED0EB"), F)), Ok(0x170e_d0eb));
        assert!(matches!(
            be_word((&json!("0x200000"), F)),
            Err(ParseErrorKind::BadHex { .. })
        ));
        assert!(matches!(
            be_word((&json!("200000"), F)),
            Err(ParseErrorKind::WrongLength {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert_eq!(be_word_value(0x0000_00ab), json!("000000ab"));
    }

    #[test]
    fn masks_accept_short_hex_but_not_signs_or_long_hex() {
        assert_eq!(mask((&json!("1fffe000"), F)), Ok(0x1fff_e000));
        assert_eq!(mask((&json!("3000"), F)), Ok(0x3000));
        for bad in ["", "+1", "123456789", "1fffe00g"] {
            assert!(mask((&json!(bad), F)).is_err(), "{bad}");
        }
    }

    #[test]
    fn difficulties_come_as_integers_floats_exponents_or_strings() {
        for (raw, d) in [
            (json!(1024), 1024.0),
            (json!(0.5), 0.5),
            (json!(1e3), 1000.0),
            (json!("16384"), 16384.0),
            (json!(" 2.5 "), 2.5),
        ] {
            assert_eq!(difficulty((&raw, F)).unwrap().as_f64(), d, "{raw}");
        }
        assert!(matches!(
            difficulty((&json!(0), F)),
            Err(ParseErrorKind::OutOfRange { .. })
        ));
        assert!(matches!(
            difficulty((&json!("inf"), F)),
            Err(ParseErrorKind::OutOfRange { .. })
        ));
        assert!(matches!(
            difficulty((&json!(true), F)),
            Err(ParseErrorKind::WrongType { .. })
        ));
    }

    #[test]
    fn difficulties_print_as_integers_when_whole() {
        let d = |x| difficulty_value(Difficulty::try_new(x).unwrap()).to_string();
        assert_eq!(d(1024.0), "1024");
        assert_eq!(d(0.001), "0.001");
        assert_eq!(d(1e20), "1e+20");
    }

    #[test]
    fn integers_reject_negatives_and_fractions_as_out_of_range() {
        assert_eq!(integer((&json!("3333"), F), 65535), Ok(3333));
        assert!(matches!(
            integer((&json!(70000), F), 65535),
            Err(ParseErrorKind::OutOfRange { .. })
        ));
        assert!(matches!(
            integer((&json!(-1), F), 65535),
            Err(ParseErrorKind::OutOfRange { .. })
        ));
        assert!(matches!(
            integer((&json!([]), F), 65535),
            Err(ParseErrorKind::WrongType { .. })
        ));
    }
}
