//! `firstlook-phantom`: writes a deterministic synthetic DICOM study to a
//! folder, or labelled training arrays for the model recipe.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use firstlook_phantom::training::{write_training_set, TrainingSpec};
use firstlook_phantom::{write_study, Finding, Kind, StudySpec};

/// Write a synthetic (phantom) DICOM study as Part-10 files named
/// `<SOPInstanceUID>.dcm`. The same arguments always give the same files.
/// Synthetic data: not for clinical use.
#[derive(Debug, Parser)]
#[command(
    name = "firstlook-phantom",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Modality: head CT, or chest radiograph as CR or DX.
    #[arg(long, value_enum, required = true)]
    kind: Option<Kind>,

    /// Finding to draw (hemorrhage for CT; pneumothorax or effusion for CR/DX).
    #[arg(long, value_enum, default_value_t = Finding::None)]
    finding: Finding,

    /// Seed: UIDs, patient, dates, anatomy and pixels all follow from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Output folder (created if missing).
    #[arg(long, required = true)]
    out: Option<PathBuf>,

    /// Number of instances (CT slices or radiographs); default CT 40, CR/DX 1.
    #[arg(long)]
    count: Option<usize>,

    /// Columns (default CT 512, CR/DX 2048).
    #[arg(long)]
    width: Option<u32>,

    /// Rows (default CT 512, CR/DX 2500).
    #[arg(long)]
    height: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Labelled training arrays (images.npy, masks.npy, labels.npy, meta.json),
    /// preprocessed as the daemon preprocesses incoming images.
    Training {
        /// Seed of the whole set; use different seeds for training and held-out sets.
        #[arg(long)]
        seed: u64,
        /// Number of samples (chest normal/pneumothorax/effusion, head normal/haemorrhage in turn).
        #[arg(long)]
        count: usize,
        /// Output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Model input side.
        #[arg(long, default_value_t = 256)]
        side: usize,
        /// Heatmap side.
        #[arg(long, default_value_t = 32)]
        heat: usize,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Training {
        seed,
        count,
        out,
        side,
        heat,
        threads,
    }) = args.command
    {
        anyhow::ensure!(
            count > 0 && side >= 8 && heat >= 1 && heat <= side,
            "invalid training set size"
        );
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        write_training_set(
            &TrainingSpec {
                seed,
                count,
                side,
                heat,
            },
            &out,
            threads,
        )
        .with_context(|| format!("writing training arrays to {}", out.display()))?;
        println!("wrote {count} training samples to {}", out.display());
        return Ok(());
    }
    let (kind, out) = (
        args.kind.expect("required by clap"),
        args.out.expect("required by clap"),
    );
    let spec = StudySpec {
        kind,
        finding: args.finding,
        seed: args.seed,
        count: args.count.unwrap_or_else(|| kind.default_count()),
        width: args.width,
        height: args.height,
    };
    let paths = write_study(&spec, &out).with_context(|| {
        format!(
            "writing {} phantom (finding {}, seed {}) to {}",
            spec.kind,
            spec.finding,
            spec.seed,
            out.display()
        )
    })?;
    println!("wrote {} files to {}", paths.len(), out.display());
    Ok(())
}
