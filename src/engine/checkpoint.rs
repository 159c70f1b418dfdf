//! Checkpoints: every so often, and at the end, the offset below which every write landed
//! is handed to a [`Checkpoint`], which makes it durable and records it. One watermark,
//! with one meaning: durable.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::copy::Options;
use super::flight::Flight;
use crate::error::{Error, Result};

/// How often a job checkpoints by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// Records how far a job has come.
pub trait Checkpoint: Send + Sync {
    /// Every write below `mark` (an image offset; for a stream, a byte offset in it) has
    /// landed: make them durable (an fsync, where landing is not enough) and record it.
    /// Called from one thread at a time, with rising marks.
    fn save(&self, mark: u64) -> Result<()>;

    /// Whether the job may go on (its lease on the destination still holds); asked at every
    /// tick with nothing new to save. An error fails the job.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A shared [`Checkpoint`], as [`Options`] holds it.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Checkpoint>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook")
    }
}

/// What the ticker and the job share.
struct Ticker {
    state: Mutex<Tick>,
    changed: Condvar,
}

#[derive(Default)]
struct Tick {
    /// The job asks the ticker to stop.
    stop: bool,
    /// The ticker has stopped.
    stopped: bool,
    /// The highest mark saved (or resumed from): above 0 once a record exists.
    saved: u64,
}

/// Runs `body` (which fills and drains `flight`) while a thread checkpoints every
/// `opts.checkpoint_every`; then, if all went well and a record exists (this run saved one,
/// or it resumed from one), checkpoints the final watermark: a job shorter than one
/// interval keeps none, which saves its round trips, and a kill before its end redoes at
/// most that interval. After
/// a failure the watermark reached is still saved, as far as the destination lets it be,
/// so a rerun redoes little; but not when requests were abandoned in flight, since
/// making them durable would wait for them. The ticker runs on a thread of its own, and
/// the job waits for it to stop at most `opts.stall`: a save that hangs in a cluster that
/// does not answer must not hold the job's error back.
pub(crate) fn every(
    opts: &Options,
    flight: &Arc<Flight>,
    body: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let Some(Hook(hook)) = &opts.checkpoint else {
        return body();
    };
    let ticker = Arc::new(Ticker {
        state: Mutex::new(Tick {
            saved: opts.start,
            ..Tick::default()
        }),
        changed: Condvar::new(),
    });
    {
        let (ticker, flight, hook, every) = (
            Arc::clone(&ticker),
            Arc::clone(flight),
            Arc::clone(hook),
            opts.checkpoint_every,
        );
        std::thread::Builder::new()
            .name("rbdcp-checkpoint".into())
            .spawn(move || tick(&ticker, &flight, hook.as_ref(), every))
            .map_err(|e| Error::Unsupported(format!("cannot start the checkpoint thread: {e}")))?;
    }
    let ran = body();
    let mut t = ticker.state.lock().unwrap();
    t.stop = true;
    ticker.changed.notify_all();
    let deadline = Instant::now() + opts.stall;
    while !t.stopped {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        t = ticker.changed.wait_timeout(t, left).unwrap().0;
    }
    let mut saved = t.saved;
    // Marks only rise from `opts.start`, and a saved one is above 0.
    let (stopped, recorded) = (t.stopped, t.saved > 0);
    drop(t);
    let mut save = || -> Result<()> {
        let mark = flight.watermark();
        if mark > saved {
            hook.save(mark)?;
            saved = mark;
        }
        Ok(())
    };
    match ran {
        Ok(()) if stopped && recorded => save(),
        Ok(()) if stopped => Ok(()),
        Ok(()) => Err(Error::Stalled {
            what: "write",
            requests: 0,
            secs: opts.stall.as_secs(),
        }),
        Err(e) => {
            if stopped && !flight.abandoned() {
                // Best effort: the error that stopped the job is the one to report.
                let _ = save();
            }
            Err(e)
        }
    }
}

/// The ticker: saves the watermark every `every` (or checks that the job may go on, when
/// it has not moved) until told to stop or the job fails.
fn tick(ticker: &Ticker, flight: &Flight, hook: &dyn Checkpoint, every: Duration) {
    let mut t = ticker.state.lock().unwrap();
    loop {
        t = ticker.changed.wait_timeout(t, every).unwrap().0;
        if t.stop || flight.failed() {
            break;
        }
        let (mark, saved) = (flight.watermark(), t.saved);
        drop(t);
        let result = match mark > saved {
            true => hook.save(mark),
            false => hook.check(),
        };
        t = ticker.state.lock().unwrap();
        match result {
            Ok(()) => t.saved = t.saved.max(mark),
            Err(e) => {
                flight.fail(e);
                break;
            }
        }
    }
    t.stopped = true;
    ticker.changed.notify_all();
}
