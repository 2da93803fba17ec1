//! `firstlookd dead-letters`: the operator's way out for instances a
//! destination refused for good — send them again once the cause is fixed,
//! or give them up so that their spool space can be reclaimed. Works beside
//! a running daemon; its forwarders pick requeued instances up within
//! seconds.

use std::path::Path;

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::spool::{index_path, now_ms, open_for_maintenance, requeue_set, IndexError};

/// What to do with the chosen dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back to the queue, as if never tried.
    Requeue,
    /// Given up: no longer held for that destination.
    Discard,
}

/// Why the dead letters could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// There is no spool index at that path.
    #[error("no spool at {0} (has firstlookd run with this spool_dir?)")]
    NoSpool(String),
    /// Discarding needs an explicit choice.
    #[error("name the SOP Instance UIDs to discard, or pass --all")]
    NothingChosen,
    /// The index could not be changed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl From<rusqlite::Error> for DeadLetterError {
    fn from(e: rusqlite::Error) -> Self {
        DeadLetterError::Index(IndexError::Sqlite(e))
    }
}

/// Applies `action` to the dead letters of `destination` (or all
/// destinations) whose SOP Instance UID is in `uids` (or all, when `all`).
/// Returns how many deliveries changed.
pub fn apply(
    spool_dir: &Path,
    action: Action,
    destination: Option<&str>,
    uids: &[String],
    all: bool,
) -> Result<usize, DeadLetterError> {
    if !index_path(spool_dir).exists() {
        return Err(DeadLetterError::NoSpool(spool_dir.display().to_string()));
    }
    if uids.is_empty() && !all && action == Action::Discard {
        return Err(DeadLetterError::NothingChosen);
    }
    let conn = open_for_maintenance(&index_path(spool_dir))?;
    let set = match action {
        Action::Requeue => requeue_set("requeued"),
        Action::Discard => {
            "state='discarded', done_at=?1, reason='discarded; was: ' || coalesce(reason, '')"
                .into()
        }
    };
    let mut sql = format!("UPDATE deliveries SET {set} WHERE state='dead'");
    let mut args: Vec<Value> = vec![Value::Integer(now_ms())];
    if let Some(d) = destination {
        args.push(Value::Text(d.to_string()));
        sql.push_str(&format!(" AND destination=?{}", args.len()));
    }
    if !uids.is_empty() {
        let first = args.len() + 1;
        let marks: Vec<String> = (first..first + uids.len())
            .map(|i| format!("?{i}"))
            .collect();
        args.extend(uids.iter().map(|u| Value::Text(u.clone())));
        sql.push_str(&format!(
            " AND instance_id IN (SELECT id FROM instances WHERE sop_instance_uid IN ({}))",
            marks.join(",")
        ));
    }
    Ok(conn.execute(&sql, params_from_iter(args.iter()))?)
}
