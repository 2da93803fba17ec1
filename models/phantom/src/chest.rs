//! Chest radiograph phantom: anatomy drawn per study, rendered at any
//! resolution together with the ground-truth mask of its finding.
//!
//! Geometry lives in a "chest frame" measured in thorax widths: `p` runs
//! across (positive toward the image's right, the patient's left on a PA
//! view), `q` runs down from the lung apices. Values are MONOCHROME2
//! brightness on a 12-bit scale: direct exposure ~100, aerated lung
//! ~550-900, soft tissue ~1300-2200, mediastinum and heart ~2400, bone adds
//! 150-400, metal devices more.

use crate::field::{band, step, Draw, ValueNoise};
use crate::noise::Noise;
use crate::Finding;

pub(crate) const MAX_VALUE: f32 = 4095.0;

/// One lung, in lateral distance `a` (thorax widths from the midline) and `q`.
#[derive(Debug, Clone, Copy)]
struct Lung {
    ac: f32,
    ra: f32,
    qc: f32,
    rq: f32,
    /// Diaphragm dome: `q = dome_q + dome_k * (a - dome_a)^2`.
    dome_q: f32,
    dome_a: f32,
    dome_k: f32,
    hilum_a: f32,
    hilum_q: f32,
}

impl Lung {
    fn draw(d: &mut Draw, image_right: bool) -> Self {
        let scale = d.uniform(0.93, 1.07);
        Lung {
            ac: 0.25 * scale,
            ra: d.uniform(0.19, 0.215) * scale,
            qc: d.uniform(0.38, 0.42),
            rq: d.uniform(0.40, 0.45) * scale,
            // The right hemidiaphragm (image left) sits higher.
            dome_q: d.uniform(0.66, 0.74) + if image_right { 0.03 } else { 0.0 },
            dome_a: d.uniform(0.19, 0.25),
            dome_k: d.uniform(1.6, 2.6),
            hilum_a: d.uniform(0.10, 0.13),
            hilum_q: d.uniform(0.33, 0.40),
        }
    }

    /// Squared normalised radius of the lung outline (< 1 inside), without
    /// the diaphragm and mediastinum cuts.
    #[inline]
    fn outline(&self, a: f32, q: f32) -> f32 {
        let dx = (a - self.ac) / self.ra;
        let dy = if q < self.qc {
            (q - self.qc) / self.rq
        } else {
            (q - self.qc) / (1.4 * self.rq)
        };
        dx * dx + dy * dy
    }

    #[inline]
    fn dome(&self, a: f32) -> f32 {
        let t = a - self.dome_a;
        self.dome_q + self.dome_k * t * t
    }
}

#[derive(Debug, Clone, Copy)]
enum Device {
    Electrode { p: f32, q: f32, wiggle: f32 },
    CentralLine { p0: f32, side: f32 },
    TrachealTube,
}

#[derive(Debug, Clone, Copy)]
struct Exposure {
    gain: f32,
    offset: f32,
    heel: f32,
    /// Noise at a 0.16 mm pixel; scaled for other pixel sizes.
    noise: f32,
}

/// The finding actually drawn and its parameters.
#[derive(Debug, Clone, Copy)]
enum Lesion {
    None,
    /// `size` in 0..1: fraction of the lung's lateral and apical extent collapsed.
    Pneumothorax {
        lung: usize,
        size: f32,
    },
    /// `volume` in thorax widths the fluid rises above the costophrenic angle.
    Effusion {
        lung: usize,
        volume: f32,
    },
}

/// Everything about one chest that does not depend on the pixel grid.
#[derive(Debug, Clone)]
pub(crate) struct Chest {
    width_mm: f32,
    cos: f32,
    sin: f32,
    shift_mm: (f32, f32),
    q_centre: f32,
    lungs: [Lung; 2],
    heart: (f32, f32, f32, f32),
    mediastinum: f32,
    rib_q0: f32,
    rib_step: f32,
    clavicle_q: f32,
    female: bool,
    gastric: Option<(f32, f32)>,
    devices: Vec<Device>,
    exposure: Exposure,
    markings: [ValueNoise; 2],
    texture: ValueNoise,
    lesion: Lesion,
    pub(crate) view: &'static str,
}

impl Chest {
    pub(crate) fn draw(seed: u64, finding: Finding) -> Self {
        let mut d = Draw::new(seed);
        let (cos, sin) = d.rotation(5.0);
        let lungs = [Lung::draw(&mut d, false), Lung::draw(&mut d, true)];
        let ap = d.chance(0.35);
        let heart_scale = d.uniform(0.9, 1.1) * if ap { 1.12 } else { 1.0 };
        let mut devices = Vec::new();
        for _ in 0..d.below(5) {
            devices.push(Device::Electrode {
                p: d.uniform(-0.38, 0.38),
                q: d.uniform(-0.05, 0.85),
                wiggle: d.uniform(-1.0, 1.0),
            });
        }
        if d.chance(0.2) {
            devices.push(Device::CentralLine {
                p0: d.uniform(0.18, 0.3),
                side: if d.chance(0.6) { -1.0 } else { 1.0 },
            });
        }
        if ap && d.chance(0.4) {
            devices.push(Device::TrachealTube);
        }
        let lesion = match finding {
            Finding::Pneumothorax => Lesion::Pneumothorax {
                lung: d.below(2) as usize,
                size: {
                    // Mostly moderate, sometimes small apical, sometimes large.
                    let u = d.uniform(0.0, 1.0);
                    0.12 + 0.45 * u * u
                },
            },
            Finding::Effusion => Lesion::Effusion {
                lung: d.below(2) as usize,
                volume: d.uniform(0.06, 0.42),
            },
            Finding::None | Finding::Hemorrhage => Lesion::None,
        };
        Chest {
            width_mm: d.uniform(265.0, 325.0),
            cos,
            sin,
            shift_mm: (d.uniform(-12.0, 12.0), d.uniform(-15.0, 15.0)),
            q_centre: d.uniform(0.40, 0.48),
            heart: (
                d.uniform(0.05, 0.09),
                d.uniform(0.55, 0.6),
                0.155 * heart_scale,
                0.135 * heart_scale,
            ),
            mediastinum: d.uniform(0.05, 0.065) * if ap { 1.15 } else { 1.0 },
            rib_q0: d.uniform(-0.05, -0.01),
            rib_step: d.uniform(0.07, 0.082),
            clavicle_q: d.uniform(0.03, 0.08),
            female: d.chance(0.5),
            gastric: d
                .chance(0.7)
                .then(|| (d.uniform(0.12, 0.25), d.uniform(0.03, 0.06))),
            devices,
            exposure: Exposure {
                gain: d.uniform(0.85, 1.12),
                offset: d.uniform(-120.0, 120.0),
                heel: d.uniform(-0.06, 0.06),
                noise: d.uniform(12.0, 40.0),
            },
            markings: [ValueNoise::new(d.seed()), ValueNoise::new(d.seed())],
            texture: ValueNoise::new(d.seed()),
            lesion,
            lungs,
            view: if ap { "AP" } else { "PA" },
        }
    }
}

/// The pixel grid to render on: `cols × rows` pixels of `pixel_mm`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) cols: u32,
    pub(crate) rows: u32,
    pub(crate) pixel_mm: f32,
}

/// A rendered image: brightness (0..=4095, MONOCHROME2) and the finding's
/// mask (1 inside the finding), both row by row.
pub(crate) struct Rendered {
    pub(crate) values: Vec<f32>,
    pub(crate) mask: Vec<u8>,
}

/// Half-width of the trunk at height `q`: neck, shoulders, chest wall.
#[inline]
fn trunk_half_width(q: f32) -> f32 {
    0.16 + 0.37 * step(-0.06, 0.14, q)
}

pub(crate) fn render(chest: &Chest, grid: Grid, noise_seed: u64) -> Rendered {
    let (cols, rows) = (grid.cols as usize, grid.rows as usize);
    let mut values = Vec::with_capacity(cols * rows);
    let mut mask = Vec::with_capacity(cols * rows);
    let mut noise = Noise::new(noise_seed);
    let inv_w = 1.0 / chest.width_mm;
    // Soft edges about 1.2 mm wide, whatever the pixel size.
    let edge = 1.2 * inv_w;
    let noise_sigma = chest.exposure.noise * (0.16 / grid.pixel_mm).min(4.0);
    for row in 0..rows {
        let y = (row as f32 + 0.5 - rows as f32 * 0.5) * grid.pixel_mm - chest.shift_mm.1;
        for col in 0..cols {
            let x = (col as f32 + 0.5 - cols as f32 * 0.5) * grid.pixel_mm - chest.shift_mm.0;
            let p = (chest.cos * x + chest.sin * y) * inv_w;
            let q = (-chest.sin * x + chest.cos * y) * inv_w + chest.q_centre;
            let (v, inside) = chest_value(chest, p, q, edge);
            let e = &chest.exposure;
            let v = v * e.gain * (1.0 + e.heel * (q - 0.4)) + e.offset;
            let sigma = noise_sigma * (v.max(100.0) * (1.0 / 1500.0)).sqrt();
            values.push((v + sigma * noise.normal()).clamp(0.0, MAX_VALUE));
            mask.push(u8::from(inside));
        }
    }
    Rendered { values, mask }
}

/// Brightness at chest-frame point (p, q) and whether it lies in the finding.
#[inline]
fn chest_value(c: &Chest, p: f32, q: f32, edge: f32) -> (f32, bool) {
    let hw = trunk_half_width(q);
    let ap = p.abs();
    let body = 1.0 - step(hw, edge * 3.0, ap);
    if body <= 0.0 {
        return (100.0, false);
    }
    let r = (ap / hw).min(1.0);
    let mut v = 1250.0 + 950.0 * (1.0 - r * r).sqrt();
    v += 60.0 * (c.texture.fractal(p * 25.0, q * 25.0) - 0.5);
    if c.female {
        let (bx, by) = ((ap - 0.3) / 0.17, (q - 0.78) / 0.14);
        v += 260.0 * (1.0 - step(1.0, 0.25, bx * bx + by * by));
    }

    let lung_index = usize::from(p > 0.0);
    let lung = &c.lungs[lung_index];
    let a = ap;
    let mediastinum = c.mediastinum + 0.02 * step(0.3, 0.2, q);
    let dome = lung.dome(a);
    let outline = lung.outline(a, q);
    let in_lung = (1.0 - step(1.0, edge * 8.0, outline))
        * (1.0 - step(dome, edge, q))
        * step(mediastinum, edge, a);

    // Below the diaphragm: liver on the image left, stomach on the right.
    if q > dome && a < 0.47 {
        v = 2250.0 + 120.0 * (1.0 - r);
        if let Some((ga, gr)) = c.gastric {
            if p > 0.0 {
                let (dx, dy) = ((a - ga) / gr, (q - dome - gr * 1.1) / (gr * 0.8));
                v -= 1100.0 * (1.0 - step(1.0, 0.2, dx * dx + dy * dy));
            }
        }
    }

    let mut inside = false;
    if in_lung > 0.0 {
        let (lung_v, lesion) = lung_value(c, lung_index, lung, a, q, edge);
        inside = lesion;
        v += (lung_v - v) * in_lung;
    }

    // Effusion fills the costophrenic recess below the dome as well.
    if let Lesion::Effusion { lung: l, volume } = c.lesion {
        if l == lung_index {
            let t = ((a - mediastinum) / (lung.ac + lung.ra - mediastinum)).clamp(0.0, 1.0);
            let level = lung.dome(lung.ac + lung.ra) - volume;
            let meniscus = level + (0.04 + 0.12 * volume) * (1.0 - t) * (1.0 - t);
            let within = outline < 1.0 && a > mediastinum && q < dome + 0.03;
            if within && q > meniscus - edge * 2.0 {
                let fluid = step(meniscus, edge * 4.0, q);
                let depth = ((q - meniscus) / 0.15).min(1.0);
                v += (2050.0 + 350.0 * depth - v) * fluid;
                inside |= fluid > 0.5;
            }
        }
    }

    // Mediastinum and heart.
    if q > -0.08 && q < dome + 0.02 {
        v += (2350.0 - v) * (1.0 - step(mediastinum, edge * 2.0, a)) * step(-0.05, 0.04, q);
    }
    let (hx, hy, hrx, hry) = c.heart;
    let (dx, dy) = ((p - hx) / hrx, (q - hy) / hry);
    let heart = 1.0 - step(1.0, edge * 10.0, dx * dx + dy * dy);
    if heart > 0.0 {
        v += (2450.0 + 80.0 * (1.0 - dx * dx - dy * dy).max(0.0) - v) * heart;
        inside &= heart < 0.5;
    }
    // Aortic knob.
    let (kx, ky) = ((p - 0.07) / 0.045, (q - 0.2) / 0.04);
    v += (2400.0 - v).max(0.0) * (1.0 - step(1.0, 0.2, kx * kx + ky * ky));
    // Trachea and main bronchi.
    if q < 0.27 {
        v -= 380.0 * band(p, 0.02, edge * 2.0) * step(-0.3, 0.1, q);
    }

    v += bones(c, p, q, a, hw, edge);
    v += devices(c, p, q, edge);
    (v * body + 100.0 * (1.0 - body), inside && body > 0.5)
}

/// Aerated lung: hilum, vessel markings, parenchyma; and the finding inside it.
#[inline]
fn lung_value(c: &Chest, index: usize, lung: &Lung, a: f32, q: f32, edge: f32) -> (f32, bool) {
    let (da, dq) = (a - lung.hilum_a, q - lung.hilum_q);
    let r = (da * da + dq * dq).sqrt().max(1e-4);
    let theta = dq / (da.abs() + dq.abs() + 1e-4);
    let m = &c.markings[index];
    let fade = 1.0 / (1.0 + (r / 0.17) * (r / 0.17));
    let vessels =
        m.ridge(theta * 11.0, r * 4.0, 0.06) + 0.6 * m.ridge(theta * 23.0 + 40.0, r * 9.0, 0.05);
    let hilum = 1.0 / (1.0 + (r / 0.045) * (r / 0.045));
    let parenchyma = c.texture.fractal(a * 70.0, q * 70.0) - 0.5;
    let base = 560.0 + 250.0 * (1.0 - (r / 0.45).min(1.0));
    let normal = base + 330.0 * vessels * fade + 500.0 * hilum + 70.0 * parenchyma;

    match c.lesion {
        Lesion::Pneumothorax { lung: l, size } if l == index => {
            // The lung shrinks toward its hilum, most laterally and at the apex.
            let (ua, uq) = (da / r, -dq / r);
            let w = (0.3 + 0.5 * ua + 0.6 * uq).clamp(0.0, 1.0);
            let shrink = 1.0 - size * w;
            let (ca, cq) = (lung.hilum_a + da / shrink, lung.hilum_q + dq / shrink);
            let e = lung.outline(ca, cq);
            let line_half = 0.7 / 300.0 / (lung.ra * shrink) * 2.0;
            if e >= 1.0 + line_half {
                (470.0 + 25.0 * parenchyma, true)
            } else {
                let line = band(e - 1.0, line_half, edge * 2.0 / lung.ra);
                (normal + 40.0 + 190.0 * line, false)
            }
        }
        _ => (normal, false),
    }
}

#[inline]
fn bones(c: &Chest, p: f32, q: f32, a: f32, hw: f32, edge: f32) -> f32 {
    let mut extra = 0.0;
    // Spine: vertebral bodies with brighter end plates, behind the mediastinum.
    if a < 0.045 {
        let k = (q + 0.3) / 0.085;
        let plate = band(k - k.floor() - 0.5, 0.42, 0.06);
        extra += (230.0 + 120.0 * (1.0 - plate)) * band(p, 0.036, edge * 2.0);
    }
    if a > hw - 0.015 || a < 0.03 {
        return extra;
    }
    // Posterior ribs: arcs from the spine, highest a little lateral, then falling.
    let arc = -0.35 * a + 1.1 * a * a;
    let k = (q - c.rib_q0 - arc) / c.rib_step;
    if (0.0..11.0).contains(&k) {
        let d = (k - k.floor() - 0.5) * c.rib_step;
        let half = 0.016 - 0.004 * (k / 11.0);
        let inside = band(d, half, edge);
        let cortex = (d.abs() / half).min(1.0);
        extra += inside * (170.0 + 170.0 * cortex * cortex * cortex * cortex);
    }
    // Anterior ribs: fainter, falling toward the sternum.
    if a > 0.09 {
        let k = (q - 0.08 - 0.35 * (0.45 - a)) / (c.rib_step * 1.15);
        if (0.0..6.0).contains(&k) {
            let d = (k - k.floor() - 0.5) * c.rib_step * 1.15;
            extra += 110.0 * band(d, 0.013, edge);
        }
    }
    // Clavicles.
    if a < 0.42 {
        let t = a - 0.04;
        let centre = c.clavicle_q - 0.16 * t + 0.25 * t * t;
        extra += 380.0 * band(q - centre, 0.016, edge);
    }
    // Scapulae: a faint plate lateral to their medial border.
    if q > 0.0 && q < 0.4 {
        extra += 90.0 * step(0.39 - 0.05 * q, edge * 3.0, a);
    }
    extra
}

#[inline]
fn devices(c: &Chest, p: f32, q: f32, edge: f32) -> f32 {
    let mut extra = 0.0;
    for device in &c.devices {
        match *device {
            Device::Electrode {
                p: ep,
                q: eq,
                wiggle,
            } => {
                let (dx, dy) = (p - ep, q - eq);
                let r = (dx * dx + dy * dy).sqrt();
                extra += 900.0 * band(r, 0.012, edge) + 700.0 * band(r - 0.016, 0.003, edge);
                if q > eq {
                    let wire = ep
                        + wiggle * 0.08 * (q - eq)
                        + 0.03 * (c.texture.at(q * 4.0, ep * 9.0) - 0.5);
                    extra += 650.0 * band(p - wire, 0.0022, edge);
                }
            }
            Device::CentralLine { p0, side } => {
                if (0.06..0.34).contains(&q) {
                    let t = ((q - 0.06) / 0.28).clamp(0.0, 1.0);
                    let x = side * (p0 + (0.02 - p0) * (t * t * (3.0 - 2.0 * t)));
                    extra += 520.0 * band(p - x, 0.003, edge);
                }
            }
            Device::TrachealTube => {
                if q < 0.17 {
                    extra += 380.0 * band(p.abs() - 0.013, 0.0022, edge);
                }
            }
        }
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            cols: 256,
            rows: 312,
            pixel_mm: 1.28,
        }
    }

    fn mean(values: &[f32], mask: impl Fn(usize) -> bool) -> (usize, f32) {
        let idx: Vec<usize> = (0..values.len()).filter(|&i| mask(i)).collect();
        let sum: f32 = idx.iter().map(|&i| values[i]).sum();
        (idx.len(), sum / idx.len().max(1) as f32)
    }

    #[test]
    fn normal_chest_has_no_mask_and_dark_lungs() {
        for seed in 0..6 {
            let chest = Chest::draw(seed, Finding::None);
            let img = render(&chest, grid(), 1);
            assert!(img.mask.iter().all(|&m| m == 0));
            let (_, all) = mean(&img.values, |_| true);
            assert!(all > 500.0 && all < 3000.0, "{all}");
        }
    }

    #[test]
    fn pneumothorax_region_is_darker_than_the_same_region_without_it() {
        for seed in 0..8 {
            let sick = Chest::draw(seed, Finding::Pneumothorax);
            let mut well = sick.clone();
            well.lesion = Lesion::None;
            let a = render(&sick, grid(), 1);
            let b = render(&well, grid(), 1);
            let (n, ptx) = mean(&a.values, |i| a.mask[i] == 1);
            let (_, normal) = mean(&b.values, |i| a.mask[i] == 1);
            assert!(n > 50, "seed {seed}: mask of {n} pixels");
            assert!(ptx < normal - 40.0, "seed {seed}: {ptx} vs {normal}");
        }
    }

    #[test]
    fn effusion_region_is_brighter_than_the_same_region_without_it() {
        for seed in 0..8 {
            let sick = Chest::draw(seed, Finding::Effusion);
            let mut well = sick.clone();
            well.lesion = Lesion::None;
            let a = render(&sick, grid(), 1);
            let b = render(&well, grid(), 1);
            let (n, fluid) = mean(&a.values, |i| a.mask[i] == 1);
            let (_, normal) = mean(&b.values, |i| a.mask[i] == 1);
            assert!(n > 30, "seed {seed}: mask of {n} pixels");
            assert!(fluid > normal + 300.0, "seed {seed}: {fluid} vs {normal}");
        }
    }
}
