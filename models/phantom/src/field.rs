//! Building blocks shared by the chest and head phantoms: seeded parameter
//! draws, smooth value noise and soft edges.
//!
//! Only `+ - * /`, `floor`, `sqrt` and comparisons are used, so a rendering
//! is bit-identical on every IEEE-754 platform.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

/// Draws study parameters (sizes, positions, intensities) from one seed.
pub(crate) struct Draw(Xoshiro256PlusPlus);

impl Draw {
    pub(crate) fn new(seed: u64) -> Self {
        Draw(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.uniform(0.0, 1.0) < p
    }

    /// Uniform integer in `[0, n)`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    /// A 64-bit seed for a noise field.
    pub(crate) fn seed(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// (cos, sin) of an angle of about `max_degrees` either way, from the
    /// half-angle tangent so that no trigonometric function is needed.
    pub(crate) fn rotation(&mut self, max_degrees: f32) -> (f32, f32) {
        let t = self.uniform(-1.0, 1.0) * max_degrees * (std::f32::consts::PI / 360.0);
        let d = 1.0 + t * t;
        ((1.0 - t * t) / d, 2.0 * t / d)
    }
}

/// Smooth 2-D value noise in `[0, 1)` with unit lattice spacing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueNoise {
    seed: u64,
}

impl ValueNoise {
    pub(crate) fn new(seed: u64) -> Self {
        ValueNoise { seed }
    }

    #[inline]
    fn lattice(&self, i: i64, j: i64) -> f32 {
        let mut h = self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        h = (h ^ (h >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 29)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 32;
        (h >> 40) as f32 / (1u64 << 24) as f32
    }

    #[inline]
    pub(crate) fn at(&self, x: f32, y: f32) -> f32 {
        let (fx, fy) = (x.floor(), y.floor());
        let (i, j) = (fx as i64, fy as i64);
        let (tx, ty) = (smooth(x - fx), smooth(y - fy));
        let a = self.lattice(i, j);
        let b = self.lattice(i + 1, j);
        let c = self.lattice(i, j + 1);
        let d = self.lattice(i + 1, j + 1);
        let top = a + (b - a) * tx;
        let bottom = c + (d - c) * tx;
        top + (bottom - top) * ty
    }

    /// Two octaves, still in `[0, 1)`.
    #[inline]
    pub(crate) fn fractal(&self, x: f32, y: f32) -> f32 {
        (2.0 * self.at(x, y) + self.at(2.03 * x + 17.0, 2.03 * y + 31.0)) * (1.0 / 3.0)
    }

    /// Thin bright ridges where the noise crosses one half: 1 on the ridge,
    /// falling to 0 at `width` (in noise units) from it.
    #[inline]
    pub(crate) fn ridge(&self, x: f32, y: f32, width: f32) -> f32 {
        let d = (self.at(x, y) - 0.5).abs();
        let r = 1.0 - d / width;
        if r > 0.0 {
            r * r
        } else {
            0.0
        }
    }
}

#[inline]
pub(crate) fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// 0 below `edge - width/2`, 1 above `edge + width/2`, smooth in between.
#[inline]
pub(crate) fn step(edge: f32, width: f32, x: f32) -> f32 {
    let t = (x - edge) / width + 0.5;
    if t <= 0.0 {
        0.0
    } else if t >= 1.0 {
        1.0
    } else {
        smooth(t)
    }
}

/// A soft band: 1 where `|d| < half`, falling to 0 over `soft` beyond.
#[inline]
pub(crate) fn band(d: f32, half: f32, soft: f32) -> f32 {
    1.0 - step(half, soft, d.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_noise_is_continuous_and_bounded() {
        let n = ValueNoise::new(7);
        let mut prev = n.at(0.0, 0.3);
        for k in 1..2000 {
            let v = n.at(k as f32 * 0.01, 0.3);
            assert!((0.0..1.0).contains(&v));
            assert!((v - prev).abs() < 0.05, "jump at {k}");
            prev = v;
        }
    }

    #[test]
    fn rotation_is_a_unit_vector_within_range() {
        let mut d = Draw::new(3);
        for _ in 0..100 {
            let (c, s) = d.rotation(6.0);
            assert!(((c * c + s * s) - 1.0).abs() < 1e-5);
            assert!(s.abs() < 0.11);
        }
    }

    #[test]
    fn step_and_band_are_soft_edges() {
        assert_eq!(step(1.0, 0.2, 0.0), 0.0);
        assert_eq!(step(1.0, 0.2, 2.0), 1.0);
        assert!((step(1.0, 0.2, 1.0) - 0.5).abs() < 1e-6);
        assert_eq!(band(0.0, 1.0, 0.1), 1.0);
        assert_eq!(band(2.0, 1.0, 0.1), 0.0);
    }
}
