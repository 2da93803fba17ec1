//! Head CT phantom: a skull, brain and ventricles drawn per study, rendered
//! slice by slice in HU together with the mask of any intracranial blood.
//!
//! Patient coordinates in mm (LPS, head first supine): `x` toward the
//! patient's left (image right), `y` toward the back (image down), `z` toward
//! the head (z = 0 near the floor of the lateral ventricles).

use crate::field::{band, step, Draw, ValueNoise};
use crate::noise::Noise;
use crate::Finding;

pub(crate) const AIR_HU: f32 = -1000.0;

#[derive(Debug, Clone, Copy)]
enum Bleed {
    None,
    /// A crescent along the inner table on one side; `thickness` mm at its widest.
    Subdural {
        side: f32,
        zc: f32,
        zh: f32,
        thickness: f32,
    },
    /// A biconvex lens against the inner table, centred in direction (ux, uy).
    Epidural {
        ux: f32,
        uy: f32,
        zc: f32,
        length: f32,
        thickness: f32,
    },
    /// A blob in the brain with an oedema rim.
    Parenchymal {
        cx: f32,
        cy: f32,
        cz: f32,
        r: f32,
    },
}

/// Everything about one head that does not depend on the slice or grid.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    a: f32,
    b: f32,
    c: f32,
    egg: f32,
    scalp: f32,
    skull: f32,
    atrophy: f32,
    cos: f32,
    sin: f32,
    shift: (f32, f32),
    gyri: ValueNoise,
    texture: ValueNoise,
    bleed: Bleed,
    blood_hu: f32,
    pub(crate) noise_hu: f32,
}

impl Head {
    pub(crate) fn draw(seed: u64, finding: Finding) -> Self {
        let mut d = Draw::new(seed);
        let (cos, sin) = d.rotation(4.0);
        let a = d.uniform(68.0, 78.0);
        let b = d.uniform(86.0, 98.0);
        let bleed = if finding == Finding::Hemorrhage {
            let side = if d.chance(0.5) { 1.0 } else { -1.0 };
            match d.below(3) {
                0 => Bleed::Subdural {
                    side,
                    zc: d.uniform(15.0, 50.0),
                    zh: d.uniform(15.0, 38.0),
                    thickness: d.uniform(3.0, 14.0),
                },
                1 => {
                    let (ux, uy) = (d.uniform(0.6, 1.0), d.uniform(-0.7, 0.7));
                    let n = (ux * ux + uy * uy).sqrt();
                    Bleed::Epidural {
                        ux: side * ux / n,
                        uy: uy / n,
                        zc: d.uniform(5.0, 55.0),
                        length: d.uniform(18.0, 38.0),
                        thickness: d.uniform(6.0, 20.0),
                    }
                }
                _ => Bleed::Parenchymal {
                    cx: side * d.uniform(12.0, 38.0),
                    cy: d.uniform(-35.0, 30.0),
                    cz: d.uniform(0.0, 45.0),
                    r: {
                        let u = d.uniform(0.0, 1.0);
                        4.0 + 18.0 * u * u
                    },
                },
            }
        } else {
            Bleed::None
        };
        Head {
            a,
            b,
            c: d.uniform(90.0, 100.0),
            egg: d.uniform(0.0, 0.08),
            scalp: d.uniform(3.5, 6.0),
            skull: d.uniform(5.5, 8.5),
            atrophy: d.uniform(0.0, 1.0),
            cos,
            sin,
            shift: (d.uniform(-8.0, 8.0), d.uniform(-10.0, 10.0)),
            gyri: ValueNoise::new(d.seed()),
            texture: ValueNoise::new(d.seed()),
            blood_hu: d.uniform(52.0, 88.0),
            bleed,
            noise_hu: d.uniform(2.5, 6.0),
        }
    }

    /// Lowest and highest z (mm) the blood reaches.
    pub(crate) fn bleed_z_range(&self) -> Option<(f32, f32)> {
        match self.bleed {
            Bleed::None => None,
            Bleed::Subdural { zc, zh, .. } => Some((zc - zh, zc + zh)),
            Bleed::Epidural { zc, length, .. } => Some((zc - length, zc + length)),
            Bleed::Parenchymal { cz, r, .. } => Some((cz - r, cz + r)),
        }
    }
}

/// One slice's pixel grid: `cols × rows` pixels of `pixel_mm` at height `z`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slice {
    pub(crate) cols: u32,
    pub(crate) rows: u32,
    pub(crate) pixel_mm: f32,
    pub(crate) z: f32,
}

/// A rendered slice: HU and the blood mask, row by row.
pub(crate) struct Rendered {
    pub(crate) hu: Vec<f32>,
    pub(crate) mask: Vec<u8>,
}

pub(crate) fn render(head: &Head, slice: Slice, noise_seed: u64) -> Rendered {
    let (cols, rows) = (slice.cols as usize, slice.rows as usize);
    let mut hu = Vec::with_capacity(cols * rows);
    let mut mask = Vec::with_capacity(cols * rows);
    let mut noise = Noise::new(noise_seed);
    let z = slice.z;
    // Cross-section of the skull: an ellipsoid, fuller below its equator.
    let t = if z >= 0.0 {
        z / head.c
    } else {
        z / (1.8 * head.c)
    };
    let scale = if t.abs() < 1.0 {
        (1.0 - t * t).sqrt()
    } else {
        0.0
    };
    let (a, b) = (head.a * scale, head.b * scale);
    let noise_sigma = head.noise_hu * (0.45 / slice.pixel_mm).min(3.0);
    for row in 0..rows {
        let yi = (row as f32 + 0.5 - rows as f32 * 0.5) * slice.pixel_mm - head.shift.1;
        for col in 0..cols {
            let xi = (col as f32 + 0.5 - cols as f32 * 0.5) * slice.pixel_mm - head.shift.0;
            let x = head.cos * xi + head.sin * yi;
            let y = -head.sin * xi + head.cos * yi;
            let (v, blood) = if a > 1.0 {
                value(head, a, b, x, y, z)
            } else {
                (AIR_HU, false)
            };
            let table = 180.0 * band(yi - head.b - 22.0, 2.5, 1.0);
            hu.push(v + table + noise_sigma * noise.normal());
            mask.push(u8::from(blood));
        }
    }
    Rendered { hu, mask }
}

/// HU at (x, y, z) for a head cross-section with semi-axes (a, b).
#[inline]
fn value(h: &Head, a: f32, b: f32, x: f32, y: f32, z: f32) -> (f32, bool) {
    let a_eff = a * (1.0 + h.egg * (y / b));
    let (nx, ny) = (x / a_eff, y / b);
    let rho2 = nx * nx + ny * ny;
    if rho2 >= 1.0 {
        return (AIR_HU, false);
    }
    let rho = rho2.sqrt().max(1e-4);
    let r = (x * x + y * y).sqrt();
    let depth = (r / rho) * (1.0 - rho);
    let skull = h.skull * (1.0 + 0.5 * step(-5.0, 20.0, -z));
    if depth < h.scalp {
        return (20.0 + 25.0 * (depth / h.scalp), false);
    }
    let inner = h.scalp + skull;
    if depth < inner {
        let s = (depth - h.scalp) / skull;
        let table = band(s - 0.5, 0.22, 0.08);
        // Frontal sinus: air in the anterior skull low down.
        if z < 8.0 && z > -18.0 && y < 0.0 && x.abs() < 14.0 && s > 0.25 && s < 0.8 {
            return (-850.0, false);
        }
        return (1750.0 - 1050.0 * table, false);
    }
    // Skull base: orbits and sphenoid sinus replace the front of the brain low down.
    if z < -18.0 {
        let front = -b + inner + 18.0;
        for side in [-1.0f32, 1.0] {
            let (gx, gy) = (x - side * 32.0, y - front);
            let g = (gx * gx + gy * gy).sqrt();
            if g < 17.0 {
                return (if g < 11.5 { 12.0 } else { -80.0 }, false);
            }
        }
        let (sx, sy) = (x, y - front - 30.0);
        if sx * sx + sy * sy < 110.0 {
            return (-900.0, false);
        }
        // Petrous ridges.
        let ridge = band(y - (10.0 - 0.7 * (x.abs() - 25.0)), 4.0, 1.5) * step(18.0, 3.0, x.abs());
        if ridge > 0.5 && x.abs() < 55.0 {
            return (1400.0, false);
        }
    }
    let ic = depth - inner;
    let mut hu = brain(h, x, y, z, ic);
    let blood = in_bleed(h, x, y, z, r, ic, a, b);
    match blood {
        Some(true) => hu = h.blood_hu + 4.0 * (h.texture.at(x * 0.3, y * 0.3) - 0.5),
        Some(false) => hu = hu.min(18.0),
        None => {}
    }
    (hu, blood == Some(true))
}

/// Brain parenchyma, CSF spaces and ventricles at depth `ic` below the inner table.
#[inline]
fn brain(h: &Head, x: f32, y: f32, z: f32, ic: f32) -> f32 {
    let csf = 1.0 + 2.5 * h.atrophy;
    if ic < csf {
        return 6.0;
    }
    let cortex = 9.0 + 3.0 * h.gyri.at(x * 0.08 + 3.0, y * 0.08 + z * 0.05);
    let mut hu = if ic < cortex {
        // Sulci: CSF clefts running in from the surface.
        let sulcus = h
            .gyri
            .ridge(x * 0.11, y * 0.11 + z * 0.09, 0.05 + 0.04 * h.atrophy);
        if sulcus * (1.0 - ic / cortex) > 0.25 {
            7.0
        } else {
            37.5
        }
    } else {
        27.0
    };
    hu += 2.0 * (h.texture.fractal(x * 0.15, y * 0.15 + z * 0.1) - 0.5);
    // Falx: a thin dense line in the midline, front and back.
    if y.abs() > 25.0 {
        hu += 22.0 * band(x, 0.6, 0.6);
    }
    // Deep grey matter.
    if (-5.0..22.0).contains(&z) {
        for side in [-1.0f32, 1.0] {
            let (dx, dy) = ((x - side * 17.0) / 9.0, (y + 2.0) / 16.0);
            if dx * dx + dy * dy < 1.0 && hu < 32.0 {
                hu += 9.0;
            }
        }
    }
    let v = 1.0 + 0.8 * h.atrophy;
    // Lateral ventricles: frontal horns and bodies; occipital horns lower down.
    let vz = (z - 22.0) / 20.0;
    if vz.abs() < 1.0 {
        let k = (1.0 - vz * vz).sqrt();
        for side in [-1.0f32, 1.0] {
            let (fx, fy) = (
                (x - side * (4.0 + 3.0 * v)) / (4.0 * v * k),
                (y + 18.0) / 13.0,
            );
            let (bx, by) = (
                (x - side * (9.0 + 2.0 * v)) / (3.5 * v * k),
                (y - 8.0) / (20.0 * k),
            );
            if fx * fx + fy * fy < 1.0 || bx * bx + by * by < 1.0 {
                return 6.0;
            }
        }
    }
    let oz = (z - 12.0) / 10.0;
    if oz.abs() < 1.0 {
        let k = (1.0 - oz * oz).sqrt();
        for side in [-1.0f32, 1.0] {
            let (dx, dy) = ((x - side * 16.0) / (4.0 * v * k), (y - 33.0) / 9.0);
            if dx * dx + dy * dy < 1.0 {
                return 6.0;
            }
        }
    }
    // Third and fourth ventricles.
    if (-3.0..14.0).contains(&z) && x.abs() < 1.2 * v && (-12.0..6.0).contains(&y) {
        return 6.0;
    }
    if (-30.0..-14.0).contains(&z) {
        let (dx, dy) = (x / 6.0, (y - 26.0) / 4.0);
        if dx * dx + dy * dy < 1.0 {
            return 6.0;
        }
    }
    hu
}

/// Some(true) in the blood, Some(false) in its oedema rim, None elsewhere.
#[allow(clippy::too_many_arguments)]
#[inline]
fn in_bleed(h: &Head, x: f32, y: f32, z: f32, r: f32, ic: f32, a: f32, b: f32) -> Option<bool> {
    match h.bleed {
        Bleed::None => None,
        Bleed::Subdural {
            side,
            zc,
            zh,
            thickness,
        } => {
            let tz = (z - zc) / zh;
            if tz.abs() >= 1.0 || x * side <= 1.0 {
                return None;
            }
            let lateral = (x * side / r.max(1.0)).clamp(0.0, 1.0);
            let t = thickness * (1.0 - tz * tz).sqrt() * lateral.sqrt();
            (ic < t).then_some(true)
        }
        Bleed::Epidural {
            ux,
            uy,
            zc,
            length,
            thickness,
        } => {
            // Arc distance from the lens centre along the inner table, and height.
            let (cx, cy) = (ux * a, uy * b);
            let (dx, dy, dz) = (x - cx, y - cy, z - zc);
            let s2 = (dx * dx + dy * dy + dz * dz) / (length * length);
            (s2 < 1.0 && ic < thickness * (1.0 - s2)).then_some(true)
        }
        Bleed::Parenchymal {
            cx,
            cy,
            cz,
            r: radius,
        } => {
            let (dx, dy, dz) = (x - cx, y - cy, z - cz);
            let lobes = 0.35 * (h.texture.at(x * 0.12 + 50.0, y * 0.12 + z * 0.12) - 0.5);
            let q = (dx * dx + dy * dy + dz * dz) / (radius * radius) + lobes;
            if q < 1.0 && ic > 2.0 {
                Some(true)
            } else if q < 1.6 && ic > 2.0 {
                Some(false)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(z: f32) -> Slice {
        Slice {
            cols: 256,
            rows: 256,
            pixel_mm: 0.9,
            z,
        }
    }

    #[test]
    fn slice_has_air_bone_and_brain() {
        let head = Head::draw(1, Finding::None);
        let img = render(&head, slice(20.0), 1);
        assert!(img.hu[0] < -900.0, "corner is air");
        let bone = img.hu.iter().filter(|&&v| v > 1000.0).count();
        let brain = img
            .hu
            .iter()
            .filter(|&&v| (15.0..50.0).contains(&v))
            .count();
        assert!(bone > 500 && brain > 10_000, "bone {bone} brain {brain}");
        assert!(img.mask.iter().all(|&m| m == 0));
    }

    #[test]
    fn every_bleed_has_blood_in_range_somewhere_in_the_head() {
        for seed in 0..9 {
            let head = Head::draw(seed, Finding::Hemorrhage);
            let mut found = 0;
            for z in (-10..80).step_by(5) {
                let img = render(&head, slice(z as f32), 2);
                for (i, &m) in img.mask.iter().enumerate() {
                    if m == 1 {
                        found += 1;
                        let clean = img.hu[i];
                        assert!((25.0..115.0).contains(&clean), "seed {seed}: {clean} HU");
                    }
                }
            }
            assert!(found > 20, "seed {seed}: {found} blood pixels");
        }
    }
}
