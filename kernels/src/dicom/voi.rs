//! The image's own VOI LUT module (PS3.3 C.11.2): window centre/width pairs,
//! the VOI LUT function, and VOI LUT Sequence tables.

use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::DefaultDicomObject;

use crate::preprocess::Window;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiWindow {
    pub center: f64,
    pub width: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

/// One VOI LUT: input values from `first_mapped` index `data`; outputs
/// have `bits` bits.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiLut {
    pub first_mapped: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Voi {
    pub windows: Vec<VoiWindow>,
    pub function: VoiFunction,
    pub luts: Vec<VoiLut>,
}

impl Voi {
    /// What the data set says; unreadable parts are left out (an image
    /// with no usable VOI cannot take a `dicom` window, which says so).
    pub fn read(obj: &DefaultDicomObject) -> Voi {
        let floats = |tag| {
            obj.element(tag)
                .ok()
                .and_then(|e| e.to_multi_float64().ok())
                .unwrap_or_default()
        };
        let signed = obj
            .element(tags::PIXEL_REPRESENTATION)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok())
            == Some(1);
        let windows = floats(tags::WINDOW_CENTER)
            .into_iter()
            .zip(floats(tags::WINDOW_WIDTH))
            .filter(|(c, w)| c.is_finite() && w.is_finite())
            .map(|(center, width)| VoiWindow { center, width })
            .collect();
        let function = match super::text(obj, tags::VOILUT_FUNCTION).as_deref() {
            Some("LINEAR_EXACT") => VoiFunction::LinearExact,
            Some("SIGMOID") => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        };
        let luts = obj
            .element(tags::VOILUT_SEQUENCE)
            .ok()
            .and_then(|e| e.items())
            .map(|items| items.iter().filter_map(|item| lut(item, signed)).collect())
            .unwrap_or_default();
        Voi {
            windows,
            function,
            luts,
        }
    }

    /// The kernels' window for view `index`: the VOI LUT Sequence item if
    /// there is one (as viewers prefer), else the window pair under the
    /// VOI LUT function. `None` when the image has neither.
    pub fn window(&self, index: usize) -> Option<Window> {
        if let Some(lut) = self.luts.get(index) {
            let scale = 1.0 / ((1u32 << lut.bits) - 1) as f32;
            return Some(Window::Lut {
                first_mapped: lut.first_mapped as f32,
                values: lut.data.iter().map(|&v| f32::from(v) * scale).collect(),
            });
        }
        let w = self.windows.get(index)?;
        let (center, width) = (w.center as f32, w.width as f32);
        Some(match self.function {
            VoiFunction::Linear => Window::Linear { center, width },
            VoiFunction::LinearExact => Window::Fixed { center, width },
            VoiFunction::Sigmoid => Window::Sigmoid { center, width },
        })
    }
}

fn lut(item: &InMemDicomObject, signed: bool) -> Option<VoiLut> {
    let descriptor = item
        .element(tags::LUT_DESCRIPTOR)
        .ok()?
        .to_multi_int::<i64>()
        .ok()?;
    let &[entries, first, bits] = descriptor.as_slice() else {
        return None;
    };
    let entries = if entries == 0 {
        65536
    } else {
        entries as usize
    };
    if !(bits == 8 || (10..=16).contains(&bits)) {
        return None;
    }
    // The first mapped value is SS for signed pixels; read as US it shows
    // as a large positive number.
    let first = if signed && first > 32767 {
        first - 65536
    } else {
        first
    };
    let data = item.element(tags::LUT_DATA).ok()?;
    let data: Vec<u16> = match data.to_multi_int::<u16>() {
        Ok(v) if v.len() == entries => v,
        _ => data
            .to_bytes()
            .ok()?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    };
    (data.len() == entries).then_some(VoiLut {
        first_mapped: first,
        bits: bits as u16,
        data,
    })
}
