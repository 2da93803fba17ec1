//! The Rust half of tests/bench/cuda_parity, for a machine with an NVIDIA
//! GPU: the CUDA preprocessing kernels against the CPU pipeline on random
//! and real-shaped images (the CPU reading them the daemon's way, from the
//! DICOM's stored samples), the largest differences, the kernels' time
//! (CUDA events, median) beside the CPU's and the device's measured copy
//! bandwidth. Exits 2 without a CUDA device, 1 if a difference reaches
//! 1e-4 relative. `QUICK=1` for fewer runs.

use std::process::ExitCode;
use std::time::Instant;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};
use firstlook_kernels::dicom::Pixels;
use firstlook_kernels::preprocess::gpu::{
    self, DeviceBuffer, Event, GpuError, Input, PinnedBuffer, Prepared, Samples, Stream,
};
use firstlook_kernels::preprocess::{Pipeline, Window};

const TOLERANCE: f64 = 1e-4;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One image: its stored samples as a native DICOM instance (for the CPU)
/// and as words (for the GPU).
struct Case {
    name: String,
    words: Vec<u16>,
    width: usize,
    height: usize,
    bits_stored: u16,
    signed: bool,
    slope: f32,
    intercept: f32,
    monochrome1: bool,
    pipeline: Pipeline,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn dicom(&self) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
        obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1");
        obj.put_str(tags::MODALITY, VR::CS, "CT");
        let photometric = if self.monochrome1 {
            "MONOCHROME1"
        } else {
            "MONOCHROME2"
        };
        obj.put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric);
        for (tag, value) in [
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::ROWS, self.height as u16),
            (tags::COLUMNS, self.width as u16),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, self.bits_stored),
            (tags::HIGH_BIT, self.bits_stored - 1),
            (tags::PIXEL_REPRESENTATION, u16::from(self.signed)),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        }
        obj.put_str(tags::RESCALE_SLOPE, VR::DS, self.slope.to_string());
        obj.put_str(tags::RESCALE_INTERCEPT, VR::DS, self.intercept.to_string());
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(self.bytes()),
        ));
        obj.with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1"),
        )
        .expect("meta")
    }

    fn input(&self) -> Input {
        Input {
            width: self.width,
            height: self.height,
            samples: Samples::Word16 {
                signed: self.signed,
                bits_stored: self.bits_stored,
            },
            slope: self.slope,
            intercept: self.intercept,
            padding: None,
        }
    }
}

fn pipeline(channels: Vec<Window>, side: (usize, usize), letterbox: bool) -> Pipeline {
    Pipeline {
        channels,
        invert_monochrome1: true,
        rows: side.0,
        cols: side.1,
        letterbox,
        normalize_mean: 0.5,
        normalize_std: 0.25,
    }
}

fn fixed(center: f32, width: f32) -> Window {
    Window::Fixed { center, width }
}

/// A head CT slice: air around a skull around brain, in HU + 1024.
fn ct_words(width: usize, height: usize, noise: &mut Noise) -> Vec<u16> {
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    (0..width * height)
        .map(|i| {
            let (x, y) = ((i % width) as f64 - cx, (i / width) as f64 - cy);
            let r = (x * x + y * y).sqrt() / (width.min(height) as f64 / 2.0);
            let hu = if r > 0.9 {
                -1000.0
            } else if r > 0.8 {
                1200.0
            } else {
                35.0 + 10.0 * (x / 17.0).sin()
            };
            let v = hu + 1024.0 + (noise.below(40) as f64 - 20.0);
            (v.max(0.0) as i16) as u16
        })
        .collect()
}

/// A radiograph: smooth structure and noise, 12 bits.
fn dx_words(width: usize, height: usize, noise: &mut Noise) -> Vec<u16> {
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            ((x * 3 + y * 2) % 3000 + noise.below(64) as usize) as u16 & 0x0FFF
        })
        .collect()
}

fn cases(noise: &mut Noise) -> Vec<Case> {
    let head = || vec![fixed(40.0, 80.0), fixed(75.0, 215.0), fixed(600.0, 2800.0)];
    let ct = |name: &str, w: usize, h: usize, side, noise: &mut Noise| Case {
        name: name.into(),
        words: ct_words(w, h, noise),
        width: w,
        height: h,
        bits_stored: 16,
        signed: true,
        slope: 1.0,
        intercept: -1024.0,
        monochrome1: false,
        pipeline: pipeline(head(), side, true),
    };
    let dx = |name: &str, pipeline, noise: &mut Noise| Case {
        name: name.into(),
        words: dx_words(2048, 2500, noise),
        width: 2048,
        height: 2500,
        bits_stored: 12,
        signed: false,
        slope: 1.0,
        intercept: 0.0,
        monochrome1: true,
        pipeline,
    };
    let percentile = Window::Percentile {
        low: 0.5,
        high: 99.5,
    };
    let mut all = vec![
        ct("ct_512x512_to_256x256_3win", 512, 512, (256, 256), noise),
        ct(
            "ct_512x512_to_320x256_letterbox",
            512,
            512,
            (320, 256),
            noise,
        ),
        ct("ct_enlarge_200x150_to_256x256", 200, 150, (256, 256), noise),
        dx(
            "dx_2048x2500_mono1_percentile_256",
            pipeline(vec![percentile.clone()], (256, 256), false),
            noise,
        ),
        dx(
            "dx_2048x2500_mono1_linear_letterbox_512",
            pipeline(
                vec![Window::Linear {
                    center: 1500.0,
                    width: 2500.0,
                }],
                (512, 512),
                true,
            ),
            noise,
        ),
    ];
    for k in 0..4 {
        let (w, h) = (
            16 + noise.below(1500) as usize,
            16 + noise.below(1500) as usize,
        );
        let side = (8 + noise.below(600) as usize, 8 + noise.below(600) as usize);
        let bits_stored = [16, 12, 10, 15][k];
        let signed = k % 2 == 0;
        let words = (0..w * h).map(|_| noise.next() as u16).collect();
        let windows = vec![
            fixed(100.0, 400.0),
            percentile.clone(),
            Window::Linear {
                center: 0.0,
                width: 900.0,
            },
            Window::Sigmoid {
                center: 50.0,
                width: 700.0,
            },
            Window::Lut {
                first_mapped: -300.0,
                values: (0..700).map(|i| (i as f32 / 699.0).powf(0.7)).collect(),
            },
        ];
        all.push(Case {
            name: format!("random_{k}_{w}x{h}_to_{}x{}", side.1, side.0),
            words,
            width: w,
            height: h,
            bits_stored,
            signed,
            slope: [1.0, 0.5, 2.0, 1.25][k],
            intercept: [-1024.0, 0.0, -100.0, 7.0][k],
            monochrome1: k % 3 == 1,
            pipeline: pipeline(windows, side, k % 2 == 1),
        });
    }
    all
}

struct Outcome {
    max_abs: f64,
    max_rel: f64,
    kernel_ms: f64,
    end_to_end_ms: f64,
    cpu_ms: f64,
    passes: usize,
    bytes: usize,
}

fn run_case(case: &Case, runs: usize, stream: &Stream) -> Result<Outcome, GpuError> {
    let obj = case.dicom();
    let pixels = Pixels::first_frame(&obj).expect("pixels");
    let frame = pixels.frame(0).expect("frame");
    assert_eq!(frame.monochrome1, case.monochrome1);
    let cpu = case
        .pipeline
        .run(&frame.image, frame.monochrome1)
        .expect("CPU preprocess");
    let mut cpu_times = Vec::new();
    for _ in 0..runs.min(20) {
        let t = Instant::now();
        let out = case.pipeline.run(&frame.image, frame.monochrome1)?;
        cpu_times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
    }

    let input = case.input();
    let bytes = case.bytes();
    let mut prepared = Prepared::new(&case.pipeline, &input, case.monochrome1, stream)?;
    let src = DeviceBuffer::from_slice(&bytes, stream)?;
    let mut dst = DeviceBuffer::new(prepared.output_len() * 4)?;
    prepared.run(&src, &mut dst, stream)?;
    let mut gpu = vec![0.0f32; prepared.output_len()];
    dst.download(&mut gpu, stream)?;

    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for (g, c) in gpu.iter().zip(&cpu) {
        let d = (f64::from(*g) - f64::from(*c)).abs();
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / f64::from(c.abs()).max(1.0));
    }
    if gpu.len() != cpu.len() {
        max_rel = f64::INFINITY;
    }

    let (start, end) = (Event::new()?, Event::new()?);
    let mut kernel = Vec::new();
    for _ in 0..runs {
        start.record(stream)?;
        prepared.run(&src, &mut dst, stream)?;
        end.record(stream)?;
        kernel.push(f64::from(start.elapsed_ms(&end)?));
    }
    let mut end_to_end = Vec::new();
    let mut src = src;
    for _ in 0..runs.min(20) {
        let t = Instant::now();
        src.upload(&bytes, stream)?;
        prepared.run(&src, &mut dst, stream)?;
        dst.download(&mut gpu, stream)?;
        end_to_end.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Outcome {
        max_abs,
        max_rel,
        kernel_ms: median(kernel),
        end_to_end_ms: median(end_to_end),
        cpu_ms: median(cpu_times),
        passes: prepared.passes(),
        bytes: bytes.len() + gpu.len() * 4,
    })
}

/// Host-to-device (page-locked) and device-to-device copy bandwidth, GB/s;
/// device to device counts the bytes read and written.
fn bandwidth(runs: usize, stream: &Stream) -> Result<(f64, f64), GpuError> {
    const BYTES: usize = 256 << 20;
    let mut pinned = PinnedBuffer::new(BYTES)?;
    pinned
        .as_mut_bytes()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let mut a = DeviceBuffer::new(BYTES)?;
    let mut b = DeviceBuffer::new(BYTES)?;
    let (start, end) = (Event::new()?, Event::new()?);
    let (mut h2d, mut d2d) = (Vec::new(), Vec::new());
    for _ in 0..runs.clamp(3, 20) {
        start.record(stream)?;
        a.upload_pinned(&pinned, stream)?;
        end.record(stream)?;
        h2d.push(BYTES as f64 / (f64::from(start.elapsed_ms(&end)?) * 1e6));
        start.record(stream)?;
        b.copy_from(&a, stream)?;
        end.record(stream)?;
        d2d.push(2.0 * BYTES as f64 / (f64::from(start.elapsed_ms(&end)?) * 1e6));
    }
    Ok((median(h2d), median(d2d)))
}

fn main() -> ExitCode {
    match gpu::device_count() {
        Ok(n) if n > 0 => {}
        Ok(_) => {
            eprintln!("cuda_parity: no CUDA device here; run it on a machine with an NVIDIA GPU");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("cuda_parity: CUDA is not usable here: {e}");
            return ExitCode::from(2);
        }
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cuda_parity: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<bool, GpuError> {
    let runs = if std::env::var("QUICK").as_deref() == Ok("1") {
        10
    } else {
        50
    };
    let (major, minor) = gpu::compute_capability(0)?;
    println!(
        "device: {} (sm_{major}{minor}), {runs} runs per timing",
        gpu::device_name(0)?
    );
    let stream = Stream::new()?;
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let (mut worst_abs, mut worst_rel, mut ok) = (0.0f64, 0.0f64, true);
    let mut key = Vec::new();
    let mut effective = 0.0;
    for case in cases(&mut noise) {
        let o = run_case(&case, runs, &stream)?;
        let pass = o.max_rel < TOLERANCE;
        ok &= pass;
        worst_abs = worst_abs.max(o.max_abs);
        worst_rel = worst_rel.max(o.max_rel);
        println!(
            "{:<44} passes={} max_abs_err={:.3e} max_rel_err={:.3e} kernel_ms={:.4} gpu_end_to_end_ms={:.3} cpu_ms={:.3} {}",
            case.name,
            o.passes,
            o.max_abs,
            o.max_rel,
            o.kernel_ms,
            o.end_to_end_ms,
            o.cpu_ms,
            if pass { "ok" } else { "FAIL" }
        );
        if case.name.starts_with("ct_512x512_to_256x256") {
            key.push(format!(
                "kernel_ms_ct={:.4} cpu_ms_ct={:.3}",
                o.kernel_ms, o.cpu_ms
            ));
        }
        if case.name.starts_with("dx_2048x2500_mono1_percentile") {
            key.push(format!(
                "kernel_ms_dx={:.4} cpu_ms_dx={:.3}",
                o.kernel_ms, o.cpu_ms
            ));
        }
        if case.name.starts_with("dx_2048x2500_mono1_linear") {
            effective = o.bytes as f64 / (o.kernel_ms * 1e6);
            key.push(format!(
                "kernel_ms_dx_fused={:.4} cpu_ms_dx_fused={:.3}",
                o.kernel_ms, o.cpu_ms
            ));
        }
    }
    let (h2d, d2d) = bandwidth(runs, &stream)?;
    println!(
        "copy bandwidth: host->device (pinned) {h2d:.1} GB/s, device->device {d2d:.1} GB/s (read+write); \
         fused DX kernel moves {effective:.1} GB/s (input read + tensor written), {:.1}% of device->device",
        100.0 * effective / d2d
    );
    println!(
        "RESULT cuda_preprocess ok={} max_abs_err={worst_abs:.3e} max_rel_err={worst_rel:.3e} {} h2d_gbps={h2d:.1} d2d_gbps={d2d:.1} effective_gbps={effective:.1}",
        u8::from(ok),
        key.join(" ")
    );
    Ok(ok)
}
