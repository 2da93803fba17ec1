use super::*;

const EXPLICIT: Encoding = Encoding {
    explicit_vr: true,
    big_endian: false,
    deflated: false,
    encapsulated: false,
};

/// A compressed syntax such as JPEG Lossless: explicit VR, encapsulated
/// Pixel Data.
const JPEG: Encoding = Encoding {
    encapsulated: true,
    ..EXPLICIT
};

fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(vr);
    if has_long_length(vr) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

fn raw(out: &mut Vec<u8>, g: u16, e: u16, len: u32) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

fn undefined(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2]) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&UNDEFINED.to_le_bytes());
}

/// A CT-like data set with a nested undefined-length sequence and
/// encapsulated pixel data.
fn sample() -> Vec<u8> {
    let mut d = sample_head();
    undefined(&mut d, 0x7FE0, 0x0010, b"OB");
    raw(&mut d, 0xFFFE, 0xE000, 0);
    raw(&mut d, 0xFFFE, 0xE000, 6);
    d.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    raw(&mut d, 0xFFFE, 0xE0DD, 0);
    d
}

/// The same data set with native Pixel Data.
fn native_sample(pixels: &[u8]) -> Vec<u8> {
    let mut d = sample_head();
    el(&mut d, 0x7FE0, 0x0010, b"OW", pixels);
    d
}

/// Everything before the Pixel Data.
fn sample_head() -> Vec<u8> {
    let mut d = Vec::new();
    el(
        &mut d,
        0x0008,
        0x0016,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.2\0",
    );
    el(&mut d, 0x0008, 0x0018, b"UI", b"1.2.3.4.5.6\0");
    el(&mut d, 0x0008, 0x0060, b"CS", b"CT");
    undefined(&mut d, 0x0008, 0x1140, b"SQ");
    raw(&mut d, 0xFFFE, 0xE000, UNDEFINED);
    el(&mut d, 0x0008, 0x1150, b"UI", b"1.2\0");
    undefined(&mut d, 0x0008, 0x9215, b"SQ");
    let mut item = Vec::new();
    el(&mut item, 0x0008, 0x0100, b"SH", b"121311");
    raw(&mut d, 0xFFFE, 0xE000, item.len() as u32);
    d.extend_from_slice(&item);
    raw(&mut d, 0xFFFE, 0xE0DD, 0);
    raw(&mut d, 0xFFFE, 0xE00D, 0);
    raw(&mut d, 0xFFFE, 0xE0DD, 0);
    el(&mut d, 0x0010, 0x0010, b"PN", b"DOE^JANE");
    el(&mut d, 0x0020, 0x000D, b"UI", b"1.2.3\0");
    el(&mut d, 0x0020, 0x000E, b"UI", b"1.2.3.4\0");
    el(&mut d, 0x0020, 0x0013, b"IS", b"17");
    d
}

fn scan_in_chunks(bytes: &[u8], chunk: usize, enc: Encoding) -> Result<Summary, ScanError> {
    let mut s = DatasetScanner::new(enc);
    for c in bytes.chunks(chunk.max(1)) {
        s.push(c)?;
    }
    s.finish()
}

#[test]
fn identifying_attributes_are_found_at_any_fragmentation() {
    let bytes = sample();
    let expected = Summary {
        sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.2".into()),
        sop_instance_uid: Some("1.2.3.4.5.6".into()),
        study_instance_uid: Some("1.2.3".into()),
        series_instance_uid: Some("1.2.3.4".into()),
        modality: Some("CT".into()),
        instance_number: Some(17),
    };
    for chunk in [1, 2, 3, 5, 11, 64, bytes.len()] {
        assert_eq!(
            scan_in_chunks(&bytes, chunk, JPEG).unwrap(),
            expected,
            "chunk {chunk}"
        );
    }
}

#[test]
fn nested_attributes_do_not_overwrite_top_level_ones() {
    let s = scan_in_chunks(&sample(), 7, JPEG).unwrap();
    // (0008,1150) inside the sequence is not (0008,0016) but must not leak either.
    assert_eq!(
        s.sop_class_uid.as_deref(),
        Some("1.2.840.10008.5.1.4.1.1.2")
    );
}

#[test]
fn every_cut_inside_a_nested_structure_is_truncated() {
    let bytes = sample();
    // From the sequence start to the end of pixel data, every cut point leaves
    // something open (an element, item, sequence or fragments).
    let seq_start = 8 + 26 + 8 + 12 + 8 + 2;
    for cut in seq_start + 1..bytes.len() {
        let r = scan_in_chunks(&bytes[..cut], 4096, JPEG);
        let top_level_boundary = r.is_ok();
        if top_level_boundary {
            // Allowed only where the cut falls between two top-level elements.
            let s = r.unwrap();
            assert!(s.sop_instance_uid.is_some(), "cut {cut}");
            assert!(
                cut < bytes.len() - 30,
                "cut {cut} inside pixel data accepted"
            );
        }
    }
    assert!(matches!(
        scan_in_chunks(&bytes[..bytes.len() - 1], 4096, JPEG),
        Err(ScanError::Truncated(_))
    ));
}

#[test]
fn a_four_gigabyte_claim_is_truncated_not_allocated() {
    let mut d = Vec::new();
    el(&mut d, 0x0008, 0x0018, b"UI", b"1.2\0");
    d.extend_from_slice(&0x7FE0u16.to_le_bytes());
    d.extend_from_slice(&0x0010u16.to_le_bytes());
    d.extend_from_slice(b"OW\0\0");
    d.extend_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    d.extend_from_slice(&[0; 1000]);
    assert!(matches!(
        scan_in_chunks(&d, 100, EXPLICIT),
        Err(ScanError::Truncated(_))
    ));
}

#[test]
fn garbage_vr_is_reported() {
    let mut d = Vec::new();
    el(&mut d, 0x0008, 0x0018, b"UI", b"1.2\0");
    d.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'Z', b'Z', 2, 0, b'a', b'b']);
    assert!(matches!(
        scan_in_chunks(&d, 3, EXPLICIT),
        Err(ScanError::InvalidVr { .. })
    ));
}

#[test]
fn stray_delimiters_are_reported() {
    let mut d = Vec::new();
    raw(&mut d, 0xFFFE, 0xE00D, 0);
    assert!(matches!(
        scan_in_chunks(&d, 3, EXPLICIT),
        Err(ScanError::UnexpectedDelimiter { .. })
    ));
}

#[test]
fn deep_nesting_is_bounded() {
    let mut d = Vec::new();
    for _ in 0..100 {
        undefined(&mut d, 0x0008, 0x1140, b"SQ");
        raw(&mut d, 0xFFFE, 0xE000, UNDEFINED);
    }
    assert_eq!(scan_in_chunks(&d, 4096, EXPLICIT), Err(ScanError::TooDeep));
}

#[test]
fn implicit_vr_little_endian_is_walked() {
    let mut d = Vec::new();
    raw(&mut d, 0x0008, 0x0018, 4);
    d.extend_from_slice(b"1.5\0");
    raw(&mut d, 0x0008, 0x1140, UNDEFINED);
    raw(&mut d, 0xFFFE, 0xE000, UNDEFINED);
    raw(&mut d, 0x0008, 0x1150, 2);
    d.extend_from_slice(b"1\0");
    raw(&mut d, 0xFFFE, 0xE00D, 0);
    raw(&mut d, 0xFFFE, 0xE0DD, 0);
    raw(&mut d, 0x7FE0, 0x0010, 4);
    d.extend_from_slice(&[0; 4]);
    let s = scan_in_chunks(&d, 1, Encoding::IMPLICIT_LE).unwrap();
    assert_eq!(s.sop_instance_uid.as_deref(), Some("1.5"));
}

#[test]
fn deflated_data_set_is_inflated_while_scanning() {
    let packed = deflate(&native_sample(&[7; 64]));
    let enc = Encoding {
        deflated: true,
        ..EXPLICIT
    };
    let s = scan_in_chunks(&packed, 5, enc).unwrap();
    assert_eq!(s.series_instance_uid.as_deref(), Some("1.2.3.4"));
    let mut corrupt = packed.clone();
    corrupt.truncate(packed.len() / 2);
    assert!(scan_in_chunks(&corrupt, 5, enc).is_err());
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(plain).unwrap();
    z.finish().unwrap()
}

/// Pixels in 4 kB bands, one in three noisy and the rest flat: at these
/// sizes the last 16 kB fragment inflates to more than the scanner's
/// output buffer, after the inflater has taken in all of its bytes.
fn banded_pixels(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if (i / 4096) % 3 == 0 {
                ((i as u32).wrapping_mul(2_654_435_761u32.wrapping_add(seed)) >> 24) as u8
            } else {
                0
            }
        })
        .collect()
}

#[test]
fn a_deflated_data_set_is_inflated_to_its_end_whatever_the_fragments() {
    let enc = Encoding {
        deflated: true,
        ..EXPLICIT
    };
    for seed in [82u32, 150, 186] {
        let pixels = banded_pixels(300_000 + seed as usize * 7919, seed);
        let packed = deflate(&native_sample(&pixels));
        for chunk in [16_378, 65_536, packed.len()] {
            let s = scan_in_chunks(&packed, chunk, enc).unwrap_or_else(|e| {
                panic!(
                    "seed {seed}, {} bytes in chunks of {chunk}: {e}",
                    packed.len()
                )
            });
            assert_eq!(s.instance_number, Some(17), "seed {seed}, chunk {chunk}");
        }
    }
}

#[test]
fn a_deflate_stream_without_its_final_block_is_refused() {
    use std::io::Write;
    let enc = Encoding {
        deflated: true,
        ..EXPLICIT
    };
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&native_sample(&[7; 64])).unwrap();
    z.flush().unwrap();
    let unfinished = z.get_ref().clone();
    assert!(matches!(
        scan_in_chunks(&unfinished, 4096, enc),
        Err(ScanError::Inflate(_))
    ));
}

#[test]
fn pixel_data_laid_out_against_the_transfer_syntax_is_refused() {
    assert_eq!(
        scan_in_chunks(&sample(), 64, EXPLICIT),
        Err(ScanError::PixelDataLayout { encapsulated: true })
    );
    assert_eq!(
        scan_in_chunks(&native_sample(&[1, 2, 3, 4]), 64, JPEG),
        Err(ScanError::PixelDataLayout {
            encapsulated: false
        })
    );
    assert!(scan_in_chunks(&native_sample(&[1, 2, 3, 4]), 64, EXPLICIT).is_ok());
    assert!(scan_in_chunks(&sample(), 64, JPEG).is_ok());
    assert_eq!(
        ScanError::PixelDataLayout { encapsulated: true }.to_string(),
        "encapsulated Pixel Data, native syntax"
    );
}
