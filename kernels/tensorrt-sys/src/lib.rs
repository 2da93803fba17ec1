//! Raw bindings over `shim/fl_trt.h`, a C interface to TensorRT (10.x and
//! 11.x) and the CUDA runtime calls its backend needs, and [`safe`], the
//! safe face the `tensorrt` engine of `firstlook-kernels` uses.
//!
//! Building needs TensorRT's headers in `TENSORRT_INCLUDE_DIR` and the CUDA
//! runtime's in `CUDA_INCLUDE_DIR`; linking needs `libnvinfer`,
//! `libnvonnxparser` and `libcudart` (`TENSORRT_LIB_DIR`, `CUDA_LIB_DIR`).
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

pub mod safe;
