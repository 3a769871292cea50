//! The JSON-RPC envelope Stratum v1 wraps every line in.
//!
//! A line is a [`Request`] (a method and a non-null id: answer it), a
//! [`Notification`] (a method and a null or absent id: do not answer) or a
//! [`Response`] (no method; a result and/or an error). [`Message::from_line`]
//! sorts a line into one of the three; the typed methods in
//! [`crate::method`] are read from the first two.
//!
//! Peers bend JSON-RPC: ids are numbers, strings or null and must come back
//! exactly as sent (cpuminer sends every submit with id 4); some responses
//! omit `error`; errors come as `[code, "message", traceback]`,
//! `{"code": .., "message": ..}` or a bare string. All of these are read;
//! what this crate writes is always the customary form.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ParseError, ParseErrorKind, excerpt, excerpt_str};

/// A JSON-RPC id: a number, a string or null, kept exactly as the peer sent
/// it so the answer carries the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id, as the peer wrote it (any JSON number, even one no
    /// machine integer holds).
    Number(IdNumber),
    /// A string id.
    String(String),
    /// No id: the call is a notification, or a response to an unreadable call.
    Null,
}

/// The text of a numeric id. Kept as written rather than as a number, so an
/// id above 2^64 or written `4.0` comes back byte for byte: a float would
/// round the one and rewrite the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdNumber(Box<str>);

impl IdNumber {
    /// Returns the number as the peer wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for IdNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Only valid JSON numbers are ever stored, so this cannot fail.
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl Id {
    /// Returns true for the null id.
    pub fn is_null(&self) -> bool {
        matches!(self, Id::Null)
    }

    /// Returns the id as an unsigned integer, if it is one (the ids this
    /// crate's users hand out to pools are).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Id::Number(n) => n.0.parse().ok(),
            _ => None,
        }
    }

    /// Reads an id, or returns `None` for a value that cannot be one.
    fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::Null => Some(Id::Null),
            Value::Number(n) => Some(Id::Number(IdNumber(n.to_string().into()))),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }

    /// Reads an id from its JSON text, or returns `None` for an object, an
    /// array or a boolean.
    fn from_raw(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'n' => Some(Id::Null),
            b'"' => serde_json::from_str(text).ok().map(Id::String),
            b'-' | b'0'..=b'9' => Some(Id::Number(IdNumber(text.into()))),
            _ => None,
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Number(n.into())
    }
}

impl From<u64> for IdNumber {
    fn from(n: u64) -> Self {
        IdNumber(n.to_string().into())
    }
}

impl From<i64> for IdNumber {
    fn from(n: i64) -> Self {
        IdNumber(n.to_string().into())
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::String(s)
    }
}

/// A Stratum error: a code and a message, sent as `[code, "message", null]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stratum error {code}: {message}")]
pub struct StratumError {
    /// The code; 20..=25 are the customary Stratum v1 ones.
    pub code: i64,
    /// A human-readable message.
    pub message: String,
}

impl StratumError {
    /// Code 20: any other error.
    pub const OTHER: i64 = 20;
    /// Code 21: job not found (the share is stale).
    pub const JOB_NOT_FOUND: i64 = 21;
    /// Code 22: duplicate share.
    pub const DUPLICATE: i64 = 22;
    /// Code 23: share above target (low difficulty).
    pub const LOW_DIFFICULTY: i64 = 23;
    /// Code 24: unauthorized worker.
    pub const UNAUTHORIZED: i64 = 24;
    /// Code 25: not subscribed.
    pub const NOT_SUBSCRIBED: i64 = 25;

    /// Returns an error with any code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        StratumError {
            code,
            message: message.into(),
        }
    }

    /// Returns code 20 with `message`.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(Self::OTHER, message)
    }

    /// Returns code 21, "Job not found": the job is unknown or stale.
    pub fn stale() -> Self {
        Self::new(Self::JOB_NOT_FOUND, "Job not found")
    }

    /// Returns code 22, "Duplicate share".
    pub fn duplicate() -> Self {
        Self::new(Self::DUPLICATE, "Duplicate share")
    }

    /// Returns code 23, "Low difficulty share".
    pub fn low_difficulty() -> Self {
        Self::new(Self::LOW_DIFFICULTY, "Low difficulty share")
    }

    /// Returns code 24, "Unauthorized worker".
    pub fn unauthorized() -> Self {
        Self::new(Self::UNAUTHORIZED, "Unauthorized worker")
    }

    /// Returns code 25, "Not subscribed".
    pub fn not_subscribed() -> Self {
        Self::new(Self::NOT_SUBSCRIBED, "Not subscribed")
    }

    /// Returns the wire form `[code, "message", null]`.
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            self.code.into(),
            self.message.clone().into(),
            Value::Null,
        ])
    }

    /// Reads an error member in any of the shapes peers send: absent or null
    /// (no error), `[code, "message", traceback]`, `{"code", "message"}`, or
    /// a bare string (code 20). The traceback is dropped.
    pub fn from_value(value: &Value) -> Result<Option<Self>, ParseErrorKind> {
        let bad = || ParseErrorKind::BadErrorField(excerpt(value));
        let code_of = |v: &Value| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let message_of = |v: Option<&Value>| match v {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        let error = match value {
            Value::Null => return Ok(None),
            Value::String(s) => StratumError::other(s.clone()),
            Value::Array(items) => {
                let code = items.first().and_then(code_of).ok_or_else(bad)?;
                let message = message_of(items.get(1)).ok_or_else(bad)?;
                StratumError { code, message }
            }
            Value::Object(map) => {
                let code = map.get("code").and_then(code_of).ok_or_else(bad)?;
                let message = message_of(map.get("message")).ok_or_else(bad)?;
                StratumError { code, message }
            }
            _ => return Err(bad()),
        };
        Ok(Some(error))
    }
}

/// A call that expects an answer: a method, its params and a non-null id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the answer must carry.
    pub id: Id,
    /// The method name, e.g. `mining.submit`.
    pub method: String,
    /// The positional params (empty when the peer sent none or null).
    pub params: Vec<Value>,
}

impl Request {
    /// Returns the line `{"id":..,"method":..,"params":[..]}` without `\n`.
    pub fn to_line(&self) -> String {
        call_line(&self.id, &self.method, &self.params)
    }
}

/// A call that expects no answer: a method and its params, id null.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name, e.g. `mining.notify`.
    pub method: String,
    /// The positional params (empty when the peer sent none or null).
    pub params: Vec<Value>,
}

impl Notification {
    /// Returns the line `{"id":null,"method":..,"params":[..]}` without `\n`.
    pub fn to_line(&self) -> String {
        call_line(&Id::Null, &self.method, &self.params)
    }
}

/// The answer to a [`Request`]: a result, or an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request answered.
    pub id: Id,
    /// The result; null when absent or when the call failed.
    pub result: Value,
    /// The error, if the call failed.
    pub error: Option<StratumError>,
    /// ckpool's `"reject-reason"`, sent beside `"result": false` when it
    /// rejects a share without an error member.
    pub reject_reason: Option<String>,
}

impl Response {
    /// Returns a successful response carrying `result`.
    pub fn ok(id: Id, result: impl Into<Value>) -> Self {
        Response {
            id,
            result: result.into(),
            error: None,
            reject_reason: None,
        }
    }

    /// Returns a failed response: null result and `error`.
    pub fn error(id: Id, error: StratumError) -> Self {
        Response {
            id,
            result: Value::Null,
            error: Some(error),
            reject_reason: None,
        }
    }

    /// Returns the line `{"id":..,"result":..,"error":..}` without `\n`.
    pub fn to_line(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: &'a Id,
            result: &'a Value,
            error: Value,
            #[serde(rename = "reject-reason", skip_serializing_if = "Option::is_none")]
            reject_reason: Option<&'a str>,
        }
        to_json(&Wire {
            id: &self.id,
            result: &self.result,
            error: self
                .error
                .as_ref()
                .map_or(Value::Null, StratumError::to_value),
            reject_reason: self.reject_reason.as_deref(),
        })
    }
}

/// One line of Stratum, sorted by its envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call with a non-null id.
    Request(Request),
    /// A call with a null or absent id.
    Notification(Notification),
    /// An answer.
    Response(Response),
}

impl Message {
    /// Parses one line (without its `\n`).
    ///
    /// The id is read from its JSON text (see [`IdNumber`]); an id that is
    /// an object, an array or a boolean is an error that still carries the
    /// method, so a `mining.submit` with one is counted and answered.
    pub fn from_line(line: &str) -> Result<Message, ParseError> {
        match serde_json::from_str::<Envelope<'_>>(line) {
            Ok(Envelope { id, map }) => {
                let id = match id {
                    None => Ok(Id::Null),
                    Some(raw) => Id::from_raw(raw).ok_or_else(|| excerpt_str(raw.get().trim())),
                };
                Message::from_parts(id, map)
            }
            // Not an object, or not JSON: parsed again only to say which.
            Err(e) => Err(match serde_json::from_str::<Value>(line) {
                Ok(value) => ParseError::bare(ParseErrorKind::NotAnObject(excerpt(&value))),
                Err(_) => ParseError::bare(ParseErrorKind::NotJson {
                    reason: e.to_string(),
                    line: excerpt_str(line),
                }),
            }),
        }
    }

    /// Sorts an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Message, ParseError> {
        let Value::Object(mut map) = value else {
            return Err(ParseError::bare(ParseErrorKind::NotAnObject(excerpt(
                &value,
            ))));
        };
        let id = match map.remove("id") {
            None => Ok(Id::Null),
            Some(v) => Id::from_value(&v).ok_or_else(|| excerpt(&v)),
        };
        Message::from_parts(id, map)
    }

    /// Sorts an object whose id was read (or found unusable: `Err` holds
    /// an excerpt of it) and removed from `map`.
    fn from_parts(
        id: Result<Id, String>,
        mut map: Map<String, Value>,
    ) -> Result<Message, ParseError> {
        let method = map.remove("method");
        let id = match id {
            Ok(id) => id,
            Err(bad) => {
                let method = match method {
                    Some(Value::String(method)) => Some(method),
                    _ => None,
                };
                return Err(ParseError::new(None, method, ParseErrorKind::BadId(bad)));
            }
        };
        match method {
            // Some peers put "method": null on responses.
            None | Some(Value::Null) => Ok(Message::Response(response_from(id, map)?)),
            Some(Value::String(method)) => {
                let params = params_from(map.remove("params")).map_err(|kind| {
                    ParseError::new(Some(id.clone()), Some(method.clone()), kind)
                })?;
                Ok(if id.is_null() {
                    Message::Notification(Notification { method, params })
                } else {
                    Message::Request(Request { id, method, params })
                })
            }
            Some(other) => Err(ParseError::new(
                Some(id),
                None,
                ParseErrorKind::MethodNotAString(excerpt(&other)),
            )),
        }
    }

    /// Returns the line for this message, without `\n`.
    pub fn to_line(&self) -> String {
        match self {
            Message::Request(r) => r.to_line(),
            Message::Notification(n) => n.to_line(),
            Message::Response(r) => r.to_line(),
        }
    }
}

/// A JSON object read with its id kept as JSON text and every other member
/// as a value.
struct Envelope<'a> {
    id: Option<&'a RawValue>,
    map: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;

        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Envelope<'de>, A::Error> {
                let mut envelope = Envelope {
                    id: None,
                    map: Map::new(),
                };
                while let Some(key) = access.next_key::<String>()? {
                    // As with a map of values, the last of repeated keys wins.
                    if key == "id" {
                        envelope.id = Some(access.next_value()?);
                    } else {
                        let value = access.next_value()?;
                        envelope.map.insert(key, value);
                    }
                }
                Ok(envelope)
            }
        }

        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

fn params_from(params: Option<Value>) -> Result<Vec<Value>, ParseErrorKind> {
    match params {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ParseErrorKind::ParamsNotAnArray(excerpt(&other))),
    }
}

fn response_from(id: Id, mut map: Map<String, Value>) -> Result<Response, ParseError> {
    if !map.contains_key("result") && !map.contains_key("error") {
        // The id was taken out of the object; it goes back in the excerpt.
        let mut shown = Map::new();
        shown.insert(
            "id".into(),
            serde_json::to_value(&id).unwrap_or(Value::Null),
        );
        shown.extend(map);
        return Err(ParseError::new(
            Some(id),
            None,
            ParseErrorKind::NotAMessage(excerpt(&Value::Object(shown))),
        ));
    }
    let error = match map.get("error") {
        None => None,
        Some(v) => StratumError::from_value(v)
            .map_err(|kind| ParseError::new(Some(id.clone()), None, kind))?,
    };
    let reject_reason = match map.remove("reject-reason") {
        Some(Value::String(reason)) => Some(reason),
        _ => None,
    };
    Ok(Response {
        id,
        result: map.remove("result").unwrap_or(Value::Null),
        error,
        reject_reason,
    })
}

fn call_line(id: &Id, method: &str, params: &[Value]) -> String {
    #[derive(Serialize)]
    struct Wire<'a> {
        id: &'a Id,
        method: &'a str,
        params: &'a [Value],
    }
    to_json(&Wire { id, method, params })
}

/// Serialises `value`; serde_json escapes control characters inside strings,
/// so the result never contains a raw newline.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("values built from Value and str always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Message {
        Message::from_line(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn ids_come_back_exactly_as_sent() {
        for raw in [
            "4",
            "0",
            "18446744073709551615",
            // Above 2^64, and forms a float would rewrite: echoed as written.
            "18446744073709551616",
            "123456789012345678901234567890",
            "4.0",
            "1e3",
            "-3",
            "\"abc\"",
            "\"a\\\"b\"",
            "null",
        ] {
            let line = format!(r#"{{"id":{raw},"method":"mining.submit","params":[]}}"#);
            let id = match parse(&line) {
                Message::Request(r) => r.id,
                Message::Notification(_) => Id::Null,
                Message::Response(_) => panic!("{line} is a call"),
            };
            let answer = Response::ok(id, true).to_line();
            assert_eq!(
                answer,
                format!(r#"{{"id":{raw},"result":true,"error":null}}"#)
            );
        }
    }

    #[test]
    fn calls_split_on_the_id() {
        let Message::Notification(n) =
            parse(r#"{"method":"mining.set_difficulty","params":[1024]}"#)
        else {
            panic!("absent id is a notification")
        };
        assert_eq!(n.params, vec![json!(1024)]);
        assert!(matches!(
            parse(r#"{"id":null,"method":"mining.notify","params":null}"#),
            Message::Notification(Notification { params, .. }) if params.is_empty()
        ));
        assert!(matches!(
            parse(r#"{"id":"x","method":"client.get_version"}"#),
            Message::Request(Request { id: Id::String(s), params, .. })
                if s == "x" && params.is_empty()
        ));
    }

    #[test]
    fn responses_read_every_error_shape() {
        let cases = [
            (r#"{"id":1,"result":true}"#, None),
            (r#"{"id":1,"result":true,"error":null}"#, None),
            (
                r#"{"id":1,"result":null,"error":[21,"Job not found",null]}"#,
                Some(StratumError::stale()),
            ),
            (
                r#"{"id":1,"result":null,"error":[23,"Low difficulty share"]}"#,
                Some(StratumError::low_difficulty()),
            ),
            (
                r#"{"id":1,"result":null,"error":{"code":24,"message":"Unauthorized worker"}}"#,
                Some(StratumError::unauthorized()),
            ),
            (
                r#"{"id":1,"error":{"code":"22","message":"Duplicate share"}}"#,
                Some(StratumError::duplicate()),
            ),
            (
                r#"{"id":1,"result":false,"error":"bad nonce"}"#,
                Some(StratumError::other("bad nonce")),
            ),
        ];
        for (line, expected) in cases {
            let Message::Response(r) = parse(line) else {
                panic!("{line} is a response")
            };
            assert_eq!(r.error, expected, "{line}");
            assert_eq!(r.id, Id::from(1));
        }
    }

    #[test]
    fn keeps_ckpool_reject_reason() {
        let Message::Response(r) =
            parse(r#"{"id":9,"result":false,"error":null,"reject-reason":"Stale"}"#)
        else {
            panic!()
        };
        assert_eq!(r.result, json!(false));
        assert_eq!(r.reject_reason.as_deref(), Some("Stale"));
        assert_eq!(
            Message::from_line(&r.to_line()).unwrap(),
            Message::Response(r)
        );
    }

    #[test]
    fn responses_serialise_in_the_customary_form() {
        assert_eq!(
            Response::error(Id::from(4), StratumError::duplicate()).to_line(),
            r#"{"id":4,"result":null,"error":[22,"Duplicate share",null]}"#
        );
        assert_eq!(
            Response::ok(Id::from("a"), json!([1, "x"])).to_line(),
            r#"{"id":"a","result":[1,"x"],"error":null}"#
        );
    }

    #[test]
    fn every_envelope_round_trips() {
        let messages = [
            Message::Request(Request {
                id: Id::from(2),
                method: "mining.authorize".into(),
                params: vec![json!("w"), json!("x")],
            }),
            Message::Notification(Notification {
                method: "mining.set_difficulty".into(),
                params: vec![json!(2.5)],
            }),
            Message::Response(Response::ok(Id::Null, json!(true))),
            Message::Response(Response::error(Id::from(3), StratumError::stale())),
        ];
        for m in messages {
            let line = m.to_line();
            assert!(!line.contains('\n'));
            assert_eq!(Message::from_line(&line).unwrap(), m, "{line}");
        }
    }

    #[test]
    fn strings_with_newlines_stay_on_one_line() {
        let line = Response::error(Id::from(1), StratumError::other("a\nb")).to_line();
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn malformed_envelopes_name_the_problem() {
        let kind = |line: &str| Message::from_line(line).unwrap_err().kind().clone();
        assert!(matches!(kind("{\"id\":1,"), ParseErrorKind::NotJson { .. }));
        assert_eq!(kind("[1,2]"), ParseErrorKind::NotAnObject("[1,2]".into()));
        assert_eq!(
            kind(r#"{"id":[1],"method":"x"}"#),
            ParseErrorKind::BadId("[1]".into())
        );
        assert_eq!(
            kind(r#"{"id":1,"method":7}"#),
            ParseErrorKind::MethodNotAString("7".into())
        );
        assert_eq!(
            kind(r#"{"id":1,"jsonrpc":"2.0"}"#),
            ParseErrorKind::NotAMessage(r#"{"id":1,"jsonrpc":"2.0"}"#.into())
        );
        assert_eq!(
            kind(r#"{"id":1,"result":null,"error":true}"#),
            ParseErrorKind::BadErrorField("true".into())
        );
        assert_eq!(
            kind(r#"{"id":1,"result":null,"error":[]}"#),
            ParseErrorKind::BadErrorField("[]".into())
        );
    }

    #[test]
    fn an_id_that_cannot_be_one_still_names_the_method() {
        for raw in ["{\"a\":1}", "[4]", "true", "false"] {
            let line = format!(r#"{{"id":{raw},"method":"mining.submit","params":["w"]}}"#);
            let err = Message::from_line(&line).unwrap_err();
            assert!(err.is_submit(), "{line}");
            assert_eq!(err.id(), None, "{line}");
            assert!(matches!(err.kind(), ParseErrorKind::BadId(_)), "{line}");
        }
    }

    #[test]
    fn the_last_of_repeated_members_wins() {
        let Message::Request(r) = parse(r#"{"id":1,"method":"a","id":2,"params":[],"method":"b"}"#)
        else {
            panic!("a call with an id")
        };
        assert_eq!((r.id, r.method.as_str()), (Id::from(2), "b"));
    }

    #[test]
    fn bad_params_keep_the_id_and_method() {
        let err = Message::from_line(r#"{"id":4,"method":"mining.submit","params":{"a":1}}"#)
            .unwrap_err();
        assert_eq!(err.id(), Some(&Id::from(4)));
        assert!(err.is_submit());
        assert_eq!(
            *err.kind(),
            ParseErrorKind::ParamsNotAnArray(r#"{"a":1}"#.into())
        );
    }
}
