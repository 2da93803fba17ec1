//! firstlook-provision: the field engineer's tool. It checks a site
//! configuration before it is installed on a box, makes, signs and
//! verifies model bundles, and sets the panel's passwords.
#![forbid(unsafe_code)]

mod bundle_cmd;
mod password_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use bundle_cmd::BundleAction;
use clap::{Parser, Subcommand};
use firstlook::config::Config;

#[derive(Parser)]
#[command(version, about = "Install and configure firstlook on an appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Signed model bundles (.flb).
    Bundle {
        #[command(subcommand)]
        action: BundleAction,
    },
    /// Set a technologist panel user's password (argon2id, in the users
    /// file beside the site configuration).
    SetPassword(password_cmd::SetPassword),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a site configuration: errors name the line, the column and the fix.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Config {
            action: ConfigAction::Check { file },
        } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: OK — AE {} on {}, {} scanner entr{}, {} destination{}",
                    file.display(),
                    c.node.ae_title,
                    c.node.listen,
                    c.scanners.len(),
                    if c.scanners.len() == 1 { "y" } else { "ies" },
                    c.destinations.len(),
                    if c.destinations.len() == 1 { "" } else { "s" },
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Bundle { action } => bundle_cmd::run(action),
        Command::SetPassword(a) => password_cmd::run(a),
    }
}
