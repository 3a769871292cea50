//! Stratum work built from a block template, and the block a solved share
//! stands for.
//!
//! The coinbase pays the whole `coinbasevalue` to the operator's payout
//! script and carries the template's witness commitment. Its script is
//! `height (BIP 34) ‖ tag ‖ extranonce`, the extranonce pushed as one item
//! of `extranonce1 ‖ extranonce2` bytes, so the coinbase splits into the
//! `coinb1` / `coinb2` of a `mining.notify` exactly as a pool's does, and
//! the proxy's hidden-extranonce translation works unchanged.

use bitcoin::blockdata::script::{Builder, PushBytesBuf};
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::transaction::{self, OutPoint, TxIn, TxOut};
use bitcoin::{
    Amount, Block, ScriptBuf, Sequence, Transaction, TxMerkleNode, Witness, absolute, block,
};
use hashsplit_stratum::Notify;

use super::template::Template;

/// Bitcoin's consensus limit on a coinbase script.
pub const MAX_COINBASE_SCRIPT: usize = 100;

/// Why work could not be built, or a block not assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Height, tag and extranonce do not fit in a coinbase script.
    #[error("coinbase script of {0} bytes is over {MAX_COINBASE_SCRIPT}: shorten the coinbase tag")]
    ScriptTooLong(usize),
    /// The tag cannot be pushed as one script item.
    #[error("coinbase tag of {0} bytes is too long")]
    TagTooLong(usize),
    /// A share's extranonce2 is not the size the work was built for.
    #[error("extranonce2 of {got} bytes, expected {expected}")]
    Extranonce2 {
        /// What the share had.
        got: usize,
        /// What the work gives.
        expected: usize,
    },
}

/// What the operator's configuration adds to every template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSpec {
    /// Where the coinbase pays.
    pub payout: ScriptBuf,
    /// Bytes written into the coinbase script after the height.
    pub tag: Vec<u8>,
    /// This proxy's own prefix of the extranonce (so two proxies mining
    /// on one node never do the same work).
    pub extranonce1: Vec<u8>,
    /// Bytes of extranonce after it: the proxy's miners' space.
    pub extranonce2_size: usize,
}

/// One template turned into Stratum work.
#[derive(Debug, Clone)]
pub struct NodeWork {
    template: Template,
    /// The coinbase with the extranonce zeroed and no witness.
    coinbase: Transaction,
    /// Where the extranonce starts in the coinbase script.
    extranonce_at: usize,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    branch: Vec<[u8; 32]>,
}

impl NodeWork {
    /// Builds the coinbase and merkle branch for `template`.
    pub fn new(template: Template, spec: &WorkSpec) -> Result<NodeWork, WorkError> {
        let extranonce_len = spec.extranonce1.len() + spec.extranonce2_size;
        let tag = PushBytesBuf::try_from(spec.tag.clone())
            .map_err(|_| WorkError::TagTooLong(spec.tag.len()))?;
        let mut builder = Builder::new().push_int(template.height as i64);
        if !spec.tag.is_empty() {
            builder = builder.push_slice(tag);
        }
        let placeholder = PushBytesBuf::try_from(vec![0u8; extranonce_len])
            .map_err(|_| WorkError::ScriptTooLong(extranonce_len))?;
        let script = builder.push_slice(placeholder).into_script();
        if script.len() > MAX_COINBASE_SCRIPT {
            return Err(WorkError::ScriptTooLong(script.len()));
        }
        let extranonce_at = script.len() - extranonce_len;
        let mut output = vec![TxOut {
            value: Amount::from_sat(template.coinbase_value),
            script_pubkey: spec.payout.clone(),
        }];
        if let Some(commitment) = &template.witness_commitment {
            output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.clone(),
            });
        }
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: script,
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output,
        };
        // Without a witness the coinbase serializes in the legacy format,
        // the one its txid (and so the merkle root) is computed over:
        // version (4) ‖ one input (1) ‖ null outpoint (36) ‖ script length
        // (1, the script being at most 100 bytes) ‖ script ‖ ...
        let bytes = serialize(&coinbase);
        let at = 4 + 1 + 36 + 1 + extranonce_at;
        let coinb1 = bytes[..at].to_vec();
        let coinb2 = bytes[at + extranonce_len..].to_vec();
        let branch = merkle_branch(&template);
        Ok(NodeWork {
            template,
            coinbase,
            extranonce_at,
            extranonce1: spec.extranonce1.clone(),
            extranonce2_size: spec.extranonce2_size,
            coinb1,
            coinb2,
            branch,
        })
    }

    /// Returns the template the work came from.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// Returns this proxy's extranonce prefix for the work.
    pub fn extranonce1(&self) -> &[u8] {
        &self.extranonce1
    }

    /// Returns the extranonce2 size the work gives the proxy's miners.
    pub fn extranonce2_size(&self) -> usize {
        self.extranonce2_size
    }

    /// Returns the work as a pool would send it, under `job_id`.
    pub fn notify(&self, job_id: String, clean_jobs: bool) -> Notify {
        let internal = self.template.prev_blockhash_bytes();
        let mut prevhash = [0u8; 32];
        for (from, to) in internal.chunks_exact(4).zip(prevhash.chunks_exact_mut(4)) {
            to.copy_from_slice(from);
            to.reverse();
        }
        Notify {
            job_id,
            prevhash,
            coinb1: self.coinb1.clone(),
            coinb2: self.coinb2.clone(),
            merkle_branch: self.branch.clone(),
            version: self.template.version,
            nbits: self.template.bits.to_consensus(),
            ntime: self
                .template
                .curtime
                .max(self.template.mintime.unwrap_or(0)),
            clean_jobs,
        }
    }

    /// Returns the whole block for a share: `extranonce2` is the work's
    /// extranonce2 (padding and the miner's extranonces), `version` the
    /// header version with any rolled bits applied.
    pub fn block(
        &self,
        extranonce2: &[u8],
        ntime: u32,
        nonce: u32,
        version: u32,
    ) -> Result<Block, WorkError> {
        if extranonce2.len() != self.extranonce2_size {
            return Err(WorkError::Extranonce2 {
                got: extranonce2.len(),
                expected: self.extranonce2_size,
            });
        }
        let mut coinbase = self.coinbase.clone();
        let mut script = coinbase.input[0].script_sig.to_bytes();
        let at = self.extranonce_at;
        script[at..at + self.extranonce1.len()].copy_from_slice(&self.extranonce1);
        script[at + self.extranonce1.len()..].copy_from_slice(extranonce2);
        coinbase.input[0].script_sig = ScriptBuf::from_bytes(script);
        if self.template.witness_commitment.is_some() {
            // BIP 141: the witness reserved value the commitment hashes in.
            coinbase.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
        }
        let mut txdata = Vec::with_capacity(1 + self.template.transactions.len());
        txdata.push(coinbase);
        txdata.extend(self.template.transactions.iter().cloned());
        let mut block = Block {
            header: block::Header {
                version: block::Version::from_consensus(version as i32),
                prev_blockhash: self.template.prev_blockhash,
                merkle_root: TxMerkleNode::all_zeros(),
                time: ntime,
                bits: self.template.bits,
                nonce,
            },
            txdata,
        };
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        Ok(block)
    }
}

/// Returns the coinbase's merkle branch: its sibling at every level of the
/// tree over `[coinbase, transactions...]`, internal byte order.
fn merkle_branch(template: &Template) -> Vec<[u8; 32]> {
    // The coinbase's own txid never enters its branch: only the siblings
    // on its path, which the transactions alone decide.
    let mut level: Vec<[u8; 32]> = std::iter::once([0u8; 32])
        .chain(template.txids.iter().map(|t| t.to_byte_array()))
        .collect();
    let mut branch = Vec::new();
    while level.len() > 1 {
        branch.push(level[1]);
        if level.len() % 2 == 1 {
            level.push(level[level.len() - 1]);
        }
        level = level
            .chunks_exact(2)
            .map(|pair| {
                let mut joined = [0u8; 64];
                joined[..32].copy_from_slice(&pair[0]);
                joined[32..].copy_from_slice(&pair[1]);
                bitcoin::hashes::sha256d::Hash::hash(&joined).to_byte_array()
            })
            .collect();
    }
    branch
}

#[cfg(test)]
mod tests;
