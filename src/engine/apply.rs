//! Applies pieces that arrive with their bytes (the records of a diff stream) to a sink,
//! many writes in flight, under the same throttle as a copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::checkpoint;
use super::copy::{Counts, Options, Report};
use super::flight::{submit, Flight};
use super::plan::Chunk;
use super::progress::{Progress, Silent};
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
    /// Where its record starts and ends in the stream: the watermark of an apply, and
    /// `Options::start`, count in these.
    pub span: (u64, u64),
}

impl Piece {
    /// Its record's range in the stream, as the window's watermark counts it.
    fn key(&self) -> Chunk {
        Chunk {
            offset: self.span.0,
            len: self.span.1 - self.span.0,
            data: true,
        }
    }
}

impl Task for Piece {
    fn chunk(&self) -> Chunk {
        self.key()
    }
}

/// The writes [`apply`] keeps in flight by default: pieces are often small (a diff's records
/// average a few hundred KiB), so many must be in flight to cover a distant destination's
/// round trips; the run's budget of bytes in flight ([`super::Buffers`]) bounds their memory. On an asynchronous sink they cost no
/// threads. 5 ms away, 512 imported 1 GiB in 1.29 s, 256 in 1.36 s, 128 in 1.71 s and 64 in
/// 2.58 s (`bench/diff.py`, 180 KiB records on average); on loopback 64 to 512 were level.
pub const APPLY_JOBS: usize = 512;

/// The most worker threads [`apply`] starts for a sink that blocks on each write.
const BLOCKING_JOBS: usize = 128;

/// Resizes `dst` to `size`, writes every piece (in any order: pieces must not overlap) and
/// finishes `dst`. At most the budget of `opts.buffers` in bytes of pieces wait in memory. An error from
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
    dst.ready()?;
    dst.resize(size)?;
    progress.start(0);
    let counts = Counts::default();
    let cancel = opts.cancel.as_deref();
    let flight = Flight::new(
        opts.buffers.limit(),
        opts.jobs,
        &opts.buffers,
        opts.start,
        opts.stall,
        false,
    );
    let skipped = AtomicU64::new(0);
    // Pieces a resumed job applied already are read, not written.
    let pieces = pieces.filter(|p| match p {
        Ok(p) if p.span.0 < opts.start => {
            skipped.fetch_add(p.chunk.data_len(), Ordering::Relaxed);
            false
        }
        _ => true,
    });
    // Pieces enter the window as they leave the stream, so in stream order; once a write
    // failed, none does.
    let mut pieces =
        pieces.map(|p| p.and_then(|p| flight.begin_at(&p.key(), p.chunk.data_len()).map(|()| p)));
    let start = |piece: Piece| {
        let (c, key) = (piece.chunk, piece.key());
        counts.chunks.fetch_add(1, Ordering::Relaxed);
        throttle.take(c.data_len());
        let data = piece.data.unwrap_or_default();
        counts.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        submit(dst, flight.ticket_at(c, key, data), &counts);
        flight.report(progress);
    };
    let result = checkpoint::every(opts, &flight, || {
        let ran = if dst.asynchronous() {
            // This thread alone reads the pieces and starts their writes.
            pieces.try_for_each(|piece| {
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(Error::Interrupted);
                }
                start(piece?);
                Ok(())
            })
        } else {
            // Each worker waits for its write to land before it takes the next piece.
            run(
                opts.jobs.min(BLOCKING_JOBS),
                size,
                pieces,
                cancel,
                &Silent,
                |piece: Piece, _, _| {
                    start(piece);
                    Ok(())
                },
            )
        };
        // A failed write's error comes first; every write must have called back before the
        // sink is finished or dropped.
        flight.wait(progress).and(ran)
    })
    .and_then(|()| dst.finish());
    progress.finish();
    result?;
    let records = counts.chunks.load(Ordering::Relaxed);
    let mut report = counts.report(size, records, started);
    report.resumed_from = (opts.start > 0).then_some(opts.start);
    report.bytes_skipped = skipped.into_inner();
    Ok(report)
}
