//! Compiles the C++ shim against TensorRT's and CUDA's headers and
//! generates Rust bindings over its C header.

use std::path::PathBuf;

/// `var` if set, else what `scripts/fetch-jetson-sdk` left in the
/// workspace's `target/jetson-sdk/<fetched>/include`.
fn dir(var: &str, fetched: &str, header: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let d = match std::env::var_os(var) {
        Some(d) => PathBuf::from(d),
        None => manifest
            .join("../../target/jetson-sdk")
            .join(fetched)
            .join("include"),
    };
    if !d.join(header).is_file() {
        panic!(
            "no {header} in {}: set {var} to the folder that has it (on a Jetson, JetPack's: \
             /usr/include/aarch64-linux-gnu for TensorRT, /usr/local/cuda/include for CUDA), \
             or run scripts/fetch-jetson-sdk for build-time headers",
            d.display()
        );
    }
    println!("cargo:rerun-if-changed={}", d.join(header).display());
    d
}

fn main() {
    let trt = dir("TENSORRT_INCLUDE_DIR", "tensorrt", "NvInfer.h");
    let cuda = dir("CUDA_INCLUDE_DIR", "cuda", "cuda_runtime_api.h");
    println!("cargo:rerun-if-changed=shim/fl_trt.h");
    println!("cargo:rerun-if-changed=shim/fl_trt.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("shim/fl_trt.cpp")
        .include("shim")
        // System includes: their own deprecation warnings are not ours.
        .flag(format!("-isystem{}", trt.display()))
        .flag(format!("-isystem{}", cuda.display()))
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("fl_trt");
    for (var, lib) in [
        ("TENSORRT_LIB_DIR", "nvinfer"),
        ("TENSORRT_LIB_DIR", "nvonnxparser"),
        ("CUDA_LIB_DIR", "cudart"),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(d) = std::env::var_os(var) {
            println!(
                "cargo:rustc-link-search=native={}",
                PathBuf::from(d).display()
            );
        }
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    let bindings = bindgen::Builder::default()
        .header("shim/fl_trt.h")
        .allowlist_function("fl_.*")
        .allowlist_type("Fl.*")
        .allowlist_var("FL_.*")
        // Status and type codes arrive as plain integers: constants, not Rust enums.
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen over shim/fl_trt.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
