//! Checkpoints: every so often, and at the end, the destination is flushed and the offset
//! below which everything landed is handed to a [`Checkpoint`], which records it. One
//! watermark, with one meaning: durable.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::copy::Options;
use super::flight::Flight;
use super::ImageSink;
use crate::error::Result;

/// How often a job checkpoints by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// Records how far a job has come.
pub trait Checkpoint: Send + Sync {
    /// Everything below `mark` (an image offset; for a stream, a byte offset in it) is
    /// durable on the destination. Called from one thread at a time, with rising marks.
    fn save(&self, mark: u64) -> Result<()>;
}

/// A shared [`Checkpoint`], as [`Options`] holds it.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Checkpoint>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook")
    }
}

/// Runs `body` (which fills and drains `flight`) while a thread checkpoints every
/// `opts.checkpoint_every`; then, if all went well, flushes `dst` and checkpoints the final
/// watermark. After a failure the watermark reached is still saved, as far as the
/// destination lets it be, so a rerun redoes little.
pub(crate) fn every(
    opts: &Options,
    flight: &Flight,
    dst: &dyn ImageSink,
    body: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let Some(Hook(hook)) = &opts.checkpoint else {
        return body();
    };
    let stop = (Mutex::new(false), Condvar::new());
    let mut saved = opts.start;
    let save = |saved: &mut u64| -> Result<()> {
        let mark = flight.watermark();
        if mark > *saved {
            dst.flush()?;
            hook.save(mark)?;
            *saved = mark;
        }
        Ok(())
    };
    let (ran, ticks) = std::thread::scope(|s| {
        let ticker = s.spawn(|| {
            let mut saved = opts.start;
            let mut stopped = stop.0.lock().unwrap();
            loop {
                stopped = stop
                    .1
                    .wait_timeout(stopped, opts.checkpoint_every)
                    .unwrap()
                    .0;
                if *stopped || flight.failed() {
                    return Ok(saved);
                }
                drop(stopped);
                if let Err(e) = save(&mut saved) {
                    flight.fail(e);
                    return Err(());
                }
                stopped = stop.0.lock().unwrap();
            }
        });
        let ran = body();
        *stop.0.lock().unwrap() = true;
        stop.1.notify_all();
        (
            ran,
            ticker.join().expect("the checkpoint thread does not panic"),
        )
    });
    if let Ok(mark) = ticks {
        saved = saved.max(mark);
    }
    match ran {
        Ok(()) => save(&mut saved),
        Err(e) => {
            // Best effort: the error that stopped the job is the one to report.
            let _ = save(&mut saved);
            Err(e)
        }
    }
}
