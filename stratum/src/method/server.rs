//! [`ServerMethod`]: the calls a pool makes, and the proxy makes of a miner.

use serde_json::Value;

use super::Method;
use super::fields::{
    be_word, be_word_value, boolean, count, difficulty, difficulty_value, hex_array, hex_bytes,
    integer, mask, opt_string, param, string,
};
use crate::error::{ParseErrorKind, excerpt};
use crate::units::Difficulty;

const NOTIFY: &str = "mining.notify";
const SET_DIFFICULTY: &str = "mining.set_difficulty";
const SET_EXTRANONCE: &str = "mining.set_extranonce";
const SET_VERSION_MASK: &str = "mining.set_version_mask";
const RECONNECT: &str = "client.reconnect";
const SHOW_MESSAGE: &str = "client.show_message";
const GET_VERSION: &str = "client.get_version";

/// The largest extranonce2 size read: the coinbase scriptSig that holds both
/// extranonces is at most 100 bytes by consensus, so a larger size is a
/// broken peer, not a big one.
pub(crate) const MAX_EXTRANONCE2_SIZE: u64 = 100;

/// A call from the pool side of a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMethod {
    /// `mining.notify`: a job.
    Notify(Notify),
    /// `mining.set_difficulty`: the share difficulty from the next job on.
    SetDifficulty(Difficulty),
    /// `mining.set_extranonce`: new extranonces (for miners that subscribed).
    SetExtranonce {
        /// The new extranonce1.
        extranonce1: Vec<u8>,
        /// The new extranonce2 size in bytes.
        extranonce2_size: usize,
    },
    /// `mining.set_version_mask` (BIP-0310): the bits the miner may roll now.
    SetVersionMask(u32),
    /// `client.reconnect`: reconnect, to the same place when no host is
    /// given, after `wait_secs` seconds when given.
    Reconnect {
        /// Host to connect to.
        host: Option<String>,
        /// Port to connect to (pools send it as a number or a string).
        port: Option<u16>,
        /// Seconds to wait before reconnecting.
        wait_secs: Option<u64>,
    },
    /// `client.show_message`: text for the operator.
    ShowMessage(String),
    /// `client.get_version`: asks for the miner's software version.
    GetVersion,
}

/// A job (`mining.notify`), decoded and length-checked at the edge.
///
/// Byte fields hold the bytes exactly as the hex on the wire: `prevhash` is
/// in Stratum's word order and the merkle branch as sent, neither reordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// The pool's job id.
    pub job_id: String,
    /// The previous block hash, 32 bytes as sent.
    pub prevhash: [u8; 32],
    /// Coinbase bytes before the extranonces.
    pub coinb1: Vec<u8>,
    /// Coinbase bytes after the extranonces.
    pub coinb2: Vec<u8>,
    /// The merkle branch of the coinbase, hashes as sent.
    pub merkle_branch: Vec<[u8; 32]>,
    /// Block version, as the 8 hex digits read big-endian.
    pub version: u32,
    /// Compact network target, as the 8 hex digits read big-endian.
    pub nbits: u32,
    /// Block time, as the 8 hex digits read big-endian.
    pub ntime: u32,
    /// True when earlier jobs are void.
    pub clean_jobs: bool,
}

impl Method for ServerMethod {
    fn name(&self) -> &'static str {
        match self {
            ServerMethod::Notify(_) => NOTIFY,
            ServerMethod::SetDifficulty(_) => SET_DIFFICULTY,
            ServerMethod::SetExtranonce { .. } => SET_EXTRANONCE,
            ServerMethod::SetVersionMask(_) => SET_VERSION_MASK,
            ServerMethod::Reconnect { .. } => RECONNECT,
            ServerMethod::ShowMessage(_) => SHOW_MESSAGE,
            ServerMethod::GetVersion => GET_VERSION,
        }
    }

    fn from_call(method: &str, p: &[Value]) -> Result<Self, ParseErrorKind> {
        Ok(match method {
            NOTIFY => ServerMethod::Notify(Notify::from_params(p)?),
            SET_DIFFICULTY => {
                count(p, 1, 1, "1")?;
                ServerMethod::SetDifficulty(difficulty(param(p, 0, "difficulty"))?)
            }
            SET_EXTRANONCE => {
                count(p, 2, 2, "2")?;
                ServerMethod::SetExtranonce {
                    extranonce1: hex_bytes(param(p, 0, "extranonce1"))?,
                    extranonce2_size: integer(
                        param(p, 1, "extranonce2_size"),
                        MAX_EXTRANONCE2_SIZE,
                    )? as usize,
                }
            }
            SET_VERSION_MASK => {
                count(p, 1, 1, "1")?;
                ServerMethod::SetVersionMask(mask(param(p, 0, "mask"))?)
            }
            RECONNECT => {
                count(p, 0, 3, "0 to 3")?;
                let optional = |index, name, max| match param(p, index, name) {
                    (Value::Null, _) => Ok(None),
                    input => integer(input, max).map(Some),
                };
                ServerMethod::Reconnect {
                    host: opt_string(param(p, 0, "host"))?,
                    port: optional(1, "port", u16::MAX.into())?.map(|port| port as u16),
                    wait_secs: optional(2, "wait", u64::MAX)?,
                }
            }
            SHOW_MESSAGE => {
                count(p, 1, 1, "1")?;
                ServerMethod::ShowMessage(string(param(p, 0, "message"))?)
            }
            // Takes no params; anything sent is ignored.
            GET_VERSION => ServerMethod::GetVersion,
            other => return Err(ParseErrorKind::UnknownMethod(other.to_owned())),
        })
    }

    fn to_params(&self) -> Vec<Value> {
        match self {
            ServerMethod::Notify(n) => n.to_params(),
            ServerMethod::SetDifficulty(d) => vec![difficulty_value(*d)],
            ServerMethod::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => vec![hex::encode(extranonce1).into(), (*extranonce2_size).into()],
            ServerMethod::SetVersionMask(m) => vec![be_word_value(*m)],
            ServerMethod::Reconnect {
                host,
                port,
                wait_secs,
            } => {
                let mut params = vec![
                    host.as_deref().map_or(Value::Null, Value::from),
                    port.map_or(Value::Null, Value::from),
                    wait_secs.map_or(Value::Null, Value::from),
                ];
                // Optional params are left out, not sent as null.
                while params.last() == Some(&Value::Null) {
                    params.pop();
                }
                params
            }
            ServerMethod::ShowMessage(text) => vec![text.as_str().into()],
            ServerMethod::GetVersion => Vec::new(),
        }
    }
}

impl Notify {
    fn from_params(p: &[Value]) -> Result<Self, ParseErrorKind> {
        count(p, 9, 9, "9")?;
        let (branch, field) = param(p, 4, "merkle_branch");
        let merkle_branch = branch
            .as_array()
            .ok_or_else(|| ParseErrorKind::WrongType {
                field,
                expected: "a list of hashes",
                value: excerpt(branch),
            })?
            .iter()
            .map(|hash| hex_array::<32>((hash, field)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Notify {
            job_id: string(param(p, 0, "job_id"))?,
            prevhash: hex_array::<32>(param(p, 1, "prevhash"))?,
            coinb1: hex_bytes(param(p, 2, "coinb1"))?,
            coinb2: hex_bytes(param(p, 3, "coinb2"))?,
            merkle_branch,
            version: be_word(param(p, 5, "version"))?,
            nbits: be_word(param(p, 6, "nbits"))?,
            ntime: be_word(param(p, 7, "ntime"))?,
            clean_jobs: boolean(param(p, 8, "clean_jobs"))?,
        })
    }

    fn to_params(&self) -> Vec<Value> {
        vec![
            self.job_id.as_str().into(),
            hex::encode(self.prevhash).into(),
            hex::encode(&self.coinb1).into(),
            hex::encode(&self.coinb2).into(),
            self.merkle_branch
                .iter()
                .map(|h| Value::from(hex::encode(h)))
                .collect(),
            be_word_value(self.version),
            be_word_value(self.nbits),
            be_word_value(self.ntime),
            self.clean_jobs.into(),
        ]
    }
}

impl From<Notify> for ServerMethod {
    fn from(n: Notify) -> Self {
        ServerMethod::Notify(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Field;
    use crate::message::Id;
    use serde_json::json;

    fn param_field(index: usize, name: &'static str) -> Field {
        Field::Param { index, name }
    }

    fn notify_params() -> Value {
        json!([
            "bf",
            "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
            "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
            [],
            "00000002",
            "1c2ac4af",
            "504e86b9",
            false
        ])
    }

    fn call(method: &str, params: Value) -> Result<ServerMethod, ParseErrorKind> {
        ServerMethod::from_call(method, params.as_array().unwrap())
    }

    #[test]
    fn notify_decodes_words_big_endian_and_keeps_prevhash_order() {
        let ServerMethod::Notify(n) = call("mining.notify", notify_params()).unwrap() else {
            panic!()
        };
        assert_eq!(n.version, 2);
        assert_eq!(n.nbits, 0x1c2a_c4af);
        assert_eq!(n.ntime, 0x504e_86b9);
        assert_eq!(n.prevhash[0], 0x4d);
        assert_eq!(n.prevhash[31], 0x00);
        assert!(n.merkle_branch.is_empty());
        assert_eq!(
            ServerMethod::Notify(n).to_params(),
            notify_params().as_array().unwrap().clone()
        );
    }

    #[test]
    fn notify_names_the_bad_field() {
        let mut p = notify_params();
        p[1] = json!("4d16");
        assert_eq!(
            call("mining.notify", p).unwrap_err(),
            ParseErrorKind::WrongLength {
                field: param_field(1, "prevhash"),
                expected: 32,
                got: 2,
                value: "\"4d16\"".into(),
            }
        );
        let mut p = notify_params();
        p[4] = json!(["zz"]);
        assert_eq!(
            call("mining.notify", p).unwrap_err(),
            ParseErrorKind::BadHex {
                field: param_field(4, "merkle_branch"),
                value: "\"zz\"".into(),
            }
        );
        let mut p = notify_params();
        p[8] = json!("true");
        assert!(matches!(
            call("mining.notify", p).unwrap_err(),
            ParseErrorKind::WrongType { field, .. } if field == param_field(8, "clean_jobs")
        ));
    }

    #[test]
    fn reconnect_reads_ports_as_numbers_or_strings() {
        for params in [
            json!(["pool.example", 3333, 5]),
            json!(["pool.example", "3333", "5"]),
        ] {
            assert_eq!(
                call("client.reconnect", params).unwrap(),
                ServerMethod::Reconnect {
                    host: Some("pool.example".into()),
                    port: Some(3333),
                    wait_secs: Some(5),
                }
            );
        }
        assert!(matches!(
            call("client.reconnect", json!(["h", 70000])).unwrap_err(),
            ParseErrorKind::OutOfRange { .. }
        ));
        assert_eq!(
            ServerMethod::Reconnect {
                host: None,
                port: None,
                wait_secs: None
            }
            .to_line(Id::Null),
            r#"{"id":null,"method":"client.reconnect","params":[]}"#
        );
    }

    #[test]
    fn set_extranonce_bounds_the_size() {
        assert_eq!(
            call("mining.set_extranonce", json!(["08000002", 4])).unwrap(),
            ServerMethod::SetExtranonce {
                extranonce1: vec![8, 0, 0, 2],
                extranonce2_size: 4
            }
        );
        assert!(matches!(
            call("mining.set_extranonce", json!(["08000002", 1000])).unwrap_err(),
            ParseErrorKind::OutOfRange { .. }
        ));
    }
}
