//! Raw bindings over `shim/fl_trt.h`, a C interface to TensorRT (10.x and
//! 11.x) and the CUDA runtime calls its backend needs, and [`safe`], the
//! safe face the `tensorrt` engine of `firstlook-kernels` uses (feature
//! `tensorrt`, on by default).
//!
//! Building needs TensorRT's headers in `TENSORRT_INCLUDE_DIR` and the CUDA
//! runtime's in `CUDA_INCLUDE_DIR`; linking needs `libnvinfer`,
//! `libnvonnxparser` and `libcudart` (`TENSORRT_LIB_DIR`, `CUDA_LIB_DIR`).
//!
//! Feature `cuda`: the preprocessing kernels of `kernels/cuda`
//! ([`cuda_ffi`] raw, [`preprocess`] safe), built with nvcc (`NVCC`,
//! `CUDA_HOME`, `target/jetson-sdk/cuda/bin/nvcc` from
//! `scripts/fetch-jetson-sdk`, or `/usr/local/cuda/bin/nvcc`). Without
//! `tensorrt` the CUDA runtime is linked statically.
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

#[cfg(feature = "tensorrt")]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(feature = "tensorrt")]
pub mod safe;

/// Raw bindings over `kernels/cuda/fl_preprocess.h`.
#[cfg(feature = "cuda")]
pub mod cuda_ffi {
    #![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
    include!(concat!(env!("OUT_DIR"), "/cuda_bindings.rs"));
}

#[cfg(feature = "cuda")]
pub mod preprocess;
