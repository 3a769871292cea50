//! [`ClientMethod`]: the calls a miner makes, and the proxy makes of a pool.

use serde_json::{Map, Value};

use super::Method;
use super::fields::{
    count, difficulty, difficulty_value, integer, mask, opt_string, param, string,
};
use crate::error::{Field, ParseErrorKind, excerpt};
use crate::units::Difficulty;

const SUBSCRIBE: &str = "mining.subscribe";
const AUTHORIZE: &str = "mining.authorize";
const SUBMIT: &str = "mining.submit";
const CONFIGURE: &str = "mining.configure";
const EXTRANONCE_SUBSCRIBE: &str = "mining.extranonce.subscribe";
const SUGGEST_DIFFICULTY: &str = "mining.suggest_difficulty";
const GET_TRANSACTIONS: &str = "mining.get_transactions";

/// The BIP-0310 extension that negotiates version rolling.
pub(crate) const VERSION_ROLLING: &str = "version-rolling";
const MASK_KEY: &str = "version-rolling.mask";
const MIN_BIT_COUNT_KEY: &str = "version-rolling.min-bit-count";

/// A call from the miner side of a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMethod {
    /// `mining.subscribe`: opens the session. Some miners send no params,
    /// some a user agent, some a session id to resume after it (and a few
    /// the host and port they dialled, which are ignored).
    Subscribe {
        /// The miner's software and version, e.g. `bmminer/2.0.0`.
        user_agent: Option<String>,
        /// An earlier session (extranonce1) the miner asks to resume.
        session_id: Option<String>,
    },
    /// `mining.authorize`: logs a worker in. The password is often `x`, and
    /// some miners leave it out.
    Authorize {
        /// The worker name, usually `account.worker`.
        user: String,
        /// The password, if sent.
        password: Option<String>,
    },
    /// `mining.submit`: a share.
    Submit(Submit),
    /// `mining.configure` (BIP-0310): extension negotiation.
    Configure(Configure),
    /// `mining.extranonce.subscribe`: the miner can take
    /// `mining.set_extranonce`.
    ExtranonceSubscribe,
    /// `mining.suggest_difficulty`: the difficulty the miner would like.
    SuggestDifficulty(Difficulty),
    /// `mining.get_transactions`: answered with an error by hashsplit.
    GetTransactions {
        /// The job asked about, if given.
        job_id: Option<String>,
    },
}

/// The params of `mining.submit`, kept as the strings the miner sent: they
/// are decoded and checked by the share path, which must also account for
/// the ones that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Submit {
    /// The worker name the share is for.
    pub worker: String,
    /// The job the share solves.
    pub job_id: String,
    /// The miner's extranonce2, hex.
    pub extranonce2: String,
    /// The header time, 8 hex digits.
    pub ntime: String,
    /// The header nonce, 8 hex digits.
    pub nonce: String,
    /// The rolled version bits (BIP-0310 sixth param), 8 hex digits.
    pub version_bits: Option<String>,
}

/// The params of `mining.configure`: the extensions asked for, version
/// rolling read out, and the other extensions' parameters as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Configure {
    /// The extension codes, in the order sent (`version-rolling`,
    /// `minimum-difficulty`, `subscribe-extranonce`, `info`, ...).
    pub extensions: Vec<String>,
    /// Present when `version-rolling` is among the extensions.
    pub version_rolling: Option<VersionRolling>,
    /// Every other member of the extension-parameters object, e.g.
    /// `"minimum-difficulty.value"` or `"info.hw-version"`.
    pub other_params: Map<String, Value>,
}

/// What a miner asks for in the `version-rolling` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRolling {
    /// The bits the miner can roll; `ffffffff` when it sends no mask.
    pub mask: u32,
    /// The fewest bits it needs to roll efficiently; 0 when not sent.
    pub min_bit_count: u32,
}

impl Method for ClientMethod {
    fn name(&self) -> &'static str {
        match self {
            ClientMethod::Subscribe { .. } => SUBSCRIBE,
            ClientMethod::Authorize { .. } => AUTHORIZE,
            ClientMethod::Submit(_) => SUBMIT,
            ClientMethod::Configure(_) => CONFIGURE,
            ClientMethod::ExtranonceSubscribe => EXTRANONCE_SUBSCRIBE,
            ClientMethod::SuggestDifficulty(_) => SUGGEST_DIFFICULTY,
            ClientMethod::GetTransactions { .. } => GET_TRANSACTIONS,
        }
    }

    fn from_call(method: &str, p: &[Value]) -> Result<Self, ParseErrorKind> {
        Ok(match method {
            SUBSCRIBE => {
                count(p, 0, 4, "0 to 4")?;
                ClientMethod::Subscribe {
                    user_agent: opt_string(param(p, 0, "user_agent"))?,
                    session_id: opt_string(param(p, 1, "session_id"))?,
                }
            }
            AUTHORIZE => {
                count(p, 1, 2, "1 or 2")?;
                ClientMethod::Authorize {
                    user: string(param(p, 0, "user"))?,
                    password: opt_string(param(p, 1, "password"))?,
                }
            }
            SUBMIT => {
                count(p, 5, 6, "5 or 6")?;
                ClientMethod::Submit(Submit {
                    worker: string(param(p, 0, "worker"))?,
                    job_id: string(param(p, 1, "job_id"))?,
                    extranonce2: string(param(p, 2, "extranonce2"))?,
                    ntime: string(param(p, 3, "ntime"))?,
                    nonce: string(param(p, 4, "nonce"))?,
                    version_bits: opt_string(param(p, 5, "version_bits"))?,
                })
            }
            CONFIGURE => ClientMethod::Configure(Configure::from_params(p)?),
            // Takes no params; anything sent is ignored.
            EXTRANONCE_SUBSCRIBE => ClientMethod::ExtranonceSubscribe,
            SUGGEST_DIFFICULTY => {
                count(p, 1, 1, "1")?;
                ClientMethod::SuggestDifficulty(difficulty(param(p, 0, "difficulty"))?)
            }
            GET_TRANSACTIONS => {
                count(p, 0, 1, "0 or 1")?;
                ClientMethod::GetTransactions {
                    job_id: opt_string(param(p, 0, "job_id"))?,
                }
            }
            other => return Err(ParseErrorKind::UnknownMethod(other.to_owned())),
        })
    }

    fn to_params(&self) -> Vec<Value> {
        match self {
            ClientMethod::Subscribe {
                user_agent,
                session_id,
            } => trimmed(vec![opt(user_agent), opt(session_id)]),
            ClientMethod::Authorize { user, password } => {
                trimmed(vec![user.as_str().into(), opt(password)])
            }
            ClientMethod::Submit(s) => {
                let mut params: Vec<Value> =
                    [&s.worker, &s.job_id, &s.extranonce2, &s.ntime, &s.nonce]
                        .into_iter()
                        .map(|f| Value::from(f.as_str()))
                        .collect();
                params.extend(s.version_bits.as_deref().map(Value::from));
                params
            }
            ClientMethod::Configure(c) => c.to_params(),
            ClientMethod::ExtranonceSubscribe => Vec::new(),
            ClientMethod::SuggestDifficulty(d) => vec![difficulty_value(*d)],
            ClientMethod::GetTransactions { job_id } => trimmed(vec![opt(job_id)]),
        }
    }
}

impl Configure {
    /// Returns a request for version rolling alone, as ASIC firmware sends it.
    pub fn version_rolling(mask: u32, min_bit_count: u32) -> Self {
        Configure {
            extensions: vec![VERSION_ROLLING.to_owned()],
            version_rolling: Some(VersionRolling {
                mask,
                min_bit_count,
            }),
            other_params: Map::new(),
        }
    }

    fn from_params(p: &[Value]) -> Result<Self, ParseErrorKind> {
        count(p, 1, 2, "1 or 2")?;
        let (list, field) = param(p, 0, "extensions");
        let not_a_list = || ParseErrorKind::WrongType {
            field,
            expected: "a list of strings",
            value: excerpt(list),
        };
        let extensions = list
            .as_array()
            .ok_or_else(not_a_list)?
            .iter()
            .map(|e| e.as_str().map(str::to_owned).ok_or_else(not_a_list))
            .collect::<Result<Vec<_>, _>>()?;
        let mut other_params = match param(p, 1, "extension-parameters") {
            (Value::Null, _) => Map::new(),
            (Value::Object(map), _) => map.clone(),
            (value, field) => {
                return Err(ParseErrorKind::WrongType {
                    field,
                    expected: "an object",
                    value: excerpt(value),
                });
            }
        };
        let version_rolling = if extensions.iter().any(|e| e == VERSION_ROLLING) {
            let rolling_mask = match other_params.remove(MASK_KEY) {
                None => u32::MAX,
                Some(v) => mask((&v, Field::Key(MASK_KEY)))?,
            };
            let min_bit_count = match other_params.remove(MIN_BIT_COUNT_KEY) {
                None => 0,
                Some(v) => {
                    let field = Field::Key(MIN_BIT_COUNT_KEY);
                    // BIP-0310 types it as a hex string; miners send a number.
                    let count = match v.as_str() {
                        Some(_) => mask((&v, field))?.into(),
                        None => integer((&v, field), 32)?,
                    };
                    if count > 32 {
                        return Err(ParseErrorKind::OutOfRange {
                            field,
                            value: excerpt(&v),
                        });
                    }
                    count as u32
                }
            };
            Some(VersionRolling {
                mask: rolling_mask,
                min_bit_count,
            })
        } else {
            None
        };
        Ok(Configure {
            extensions,
            version_rolling,
            other_params,
        })
    }

    fn to_params(&self) -> Vec<Value> {
        let mut map = self.other_params.clone();
        if let Some(vr) = self.version_rolling {
            map.insert(MASK_KEY.into(), format!("{:08x}", vr.mask).into());
            map.insert(MIN_BIT_COUNT_KEY.into(), vr.min_bit_count.into());
        }
        vec![
            self.extensions
                .iter()
                .map(|e| Value::from(e.as_str()))
                .collect(),
            Value::Object(map),
        ]
    }
}

fn opt(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::Null, Value::from)
}

/// Drops trailing nulls: optional params are left out, not sent as null.
fn trimmed(mut params: Vec<Value>) -> Vec<Value> {
    while params.last() == Some(&Value::Null) {
        params.pop();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Id;
    use serde_json::json;

    fn call(method: &str, params: Value) -> Result<ClientMethod, ParseErrorKind> {
        ClientMethod::from_call(method, params.as_array().unwrap())
    }

    #[test]
    fn submit_keeps_the_strings_as_sent() {
        let submit = call(
            "mining.submit",
            json!(["acct.w1", "1a2b", "00000000", "5F5E1000", "DEADBEEF"]),
        )
        .unwrap();
        let ClientMethod::Submit(s) = submit else {
            panic!()
        };
        assert_eq!(
            (s.ntime.as_str(), s.nonce.as_str()),
            ("5F5E1000", "DEADBEEF")
        );
        assert_eq!(s.version_bits, None);
    }

    #[test]
    fn submit_names_the_bad_param() {
        let err = call(
            "mining.submit",
            json!(["w", "j", "00", 1_700_000_000u32, "00000000"]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ParseErrorKind::WrongType {
                field: Field::Param {
                    index: 3,
                    name: "ntime"
                },
                expected: "a string",
                value: "1700000000".into(),
            }
        );
        assert_eq!(
            call("mining.submit", json!(["w", "j", "00", "00"])).unwrap_err(),
            ParseErrorKind::ParamCount {
                expected: "5 or 6",
                got: 4
            }
        );
    }

    #[test]
    fn configure_defaults_the_mask_and_keeps_other_params() {
        let c = call(
            "mining.configure",
            json!([["version-rolling", "minimum-difficulty"], {"minimum-difficulty.value": 2048}]),
        )
        .unwrap();
        let ClientMethod::Configure(c) = c else {
            panic!()
        };
        assert_eq!(
            c.version_rolling,
            Some(VersionRolling {
                mask: u32::MAX,
                min_bit_count: 0
            })
        );
        assert_eq!(
            c.other_params.get("minimum-difficulty.value"),
            Some(&json!(2048))
        );
    }

    #[test]
    fn configure_reads_min_bit_count_as_number_or_hex_string() {
        let rolling = |count: Value| {
            call(
                "mining.configure",
                json!([["version-rolling"], {"version-rolling.min-bit-count": count}]),
            )
        };
        let count_of = |m: ClientMethod| match m {
            ClientMethod::Configure(c) => c.version_rolling.unwrap().min_bit_count,
            other => panic!("{other:?}"),
        };
        assert_eq!(count_of(rolling(json!(16)).unwrap()), 16);
        assert_eq!(count_of(rolling(json!("10")).unwrap()), 16);
        for bad in [json!(33), json!("21"), json!(-1)] {
            assert!(
                matches!(rolling(bad.clone()), Err(ParseErrorKind::OutOfRange { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn configure_rejects_a_bad_mask_by_key() {
        let err = call(
            "mining.configure",
            json!([["version-rolling"], {"version-rolling.mask": "zz"}]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ParseErrorKind::BadHex {
                field: Field::Key(MASK_KEY),
                value: "\"zz\"".into()
            }
        );
    }

    #[test]
    fn optional_params_are_left_out_when_absent() {
        let line = |m: ClientMethod| m.to_line(Id::from(1));
        assert_eq!(
            line(ClientMethod::Subscribe {
                user_agent: None,
                session_id: None
            }),
            r#"{"id":1,"method":"mining.subscribe","params":[]}"#
        );
        assert_eq!(
            line(ClientMethod::Authorize {
                user: "u".into(),
                password: None
            }),
            r#"{"id":1,"method":"mining.authorize","params":["u"]}"#
        );
        assert_eq!(
            line(ClientMethod::Configure(Configure::version_rolling(
                0x1fffe000, 2
            ))),
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}"#
        );
    }
}
