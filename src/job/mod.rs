//! Jobs: what each command does, as library calls. A job is its own description (what to
//! copy where) plus a [`Context`] it shares with others (throttle, cancel flag, buffers,
//! progress, retries, checkpoints), so the binary stays glue and later commands (scheduled
//! backups, plans of many images) run the same jobs.
//!
//! Every job that writes an image is resumable: it holds its destination's lock or lease,
//! keeps a progress record with the destination, and a rerun of the same job continues
//! from the record, or completes the job's end when only that was left.

pub mod backup;
pub mod copy;
pub mod export;
pub mod history;
pub mod import;
pub mod metrics;
pub mod migrate;
pub mod plan;
pub mod record;
pub mod retention;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::retry::{Policy, Retry};
use crate::backend::{prepare_dest, Access, Dest, Found, Prepared, SinkOptions, Store};
use crate::engine::{
    Buffers, ImageSink, ImageSource, Progress, Report, Silent, Throttle, DEFAULT_EVERY,
};
use crate::error::Error;
use crate::error::Result;
use crate::location::Location;

/// Makes the progress display of one phase of a job (`copy`, `verify`, ...).
pub type Bars = dyn Fn(&str) -> Box<dyn Progress> + Send + Sync;

/// What the jobs of a run share.
pub struct Context {
    /// How to reach clusters when a location does not say.
    pub access: Access,
    /// Bandwidth and IOPS limits.
    pub throttle: Throttle,
    /// Turned true (by a signal handler) to stop every job cleanly.
    pub cancel: Arc<AtomicBool>,
    /// The budget of bytes in flight every job shares (`--max-in-flight`), and the
    /// buffers reused between chunks.
    pub buffers: Arc<Buffers>,
    /// Progress displays.
    pub bars: Box<Bars>,
    /// How transient errors are retried.
    pub retry: Policy,
    /// How often progress is recorded.
    pub checkpoint_every: Duration,
    /// Throw away an earlier run's progress and start over.
    pub restart: bool,
}

impl Default for Context {
    fn default() -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        Context {
            access: Access::default(),
            throttle: Throttle::new(Default::default()),
            retry: Policy {
                cancel: Some(Arc::clone(&cancel)),
                ..Policy::default()
            },
            cancel,
            buffers: Arc::default(),
            bars: Box::new(|_| Box::new(Silent)),
            checkpoint_every: DEFAULT_EVERY,
            restart: false,
        }
    }
}

impl Context {
    /// Whether the run was told to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// How long writes may go unanswered before a job gives up on them: every attempt's op
    /// time-out and every wait between them (8.5 minutes with the defaults), at least 30 s.
    pub fn stall(&self) -> Duration {
        let op = Duration::from_secs(self.access.op_timeout_secs.max(1));
        let attempts = self.retry.retries + 1;
        (op * attempts + self.retry.max_wait * self.retry.retries).max(Duration::from_secs(30))
    }

    /// Opens `dst` for a job (what an earlier run left), its sink and
    /// store behind the retry policy; `None` when it holds the job's result already (any
    /// record left from the end of that job is dropped; with `own`, only a record of the
    /// same source: a step of a longer job leaves the next step's record alone).
    fn open(
        &self,
        dst: Prepared,
        opts: &SinkOptions,
        own: Option<&record::Record>,
    ) -> Result<Option<Opened>> {
        let dest = dst.open(opts)?;
        let (sink, store) = self.retried(&dest);
        if dest.found == Found::Complete {
            let mine = match own {
                None => true,
                Some(want) => store.load()?.is_some_and(|text| {
                    record::Record::parse(&text, "").is_ok_and(|had| had.source == want.source)
                }),
            };
            if mine {
                store.clear()?;
            }
            return Ok(None);
        }
        Ok(Some(Opened { dest, sink, store }))
    }

    /// Ends a job that failed with `e`: if it abandoned requests in flight, `dest` is kept
    /// open for good (they may still call back into it); if only a new connection can
    /// mend it, the connection is retired (see [`crate::backend::Hold::retire`]).
    fn failed(&self, e: Error, dest: &Dest) -> Error {
        if e.abandoned() {
            std::mem::forget(Arc::clone(&dest.sink));
        }
        if e.wants_new_connection() {
            dest.retire();
        }
        e
    }

    /// Runs `job` again, on new connections, after it failed in a way only a new
    /// connection mends (its client blocklisted, writes that stopped answering): each
    /// attempt resumes from the progress record the last one kept, as a rerun of the
    /// command would. At most the retry policy's retries; each counts as one. The report
    /// is the last attempt's, over the seconds of them all.
    fn reconnecting(&self, mut job: impl FnMut() -> Result<Outcome>) -> Result<Outcome> {
        let started = std::time::Instant::now();
        let mut reconnects = 0;
        loop {
            match job() {
                Err(e)
                    if e.wants_new_connection()
                        && reconnects < self.retry.retries
                        && !self.cancelled() =>
                {
                    reconnects += 1;
                    self.retry.count.fetch_add(1, Ordering::Relaxed);
                    self.retry.sleep(self.retry.wait(reconnects));
                }
                Ok(mut outcome) => {
                    outcome.reconnects = reconnects;
                    if reconnects > 0 {
                        outcome.report.seconds = started.elapsed().as_secs_f64();
                    }
                    return Ok(outcome);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Retries made so far, by every job of this context.
    pub fn retries(&self) -> u64 {
        self.retry.count.load(Ordering::Relaxed)
    }

    /// `dest`'s sink and store, behind the retry policy.
    fn retried(&self, dest: &Dest) -> (Arc<dyn ImageSink>, Arc<dyn Store>) {
        (
            Arc::new(Retry::new(Arc::clone(&dest.sink), self.retry.clone())),
            Arc::new(Retry::new(Arc::clone(&dest.store), self.retry.clone())),
        )
    }

    /// Takes `dst`'s lock or lease and opens what is there, while `source` runs on this
    /// thread (opening the source): the round trips of the two overlap.
    fn prepare<S>(
        &self,
        dst: &Location,
        source: impl FnOnce() -> Result<S>,
    ) -> Result<(S, Prepared)> {
        std::thread::scope(|s| {
            let prepared = s.spawn(|| prepare_dest(dst, &self.access));
            let source = source();
            let prepared = prepared.join().expect("preparing does not panic");
            Ok((source?, prepared?))
        })
    }

    /// `source` behind the retry policy.
    fn retried_source(&self, source: Box<dyn ImageSource>) -> Retry<dyn ImageSource> {
        Retry::new(Arc::from(source), self.retry.clone())
    }
}

/// Ends a job whose destination is finished: its record goes while `open` (the
/// destination, with everything that holds it) closes, an RBD image's close being four
/// round trips, and then its lock or lease is given up, still while it closes.
fn wrap_up<T: Send>(saver: Arc<record::Saver>, open: T) -> Result<()> {
    let hold = Arc::clone(&saver.hold);
    let store = saver
        .saved
        .load(Ordering::Relaxed)
        .then(|| Arc::clone(&saver.store));
    std::thread::scope(|s| {
        s.spawn(move || drop((saver, open)));
        let cleared = store.map_or(Ok(()), |store| store.clear());
        match &cleared {
            Ok(()) => hold.release(),
            Err(e) if e.wants_new_connection() => hold.retire(),
            Err(_) => {}
        }
        cleared
    })
}

/// A destination opened for a job; the lock or lease in `dest` is held until it drops.
struct Opened {
    dest: Dest,
    sink: Arc<dyn ImageSink>,
    store: Arc<dyn Store>,
}

/// What a job did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The copy's totals.
    pub report: Report,
    /// The destination held the job's result already: nothing was copied.
    pub complete: bool,
    /// After a verification: whether the destination matched.
    pub verified: Option<bool>,
    /// After a failed verification: what differs.
    pub mismatch: Option<String>,
    /// Times the job connected again and resumed (see [`Context::reconnecting`]).
    pub reconnects: u32,
    /// How the source listed what changed (see [`crate::engine::ImageSource::diff_mode`]).
    pub diff_mode: Option<&'static str>,
    /// Seconds from the start of the (last) attempt until both sides were open and
    /// checked.
    pub setup_seconds: f64,
    /// A source that is a clone: its parent, and what the copy did with the link.
    pub link: Option<Link>,
}

/// What a copy of a clone did with its parent link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// The source's parent snapshot, `POOL/IMAGE@SNAP`.
    pub parent: String,
    /// The snapshot the destination is a clone of (rbdcp's copy of the source's parent);
    /// `None`: the copy is flattened, its parent's data included.
    pub kept: Option<String>,
}
