//! Behaviour of generated studies, checked by parsing the files back.

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{open_file, DefaultDicomObject, OpenFileOptions};
use firstlook_phantom::{
    finding_mask, generate, generate_instance, is_valid_uid, write_study, Finding, Kind,
    PhantomError, StudySpec, CR_IMAGE_STORAGE, CT_IMAGE_STORAGE, DX_IMAGE_STORAGE,
    IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, SYNTHETIC_COMMENT, TRANSFER_SYNTAX_UID,
};

fn ct(seed: u64, count: usize) -> StudySpec {
    StudySpec::new(Kind::Ct, seed).with_count(count)
}

fn cr(seed: u64) -> StudySpec {
    StudySpec::new(Kind::Cr, seed).with_size(256, 320)
}

fn parse(bytes: &[u8]) -> DefaultDicomObject {
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .expect("generated file parses")
}

fn text(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} present"))
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// Pixel Data as 16-bit little-endian words.
fn pixels(obj: &DefaultDicomObject) -> Vec<u16> {
    let bytes = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn uint(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> u32 {
    obj.element(tag).unwrap().to_int::<u32>().unwrap()
}

#[test]
fn same_spec_gives_identical_bytes_and_uids() {
    let a = generate(&ct(42, 3)).unwrap();
    let b = generate(&ct(42, 3)).unwrap();
    assert_eq!(a, b);
    let a = generate(&cr(42).with_finding(Finding::Effusion)).unwrap();
    let b = generate(&cr(42).with_finding(Finding::Effusion)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn different_seeds_give_different_uids() {
    let a = generate(&ct(1, 2)).unwrap();
    let b = generate(&ct(2, 2)).unwrap();
    assert_ne!(a[0].study_instance_uid, b[0].study_instance_uid);
    assert_ne!(a[0].series_instance_uid, b[0].series_instance_uid);
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x.sop_instance_uid, y.sop_instance_uid);
    }
}

#[test]
fn different_findings_or_kinds_with_the_same_seed_do_not_share_uids() {
    let normal = generate(&cr(5)).unwrap();
    let ptx = generate(&cr(5).with_finding(Finding::Pneumothorax)).unwrap();
    let head = generate(&ct(5, 1)).unwrap();
    assert_ne!(normal[0].sop_instance_uid, ptx[0].sop_instance_uid);
    assert_ne!(normal[0].study_instance_uid, head[0].study_instance_uid);
}

#[test]
fn instances_of_a_study_share_study_and_series_but_not_sop_instance_uids() {
    let study = generate(&ct(9, 4)).unwrap();
    let mut sops: Vec<_> = study.iter().map(|i| i.sop_instance_uid.clone()).collect();
    sops.sort();
    sops.dedup();
    assert_eq!(sops.len(), 4);
    assert!(study
        .iter()
        .all(|i| i.study_instance_uid == study[0].study_instance_uid
            && i.series_instance_uid == study[0].series_instance_uid));
}

#[test]
fn all_uids_are_valid() {
    for seed in [0, 1, 7, u64::MAX] {
        for inst in generate(&ct(seed, 2))
            .unwrap()
            .into_iter()
            .chain(generate(&cr(seed)).unwrap())
        {
            for uid in [
                &inst.sop_instance_uid,
                &inst.study_instance_uid,
                &inst.series_instance_uid,
            ] {
                assert!(uid.starts_with("2.25."), "{uid}");
                assert!(uid.len() <= 64 && is_valid_uid(uid), "{uid}");
            }
        }
    }
    assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
}

#[test]
fn written_ct_files_parse_back_with_sop_class_size_and_pixel_length() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ct(3, 3).with_finding(Finding::Hemorrhage);
    let paths = write_study(&spec, dir.path()).unwrap();
    assert_eq!(paths.len(), 3);
    let generated = generate(&spec).unwrap();
    for (path, inst) in paths.iter().zip(&generated) {
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{}.dcm", inst.sop_instance_uid)
        );
        assert_eq!(std::fs::read(path).unwrap(), inst.file_bytes);
        let obj = open_file(path).unwrap();
        let meta = obj.meta();
        assert_eq!(meta.transfer_syntax(), TRANSFER_SYNTAX_UID);
        assert_eq!(meta.media_storage_sop_class_uid(), CT_IMAGE_STORAGE);
        assert_eq!(meta.media_storage_sop_instance_uid(), inst.sop_instance_uid);
        assert_eq!(meta.implementation_class_uid(), IMPLEMENTATION_CLASS_UID);
        assert_eq!(
            meta.implementation_version_name(),
            Some(IMPLEMENTATION_VERSION_NAME)
        );
        assert_eq!(text(&obj, tags::SOP_CLASS_UID), CT_IMAGE_STORAGE);
        assert_eq!(text(&obj, tags::SOP_INSTANCE_UID), inst.sop_instance_uid);
        assert_eq!(text(&obj, tags::MODALITY), "CT");
        assert_eq!(uint(&obj, tags::ROWS), 512);
        assert_eq!(uint(&obj, tags::COLUMNS), 512);
        assert_eq!(uint(&obj, tags::BITS_ALLOCATED), 16);
        let signed = uint(&obj, tags::PIXEL_REPRESENTATION) == 1;
        let intercept = text(&obj, tags::RESCALE_INTERCEPT);
        assert!(
            (signed && ["-1024", "0"].contains(&intercept.as_str()))
                || (!signed && intercept == "-1024"),
            "{signed} {intercept}"
        );
        assert_eq!(text(&obj, tags::PHOTOMETRIC_INTERPRETATION), "MONOCHROME2");
        let pixels = obj.element(tags::PIXEL_DATA).unwrap();
        assert_eq!(pixels.vr(), dicom_core::VR::OW);
        assert_eq!(pixels.to_bytes().unwrap().len(), 512 * 512 * 2);
    }
}

#[test]
fn ct_slice_is_about_525_kb_at_512_square() {
    let inst = generate_instance(&ct(0, 40), 0).unwrap();
    let len = inst.file_bytes.len();
    assert!((524_288..530_000).contains(&len), "{len}");
}

#[test]
fn cr_files_parse_back_with_sop_class_size_and_pixel_length() {
    for seed in 0..3 {
        let spec = cr(seed).with_count(2);
        for inst in generate(&spec).unwrap() {
            assert_eq!(inst.sop_class_uid, CR_IMAGE_STORAGE);
            let obj = parse(&inst.file_bytes);
            assert_eq!(text(&obj, tags::SOP_CLASS_UID), CR_IMAGE_STORAGE);
            assert_eq!(text(&obj, tags::MODALITY), "CR");
            assert_eq!(text(&obj, tags::BODY_PART_EXAMINED), "CHEST");
            assert!(["PA", "AP"].contains(&text(&obj, tags::VIEW_POSITION).as_str()));
            assert_eq!(uint(&obj, tags::ROWS), 320);
            assert_eq!(uint(&obj, tags::COLUMNS), 256);
            assert!([12, 14, 16].contains(&uint(&obj, tags::BITS_STORED)));
            assert_eq!(uint(&obj, tags::PIXEL_REPRESENTATION), 0);
            let pixels = obj.element(tags::PIXEL_DATA).unwrap();
            assert_eq!(pixels.to_bytes().unwrap().len(), 256 * 320 * 2);
        }
    }
}

#[test]
fn radiograph_default_size_is_a_full_detector_at_014_to_017_mm() {
    for kind in [Kind::Cr, Kind::Dx] {
        let inst = generate(&StudySpec::new(kind, 11)).unwrap().remove(0);
        let obj = parse(&inst.file_bytes);
        assert_eq!(uint(&obj, tags::ROWS), 2500);
        assert_eq!(uint(&obj, tags::COLUMNS), 2048);
        let spacing = obj
            .element(tags::PIXEL_SPACING)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        assert!(
            spacing.iter().all(|s| (0.139..=0.17).contains(s)),
            "{spacing:?}"
        );
        assert_eq!(text(&obj, tags::MODALITY), kind.as_str().to_uppercase());
        assert_eq!(inst.sop_class_uid, kind.sop_class_uid());
    }
    assert_eq!(Kind::Dx.sop_class_uid(), DX_IMAGE_STORAGE);
}

#[test]
fn acquisition_attributes_are_in_range() {
    for seed in 0..12 {
        let obj = parse(&generate(&cr(seed)).unwrap()[0].file_bytes);
        let kvp: f64 = text(&obj, tags::KVP).parse().unwrap();
        assert!((100.0..=125.0).contains(&kvp), "{kvp}");
        let ei: f64 = text(&obj, tags::EXPOSURE_INDEX).parse().unwrap();
        assert!((100.0..=600.0).contains(&ei), "{ei}");
        let bits = uint(&obj, tags::BITS_STORED);
        let max = pixels(&obj).into_iter().max().unwrap();
        assert!(u32::from(max) < (1 << bits), "{max} in {bits} bits");

        let slice = parse(&generate_instance(&ct(seed, 26), 13).unwrap().file_bytes);
        let thickness: f64 = text(&slice, tags::SLICE_THICKNESS).parse().unwrap();
        assert_eq!(thickness, 5.0);
        let spacing = slice
            .element(tags::PIXEL_SPACING)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        assert!((0.42..=0.5).contains(&spacing[0]), "{spacing:?}");
        assert_eq!(text(&slice, tags::WINDOW_CENTER), "40\\75\\600");
        assert_eq!(text(&slice, tags::RESCALE_TYPE), "HU");
    }
}

#[test]
fn every_instance_carries_patient_study_and_synthetic_marker_attributes() {
    for inst in generate(&ct(77, 1))
        .unwrap()
        .into_iter()
        .chain(generate(&cr(77)).unwrap())
    {
        let obj = parse(&inst.file_bytes);
        assert_eq!(text(&obj, tags::PATIENT_ID), "PH77");
        assert!(text(&obj, tags::PATIENT_NAME).starts_with("PHANTOM^"));
        assert_eq!(text(&obj, tags::PATIENT_BIRTH_DATE).len(), 8);
        assert!(["F", "M"].contains(&text(&obj, tags::PATIENT_SEX).as_str()));
        assert_eq!(
            text(&obj, tags::STUDY_INSTANCE_UID),
            inst.study_instance_uid
        );
        assert_eq!(
            text(&obj, tags::SERIES_INSTANCE_UID),
            inst.series_instance_uid
        );
        assert_eq!(text(&obj, tags::STUDY_DATE).len(), 8);
        assert_eq!(text(&obj, tags::STUDY_TIME).len(), 6);
        assert!(text(&obj, tags::ACCESSION_NUMBER).starts_with("FL"));
        assert!(!text(&obj, tags::STUDY_ID).is_empty());
        assert_eq!(text(&obj, tags::SERIES_NUMBER), "1");
        assert_eq!(text(&obj, tags::INSTANCE_NUMBER), "1");
        assert_eq!(text(&obj, tags::MANUFACTURER), "firstlook-phantom");
        assert!(!text(&obj, tags::BODY_PART_EXAMINED).is_empty());
        assert!(!text(&obj, tags::KVP).is_empty());
        assert_eq!(uint(&obj, tags::SAMPLES_PER_PIXEL), 1);
        assert_eq!(
            uint(&obj, tags::HIGH_BIT) + 1,
            uint(&obj, tags::BITS_STORED)
        );
        assert_eq!(text(&obj, tags::IMAGE_COMMENTS), SYNTHETIC_COMMENT);
    }
}

#[test]
fn ct_slice_positions_increase_with_instance_number() {
    let study = generate(&ct(4, 5).with_size(64, 64)).unwrap();
    let mut last = f64::NEG_INFINITY;
    for (i, inst) in study.iter().enumerate() {
        let obj = parse(&inst.file_bytes);
        assert_eq!(text(&obj, tags::INSTANCE_NUMBER), (i + 1).to_string());
        let pos = obj
            .element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        assert_eq!(pos.len(), 3);
        assert!(pos[2] > last, "slice {i} at z {} after {last}", pos[2]);
        let location = obj
            .element(tags::SLICE_LOCATION)
            .unwrap()
            .to_float64()
            .unwrap();
        assert_eq!(location, pos[2]);
        last = pos[2];
    }
}

#[test]
fn some_seeds_give_monochrome1_cr_with_inverted_pixels() {
    let photometric = |seed| {
        text(
            &parse(&generate(&cr(seed)).unwrap()[0].file_bytes),
            tags::PHOTOMETRIC_INTERPRETATION,
        )
    };
    let all: Vec<String> = (0..12).map(photometric).collect();
    assert!(all.iter().any(|p| p == "MONOCHROME1"), "{all:?}");
    assert!(all.iter().any(|p| p == "MONOCHROME2"), "{all:?}");

    // Inverted: the corner (direct exposure) is bright in MONOCHROME1,
    // as a fraction of the largest stored value.
    let corner = |seed| {
        let obj = parse(&generate(&cr(seed)).unwrap()[0].file_bytes);
        let max = ((1u32 << uint(&obj, tags::BITS_STORED)) - 1) as f64;
        f64::from(pixels(&obj)[0]) / max
    };
    let mono1_seed = (0..12).find(|&s| all[s as usize] == "MONOCHROME1").unwrap();
    let mono2_seed = (0..12).find(|&s| all[s as usize] == "MONOCHROME2").unwrap();
    assert!(corner(mono1_seed) > 0.9, "{}", corner(mono1_seed));
    assert!(corner(mono2_seed) < 0.1, "{}", corner(mono2_seed));
}

#[test]
fn generate_instance_matches_the_whole_study() {
    let spec = ct(8, 4).with_size(32, 48);
    let all = generate(&spec).unwrap();
    for (i, inst) in all.iter().enumerate() {
        assert_eq!(&generate_instance(&spec, i).unwrap(), inst);
    }
    assert!(matches!(
        generate_instance(&spec, 4),
        Err(PhantomError::IndexOutOfRange { .. })
    ));
}

#[test]
fn findings_that_do_not_suit_the_kind_are_refused() {
    let err = generate(&ct(1, 1).with_finding(Finding::Pneumothorax)).unwrap_err();
    assert!(
        matches!(err, PhantomError::FindingNotApplicable { .. }),
        "{err}"
    );
    let err = generate(&cr(1).with_finding(Finding::Hemorrhage)).unwrap_err();
    assert!(
        matches!(err, PhantomError::FindingNotApplicable { .. }),
        "{err}"
    );
}

#[test]
fn invalid_counts_and_sizes_are_refused() {
    assert!(matches!(
        generate(&ct(1, 0)),
        Err(PhantomError::InvalidCount { .. })
    ));
    assert!(matches!(
        generate(&ct(1, 1).with_size(8, 512)),
        Err(PhantomError::InvalidSize { .. })
    ));
}

#[test]
fn kind_and_finding_round_trip_through_strings() {
    for kind in [Kind::Ct, Kind::Cr, Kind::Dx] {
        assert_eq!(kind.to_string().parse::<Kind>().unwrap(), kind);
    }
    for finding in [
        Finding::None,
        Finding::Pneumothorax,
        Finding::Effusion,
        Finding::Hemorrhage,
    ] {
        assert_eq!(finding.to_string().parse::<Finding>().unwrap(), finding);
    }
    assert!("mr".parse::<Kind>().is_err());
    assert!("fracture".parse::<Finding>().is_err());
}

#[test]
fn finding_masks_mark_the_finding_and_only_studies_with_one() {
    let sick = cr(5).with_finding(Finding::Pneumothorax);
    let mask = finding_mask(&sick, 0).unwrap();
    assert_eq!(mask.len(), 256 * 320);
    let inside = mask.iter().filter(|&&m| m == 1).count();
    assert!(inside > 50 && inside < mask.len() / 4, "{inside} pixels");
    assert!(mask.iter().all(|&m| m <= 1));
    assert!(finding_mask(&cr(5), 0).unwrap().iter().all(|&m| m == 0));

    let head = ct(6, 12)
        .with_size(64, 64)
        .with_finding(Finding::Hemorrhage);
    let blood: Vec<usize> = (0..12)
        .map(|i| {
            finding_mask(&head, i)
                .unwrap()
                .iter()
                .filter(|&&m| m == 1)
                .count()
        })
        .collect();
    assert!(blood.iter().any(|&n| n > 0), "{blood:?}");
    assert!(matches!(
        finding_mask(&head, 12),
        Err(PhantomError::IndexOutOfRange { .. })
    ));
}
