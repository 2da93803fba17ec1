//! Training arrays: deterministic, labelled consistently with their masks,
//! preprocessed into the model's range, and written as valid .npy files.

use firstlook_kernels::npy;
use firstlook_phantom::training::{sample, write_training_set, TrainingSpec, FINDINGS};
use firstlook_phantom::{Finding, Kind};

fn spec(seed: u64) -> TrainingSpec {
    TrainingSpec {
        seed,
        count: 10,
        side: 64,
        heat: 8,
    }
}

#[test]
fn same_seed_gives_identical_samples_and_another_seed_does_not() {
    for i in 0..5 {
        assert_eq!(sample(&spec(3), i).unwrap(), sample(&spec(3), i).unwrap());
        assert_ne!(
            sample(&spec(3), i).unwrap().image,
            sample(&spec(4), i).unwrap().image
        );
    }
}

#[test]
fn labels_agree_with_masks_and_kinds() {
    let spec = spec(11);
    for i in 0..40 {
        let s = sample(&spec, i).unwrap();
        assert_eq!(s.image.len(), 64 * 64);
        assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(s.mask.len(), 3 * 8 * 8);
        for (k, finding) in FINDINGS.iter().enumerate() {
            let covered = s.mask[k * 64..(k + 1) * 64].iter().any(|&m| m > 0.0);
            assert_eq!(s.labels[k] == 1.0, covered, "sample {i} channel {k}");
            if s.labels[k] == 1.0 {
                assert_eq!(s.finding, *finding, "sample {i}");
            }
        }
        match i % 5 {
            0..=2 => assert!(matches!(s.kind, Kind::Cr | Kind::Dx)),
            _ => assert_eq!(s.kind, Kind::Ct),
        }
        // Every chest with a finding shows it; normal images never do.
        if matches!(s.finding, Finding::Pneumothorax | Finding::Effusion) {
            assert_eq!(s.labels.iter().sum::<f32>(), 1.0, "sample {i}");
        }
        if s.finding == Finding::None {
            assert_eq!(s.labels, [0.0; 3], "sample {i}");
        }
    }
}

#[test]
fn positives_differ_from_negatives_where_the_mask_says() {
    // Pneumothorax makes its region darker than the rest of the lung field
    // would be; effusion makes it brighter. Compare mask vs non-mask means of
    // a heat-sized view of the image.
    let spec = TrainingSpec {
        seed: 5,
        count: 0,
        side: 64,
        heat: 64,
    };
    let mut checked = 0;
    for i in 0..30 {
        let s = sample(&spec, i).unwrap();
        let k = match s.finding {
            Finding::Effusion => 1,
            Finding::Hemorrhage if s.labels[2] == 1.0 => 2,
            _ => continue,
        };
        let mask = &s.mask[k * 4096..(k + 1) * 4096];
        let inside: Vec<f32> = (0..4096)
            .filter(|&p| mask[p] > 0.9)
            .map(|p| s.image[p])
            .collect();
        if inside.len() < 4 {
            continue;
        }
        let mean = inside.iter().sum::<f32>() / inside.len() as f32;
        assert!(
            mean > 0.5,
            "sample {i}: finding {:?} mean {mean}",
            s.finding
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked}");
}

#[test]
fn written_arrays_are_valid_npy_with_matching_shapes() {
    let dir = tempfile::tempdir().unwrap();
    write_training_set(&spec(2), dir.path(), 2).unwrap();
    let images = npy::decode(&std::fs::read(dir.path().join("images.npy")).unwrap()).unwrap();
    let masks = npy::decode(&std::fs::read(dir.path().join("masks.npy")).unwrap()).unwrap();
    let labels = npy::decode(&std::fs::read(dir.path().join("labels.npy")).unwrap()).unwrap();
    assert_eq!(images.shape, vec![10, 1, 64, 64]);
    assert_eq!(masks.shape, vec![10, 3, 8, 8]);
    assert_eq!(labels.shape, vec![10, 3]);
    assert_eq!(images.data[..4096], sample(&spec(2), 0).unwrap().image[..]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["samples"].as_array().unwrap().len(), 10);
    assert_eq!(meta["pipelines"]["head"]["window"]["center"], 40.0);
    assert!(meta["synthetic"]
        .as_str()
        .unwrap()
        .contains("NOT FOR CLINICAL USE"));
}
