//! Preprocessing on an NVIDIA GPU (feature `cuda`): the kernels of
//! `kernels/cuda` give what [`Pipeline::run`] gives for the same image, from
//! its stored samples on the device straight to the model's input tensor.
//!
//! - Passes: one when no channel has a percentile window: each thread
//!   resamples one output pixel, windows it once per channel, inverts,
//!   normalises and writes every channel (or the letterbox padding). With a
//!   percentile window, two: the resize pass writes the resized image
//!   (`rows × cols` f32, 256 KiB at 256 × 256), the host copies it back and
//!   takes its percentiles with [`percentiles`](super::percentiles), the
//!   CPU's own code on the same values, then the window pass writes the
//!   tensor. A percentile depends on every value of the image, so a device
//!   histogram or sort would be a second implementation to keep equal to the
//!   first, for a copy far smaller than the input.
//! - Modality LUT: the kernels read the stored words (8 or 16 bits, masked
//!   to Bits Stored, sign-extended) and apply slope and intercept as they
//!   resample, exactly as the CPU's row reader does: `v * (slope * w) +
//!   intercept * w` per tap of weight `w`. Resizing is linear and the LUT is
//!   linear, so resizing modality values or rescaling resized stored values
//!   is the same image.
//! - Numbers: the taps are the CPU's ([`resize`](super::resize)'s area and
//!   bilinear spans), summed in the order the CPU picks for the image's
//!   shape (rows first or columns first), every product and sum rounded on
//!   its own (no FMA). The results equal the CPU's bit for bit except for
//!   sigmoid windows, whose `exp` differs by a few ulp between CUDA and the
//!   host's libm.

use firstlook_tensorrt_sys::preprocess::{ChannelWindow, Kernel, Plan, Taps, MAX_CHANNELS};

pub use firstlook_tensorrt_sys::preprocess::{
    compute_capability, device_count, device_name, CudaError, DeviceBuffer, Event, PinnedBuffer,
    Samples, Stream,
};

use super::resize::{bilinear, spans};
use super::{Image, Pipeline, PreprocessError, Window};

/// Why the GPU path could not run.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Cuda(#[from] CudaError),
    #[error("{0} channels: the CUDA kernels write at most {MAX_CHANNELS}")]
    Channels(usize),
    #[error("the image holds {got} bytes of samples, {want} expected")]
    Input { got: usize, want: usize },
    #[error("no CUDA device")]
    NoDevice,
}

/// An image as the decoder stores it, without its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    pub width: usize,
    pub height: usize,
    pub samples: Samples,
    /// Modality LUT (Rescale Slope and Intercept); ignored for
    /// [`Samples::F32`].
    pub slope: f32,
    pub intercept: f32,
    /// Pixel Padding: stored values in `lo..=hi` read as `fill` (a modality
    /// value), as the decoder's frame reader does.
    pub padding: Option<(i64, i64, f32)>,
}

impl Input {
    pub fn bytes(&self) -> usize {
        self.width * self.height * self.samples.size()
    }
}

/// Area taps when shrinking an axis, bilinear when enlarging it, as
/// [`resize`](super::resize()) picks them.
fn axis_taps(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
    if output > input {
        bilinear(input, output)
    } else {
        spans(input, output)
    }
}

fn flat(taps: &[Vec<(usize, f32)>]) -> Taps {
    let mut t = Taps {
        at: vec![0],
        ..Taps::default()
    };
    for list in taps {
        t.first.push(list.first().map_or(0, |&(i, _)| i as i32));
        t.weights.extend(list.iter().map(|&(_, w)| w));
        t.at.push(t.weights.len() as i32);
    }
    t
}

/// Whether the CPU resizes an image of this shape rows first (see
/// `resize::separable`, whose cost model this repeats).
fn rows_first(
    width: usize,
    height: usize,
    xs: &[Vec<(usize, f32)>],
    ys: &[Vec<(usize, f32)>],
) -> bool {
    const COLUMN_TAP: usize = 4;
    let taps_of = |t: &[Vec<(usize, f32)>]| t.iter().map(Vec::len).sum::<usize>();
    let (rows, cols) = (ys.len(), xs.len());
    taps_of(ys) * width + rows * taps_of(xs) * COLUMN_TAP
        <= height * width + height * taps_of(xs) * COLUMN_TAP + taps_of(ys) * cols
}

/// A fixed or percentile window once its bounds are known, as
/// [`Window::apply`] computes them.
fn clamp(window: &Window, values: &[f32]) -> Result<ChannelWindow, PreprocessError> {
    let (lo, hi) = window.bounds(values);
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return Err(PreprocessError::Flat { lo, hi });
    }
    Ok(ChannelWindow::Clamp {
        lower: lo,
        inv_span: 1.0 / span,
    })
}

/// The launch parameters for `pipeline` on `input`, and the channels whose
/// (percentile) window waits for the resized image.
pub fn plan(
    pipeline: &Pipeline,
    input: &Input,
    monochrome1: bool,
) -> Result<(Plan, Vec<usize>), GpuError> {
    pipeline.validate()?;
    if input.width == 0 || input.height == 0 {
        return Err(PreprocessError::Empty.into());
    }
    if pipeline.channels.len() > MAX_CHANNELS {
        return Err(GpuError::Channels(pipeline.channels.len()));
    }
    let shape = Image {
        width: input.width,
        height: input.height,
        values: Vec::new(),
    };
    let (rows, cols, top, left) = pipeline.placement(&shape);
    let xs = axis_taps(input.width, cols);
    let ys = axis_taps(input.height, rows);
    let mut pending = Vec::new();
    let mut windows = Vec::with_capacity(pipeline.channels.len());
    for (i, w) in pipeline.channels.iter().enumerate() {
        windows.push(match *w {
            Window::Fixed { .. } => clamp(w, &[])?,
            Window::Percentile { .. } => {
                pending.push(i);
                ChannelWindow::Clamp {
                    lower: 0.0,
                    inv_span: 0.0,
                }
            }
            Window::Linear { center, width } => {
                let (c, w) = (center - 0.5, width - 1.0);
                ChannelWindow::Linear {
                    c,
                    w,
                    lo: c - w / 2.0,
                    hi: c + w / 2.0,
                }
            }
            Window::Sigmoid { center, width } => ChannelWindow::Sigmoid { center, width },
            Window::Lut {
                first_mapped,
                ref values,
            } => ChannelWindow::Lut {
                first_mapped,
                values: values.clone(),
            },
        });
    }
    let plan = Plan {
        width: input.width,
        height: input.height,
        samples: input.samples,
        slope: input.slope,
        intercept: input.intercept,
        padding: input.padding,
        rows,
        cols,
        top,
        left,
        out_rows: pipeline.rows,
        out_cols: pipeline.cols,
        rows_first: rows_first(input.width, input.height, &xs, &ys),
        xs: flat(&xs),
        ys: flat(&ys),
        windows,
        invert: monochrome1 && pipeline.invert_monochrome1,
        mean: pipeline.normalize_mean,
        inv_std: 1.0 / pipeline.normalize_std,
    };
    Ok((plan, pending))
}

/// A pipeline ready to run on the GPU for images of one shape and format.
pub struct Prepared {
    kernel: Kernel,
    /// Percentile channels and their windows.
    pending: Vec<(usize, Window)>,
    /// The resized image, on the device and its host copy (two passes only).
    small: Option<(DeviceBuffer, Vec<f32>)>,
}

impl Prepared {
    pub fn new(
        pipeline: &Pipeline,
        input: &Input,
        monochrome1: bool,
        stream: &Stream,
    ) -> Result<Prepared, GpuError> {
        let (plan, pending) = plan(pipeline, input, monochrome1)?;
        let kernel = Kernel::new(&plan, stream)?;
        let small = if pending.is_empty() {
            None
        } else {
            let n = kernel.resized_len();
            Some((DeviceBuffer::new(n * 4)?, vec![0.0; n]))
        };
        Ok(Prepared {
            kernel,
            pending: pending
                .into_iter()
                .map(|i| (i, pipeline.channels[i].clone()))
                .collect(),
            small,
        })
    }

    /// Bytes of stored samples an image of this input holds.
    pub fn input_bytes(&self) -> usize {
        self.kernel.input_bytes()
    }

    /// Values of the output tensor (`channels × rows × cols`).
    pub fn output_len(&self) -> usize {
        self.kernel.output_len()
    }

    /// Kernel launches per image: 1, or 2 with a percentile window.
    pub fn passes(&self) -> usize {
        if self.pending.is_empty() {
            1
        } else {
            2
        }
    }

    /// Writes the model input for the samples in `src` into `dst`. With a
    /// percentile window this waits for the resize pass (the percentiles are
    /// taken on the host); otherwise it only queues the launch on `stream`.
    pub fn run(
        &mut self,
        src: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        stream: &Stream,
    ) -> Result<(), GpuError> {
        let Some((small, host)) = &mut self.small else {
            self.kernel.fused(src, dst, stream)?;
            return Ok(());
        };
        self.kernel.resize(src, small, stream)?;
        small.download(host, stream)?;
        for (channel, window) in &self.pending {
            self.kernel.set_window(*channel, &clamp(window, host)?)?;
        }
        self.kernel.window(small, dst, stream)?;
        Ok(())
    }
}

/// [`Pipeline::run`] on the GPU for an image whose stored samples are in
/// `bytes` (little-endian words, or f32 values): upload, preprocess, and
/// copy the tensor back.
pub fn run(
    pipeline: &Pipeline,
    input: &Input,
    bytes: &[u8],
    monochrome1: bool,
) -> Result<Vec<f32>, GpuError> {
    if device_count()? == 0 {
        return Err(GpuError::NoDevice);
    }
    if bytes.len() != input.bytes() {
        return Err(GpuError::Input {
            got: bytes.len(),
            want: input.bytes(),
        });
    }
    let stream = Stream::new()?;
    let mut prepared = Prepared::new(pipeline, input, monochrome1, &stream)?;
    let src = DeviceBuffer::from_slice(bytes, &stream)?;
    let mut dst = DeviceBuffer::new(prepared.output_len() * 4)?;
    prepared.run(&src, &mut dst, &stream)?;
    let mut out = vec![0.0f32; prepared.output_len()];
    dst.download(&mut out, &stream)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! No GPU here: the kernels' arithmetic, written again in Rust over the
    //! same [`Plan`], must give the CPU pipeline's numbers bit for bit. That
    //! checks the mapping (taps, order, placement, windows) the kernels get.

    use super::*;

    fn sample(plan: &Plan, bytes: &[u8], i: usize) -> Result<f32, i32> {
        let (bits, signed, stored) = match plan.samples {
            Samples::F32 => {
                let b = [
                    bytes[4 * i],
                    bytes[4 * i + 1],
                    bytes[4 * i + 2],
                    bytes[4 * i + 3],
                ];
                return Ok(f32::from_le_bytes(b));
            }
            Samples::Word8 {
                signed,
                bits_stored,
            } => (8, signed, bits_stored),
            Samples::Word16 {
                signed,
                bits_stored,
            } => (16, signed, bits_stored),
        };
        let shift = 32 - u32::from(stored);
        let w = if bits == 8 {
            u32::from(bytes[i])
        } else {
            u32::from(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]))
        } << shift;
        Err(if signed {
            (w as i32) >> shift
        } else {
            (w >> shift) as i32
        })
    }

    fn contribution(plan: &Plan, bytes: &[u8], x: usize, y: usize, w: f32) -> f32 {
        match sample(plan, bytes, y * plan.width + x) {
            Ok(v) => v * w,
            Err(v) => match plan.padding {
                Some((lo, hi, fill)) if (lo..=hi).contains(&i64::from(v)) => fill * w,
                _ => v as f32 * (plan.slope * w) + plan.intercept * w,
            },
        }
    }

    fn resample(plan: &Plan, bytes: &[u8], x: usize, y: usize) -> f32 {
        let (xs, ys) = (&plan.xs, &plan.ys);
        let (x0, xa, xn) = (
            xs.first[x] as usize,
            xs.at[x] as usize,
            (xs.at[x + 1] - xs.at[x]) as usize,
        );
        let (y0, ya, yn) = (
            ys.first[y] as usize,
            ys.at[y] as usize,
            (ys.at[y + 1] - ys.at[y]) as usize,
        );
        let mut acc = 0.0f32;
        if plan.rows_first {
            for k in 0..xn {
                let mut line = 0.0f32;
                for j in 0..yn {
                    line += contribution(plan, bytes, x0 + k, y0 + j, ys.weights[ya + j]);
                }
                acc += line * xs.weights[xa + k];
            }
        } else {
            for j in 0..yn {
                let mut across = 0.0f32;
                for k in 0..xn {
                    across += contribution(plan, bytes, x0 + k, y0 + j, 1.0) * xs.weights[xa + k];
                }
                acc += across * ys.weights[ya + j];
            }
        }
        acc
    }

    fn window(w: &ChannelWindow, x: f32) -> f32 {
        match *w {
            ChannelWindow::Clamp { lower, inv_span } => {
                let t = (x - lower) * inv_span;
                if t.is_nan() {
                    0.0
                } else {
                    t.clamp(0.0, 1.0)
                }
            }
            ChannelWindow::Linear { c, w, lo, hi } => {
                if x <= lo || x.is_nan() {
                    0.0
                } else if x > hi {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }
            ChannelWindow::Sigmoid { center, width } => {
                let y = 1.0 / (1.0 + (-4.0 * (x - center) / width).exp());
                if y.is_nan() {
                    0.0
                } else {
                    y
                }
            }
            ChannelWindow::Lut {
                first_mapped,
                ref values,
            } => {
                let at = (x - first_mapped).max(0.0);
                let last = values.len() - 1;
                values[if at.is_nan() {
                    0
                } else if at >= last as f32 {
                    last
                } else {
                    at as usize
                }]
            }
        }
    }

    /// What the resize pass, the host's percentiles and the window pass (or
    /// the fused pass) compute.
    fn emulate(
        pipeline: &Pipeline,
        input: &Input,
        bytes: &[u8],
        mono1: bool,
    ) -> Result<Vec<f32>, GpuError> {
        let (mut plan, pending) = plan(pipeline, input, mono1)?;
        let small: Vec<f32> = (0..plan.rows * plan.cols)
            .map(|i| resample(&plan, bytes, i % plan.cols, i / plan.cols))
            .collect();
        for i in pending {
            plan.windows[i] = clamp(&pipeline.channels[i], &small)?;
        }
        let plane = plan.out_rows * plan.out_cols;
        let mut out = vec![0.0f32; plane * plan.windows.len()];
        for oy in 0..plan.out_rows {
            for ox in 0..plan.out_cols {
                let inside = (plan.top..plan.top + plan.rows).contains(&oy)
                    && (plan.left..plan.left + plan.cols).contains(&ox);
                for (c, w) in plan.windows.iter().enumerate() {
                    out[c * plane + oy * plan.out_cols + ox] = if inside {
                        let v = small[(oy - plan.top) * plan.cols + ox - plan.left];
                        let mut v = window(w, v);
                        if plan.invert {
                            v = 1.0 - v;
                        }
                        (v - plan.mean) * plan.inv_std
                    } else {
                        (0.0 - plan.mean) * plan.inv_std
                    };
                }
            }
        }
        Ok(out)
    }

    fn noise(n: usize, seed: u64) -> impl Iterator<Item = u64> {
        let mut state = seed | 1;
        (0..n).map(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
    }

    fn pipeline(channels: Vec<Window>, rows: usize, cols: usize, letterbox: bool) -> Pipeline {
        Pipeline {
            channels,
            invert_monochrome1: true,
            rows,
            cols,
            letterbox,
            normalize_mean: 0.5,
            normalize_std: 0.25,
        }
    }

    fn all_windows() -> Vec<Window> {
        vec![
            Window::Fixed {
                center: 40.0,
                width: 80.0,
            },
            Window::Percentile {
                low: 0.5,
                high: 99.5,
            },
            Window::Linear {
                center: 300.0,
                width: 2000.0,
            },
            Window::Sigmoid {
                center: 100.0,
                width: 900.0,
            },
            Window::Lut {
                first_mapped: -500.0,
                values: (0..1500).map(|i| i as f32 / 1499.0).collect(),
            },
        ]
    }

    fn same(what: &str, gpu: &[f32], cpu: &[f32]) {
        assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
        for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
            assert!(
                g.to_bits() == c.to_bits() || g == c,
                "{what}: value {i}: {g} vs {c}"
            );
        }
    }

    /// f32 images (the decoded path) of every resize direction and both
    /// accumulation orders.
    #[test]
    fn kernel_arithmetic_matches_the_cpu_on_float_images() {
        let shapes = [
            (512, 512, 256, 256, true),
            (600, 450, 256, 256, true),
            (2048, 300, 128, 96, false),
            (300, 2048, 96, 128, true),
            (100, 75, 256, 256, true),
            (90, 300, 64, 512, false),
            (256, 256, 256, 256, false),
            (33, 1000, 40, 40, false),
        ];
        let mut orders = [false, false];
        for (k, &(w, h, rows, cols, letterbox)) in shapes.iter().enumerate() {
            let values: Vec<f32> = noise(w * h, k as u64 + 7)
                .enumerate()
                .map(|(i, r)| ((i % w) as f32 * 1.7 - (i / w) as f32) + (r % 400) as f32 - 900.0)
                .collect();
            let image = Image {
                width: w,
                height: h,
                values,
            };
            let input = Input {
                width: w,
                height: h,
                samples: Samples::F32,
                slope: 1.0,
                intercept: 0.0,
                padding: None,
            };
            let bytes: Vec<u8> = image.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let p = pipeline(all_windows(), rows, cols, letterbox);
            let (plan, _) = plan(&p, &input, false).unwrap();
            orders[usize::from(plan.rows_first)] = true;
            for mono1 in [false, true] {
                let cpu = p.run(&image, mono1).unwrap();
                let gpu = emulate(&p, &input, &bytes, mono1).unwrap();
                same(&format!("{w}x{h} to {cols}x{rows}"), &gpu, &cpu);
            }
        }
        assert_eq!(orders, [true, true], "both accumulation orders exercised");
    }

    #[cfg(feature = "dicom")]
    #[allow(clippy::too_many_arguments)]
    fn dicom(
        w: usize,
        h: usize,
        bits: u16,
        stored: u16,
        signed: bool,
        bytes: Vec<u8>,
        rescale: Option<(&str, &str)>,
        mono1: bool,
    ) -> dicom_object::DefaultDicomObject {
        use dicom_dictionary_std::tags;
        let rescale: Vec<_> = rescale
            .map(|(slope, intercept)| {
                vec![
                    (tags::RESCALE_SLOPE, slope),
                    (tags::RESCALE_INTERCEPT, intercept),
                ]
            })
            .unwrap_or_default();
        let photometric = if mono1 { "MONOCHROME1" } else { "MONOCHROME2" };
        crate::dicom::tests::grey_object(
            w as u16,
            h as u16,
            bits,
            stored,
            signed,
            photometric,
            bytes,
            &rescale,
        )
    }

    /// Stored words with the modality LUT applied while resampling, against
    /// the daemon's own path (the decoder's frame reader).
    #[cfg(feature = "dicom")]
    #[test]
    fn kernel_arithmetic_matches_the_cpu_on_stored_words() {
        use crate::dicom::Pixels;
        // (width, height, bits, stored, signed, rescale, MONOCHROME1, rows, cols, letterbox)
        let cases = [
            (
                512,
                512,
                16,
                16,
                true,
                Some(("1", "-1024")),
                false,
                256,
                256,
                true,
            ),
            (
                700,
                400,
                16,
                12,
                false,
                Some(("0.5", "-100")),
                true,
                256,
                200,
                true,
            ),
            (
                640,
                480,
                16,
                12,
                true,
                Some(("2", "-1024")),
                false,
                96,
                128,
                false,
            ),
            (120, 90, 8, 8, false, None, true, 256, 256, true),
            (
                333,
                222,
                8,
                7,
                true,
                Some(("3", "10")),
                false,
                64,
                64,
                false,
            ),
        ];
        for (k, &(w, h, bits, stored, signed, rescale, mono1, rows, cols, letterbox)) in
            cases.iter().enumerate()
        {
            let n = w * h;
            let bytes: Vec<u8> = if bits == 8 {
                noise(n, k as u64 + 3).map(|r| r as u8).collect()
            } else {
                noise(n, k as u64 + 3)
                    .enumerate()
                    .flat_map(|(i, r)| {
                        (((i % w) * 5 + (i / w) * 3) as u16 ^ (r as u16 & 0x03FF)).to_le_bytes()
                    })
                    .collect()
            };
            let obj = dicom(w, h, bits, stored, signed, bytes.clone(), rescale, mono1);
            let pixels = Pixels::first_frame(&obj).unwrap();
            let frame = pixels.frame(0).unwrap();
            assert_eq!(frame.monochrome1, mono1);
            let (slope, intercept) = rescale.map_or((1.0, 0.0), |(s, i)| {
                (s.parse().unwrap(), i.parse().unwrap())
            });
            let samples = if bits == 8 {
                Samples::Word8 {
                    signed,
                    bits_stored: stored,
                }
            } else {
                Samples::Word16 {
                    signed,
                    bits_stored: stored,
                }
            };
            let input = Input {
                width: w,
                height: h,
                samples,
                slope,
                intercept,
                padding: None,
            };
            let p = pipeline(all_windows(), rows, cols, letterbox);
            let cpu = p.run(&frame.image, mono1).unwrap();
            let gpu = emulate(&p, &input, &bytes, mono1).unwrap();
            same(&format!("case {k}"), &gpu, &cpu);
        }
    }

    #[test]
    fn plans_refuse_what_the_kernels_cannot_do() {
        let input = Input {
            width: 10,
            height: 10,
            samples: Samples::F32,
            slope: 1.0,
            intercept: 0.0,
            padding: None,
        };
        let nine = vec![
            Window::Fixed {
                center: 0.0,
                width: 1.0
            };
            MAX_CHANNELS + 1
        ];
        assert!(matches!(
            plan(&pipeline(nine, 8, 8, false), &input, false),
            Err(GpuError::Channels(9))
        ));
        let empty = Input { width: 0, ..input };
        let one = vec![Window::Percentile {
            low: 1.0,
            high: 99.0,
        }];
        assert!(matches!(
            plan(&pipeline(one.clone(), 8, 8, false), &empty, false),
            Err(GpuError::Preprocess(PreprocessError::Empty))
        ));
        // A flat image has no percentile window, on either path.
        let flat_image = vec![0u8; 400];
        assert!(matches!(
            emulate(&pipeline(one, 8, 8, false), &input, &flat_image, false),
            Err(GpuError::Preprocess(PreprocessError::Flat { .. }))
        ));
    }

    #[test]
    fn letterbox_geometry_and_taps_are_the_cpus() {
        let input = Input {
            width: 2048,
            height: 2500,
            samples: Samples::Word16 {
                signed: false,
                bits_stored: 12,
            },
            slope: 1.0,
            intercept: 0.0,
            padding: None,
        };
        let p = pipeline(all_windows(), 256, 256, true);
        let (plan, pending) = plan(&p, &input, true).unwrap();
        let shape = Image {
            width: 2048,
            height: 2500,
            values: Vec::new(),
        };
        assert_eq!(
            (plan.rows, plan.cols, plan.top, plan.left),
            p.placement(&shape)
        );
        assert_eq!(pending, vec![1]);
        assert!(plan.invert);
        assert_eq!(plan.xs.at.len(), plan.cols + 1);
        assert_eq!(plan.ys.first.len(), plan.rows);
        for (t, o) in [(&plan.xs, plan.cols), (&plan.ys, plan.rows)] {
            let spans = spans(if o == plan.cols { 2048 } else { 2500 }, o);
            assert_eq!(*t, flat(&spans));
        }
    }
}
