//! Runs a plan's chunks on a rayon pool: workers take chunks in offset order, finish them
//! in any order, and the [`Tracker`] keeps the low watermark below which all are done.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

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
        if self.running.is_empty() && self.handed < chunk.offset {
            // Nothing runs and nothing below this chunk is left: the gap is done.
            self.handed = chunk.offset;
        }
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

/// One unit of work: a chunk, and whatever travels with it (the data read from a stream).
pub(crate) trait Task: Send {
    /// The range it covers.
    fn chunk(&self) -> Chunk;
}

impl Task for Chunk {
    fn chunk(&self) -> Chunk {
        *self
    }
}

struct Queue<I> {
    tasks: I,
    tracker: Tracker,
    size: u64,
    /// The tasks failed: hand out nothing more.
    broken: bool,
}

/// What a running job shares between its workers.
struct Shared<I> {
    queue: Mutex<Queue<I>>,
    /// Signalled whenever a chunk is done or the job fails.
    turn: Condvar,
    failed: AtomicBool,
    first_error: Mutex<Option<Error>>,
}

impl<I> Shared<I> {
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(e);
        let _q = self.queue.lock().unwrap();
        self.turn.notify_all();
    }
}

/// Lets a worker wait for its turn, for sinks that must be written in offset order.
pub(crate) struct Lane<'a> {
    wait: &'a (dyn Fn(&Chunk) -> Result<()> + Sync),
}

impl Lane<'_> {
    /// Returns once every chunk handed out before `chunk` is done, or fails when the job did.
    pub(crate) fn wait_turn(&self, chunk: &Chunk) -> Result<()> {
        (self.wait)(chunk)
    }
}

/// Runs `work` on every task of `tasks` with `jobs` workers, in the order given; they finish
/// in any order. Each worker owns a scratch buffer that `work` may grow, so memory is
/// bounded by `jobs` buffers. The first error (from `tasks` or `work`, or `cancel` turning
/// true: [`Error::Interrupted`]) stops new tasks from starting, lets running ones finish,
/// and is returned.
pub(crate) fn run<I, T, F>(
    jobs: usize,
    size: u64,
    tasks: I,
    cancel: Option<&AtomicBool>,
    progress: &dyn Progress,
    work: F,
) -> Result<()>
where
    I: Iterator<Item = Result<T>> + Send,
    T: Task,
    F: Fn(T, &mut Vec<u8>, &Lane) -> Result<()> + Sync,
{
    let jobs = jobs.max(1);
    let queue = Queue {
        tasks,
        tracker: Tracker::new(0),
        size,
        broken: false,
    };
    let shared = Shared {
        queue: Mutex::new(queue),
        turn: Condvar::new(),
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
    };
    let wait = |chunk: &Chunk| {
        let mut q = shared.queue.lock().unwrap();
        while q
            .tracker
            .running
            .first()
            .is_some_and(|&first| first < chunk.offset)
        {
            if shared.failed.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            q = shared.turn.wait(q).unwrap();
        }
        Ok(())
    };
    let lane = Lane { wait: &wait };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("rbdcp-{i}"))
        .build()
        .map_err(|e| Error::Unsupported(format!("cannot start {jobs} worker threads: {e}")))?;
    pool.scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|_| {
                let mut buf = Vec::new();
                while !shared.failed.load(Ordering::Relaxed) {
                    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        shared.fail(Error::Interrupted);
                        break;
                    }
                    let task = match next(&shared.queue) {
                        Ok(Some(task)) => task,
                        Ok(None) => break,
                        Err(e) => {
                            shared.fail(e);
                            break;
                        }
                    };
                    let chunk = task.chunk();
                    match work(task, &mut buf, &lane) {
                        Ok(()) => {
                            let mark = {
                                let mut q = shared.queue.lock().unwrap();
                                q.tracker.done(&chunk);
                                shared.turn.notify_all();
                                q.tracker.watermark()
                            };
                            progress.advance(chunk.len);
                            progress.mark(mark);
                        }
                        Err(e) => shared.fail(e),
                    }
                }
            });
        }
    });
    match shared.first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn next<I, T>(queue: &Mutex<Queue<I>>) -> Result<Option<T>>
where
    I: Iterator<Item = Result<T>>,
    T: Task,
{
    let mut q = queue.lock().unwrap();
    if q.broken {
        return Ok(None);
    }
    let task = q
        .tasks
        .next()
        .transpose()
        .inspect_err(|_| q.broken = true)?;
    match task {
        Some(task) => {
            q.tracker.start(&task.chunk());
            Ok(Some(task))
        }
        None => {
            let size = q.size;
            q.tracker.drained(size);
            Ok(None)
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
    fn turns_let_chunks_write_in_offset_order() {
        let chunks: Vec<Chunk> = (0..300).map(|i| chunk(i * 10, 10)).collect();
        let order = Mutex::new(Vec::new());
        run(
            8,
            3000,
            chunks.clone().into_iter().map(Ok),
            None,
            &super::super::Silent,
            |c: Chunk, _, lane| {
                if c.offset % 30 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                lane.wait_turn(&c)?;
                order.lock().unwrap().push(c.offset);
                Ok(())
            },
        )
        .unwrap();
        let order = order.into_inner().unwrap();
        assert_eq!(order, chunks.iter().map(|c| c.offset).collect::<Vec<_>>());
    }

    #[test]
    fn a_failure_wakes_the_workers_waiting_for_their_turn() {
        let chunks = (0..100).map(|i| Ok(chunk(i * 10, 10)));
        let err = run(
            4,
            1000,
            chunks,
            None,
            &super::super::Silent,
            |c: Chunk, _, lane| {
                if c.offset == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    return Err(Error::Unsupported("first chunk failed".into()));
                }
                lane.wait_turn(&c)
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "first chunk failed");
    }

    #[test]
    fn an_error_from_the_tasks_stops_the_run() {
        let tasks = (0..100).map(|i| match i {
            50 => Err(Error::Unsupported("bad stream".into())),
            i => Ok(chunk(i * 10, 10)),
        });
        let done = AtomicU64::new(0);
        let err = run(
            2,
            1000,
            tasks,
            None,
            &super::super::Silent,
            |_: Chunk, _, _| {
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "bad stream");
        assert_eq!(done.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn cancelling_stops_with_interrupted() {
        let cancel = AtomicBool::new(false);
        let done = AtomicU64::new(0);
        let chunks = (0..10_000).map(|i| Ok(chunk(i * 10, 10)));
        let err = run(
            2,
            100_000,
            chunks,
            Some(&cancel),
            &super::super::Silent,
            |_: Chunk, _, _| {
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
        run(
            8,
            2000,
            chunks.clone().into_iter().map(Ok),
            None,
            &marks,
            |c: Chunk, _, _| {
                // Later chunks finish first now and then, so completion is out of order.
                if c.offset % 70 == 0 {
                    std::thread::yield_now();
                }
                seen.lock().unwrap().push(c.offset);
                Ok(())
            },
        )
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
        let chunks = (0..1_000_000).map(|i| Ok(chunk(i * 10, 10)));
        let err = run(
            4,
            10_000_000,
            chunks,
            None,
            &super::super::Silent,
            |c: Chunk, _, _| {
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
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("write on img at offset 500"),
            "{err}"
        );
        let n = started.load(Ordering::Relaxed);
        // 51 chunks up to the failing one, plus those the other workers took before they saw
        // the failure: a few, or more while a loaded machine keeps the failing worker from
        // running; never the rest of the million (a bound no scheduler can reach).
        assert!(n < 100_000, "{n} chunks started");
    }
}
