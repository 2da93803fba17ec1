//! `set-password`: who may log in to the technologist's panel.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use firstlook::config::Config;
use firstlook::panel::users;

#[derive(Args)]
pub struct SetPassword {
    /// The panel user to create or change.
    user: String,
    /// The site configuration; the users file is its `[panel] users_file`,
    /// else `panel-users` beside it.
    #[arg(long, default_value = "/etc/firstlook/firstlook.toml")]
    config: PathBuf,
    /// Write this users file instead of the configuration's.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// Read the password from the first line of standard input (for
    /// scripts) instead of asking twice on the terminal.
    #[arg(long)]
    password_stdin: bool,
}

fn password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("new panel password: ").map_err(|e| {
        format!("cannot read the password (no terminal? use --password-stdin): {e}")
    })?;
    let again = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
    if first != again {
        return Err("the two passwords differ; nothing changed".into());
    }
    Ok(first)
}

pub fn run(a: SetPassword) -> ExitCode {
    let file = match a.users_file {
        Some(f) => f,
        None => match Config::load(&a.config) {
            Ok(c) => c
                .panel
                .users_file
                .expect("a loaded configuration names its users file"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let pw = match password(a.password_stdin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match users::set_password(&file, &a.user, &pw) {
        Ok(()) => {
            println!(
                "password set for panel user {} in {} (takes effect at the next login)",
                a.user,
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
