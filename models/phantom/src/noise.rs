//! Seeded noise: one `u64` from xoshiro256++ per sample.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

/// Approximately standard-normal noise (Irwin–Hall sum of four 16-bit
/// uniforms), cheap enough to draw once per pixel.
pub(crate) struct Noise(Xoshiro256PlusPlus);

/// Standard deviation of the sum of four uniform 16-bit values.
const SUM4_STD: f32 = 37_837.23;
/// Mean of the sum of four uniform 16-bit values.
const SUM4_MEAN: f32 = 131_070.0;

impl Noise {
    pub(crate) fn new(seed: u64) -> Self {
        Noise(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A sample with mean 0 and standard deviation 1 (bounded to about ±3.5).
    #[inline]
    pub(crate) fn normal(&mut self) -> f32 {
        let r = self.0.next_u64();
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        (sum as f32 - SUM4_MEAN) * (1.0 / SUM4_STD)
    }
}
