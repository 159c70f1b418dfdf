//! Copies a source to a sink: reads data chunks, turns their long zero runs (or the whole
//! chunk) into zeroing, writes the rest, and records a crc32 of every chunk when asked to.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checkpoint::{self, Hook};
use super::flight::{submit, Arrival, Buffers, Flight, Reads};
use super::gate::Gate;
use super::plan::{chunk_size, sparse_runs, Chunk, Plan, SPARSE_BLOCK, SPARSE_GAP};
use super::progress::{Progress, Silent};
use super::run::{run, Lane};
use super::throttle::{Pace, Throttle};
use super::{ImageSink, ImageSource};
use crate::error::{Error, Result};

/// How to run a copy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workers, each with one chunk in flight.
    pub jobs: usize,
    /// Bytes per chunk (rounded to the object size, see [`chunk_size`]).
    pub chunk_size: u64,
    /// Reserve space for the data before writing it, where the sink can.
    pub preallocate: bool,
    /// Turned true from outside (a signal handler) to stop the copy: running chunks finish,
    /// no new one starts, and the copy fails with `Error::Interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Keep every chunk's crc32 in [`Report::sums`], for verifying the copy afterwards. Off,
    /// memory does not grow with the image size.
    pub keep_sums: bool,
    /// The budget of bytes in flight, and where buffers of written chunks go for reuse
    /// (shared with a stream's reader, and by the jobs of a run).
    pub buffers: Arc<Buffers>,
    /// Where the job resumes: everything below it is on the destination already, so
    /// chunks that start below it are skipped. An offset a checkpoint recorded for the
    /// same plan (a chunk boundary); 0 for a fresh job.
    pub start: u64,
    /// Told, every `checkpoint_every` and at the end, the offset below which everything
    /// is durable on the destination (flushed first).
    pub checkpoint: Option<Hook>,
    /// How often to checkpoint.
    pub checkpoint_every: Duration,
    /// How long writes in flight may go without an answer before the job fails and
    /// abandons them (see [`Error::Abandoned`]).
    pub stall: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: default_jobs(DEFAULT_CHUNK),
            chunk_size: DEFAULT_CHUNK,
            preallocate: true,
            cancel: None,
            keep_sums: false,
            buffers: Arc::default(),
            start: 0,
            checkpoint: None,
            checkpoint_every: checkpoint::DEFAULT_EVERY,
            stall: DEFAULT_STALL,
        }
    }
}

/// How long writes may go without an answer by default: 10 minutes.
pub const DEFAULT_STALL: Duration = Duration::from_secs(600);

/// The default chunk size, 4 MiB: the default RBD object size.
pub const DEFAULT_CHUNK: u64 = 4 << 20;

/// The default budget of bytes in flight (`--max-in-flight`). Copying is bound by I/O
/// latency, not by cores: a destination 5 ms away at 500 MiB/s needs about 2.5 MiB in
/// flight per 5 ms of round trip.
pub const DEFAULT_IN_FLIGHT: u64 = 24 << 20;

/// Workers by default: one per 4 MiB of 64 MiB (16 for 4 MiB chunks), between 4 and 64.
/// More than the budget holds: a worker reads with a blocking call, so reads overlap only
/// as much as there are workers, and one waiting for room in the budget costs nothing.
/// Measured on the test clusters (warm, 24 MiB in flight), a 2 GiB copy within one cluster
/// took 3.55 s with 6 workers, 3.08 s with 16 and 2.38 s with 64.
pub fn default_jobs(chunk_size: u64) -> usize {
    ((64 << 20) / chunk_size.max(1)).clamp(4, 64) as usize
}

/// What one chunk of the destination must hold after a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    /// Where the chunk starts.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// crc32 (IEEE) of the bytes read from the source; `None` when the chunk was zeroed
    /// without a read and must read as zeroes.
    pub crc: Option<u32>,
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The image size.
    pub size: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the destination as data.
    pub bytes_written: u64,
    /// Bytes made zero on the destination (holes, write-zeroes).
    pub bytes_zero: u64,
    /// Extents in the plan.
    pub extents: u64,
    /// Chunks run.
    pub chunks: u64,
    /// Wall time of the copy, finish included.
    pub seconds: f64,
    /// What each chunk must hold, in offset order (empty unless `Options::keep_sums`).
    pub sums: Vec<Sum>,
    /// Where a resumed job started (for a stream, its byte offset); `None` for a job that
    /// started from the beginning.
    pub resumed_from: Option<u64>,
    /// Data bytes a resumed job did not copy again.
    pub bytes_skipped: u64,
}

impl Report {
    /// Adds the counts of `r`, a later part of the same job (a diff of an image stream),
    /// and takes its size.
    pub fn add(&mut self, r: &Report) {
        self.size = r.size;
        self.bytes_read += r.bytes_read;
        self.bytes_written += r.bytes_written;
        self.bytes_zero += r.bytes_zero;
        self.extents += r.extents;
        self.chunks += r.chunks;
        self.seconds += r.seconds;
        self.bytes_skipped += r.bytes_skipped;
        self.resumed_from = self.resumed_from.or(r.resumed_from);
    }

    /// Bytes covered (copied or zeroed) per second.
    pub fn bytes_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            (self.bytes_read + self.bytes_zero) as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Copies `src` to `dst` and finishes `dst`. On error nothing is finished; what the sink
/// holds is kept for a resume where it can be (see `Options::checkpoint`).
pub fn copy<C: Pace>(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &Options,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
) -> Result<Report> {
    let started = Instant::now();
    let size = src.size();
    let chunk = chunk_size(opts.chunk_size, src.object_size().or(dst.object_size()));
    let fill_gaps = src.base().is_none() && !dst.zeroed();
    let plan = Plan::new(src.extents()?, size, chunk, fill_gaps);
    let start = opts.start.min(size);
    let allocate = match opts.preallocate {
        true => plan
            .extents()
            .iter()
            .filter(|e| e.data && e.end() > start)
            .map(|e| (e.offset, e.len))
            .collect(),
        false => Vec::new(),
    };
    // Readied, resized and given its room at the first write: the first reads start
    // meanwhile (5 ms away, an image written in place takes 40 ms to lock).
    let gate = Gate::new(dst, size, allocate);
    let dst: &dyn ImageSink = &gate;
    let (data, zero) = plan.totals();
    let skipped = plan
        .chunks()
        .take_while(|c| c.offset < start)
        .fold((0, 0), |(d, z), c| {
            (d + c.data_len(), z + c.len - c.data_len())
        });
    progress.start(data + zero - skipped.0 - skipped.1);
    let counts = Counts {
        keep_sums: opts.keep_sums,
        ..Counts::default()
    };
    let chunks = plan.chunks().skip_while(|c| c.offset < start);
    let result = if dst.ordered() {
        let cancel = opts.cancel.as_deref();
        // Each worker holds its chunk, and librados its own copy of the read's reply
        // meanwhile: two chunks of the budget (an incremental export of 256 MiB in 64 KiB
        // records peaked at 104 MiB counting one, 80 MiB counting two, as fast).
        run(
            opts.buffers.workers(opts.jobs, 2 * chunk),
            size,
            chunks.map(Ok),
            cancel,
            progress,
            |c, buf, lane| copy_chunk(src, dst, throttle, &c, buf, lane, &counts),
        )
    } else {
        copy_window(src, dst, opts, chunks, chunk, throttle, progress, &counts)
    }
    .and_then(|()| dst.finish());
    progress.finish();
    result?;
    let mut report = counts.report(size, plan.extents().len() as u64, started);
    report.resumed_from = (start > 0).then_some(start);
    report.bytes_skipped = skipped.0;
    Ok(report)
}

#[derive(Default)]
pub(super) struct Counts {
    pub(super) read: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) zero: AtomicU64,
    pub(super) chunks: AtomicU64,
    pub(super) sums: Mutex<Vec<Sum>>,
    pub(super) keep_sums: bool,
}

impl Counts {
    /// Records the sum of chunk `c` from its bytes (`None`: zeroed without a read), if sums
    /// are kept; the crc32 is computed only then.
    fn keep(&self, c: &Chunk, bytes: Option<&[u8]>) {
        if self.keep_sums {
            let sum = Sum {
                offset: c.offset,
                len: c.len,
                crc: bytes.map(crc32fast::hash),
            };
            self.sums.lock().unwrap().push(sum);
        }
    }

    /// The report of a job that started at `started`.
    pub(super) fn report(self, size: u64, extents: u64, started: Instant) -> Report {
        let mut sums = self.sums.into_inner().unwrap();
        sums.sort_unstable_by_key(|s| s.offset);
        Report {
            size,
            bytes_read: self.read.into_inner(),
            bytes_written: self.written.into_inner(),
            bytes_zero: self.zero.into_inner(),
            extents,
            chunks: self.chunks.into_inner(),
            seconds: started.elapsed().as_secs_f64(),
            sums,
            resumed_from: None,
            bytes_skipped: 0,
        }
    }
}

/// Copies to a sink that takes writes in any order: `opts.jobs` workers read chunks and
/// start their writes; on an asynchronous sink they do not wait for them, so reads and
/// writes overlap and up to twice `opts.jobs` chunks are in flight. The window keeps the
/// one watermark: a chunk is done once its writes landed.
#[allow(clippy::too_many_arguments)]
fn copy_window<C: Pace>(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &Options,
    chunks: impl Iterator<Item = Chunk> + Send,
    chunk: u64,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
    counts: &Counts,
) -> Result<()> {
    let depth = 2 * opts.jobs.max(1);
    let flight = Flight::new(
        opts.buffers.limit().min(depth as u64 * chunk),
        depth,
        &opts.buffers,
        opts.start,
        opts.stall,
        true,
    );
    let size = src.size();
    // An asynchronous read holds its data twice until it is back: in the buffer it fills,
    // and in librbd's, which is copied into it at the end (two copies, and for the holes
    // of a sparse object a third). Its chunk counts double in the window until it is.
    let twice = src.reads_async();
    checkpoint::every(opts, &flight, || {
        // Chunks enter the window as they are handed out, so in offset order.
        let chunks = chunks.map(|c| {
            let extra = if twice { c.data_len() } else { 0 };
            flight.begin(&c, extra).map(|()| c)
        });
        if src.reads_async() {
            return read_ahead(src, dst, opts, &flight, chunks, throttle, progress, counts);
        }
        let ran = run(
            opts.jobs,
            size,
            chunks,
            opts.cancel.as_deref(),
            &Silent,
            |c: Chunk, _, _| {
                counts.chunks.fetch_add(1, Ordering::Relaxed);
                let mut buf = Vec::new();
                if c.data {
                    buf = flight.buffer(c.len as usize);
                    throttle.take(c.len);
                    if let Err(e) = src.read_at(c.offset, &mut buf) {
                        // The window's error is the job's; this stops the workers.
                        flight.fail(e);
                        return Err(Error::Interrupted);
                    }
                    counts.read.fetch_add(c.len, Ordering::Relaxed);
                } else {
                    throttle.take(0);
                }
                counts.keep(&c, c.data.then_some(&buf[..]));
                submit(dst, flight.ticket(c, buf), counts);
                flight.report(progress);
                Ok(())
            },
        );
        if ran.is_ok() {
            flight.drained(size);
        }
        // Every write must have called back before the sink may be finished or dropped.
        let landed = flight.wait(progress);
        landed.and(ran)
    })
}

/// Threads that start asynchronous reads: they only wait for the throttle and the window.
const READERS: usize = 2;

/// [`copy_window`] from a source that reads asynchronously: [`READERS`] threads start the
/// reads, and one more starts the writes of the reads that came back; the window bounds
/// both together.
#[allow(clippy::too_many_arguments)]
fn read_ahead<C: Pace>(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    opts: &Options,
    flight: &Arc<Flight>,
    chunks: impl Iterator<Item = Result<Chunk>> + Send,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
    counts: &Counts,
) -> Result<()> {
    let reads = Arc::new(Reads::default());
    let ran = std::thread::scope(|scope| {
        let writer = scope.spawn(|| loop {
            let arrived = reads.next(opts.stall, || flight.failed());
            if let Arrival::Read(c, ..) = &arrived {
                flight.settle(c.data_len());
            }
            match arrived {
                Arrival::Read(c, Ok(()), buf) if !flight.failed() => {
                    counts.read.fetch_add(c.len, Ordering::Relaxed);
                    counts.keep(&c, Some(&buf));
                    submit(dst, flight.ticket(c, buf), counts);
                    flight.report(progress);
                }
                Arrival::Read(c, result, buf) => {
                    flight.lost(c, result.err().unwrap_or(Error::Interrupted), buf);
                }
                Arrival::Done => break,
                Arrival::Stalled(e) => {
                    // The reads still out own their buffers; they may call back later.
                    flight.fail(e);
                    break;
                }
            }
        });
        let ran = run(
            READERS.min(opts.jobs.max(1)),
            src.size(),
            chunks,
            opts.cancel.as_deref(),
            &Silent,
            |c: Chunk, _, _| {
                counts.chunks.fetch_add(1, Ordering::Relaxed);
                if !c.data {
                    throttle.take(0);
                    counts.keep(&c, None);
                    submit(dst, flight.ticket(c, Vec::new()), counts);
                    return Ok(());
                }
                let len = c.len as usize;
                let buf = flight.spare(len);
                throttle.take(c.len);
                reads.start();
                let back = Arc::clone(&reads);
                let done = Box::new(move |r, buf| back.arrive(c, r, buf));
                src.read_async(c.offset, len, buf, done);
                Ok(())
            },
        );
        reads.close();
        // The writer ends once every read came back (or they stalled).
        writer.join().expect("the writer thread does not panic");
        ran
    });
    if ran.is_ok() {
        flight.drained(src.size());
    }
    let landed = flight.wait(progress);
    landed.and(ran)
}

fn copy_chunk<C: Pace>(
    src: &dyn ImageSource,
    dst: &dyn ImageSink,
    throttle: &Throttle<C>,
    c: &Chunk,
    buf: &mut Vec<u8>,
    lane: &Lane,
    counts: &Counts,
) -> Result<()> {
    counts.chunks.fetch_add(1, Ordering::Relaxed);
    if !c.data {
        throttle.take(0);
        if dst.ordered() {
            lane.wait_turn(c)?;
        }
        dst.write_zeroes(c.offset, c.len)?;
        counts.zero.fetch_add(c.len, Ordering::Relaxed);
        counts.keep(c, None);
        return Ok(());
    }
    let len = c.len as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let buf = &mut buf[..len];
    throttle.take(c.len);
    src.read_at(c.offset, buf)?;
    counts.read.fetch_add(c.len, Ordering::Relaxed);
    counts.keep(c, Some(buf));
    if dst.ordered() {
        lane.wait_turn(c)?;
    }
    write_runs(dst, c.offset, buf, counts)
}

/// Writes `buf` at `offset`: its data runs as data, its long zero runs as zeroing.
pub(super) fn write_runs(
    dst: &dyn ImageSink,
    offset: u64,
    buf: &[u8],
    counts: &Counts,
) -> Result<()> {
    each_run(offset, buf, counts, |at, data, len| match data {
        Some(range) => dst.write_at(at, &buf[range]),
        None => dst.write_zeroes(at, len),
    })
}

/// Hands each run of `buf` (the bytes at `offset`) to `write(at, data, len)`: a data run
/// with its range in `buf`, a long zero run with `None`. Counts each run once `write`
/// took it.
pub(super) fn each_run(
    offset: u64,
    buf: &[u8],
    counts: &Counts,
    mut write: impl FnMut(u64, Option<Range<usize>>, u64) -> Result<()>,
) -> Result<()> {
    for (start, end, data) in sparse_runs(buf, SPARSE_BLOCK, SPARSE_GAP) {
        let (at, len) = (offset + start as u64, (end - start) as u64);
        write(at, data.then_some(start..end), len)?;
        let counter = if data { &counts.written } else { &counts.zero };
        counter.fetch_add(len, Ordering::Relaxed);
    }
    Ok(())
}
