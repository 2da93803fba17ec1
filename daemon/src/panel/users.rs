//! The panel's users: one `name:argon2-PHC-hash` line each, in a file the
//! daemon only reads. `firstlook-provision set-password` writes it.

use std::path::Path;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// The file beside the site configuration when none is named.
pub const DEFAULT_FILE_NAME: &str = "panel-users";
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("a user name is 1 to 32 letters, digits, '.', '-' or '_'")]
    BadName,
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UsersError + '_ {
    move |source| UsersError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The stored hash of `user`, if the file names them. A missing file means
/// nobody can log in yet.
pub fn hash_of(path: &Path, user: &str) -> Result<Option<String>, UsersError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| *name == user)
        .map(|(_, hash)| hash.trim().to_string()))
}

/// Whether `password` matches `user`'s stored hash. Slow on purpose
/// (argon2id); run it off the async threads.
pub fn verify(path: &Path, user: &str, password: &str) -> Result<bool, UsersError> {
    let Some(hash) = hash_of(path, user)? else {
        // The same work for an unknown user, so timing does not tell names apart.
        let _ = Argon2::default().hash_password(password.as_bytes());
        return Ok(false);
    };
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), hash.as_str())
        .is_ok())
}

pub fn hash(password: &str) -> Result<String, UsersError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Sets (or replaces) `user`'s password in the file, written whole to a
/// temporary file and renamed over, readable by its owner only.
pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), UsersError> {
    if !valid_name(user) {
        return Err(UsersError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UsersError::ShortPassword);
    }
    let line = format!("{user}:{}", hash(password)?);
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path)(e)),
    };
    let mut text = String::from("# firstlook panel users: name:argon2id hash. Written by firstlook-provision set-password.\n");
    for l in old
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if l.split_once(':').map(|(n, _)| n) != Some(user) {
            text.push_str(l);
            text.push('\n');
        }
    }
    text.push_str(&line);
    text.push('\n');
    crate::durable::replace(path, text.as_bytes(), 0o600).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_password_verifies_and_a_wrong_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DEFAULT_FILE_NAME);
        set_password(&file, "tech", "correct horse battery").unwrap();
        set_password(&file, "other", "another long one").unwrap();
        assert!(verify(&file, "tech", "correct horse battery").unwrap());
        assert!(!verify(&file, "tech", "correct horse batterY").unwrap());
        assert!(!verify(&file, "nobody", "correct horse battery").unwrap());
        // Replacing keeps the other user and drops the old password.
        set_password(&file, "tech", "a brand new password").unwrap();
        assert!(!verify(&file, "tech", "correct horse battery").unwrap());
        assert!(verify(&file, "tech", "a brand new password").unwrap());
        assert!(verify(&file, "other", "another long one").unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("brand new"),
            "the password itself is never stored"
        );
        assert!(text.contains("$argon2id$"));
    }

    #[test]
    fn short_passwords_and_odd_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("u");
        assert!(matches!(
            set_password(&file, "tech", "short"),
            Err(UsersError::ShortPassword)
        ));
        assert!(matches!(
            set_password(&file, "te:ch", "long enough password"),
            Err(UsersError::BadName)
        ));
        assert!(!file.exists());
    }
}
