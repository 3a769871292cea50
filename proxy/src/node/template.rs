//! A `getblocktemplate` answer (BIP 22/23, segwit rules), read and checked.
//!
//! Every transaction is decoded with the `bitcoin` crate and its txid
//! recomputed, so a node (or anything pretending to be one) cannot hand the
//! proxy work whose merkle branch would not match the block it submits.

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, ScriptBuf, Transaction, Txid};
use serde::Deserialize;

/// Why a template cannot be mined.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A field is not what BIP 22 says.
    #[error("template field {field}: {reason}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A transaction does not decode.
    #[error("template transaction {index} does not decode: {reason}")]
    Transaction {
        /// Its position in `transactions`.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// A transaction's txid is not the one the node gave.
    #[error("template transaction {index}: txid {computed} but the node says {claimed}")]
    Txid {
        /// Its position in `transactions`.
        index: usize,
        /// What the crate computed.
        computed: Txid,
        /// What the node said.
        claimed: String,
    },
}

/// The JSON of a `getblocktemplate` result, as far as mining needs it.
#[derive(Debug, Deserialize)]
struct RawTemplate {
    version: u32,
    previousblockhash: String,
    transactions: Vec<RawTransaction>,
    coinbasevalue: u64,
    bits: String,
    height: u64,
    curtime: u32,
    #[serde(default)]
    mintime: Option<u32>,
    #[serde(default)]
    default_witness_commitment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTransaction {
    data: String,
    txid: String,
}

/// A checked block template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Block version the node asks for (BIP 9 bits set).
    pub version: u32,
    /// The block this one builds on.
    pub prev_blockhash: BlockHash,
    /// The transactions after the coinbase, in block order.
    pub transactions: Vec<Transaction>,
    /// Their txids, in the same order.
    pub txids: Vec<Txid>,
    /// Subsidy plus fees, in satoshis: what the coinbase may pay.
    pub coinbase_value: u64,
    /// Compact network target.
    pub bits: CompactTarget,
    /// Height of the block to build (BIP 34).
    pub height: u64,
    /// The node's current time; the job's ntime.
    pub curtime: u32,
    /// The earliest ntime the node accepts.
    pub mintime: Option<u32>,
    /// The coinbase output script committing to the witnesses, when any
    /// transaction has one.
    pub witness_commitment: Option<ScriptBuf>,
}

impl Template {
    /// Reads and checks a `getblocktemplate` result.
    pub fn from_json(value: &serde_json::Value) -> Result<Template, TemplateError> {
        let raw = RawTemplate::deserialize(value).map_err(|e| TemplateError::Field {
            field: "result",
            reason: e.to_string(),
        })?;
        let prev_blockhash =
            raw.previousblockhash
                .parse::<BlockHash>()
                .map_err(|e| TemplateError::Field {
                    field: "previousblockhash",
                    reason: e.to_string(),
                })?;
        let bits = u32::from_str_radix(&raw.bits, 16)
            .ok()
            .filter(|_| raw.bits.len() == 8)
            .map(CompactTarget::from_consensus)
            .ok_or_else(|| TemplateError::Field {
                field: "bits",
                reason: format!("{:?} is not 8 hex digits", raw.bits),
            })?;
        let witness_commitment = raw
            .default_witness_commitment
            .as_deref()
            .map(|hex| {
                ScriptBuf::from_hex(hex).map_err(|e| TemplateError::Field {
                    field: "default_witness_commitment",
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let mut transactions = Vec::with_capacity(raw.transactions.len());
        let mut txids = Vec::with_capacity(raw.transactions.len());
        for (index, tx) in raw.transactions.iter().enumerate() {
            let decoded: Transaction =
                deserialize_hex(&tx.data).map_err(|e| TemplateError::Transaction {
                    index,
                    reason: e.to_string(),
                })?;
            let computed = decoded.compute_txid();
            if computed.to_string() != tx.txid {
                return Err(TemplateError::Txid {
                    index,
                    computed,
                    claimed: tx.txid.clone(),
                });
            }
            txids.push(computed);
            transactions.push(decoded);
        }
        Ok(Template {
            version: raw.version,
            prev_blockhash,
            transactions,
            txids,
            coinbase_value: raw.coinbasevalue,
            bits,
            height: raw.height,
            curtime: raw.curtime,
            mintime: raw.mintime,
            witness_commitment,
        })
    }

    /// Returns the previous block hash in internal byte order.
    pub fn prev_blockhash_bytes(&self) -> [u8; 32] {
        self.prev_blockhash.to_byte_array()
    }
}
