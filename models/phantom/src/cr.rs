//! Chest radiograph phantom (PA/AP), drawn in normalised image coordinates.
//!
//! Values are 12-bit "brightness" (MONOCHROME2: high = dense): direct
//! exposure ~120, lungs ~650-950, soft tissue ~1500-2300, mediastinum and
//! heart ~2500, spine ~2850, ribs and clavicles +380 over what they cross.
//! Only `+ - * /`, `floor` and `sqrt` are used, so the pixels are
//! bit-identical on every IEEE-754 platform.

use dicom_core::VR;
use dicom_dictionary_std::tags;

use crate::noise::Noise;
use crate::study::Study;
use crate::write::{fmt_ds_multi, DataSet};
use crate::Finding;

/// Width of the detector in mm (0.16 mm pixels at 2048 columns).
const DETECTOR_WIDTH_MM: f64 = 327.68;
const MAX_VALUE: f32 = 4095.0;
const NOISE_SIGMA: f32 = 25.0;

const DIRECT_EXPOSURE: f32 = 120.0;
const LUNG_PERIPHERY: f32 = 650.0;
const LUNG_HILUM_EXTRA: f32 = 300.0;
const PNEUMOTHORAX: f32 = 420.0;
const SOFT_EDGE: f32 = 1500.0;
const SOFT_CENTRE_EXTRA: f32 = 800.0;
const MEDIASTINUM: f32 = 2500.0;
const HEART: f32 = 2550.0;
const SPINE_EXTRA: f32 = 350.0;
const BONE_EXTRA: f32 = 380.0;
const PLEURAL_LINE_EXTRA: f32 = 180.0;
const EFFUSION: f32 = 1900.0;
const EFFUSION_DEPTH_EXTRA: f32 = 500.0;

/// Whether seed `seed` gets the MONOCHROME1 (inverted) variant: every third seed.
pub(crate) fn is_monochrome1(seed: u64) -> bool {
    seed % 3 == 2
}

/// An axis-aligned ellipse in normalised coordinates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ellipse {
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    pub(crate) rx: f32,
    pub(crate) ry: f32,
}

impl Ellipse {
    /// Squared normalised radius: < 1 inside.
    #[inline]
    fn q(&self, u: f32, v: f32) -> f32 {
        let dx = (u - self.cx) / self.rx;
        let dy = (v - self.cy) / self.ry;
        dx * dx + dy * dy
    }
}

/// Per-study anatomy and finding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chest {
    /// Image-left lung (the patient's right), then image-right lung.
    pub(crate) lungs: [Ellipse; 2],
    pub(crate) heart: Ellipse,
    pub(crate) finding: Finding,
    /// Which lung (index into `lungs`) carries the finding.
    pub(crate) finding_lung: usize,
}

impl Chest {
    pub(crate) fn new(jitter: u64, finding: Finding, finding_lung: usize) -> Self {
        let j = |k: u32| ((jitter >> (8 * k)) & 0xFF) as f32 / 255.0 - 0.5; // [-0.5, 0.5]
        let scale = 1.0 + 0.08 * j(0);
        Chest {
            lungs: [
                Ellipse {
                    cx: 0.33 + 0.01 * j(1),
                    cy: 0.46,
                    rx: 0.135 * scale,
                    ry: 0.30 * scale,
                },
                Ellipse {
                    cx: 0.665 + 0.01 * j(2),
                    cy: 0.475,
                    rx: 0.125 * scale,
                    ry: 0.285 * scale,
                },
            ],
            heart: Ellipse {
                cx: 0.535 + 0.01 * j(3),
                cy: 0.63,
                rx: 0.15 + 0.02 * j(4),
                ry: 0.13,
            },
            finding,
            finding_lung,
        }
    }
}

pub(crate) fn fill(study: &Study, index: usize, ds: &mut DataSet) {
    let (cols, rows) = (study.width, study.height);
    let pixel_mm = DETECTOR_WIDTH_MM / f64::from(cols);
    let chest = Chest::new(
        study.derive.value("cr-anatomy", 0),
        study.finding,
        (study.derive.value("finding-side", 0) % 2) as usize,
    );
    let view = if study.derive.value("cr-view", 0) % 2 == 0 {
        "PA"
    } else {
        "AP"
    };
    let mono1 = is_monochrome1(study.seed);

    let mut noise = Noise::new(study.derive.value("cr-noise", index as u64));
    let mut pixels = render(&chest, cols, rows, &mut noise);
    if mono1 {
        for p in &mut pixels {
            *p = MAX_VALUE as u16 - *p;
        }
    }

    ds.text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
    ds.text(tags::STUDY_DESCRIPTION, VR::LO, "PHANTOM CHEST");
    ds.text(tags::SERIES_DESCRIPTION, VR::LO, format!("CHEST {view}"));
    ds.text(tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    ds.text(tags::VIEW_POSITION, VR::CS, view);
    ds.text(tags::PATIENT_ORIENTATION, VR::CS, "L\\F");
    ds.text(tags::KVP, VR::DS, "120");
    let spacing = fmt_ds_multi(&[pixel_mm, pixel_mm], 6);
    ds.text(tags::IMAGER_PIXEL_SPACING, VR::DS, spacing.as_str());
    ds.text(tags::PIXEL_SPACING, VR::DS, spacing);
    ds.text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        if mono1 { "MONOCHROME1" } else { "MONOCHROME2" },
    );
    ds.us(tags::BITS_STORED, 12);
    ds.us(tags::HIGH_BIT, 11);
    ds.us(tags::PIXEL_REPRESENTATION, 0);
    ds.text(tags::WINDOW_CENTER, VR::DS, "2048");
    ds.text(tags::WINDOW_WIDTH, VR::DS, "4096");
    ds.pixel_data(pixels);
}

/// Half-width of the trunk (normalised) at height `v`: neck, sloping
/// shoulders, then the chest wall.
#[inline]
fn trunk_half_width(v: f32) -> f32 {
    if v < 0.10 {
        0.09
    } else if v < 0.20 {
        0.09 + 3.5 * (v - 0.10)
    } else {
        0.44
    }
}

/// MONOCHROME2 pixel values, row by row.
pub(crate) fn render(chest: &Chest, cols: u32, rows: u32, noise: &mut Noise) -> Vec<u16> {
    let (cols, rows) = (cols as usize, rows as usize);
    let mut out = Vec::with_capacity(cols * rows);

    let sick = chest.lungs[chest.finding_lung];
    // Pneumothorax: the lung collapsed medially and downward, leaving a rim.
    let collapsed = Ellipse {
        cx: sick.cx + if chest.finding_lung == 0 { 0.03 } else { -0.03 },
        cy: sick.cy + 0.04,
        rx: sick.rx * 0.78,
        ry: sick.ry * 0.85,
    };
    // Lateral direction of the sick lung in u.
    let lateral = if chest.finding_lung == 0 { -1.0 } else { 1.0 };

    let (inv_cols, inv_rows) = (1.0 / cols as f32, 1.0 / rows as f32);
    for row in 0..rows {
        let v = (row as f32 + 0.5) * inv_rows;
        let hw = trunk_half_width(v);
        for col in 0..cols {
            let n = noise.normal();
            let u = (col as f32 + 0.5) * inv_cols;
            let du = (u - 0.5).abs();
            let value = if du >= hw {
                DIRECT_EXPOSURE
            } else {
                let r = du / hw;
                let mut value = SOFT_EDGE + SOFT_CENTRE_EXTRA * (1.0 - r * r).sqrt();
                for (k, lung) in chest.lungs.iter().enumerate() {
                    let q = lung.q(u, v);
                    if q < 1.0 {
                        value = LUNG_PERIPHERY + LUNG_HILUM_EXTRA * (1.0 - q);
                        if k == chest.finding_lung {
                            value = finding_value(
                                chest.finding,
                                lung,
                                &collapsed,
                                lateral,
                                u,
                                v,
                                value,
                            );
                        }
                    }
                }
                if du < 0.07 && (0.08..0.75).contains(&v) {
                    value = MEDIASTINUM;
                }
                if chest.heart.q(u, v) < 1.0 {
                    value = HEART;
                }
                if du < 0.03 && v > 0.04 {
                    value += SPINE_EXTRA;
                }
                value + bone(v, du, hw)
            };
            out.push((value + NOISE_SIGMA * n).round().clamp(0.0, MAX_VALUE) as u16);
        }
    }
    out
}

/// Value inside the finding's lung, given the normal lung `value`.
#[inline]
fn finding_value(
    finding: Finding,
    lung: &Ellipse,
    collapsed: &Ellipse,
    lateral: f32,
    u: f32,
    v: f32,
    value: f32,
) -> f32 {
    match finding {
        Finding::Pneumothorax => {
            let qc = collapsed.q(u, v);
            if qc >= 1.0 {
                PNEUMOTHORAX
            } else if qc > 0.94 {
                value + PLEURAL_LINE_EXTRA
            } else {
                value
            }
        }
        Finding::Effusion => {
            // 0 at the medial edge of the lung, 1 at the lateral edge.
            let l = (((u - lung.cx) / lung.rx) * lateral + 1.0) * 0.5;
            let meniscus = lung.cy + lung.ry * (0.55 - 0.3 * l * l);
            if v > meniscus {
                let depth = ((v - meniscus) / (lung.ry * 0.5)).min(1.0);
                EFFUSION + EFFUSION_DEPTH_EXTRA * depth
            } else {
                value
            }
        }
        Finding::None | Finding::Hemorrhage => value,
    }
}

/// Extra density of ribs and clavicles at height `v`, `du` from the midline.
#[inline]
fn bone(v: f32, du: f32, hw: f32) -> f32 {
    if du < 0.035 || du > hw - 0.01 {
        return 0.0;
    }
    let mut extra = 0.0;
    // Ten posterior rib arcs, highest mid-lung, drooping medially and laterally.
    let bend = du - 0.22;
    let t = (v + 0.8 * bend * bend - 0.16) / 0.062;
    if (0.0..10.0).contains(&t) && t - t.floor() < 0.32 {
        extra += BONE_EXTRA;
    }
    // Clavicles: from the sternal end (du 0.04, v 0.155) rising laterally.
    if (0.04..0.32).contains(&du) {
        let centre = 0.155 - 0.16 * (du - 0.04);
        if (v - centre).abs() < 0.009 {
            extra += BONE_EXTRA;
        }
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_where(px: &[u16], a: &[u16], b: &[u16]) -> (usize, f64) {
        let idx: Vec<usize> = (0..px.len()).filter(|&i| a[i] != b[i]).collect();
        let sum: f64 = idx.iter().map(|&i| f64::from(px[i])).sum();
        (idx.len(), sum / idx.len().max(1) as f64)
    }

    #[test]
    fn lungs_are_darker_than_mediastinum_and_background_darkest() {
        let chest = Chest::new(0, Finding::None, 0);
        let px = render(&chest, 256, 256, &mut Noise::new(1));
        let at = |u: f32, v: f32| px[(v * 256.0) as usize * 256 + (u * 256.0) as usize];
        assert!(at(0.02, 0.5) < 300, "direct exposure");
        assert!(
            at(0.30, 0.40) < at(0.50, 0.40),
            "lung darker than mediastinum"
        );
        assert!(at(0.30, 0.40) < at(0.30, 0.90), "lung darker than abdomen");
    }

    #[test]
    fn pneumothorax_darkens_and_effusion_brightens_one_lung() {
        let normal = render(
            &Chest::new(7, Finding::None, 1),
            256,
            256,
            &mut Noise::new(2),
        );
        let ptx = render(
            &Chest::new(7, Finding::Pneumothorax, 1),
            256,
            256,
            &mut Noise::new(2),
        );
        let eff = render(
            &Chest::new(7, Finding::Effusion, 1),
            256,
            256,
            &mut Noise::new(2),
        );
        let (n, mean_normal) = mean_where(&normal, &ptx, &normal);
        let (_, mean_ptx) = mean_where(&ptx, &ptx, &normal);
        assert!(
            n > 200 && mean_ptx < mean_normal,
            "{n} {mean_ptx} {mean_normal}"
        );
        let (n, mean_normal) = mean_where(&normal, &eff, &normal);
        let (_, mean_eff) = mean_where(&eff, &eff, &normal);
        assert!(
            n > 200 && mean_eff > mean_normal + 500.0,
            "{n} {mean_eff} {mean_normal}"
        );
    }

    #[test]
    fn every_third_seed_is_monochrome1() {
        assert_eq!(
            (0..9).filter(|&s| is_monochrome1(s)).collect::<Vec<_>>(),
            vec![2, 5, 8]
        );
    }
}
