//! Hands instances without a triage result to the workers, oldest first.
//! Only this task waits when the workers are busy.
//!
//! It asks the index for what is pending at start, after falling behind and
//! every few seconds; otherwise it takes each new instance as the index
//! commits it, without asking the index again (one thread hop less between
//! the commit and a worker).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use super::store::{self, Pending};
use crate::liveness::Beat;
use crate::spool::{NewInstance, Spool};

/// Asks the index again after this long without a new instance.
const RECHECK: Duration = Duration::from_secs(5);

pub(super) async fn feed(
    spool: Arc<Spool>,
    tx: mpsc::Sender<Pending>,
    batch: usize,
    mut shutdown: watch::Receiver<bool>,
    beat: Beat,
) {
    let mut indexed = spool.follow_indexed();
    let mut after = 0i64;
    loop {
        let rows = {
            let _step = beat.busy();
            spool
                .index()
                .call(move |c| store::pending(c, after, batch))
                .await
        };
        match rows {
            Ok(rows) if !rows.is_empty() => {
                for p in rows {
                    after = p.instance_id;
                    if !hand(&tx, p, &mut shutdown).await {
                        return;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(message = "triage cannot read the spool index", error = %e),
        }
        loop {
            let next = tokio::select! {
                next = indexed.recv() => next,
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RECHECK) => break,
            };
            match follow(after, next) {
                Follow::Skip => {}
                Follow::Take(new) => {
                    after = new.id;
                    if let Some(p) = Pending::indexed(&new) {
                        if !hand(&tx, p, &mut shutdown).await {
                            return;
                        }
                    }
                }
                Follow::AskIndex => break,
                Follow::Stop => return,
            }
        }
    }
}

/// False once the workers or the daemon have stopped.
async fn hand(
    tx: &mpsc::Sender<Pending>,
    p: Pending,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(p) => sent.is_ok(),
        _ = shutdown.changed() => false,
    }
}

#[derive(Debug)]
enum Follow {
    /// Already handed on (found by asking the index).
    Skip,
    /// The next instance after everything handed on so far.
    Take(NewInstance),
    /// Some instance may have been missed: a gap in the ids (one indexed
    /// by another path, or an id above a retired one's) or a lag.
    AskIndex,
    Stop,
}

fn follow(after: i64, next: Result<NewInstance, RecvError>) -> Follow {
    match next {
        Ok(new) if new.id <= after => Follow::Skip,
        Ok(new) if new.id == after + 1 => Follow::Take(new),
        Ok(_) | Err(RecvError::Lagged(_)) => Follow::AskIndex,
        Err(RecvError::Closed) => Follow::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{RecordSummary, StoredRecord};

    fn new(id: i64, calling_ae: &str) -> NewInstance {
        let mut record = StoredRecord::example(3, 100 * id as u64, &format!("2.25.{id}"));
        record.header.calling_ae = calling_ae.into();
        record.header.received_at = 1000 + id;
        record.summary = RecordSummary {
            study_instance_uid: Some("2.25.1".into()),
            series_instance_uid: Some("2.25.2".into()),
            modality: Some("CR".into()),
            instance_number: Some(id),
        };
        NewInstance {
            id,
            record: Arc::new(record),
        }
    }

    #[test]
    fn takes_the_next_id_and_asks_the_index_after_a_gap_or_a_lag() {
        let cases: &[(i64, Result<i64, RecvError>, &str)] = &[
            (0, Ok(1), "take"),
            (41, Ok(42), "take"),
            (42, Ok(42), "skip"),
            (42, Ok(7), "skip"),
            (41, Ok(43), "ask"),
            (0, Ok(5000), "ask"),
            (41, Err(RecvError::Lagged(3)), "ask"),
            (41, Err(RecvError::Closed), "stop"),
        ];
        for (after, next, want) in cases {
            let got = match follow(*after, next.clone().map(|id| new(id, "CR01"))) {
                Follow::Take(n) => {
                    assert_eq!(n.id, after + 1);
                    "take"
                }
                Follow::Skip => "skip",
                Follow::AskIndex => "ask",
                Follow::Stop => "stop",
            };
            assert_eq!(got, *want, "after {after}, next {next:?}");
        }
    }

    #[test]
    fn a_new_instance_is_pending_as_the_index_would_list_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        store::init(&conn).unwrap();
        let insert = |r: &StoredRecord| {
            crate::spool::insert(&conn, r, &[], 0, crate::spool::Source::Ingest).unwrap()
        };
        let n = new(1, "CR01");
        assert_eq!(
            insert(&n.record),
            crate::spool::InsertOutcome::Inserted { id: 1 }
        );
        let listed = store::pending(&conn, 0, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(Pending::indexed(&n).as_ref(), Some(&listed[0]));
        // The box's own results are never triaged.
        let own = new(2, crate::results::OWN_AE);
        assert_eq!(
            insert(&own.record),
            crate::spool::InsertOutcome::Inserted { id: 2 }
        );
        assert!(Pending::indexed(&own).is_none());
        assert_eq!(store::pending(&conn, 0, 10).unwrap().len(), 1);
    }
}
