//! SHA-256d on raw compressions: the primitives under the share path.
//!
//! The generic `Digest` API buffers every input and pads it on finalize; the
//! share path knows every message length in advance, so it pre-pads blocks
//! once and feeds `sha2::block_api::compress256` directly.

/// The SHA-256 initial state.
pub(crate) const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The padding block that follows a 64-byte message (bit length 512).
const PAD_AFTER_64: [u8; 64] = {
    let mut block = [0u8; 64];
    block[0] = 0x80;
    block[62] = 0x02;
    block
};

/// Runs one compression of `block` into `state`.
#[inline(always)]
pub(crate) fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::block_api::compress256(state, std::slice::from_ref(block));
}

/// Runs the compressions of several consecutive blocks into `state`.
#[inline(always)]
pub(crate) fn compress_blocks(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    if !blocks.is_empty() {
        sha2::block_api::compress256(state, blocks);
    }
}

/// Returns the digest bytes of a finished state.
#[inline(always)]
pub(crate) fn state_to_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Returns SHA-256 of the 32-byte digest held in a finished `state`: the
/// outer hash of SHA-256d, one compression.
#[inline(always)]
pub(crate) fn sha256_of_state(state: &[u32; 8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    for (chunk, word) in block[..32].chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    block[32] = 0x80;
    block[62] = 0x01; // 256 bits
    let mut outer = IV;
    compress(&mut outer, &block);
    state_to_bytes(&outer)
}

/// Returns SHA-256d of a 64-byte message: three compressions.
#[inline(always)]
pub(crate) fn sha256d_64(message: &[u8; 64]) -> [u8; 32] {
    let mut state = IV;
    compress(&mut state, message);
    compress(&mut state, &PAD_AFTER_64);
    sha256_of_state(&state)
}

/// Returns `message` followed by SHA-256 padding, as whole blocks.
pub(crate) fn pad_message(message: &[u8]) -> Vec<[u8; 64]> {
    let bit_len = (message.len() as u64) * 8;
    let padded_len = (message.len() + 9).div_ceil(64) * 64;
    let mut bytes = Vec::with_capacity(padded_len);
    bytes.extend_from_slice(message);
    bytes.push(0x80);
    bytes.resize(padded_len - 8, 0);
    bytes.extend_from_slice(&bit_len.to_be_bytes());
    bytes
        .chunks_exact(64)
        .map(|chunk| {
            let mut block = [0u8; 64];
            block.copy_from_slice(chunk);
            block
        })
        .collect()
}

/// Returns SHA-256d of any message (the slow, general path used off the hot
/// path: tests, logging, job preparation).
pub(crate) fn sha256d(message: &[u8]) -> [u8; 32] {
    let mut state = IV;
    compress_blocks(&mut state, &pad_message(message));
    sha256_of_state(&state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(message: &[u8]) -> [u8; 32] {
        Sha256::digest(Sha256::digest(message)).into()
    }

    #[test]
    fn matches_the_generic_digest_for_every_length_around_block_edges() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(sha256d(&data[..len]), reference(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn the_64_byte_fast_path_matches_the_general_one() {
        let mut message = [0u8; 64];
        for (i, b) in message.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31);
        }
        assert_eq!(sha256d_64(&message), reference(&message));
    }

    #[test]
    fn sha256d_of_empty_is_the_known_value() {
        // SHA-256d("") = 5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456
        assert_eq!(
            hex::encode(sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }
}
