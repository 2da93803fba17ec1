//! Head CT instances: series geometry, acquisition attributes and the stored
//! pixels of a [`Head`].

use dicom_core::VR;
use dicom_dictionary_std::tags;

use crate::field::Draw;
use crate::head::{self, Head, Slice};
use crate::study::Study;
use crate::write::{fmt_ds, fmt_ds_multi, DataSet};

/// Height of the head covered by a series, in mm (skull base to vertex).
const COVERAGE_MM: f64 = 130.0;
/// Largest slice spacing, used while the series fits in `COVERAGE_MM`.
const MAX_SPACING_MM: f64 = 5.0;
/// z of the middle slice.
const SERIES_CENTRE_Z_MM: f64 = 20.0;

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

/// How HU are stored: some scanners store unsigned values with intercept
/// -1024, others signed HU directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    UnsignedOffset,
    SignedOffset,
    SignedHu,
}

impl Storage {
    pub(crate) fn draw(seed: u64) -> Self {
        match Draw::new(seed).below(3) {
            0 => Storage::UnsignedOffset,
            1 => Storage::SignedOffset,
            _ => Storage::SignedHu,
        }
    }

    fn intercept(self) -> f32 {
        match self {
            Storage::UnsignedOffset | Storage::SignedOffset => -1024.0,
            Storage::SignedHu => 0.0,
        }
    }

    fn signed(self) -> bool {
        self != Storage::UnsignedOffset
    }

    /// Stored pixel values (two's complement bits when signed) of HU values.
    pub(crate) fn stored(self, hu: &[f32]) -> Vec<u16> {
        let intercept = self.intercept();
        let (lo, hi) = if self.signed() {
            (-2048.0, 3071.0)
        } else {
            (0.0, 4095.0)
        };
        hu.iter()
            .map(|&v| ((v - intercept).round().clamp(lo, hi)) as i16 as u16)
            .collect()
    }

    /// HU of stored pixel values: the modality LUT.
    pub(crate) fn hu(self, stored: &[u16]) -> Vec<f32> {
        let intercept = self.intercept();
        stored
            .iter()
            .map(|&s| {
                let v = if self.signed() {
                    f32::from(s as i16)
                } else {
                    f32::from(s)
                };
                v + intercept
            })
            .collect()
    }
}

/// The study's field of view and pixel size (mm), and slice `index` rendered.
fn render(study: &Study, index: usize) -> (f64, f64, head::Rendered) {
    let (cols, rows) = (study.width, study.height);
    let fov = 220.0 + (study.derive.value("ct-fov", 0) % 31) as f64;
    let pixel_mm = fov / f64::from(cols.max(rows));
    let head = Head::draw(study.derive.value("head", 0), study.finding);
    let image = head::render(
        &head,
        Slice {
            cols,
            rows,
            pixel_mm: pixel_mm as f32,
            z: slice_z(study.count, index) as f32,
        },
        study.derive.value("ct-noise", index as u64),
    );
    (fov, pixel_mm, image)
}

/// The blood's ground truth on slice `index`: 1 inside it, row by row.
pub(crate) fn mask(study: &Study, index: usize) -> Vec<u8> {
    render(study, index).2.mask
}

pub(crate) fn fill(study: &Study, index: usize, ds: &mut DataSet) {
    let (cols, rows) = (study.width, study.height);
    let (fov, pixel_mm, image) = render(study, index);
    let spacing = slice_spacing(study.count);
    let z = slice_z(study.count, index);
    let storage = Storage::draw(study.derive.value("ct-storage", 0));
    let intercept = storage.intercept();
    let pixels = storage.stored(&image.hu);

    // Centre of the first transmitted pixel.
    let x0 = (0.5 - f64::from(cols) / 2.0) * pixel_mm;
    let y0 = (0.5 - f64::from(rows) / 2.0) * pixel_mm;

    ds.text(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
    ds.text(tags::STUDY_DESCRIPTION, VR::LO, "CT HEAD WO CONTRAST");
    ds.text(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        format!("HEAD AXIAL {} mm", fmt_ds_multi(&[spacing], 2)),
    );
    ds.text(tags::BODY_PART_EXAMINED, VR::CS, "HEAD");
    ds.text(tags::SLICE_THICKNESS, VR::DS, fmt_ds(spacing, 2));
    ds.text(tags::SPACING_BETWEEN_SLICES, VR::DS, fmt_ds(spacing, 2));
    ds.text(tags::KVP, VR::DS, "120");
    ds.text(tags::CONVOLUTION_KERNEL, VR::SH, "H30s");
    ds.text(tags::DATA_COLLECTION_DIAMETER, VR::DS, "500");
    ds.text(tags::RECONSTRUCTION_DIAMETER, VR::DS, fmt_ds(fov, 1));
    ds.text(tags::PATIENT_POSITION, VR::CS, "HFS");
    ds.text(tags::ACQUISITION_NUMBER, VR::IS, "1");
    ds.text(tags::IMAGES_IN_ACQUISITION, VR::IS, study.count.to_string());
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
    ds.us(tags::BITS_STORED, if storage.signed() { 16 } else { 12 });
    ds.us(tags::HIGH_BIT, if storage.signed() { 15 } else { 11 });
    ds.us(tags::PIXEL_REPRESENTATION, u16::from(storage.signed()));
    ds.text(tags::WINDOW_CENTER, VR::DS, "40\\75\\600");
    ds.text(tags::WINDOW_WIDTH, VR::DS, "80\\215\\2800");
    ds.text(
        tags::WINDOW_CENTER_WIDTH_EXPLANATION,
        VR::LO,
        "BRAIN\\SUBDURAL\\BONE",
    );
    ds.text(
        tags::RESCALE_INTERCEPT,
        VR::DS,
        fmt_ds(f64::from(intercept), 0),
    );
    ds.text(tags::RESCALE_SLOPE, VR::DS, "1");
    ds.text(tags::RESCALE_TYPE, VR::LO, "HU");
    ds.pixel_data(pixels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_positions_increase_and_spacing_shrinks_for_long_series() {
        assert_eq!(slice_spacing(26), 5.0);
        assert!(slice_spacing(500) < 0.5);
        for count in [1, 2, 36, 500] {
            for i in 1..count {
                assert!(slice_z(count, i) > slice_z(count, i - 1));
            }
        }
    }
}
