//! The share path: a prepared [`Job`], a decoded [`Submission`], and the
//! checks that turn them into a [`Verdict`] or a [`Reject`].
//!
//! The coinbase a miner hashes is `coinb1 ‖ extranonce1 ‖ extranonce2 ‖
//! coinb2`. A `Job` pre-pads it once with the extranonces zeroed, folds every
//! block before the extranonce into a midstate, and keeps the header's
//! constant second block ready, so a share costs only the compressions whose
//! input really changes: the coinbase blocks from the extranonce on, the
//! outer hash of the coinbase, three per merkle level and three for the
//! header (about 44 for a ~200-byte coinbase and a 12-level branch).
//!
//! Validation is split in two so the holder of the job map can check for
//! duplicates between the cheap field checks and the hash, as DESIGN.md
//! orders them: [`Job::check`] (ntime window, version bits) then
//! [`Job::judge`] (SHA-256d and the three targets).

use crate::method::Notify;
use crate::reject::{Field, Reject};
use crate::sha256d::{
    IV, compress, compress_blocks, pad_message, sha256_of_state, sha256d, sha256d_64,
};
use crate::units::{Target, UnitError};

/// How far past the job's ntime a miner may roll ntime, in seconds.
pub const NTIME_WINDOW_SECS: u32 = 7000;

/// The largest extranonce (extranonce1 + extranonce2) a job accepts, bytes.
pub const MAX_EXTRANONCE: usize = 32;

/// Why a job could not be prepared from a pool's notify.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The compact network target is not a valid target.
    #[error("bad nbits: {0}")]
    Nbits(#[from] UnitError),
    /// The extranonce space does not fit in a job.
    #[error("extranonce of {0} bytes is outside 1..={MAX_EXTRANONCE}")]
    ExtranonceSize(usize),
}

/// The parts of a `mining.notify` the hash path needs, as bytes.
#[derive(Debug, Clone, Copy)]
pub struct JobParts<'a> {
    /// Previous block hash in Stratum word order (each 4-byte word of the
    /// internal byte order reversed), exactly as the hex on the wire.
    pub prevhash: &'a [u8; 32],
    /// Coinbase bytes before the extranonces.
    pub coinb1: &'a [u8],
    /// Coinbase bytes after the extranonces.
    pub coinb2: &'a [u8],
    /// Merkle branch of the coinbase, in internal byte order.
    pub merkle_branch: &'a [[u8; 32]],
    /// Block version before any rolling.
    pub version: u32,
    /// Compact network target.
    pub nbits: u32,
    /// Job time (seconds since the epoch).
    pub ntime: u32,
}

/// A job prepared for validating shares quickly. Immutable once built, so it
/// can be shared behind an `Arc` by every session that mines it.
#[derive(Debug, Clone)]
pub struct Job {
    version: u32,
    nbits: u32,
    ntime: u32,
    network_target: Target,
    /// The header's first block with version and merkle root zeroed.
    header_first: [u8; 64],
    /// The header's second block with merkle tail, ntime and nonce zeroed.
    header_second: [u8; 64],
    /// SHA-256 state after every coinbase block before the extranonce.
    coinbase_midstate: [u32; 8],
    /// The padded coinbase from the first block holding an extranonce byte,
    /// extranonce bytes zeroed.
    coinbase_tail: Vec<[u8; 64]>,
    /// Offset of the extranonce within `coinbase_tail`.
    extranonce_offset: usize,
    extranonce_len: usize,
    /// How many tail blocks the extranonce touches (1 or 2).
    extranonce_blocks: usize,
    merkle_branch: Vec<[u8; 32]>,
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    prevhash: [u8; 32],
}

impl Job {
    /// Prepares a job whose miners put `extranonce_len` bytes (extranonce1
    /// plus extranonce2) between coinb1 and coinb2.
    pub fn new(parts: JobParts<'_>, extranonce_len: usize) -> Result<Job, JobError> {
        if extranonce_len == 0 || extranonce_len > MAX_EXTRANONCE {
            return Err(JobError::ExtranonceSize(extranonce_len));
        }
        let network_target = Target::from_compact(parts.nbits)?;

        let mut coinbase =
            Vec::with_capacity(parts.coinb1.len() + extranonce_len + parts.coinb2.len());
        coinbase.extend_from_slice(parts.coinb1);
        coinbase.resize(parts.coinb1.len() + extranonce_len, 0);
        coinbase.extend_from_slice(parts.coinb2);
        let blocks = pad_message(&coinbase);

        let first = parts.coinb1.len() / 64;
        let last = (parts.coinb1.len() + extranonce_len - 1) / 64;
        let mut coinbase_midstate = IV;
        compress_blocks(&mut coinbase_midstate, &blocks[..first]);

        let mut header_first = [0u8; 64];
        for (i, word) in parts.prevhash.chunks_exact(4).enumerate() {
            for (j, byte) in word.iter().enumerate() {
                header_first[4 + i * 4 + (3 - j)] = *byte;
            }
        }
        let mut header_second = [0u8; 64];
        header_second[8..12].copy_from_slice(&parts.nbits.to_le_bytes());
        header_second[16] = 0x80;
        header_second[62] = 0x02; // 640 bits = 0x0280
        header_second[63] = 0x80;

        Ok(Job {
            version: parts.version,
            nbits: parts.nbits,
            ntime: parts.ntime,
            network_target,
            header_first,
            header_second,
            coinbase_midstate,
            coinbase_tail: blocks[first..].to_vec(),
            extranonce_offset: parts.coinb1.len() - first * 64,
            extranonce_len,
            extranonce_blocks: last - first + 1,
            merkle_branch: parts.merkle_branch.to_vec(),
            coinb1: parts.coinb1.to_vec(),
            coinb2: parts.coinb2.to_vec(),
            prevhash: *parts.prevhash,
        })
    }

    /// Prepares the job of a `mining.notify` (see [`Job::new`]).
    pub fn from_notify(notify: &Notify, extranonce_len: usize) -> Result<Job, JobError> {
        Job::new(
            JobParts {
                prevhash: &notify.prevhash,
                coinb1: &notify.coinb1,
                coinb2: &notify.coinb2,
                merkle_branch: &notify.merkle_branch,
                version: notify.version,
                nbits: notify.nbits,
                ntime: notify.ntime,
            },
            extranonce_len,
        )
    }

    /// Returns the job's block version before rolling.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Returns the job's compact network target.
    pub fn nbits(&self) -> u32 {
        self.nbits
    }

    /// Returns the job's time.
    pub fn ntime(&self) -> u32 {
        self.ntime
    }

    /// Returns the network target: a share meeting it is a block.
    pub fn network_target(&self) -> Target {
        self.network_target
    }

    /// Returns the previous block hash in Stratum word order.
    pub fn prevhash(&self) -> &[u8; 32] {
        &self.prevhash
    }

    /// Returns the extranonce length (extranonce1 + extranonce2) this job
    /// was prepared for.
    pub fn extranonce_len(&self) -> usize {
        self.extranonce_len
    }

    /// Returns how many SHA-256 compressions [`Job::judge`] runs per share.
    pub fn compressions_per_share(&self) -> usize {
        // Coinbase tail, the coinbase's outer hash, three per merkle level,
        // and two plus one for the 80-byte header.
        self.coinbase_tail.len() + 1 + 3 * self.merkle_branch.len() + 3
    }

    /// Checks what needs no hashing: the ntime window and the version bits.
    ///
    /// `version_mask` is the mask negotiated with the miner (`None` when it
    /// never configured version rolling, which allows no rolled bit).
    pub fn check(&self, submission: &Submission, version_mask: Option<u32>) -> Result<(), Reject> {
        if submission.ntime < self.ntime
            || submission.ntime > self.ntime.saturating_add(NTIME_WINDOW_SECS)
        {
            return Err(Reject::NtimeOutOfRange);
        }
        if let Some(bits) = submission.version_bits {
            // Checked on the raw bits the miner sent: a bit outside the mask
            // is refused, not silently masked away.
            if bits & !version_mask.unwrap_or(0) != 0 {
                return Err(Reject::BadVersionBits);
            }
        }
        Ok(())
    }

    /// Hashes the share and compares it with the three targets.
    ///
    /// Returns [`Reject::LowDifficulty`] only when the hash meets none of
    /// them: a share that is good for the pool or the network is never lost
    /// because the miner's own target was set too high.
    ///
    /// A share whose extranonce1 and extranonce2 together differ from the
    /// length the job was prepared for is refused as a bad extranonce2
    /// length, never hashed.
    pub fn judge(
        &self,
        ctx: &ShareContext<'_>,
        submission: &Submission,
    ) -> Result<Verdict, Reject> {
        if ctx.extranonce1.len() + submission.extranonce2().len() != self.extranonce_len {
            return Err(Reject::BadLength(Field::Extranonce2));
        }
        let hash = self.hash(ctx, submission);
        let verdict = Verdict {
            hash,
            meets_miner: ctx.miner_target.is_met_by(&hash),
            meets_pool: ctx.pool_target.is_met_by(&hash),
            meets_network: self.network_target.is_met_by(&hash),
        };
        if verdict.meets_miner || verdict.meets_pool || verdict.meets_network {
            Ok(verdict)
        } else {
            Err(Reject::LowDifficulty)
        }
    }

    /// Runs [`Job::check`] then [`Job::judge`], for holders of a job that do
    /// not track duplicates in between.
    pub fn validate(
        &self,
        ctx: &ShareContext<'_>,
        submission: &Submission,
    ) -> Result<Verdict, Reject> {
        self.check(submission, ctx.version_mask)?;
        self.judge(ctx, submission)
    }

    /// Returns the block header hash of a share (SHA-256d, little-endian as
    /// compared with targets). Does not check ntime or version bits.
    pub fn hash(&self, ctx: &ShareContext<'_>, submission: &Submission) -> [u8; 32] {
        let root = self.merkle_root(ctx.extranonce1, submission.extranonce2());
        let version = header_version(self.version, submission.version_bits, ctx.version_mask);

        let mut first = self.header_first;
        first[..4].copy_from_slice(&version.to_le_bytes());
        first[36..].copy_from_slice(&root[..28]);
        let mut second = self.header_second;
        second[..4].copy_from_slice(&root[28..]);
        second[4..8].copy_from_slice(&submission.ntime.to_le_bytes());
        second[12..16].copy_from_slice(&submission.nonce.to_le_bytes());

        let mut state = IV;
        compress(&mut state, &first);
        compress(&mut state, &second);
        sha256_of_state(&state)
    }

    /// Returns the merkle root (internal byte order) for these extranonces.
    pub fn merkle_root(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        let mut node = [0u8; 64];
        node[..32].copy_from_slice(&self.coinbase_txid(extranonce1, extranonce2));
        for sibling in &self.merkle_branch {
            node[32..].copy_from_slice(sibling);
            let parent = sha256d_64(&node);
            node[..32].copy_from_slice(&parent);
        }
        let mut root = [0u8; 32];
        root.copy_from_slice(&node[..32]);
        root
    }

    /// Returns the coinbase transaction id (internal byte order).
    pub fn coinbase_txid(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        assert_eq!(
            extranonce1.len() + extranonce2.len(),
            self.extranonce_len,
            "extranonce length differs from the job's"
        );
        // Only the one or two blocks holding the extranonce are copied; the
        // blocks after them are constant and compressed in place.
        let mut touched = [[0u8; 64]; 2];
        let n = self.extranonce_blocks;
        touched[..n].copy_from_slice(&self.coinbase_tail[..n]);
        let flat = touched.as_flattened_mut();
        let at = self.extranonce_offset;
        flat[at..at + extranonce1.len()].copy_from_slice(extranonce1);
        flat[at + extranonce1.len()..at + self.extranonce_len].copy_from_slice(extranonce2);

        let mut state = self.coinbase_midstate;
        compress_blocks(&mut state, &touched[..n]);
        compress_blocks(&mut state, &self.coinbase_tail[n..]);
        sha256_of_state(&state)
    }

    /// Returns the full coinbase transaction for these extranonces.
    pub fn coinbase(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        [&self.coinb1[..], extranonce1, extranonce2, &self.coinb2[..]].concat()
    }

    /// Returns the 80-byte block header a share stands for.
    pub fn header(&self, ctx: &ShareContext<'_>, submission: &Submission) -> [u8; 80] {
        let root = self.merkle_root(ctx.extranonce1, submission.extranonce2());
        let version = header_version(self.version, submission.version_bits, ctx.version_mask);
        let mut header = [0u8; 80];
        header[..4].copy_from_slice(&version.to_le_bytes());
        header[4..36].copy_from_slice(&self.header_first[4..36]);
        header[36..68].copy_from_slice(&root);
        header[68..72].copy_from_slice(&submission.ntime.to_le_bytes());
        header[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        header[76..].copy_from_slice(&submission.nonce.to_le_bytes());
        header
    }
}

/// Who submitted a share and what it must meet.
#[derive(Debug, Clone, Copy)]
pub struct ShareContext<'a> {
    /// The submitting miner's extranonce1.
    pub extranonce1: &'a [u8],
    /// The version-rolling mask negotiated with the miner, if any.
    pub version_mask: Option<u32>,
    /// The miner's share target (its current difficulty).
    pub miner_target: Target,
    /// The pool's share target.
    pub pool_target: Target,
}

/// Returns the header version of a share (BIP 310): the job's bits outside
/// the mask, the rolled bits inside it.
pub fn header_version(
    job_version: u32,
    version_bits: Option<u32>,
    version_mask: Option<u32>,
) -> u32 {
    match (version_bits, version_mask) {
        (Some(bits), Some(mask)) => (job_version & !mask) | (bits & mask),
        _ => job_version,
    }
}

/// Returns SHA-256d of `bytes` (off the hot path: logging, tests, tools).
pub fn double_sha256(bytes: &[u8]) -> [u8; 32] {
    sha256d(bytes)
}

/// Returns a hash the way explorers print it: bytes reversed, as hex.
pub fn hash_to_hex(hash: &[u8; 32]) -> String {
    let mut reversed = *hash;
    reversed.reverse();
    hex::encode(reversed)
}

/// How a hashed share compares with each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The block header hash (SHA-256d output, little-endian integer).
    pub hash: [u8; 32],
    /// The share meets the miner's difficulty: credit the miner.
    pub meets_miner: bool,
    /// The share meets the pool's difficulty: forward it to the pool.
    pub meets_pool: bool,
    /// The share meets the network target: a block candidate.
    pub meets_network: bool,
}

impl Verdict {
    /// Returns the difficulty the hash achieved.
    pub fn difficulty(&self) -> f64 {
        Target::difficulty_of_hash(&self.hash)
    }
}

/// A `mining.submit` decoded from hex into the values the header needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission {
    extranonce2: [u8; MAX_EXTRANONCE],
    extranonce2_len: u8,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Rolled version bits, if the miner sent them.
    pub version_bits: Option<u32>,
}

impl Submission {
    /// Decodes the hex fields of a submit; `extranonce2_size` is the size
    /// the miner was given at subscribe.
    pub fn from_hex(
        extranonce2: &str,
        ntime: &str,
        nonce: &str,
        version_bits: Option<&str>,
        extranonce2_size: usize,
    ) -> Result<Submission, Reject> {
        if extranonce2_size > MAX_EXTRANONCE || extranonce2.len() != 2 * extranonce2_size {
            return Err(Reject::BadLength(Field::Extranonce2));
        }
        let mut en2 = [0u8; MAX_EXTRANONCE];
        hex::decode_to_slice(extranonce2, &mut en2[..extranonce2_size])
            .map_err(|_| Reject::BadHex(Field::Extranonce2))?;
        Ok(Submission {
            extranonce2: en2,
            extranonce2_len: extranonce2_size as u8,
            ntime: decode_u32(ntime, Field::Ntime)?,
            nonce: decode_u32(nonce, Field::Nonce)?,
            version_bits: version_bits
                .map(|bits| decode_u32(bits, Field::VersionBits))
                .transpose()?,
        })
    }

    /// Builds a submission from values (miners and tests that hash).
    ///
    /// # Panics
    /// If `extranonce2` is longer than [`MAX_EXTRANONCE`].
    pub fn new(extranonce2: &[u8], ntime: u32, nonce: u32, version_bits: Option<u32>) -> Self {
        let mut en2 = [0u8; MAX_EXTRANONCE];
        en2[..extranonce2.len()].copy_from_slice(extranonce2);
        Submission {
            extranonce2: en2,
            extranonce2_len: extranonce2.len() as u8,
            ntime,
            nonce,
            version_bits,
        }
    }

    /// Returns the extranonce2 bytes.
    pub fn extranonce2(&self) -> &[u8] {
        &self.extranonce2[..usize::from(self.extranonce2_len)]
    }

    /// Returns a compact key that is equal for two submissions of the same
    /// share by the miner holding `extranonce1`: what duplicate detection
    /// stores per job.
    pub fn key(&self, extranonce1: &[u8]) -> ShareKey {
        let mut extranonce = [0u8; 16];
        for (i, byte) in extranonce1.iter().chain(self.extranonce2()).enumerate() {
            // Exact up to 16 bytes of extranonce; longer ones fold by XOR,
            // which pools' extranonce sizes never reach on the miner side.
            extranonce[i % 16] ^= byte;
        }
        ShareKey {
            extranonce: u128::from_le_bytes(extranonce),
            // Bit 96 tells "no version bits" from "version bits 0": the two
            // headers differ when the job's version has bits in the mask.
            header: (u128::from(self.version_bits.is_some()) << 96)
                | (u128::from(self.nonce) << 64)
                | (u128::from(self.ntime) << 32)
                | u128::from(self.version_bits.unwrap_or(0)),
        }
    }
}

/// A share's identity within a job, for duplicate detection: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey {
    extranonce: u128,
    header: u128,
}

/// Decodes exactly eight hex digits as a big-endian `u32`, as Stratum
/// prints ntime, nonce and version bits.
fn decode_u32(digits: &str, field: Field) -> Result<u32, Reject> {
    if digits.len() != 8 {
        return Err(Reject::BadLength(field));
    }
    let mut bytes = [0u8; 4];
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| Reject::BadHex(field))?;
    Ok(u32::from_be_bytes(bytes))
}
