//! Applies pieces that arrive with their bytes (the records of a diff stream) to a sink,
//! many writes in flight, under the same throttle as a copy.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::copy::{write_runs, Counts, Options, Report};
use super::plan::Chunk;
use super::progress::Progress;
use super::run::{run, Task};
use super::throttle::{Pace, Throttle};
use super::ImageSink;
use crate::error::Result;

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

/// Resizes `dst` to `size`, writes every piece (in any order: pieces must not overlap) and
/// finishes `dst`. An error from `pieces` (a bad stream) stops the job before anything
/// after it is written, and `dst` is not finished.
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
    let cancel = opts.cancel.as_deref();
    let result = run(
        opts.jobs,
        size,
        pieces,
        cancel,
        progress,
        |piece: Piece, _, _| {
            let c = piece.chunk;
            counts.chunks.fetch_add(1, Ordering::Relaxed);
            throttle.take(if c.data { c.len } else { 0 });
            match piece.data {
                Some(data) => {
                    counts.read.fetch_add(c.len, Ordering::Relaxed);
                    write_runs(dst, c.offset, &data, &counts)
                }
                None => {
                    counts.zero.fetch_add(c.len, Ordering::Relaxed);
                    dst.write_zeroes(c.offset, c.len)
                }
            }
        },
    )
    .and_then(|()| dst.finish());
    progress.finish();
    result?;
    let records = counts.chunks.load(Ordering::Relaxed);
    Ok(counts.report(size, records, started))
}
