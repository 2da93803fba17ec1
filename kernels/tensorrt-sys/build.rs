//! Compiles the C++ shim against TensorRT's and CUDA's headers and
//! generates Rust bindings over its C header (feature `tensorrt`); compiles
//! the CUDA preprocessing kernels with nvcc and binds their C header
//! (feature `cuda`).

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
}

/// What `scripts/fetch-jetson-sdk` left in the workspace's target folder.
fn fetched(what: &str) -> PathBuf {
    manifest_dir().join("../../target/jetson-sdk").join(what)
}

/// `var` if set, else what `scripts/fetch-jetson-sdk` left in the
/// workspace's `target/jetson-sdk/<fetched>/include`.
fn dir(var: &str, fetched_as: &str, header: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    let d = match std::env::var_os(var) {
        Some(d) => PathBuf::from(d),
        None => fetched(fetched_as).join("include"),
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

fn out_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"))
}

fn main() {
    let tensorrt = std::env::var_os("CARGO_FEATURE_TENSORRT").is_some();
    if tensorrt {
        build_shim();
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_kernels(tensorrt);
    }
}

fn build_shim() {
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
    bindings
        .write_to_file(out_dir().join("bindings.rs"))
        .expect("write bindings.rs");
}

/// nvcc: `NVCC`, else `$CUDA_HOME/bin/nvcc`, else the PyPI one that
/// `scripts/fetch-jetson-sdk` unpacks, else the toolkit's usual place.
fn nvcc() -> PathBuf {
    for var in ["NVCC", "CUDA_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Some(n) = std::env::var_os("NVCC") {
        return PathBuf::from(n);
    }
    let candidates = [
        std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin/nvcc")),
        Some(fetched("cuda/bin/nvcc")),
        Some(PathBuf::from("/usr/local/cuda/bin/nvcc")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "feature `cuda` needs nvcc: set NVCC or CUDA_HOME, install the CUDA toolkit in \
                 /usr/local/cuda, or run scripts/fetch-jetson-sdk (PyPI's nvidia-cuda-nvcc)"
            )
        })
}

/// The folder holding `libcudart_static.a` beside nvcc's toolkit.
fn cudart_dir(nvcc: &Path) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=CUDA_LIB_DIR");
    if let Some(d) = std::env::var_os("CUDA_LIB_DIR") {
        return Some(PathBuf::from(d));
    }
    let top = nvcc.parent()?.parent()?;
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    [
        top.join("lib64"),
        top.join("lib"),
        top.join(format!("targets/{arch}-linux/lib")),
    ]
    .into_iter()
    .find(|d| d.join("libcudart_static.a").is_file())
}

fn build_kernels(with_tensorrt: bool) {
    let nvcc = nvcc();
    // cc looks nvcc up in the process environment only.
    std::env::set_var("NVCC", &nvcc);
    println!("cargo:rerun-if-changed=../cuda/fl_preprocess.h");
    println!("cargo:rerun-if-changed=../cuda/fl_preprocess.cu");
    println!("cargo:rerun-if-env-changed=CUDA_ARCH");
    let mut archs = vec!["87".to_string(), "90".to_string()];
    if let Ok(extra) = std::env::var("CUDA_ARCH") {
        for a in extra.split([',', ' ']).map(|a| a.trim().replace('.', "")) {
            if !a.is_empty() && !archs.contains(&a) {
                archs.push(a);
            }
        }
    }
    let mut build = cc::Build::new();
    build
        .cuda(true)
        // The runtime is linked below, shared with TensorRT's when both are on.
        .cudart("none")
        .file("../cuda/fl_preprocess.cu")
        .include("../cuda")
        .flag("-std=c++17")
        .flag("-fmad=false")
        .flag("-Werror=all-warnings");
    for a in &archs {
        build
            .flag("-gencode")
            .flag(format!("arch=compute_{a},code=sm_{a}"));
    }
    build.compile("fl_preprocess");
    if !with_tensorrt {
        if let Some(d) = cudart_dir(&nvcc) {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        println!("cargo:rustc-link-lib=static=cudart_static");
        for lib in ["dl", "rt", "pthread"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    let bindings = bindgen::Builder::default()
        .header("../cuda/fl_preprocess.h")
        .allowlist_function("fl_(pp|cu)_.*")
        .allowlist_type("Fl(Pp|Cu).*")
        .allowlist_var("FL_(PP|CU)_.*")
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen over kernels/cuda/fl_preprocess.h");
    bindings
        .write_to_file(out_dir().join("cuda_bindings.rs"))
        .expect("write cuda_bindings.rs");
}
