//! The two small hashes every seeded thing in leukex is built from, written out once
//! (not `std::hash`, whose output may change between Rust releases):
//!
//! * [`fnv1a64`]: FNV-1a 64 of a name (a stem, a state-dict key, a stream's name);
//! * [`splitmix64`]: the SplitMix64 finaliser (Steele, Lea & Flood 2014), a well-mixing
//!   64-bit step, and [`SplitMix64`], the stream built on it.
//!
//! `scripts/fixtures/gen_models.py` implements the same two functions bit for bit for the
//! closed-form reference weights, so their values must never change (tests below pin
//! them).

/// FNV-1a 64 of the UTF-8 bytes of `name`.
pub fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The SplitMix64 output for state `z` (the state advanced by the golden-ratio increment,
/// then mixed).
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 stream: small, seedable, reproducible everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a 64 over a stream of bytes (file contents, for cache keys); equal to
/// [`fnv1a64`] on the same bytes.
#[derive(Debug, Clone)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64::new()
    }
}

impl Fnv1a64 {
    pub fn new() -> Self {
        Fnv1a64(0xCBF2_9CE4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_is_the_published_function() {
        // The FNV reference test vectors (Fowler, Noll, Vo: "FNV-1a 64-bit").
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv1a64::new();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), fnv1a64("foobar"));
    }

    #[test]
    fn splitmix64_is_the_published_generator() {
        // The first outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c, as
        // listed by Rosetta Code's "Pseudo-random numbers/Splitmix64").
        let mut r = SplitMix64(1_234_567);
        let want = [
            6_457_827_717_110_365_317u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
        assert_eq!(splitmix64(1_234_567), 6_457_827_717_110_365_317);
    }
}
