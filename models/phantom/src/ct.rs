//! Head CT phantom: axial slices through an ellipsoidal head.
//!
//! Layers from outside in: air (-1000 HU), scalp (~25 HU), skull (~1250 HU),
//! cortex (~38 HU), white matter (~28 HU), lateral ventricles (~5 HU).
//! Only `+ - * /` and `sqrt` are used, so the pixels are bit-identical on
//! every IEEE-754 platform.

use dicom_core::VR;
use dicom_dictionary_std::tags;

use crate::noise::Noise;
use crate::study::Study;
use crate::write::{fmt_ds, fmt_ds_multi, DataSet};
use crate::Finding;

/// Field of view across the larger image side, in mm (0.45 mm at 512).
const FOV_MM: f64 = 230.4;
/// Height of the head covered by a series, in mm.
const COVERAGE_MM: f64 = 190.0;
/// Largest slice spacing, used while the series fits in `COVERAGE_MM`.
const MAX_SPACING_MM: f64 = 5.0;
/// z of the middle slice (the head's centre is at z = 0).
const SERIES_CENTRE_Z_MM: f64 = 20.0;
/// Rescale Intercept: HU = stored value - 1024.
const INTERCEPT: f32 = 1024.0;

const AIR_HU: f32 = -1000.0;
const SCALP_HU: f32 = 25.0;
const BONE_HU: f32 = 1250.0;
const CORTEX_HU: f32 = 38.0;
const WHITE_HU: f32 = 28.0;
const CSF_HU: f32 = 5.0;
const BLOOD_HU: f32 = 70.0;
const NOISE_HU: f32 = 4.0;

/// Depths below the head surface, in mm, where each layer begins.
const SCALP_MM: f32 = 4.0;
const SKULL_INNER_MM: f32 = 11.0;
const CORTEX_INNER_MM: f32 = 15.0;

/// Head ellipsoid semi-axes in mm: left-right, anterior-posterior, cranio-caudal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) a: f32,
    pub(crate) b: f32,
    pub(crate) c: f32,
}

impl Head {
    fn for_study(study: &Study) -> Self {
        let h = study.derive.value("ct-head", 0);
        Head {
            a: 68.0 + (h % 9) as f32,
            b: 88.0 + ((h / 9) % 9) as f32,
            c: 105.0,
        }
    }
}

/// Slice spacing (= thickness) in mm for a series of `count` slices.
pub(crate) fn slice_spacing(count: usize) -> f64 {
    let s = (MAX_SPACING_MM.min(COVERAGE_MM / count as f64) * 100.0).floor() / 100.0;
    s.max(0.01)
}

/// z (mm) of slice `index`; increases with the index.
pub(crate) fn slice_z(count: usize, index: usize) -> f64 {
    let spacing = slice_spacing(count);
    let z = SERIES_CENTRE_Z_MM - (count - 1) as f64 * spacing / 2.0 + index as f64 * spacing;
    (z * 1000.0).round() / 1000.0
}

pub(crate) fn fill(study: &Study, index: usize, ds: &mut DataSet) {
    let (cols, rows) = (study.width, study.height);
    let pixel_mm = FOV_MM / f64::from(cols.max(rows));
    let spacing = slice_spacing(study.count);
    let z = slice_z(study.count, index);
    let hemorrhage_side = (study.finding == Finding::Hemorrhage).then(|| {
        if study.derive.value("finding-side", 0) % 2 == 0 {
            1.0
        } else {
            -1.0
        }
    });

    let mut noise = Noise::new(study.derive.value("ct-noise", index as u64));
    let pixels = render(
        Head::for_study(study),
        &Slice {
            cols,
            rows,
            pixel_mm: pixel_mm as f32,
            z: z as f32,
            hemorrhage_side,
        },
        &mut noise,
    );

    // Centre of the first transmitted pixel.
    let x0 = (0.5 - f64::from(cols) / 2.0) * pixel_mm;
    let y0 = (0.5 - f64::from(rows) / 2.0) * pixel_mm;

    ds.text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
    ds.text(tags::STUDY_DESCRIPTION, VR::LO, "PHANTOM HEAD CT");
    ds.text(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        format!("AXIAL {} mm", fmt_ds_multi(&[spacing], 2)),
    );
    ds.text(tags::BODY_PART_EXAMINED, VR::CS, "HEAD");
    ds.text(tags::SLICE_THICKNESS, VR::DS, fmt_ds(spacing, 2));
    ds.text(tags::KVP, VR::DS, "120");
    ds.text(tags::PATIENT_POSITION, VR::CS, "HFS");
    ds.text(tags::ACQUISITION_NUMBER, VR::IS, "1");
    ds.text(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        fmt_ds_multi(&[x0, y0, z], 3),
    );
    ds.text(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0");
    ds.text(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        study.derive.uid("frame-of-reference", 0),
    );
    ds.text(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    ds.text(tags::SLICE_LOCATION, VR::DS, fmt_ds(z, 3));
    ds.text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    ds.text(
        tags::PIXEL_SPACING,
        VR::DS,
        fmt_ds_multi(&[pixel_mm, pixel_mm], 6),
    );
    ds.us(tags::BITS_STORED, 16);
    ds.us(tags::HIGH_BIT, 15);
    ds.us(tags::PIXEL_REPRESENTATION, 1);
    ds.text(tags::WINDOW_CENTER, VR::DS, "40");
    ds.text(tags::WINDOW_WIDTH, VR::DS, "80");
    ds.text(tags::WINDOW_CENTER_WIDTH_EXPLANATION, VR::LO, "BRAIN");
    ds.text(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    ds.text(tags::RESCALE_SLOPE, VR::DS, "1");
    ds.text(tags::RESCALE_TYPE, VR::LO, "HU");
    ds.pixel_data(pixels);
}

/// Geometry of one slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slice {
    pub(crate) cols: u32,
    pub(crate) rows: u32,
    pub(crate) pixel_mm: f32,
    pub(crate) z: f32,
    /// `Some(+1.0)`: subdural crescent on the patient's left (+x); `Some(-1.0)`: right.
    pub(crate) hemorrhage_side: Option<f32>,
}

/// Inverse squared semi-axes of the head cross-section shrunk by `depth` mm,
/// or `None` when nothing is left at that depth.
fn layer(a: f32, b: f32, depth: f32) -> Option<(f32, f32)> {
    let (a, b) = (a - depth, b - depth);
    (a > 0.0 && b > 0.0).then(|| (1.0 / (a * a), 1.0 / (b * b)))
}

#[inline]
fn inside(layer: Option<(f32, f32)>, x2: f32, y2: f32) -> bool {
    match layer {
        Some((ia, ib)) => x2 * ia + y2 * ib < 1.0,
        None => false,
    }
}

/// Stored pixel values (HU + 1024, as signed 16-bit bit patterns), row by row.
pub(crate) fn render(head: Head, slice: &Slice, noise: &mut Noise) -> Vec<u16> {
    let (cols, rows) = (slice.cols as usize, slice.rows as usize);
    let mut out = Vec::with_capacity(cols * rows);

    let t = slice.z / head.c;
    let s = if t.abs() < 1.0 {
        (1.0 - t * t).sqrt()
    } else {
        0.0
    };
    let (a, b) = (head.a * s, head.b * s);
    let outer = layer(a, b, 0.0);
    let scalp = layer(a, b, SCALP_MM);
    let brain = layer(a, b, SKULL_INNER_MM);
    let white = layer(a, b, CORTEX_INNER_MM);

    // Lateral ventricles: two ellipses either side of the midline, present
    // from z = 5 mm to z = 55 mm.
    let vt = (slice.z - 30.0) / 25.0;
    let ventricles = (vt.abs() < 1.0).then(|| {
        let vz = (1.0 - vt * vt).sqrt();
        let (rx, ry) = (3.5 + 2.0 * vz, 18.0 * vz);
        (1.0 / (rx * rx), 1.0 / (ry * ry))
    });

    // Subdural crescent: inside the brain but outside the brain ellipse moved
    // `shift` mm away from the bleeding side, from z = 5 mm to z = 75 mm.
    let ht = (slice.z - 40.0) / 35.0;
    let crescent = match (slice.hemorrhage_side, brain) {
        (Some(side), Some(_)) if ht.abs() < 1.0 => {
            let shift = 10.0 * (1.0 - ht * ht).sqrt();
            (shift >= 1.5).then_some(-side * shift)
        }
        _ => None,
    };

    let x_start = (0.5 - cols as f32 / 2.0) * slice.pixel_mm;
    let y_start = (0.5 - rows as f32 / 2.0) * slice.pixel_mm;
    for row in 0..rows {
        let y = y_start + row as f32 * slice.pixel_mm;
        let y2 = y * y;
        let row_in_head = inside(outer, 0.0, y2);
        for col in 0..cols {
            let n = noise.normal();
            let hu = if !row_in_head {
                AIR_HU
            } else {
                let x = x_start + col as f32 * slice.pixel_mm;
                let x2 = x * x;
                if !inside(outer, x2, y2) {
                    AIR_HU
                } else if !inside(scalp, x2, y2) {
                    SCALP_HU
                } else if !inside(brain, x2, y2) {
                    BONE_HU
                } else {
                    let mut hu = if inside(white, x2, y2) {
                        WHITE_HU
                    } else {
                        CORTEX_HU
                    };
                    if let Some((ivx, ivy)) = ventricles {
                        let dx = x.abs() - 7.0;
                        let dy = y + 5.0;
                        if dx * dx * ivx + dy * dy * ivy < 1.0 {
                            hu = CSF_HU;
                        }
                    }
                    if let Some(centre) = crescent {
                        let dx = x - centre;
                        // Stops at the falx: never crosses the midline.
                        if x * centre < 0.0 && !inside(brain, dx * dx, y2) {
                            hu = BLOOD_HU;
                        }
                    }
                    hu
                }
            };
            let stored = (hu + INTERCEPT + NOISE_HU * n).round().clamp(0.0, 4095.0);
            out.push(stored as i16 as u16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hu_at(pixels: &[u16], cols: u32, col: u32, row: u32) -> f32 {
        pixels[(row * cols + col) as usize] as i16 as f32 - INTERCEPT
    }

    #[test]
    fn head_slice_has_air_bone_and_brain() {
        let head = Head {
            a: 72.0,
            b: 92.0,
            c: 105.0,
        };
        let slice = Slice {
            cols: 512,
            rows: 512,
            pixel_mm: 0.45,
            z: 20.0,
            hemorrhage_side: None,
        };
        let px = render(head, &slice, &mut Noise::new(1));
        assert_eq!(px.len(), 512 * 512);
        assert!(hu_at(&px, 512, 2, 2) < -950.0, "corner is air");
        // Centre column, just inside the skull's outer table (anterior).
        let centre = hu_at(&px, 512, 256, 256 + 60);
        assert!(
            (0.0..60.0).contains(&centre),
            "brain at centre-ish: {centre}"
        );
        let bone_row =
            (256.0 - (92.0 * (1.0f32 - (20.0f32 / 105.0).powi(2)).sqrt() - 7.0) / 0.45) as u32;
        assert!(hu_at(&px, 512, 256, bone_row) > 1000.0, "skull");
    }

    #[test]
    fn hemorrhage_adds_blood_density_on_one_side() {
        let head = Head {
            a: 72.0,
            b: 92.0,
            c: 105.0,
        };
        let mut slice = Slice {
            cols: 512,
            rows: 512,
            pixel_mm: 0.45,
            z: 40.0,
            hemorrhage_side: Some(1.0),
        };
        let bleed = render(head, &slice, &mut Noise::new(3));
        slice.hemorrhage_side = None;
        let normal = render(head, &slice, &mut Noise::new(3));
        let blood: Vec<usize> = (0..bleed.len())
            .filter(|&i| bleed[i] != normal[i])
            .collect();
        assert!(blood.len() > 1000, "crescent drawn: {}", blood.len());
        for &i in &blood {
            let hu = bleed[i] as i16 as f32 - INTERCEPT;
            assert!((50.0..=90.0).contains(&hu), "blood HU {hu}");
            assert!(i % 512 >= 256, "crescent on the patient's left (+x)");
        }
    }

    #[test]
    fn slice_positions_increase_and_spacing_shrinks_for_long_series() {
        assert_eq!(slice_spacing(36), 5.0);
        assert!(slice_spacing(500) < 0.5);
        for count in [1, 2, 36, 500] {
            for i in 1..count {
                assert!(slice_z(count, i) > slice_z(count, i - 1));
            }
        }
    }
}
