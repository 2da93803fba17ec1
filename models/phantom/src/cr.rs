//! Chest radiograph instances (CR or DX): acquisition attributes and the
//! stored pixels of a [`Chest`].

use dicom_core::VR;
use dicom_dictionary_std::tags;

use crate::chest::{self, Chest, Grid, MAX_VALUE};
use crate::field::Draw;
use crate::study::Study;
use crate::write::{fmt_ds, fmt_ds_multi, DataSet};
use crate::Kind;

/// Per-study acquisition settings of a chest radiograph.
#[derive(Debug, Clone)]
pub(crate) struct Acquisition {
    pub(crate) pixel_mm: f32,
    pub(crate) bits_stored: u16,
    pub(crate) monochrome1: bool,
    kvp: u32,
    exposure_index: u32,
}

impl Acquisition {
    pub(crate) fn draw(seed: u64) -> Self {
        let mut d = Draw::new(seed);
        Acquisition {
            pixel_mm: [0.139, 0.143, 0.148, 0.15, 0.16, 0.168][d.below(6) as usize],
            bits_stored: [12, 12, 14, 16][d.below(4) as usize],
            monochrome1: d.chance(0.35),
            kvp: 100 + 5 * d.below(6) as u32,
            exposure_index: 150 + 10 * d.below(40) as u32,
        }
    }
}

impl Acquisition {
    /// Largest stored value.
    fn max(&self) -> f32 {
        f32::from(u16::MAX >> (16 - self.bits_stored))
    }

    /// Stored values per unit of rendered brightness.
    fn scale(&self) -> f32 {
        self.max() / MAX_VALUE
    }

    /// Stored pixel values of rendered brightness (inverted for MONOCHROME1).
    pub(crate) fn stored(&self, values: &[f32]) -> Vec<u16> {
        let (max, scale) = (self.max(), self.scale());
        values
            .iter()
            .map(|&v| {
                let v = (v * scale).round();
                (if self.monochrome1 { max - v } else { v }) as u16
            })
            .collect()
    }
}

/// The study's chest, its acquisition, and instance `index` rendered.
fn render(study: &Study, index: usize) -> (Chest, Acquisition, f32, chest::Rendered) {
    let chest = Chest::draw(study.derive.value("chest", 0), study.finding);
    let acq = Acquisition::draw(study.derive.value("cr-acquisition", 0));
    // Other matrix sizes keep the detector's field of view (2048 columns).
    let pixel_mm = acq.pixel_mm * 2048.0 / study.width as f32;
    let grid = Grid {
        cols: study.width,
        rows: study.height,
        pixel_mm,
    };
    let image = chest::render(&chest, grid, study.derive.value("cr-noise", index as u64));
    (chest, acq, pixel_mm, image)
}

/// The finding's ground truth on instance `index`: 1 inside it, row by row.
pub(crate) fn mask(study: &Study, index: usize) -> Vec<u8> {
    render(study, index).3.mask
}

pub(crate) fn fill(study: &Study, index: usize, ds: &mut DataSet) {
    let (chest, acq, pixel_mm, image) = render(study, index);
    let scale = acq.scale();
    let pixels = acq.stored(&image.values);

    let dx = study.kind == Kind::Dx;
    ds.text(
        tags::IMAGE_TYPE,
        VR::CS,
        if dx {
            "ORIGINAL\\PRIMARY\\\\"
        } else {
            "ORIGINAL\\PRIMARY"
        },
    );
    ds.text(tags::STUDY_DESCRIPTION, VR::LO, "XR CHEST");
    ds.text(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        format!("CHEST {}", chest.view),
    );
    ds.text(tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    ds.text(tags::VIEW_POSITION, VR::CS, chest.view);
    ds.text(tags::PATIENT_ORIENTATION, VR::CS, "R\\F");
    ds.text(tags::KVP, VR::DS, acq.kvp.to_string());
    ds.text(tags::EXPOSURE_INDEX, VR::DS, acq.exposure_index.to_string());
    ds.text(tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, "1800");
    let spacing = fmt_ds_multi(&[f64::from(pixel_mm); 2], 6);
    ds.text(tags::IMAGER_PIXEL_SPACING, VR::DS, spacing.as_str());
    ds.text(tags::PIXEL_SPACING, VR::DS, spacing);
    if dx {
        ds.text(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION");
        ds.text(tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
        ds.ss(tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN, 1);
        ds.text(tags::IMAGE_LATERALITY, VR::CS, "U");
        ds.text(tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
        ds.text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        ds.text(tags::RESCALE_INTERCEPT, VR::DS, "0");
        ds.text(tags::RESCALE_SLOPE, VR::DS, "1");
        ds.text(tags::RESCALE_TYPE, VR::LO, "US");
    }
    ds.text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        if acq.monochrome1 {
            "MONOCHROME1"
        } else {
            "MONOCHROME2"
        },
    );
    ds.us(tags::BITS_STORED, acq.bits_stored);
    ds.us(tags::HIGH_BIT, acq.bits_stored - 1);
    ds.us(tags::PIXEL_REPRESENTATION, 0);
    // A lung-friendly window: centred between aerated lung and soft tissue.
    ds.text(
        tags::WINDOW_CENTER,
        VR::DS,
        fmt_ds(f64::from(1500.0 * scale), 0),
    );
    ds.text(
        tags::WINDOW_WIDTH,
        VR::DS,
        fmt_ds(f64::from(2800.0 * scale), 0),
    );
    ds.pixel_data(pixels);
}
