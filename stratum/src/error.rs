//! [`ParseError`]: what was wrong with a line, and which call it belonged to.
//!
//! Every line is parsed once at the edge; when that fails the caller still
//! needs the id and method it could read, because a server answers a bad call
//! with an error instead of disconnecting, and the proxy counts every
//! `mining.submit` attempt, malformed or not, as a share with a reject reason.

use std::fmt;

use serde_json::Value;

use crate::message::{Id, Response, StratumError};

/// Longest excerpt of untrusted input kept in an error message.
const EXCERPT_CHARS: usize = 80;

/// A line that could not be read as a Stratum message, with the id and method
/// name when the envelope got that far.
///
/// Boxed: it travels in every `Result` of the parse path, which stays one
/// pointer wide on success.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(Box<Inner>);

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    id: Option<Id>,
    method: Option<String>,
    kind: ParseErrorKind,
}

impl ParseError {
    /// Returns an error for a call whose id and method were read (either may
    /// be unknown).
    pub fn new(id: Option<Id>, method: Option<String>, kind: ParseErrorKind) -> Self {
        ParseError(Box::new(Inner { id, method, kind }))
    }

    /// Returns an error with no id or method known.
    pub fn bare(kind: ParseErrorKind) -> Self {
        Self::new(None, None, kind)
    }

    /// Returns the call's id, if the line was a JSON object with a readable
    /// id (null for a notification).
    pub fn id(&self) -> Option<&Id> {
        self.0.id.as_ref()
    }

    /// Returns the method name, if the line was a call with a string method.
    pub fn method(&self) -> Option<&str> {
        self.0.method.as_deref()
    }

    /// Returns what was wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.0.kind
    }

    /// Returns true if the line was a `mining.submit` call (so it counts as a
    /// share attempt even though it could not be read).
    pub fn is_submit(&self) -> bool {
        self.method() == Some("mining.submit")
    }

    /// Returns the error response a server sends back, or `None` when the
    /// line had no usable id (not JSON, or a notification) and so cannot be
    /// answered.
    pub fn to_response(&self) -> Option<Response> {
        match self.id() {
            Some(id) if !id.is_null() => Some(Response::error(
                id.clone(),
                StratumError::other(self.to_string()),
            )),
            _ => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.method(), self.kind()) {
            // The kind names the method itself.
            (_, kind @ ParseErrorKind::UnknownMethod(_)) | (None, kind) => write!(f, "{kind}"),
            (Some(method), kind) => write!(f, "{}: {kind}", excerpt_str(method)),
        }
    }
}

impl std::error::Error for ParseError {}

/// The ways a line can fail to be a Stratum message. Messages quote the
/// offending input, cut to a readable length.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The line is not UTF-8, so it cannot be JSON.
    #[error("line is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The line is not valid JSON.
    #[error("not JSON ({reason}): {line}")]
    NotJson {
        /// What the JSON parser said.
        reason: String,
        /// The start of the line.
        line: String,
    },
    /// The line is JSON but not an object.
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    /// The id is not a number, a string or null.
    #[error("id is not a number, string or null: {0}")]
    BadId(String),
    /// The method is present but not a string.
    #[error("method is not a string: {0}")]
    MethodNotAString(String),
    /// The params are present but not an array.
    #[error("params is not an array: {0}")]
    ParamsNotAnArray(String),
    /// The object has neither a method nor a result or error.
    #[error("neither a call (method) nor a response (result, error): {0}")]
    NotAMessage(String),
    /// The error member of a response has none of the known shapes.
    #[error("error is not [code, message, ..], {{code, message}}, a string or null: {0}")]
    BadErrorField(String),
    /// A method this crate does not know; a server answers it with an error.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A method called with the wrong number of params.
    #[error("expected {expected} params, got {got}")]
    ParamCount {
        /// The accepted counts, e.g. `"5 or 6"`.
        expected: &'static str,
        /// How many were sent.
        got: usize,
    },
    /// A param or result field of the wrong JSON type.
    #[error("{field} is not {expected}: {value}")]
    WrongType {
        /// Which param or field.
        field: Field,
        /// What it should be, e.g. `"a string"`.
        expected: &'static str,
        /// The value sent.
        value: String,
    },
    /// A field that should be hex but is not.
    #[error("{field} is not hex: {value}")]
    BadHex {
        /// Which param or field.
        field: Field,
        /// The value sent.
        value: String,
    },
    /// A hex field that decodes to the wrong number of bytes.
    #[error("{field} is {got} bytes, expected {expected}: {value}")]
    WrongLength {
        /// Which param or field.
        field: Field,
        /// Bytes expected.
        expected: usize,
        /// Bytes sent.
        got: usize,
        /// The value sent.
        value: String,
    },
    /// A number outside what the field allows (a difficulty ≤ 0, a port
    /// above 65535, a size that does not fit).
    #[error("{field} is out of range: {value}")]
    OutOfRange {
        /// Which param or field.
        field: Field,
        /// The value sent.
        value: String,
    },
}

/// Names a param or a result field in an error: its position and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Param `index` (from 0) of a call, called `name` in the Stratum docs.
    Param {
        /// Position in the params array.
        index: usize,
        /// What the param means, e.g. `"ntime"`.
        name: &'static str,
    },
    /// A member of a call's extension-parameters object (`mining.configure`).
    Key(&'static str),
    /// A field of a response's result, e.g. `"extranonce1"`.
    Result(&'static str),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Param { index, name } => write!(f, "param {index} ({name})"),
            Field::Key(key) => write!(f, "{key:?}"),
            Field::Result(name) => write!(f, "result {name}"),
        }
    }
}

/// Returns `value` as compact JSON, cut to a readable length.
pub(crate) fn excerpt(value: &Value) -> String {
    excerpt_str(&value.to_string())
}

/// Returns `text`, cut to a readable length on a character boundary.
pub(crate) fn excerpt_str(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_method_then_the_field_and_value() {
        let err = ParseError::new(
            Some(Id::from(4)),
            Some("mining.submit".into()),
            ParseErrorKind::WrongType {
                field: Field::Param {
                    index: 3,
                    name: "ntime",
                },
                expected: "a string",
                value: "1700000000".into(),
            },
        );
        assert_eq!(
            err.to_string(),
            "mining.submit: param 3 (ntime) is not a string: 1700000000"
        );
        assert!(err.is_submit());
    }

    #[test]
    fn answerable_only_with_a_non_null_id() {
        let err = |id| {
            ParseError::new(
                id,
                Some("mining.foo".into()),
                ParseErrorKind::UnknownMethod("mining.foo".into()),
            )
        };
        let response = err(Some(Id::from(7))).to_response().unwrap();
        assert_eq!(response.id, Id::from(7));
        let error = response.error.unwrap();
        assert_eq!(error.code, StratumError::OTHER);
        assert_eq!(error.message, "unknown method \"mining.foo\"");
        assert_eq!(err(Some(Id::Null)).to_response(), None);
        assert_eq!(err(None).to_response(), None);
    }

    #[test]
    fn excerpts_are_cut_on_char_boundaries() {
        let long = "é".repeat(200);
        let cut = excerpt_str(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(excerpt_str("short"), "short");
    }
}
