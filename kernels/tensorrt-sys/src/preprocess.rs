//! A safe face on the CUDA preprocessing kernels (`kernels/cuda`): device
//! and page-locked memory, streams and events, and the three launches with
//! every index the device will follow checked against the buffers first.
//!
//! Copies wait for their stream before returning, so no host memory is
//! read or written by the device after a call returns; launches do not
//! (device memory is only freed by `cudaFree`, which waits for the device).

use std::ffi::{c_void, CStr};

use crate::cuda_ffi as ffi;

const NO_DEVICE: i32 = 100;

/// A failed CUDA call, or arguments a launch refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaError {
    #[error("CUDA error {code}: {message}")]
    Runtime { code: i32, message: String },
    #[error("preprocessing arguments: {0}")]
    Argument(String),
}

fn check(code: i32) -> Result<(), CudaError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: cudaGetErrorString returns a static string for any code.
    let message = unsafe { CStr::from_ptr(ffi::fl_cu_error_string(code)) }
        .to_string_lossy()
        .into_owned();
    Err(CudaError::Runtime { code, message })
}

fn argument(message: impl Into<String>) -> CudaError {
    CudaError::Argument(message.into())
}

/// How many CUDA devices there are: 0 if the driver sees none; an error
/// without a driver or with one older than the runtime linked in.
pub fn device_count() -> Result<i32, CudaError> {
    let mut n = 0;
    // SAFETY: `n` outlives the call.
    match unsafe { ffi::fl_cu_device_count(&mut n) } {
        NO_DEVICE => Ok(0),
        code => check(code).map(|()| n),
    }
}

pub fn device_name(device: i32) -> Result<String, CudaError> {
    let mut name = [0u8; 256];
    // SAFETY: the shim writes at most `name.len()` bytes, NUL-terminated.
    check(unsafe { ffi::fl_cu_device_name(device, name.as_mut_ptr().cast(), name.len()) })?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// The device's compute capability, e.g. (8, 7) for a Jetson Orin.
pub fn compute_capability(device: i32) -> Result<(i32, i32), CudaError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both outlive the call.
    check(unsafe { ffi::fl_cu_compute_capability(device, &mut major, &mut minor) })?;
    Ok((major, minor))
}

/// A CUDA stream (non-blocking with respect to the default stream).
pub struct Stream(*mut c_void);

// SAFETY: a CUDA stream may be used from any host thread.
unsafe impl Send for Stream {}

impl Stream {
    pub fn new() -> Result<Stream, CudaError> {
        let mut s = std::ptr::null_mut();
        // SAFETY: `s` outlives the call.
        check(unsafe { ffi::fl_cu_stream_create(&mut s) })?;
        Ok(Stream(s))
    }

    pub fn synchronize(&self) -> Result<(), CudaError> {
        // SAFETY: the stream is alive while `self` is.
        check(unsafe { ffi::fl_cu_stream_synchronize(self.0) })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: created by fl_cu_stream_create, destroyed once.
        unsafe { ffi::fl_cu_stream_destroy(self.0) }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Plain values, any bit pattern valid: what may be copied to and from the
/// device as bytes.
pub trait Plain: sealed::Sealed + Copy {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Plain for $t {}
    )*};
}
plain!(u8, i8, u16, i16, u32, i32, f32);

/// Device memory.
pub struct DeviceBuffer {
    ptr: *mut c_void,
    bytes: usize,
}

// SAFETY: owned device memory, reachable only through `&self`/`&mut self`.
unsafe impl Send for DeviceBuffer {}

impl DeviceBuffer {
    pub fn new(bytes: usize) -> Result<DeviceBuffer, CudaError> {
        if bytes == 0 {
            return Err(argument("an empty device buffer"));
        }
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `ptr` outlives the call; freed in Drop.
        check(unsafe { ffi::fl_cu_malloc(&mut ptr, bytes) })?;
        Ok(DeviceBuffer { ptr, bytes })
    }

    /// A buffer holding `values`.
    pub fn from_slice<T: Plain>(values: &[T], stream: &Stream) -> Result<DeviceBuffer, CudaError> {
        let mut b = DeviceBuffer::new(std::mem::size_of_val(values))?;
        b.upload(values, stream)?;
        Ok(b)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn copy(
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        direction: u32,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        // SAFETY: callers check both sides hold `bytes`; the wait below
        // ends the device's use of host memory before it can change.
        check(unsafe { ffi::fl_cu_copy(dst, src, bytes, direction as i32, stream.0) })?;
        stream.synchronize()
    }

    /// Copies `src` to the start of the buffer.
    pub fn upload<T: Plain>(&mut self, src: &[T], stream: &Stream) -> Result<(), CudaError> {
        let bytes = std::mem::size_of_val(src);
        if bytes > self.bytes {
            return Err(argument(format!(
                "{bytes} bytes into a buffer of {}",
                self.bytes
            )));
        }
        Self::copy(
            self.ptr,
            src.as_ptr().cast(),
            bytes,
            ffi::FL_CU_TO_DEVICE,
            stream,
        )
    }

    /// Copies a page-locked buffer to the start of this one (the fastest
    /// host-to-device path).
    pub fn upload_pinned(&mut self, src: &PinnedBuffer, stream: &Stream) -> Result<(), CudaError> {
        if src.bytes > self.bytes {
            return Err(argument(format!(
                "{} bytes into a buffer of {}",
                src.bytes, self.bytes
            )));
        }
        Self::copy(self.ptr, src.ptr, src.bytes, ffi::FL_CU_TO_DEVICE, stream)
    }

    /// Fills `dst` from the start of the buffer.
    pub fn download<T: Plain>(&self, dst: &mut [T], stream: &Stream) -> Result<(), CudaError> {
        let bytes = std::mem::size_of_val(dst);
        if bytes > self.bytes {
            return Err(argument(format!(
                "{bytes} bytes from a buffer of {}",
                self.bytes
            )));
        }
        Self::copy(
            dst.as_mut_ptr().cast(),
            self.ptr,
            bytes,
            ffi::FL_CU_TO_HOST,
            stream,
        )
    }

    /// Copies all of `src` to the start of this buffer, device to device.
    pub fn copy_from(&mut self, src: &DeviceBuffer, stream: &Stream) -> Result<(), CudaError> {
        if src.bytes > self.bytes {
            return Err(argument(format!(
                "{} bytes into a buffer of {}",
                src.bytes, self.bytes
            )));
        }
        Self::copy(
            self.ptr,
            src.ptr,
            src.bytes,
            ffi::FL_CU_DEVICE_TO_DEVICE,
            stream,
        )
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by fl_cu_malloc, freed once; cudaFree waits for
        // work still using it.
        unsafe { ffi::fl_cu_free(self.ptr) }
    }
}

/// Page-locked host memory.
pub struct PinnedBuffer {
    ptr: *mut c_void,
    bytes: usize,
}

// SAFETY: owned host memory, reachable only through `&self`/`&mut self`.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    pub fn new(bytes: usize) -> Result<PinnedBuffer, CudaError> {
        if bytes == 0 {
            return Err(argument("an empty pinned buffer"));
        }
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `ptr` outlives the call; freed in Drop.
        check(unsafe { ffi::fl_cu_host_alloc(&mut ptr, bytes) })?;
        // SAFETY: `bytes` bytes just allocated, zeroed before any read.
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0, bytes) };
        Ok(PinnedBuffer { ptr, bytes })
    }

    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: `bytes` bytes owned by `self`, initialised in `new`; no
        // copy is in flight once a call returns.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.bytes) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by fl_cu_host_alloc, freed once.
        unsafe { ffi::fl_cu_host_free(self.ptr) }
    }
}

/// A CUDA event, for timing work on a stream.
pub struct Event(*mut c_void);

// SAFETY: CUDA events may be used from any host thread.
unsafe impl Send for Event {}

impl Event {
    pub fn new() -> Result<Event, CudaError> {
        let mut e = std::ptr::null_mut();
        // SAFETY: `e` outlives the call.
        check(unsafe { ffi::fl_cu_event_create(&mut e) })?;
        Ok(Event(e))
    }

    pub fn record(&self, stream: &Stream) -> Result<(), CudaError> {
        // SAFETY: both are alive while borrowed.
        check(unsafe { ffi::fl_cu_event_record(self.0, stream.0) })
    }

    /// Milliseconds from `self` to `end`, once `end` has happened.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32, CudaError> {
        let mut ms = 0.0f32;
        // SAFETY: both events are alive; `ms` outlives the call.
        check(unsafe { ffi::fl_cu_event_elapsed(self.0, end.0, &mut ms) })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created by fl_cu_event_create, destroyed once.
        unsafe { ffi::fl_cu_event_destroy(self.0) }
    }
}

/// How the input's samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Samples {
    /// 8-bit words: masked to `bits_stored`, sign-extended if `signed`.
    Word8 { signed: bool, bits_stored: u16 },
    /// 16-bit little-endian words, likewise.
    Word16 { signed: bool, bits_stored: u16 },
    /// Modality values already.
    F32,
}

impl Samples {
    pub fn size(self) -> usize {
        match self {
            Samples::Word8 { .. } => 1,
            Samples::Word16 { .. } => 2,
            Samples::F32 => 4,
        }
    }
}

/// Resampling taps along one axis, as the kernel reads them: output `o`
/// sums inputs `first[o]..first[o] + at[o + 1] - at[o]` with weights
/// `weights[at[o]..at[o + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Taps {
    pub first: Vec<i32>,
    pub at: Vec<i32>,
    pub weights: Vec<f32>,
}

/// One channel's window, its parameters worked out on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelWindow {
    /// `(x - lower) * inv_span` clamped to [0, 1], NaN to 0.
    Clamp {
        lower: f32,
        inv_span: f32,
    },
    /// DICOM LINEAR with `c = centre - 0.5`, `w = width - 1`, `lo = c - w / 2`,
    /// `hi = c + w / 2`.
    Linear {
        c: f32,
        w: f32,
        lo: f32,
        hi: f32,
    },
    Sigmoid {
        center: f32,
        width: f32,
    },
    Lut {
        first_mapped: f32,
        values: Vec<f32>,
    },
}

/// Everything a launch needs but the pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub width: usize,
    pub height: usize,
    pub samples: Samples,
    pub slope: f32,
    pub intercept: f32,
    /// Stored values in `lo..=hi` read as `fill`, a modality value.
    pub padding: Option<(i64, i64, f32)>,
    /// The resized image: `rows × cols` at (`top`, `left`) of the output.
    pub rows: usize,
    pub cols: usize,
    pub top: usize,
    pub left: usize,
    pub out_rows: usize,
    pub out_cols: usize,
    pub rows_first: bool,
    pub xs: Taps,
    pub ys: Taps,
    pub windows: Vec<ChannelWindow>,
    pub invert: bool,
    pub mean: f32,
    pub inv_std: f32,
}

/// The largest number of channels one launch writes.
pub const MAX_CHANNELS: usize = ffi::FL_PP_MAX_CHANNELS as usize;

fn int(v: usize, what: &str) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| argument(format!("{what} {v} is too large")))
}

/// Taps whose every read stays inside `0..input`.
fn check_taps(t: &Taps, input: usize, output: usize, axis: &str) -> Result<(), CudaError> {
    let bad = |m: &str| argument(format!("{axis} taps: {m}"));
    if t.first.len() != output || t.at.len() != output + 1 || t.at.first() != Some(&0) {
        return Err(bad("wrong length"));
    }
    if t.at.last().map(|&a| a as usize) != Some(t.weights.len()) {
        return Err(bad("offsets do not cover the weights"));
    }
    for o in 0..output {
        let n = t.at[o + 1] - t.at[o];
        if n < 0 || t.first[o] < 0 || (t.first[o] + n) as usize > input {
            return Err(bad(&format!("output {o} reads outside the input")));
        }
    }
    Ok(())
}

fn window_params(w: &ChannelWindow, lut_offset: usize) -> Result<ffi::FlPpWindow, CudaError> {
    let (kind, [a, b, c, d], len) = match *w {
        ChannelWindow::Clamp { lower, inv_span } => {
            (ffi::FL_PP_CLAMP, [lower, inv_span, 0.0, 0.0], 0)
        }
        ChannelWindow::Linear { c, w, lo, hi } => (ffi::FL_PP_LINEAR, [c, w, lo, hi], 0),
        ChannelWindow::Sigmoid { center, width } => {
            (ffi::FL_PP_SIGMOID, [center, width, 0.0, 0.0], 0)
        }
        ChannelWindow::Lut {
            first_mapped,
            ref values,
        } => {
            if values.is_empty() {
                return Err(argument("an empty VOI LUT"));
            }
            (ffi::FL_PP_LUT, [first_mapped, 0.0, 0.0, 0.0], values.len())
        }
    };
    Ok(ffi::FlPpWindow {
        kind: kind as i32,
        a,
        b,
        c,
        d,
        lut_offset: int(lut_offset, "LUT offset")?,
        lut_len: int(len, "LUT length")?,
    })
}

/// A [`Plan`] checked and its tables on the device, ready to launch.
pub struct Kernel {
    params: ffi::FlPpParams,
    // Referenced by `params`; kept alive with it.
    _tables: Vec<DeviceBuffer>,
    input_bytes: usize,
}

// SAFETY: the parameters point only into the tables the kernel owns.
unsafe impl Send for Kernel {}

impl Kernel {
    pub fn new(plan: &Plan, stream: &Stream) -> Result<Kernel, CudaError> {
        let channels = plan.windows.len();
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(argument(format!(
                "{channels} channels (1 to {MAX_CHANNELS})"
            )));
        }
        if plan.width == 0 || plan.height == 0 || plan.rows == 0 || plan.cols == 0 {
            return Err(argument("an empty image"));
        }
        if plan.top + plan.rows > plan.out_rows || plan.left + plan.cols > plan.out_cols {
            return Err(argument("the resized image does not fit the output"));
        }
        check_taps(&plan.xs, plan.width, plan.cols, "column")?;
        check_taps(&plan.ys, plan.height, plan.rows, "row")?;
        let (sample, signed, bits_stored) = match plan.samples {
            Samples::Word8 {
                signed,
                bits_stored,
            } if (1..=8).contains(&bits_stored) => (ffi::FL_PP_WORD8, signed, bits_stored),
            Samples::Word16 {
                signed,
                bits_stored,
            } if (1..=16).contains(&bits_stored) => (ffi::FL_PP_WORD16, signed, bits_stored),
            Samples::F32 => (ffi::FL_PP_F32, false, 32),
            _ => return Err(argument("bits stored outside the word")),
        };
        let input_bytes = plan
            .width
            .checked_mul(plan.height)
            .and_then(|n| n.checked_mul(plan.samples.size()))
            .ok_or_else(|| argument("the input is too large"))?;
        int(plan.width * plan.height, "pixel count")?;
        int(plan.out_rows * plan.out_cols * channels, "output size")?;

        let mut luts = Vec::new();
        let mut windows = [ffi::FlPpWindow {
            kind: 0,
            a: 0.0,
            b: 0.0,
            c: 0.0,
            d: 0.0,
            lut_offset: 0,
            lut_len: 0,
        }; MAX_CHANNELS];
        for (slot, w) in windows.iter_mut().zip(&plan.windows) {
            *slot = window_params(w, luts.len())?;
            if let ChannelWindow::Lut { values, .. } = w {
                luts.extend_from_slice(values);
            }
        }
        if luts.is_empty() {
            luts.push(0.0);
        }
        let upload_taps = |t: &Taps| -> Result<[DeviceBuffer; 3], CudaError> {
            let weights: &[f32] = if t.weights.is_empty() {
                &[0.0]
            } else {
                &t.weights
            };
            Ok([
                DeviceBuffer::from_slice(&t.first, stream)?,
                DeviceBuffer::from_slice(&t.at, stream)?,
                DeviceBuffer::from_slice(weights, stream)?,
            ])
        };
        let [xf, xa, xw] = upload_taps(&plan.xs)?;
        let [yf, ya, yw] = upload_taps(&plan.ys)?;
        let lut = DeviceBuffer::from_slice(&luts, stream)?;
        let taps = |f: &DeviceBuffer, a: &DeviceBuffer, w: &DeviceBuffer| ffi::FlPpTaps {
            first: f.ptr.cast_const().cast(),
            at: a.ptr.cast_const().cast(),
            weights: w.ptr.cast_const().cast(),
        };
        let (pad, (lo, hi, fill)) = match plan.padding {
            Some((lo, hi, fill)) => (
                1,
                (
                    lo.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                    hi.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                    fill,
                ),
            ),
            None => (0, (0, -1, 0.0)),
        };
        let params = ffi::FlPpParams {
            width: int(plan.width, "width")?,
            height: int(plan.height, "height")?,
            sample: sample as i32,
            is_signed: i32::from(signed),
            bits_stored: i32::from(bits_stored),
            slope: plan.slope,
            intercept: plan.intercept,
            has_padding: pad,
            padding_lo: lo,
            padding_hi: hi,
            fill,
            rows: int(plan.rows, "rows")?,
            cols: int(plan.cols, "cols")?,
            top: int(plan.top, "top")?,
            left: int(plan.left, "left")?,
            out_rows: int(plan.out_rows, "output rows")?,
            out_cols: int(plan.out_cols, "output columns")?,
            rows_first: i32::from(plan.rows_first),
            xs: taps(&xf, &xa, &xw),
            ys: taps(&yf, &ya, &yw),
            channels: channels as i32,
            windows,
            luts: lut.ptr.cast_const().cast(),
            invert: i32::from(plan.invert),
            mean: plan.mean,
            inv_std: plan.inv_std,
        };
        Ok(Kernel {
            params,
            _tables: vec![xf, xa, xw, yf, ya, yw, lut],
            input_bytes,
        })
    }

    /// Bytes of stored samples a launch reads.
    pub fn input_bytes(&self) -> usize {
        self.input_bytes
    }

    /// Values of the resized image ([`Kernel::resize`]).
    pub fn resized_len(&self) -> usize {
        self.params.rows as usize * self.params.cols as usize
    }

    /// Values of the output tensor.
    pub fn output_len(&self) -> usize {
        self.params.channels as usize
            * self.params.out_rows as usize
            * self.params.out_cols as usize
    }

    /// Replaces the window of `channel` (e.g. a percentile window, once the
    /// resized image's percentiles are known). Not with a LUT.
    pub fn set_window(&mut self, channel: usize, window: &ChannelWindow) -> Result<(), CudaError> {
        if channel >= self.params.channels as usize || matches!(window, ChannelWindow::Lut { .. }) {
            return Err(argument(format!(
                "cannot set channel {channel} to {window:?}"
            )));
        }
        self.params.windows[channel] = window_params(window, 0)?;
        Ok(())
    }

    fn fits(buffer: &DeviceBuffer, bytes: usize, what: &str) -> Result<(), CudaError> {
        if buffer.bytes < bytes {
            return Err(argument(format!(
                "{what} holds {} bytes, needs {bytes}",
                buffer.bytes
            )));
        }
        Ok(())
    }

    /// One pass from stored samples to the output tensor.
    pub fn fused(
        &self,
        src: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        Self::fits(src, self.input_bytes, "the input")?;
        Self::fits(dst, self.output_len() * 4, "the output")?;
        // SAFETY: the parameters' tables are alive and in bounds (checked in
        // `new`), and both buffers hold what the launch touches.
        check(unsafe { ffi::fl_pp_fused(&self.params, src.ptr, dst.ptr.cast(), stream.0) })
    }

    /// The resized image alone, `rows × cols` values.
    pub fn resize(
        &self,
        src: &DeviceBuffer,
        small: &mut DeviceBuffer,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        Self::fits(src, self.input_bytes, "the input")?;
        Self::fits(small, self.resized_len() * 4, "the resized image")?;
        // SAFETY: as in `fused`.
        check(unsafe { ffi::fl_pp_resize(&self.params, src.ptr, small.ptr.cast(), stream.0) })
    }

    /// From the resized image to the output tensor.
    pub fn window(
        &self,
        small: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        stream: &Stream,
    ) -> Result<(), CudaError> {
        Self::fits(small, self.resized_len() * 4, "the resized image")?;
        Self::fits(dst, self.output_len() * 4, "the output")?;
        // SAFETY: as in `fused`.
        check(unsafe {
            ffi::fl_pp_window(&self.params, small.ptr.cast(), dst.ptr.cast(), stream.0)
        })
    }
}
