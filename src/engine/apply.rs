//! Applies pieces that arrive with their bytes (the records of a diff stream) to a sink,
//! many writes in flight, under the same throttle as a copy.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::copy::{write_runs, Counts, Options, Report};
use super::flight::{submit, Flight};
use super::plan::Chunk;
use super::progress::Progress;
use super::run::{run, Task};
use super::throttle::{Pace, Throttle};
use super::ImageSink;
use crate::error::{Error, Result};

/// A range to apply: its bytes, or `None` to make it read as zeroes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Where it goes (`chunk.data` tells which kind it is).
    pub chunk: Chunk,
    /// The bytes of a data piece.
    pub data: Option<Vec<u8>>,
}

impl Task for Piece {
    fn chunk(&self) -> Chunk {
        self.chunk
    }
}

/// Bytes of pieces that may be held in memory at once (read and not yet written).
pub const APPLY_IN_FLIGHT: u64 = 64 << 20;

/// The writes [`apply`] keeps in flight by default: pieces are often small (a diff's records
/// average a few hundred KiB), so many must be in flight to cover a distant destination's
/// round trips; [`APPLY_IN_FLIGHT`] bounds their memory. On an asynchronous sink they cost no
/// threads. 5 ms away, 512 imported 1 GiB in 1.29 s, 256 in 1.36 s, 128 in 1.71 s and 64 in
/// 2.58 s (`bench/diff.py`, 180 KiB records on average); on loopback 64 to 512 were level.
pub const APPLY_JOBS: usize = 512;

/// The most worker threads [`apply`] starts for a sink that blocks on each write.
const BLOCKING_JOBS: usize = 128;

/// Counts the bytes of pieces in memory; taking more than the budget waits.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    max: u64,
}

impl Budget {
    /// Waits until `len` more bytes fit (a piece bigger than the budget waits for an empty one).
    fn take(&self, len: u64) {
        let mut used = self.used.lock().unwrap();
        while *used > 0 && *used + len > self.max {
            used = self.freed.wait(used).unwrap();
        }
        *used += len;
    }

    fn give(&self, len: u64) {
        *self.used.lock().unwrap() -= len;
        self.freed.notify_all();
    }
}

/// Resizes `dst` to `size`, writes every piece (in any order: pieces must not overlap) and
/// finishes `dst`. At most [`APPLY_IN_FLIGHT`] bytes of pieces wait in memory. An error from
/// `pieces` (a bad stream) stops the job before anything after it is written, and `dst` is
/// not finished.
pub fn apply<I, C>(
    pieces: I,
    size: u64,
    dst: &dyn ImageSink,
    opts: &Options,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
) -> Result<Report>
where
    I: Iterator<Item = Result<Piece>> + Send,
    C: Pace,
{
    let started = Instant::now();
    dst.resize(size)?;
    progress.start(0);
    let counts = Counts::default();
    let result = if dst.asynchronous() {
        apply_async(pieces, size, dst, opts, throttle, progress, &counts)
    } else {
        apply_blocking(pieces, size, dst, opts, throttle, progress, &counts)
    }
    .and_then(|()| dst.finish());
    progress.finish();
    result?;
    let records = counts.chunks.load(Ordering::Relaxed);
    Ok(counts.report(size, records, started))
}

/// Applies pieces from this thread alone, keeping up to `opts.jobs` of them (and
/// [`APPLY_IN_FLIGHT`] bytes) in flight on an asynchronous sink.
fn apply_async<I, C>(
    pieces: I,
    size: u64,
    dst: &dyn ImageSink,
    opts: &Options,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
    counts: &Counts,
) -> Result<()>
where
    I: Iterator<Item = Result<Piece>>,
    C: Pace,
{
    let flight = Flight::new(APPLY_IN_FLIGHT, opts.jobs, &opts.buffers);
    let cancel = opts.cancel.as_deref();
    let mut result = Ok(());
    for piece in pieces {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            result = Err(Error::Interrupted);
            break;
        }
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let c = piece.chunk;
        if flight.begin(&c).is_err() {
            break; // A write failed: `wait` returns its error.
        }
        counts.chunks.fetch_add(1, Ordering::Relaxed);
        throttle.take(if c.data { c.len } else { 0 });
        let data = piece.data.unwrap_or_default();
        counts.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        submit(dst, flight.ticket(c, data), counts);
        flight.report(progress);
    }
    if result.is_ok() {
        flight.drained(size);
    }
    let landed = flight.wait(progress);
    result.and(landed)
}

/// Applies pieces on a pool of `opts.jobs` workers (at most [`BLOCKING_JOBS`]), one blocking
/// write each.
fn apply_blocking<I, C>(
    pieces: I,
    size: u64,
    dst: &dyn ImageSink,
    opts: &Options,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
    counts: &Counts,
) -> Result<()>
where
    I: Iterator<Item = Result<Piece>> + Send,
    C: Pace,
{
    let cancel = opts.cancel.as_deref();
    let budget = Budget {
        used: Mutex::new(0),
        freed: Condvar::new(),
        max: APPLY_IN_FLIGHT,
    };
    // Taken as each piece leaves the stream; given back once a worker is done with it.
    let pieces = pieces.inspect(|p| {
        if let Ok(p) = p {
            budget.take(p.chunk.len);
        }
    });
    run(
        opts.jobs.min(BLOCKING_JOBS),
        size,
        pieces,
        cancel,
        progress,
        |piece: Piece, _, _| {
            let c = piece.chunk;
            let _give = Give(&budget, c.len);
            counts.chunks.fetch_add(1, Ordering::Relaxed);
            throttle.take(if c.data { c.len } else { 0 });
            match piece.data {
                Some(data) => {
                    counts.read.fetch_add(c.len, Ordering::Relaxed);
                    write_runs(dst, c.offset, &data, counts)
                }
                None => {
                    counts.zero.fetch_add(c.len, Ordering::Relaxed);
                    dst.write_zeroes(c.offset, c.len)
                }
            }
        },
    )
}

/// Gives a piece's bytes back to the budget when the worker is done with it, error or not.
struct Give<'a>(&'a Budget, u64);

impl Drop for Give<'_> {
    fn drop(&mut self) {
        self.0.give(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    #[test]
    fn the_budget_holds_back_what_does_not_fit() {
        let budget = Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max: 10,
        };
        budget.take(6);
        let taken = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                budget.take(6);
                taken.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !taken.load(Ordering::SeqCst),
                "6 + 6 bytes went past a budget of 10"
            );
            budget.give(6);
        });
        assert!(taken.load(Ordering::SeqCst));
        budget.give(6);
        budget.take(100); // bigger than the budget, but nothing else is held
        assert_eq!(*budget.used.lock().unwrap(), 100);
    }
}
