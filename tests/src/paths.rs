//! Where things are: the `firstlookd` binary, the Python helpers, free
//! ports, and per-test scratch folders.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// `target/release/firstlookd`, found from the test executable.
pub fn firstlookd_bin() -> PathBuf {
    release_bin("firstlookd")
}

/// A workspace binary (`target/release/<name>`), found from the test executable.
pub fn release_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    for dir in exe.ancestors().skip(1) {
        for candidate in [dir.join(name), dir.join("release").join(name)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{name} not found above {}: build it with cargo build --release --bins",
        exe.display()
    );
}

/// The committed demo bundle, `models/demo/firstlook-demo.flb`.
pub fn demo_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo/firstlook-demo.flb")
}

/// ONNX Runtime's library: `ORT_DYLIB_PATH` if set, else the one in the
/// PyPI `onnxruntime` wheel that scripts/install-test-deps installs.
pub fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*')))[0])")
        .output()
        .expect("python3");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && path.is_file(),
        "no libonnxruntime.so: install the onnxruntime wheel (scripts/install-test-deps)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A script of `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name);
    assert!(p.is_file(), "missing test script {}", p.display());
    p
}

/// A TCP port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A scratch folder for one test: removed at drop, except when the test is
/// failing (its path is then printed) or `FIRSTLOOK_E2E_KEEP` is set.
pub struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch folder").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() || std::env::var_os("FIRSTLOOK_E2E_KEEP").is_some() {
                let kept = dir.keep();
                eprintln!("scratch folder kept: {}", kept.display());
            }
        }
    }
}

/// A fresh scratch folder named after the test.
pub fn scratch(test: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("firstlook-e2e-{test}-"))
        .tempdir()
        .expect("create a scratch folder");
    Scratch(Some(dir))
}
