//! Units of the wire: [`Difficulty`] and [`Target`].
//!
//! Difficulty 1 is the target `0xffff · 2^208` (the "pool difficulty 1" of
//! Stratum v1, not the truncated bdiff). The work a share stands for, and
//! hashrate, are the policy crate's `Work` and `Hashrate`: one pair for the
//! whole proxy.

use std::fmt;

/// Errors from building a unit out of untrusted input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// A difficulty that is zero, negative, NaN or infinite.
    #[error("difficulty must be finite and > 0, got {0}")]
    BadDifficulty(f64),
    /// A compact target (`nbits`) that is negative or overflows 256 bits.
    #[error("nbits {0:08x} is not a valid compact target")]
    BadCompact(u32),
}

/// Share difficulty: how much harder than difficulty 1 a share must be.
///
/// Fractional difficulties are allowed (CPU miners and tests use them); the
/// value is always finite and strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Difficulty(f64);

impl Difficulty {
    /// Difficulty 1.
    pub const ONE: Difficulty = Difficulty(1.0);

    /// Returns the difficulty, or an error if `value` is not finite and at
    /// least [`f64::MIN_POSITIVE`] (a subnormal is as good as zero: its
    /// powers of two and its target overflow).
    pub fn try_new(value: f64) -> Result<Self, UnitError> {
        if value.is_finite() && value >= f64::MIN_POSITIVE {
            Ok(Difficulty(value))
        } else {
            Err(UnitError::BadDifficulty(value))
        }
    }

    /// Returns the difficulty as a float.
    pub fn as_f64(self) -> f64 {
        self.0
    }

    /// Returns the largest hash (as a target) that meets this difficulty.
    pub fn to_target(self) -> Target {
        Target::from_f64(Target::DIFF1.to_f64() / self.0)
    }
}

impl fmt::Display for Difficulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 256-bit target: a hash meets it when the hash, read as a little-endian
/// integer (the way Bitcoin compares block hashes), is at most the target.
///
/// Stored as four little-endian 64-bit limbs so a comparison with a hash is
/// four integer compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target([u64; 4]);

impl Target {
    /// The target of difficulty 1: `0xffff · 2^208`.
    pub const DIFF1: Target = Target([0, 0, 0, 0x0000_0000_ffff_0000]);
    /// The largest target: every hash meets it.
    pub const MAX: Target = Target([u64::MAX; 4]);

    /// Returns the target of a compact `nbits` field from a block header.
    pub fn from_compact(nbits: u32) -> Result<Self, UnitError> {
        let exponent = nbits >> 24;
        let mantissa = nbits & 0x007f_ffff;
        if nbits & 0x0080_0000 != 0 && mantissa != 0 {
            return Err(UnitError::BadCompact(nbits));
        }
        let mut bytes = [0u8; 32];
        let m = mantissa.to_le_bytes();
        if exponent <= 3 {
            let value = mantissa >> (8 * (3 - exponent));
            bytes[..4].copy_from_slice(&value.to_le_bytes());
        } else {
            let shift = (exponent - 3) as usize;
            for (i, byte) in m.iter().take(3).enumerate() {
                if *byte == 0 {
                    continue;
                }
                let at = i + shift;
                if at >= 32 {
                    return Err(UnitError::BadCompact(nbits));
                }
                bytes[at] = *byte;
            }
        }
        Ok(Target::from_le_bytes(bytes))
    }

    /// Returns the target whose little-endian bytes are `bytes`.
    pub fn from_le_bytes(bytes: [u8; 32]) -> Self {
        let limb = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Target([limb(0), limb(1), limb(2), limb(3)])
    }

    /// Returns the target as 32 little-endian bytes.
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// Returns the target as 64 hex digits, most significant first (the way
    /// block explorers print targets and hashes).
    pub fn to_be_hex(self) -> String {
        let mut bytes = self.to_le_bytes();
        bytes.reverse();
        hex::encode(bytes)
    }

    /// Returns true if `hash` (little-endian, as SHA-256d produces it) is at
    /// most this target.
    #[inline]
    pub fn is_met_by(&self, hash: &[u8; 32]) -> bool {
        Target::from_le_bytes(*hash) <= *self
    }

    /// Returns the difficulty this target stands for (`DIFF1 / target`).
    pub fn to_difficulty(self) -> f64 {
        Target::DIFF1.to_f64() / self.to_f64().max(1.0)
    }

    /// Returns the difficulty of a hash: the highest difficulty it meets.
    pub fn difficulty_of_hash(hash: &[u8; 32]) -> f64 {
        Target::from_le_bytes(*hash).to_difficulty()
    }

    /// Returns the target as a float (rounded; 2^256 - 1 maps to 2^256).
    fn to_f64(self) -> f64 {
        self.0.iter().rev().fold(0.0, |acc, limb| {
            acc * 18_446_744_073_709_551_616.0 + *limb as f64
        })
    }

    /// Returns the integer nearest below `value`, saturating at [`Target::MAX`].
    fn from_f64(value: f64) -> Self {
        if value.is_nan() || value < 1.0 {
            return Target([0; 4]);
        }
        if value >= 2f64.powi(256) {
            return Target::MAX;
        }
        // value = mantissa · 2^exp with a 53-bit integer mantissa.
        let bits = value.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let mut limbs = [0u64; 4];
        if exp < 0 {
            limbs[0] = mantissa >> (-exp);
        } else {
            let exp = exp as u32;
            let (word, bit) = ((exp / 64) as usize, exp % 64);
            limbs[word] = mantissa << bit;
            if bit > 11 && word + 1 < 4 {
                limbs[word + 1] = mantissa >> (64 - bit);
            }
        }
        Target(limbs)
    }
}

impl PartialOrd for Target {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Target {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.to_be_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_hex(hex_be: &str) -> Target {
        let mut bytes: [u8; 32] = hex::decode(hex_be).unwrap().try_into().unwrap();
        bytes.reverse();
        Target::from_le_bytes(bytes)
    }

    #[test]
    fn difficulty_rejects_non_positive_and_non_finite() {
        let subnormal = f64::MIN_POSITIVE / 4.0;
        for bad in [
            0.0,
            -1.0,
            subnormal,
            1e-310,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert!(Difficulty::try_new(bad).is_err(), "{bad}");
        }
        assert_eq!(Difficulty::try_new(0.001).unwrap().as_f64(), 0.001);
    }

    #[test]
    fn difficulty_one_is_0xffff_shl_208() {
        assert_eq!(
            Difficulty::ONE.to_target().to_be_hex(),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(Target::DIFF1.to_difficulty(), 1.0);
    }

    #[test]
    fn difficulty_and_target_convert_both_ways() {
        for d in [1e-6, 0.001, 0.5, 1.0, 3.0, 1024.0, 65536.0, 1.5e12, 1e20] {
            let back = Difficulty::try_new(d).unwrap().to_target().to_difficulty();
            assert!((back - d).abs() / d < 1e-12, "{d} -> {back}");
        }
    }

    #[test]
    fn higher_difficulty_is_a_lower_target() {
        let easy = Difficulty::try_new(2.0).unwrap().to_target();
        let hard = Difficulty::try_new(4.0).unwrap().to_target();
        assert!(hard < easy);
        assert_eq!(
            Difficulty::try_new(2.0).unwrap().to_target().to_be_hex(),
            "000000007fff8000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn tiny_difficulty_saturates_at_max() {
        assert_eq!(Difficulty::try_new(1e-70).unwrap().to_target(), Target::MAX);
    }

    #[test]
    fn compact_targets_decode_like_bitcoin() {
        // Genesis block bits and the two shared vectors' bits.
        assert_eq!(
            Target::from_compact(0x1d00ffff).unwrap(),
            target_hex("00000000ffff0000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_compact(0x170ed0eb).unwrap(),
            target_hex("0000000000000000000ed0eb0000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_compact(0x1a06d450).unwrap(),
            target_hex("00000000000006d4500000000000000000000000000000000000000000000000")
        );
        assert_eq!(
            Target::from_compact(0x03123456).unwrap(),
            target_hex(&format!("{:064x}", 0x123456))
        );
        assert_eq!(
            Target::from_compact(0x02123456).unwrap(),
            target_hex(&format!("{:064x}", 0x1234))
        );
    }

    #[test]
    fn compact_rejects_negative_and_overflowing_targets() {
        assert_eq!(
            Target::from_compact(0x04923456),
            Err(UnitError::BadCompact(0x04923456))
        );
        assert_eq!(
            Target::from_compact(0x23123456),
            Err(UnitError::BadCompact(0x23123456))
        );
        // A zero mantissa is zero whatever the exponent says.
        assert_eq!(Target::from_compact(0x2300_0000).unwrap(), Target([0; 4]));
    }

    #[test]
    fn target_comparison_reads_hashes_little_endian() {
        let target = Difficulty::ONE.to_target();
        let mut hash = [0u8; 32];
        hash[27] = 0xff; // 0x00000000ff00.. in big-endian: below diff-1 target
        assert!(target.is_met_by(&hash));
        hash[28] = 1; // above: a non-zero byte where the target has zeros
        assert!(!target.is_met_by(&hash));
        assert!(Target::MAX.is_met_by(&[0xff; 32]));
    }
}
