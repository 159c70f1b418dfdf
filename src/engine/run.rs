//! Runs a plan's chunks on a rayon pool: workers take chunks in offset order, finish them
//! in any order, and the [`Tracker`] keeps the low watermark below which all are done.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::plan::Chunk;
use super::progress::Progress;
use crate::error::{Error, Result};

/// Which chunks are handed out and which are done.
#[derive(Debug)]
pub struct Tracker {
    /// Offsets of chunks handed out and not yet done.
    running: BTreeSet<u64>,
    /// The end of the last chunk handed out (the image size once all are).
    handed: u64,
}

impl Tracker {
    /// A tracker for a job whose first chunk starts at `start`.
    pub fn new(start: u64) -> Tracker {
        Tracker {
            running: BTreeSet::new(),
            handed: start,
        }
    }

    /// Records that `chunk` was handed to a worker.
    pub fn start(&mut self, chunk: &Chunk) {
        self.running.insert(chunk.offset);
        self.handed = chunk.end();
    }

    /// Records that no chunk is left, in an image of `size` bytes.
    pub fn drained(&mut self, size: u64) {
        self.handed = self.handed.max(size);
    }

    /// Records that `chunk` is done.
    pub fn done(&mut self, chunk: &Chunk) {
        self.running.remove(&chunk.offset);
    }

    /// The offset below which every chunk is done.
    pub fn watermark(&self) -> u64 {
        self.running.first().copied().unwrap_or(self.handed)
    }
}

struct Queue<I> {
    chunks: I,
    tracker: Tracker,
    size: u64,
}

/// Runs `work` on every chunk of `chunks` with `jobs` workers. Each worker owns a scratch
/// buffer that `work` may grow; memory is bounded by `jobs` buffers. The first error (or
/// `cancel` turning true: [`Error::Interrupted`]) stops new chunks from starting, lets
/// running ones finish, and is returned.
pub(crate) fn run<I, F>(
    jobs: usize,
    size: u64,
    chunks: I,
    cancel: Option<&AtomicBool>,
    progress: &dyn Progress,
    work: F,
) -> Result<()>
where
    I: Iterator<Item = Chunk> + Send,
    F: Fn(&Chunk, &mut Vec<u8>) -> Result<()> + Sync,
{
    let jobs = jobs.max(1);
    let mut chunks = chunks.peekable();
    let start = chunks.peek().map_or(size, |c| c.offset);
    let queue = Mutex::new(Queue {
        chunks,
        tracker: Tracker::new(start),
        size,
    });
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("rbdcp-{i}"))
        .build()
        .map_err(|e| Error::Unsupported(format!("cannot start {jobs} worker threads: {e}")))?;
    pool.scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|_| {
                let mut buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(Error::Interrupted);
                        break;
                    }
                    let Some(chunk) = next(&queue) else { break };
                    match work(&chunk, &mut buf) {
                        Ok(()) => {
                            let mark = {
                                let mut q = queue.lock().unwrap();
                                q.tracker.done(&chunk);
                                q.tracker.watermark()
                            };
                            progress.advance(chunk.len);
                            progress.mark(mark);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn next<I: Iterator<Item = Chunk>>(queue: &Mutex<Queue<I>>) -> Option<Chunk> {
    let mut q = queue.lock().unwrap();
    match q.chunks.next() {
        Some(chunk) => {
            q.tracker.start(&chunk);
            Some(chunk)
        }
        None => {
            let size = q.size;
            q.tracker.drained(size);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn chunk(offset: u64, len: u64) -> Chunk {
        Chunk {
            offset,
            len,
            data: true,
        }
    }

    #[test]
    fn cancelling_stops_with_interrupted() {
        let cancel = AtomicBool::new(false);
        let done = AtomicU64::new(0);
        let chunks = (0..10_000).map(|i| chunk(i * 10, 10));
        let err = run(
            2,
            100_000,
            chunks,
            Some(&cancel),
            &super::super::Silent,
            |_, _| {
                if done.fetch_add(1, Ordering::Relaxed) == 100 {
                    cancel.store(true, Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err}");
        assert!(done.load(Ordering::Relaxed) < 110);
    }

    #[test]
    fn watermark_waits_for_the_lowest_running_chunk() {
        let mut t = Tracker::new(0);
        let (a, b, c) = (chunk(0, 10), chunk(10, 10), chunk(30, 10));
        t.start(&a);
        t.start(&b);
        t.start(&c);
        assert_eq!(t.watermark(), 0);
        t.done(&b);
        t.done(&c);
        assert_eq!(t.watermark(), 0, "a is still running");
        t.done(&a);
        assert_eq!(t.watermark(), 40);
        t.drained(100);
        assert_eq!(t.watermark(), 100);
    }

    struct Marks(Mutex<Vec<u64>>, AtomicU64);

    impl Progress for Marks {
        fn advance(&self, bytes: u64) {
            self.1.fetch_add(bytes, Ordering::Relaxed);
        }
        fn mark(&self, offset: u64) {
            self.0.lock().unwrap().push(offset);
        }
    }

    #[test]
    fn every_chunk_runs_once_and_the_last_mark_is_the_size() {
        let chunks: Vec<Chunk> = (0..200).map(|i| chunk(i * 10, 10)).collect();
        let seen = Mutex::new(Vec::new());
        let marks = Marks(Mutex::new(Vec::new()), AtomicU64::new(0));
        run(8, 2000, chunks.clone().into_iter(), None, &marks, |c, _| {
            // Later chunks finish first now and then, so completion is out of order.
            if c.offset % 70 == 0 {
                std::thread::yield_now();
            }
            seen.lock().unwrap().push(c.offset);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, chunks.iter().map(|c| c.offset).collect::<Vec<_>>());
        assert_eq!(marks.1.load(Ordering::Relaxed), 2000);
        let marks = marks.0.into_inner().unwrap();
        assert_eq!(marks.iter().max(), Some(&2000));
    }

    #[test]
    fn the_first_error_stops_new_chunks() {
        let started = AtomicU64::new(0);
        let chunks = (0..10_000).map(|i| chunk(i * 10, 10));
        let err = run(4, 100_000, chunks, None, &super::super::Silent, |c, _| {
            started.fetch_add(1, Ordering::Relaxed);
            if c.offset == 500 {
                return Err(Error::io(
                    "write",
                    "img",
                    c.offset,
                    std::io::ErrorKind::Other.into(),
                ));
            }
            Ok(())
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("write on img at offset 500"),
            "{err}"
        );
        let n = started.load(Ordering::Relaxed);
        // 51 chunks up to the failing one, plus at most a few the other workers had taken.
        assert!(n <= 51 + 8, "{n} chunks started");
    }
}
