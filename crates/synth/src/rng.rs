//! Independent random streams.
//!
//! Every part of an image (the slide's stain, the scene, the sensor noise,
//! the white cell) draws from its own ChaCha8 stream, keyed by the seed, an
//! index and the part's name. A part therefore never shifts another part's
//! random numbers: the scene of image 17 is the same whether its cell is a
//! blast, a lymphocyte or absent, and whatever thread renders it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64 finaliser: a fixed, well-mixing 64-bit hash step. Written out
/// here rather than taken from `std::hash`, whose output may change between
/// Rust releases.
pub(crate) fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The stream `name` for (`seed`, `key`).
pub(crate) fn stream(seed: u64, key: u64, name: &str) -> ChaCha8Rng {
    let h = splitmix64(splitmix64(splitmix64(seed) ^ key) ^ fnv1a(name));
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
