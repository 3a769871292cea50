//! Typed results: what a [`Response`] means once the caller knows which
//! request it answers.

use serde_json::{Map, Value};

use super::client::{Configure, VERSION_ROLLING};
use super::fields::{be_word_value, hex_bytes, integer, mask};
use super::server::MAX_EXTRANONCE2_SIZE;
use crate::error::{Field, ParseErrorKind, excerpt};
use crate::message::{Id, Response, StratumError};

const MASK_KEY: &str = "version-rolling.mask";

/// The result of `mining.subscribe`.
///
/// Pools send the subscriptions nested, `[["mining.set_difficulty", id],
/// ["mining.notify", id]]`, or (some) as one flat pair, `["mining.notify",
/// id]`; both are read, the nested form is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeResult {
    /// `(method, subscription id)` pairs; informational.
    pub subscriptions: Vec<(String, String)>,
    /// The connection's extranonce1.
    pub extranonce1: Vec<u8>,
    /// How many bytes of extranonce2 the miner rolls.
    pub extranonce2_size: usize,
}

impl SubscribeResult {
    /// Returns a result with the customary two subscriptions, both named by
    /// `subscription_id`.
    pub fn new(subscription_id: &str, extranonce1: Vec<u8>, extranonce2_size: usize) -> Self {
        SubscribeResult {
            subscriptions: ["mining.set_difficulty", "mining.notify"]
                .into_iter()
                .map(|m| (m.to_owned(), subscription_id.to_owned()))
                .collect(),
            extranonce1,
            extranonce2_size,
        }
    }

    /// Reads the result member of a subscribe response.
    pub fn from_result(result: &Value) -> Result<Self, ParseErrorKind> {
        let parts = match result.as_array() {
            Some(parts) if parts.len() >= 3 => parts,
            _ => {
                return Err(ParseErrorKind::WrongType {
                    field: Field::Result("of mining.subscribe"),
                    expected: "[subscriptions, extranonce1, extranonce2_size]",
                    value: excerpt(result),
                });
            }
        };
        Ok(SubscribeResult {
            subscriptions: subscriptions(&parts[0])?,
            extranonce1: hex_bytes((&parts[1], Field::Result("extranonce1")))?,
            extranonce2_size: integer(
                (&parts[2], Field::Result("extranonce2_size")),
                MAX_EXTRANONCE2_SIZE,
            )? as usize,
        })
    }

    /// Returns the result member in the nested form.
    pub fn to_value(&self) -> Value {
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(method, id)| Value::from(vec![method.as_str(), id.as_str()]))
            .collect();
        Value::Array(vec![
            Value::Array(subscriptions),
            hex::encode(&self.extranonce1).into(),
            self.extranonce2_size.into(),
        ])
    }
}

impl From<SubscribeResult> for Value {
    fn from(result: SubscribeResult) -> Value {
        result.to_value()
    }
}

fn subscriptions(value: &Value) -> Result<Vec<(String, String)>, ParseErrorKind> {
    let field = Field::Result("subscriptions");
    let bad = || ParseErrorKind::WrongType {
        field,
        expected: "a list of [method, id] pairs",
        value: excerpt(value),
    };
    // Subscription ids are opaque; a few pools send numbers.
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let pair = |v: &Value| match v.as_array().map(Vec::as_slice) {
        Some([method, id, ..]) => Some((text(method)?, text(id)?)),
        _ => None,
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) if items.first().is_some_and(Value::is_string) => {
            Ok(vec![pair(value).ok_or_else(bad)?])
        }
        Value::Array(items) => items.iter().map(|i| pair(i).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

/// The result of `mining.configure` (BIP-0310).
///
/// Each requested extension is answered `true`, `false` or an error string;
/// version rolling, when granted, also carries the mask.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigureResult {
    /// The mask the miner may roll, when version rolling was granted.
    pub version_rolling: Option<u32>,
    /// Every other member as sent (`"minimum-difficulty": false`, or
    /// `"version-rolling": false` / an error string when it was refused).
    pub other: Map<String, Value>,
}

impl ConfigureResult {
    /// Returns the answer to `request` from a server that grants version
    /// rolling within `allowed_mask` (when `Some`) and supports no other
    /// extension. The granted mask is the intersection of the two masks, as
    /// BIP-0310 asks; a miner needing more bits than that still gets it. An
    /// empty intersection is a refusal (`"version-rolling": false`), not a
    /// grant of nothing.
    pub fn reply_to(request: &Configure, allowed_mask: Option<u32>) -> Self {
        let mut result = ConfigureResult::default();
        for extension in &request.extensions {
            match (extension.as_str(), allowed_mask, request.version_rolling) {
                (VERSION_ROLLING, Some(allowed), Some(asked)) if allowed & asked.mask != 0 => {
                    result.version_rolling = Some(allowed & asked.mask);
                }
                _ => {
                    result.other.insert(extension.clone(), false.into());
                }
            }
        }
        result
    }

    /// Reads the result member of a configure response; null (a pool that
    /// answered with an error) grants nothing.
    pub fn from_result(result: &Value) -> Result<Self, ParseErrorKind> {
        let mut other = match result {
            Value::Null => return Ok(ConfigureResult::default()),
            Value::Object(map) => map.clone(),
            _ => {
                return Err(ParseErrorKind::WrongType {
                    field: Field::Result("of mining.configure"),
                    expected: "an object",
                    value: excerpt(result),
                });
            }
        };
        let version_rolling = if other.get(VERSION_ROLLING) == Some(&Value::Bool(true)) {
            other.remove(VERSION_ROLLING);
            let granted = other.remove(MASK_KEY).unwrap_or(Value::Null);
            Some(mask((&granted, Field::Result(MASK_KEY)))?)
        } else {
            None
        };
        Ok(ConfigureResult {
            version_rolling,
            other,
        })
    }

    /// Returns the result member.
    pub fn to_value(&self) -> Value {
        let mut map = self.other.clone();
        if let Some(granted) = self.version_rolling {
            map.insert(VERSION_ROLLING.into(), true.into());
            map.insert(MASK_KEY.into(), be_word_value(granted));
        }
        Value::Object(map)
    }
}

impl From<ConfigureResult> for Value {
    fn from(result: ConfigureResult) -> Value {
        result.to_value()
    }
}

/// A pool's answer to `mining.submit` or `mining.authorize`.
///
/// Pools answer `true` with a null error to accept, and reject with an error
/// (`[23, "Low difficulty share", null]`) or, as ckpool does, with `false`, a
/// null error and a `"reject-reason"`. A null result with no error is read
/// as accepted: JSON-RPC calls a response without an error a success, and
/// counting it as a reject would mark a working pool as failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitResult {
    /// Share or worker accepted.
    Accepted,
    /// Refused, with the pool's error (code 20 and the reject reason, or
    /// `"rejected"`, when the pool sent only `false`).
    Rejected(StratumError),
}

impl SubmitResult {
    /// Reads the verdict in a response.
    pub fn from_response(response: &Response) -> Result<Self, ParseErrorKind> {
        if let Some(error) = &response.error {
            return Ok(SubmitResult::Rejected(error.clone()));
        }
        match &response.result {
            Value::Bool(true) | Value::Null => Ok(SubmitResult::Accepted),
            Value::Bool(false) => Ok(SubmitResult::Rejected(StratumError::other(
                response.reject_reason.as_deref().unwrap_or("rejected"),
            ))),
            other => Err(ParseErrorKind::WrongType {
                field: Field::Result("of a submit or authorize"),
                expected: "true, false or null",
                value: excerpt(other),
            }),
        }
    }

    /// Returns the response carrying this verdict: `true`, or a null result
    /// with the error.
    pub fn to_response(&self, id: Id) -> Response {
        match self {
            SubmitResult::Accepted => Response::ok(id, true),
            SubmitResult::Rejected(error) => Response::error(id, error.clone()),
        }
    }

    /// Returns true for [`SubmitResult::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, SubmitResult::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::client::VersionRolling;
    use serde_json::json;

    #[test]
    fn subscribe_results_read_nested_and_flat_forms() {
        let nested = json!([
            [
                ["mining.set_difficulty", "b4b6693b"],
                ["mining.notify", "ae6812eb"]
            ],
            "08000002",
            4
        ]);
        let flat = json!([["mining.notify", "ae6812eb"], "08000002", 4]);
        let nested = SubscribeResult::from_result(&nested).unwrap();
        let flat = SubscribeResult::from_result(&flat).unwrap();
        assert_eq!(nested.subscriptions.len(), 2);
        assert_eq!(
            flat.subscriptions,
            vec![("mining.notify".to_owned(), "ae6812eb".to_owned())]
        );
        for r in [nested, flat] {
            assert_eq!(
                (r.extranonce1.as_slice(), r.extranonce2_size),
                (&[8, 0, 0, 2][..], 4)
            );
            assert_eq!(SubscribeResult::from_result(&r.to_value()).unwrap(), r);
        }
    }

    #[test]
    fn subscribe_result_names_bad_fields() {
        assert!(matches!(
            SubscribeResult::from_result(&json!([[], "zz", 4])),
            Err(ParseErrorKind::BadHex {
                field: Field::Result("extranonce1"),
                ..
            })
        ));
        assert!(matches!(
            SubscribeResult::from_result(&json!([[], "00", -1])),
            Err(ParseErrorKind::OutOfRange {
                field: Field::Result("extranonce2_size"),
                ..
            })
        ));
        assert!(matches!(
            SubscribeResult::from_result(&json!(true)),
            Err(ParseErrorKind::WrongType { .. })
        ));
    }

    #[test]
    fn configure_reply_grants_the_intersection_and_refuses_the_rest() {
        let request = Configure {
            extensions: vec!["version-rolling".into(), "minimum-difficulty".into()],
            version_rolling: Some(VersionRolling {
                mask: 0x1fff_e000,
                min_bit_count: 2,
            }),
            other_params: Map::new(),
        };
        let reply = ConfigureResult::reply_to(&request, Some(0x1800_0000 | 0x0000_f000));
        assert_eq!(
            reply.to_value(),
            json!({"version-rolling": true, "version-rolling.mask": "1800e000", "minimum-difficulty": false})
        );
        let refused = ConfigureResult::reply_to(&request, None);
        assert_eq!(
            refused.to_value(),
            json!({"version-rolling": false, "minimum-difficulty": false})
        );
        assert_eq!(
            ConfigureResult::from_result(&refused.to_value()).unwrap(),
            refused
        );
        // No bit in common: refused, not "granted" with mask 00000000.
        let disjoint = ConfigureResult::reply_to(&request, Some(0x0000_1fff));
        assert_eq!(disjoint.version_rolling, None);
        assert_eq!(disjoint.to_value()["version-rolling"], json!(false));
        assert_eq!(
            ConfigureResult::from_result(&reply.to_value()).unwrap(),
            reply
        );
    }

    #[test]
    fn configure_result_needs_a_mask_when_granted() {
        assert!(matches!(
            ConfigureResult::from_result(&json!({"version-rolling": true})),
            Err(ParseErrorKind::WrongType {
                field: Field::Result(MASK_KEY),
                ..
            })
        ));
        let refused = ConfigureResult::from_result(&json!({"version-rolling": "no bits"})).unwrap();
        assert_eq!(refused.version_rolling, None);
        assert_eq!(
            refused.other.get("version-rolling"),
            Some(&json!("no bits"))
        );
    }

    #[test]
    fn verdicts_follow_what_pools_send() {
        let response =
            |result: Value, error: Option<StratumError>, reason: Option<&str>| Response {
                id: Id::from(4),
                result,
                error,
                reject_reason: reason.map(str::to_owned),
            };
        let verdict = |r: Response| SubmitResult::from_response(&r).unwrap();
        assert_eq!(
            verdict(response(json!(true), None, None)),
            SubmitResult::Accepted
        );
        assert_eq!(
            verdict(response(Value::Null, None, None)),
            SubmitResult::Accepted
        );
        assert_eq!(
            verdict(response(Value::Null, Some(StratumError::stale()), None)),
            SubmitResult::Rejected(StratumError::stale())
        );
        assert_eq!(
            verdict(response(json!(false), None, Some("Above target"))),
            SubmitResult::Rejected(StratumError::other("Above target"))
        );
        assert_eq!(
            verdict(response(json!(false), None, None)),
            SubmitResult::Rejected(StratumError::other("rejected"))
        );
        assert!(SubmitResult::from_response(&response(json!("ok"), None, None)).is_err());
        for v in [
            SubmitResult::Accepted,
            SubmitResult::Rejected(StratumError::duplicate()),
        ] {
            assert_eq!(
                SubmitResult::from_response(&v.to_response(Id::from(1))).unwrap(),
                v
            );
        }
    }
}
