//! `firstlook-phantom`: writes a deterministic synthetic DICOM study to a folder.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use firstlook_phantom::{write_study, Finding, Kind, StudySpec};

/// Write a synthetic (phantom) DICOM study as Part-10 files named
/// `<SOPInstanceUID>.dcm`. The same arguments always give the same files.
#[derive(Debug, Parser)]
#[command(name = "firstlook-phantom", version, about)]
struct Args {
    /// Modality: head CT or chest CR.
    #[arg(long, value_enum)]
    kind: Kind,

    /// Finding to draw (hemorrhage for CT; pneumothorax or effusion for CR).
    #[arg(long, value_enum, default_value_t = Finding::None)]
    finding: Finding,

    /// Seed: UIDs, patient, dates and pixels all follow from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,

    /// Number of instances (CT slices or CR images); default CT 40, CR 1.
    #[arg(long)]
    count: Option<usize>,

    /// Columns (default CT 512, CR 1024).
    #[arg(long)]
    width: Option<u32>,

    /// Rows (default CT 512, CR 1024).
    #[arg(long)]
    height: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = StudySpec {
        kind: args.kind,
        finding: args.finding,
        seed: args.seed,
        count: args.count.unwrap_or_else(|| args.kind.default_count()),
        width: args.width,
        height: args.height,
    };
    let paths = write_study(&spec, &args.out).with_context(|| {
        format!(
            "writing {} phantom (finding {}, seed {}) to {}",
            spec.kind,
            spec.finding,
            spec.seed,
            args.out.display()
        )
    })?;
    println!("wrote {} files to {}", paths.len(), args.out.display());
    Ok(())
}
