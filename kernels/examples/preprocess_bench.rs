//! The Rust half of tests/bench/preprocess: a 2500 × 3000 16-bit
//! radiograph (native DICOM in memory) to a 512 × 512 f32 model input, the
//! way the daemon does it — decode (the pixel attributes, the stored
//! samples borrowed in place) then preprocess (stored-bit masking and
//! modality LUT as the area resize reads each row, percentile window,
//! MONOCHROME1 inversion, normalisation) — beside the older way (every
//! sample decoded to a full-size f32 image first) and a plain memory copy
//! of the same pixel bytes, timed side by side. Prints one JSON line of
//! medians. `QUICK=1` for fewer runs.

use std::hint::black_box;
use std::time::Instant;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use firstlook_kernels::dicom::{modality_image, Pixels};
use firstlook_kernels::preprocess::{Pipeline, Window};

const COLS: usize = 2500;
const ROWS: usize = 3000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs = if std::env::var("QUICK").as_deref() == Ok("1") {
        5
    } else {
        21
    };
    // A deterministic 12-bit image with structure and noise.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<u16> = (0..ROWS * COLS)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let (y, x) = (i / COLS, i % COLS);
            ((x * 3 + y * 2) % 3000 + (state % 64) as usize) as u16 & 0x0FFF
        })
        .collect();
    let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut obj = InMemDicomObject::new_empty();
    obj.put_str(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    );
    obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1");
    obj.put_str(tags::MODALITY, VR::CS, "CR");
    obj.put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME1");
    for (tag, value) in [
        (tags::SAMPLES_PER_PIXEL, 1u16),
        (tags::ROWS, ROWS as u16),
        (tags::COLUMNS, COLS as u16),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 12),
        (tags::HIGH_BIT, 11),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(bytes.clone()),
    ));
    let obj = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1"),
        )
        .expect("meta");
    let pipeline = Pipeline {
        channels: vec![Window::Percentile {
            low: 0.5,
            high: 99.5,
        }],
        invert_monochrome1: true,
        rows: 512,
        cols: 512,
        letterbox: false,
        normalize_mean: 0.5,
        normalize_std: 0.25,
    };

    let (mut decode, mut preprocess, mut copy, mut separate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut dst = vec![0u8; bytes.len()];
    for run in 0..=runs {
        let t = Instant::now();
        let pixels = Pixels::first_frame(&obj).expect("pixels");
        let frame = pixels.frame(0).expect("frame");
        let d = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = pipeline
            .run(&frame.image, frame.monochrome1)
            .expect("preprocess");
        let p = t.elapsed().as_secs_f64();
        black_box(&out);
        let t = Instant::now();
        let image = modality_image(&obj).expect("decode");
        let old = pipeline
            .run(&image.image, image.monochrome1)
            .expect("preprocess");
        let s = t.elapsed().as_secs_f64();
        let worst = out
            .iter()
            .zip(&old)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "the two paths differ by {worst}");
        let t = Instant::now();
        dst.copy_from_slice(black_box(&bytes));
        black_box(&dst);
        let c = t.elapsed().as_secs_f64();
        if run > 0 {
            decode.push(d);
            preprocess.push(p);
            separate.push(s);
            copy.push(c);
        }
    }
    let (d, p, c, s) = (
        median(decode),
        median(preprocess),
        median(copy),
        median(separate),
    );
    let gb = bytes.len() as f64 / 1e9;
    println!(
        "{{\"bytes\":{},\"runs\":{runs},\"decode_ms\":{:.3},\"preprocess_ms\":{:.3},\"total_ms\":{:.3},\"separate_ms\":{:.3},\"throughput_gb_s\":{:.4},\"memcpy_gb_s\":{:.3},\"fraction\":{:.4}}}",
        bytes.len(),
        d * 1e3,
        p * 1e3,
        (d + p) * 1e3,
        s * 1e3,
        gb / (d + p),
        gb / c,
        c / (d + p)
    );
}
