//! Labelled training arrays for the model recipe: the same anatomy and
//! findings as the DICOM studies, rendered at a reduced detector resolution,
//! stored as a scanner would store them, and preprocessed by
//! `firstlook_kernels::preprocess` exactly as the daemon preprocesses an
//! incoming image. Ground truth comes from the renderer's own masks.

use std::io::BufWriter;
use std::path::Path;

use firstlook_kernels::npy;
use firstlook_kernels::preprocess::{area_resize, Image, Pipeline, Window};

use crate::chest::{self, Chest, Grid};
use crate::cr::Acquisition;
use crate::ct::Storage;
use crate::field::Draw;
use crate::head::{self, Head, Slice};
use crate::uid::Deriver;
use crate::{Finding, Kind, PhantomError};

/// Findings in output order: logits and heatmap channels use these indices.
pub const FINDINGS: [Finding; 3] = [
    Finding::Pneumothorax,
    Finding::Effusion,
    Finding::Hemorrhage,
];

/// Fewest blood pixels (at 512 × 512) for a CT slice to count as positive.
const MIN_BLOOD_PIXELS: usize = 30;

/// Window, inversion and size used for chest radiographs; the bundle
/// manifest's chest route must say the same.
pub fn chest_pipeline(side: usize) -> Pipeline {
    Pipeline {
        channels: vec![Window::Percentile {
            low: 0.5,
            high: 99.5,
        }],
        invert_monochrome1: true,
        rows: side,
        cols: side,
        letterbox: false,
        normalize_mean: 0.5,
        normalize_std: 0.25,
    }
}

/// Window and size used for head CT (the brain window, in HU).
pub fn head_pipeline(side: usize) -> Pipeline {
    Pipeline {
        channels: vec![Window::Fixed {
            center: 40.0,
            width: 80.0,
        }],
        invert_monochrome1: false,
        rows: side,
        cols: side,
        letterbox: false,
        normalize_mean: 0.5,
        normalize_std: 0.25,
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainingSpec {
    pub seed: u64,
    pub count: usize,
    /// Model input side (square), e.g. 256.
    pub side: usize,
    /// Heatmap side, e.g. 32.
    pub heat: usize,
}

/// One labelled sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: Kind,
    pub finding: Finding,
    pub seed: u64,
    /// Slice height for CT.
    pub z: Option<f32>,
    pub monochrome1: bool,
    /// `side × side` values in [0, 1]: the model input before normalisation.
    pub image: Vec<f32>,
    /// `3 × heat × heat`: fraction of each heatmap cell covered by each finding.
    pub mask: Vec<f32>,
    /// 1 where the finding is present in this image.
    pub labels: [f32; 3],
}

/// Sample `index` of the set: chests (normal, pneumothorax, effusion) and
/// heads (normal, haemorrhage) in turn.
pub fn sample(spec: &TrainingSpec, index: usize) -> Result<Sample, PhantomError> {
    let seed = Deriver::new("firstlook-phantom/training/v1".into(), spec.seed)
        .value("sample", index as u64);
    let mut d = Draw::new(seed);
    match index % 5 {
        0..=2 => {
            let finding = [Finding::None, Finding::Pneumothorax, Finding::Effusion][index % 5];
            chest_sample(spec, finding, d.seed(), d.chance(0.5))
        }
        k => head_sample(
            spec,
            if k == 3 {
                Finding::None
            } else {
                Finding::Hemorrhage
            },
            &mut d,
        ),
    }
}

fn channel(finding: Finding) -> usize {
    FINDINGS.iter().position(|&f| f == finding).unwrap_or(0)
}

fn heat_mask(
    mask: &[u8],
    width: usize,
    height: usize,
    heat: usize,
) -> Result<Vec<f32>, PhantomError> {
    let image = Image {
        width,
        height,
        values: mask.iter().map(|&m| f32::from(m)).collect(),
    };
    Ok(area_resize(&image, heat, heat)?.values)
}

fn chest_sample(
    spec: &TrainingSpec,
    finding: Finding,
    seed: u64,
    dx: bool,
) -> Result<Sample, PhantomError> {
    let chest = Chest::draw(seed, finding);
    let acq = Acquisition::draw(seed ^ 0xA5A5);
    // A quarter of the default detector matrix over the same field of view.
    let grid = Grid {
        cols: 512,
        rows: 625,
        pixel_mm: acq.pixel_mm * 4.0,
    };
    let rendered = chest::render(&chest, grid, seed ^ 0x5A5A);
    let stored = acq.stored(&rendered.values);
    let image = Image {
        width: 512,
        height: 625,
        values: stored.iter().map(|&s| f32::from(s)).collect(),
    };
    let unit = chest_pipeline(spec.side).unit(&image, acq.monochrome1)?;
    let mut mask = vec![0.0; 3 * spec.heat * spec.heat];
    let mut labels = [0.0; 3];
    if finding != Finding::None && rendered.mask.contains(&1) {
        let c = channel(finding);
        let heat = heat_mask(&rendered.mask, 512, 625, spec.heat)?;
        mask[c * spec.heat * spec.heat..(c + 1) * spec.heat * spec.heat].copy_from_slice(&heat);
        labels[c] = 1.0;
    }
    Ok(Sample {
        kind: if dx { Kind::Dx } else { Kind::Cr },
        finding,
        seed,
        z: None,
        monochrome1: acq.monochrome1,
        image: unit,
        mask,
        labels,
    })
}

fn head_sample(
    spec: &TrainingSpec,
    finding: Finding,
    d: &mut Draw,
) -> Result<Sample, PhantomError> {
    let seed = d.seed();
    let head = Head::draw(seed, finding);
    let z = match head.bleed_z_range() {
        Some((lo, hi)) if d.chance(0.8) => d.uniform(lo.max(-40.0), hi.min(85.0)),
        _ => d.uniform(-40.0, 85.0),
    };
    let storage = Storage::draw(seed ^ 0x77);
    let pixel_mm = d.uniform(220.0, 250.0) / 512.0;
    let rendered = head::render(
        &head,
        Slice {
            cols: 512,
            rows: 512,
            pixel_mm,
            z,
        },
        seed ^ 0x33,
    );
    let image = Image {
        width: 512,
        height: 512,
        values: storage.hu(&storage.stored(&rendered.hu)),
    };
    let unit = head_pipeline(spec.side).unit(&image, false)?;
    let mut mask = vec![0.0; 3 * spec.heat * spec.heat];
    let mut labels = [0.0; 3];
    let blood = rendered.mask.iter().filter(|&&m| m == 1).count();
    if blood >= MIN_BLOOD_PIXELS {
        let c = channel(Finding::Hemorrhage);
        let heat = heat_mask(&rendered.mask, 512, 512, spec.heat)?;
        mask[c * spec.heat * spec.heat..(c + 1) * spec.heat * spec.heat].copy_from_slice(&heat);
        labels[c] = 1.0;
    }
    Ok(Sample {
        kind: Kind::Ct,
        finding,
        seed,
        z: Some(z),
        monochrome1: false,
        image: unit,
        mask,
        labels,
    })
}

/// Writes `images.npy` (N×1×side×side), `masks.npy` (N×3×heat×heat),
/// `labels.npy` (N×3) and `meta.json` into `out_dir`, using `threads` threads.
pub fn write_training_set(
    spec: &TrainingSpec,
    out_dir: &Path,
    threads: usize,
) -> Result<(), PhantomError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PhantomError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let threads = threads.clamp(1, 64);
    let mut samples: Vec<Option<Sample>> = vec![None; spec.count];
    let chunk = spec.count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, slots)| {
                scope.spawn(move || -> Result<(), PhantomError> {
                    for (k, slot) in slots.iter_mut().enumerate() {
                        *slot = Some(sample(spec, c * chunk + k)?);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("training sample thread panicked"))
    })?;
    let samples: Vec<Sample> = samples.into_iter().flatten().collect();

    let write = |name: &str, shape: &[usize], values: &mut dyn Iterator<Item = &[f32]>| {
        let path = out_dir.join(name);
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let mut w = BufWriter::new(file);
        npy::write_f32_header(&mut w, shape).map_err(io(&path))?;
        for v in values {
            npy::write_f32_values(&mut w, v).map_err(io(&path))?;
        }
        std::io::Write::flush(&mut w).map_err(io(&path))
    };
    let n = samples.len();
    write(
        "images.npy",
        &[n, 1, spec.side, spec.side],
        &mut samples.iter().map(|s| s.image.as_slice()),
    )?;
    write(
        "masks.npy",
        &[n, 3, spec.heat, spec.heat],
        &mut samples.iter().map(|s| s.mask.as_slice()),
    )?;
    write(
        "labels.npy",
        &[n, 3],
        &mut samples.iter().map(|s| s.labels.as_slice()),
    )?;

    let pipeline_json = |p: &Pipeline| {
        let window = match p.channels.as_slice() {
            [Window::Fixed { center, width }] => {
                serde_json::json!({"window": "fixed", "center": center, "width": width})
            }
            [Window::Percentile { low, high }] => {
                serde_json::json!({"window": "percentile", "percentile_low": low, "percentile_high": high})
            }
            other => unreachable!(
                "training pipelines have one fixed or percentile window, not {other:?}"
            ),
        };
        serde_json::json!({
            "window": window,
            "invert_monochrome1": p.invert_monochrome1,
            "resize": [p.rows, p.cols],
            "normalize_mean": p.normalize_mean,
            "normalize_std": p.normalize_std,
        })
    };
    let meta = serde_json::json!({
        "generator": format!("firstlook-phantom {}", env!("CARGO_PKG_VERSION")),
        "synthetic": "SYNTHETIC PHANTOM DATA - NOT FOR CLINICAL USE",
        "seed": spec.seed,
        "count": n,
        "side": spec.side,
        "heat": spec.heat,
        "findings": FINDINGS.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        "pipelines": {
            "chest": pipeline_json(&chest_pipeline(spec.side)),
            "head": pipeline_json(&head_pipeline(spec.side)),
        },
        "samples": samples.iter().map(|s| serde_json::json!({
            "kind": s.kind.as_str(),
            "finding": s.finding.as_str(),
            "seed": s.seed,
            "z": s.z,
            "monochrome1": s.monochrome1,
        })).collect::<Vec<_>>(),
    });
    let path = out_dir.join("meta.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&meta).expect("JSON of plain values"),
    )
    .map_err(io(&path))
}
