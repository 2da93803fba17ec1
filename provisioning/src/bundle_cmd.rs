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
        /// Start a timed run every MS milliseconds of the clock, idle in
        /// between, as a scanner paces its images (the model then starts
        /// with cold caches, as in the daemon); 0: back to back.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        interval_ms: u64,
        /// With --interval-ms: start each run this far into the clock's
        /// period, to fall between another paced load's on the same machine.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        phase_ms: u64,
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
            interval_ms,
            phase_ms,
            bundle,
        } => bench(
            &trust,
            int8,
            engine,
            runs,
            Pace::new(interval_ms, phase_ms),
            &bundle,
        ),
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
    pace: Pace,
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
        pace.wait();
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
            "interval_ms": pace.interval_ms,
            "phase_ms": pace.phase_ms,
            "median_ms": ms[ms.len() / 2],
            "min_ms": ms[0],
            "max_ms": ms[ms.len() - 1],
            "samples_ms": ms,
        })
    );
    Ok(())
}

/// When `bundle bench` starts each timed run.
#[derive(Debug, Clone, Copy)]
struct Pace {
    interval_ms: u64,
    phase_ms: u64,
}

impl Pace {
    fn new(interval_ms: u64, phase_ms: u64) -> Pace {
        Pace {
            interval_ms,
            phase_ms: if interval_ms > 0 {
                phase_ms % interval_ms
            } else {
                0
            },
        }
    }

    /// Sleeps until the next start: `phase_ms` past a multiple of
    /// `interval_ms` of Unix time. Never sleeps when back to back.
    fn wait(&self) {
        if let Some(delay) = self.delay(std::time::SystemTime::now()) {
            std::thread::sleep(delay);
        }
    }

    fn delay(&self, now: std::time::SystemTime) -> Option<std::time::Duration> {
        if self.interval_ms == 0 {
            return None;
        }
        let now_us = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
        let (period, phase) = (
            u128::from(self.interval_ms) * 1000,
            u128::from(self.phase_ms) * 1000,
        );
        let into = (now_us + period - phase) % period;
        // A start less than a millisecond away is taken as missed: the next.
        let wait = if period - into < 1000 {
            2 * period - into
        } else {
            period - into
        };
        Some(std::time::Duration::from_micros(wait as u64))
    }
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

#[cfg(test)]
mod tests {
    use super::Pace;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn paced_runs_start_on_the_clock_grid_at_their_phase() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        let back_to_back = Pace::new(0, 125);
        assert_eq!(back_to_back.delay(at(1_000_000)), None);
        let paced = Pace::new(250, 125);
        assert_eq!(ms(paced.delay(at(1_000_000))), Some(125));
        assert_eq!(ms(paced.delay(at(1_000_100))), Some(25));
        assert_eq!(ms(paced.delay(at(1_000_126))), Some(249));
        // Just missed: the next start, not one a few microseconds away.
        assert_eq!(ms(paced.delay(at(1_000_125))), Some(250));
        assert_eq!(Pace::new(250, 375).phase_ms, 125);
        assert_eq!(ms(Pace::new(250, 0).delay(at(1_000_010))), Some(240));
    }
}
