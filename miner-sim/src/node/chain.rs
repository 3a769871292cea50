//! A test chain: the state of a simulated Bitcoin Core node.
//!
//! It hands out block templates over real transactions (legacy and segwit,
//! with correct txids and witness commitment) and checks every submitted
//! block with the `bitcoin` crate as Core would before accepting it:
//! previous block, merkle root, proof of work, BIP 34 height, witness
//! commitment, the coinbase paying the payout script the whole
//! `coinbasevalue`, and the template's transactions. An accepted block
//! becomes the new tip.

use bitcoin::blockdata::script::Builder;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::transaction::{self, OutPoint, TxIn, TxOut};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, ScriptBuf, Sequence, Transaction, Txid,
    Witness, absolute,
};
use serde_json::{Value, json};

/// regtest's compact target: about every other hash is a block.
pub const REGTEST_BITS: u32 = 0x207f_ffff;

/// Fee each template transaction pays, satoshis.
const FEE: u64 = 1_000;

/// Why a submitted block was refused: Core's `submitblock` reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The hex is not a block.
    #[error("block decode failed")]
    Decode,
    /// It builds on something other than the tip.
    #[error("prev-blk-not-found")]
    PrevBlock,
    /// It was accepted before.
    #[error("duplicate")]
    Duplicate,
    /// The header misses the target.
    #[error("high-hash")]
    HighHash,
    /// The merkle root does not match the transactions.
    #[error("bad-txnmrklroot")]
    MerkleRoot,
    /// The coinbase does not carry the block's height first.
    #[error("bad-cb-height")]
    Height,
    /// The witness commitment does not match.
    #[error("bad-witness-merkle-match")]
    WitnessCommitment,
    /// The coinbase pays something else than the payout script the whole value.
    #[error("bad-cb-amount")]
    CoinbasePayout,
    /// The transactions are not the template's.
    #[error("bad-txns")]
    Transactions,
}

/// The simulated node's chain and mempool.
#[derive(Debug, Clone)]
pub struct TestChain {
    network: Network,
    payout: ScriptBuf,
    tip: BlockHash,
    height: u64,
    time: u32,
    bits: CompactTarget,
    mempool: Vec<Transaction>,
    accepted: Vec<Block>,
    rejected: Vec<Rejection>,
    /// Template generation, bumped on every new tip or mempool change.
    generation: u64,
}

impl TestChain {
    /// Returns a chain at `height` whose blocks must pay `payout`, with a
    /// mempool of `transactions` transactions (every other one segwit).
    pub fn new(network: Network, payout: ScriptBuf, height: u64, transactions: usize) -> Self {
        let mut chain = TestChain {
            network,
            payout,
            tip: BlockHash::from_byte_array([0x11; 32]),
            height,
            time: 1_700_000_000,
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            mempool: Vec::new(),
            accepted: Vec::new(),
            rejected: Vec::new(),
            generation: 0,
        };
        chain.refill(transactions);
        chain
    }

    /// Returns the chain with `bits` as its compact network target (a
    /// harder one than regtest's keeps most shares from being blocks).
    pub fn with_bits(mut self, bits: u32) -> Self {
        self.bits = CompactTarget::from_consensus(bits);
        self.generation += 1;
        self
    }

    /// Returns the compact network target.
    pub fn bits(&self) -> u32 {
        self.bits.to_consensus()
    }

    /// Returns the template generation: it changes with every new tip or
    /// mempool.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Returns the chain's network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Returns the tip's hash.
    pub fn best_block_hash(&self) -> BlockHash {
        self.tip
    }

    /// Returns the tip's height.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Returns the blocks accepted so far.
    pub fn accepted(&self) -> &[Block] {
        &self.accepted
    }

    /// Returns why each refused block was refused.
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    /// Returns the `getblockchaininfo` result.
    pub fn blockchain_info(&self) -> Value {
        let chain = match self.network {
            Network::Bitcoin => "main",
            Network::Testnet => "test",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            _ => "regtest",
        };
        json!({
            "chain": chain,
            "blocks": self.height,
            "headers": self.height,
            "bestblockhash": self.tip.to_string(),
            "initialblockdownload": false,
            "verificationprogress": 1.0,
        })
    }

    /// Returns the `getblocktemplate` result for the next block.
    pub fn template(&self) -> Value {
        let height = self.height + 1;
        let transactions: Vec<Value> = self
            .mempool
            .iter()
            .map(|tx| {
                json!({
                    "data": serialize_hex(tx),
                    "txid": tx.compute_txid().to_string(),
                    "hash": tx.compute_wtxid().to_string(),
                    "fee": FEE,
                })
            })
            .collect();
        let mut template = json!({
            "version": 0x2000_0000u32,
            "rules": ["csv", "segwit"],
            "previousblockhash": self.tip.to_string(),
            "transactions": transactions,
            "coinbasevalue": self.coinbase_value(),
            "longpollid": format!("{}{}", self.tip, self.generation),
            "target": format!("{:064x}", 0),
            "mintime": self.time,
            "curtime": self.time + 1,
            "bits": format!("{:08x}", self.bits.to_consensus()),
            "height": height,
        });
        if let Some(commitment) = self.witness_commitment() {
            template["default_witness_commitment"] = json!(commitment.to_hex_string());
        }
        template
    }

    /// Checks a `submitblock` hex as Core would; an accepted block becomes
    /// the tip and takes its transactions out of the mempool.
    pub fn submit(&mut self, hex: &str) -> Result<BlockHash, Rejection> {
        let result = self.check(hex);
        match &result {
            Ok(block) => {
                let hash = block.block_hash();
                self.tip = hash;
                self.height += 1;
                self.time += 600;
                self.mempool.clear();
                self.refill(4);
                self.accepted.push(block.clone());
                Ok(hash)
            }
            Err(rejection) => {
                self.rejected.push(rejection.clone());
                Err(rejection.clone())
            }
        }
    }

    /// Moves the tip as if another miner had found a block.
    pub fn advance(&mut self) {
        let mut bytes = self.tip.to_byte_array();
        bytes[0] = bytes[0].wrapping_add(1);
        bytes[1] ^= 0x5a;
        self.tip = BlockHash::from_byte_array(bytes);
        self.height += 1;
        self.time += 600;
        self.mempool.clear();
        self.refill(4);
    }

    fn check(&self, hex: &str) -> Result<Block, Rejection> {
        let block: Block = deserialize_hex(hex).map_err(|_| Rejection::Decode)?;
        if self
            .accepted
            .iter()
            .any(|b| b.block_hash() == block.block_hash())
        {
            return Err(Rejection::Duplicate);
        }
        if block.header.prev_blockhash != self.tip {
            return Err(Rejection::PrevBlock);
        }
        let target = self.bits.into();
        if block.header.bits != self.bits || block.header.validate_pow(target).is_err() {
            return Err(Rejection::HighHash);
        }
        if !block.check_merkle_root() {
            return Err(Rejection::MerkleRoot);
        }
        if !self.has_height(&block, self.height + 1) {
            return Err(Rejection::Height);
        }
        if !block.check_witness_commitment() {
            return Err(Rejection::WitnessCommitment);
        }
        let coinbase = &block.txdata[0];
        let paid: u64 = coinbase
            .output
            .iter()
            .filter(|o| o.script_pubkey == self.payout)
            .map(|o| o.value.to_sat())
            .sum();
        let total: u64 = coinbase.output.iter().map(|o| o.value.to_sat()).sum();
        if !coinbase.is_coinbase() || paid != self.coinbase_value() || total != paid {
            return Err(Rejection::CoinbasePayout);
        }
        let txids: Vec<Txid> = block.txdata[1..].iter().map(|t| t.compute_txid()).collect();
        let expected: Vec<Txid> = self.mempool.iter().map(|t| t.compute_txid()).collect();
        if txids != expected {
            return Err(Rejection::Transactions);
        }
        Ok(block)
    }

    /// BIP 34 as Core checks it: the script starts with `CScript() << height`
    /// (`OP_1`..`OP_16` for small heights, a minimal push otherwise).
    fn has_height(&self, block: &Block, height: u64) -> bool {
        let expected = Builder::new().push_int(height as i64).into_script();
        let script = block.txdata[0]
            .input
            .first()
            .map(|i| i.script_sig.as_bytes())
            .unwrap_or_default();
        script.starts_with(expected.as_bytes())
            && (height <= 16 || block.bip34_block_height() == Ok(height))
    }

    fn coinbase_value(&self) -> u64 {
        // regtest halves every 150 blocks, the others every 210,000.
        let interval = if self.network == Network::Regtest {
            150
        } else {
            210_000
        };
        let halvings = (self.height + 1) / interval;
        let subsidy = if halvings >= 64 {
            0
        } else {
            50_0000_0000u64 >> halvings
        };
        subsidy + FEE * self.mempool.len() as u64
    }

    /// The commitment script over the mempool's witnesses (with the
    /// coinbase's wtxid taken as zero), when any transaction has one.
    fn witness_commitment(&self) -> Option<ScriptBuf> {
        if self
            .mempool
            .iter()
            .all(|t| t.input.iter().all(|i| i.witness.is_empty()))
        {
            return None;
        }
        let placeholder = Block {
            header: bitcoin::block::Header {
                version: bitcoin::block::Version::TWO,
                prev_blockhash: self.tip,
                merkle_root: bitcoin::TxMerkleNode::all_zeros(),
                time: self.time,
                bits: self.bits,
                nonce: 0,
            },
            txdata: std::iter::once(Transaction {
                version: transaction::Version::TWO,
                lock_time: absolute::LockTime::ZERO,
                input: vec![],
                output: vec![],
            })
            .chain(self.mempool.iter().cloned())
            .collect(),
        };
        let root = placeholder.witness_root()?;
        let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
        let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
        script.extend_from_slice(&commitment.to_byte_array());
        Some(ScriptBuf::from_bytes(script))
    }

    /// Adds `count` transactions spending made-up outputs (the test node
    /// checks blocks, not scripts): every other one has a witness.
    fn refill(&mut self, count: usize) {
        self.generation += 1;
        for i in 0..count {
            let n = self.height * 1_000 + i as u64;
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&n.to_le_bytes());
            let witness = if i % 2 == 1 {
                Witness::from_slice(&[vec![0x30; 71], vec![0x02; 33]])
            } else {
                Witness::new()
            };
            self.mempool.push(Transaction {
                version: transaction::Version::TWO,
                lock_time: absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint {
                        txid: Txid::from_byte_array(seed),
                        vout: i as u32,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness,
                }],
                output: vec![TxOut {
                    value: Amount::from_sat(10_000 + n),
                    script_pubkey: ScriptBuf::from_bytes(
                        vec![0x00, 0x14].into_iter().chain([7u8; 20]).collect(),
                    ),
                }],
            });
        }
    }
}
