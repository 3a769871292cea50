//! Why a share was refused: a closed set of reasons with stable names.
//!
//! A rejection is a value, not an error string. [`Reject::as_str`] is the
//! label that goes in metrics and logs and never changes; [`Reject::code`] is
//! the customary Stratum error code sent back to the miner; `Display` is the
//! human message that goes with it.

use std::fmt;

use crate::message::StratumError;

/// The submit field a [`Reject::BadHex`] or [`Reject::BadLength`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The miner's extranonce2.
    Extranonce2,
    /// The header time.
    Ntime,
    /// The header nonce.
    Nonce,
    /// The rolled version bits (BIP 310).
    VersionBits,
}

impl Field {
    /// Returns the field's name as it appears in `mining.submit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Extranonce2 => "extranonce2",
            Field::Ntime => "ntime",
            Field::Nonce => "nonce",
            Field::VersionBits => "version_bits",
        }
    }
}

/// A share refused by local validation, cheapest check first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The submit line was not a well-formed `mining.submit`.
    Malformed,
    /// A field holds something other than hex digits.
    BadHex(Field),
    /// A field has the wrong number of hex digits.
    BadLength(Field),
    /// The miner was not subscribed when it submitted.
    NotSubscribed,
    /// The worker was not authorized when it submitted.
    Unauthorized,
    /// The job id was never issued, or is too old to remember.
    UnknownJob,
    /// The job was replaced by a new block (clean_jobs) before the share came.
    Stale,
    /// ntime is before the job's time or more than 7000 s after it.
    NtimeOutOfRange,
    /// Version bits outside the negotiated mask (or with none negotiated).
    BadVersionBits,
    /// The same share was already submitted.
    Duplicate,
    /// The hash meets none of the targets (miner, pool, network).
    LowDifficulty,
}

impl Reject {
    /// Every reason, in a stable order: metrics pre-register their labels
    /// so a reason that never happened still shows as zero. A reason that
    /// names a field stands for all its fields: they share a label.
    pub const ALL: [Reject; 11] = [
        Reject::Malformed,
        Reject::BadHex(Field::Extranonce2),
        Reject::BadLength(Field::Extranonce2),
        Reject::NotSubscribed,
        Reject::Unauthorized,
        Reject::UnknownJob,
        Reject::Stale,
        Reject::NtimeOutOfRange,
        Reject::BadVersionBits,
        Reject::Duplicate,
        Reject::LowDifficulty,
    ];

    /// Returns this reason's position in [`Reject::ALL`].
    pub fn index(self) -> usize {
        match self {
            Reject::Malformed => 0,
            Reject::BadHex(_) => 1,
            Reject::BadLength(_) => 2,
            Reject::NotSubscribed => 3,
            Reject::Unauthorized => 4,
            Reject::UnknownJob => 5,
            Reject::Stale => 6,
            Reject::NtimeOutOfRange => 7,
            Reject::BadVersionBits => 8,
            Reject::Duplicate => 9,
            Reject::LowDifficulty => 10,
        }
    }

    /// Returns the stable label of this reason (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::BadHex(_) => "bad-hex",
            Reject::BadLength(_) => "bad-length",
            Reject::NotSubscribed => "not-subscribed",
            Reject::Unauthorized => "unauthorized",
            Reject::UnknownJob => "job-not-found",
            Reject::Stale => "stale",
            Reject::NtimeOutOfRange => "ntime-out-of-range",
            Reject::BadVersionBits => "bad-version-bits",
            Reject::Duplicate => "duplicate",
            Reject::LowDifficulty => "low-difficulty",
        }
    }

    /// Returns the customary Stratum error code, from the one table in
    /// [`StratumError`].
    pub fn code(self) -> i64 {
        match self {
            Reject::UnknownJob | Reject::Stale => StratumError::JOB_NOT_FOUND,
            Reject::Duplicate => StratumError::DUPLICATE,
            Reject::LowDifficulty => StratumError::LOW_DIFFICULTY,
            Reject::Unauthorized => StratumError::UNAUTHORIZED,
            Reject::NotSubscribed => StratumError::NOT_SUBSCRIBED,
            Reject::Malformed
            | Reject::BadHex(_)
            | Reject::BadLength(_)
            | Reject::NtimeOutOfRange
            | Reject::BadVersionBits => StratumError::OTHER,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Malformed => f.write_str("malformed submit"),
            Reject::BadHex(field) => write!(f, "{} is not hex", field.as_str()),
            Reject::BadLength(field) => write!(f, "{} has the wrong length", field.as_str()),
            Reject::NotSubscribed => f.write_str("not subscribed"),
            Reject::Unauthorized => f.write_str("unauthorized worker"),
            Reject::UnknownJob => f.write_str("job not found"),
            Reject::Stale => f.write_str("stale job"),
            Reject::NtimeOutOfRange => f.write_str("ntime out of range"),
            Reject::BadVersionBits => f.write_str("version bits outside the negotiated mask"),
            Reject::Duplicate => f.write_str("duplicate share"),
            Reject::LowDifficulty => f.write_str("low difficulty share"),
        }
    }
}

impl std::error::Error for Reject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_customary_table() {
        assert_eq!(Reject::Stale.code(), 21);
        assert_eq!(Reject::UnknownJob.code(), 21);
        assert_eq!(Reject::Duplicate.code(), 22);
        assert_eq!(Reject::LowDifficulty.code(), 23);
        assert_eq!(Reject::Unauthorized.code(), 24);
        assert_eq!(Reject::NotSubscribed.code(), 25);
        assert_eq!(Reject::BadVersionBits.code(), 20);
    }

    #[test]
    fn labels_are_distinct_and_indexes_follow_the_list() {
        for (i, reject) in Reject::ALL.iter().enumerate() {
            assert_eq!(reject.index(), i, "{reject:?}");
        }
        assert_eq!(Reject::BadLength(Field::VersionBits).index(), 2);
        let mut labels: Vec<_> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reject::ALL.len());
    }

    #[test]
    fn display_names_the_field() {
        assert_eq!(Reject::BadHex(Field::Nonce).to_string(), "nonce is not hex");
        assert_eq!(Reject::BadHex(Field::Ntime).as_str(), "bad-hex");
    }
}
