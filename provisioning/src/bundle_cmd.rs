//! `firstlook-provision bundle keygen|sign|verify|try|bench`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use firstlook::bundle::{self, Bundle, SecretKey, TrustStore};
use firstlook::config::EngineChoice;
use firstlook::model::{GoldenReport, Model, Variant};
use firstlook::pixels::modality_image;

#[derive(Subcommand)]
pub enum BundleAction {
    /// Make an ed25519 key pair: PREFIX.secret (mode 0600) and PREFIX.pub.
    Keygen {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Build and sign a bundle from a staging folder (manifest.toml, model.onnx, golden/, ...).
    Sign {
        #[arg(long, value_name = "SECRET")]
        key: PathBuf,
        #[arg(long, value_name = "STAGING")]
        dir: PathBuf,
        #[arg(long, value_name = "FILE.flb")]
        out: PathBuf,
    },
    /// Check a bundle: canonical container, manifest, every file's sha256, signature.
    Verify {
        /// A trusted public key file; repeat for more. Without any, the demo trust store is used.
        #[arg(long, value_name = "PUBFILE")]
        trust: Vec<PathBuf>,
        file: PathBuf,
    },
    /// Verify a bundle, prove it on its golden cases, then score DICOM files with it.
    Try {
        #[arg(long, value_name = "PUBFILE")]
        trust: Vec<PathBuf>,
        /// Run the INT8 model instead of the fp32 one.
        #[arg(long)]
        int8: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// One JSON object per file on stdout instead of text.
        #[arg(long)]
        json: bool,
        bundle: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Time the bundle's model on its first golden input (batch 1).
    Bench {
        #[arg(long, value_name = "PUBFILE")]
        trust: Vec<PathBuf>,
        #[arg(long)]
        int8: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// Timed runs after one warm-up run.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        bundle: PathBuf,
    },
}

/// Which inference backend runs the model.
#[derive(clap::Args, Clone, Copy)]
pub struct EngineArgs {
    /// tract, onnxruntime (needs ORT_DYLIB_PATH) or auto.
    #[arg(long, default_value = "tract", value_parser = EngineChoice::from_str)]
    engine: EngineChoice,
    /// Threads for engines that can use several (onnxruntime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(action: BundleAction) -> ExitCode {
    let result = match action {
        BundleAction::Keygen { out } => keygen(&out),
        BundleAction::Sign { key, dir, out } => sign(&key, &dir, &out),
        BundleAction::Verify { trust, file } => verify(&trust, &file),
        BundleAction::Try {
            trust,
            int8,
            engine,
            json,
            bundle,
            files,
        } => try_files(&trust, int8, engine, json, &bundle, &files),
        BundleAction::Bench {
            trust,
            int8,
            engine,
            runs,
            bundle,
        } => bench(&trust, int8, engine, runs, &bundle),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn keygen(prefix: &Path) -> Result<()> {
    let secret_path = with_suffix(prefix, ".secret");
    let public_path = with_suffix(prefix, ".pub");
    for path in [&secret_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            bail!("{} already exists; not overwriting it", path.display());
        }
    }
    let key = SecretKey::generate()?;
    write_new(&secret_path, key.to_text().as_bytes(), 0o600)?;
    write_new(&public_path, key.public_key().to_text().as_bytes(), 0o644)?;
    println!(
        "secret key: {} (keep it off the boxes)",
        secret_path.display()
    );
    println!("public key: {}", public_path.display());
    println!("key id:     {}", key.public_key().key_id());
    Ok(())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

fn sign(key_path: &Path, dir: &Path, out: &Path) -> Result<()> {
    let key = SecretKey::load(key_path)?;
    let bytes = bundle::build(dir, &key)?;
    let tmp = with_suffix(out, ".tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
    let mut own = TrustStore::new();
    own.add(key_path.display().to_string(), key.public_key());
    let bundle = Bundle::verify(bytes, &own)?;
    println!("{}: signed", out.display());
    describe(&bundle);
    Ok(())
}

fn open(trust_files: &[PathBuf], file: &Path) -> Result<Bundle> {
    if trust_files.is_empty() {
        eprintln!("no --trust given: using the demo trust store (the public demo TEST key only)");
    }
    let trust = TrustStore::from_key_files(trust_files)?;
    Bundle::open(file, &trust).map_err(|e| anyhow!("{}: {e}", file.display()))
}

fn verify(trust_files: &[PathBuf], file: &Path) -> Result<()> {
    let bundle = open(trust_files, file)?;
    println!("{}: OK", file.display());
    describe(&bundle);
    Ok(())
}

fn load(
    trust_files: &[PathBuf],
    file: &Path,
    int8: bool,
    engine: EngineArgs,
) -> Result<(Model, GoldenReport)> {
    let bundle = open(trust_files, file)?;
    let variant = if int8 { Variant::Int8 } else { Variant::Fp32 };
    // TensorRT engines built by this tool are kept apart from a daemon's.
    let cache = std::env::temp_dir().join("firstlook-provision-engines");
    let (model, report) =
        Model::load_with(bundle, variant, engine.engine, engine.threads, Some(&cache))
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    eprintln!(
        "{}: golden check passed on {} ({} cases, largest difference {:.2e})",
        file.display(),
        model.backend(),
        report.cases,
        report.max_abs_diff
    );
    Ok((model, report))
}

fn try_files(
    trust: &[PathBuf],
    int8: bool,
    engine: EngineArgs,
    json: bool,
    bundle: &Path,
    files: &[PathBuf],
) -> Result<()> {
    let (mut model, golden) = load(trust, bundle, int8, engine)?;
    if !json {
        eprintln!("{}", NOT_FOR_CLINICAL_USE);
    }
    for file in files {
        let obj = dicom_object::open_file(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let image = modality_image(&obj).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        let scores = model
            .score(&image)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        if json {
            let findings: serde_json::Map<String, serde_json::Value> = scores
                .findings
                .iter()
                .map(|f| {
                    (
                        f.id.clone(),
                        serde_json::json!({
                            "logit": f.logit,
                            "probability": f.probability,
                            "threshold": f.threshold,
                            "positive": f.positive,
                            "applicable": f.applicable,
                        }),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "file": file.display().to_string(),
                    "modality": image.modality,
                    "monochrome1": image.monochrome1,
                    "rows": image.image.height,
                    "columns": image.image.width,
                    "model": model.bundle().manifest().name,
                    "engine": model.backend(),
                    "golden_max_abs_diff": golden.max_abs_diff,
                    "clinical_use": model.bundle().manifest().clinical_use,
                    "findings": findings,
                })
            );
        } else {
            println!("{} ({}):", file.display(), image.modality);
            for f in scores.findings.iter().filter(|f| f.applicable) {
                println!(
                    "  {:<14} p={:.3}  logit {:+.3} vs threshold {:+.3}  {}",
                    f.id,
                    f.probability,
                    f.logit,
                    f.threshold,
                    if f.positive { "FLAGGED" } else { "-" }
                );
            }
        }
    }
    Ok(())
}

const NOT_FOR_CLINICAL_USE: &str =
    "Scores from a bundle with clinical_use = false are a demonstration, NOT FOR CLINICAL USE.";

fn bench(
    trust: &[PathBuf],
    int8: bool,
    engine: EngineArgs,
    runs: usize,
    bundle: &Path,
) -> Result<()> {
    let (mut model, _) = load(trust, bundle, int8, engine)?;
    let case = model
        .bundle()
        .manifest()
        .golden
        .cases
        .first()
        .map(|c| c.input.clone())
        .ok_or_else(|| anyhow!("the bundle has no golden input to time"))?;
    let array = firstlook_kernels::npy::decode(model.bundle().file(&case).unwrap_or_default())?;
    let input = firstlook_kernels::engine::Tensor::new(array.shape, array.data)?;
    model.run(&input)?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        model.run(&input)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "backend": model.backend(),
            "threads": engine.threads,
            "variant": if int8 { "int8" } else { "fp32" },
            "runs": ms.len(),
            "median_ms": ms[ms.len() / 2],
            "min_ms": ms[0],
            "max_ms": ms[ms.len() - 1],
        })
    );
    Ok(())
}

fn describe(bundle: &Bundle) {
    let m = bundle.manifest();
    let findings: Vec<String> = m
        .findings
        .iter()
        .map(|f| format!("{}{}", f.id, if f.urgent { " (urgent)" } else { "" }))
        .collect();
    println!("  name:         {}", m.name);
    println!("  version:      {}", m.version);
    println!("  clinical_use: {}", m.clinical_use);
    println!("  findings:     {}", findings.join(", "));
    println!(
        "  signed by:    {} (key id {})",
        bundle.signer().name,
        bundle.key_id()
    );
    println!("  sha256:       {}", bundle.sha256_hex());
}
