//! A safe face on the shim: owned handles freed on drop, errors as values,
//! device memory only reachable through calls that cannot outlive it.

use std::ffi::{c_void, CStr, CString};
use std::sync::Arc;

use crate as ffi;

const OK: i32 = ffi::FL_OK as i32;
const ERR_CUDA: i32 = ffi::FL_ERR_CUDA as i32;
const ERR_TENSORRT: i32 = ffi::FL_ERR_TENSORRT as i32;
const ERR_ARGUMENT: i32 = ffi::FL_ERR_ARGUMENT as i32;

/// A failed shim call: its status code and TensorRT's or CUDA's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.code {
            ERR_CUDA => "CUDA",
            ERR_TENSORRT => "TensorRT",
            ERR_ARGUMENT => "argument",
            _ => "shim",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for Error {}

fn last_error(code: i32) -> Error {
    // SAFETY: the shim returns a pointer to its thread-local string, valid
    // until the next failing call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(ffi::fl_last_error()) }
        .to_string_lossy()
        .into_owned();
    Error { code, message }
}

fn check(code: i32) -> Result<(), Error> {
    if code == OK {
        Ok(())
    } else {
        Err(last_error(code))
    }
}

fn null_is_error<T>(p: *mut T) -> Result<*mut T, Error> {
    if p.is_null() {
        Err(last_error(ERR_TENSORRT))
    } else {
        Ok(p)
    }
}

/// TensorRT's version as `major * 10000 + minor * 100 + patch`: the headers
/// the shim was compiled against.
pub fn header_version() -> i32 {
    // SAFETY: no arguments, no state.
    unsafe { ffi::fl_trt_header_version() }
}

/// The TensorRT library loaded at run time, in the same form.
pub fn library_version() -> i32 {
    // SAFETY: no arguments; TensorRT answers without a device.
    unsafe { ffi::fl_trt_library_version() }
}

/// How many CUDA devices there are. Ask this before any TensorRT call:
/// without a driver TensorRT has been seen to crash after "CUDA
/// initialization failure".
pub fn cuda_devices() -> Result<i32, Error> {
    let mut n = 0;
    // SAFETY: `n` outlives the call.
    check(unsafe { ffi::fl_cuda_device_count(&mut n) })?;
    Ok(n)
}

/// The device's compute capability, e.g. (8, 7) for a Jetson Orin.
pub fn compute_capability(device: i32) -> Result<(i32, i32), Error> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both outlive the call.
    check(unsafe { ffi::fl_cuda_compute_capability(device, &mut major, &mut minor) })?;
    Ok((major, minor))
}

/// Whether the device shares the host's memory (a Jetson's iGPU).
pub fn integrated(device: i32) -> Result<bool, Error> {
    let mut v = 0;
    // SAFETY: `v` outlives the call.
    check(unsafe { ffi::fl_cuda_integrated(device, &mut v) })?;
    Ok(v != 0)
}

/// A CUDA stream.
pub struct Stream(*mut c_void);

// SAFETY: a CUDA stream may be used from any host thread.
unsafe impl Send for Stream {}

impl Stream {
    pub fn new() -> Result<Stream, Error> {
        let mut s = std::ptr::null_mut();
        // SAFETY: `s` outlives the call.
        check(unsafe { ffi::fl_cuda_stream_create(&mut s) })?;
        Ok(Stream(s))
    }

    pub fn synchronize(&self) -> Result<(), Error> {
        // SAFETY: the stream is alive while `self` is.
        check(unsafe { ffi::fl_cuda_stream_synchronize(self.0) })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: created by fl_cuda_stream_create, destroyed once.
        unsafe { ffi::fl_cuda_stream_destroy(self.0) }
    }
}

/// `f32` values the device can read and write: page-locked host memory
/// mapped into the device's address space where the GPU shares the host's
/// DRAM (no copy), else device memory with a host copy beside it.
pub struct TensorBuffer {
    host: HostMemory,
    device: *mut c_void,
    len: usize,
}

enum HostMemory {
    Mapped(*mut f32),
    Separate(Vec<f32>),
}

// SAFETY: the memory is owned by the buffer and used by one thread at a time.
unsafe impl Send for TensorBuffer {}

impl TensorBuffer {
    pub fn new(len: usize, mapped: bool) -> Result<TensorBuffer, Error> {
        let bytes = len
            .checked_mul(std::mem::size_of::<f32>())
            .filter(|&b| b > 0)
            .ok_or_else(|| Error {
                code: ERR_ARGUMENT,
                message: format!("a tensor of {len} values cannot be allocated"),
            })?;
        if mapped {
            let (mut host, mut device) = (std::ptr::null_mut(), std::ptr::null_mut());
            // SAFETY: both outlive the call; freed in Drop.
            check(unsafe { ffi::fl_cuda_host_alloc_mapped(&mut host, &mut device, bytes) })?;
            // SAFETY: `bytes` of page-locked memory, zeroed before first use.
            unsafe { std::ptr::write_bytes(host.cast::<u8>(), 0, bytes) };
            Ok(TensorBuffer {
                host: HostMemory::Mapped(host.cast()),
                device,
                len,
            })
        } else {
            let mut device = std::ptr::null_mut();
            // SAFETY: `device` outlives the call; freed in Drop.
            check(unsafe { ffi::fl_cuda_malloc(&mut device, bytes) })?;
            Ok(TensorBuffer {
                host: HostMemory::Separate(vec![0.0; len]),
                device,
                len,
            })
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host side. Meaningful between runs only: a run finishes (the
    /// stream synchronised) before [`Context::run`] returns.
    pub fn host(&self) -> &[f32] {
        match &self.host {
            // SAFETY: `len` floats allocated in `new`, alive while `self` is.
            HostMemory::Mapped(p) => unsafe { std::slice::from_raw_parts(*p, self.len) },
            HostMemory::Separate(v) => v,
        }
    }

    pub fn host_mut(&mut self) -> &mut [f32] {
        match &mut self.host {
            // SAFETY: as in `host`, and `&mut self` makes the access exclusive.
            HostMemory::Mapped(p) => unsafe { std::slice::from_raw_parts_mut(*p, self.len) },
            HostMemory::Separate(v) => v,
        }
    }

    fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<f32>()
    }

    fn upload(&self, stream: &Stream) -> Result<(), Error> {
        match &self.host {
            HostMemory::Mapped(_) => Ok(()),
            // SAFETY: both sides hold `bytes()`; the stream is synchronised
            // before the host vector can change again.
            HostMemory::Separate(v) => check(unsafe {
                ffi::fl_cuda_copy_to_device(self.device, v.as_ptr().cast(), self.bytes(), stream.0)
            }),
        }
    }

    fn download(&mut self, stream: &Stream) -> Result<(), Error> {
        let bytes = self.bytes();
        match &mut self.host {
            HostMemory::Mapped(_) => Ok(()),
            // SAFETY: as in `upload`.
            HostMemory::Separate(v) => check(unsafe {
                ffi::fl_cuda_copy_to_host(v.as_mut_ptr().cast(), self.device, bytes, stream.0)
            }),
        }
    }
}

impl Drop for TensorBuffer {
    fn drop(&mut self) {
        match self.host {
            // SAFETY: allocated by fl_cuda_host_alloc_mapped, freed once.
            HostMemory::Mapped(p) => unsafe { ffi::fl_cuda_host_free(p.cast()) },
            // SAFETY: allocated by fl_cuda_malloc, freed once.
            HostMemory::Separate(_) => unsafe { ffi::fl_cuda_free(self.device) },
        }
    }
}

/// Where TensorRT's log lines go: severity (0 internal error … 4 verbose)
/// and the message. TensorRT has one logger per process.
pub type Log = fn(i32, &str);

static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();

/// Sends TensorRT's log lines to `log`, for the rest of the process; the
/// first call wins. Without it they are dropped.
pub fn set_log(log: Log) {
    let _ = LOG.set(log);
    // SAFETY: the trampoline is a static function and takes no user data.
    unsafe { ffi::fl_trt_set_log(Some(log_trampoline), std::ptr::null_mut()) }
}

unsafe extern "C" fn log_trampoline(
    _user: *mut c_void,
    severity: i32,
    message: *const std::ffi::c_char,
) {
    let Some(log) = LOG.get() else { return };
    if message.is_null() {
        return;
    }
    // SAFETY: a C string valid for this call.
    let text = unsafe { CStr::from_ptr(message) };
    log(severity, &text.to_string_lossy());
}

struct RuntimeInner {
    raw: *mut ffi::FlTrtRuntime,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        // SAFETY: created by fl_trt_runtime_create; every engine holds an
        // Arc of this, so none outlives it.
        unsafe { ffi::fl_trt_runtime_destroy(self.raw) }
    }
}

// SAFETY: TensorRT's runtime may be used from any thread, one at a time.
unsafe impl Send for RuntimeInner {}
unsafe impl Sync for RuntimeInner {}

/// TensorRT's runtime: deserialises engines.
pub struct Runtime(Arc<RuntimeInner>);

impl Runtime {
    /// Log lines go where [`set_log`] said.
    pub fn new() -> Result<Runtime, Error> {
        // SAFETY: the trampoline is static and takes no user data.
        let raw = null_is_error(unsafe {
            ffi::fl_trt_runtime_create(Some(log_trampoline), std::ptr::null_mut())
        })?;
        Ok(Runtime(Arc::new(RuntimeInner { raw })))
    }

    /// An engine from a serialised plan made by [`build`] on this device.
    pub fn deserialize(&self, plan: &[u8]) -> Result<Engine, Error> {
        // SAFETY: the plan outlives the call; TensorRT copies what it needs.
        let raw = null_is_error(unsafe {
            ffi::fl_trt_engine_deserialize(self.0.raw, plan.as_ptr().cast(), plan.len())
        })?;
        Ok(Engine(Arc::new(EngineInner {
            raw,
            _runtime: Arc::clone(&self.0),
        })))
    }
}

struct EngineInner {
    raw: *mut ffi::FlTrtEngine,
    _runtime: Arc<RuntimeInner>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        // SAFETY: every context holds an Arc of this, so none outlives it.
        unsafe { ffi::fl_trt_engine_destroy(self.raw) }
    }
}

// SAFETY: an engine is immutable once built; TensorRT allows sharing it.
unsafe impl Send for EngineInner {}
unsafe impl Sync for EngineInner {}

/// One input or output of an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub is_input: bool,
    pub shape: Vec<i64>,
    /// One of `FL_FLOAT`, `FL_HALF`, ...
    pub data_type: i32,
}

/// A deserialised engine.
pub struct Engine(Arc<EngineInner>);

impl Engine {
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let raw = self.0.raw;
        // SAFETY: the engine is alive; names are valid while it is.
        let n = unsafe { ffi::fl_trt_engine_io_count(raw) };
        (0..n)
            .filter_map(|i| {
                // SAFETY: `i` is within the count just read.
                let name = unsafe { ffi::fl_trt_engine_io_name(raw, i) };
                if name.is_null() {
                    return None;
                }
                // SAFETY: a C string owned by the engine.
                let c_name = unsafe { CStr::from_ptr(name) };
                let mut dims = [0i64; 8];
                // SAFETY: `dims` holds the capacity passed.
                let nb = unsafe {
                    ffi::fl_trt_engine_io_shape(raw, name, dims.as_mut_ptr(), dims.len() as i32)
                };
                let nb = usize::try_from(nb).ok()?.min(dims.len());
                Some(TensorInfo {
                    name: c_name.to_string_lossy().into_owned(),
                    // SAFETY: a name the engine just gave.
                    is_input: unsafe { ffi::fl_trt_engine_io_is_input(raw, name) } == 1,
                    shape: dims[..nb].to_vec(),
                    // SAFETY: as above.
                    data_type: unsafe { ffi::fl_trt_engine_io_type(raw, name) },
                })
            })
            .collect()
    }

    pub fn context(&self) -> Result<Context, Error> {
        let tensors = self.tensors();
        // SAFETY: the engine is alive; the context keeps it so.
        let raw = null_is_error(unsafe { ffi::fl_trt_context_create(self.0.raw) })?;
        Ok(Context {
            raw,
            tensors,
            _engine: Arc::clone(&self.0),
        })
    }
}

/// An execution context: runs the engine on buffers.
pub struct Context {
    raw: *mut ffi::FlTrtContext,
    tensors: Vec<TensorInfo>,
    _engine: Arc<EngineInner>,
}

// SAFETY: a context is used by one thread at a time (`&mut self`).
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by fl_trt_context_create, destroyed once.
        unsafe { ffi::fl_trt_context_destroy(self.raw) }
    }
}

impl Context {
    /// Runs once: uploads the inputs' host sides, binds every tensor by
    /// name, enqueues, waits for the stream and downloads the outputs. The
    /// borrows keep every buffer alive and untouched until it returns.
    pub fn run(
        &mut self,
        stream: &Stream,
        inputs: &[(&str, &TensorBuffer)],
        outputs: &mut [(&str, &mut TensorBuffer)],
    ) -> Result<(), Error> {
        self.check_bindings(inputs, outputs)?;
        let bind = |name: &str, device: *mut c_void| -> Result<(), Error> {
            let c = CString::new(name).map_err(|_| Error {
                code: ERR_ARGUMENT,
                message: format!("tensor name {name:?} has a NUL byte"),
            })?;
            // SAFETY: the buffer behind `device` is borrowed for this call,
            // which waits for the stream before returning.
            check(unsafe { ffi::fl_trt_context_set_address(self.raw, c.as_ptr(), device) })
        };
        for (name, buf) in inputs {
            buf.upload(stream)?;
            bind(name, buf.device)?;
        }
        for (name, buf) in outputs.iter() {
            bind(name, buf.device)?;
        }
        // SAFETY: every address bound above is alive until the stream is
        // synchronised below.
        let enqueued = check(unsafe { ffi::fl_trt_context_enqueue(self.raw, stream.0) });
        let synced = stream.synchronize();
        enqueued?;
        synced?;
        for (_, buf) in outputs.iter_mut() {
            buf.download(stream)?;
        }
        stream.synchronize()
    }
}

impl Context {
    /// Every tensor of the engine bound exactly once, inputs as inputs,
    /// outputs as outputs, each buffer as long as its tensor and the tensor
    /// `f32`: TensorRT must never read or write past a buffer, nor through
    /// an address bound by an earlier run.
    fn check_bindings(
        &self,
        inputs: &[(&str, &TensorBuffer)],
        outputs: &[(&str, &mut TensorBuffer)],
    ) -> Result<(), Error> {
        let wrong = |message: String| Error {
            code: ERR_ARGUMENT,
            message,
        };
        let given = inputs
            .iter()
            .map(|(n, b)| (*n, b.len(), true))
            .chain(outputs.iter().map(|(n, b)| (*n, b.len(), false)));
        let mut seen = 0;
        for (name, len, is_input) in given {
            let t = self
                .tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| wrong(format!("the engine has no tensor {name}")))?;
            if t.is_input != is_input || t.data_type != ffi::FL_FLOAT as i32 {
                return Err(wrong(format!(
                    "tensor {name} bound the wrong way or not f32"
                )));
            }
            let elements = t
                .shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
            if elements != Some(len) {
                return Err(wrong(format!(
                    "tensor {name} has shape {:?}; its buffer holds {len} values",
                    t.shape
                )));
            }
            seen += 1;
        }
        if seen != self.tensors.len() {
            return Err(wrong(format!(
                "{seen} buffers for {} tensors (each once)",
                self.tensors.len()
            )));
        }
        Ok(())
    }
}

/// How to build an engine.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions<'a> {
    pub fp16: bool,
    /// INT8 kernels: for a model with Q/DQ nodes, or with
    /// `calibration_cache` for one without (TensorRT 10).
    pub int8: bool,
    pub calibration_cache: Option<&'a [u8]>,
    pub workspace_bytes: usize,
}

/// Builds a serialised engine (a plan) from an ONNX model on this device.
/// Minutes on a Jetson: cache the result. Log lines go where [`set_log`]
/// said.
pub fn build(onnx: &[u8], options: &BuildOptions<'_>) -> Result<Vec<u8>, Error> {
    let cache = options.calibration_cache.unwrap_or(&[]);
    let raw_options = ffi::FlTrtBuildOptions {
        fp16: i32::from(options.fp16),
        int8: i32::from(options.int8),
        calibration_cache: cache.as_ptr().cast(),
        calibration_cache_bytes: cache.len(),
        workspace_bytes: options.workspace_bytes,
    };
    let mut blob = std::ptr::null_mut();
    // SAFETY: every pointer outlives the call.
    check(unsafe {
        ffi::fl_trt_build(
            onnx.as_ptr().cast(),
            onnx.len(),
            &raw_options,
            Some(log_trampoline),
            std::ptr::null_mut(),
            &mut blob,
        )
    })?;
    // SAFETY: a blob the build made; copied out, then freed once.
    let plan = unsafe {
        let data = ffi::fl_trt_blob_data(blob).cast::<u8>();
        let plan = std::slice::from_raw_parts(data, ffi::fl_trt_blob_size(blob)).to_vec();
        ffi::fl_trt_blob_destroy(blob);
        plan
    };
    Ok(plan)
}
