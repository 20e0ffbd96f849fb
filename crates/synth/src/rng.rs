//! Independent random streams.
//!
//! Every part of an image (the slide's stain, the scene, the sensor noise,
//! the white cell) draws from its own ChaCha8 stream, keyed by the seed, an
//! index and the part's name. A part therefore never shifts another part's
//! random numbers: the scene of image 17 is the same whether its cell is a
//! blast, a lymphocyte or absent, and whatever thread renders it.

use leukex_hash::{fnv1a64, splitmix64};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The stream `name` for (`seed`, `key`).
pub(crate) fn stream(seed: u64, key: u64, name: &str) -> ChaCha8Rng {
    let h = splitmix64(splitmix64(splitmix64(seed) ^ key) ^ fnv1a64(name));
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix64(h.wrapping_add(i as u64)).to_le_bytes());
    }
    ChaCha8Rng::from_seed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_differ_by_every_key_part() {
        let a = stream(1, 2, "cell").next_u64();
        assert_eq!(a, stream(1, 2, "cell").next_u64());
        assert_ne!(a, stream(0, 2, "cell").next_u64());
        assert_ne!(a, stream(1, 3, "cell").next_u64());
        assert_ne!(a, stream(1, 2, "scene").next_u64());
    }
}
