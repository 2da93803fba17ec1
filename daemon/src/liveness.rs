//! Which long-running parts of the daemon are alive and making progress:
//! what the systemd watchdog is fed on.
//!
//! A part is idle (waiting for work, never late) or busy with one step since
//! some moment. It is stalled when a step has run longer than the longest a
//! healthy step can take (its limit, built from the timeouts that bound the
//! step), or when a part that should run for the daemon's life has ended.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every part being watched.
#[derive(Default)]
pub struct Liveness {
    parts: Mutex<Vec<Arc<Part>>>,
    /// Parts end on purpose once the daemon stops.
    stopping: AtomicBool,
}

struct Part {
    name: String,
    limit: Duration,
    /// Until the daemon stops; its end is a failure.
    lifelong: bool,
    epoch: Instant,
    /// Milliseconds since `epoch` plus one when the current step began; 0 when idle.
    busy_since: AtomicU64,
    ended: AtomicBool,
}

impl Part {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn progress(&self) {
        let now = self.now();
        let _ = self
            .busy_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |since| {
                (since != 0).then_some(now)
            });
    }
}

/// A part's handle, held by the task or thread that does its work.
pub struct Beat {
    part: Arc<Part>,
    owner: Arc<Liveness>,
}

/// A step under way; the part is idle again when it is dropped.
pub struct Busy<'a>(&'a Beat);

/// Why the watchdog must not be fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stalled {
    Ended(String),
    Stuck { part: String, for_secs: u64 },
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stalled::Ended(part) => write!(f, "{part} has stopped"),
            Stalled::Stuck { part, for_secs } => {
                write!(f, "{part} has made no progress for {for_secs} s")
            }
        }
    }
}

impl Liveness {
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness::default())
    }

    /// A part that runs until the daemon stops.
    pub fn lifelong(self: &Arc<Self>, name: impl Into<String>, limit: Duration) -> Beat {
        self.add(name.into(), limit, true)
    }

    /// A part that may end (an association): it is forgotten when its
    /// `Beat` is dropped.
    pub fn transient(self: &Arc<Self>, name: impl Into<String>, limit: Duration) -> Beat {
        self.add(name.into(), limit, false)
    }

    fn add(self: &Arc<Self>, name: String, limit: Duration, lifelong: bool) -> Beat {
        let part = Arc::new(Part {
            name,
            limit,
            lifelong,
            epoch: Instant::now(),
            busy_since: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        });
        self.lock().push(Arc::clone(&part));
        Beat {
            part,
            owner: Arc::clone(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Part>>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The daemon is stopping: its parts' ends are no longer failures.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The first part that has ended or is stuck, if any.
    pub fn check(&self) -> Result<(), Stalled> {
        if self.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
        for part in self.lock().iter() {
            if part.ended.load(Ordering::Acquire) {
                return Err(Stalled::Ended(part.name.clone()));
            }
            let since = part.busy_since.load(Ordering::Acquire);
            if since == 0 {
                continue;
            }
            let busy = Duration::from_millis(part.now().saturating_sub(since));
            if busy > part.limit {
                return Err(Stalled::Stuck {
                    part: part.name.clone(),
                    for_secs: busy.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// How many parts are watched.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Beat {
    /// Starts a step.
    pub fn busy(&self) -> Busy<'_> {
        self.part
            .busy_since
            .store(self.part.now(), Ordering::Release);
        Busy(self)
    }

    /// The step goes on, and has just done something: its clock starts again.
    pub fn progress(&self) {
        self.part.progress();
    }

    /// [`Beat::progress`] for code that cannot hold the beat (a connection
    /// reporting that its peer took part of a message).
    pub fn ticker(&self) -> Box<dyn Fn() + Send + Sync> {
        let part = Arc::clone(&self.part);
        Box::new(move || part.progress())
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.part.busy_since.store(0, Ordering::Release);
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        if self.part.lifelong {
            self.part.ended.store(true, Ordering::Release);
        } else {
            self.owner.lock().retain(|p| !Arc::ptr_eq(p, &self.part));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_parts_are_never_late() {
        let l = Liveness::new();
        let _beat = l.lifelong("forward pacs", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.check(), Ok(()));
    }

    #[test]
    fn a_step_past_its_limit_stalls_until_it_progresses_or_ends() {
        let l = Liveness::new();
        let beat = l.lifelong("forward pacs", Duration::from_millis(20));
        let step = beat.busy();
        assert_eq!(l.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(40));
        match l.check() {
            Err(Stalled::Stuck { part, .. }) => assert_eq!(part, "forward pacs"),
            other => panic!("expected a stuck part, got {other:?}"),
        }
        beat.progress();
        assert_eq!(l.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.check().is_err());
        drop(step);
        assert_eq!(l.check(), Ok(()));
    }

    #[test]
    fn progress_while_idle_does_not_start_a_step() {
        let l = Liveness::new();
        let beat = l.lifelong("triage feed", Duration::ZERO);
        beat.progress();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.check(), Ok(()));
    }

    #[test]
    fn a_lifelong_part_that_ends_stalls_a_transient_one_is_forgotten() {
        let l = Liveness::new();
        let association = l.transient("association 7", Duration::ZERO);
        let _step = association.busy();
        drop(_step);
        drop(association);
        assert_eq!(l.len(), 0);
        assert_eq!(l.check(), Ok(()));
        let ingest = l.lifelong("ingest", Duration::from_secs(1));
        drop(ingest);
        assert_eq!(l.check(), Err(Stalled::Ended("ingest".into())));
        assert_eq!(l.check().unwrap_err().to_string(), "ingest has stopped");
        l.stop();
        assert_eq!(l.check(), Ok(()));
    }
}
