//! Writes in flight on an asynchronous sink: a bounded window of chunks whose writes were
//! started and have not all landed. They land in any order; the window keeps the low
//! watermark, the first error and the buffers to reuse.

use std::collections::VecDeque;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::copy::{each_run, Counts};
use super::plan::Chunk;
use super::progress::Progress;
use super::run::Tracker;
use super::ImageSink;
use crate::error::{Error, Result};

/// Called once with the outcome of an asynchronous write.
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// The bytes in flight of a run, and its spare byte buffers.
///
/// Its limit is the one memory budget the jobs of a run share (`--max-in-flight`): a
/// window holds at most that many bytes of chunks being read or written, workers that
/// each hold a buffer are at most as many as fit in it, and the buffers out and spare
/// together hold no more than that either (a new buffer that would pass it makes room
/// by freeing spare ones first).
///
/// Spare buffers are given back when a write lands and taken for the next read. Big
/// buffers freed and allocated afresh cost more than the copy itself: the allocator hands
/// them back to the kernel, which then faults in and clears new pages for every chunk.
#[derive(Debug)]
pub struct Buffers {
    limit: u64,
    spare: Mutex<Spare>,
}

#[derive(Debug, Default)]
struct Spare {
    buffers: Vec<Vec<u8>>,
    /// Their capacity.
    kept: usize,
    /// The capacity of the buffers taken and not given back.
    out: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new(super::DEFAULT_IN_FLIGHT)
    }
}

impl Buffers {
    /// A budget of `limit` bytes in flight (at least 1 MiB).
    pub fn new(limit: u64) -> Buffers {
        Buffers {
            limit: limit.max(1 << 20),
            spare: Mutex::default(),
        }
    }

    /// The bytes a run may hold in flight.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many of `jobs` workers that each hold `each` bytes fit in the budget (at least 1).
    pub fn workers(&self, jobs: usize, each: u64) -> usize {
        let fit = (self.limit / each.max(1)).max(1);
        jobs.clamp(1, usize::try_from(fit).unwrap_or(usize::MAX))
    }

    /// A buffer with room for `len` bytes (up to 64 MiB: a length read from a stream may be
    /// wrong), holding whatever it held before: the smallest spare one that fits, else a new,
    /// empty one rounded up to a power of two so that it fits later requests too.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let len = len.min(64 << 20);
        let mut freed = Vec::new();
        let mut s = self.spare.lock().unwrap();
        let fit = (0..s.buffers.len())
            .filter(|&i| s.buffers[i].capacity() >= len)
            .min_by_key(|&i| s.buffers[i].capacity());
        let buf = match fit {
            Some(i) => {
                let buf = s.buffers.swap_remove(i);
                s.kept -= buf.capacity();
                buf
            }
            None => {
                let room = len.next_power_of_two();
                // Spare buffers too small for this one would otherwise stay beside it,
                // out of use while chunks of its size come (a history's steps, or
                // extents of every size): the biggest go first.
                while s.kept + s.out + room > self.limit as usize && !s.buffers.is_empty() {
                    let biggest = (0..s.buffers.len())
                        .max_by_key(|&i| s.buffers[i].capacity())
                        .expect("not empty");
                    let buf = s.buffers.swap_remove(biggest);
                    s.kept -= buf.capacity();
                    freed.push(buf);
                }
                Vec::with_capacity(room)
            }
        };
        s.out += buf.capacity();
        drop(s);
        drop(freed);
        buf
    }

    /// Keeps `buf` (taken from here) for reuse, unless the budget is full.
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        let mut s = self.spare.lock().unwrap();
        s.out = s.out.saturating_sub(cap);
        if cap > 0 && s.kept + s.out + cap <= self.limit as usize {
            s.kept += cap;
            s.buffers.push(buf);
        }
    }
}

/// The window: chunks begun (being read, or being written) and not yet complete.
pub(crate) struct Flight {
    state: Mutex<State>,
    stall: Duration,
    changed: Condvar,
    max_bytes: u64,
    max_chunks: usize,
    buffers: Arc<Buffers>,
    /// Whether buffers go back to `buffers` once written (see [`Flight::new`]).
    recycle: bool,
}

struct State {
    tracker: Tracker,
    /// Data bytes of the chunks begun and not complete.
    bytes: u64,
    /// Chunks begun and not complete.
    chunks: usize,
    /// Tickets alive: requests a sink may still call back on.
    tickets: usize,
    /// Bytes completed since progress was last told.
    news: u64,
    /// Threads waiting for room or for the last request.
    waiting: usize,
    error: Option<Error>,
    /// When a chunk last completed (or the window opened).
    last: Instant,
    /// The requests still in flight were given up on: the sink may call back later.
    abandoned: bool,
}

/// How long a window waits after a failure for the requests still in flight (at most).
const GRACE: Duration = Duration::from_secs(30);

impl Flight {
    /// A window of at most `max_chunks` chunks and `max_bytes` data bytes (a chunk bigger
    /// than that still goes, alone), whose first chunk starts at or after `start`.
    /// With `recycle`, completed chunks give their buffers to `buffers` for the next reads;
    /// without, the buffers are freed: a stream's pieces come in every size, each read
    /// into a buffer of its own, and spare ones of other sizes would only pile up (an
    /// import-diff 5 ms away peaked 20 MiB higher with them, and took longer).
    ///
    /// When no chunk completes for `stall` while requests are in flight (librbd holds
    /// writes back without a time-out while it cannot take the image's lock, as after its
    /// client was blocklisted), or for [`GRACE`] once the job failed, the job fails and the
    /// requests in flight are abandoned ([`Error::Abandoned`]): the caller must then keep
    /// the sink alive, since the requests may still call back.
    pub(crate) fn new(
        max_bytes: u64,
        max_chunks: usize,
        buffers: &Arc<Buffers>,
        start: u64,
        stall: Duration,
        recycle: bool,
    ) -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new(State {
                tracker: Tracker::new(start),
                bytes: 0,
                chunks: 0,
                tickets: 0,
                news: 0,
                waiting: 0,
                error: None,
                last: Instant::now(),
                abandoned: false,
            }),
            stall,
            changed: Condvar::new(),
            max_bytes,
            max_chunks: max_chunks.max(1),
            buffers: Arc::clone(buffers),
            recycle,
        })
    }

    /// Waits until `chunk` fits in the window and enters it, with `extra` bytes it holds
    /// besides its data until [`Flight::settle`] gives them back. Chunks must begin in
    /// offset order. Fails at once if the job failed.
    pub(crate) fn begin(&self, chunk: &Chunk, extra: u64) -> Result<()> {
        self.begin_at(chunk, chunk.data_len() + extra)
    }

    /// Waits until `len` bytes fit in the window and enters it with `key`, the range the
    /// watermark counts in (a record's bytes in a stream); keys must begin in order.
    pub(crate) fn begin_at(&self, key: &Chunk, len: u64) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        loop {
            if s.error.is_some() {
                return Err(Error::Interrupted);
            }
            let full =
                s.chunks >= self.max_chunks || (s.bytes > 0 && s.bytes + len > self.max_bytes);
            if !full {
                break;
            }
            s = self.pause(s);
        }
        s.tracker.start(key);
        s.bytes += len;
        s.chunks += 1;
        Ok(())
    }

    /// Gives back `extra` bytes a chunk entered the window with besides its data (see
    /// [`Flight::begin`]).
    pub(crate) fn settle(&self, extra: u64) {
        let mut s = self.state.lock().unwrap();
        s.bytes -= extra;
        let wake = s.waiting > 0 && s.bytes <= self.max_bytes / 4 * 3;
        drop(s);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Records that no chunk is left, in an image of `size` bytes.
    pub(crate) fn drained(&self, size: u64) {
        self.state.lock().unwrap().tracker.drained(size);
    }

    /// The offset below which every chunk's writes landed.
    pub(crate) fn watermark(&self) -> u64 {
        self.state.lock().unwrap().tracker.watermark()
    }

    /// Whether the job failed.
    pub(crate) fn failed(&self) -> bool {
        self.state.lock().unwrap().error.is_some()
    }

    /// Whether requests in flight were given up on.
    pub(crate) fn abandoned(&self) -> bool {
        self.state.lock().unwrap().abandoned
    }

    /// A buffer of `len` bytes (contents unspecified), reused where one is spare. Only
    /// bytes the buffer never held are zeroed.
    pub(crate) fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self.buffers.take(len);
        buf.truncate(len);
        buf.resize(len, 0);
        buf
    }

    /// A spare buffer with room for `len` bytes, as it is (for a read that fills it).
    pub(crate) fn spare(&self, len: usize) -> Vec<u8> {
        self.buffers.take(len)
    }

    /// Gives up on begun chunk `chunk`, whose read failed with `e`: the job fails, and the
    /// chunk leaves the window below the watermark.
    pub(crate) fn lost(self: &Arc<Self>, chunk: Chunk, e: Error, buf: Vec<u8>) {
        self.buffers.give(buf);
        self.ticket(chunk, Vec::new()).fail(e);
    }

    /// The ticket of a begun chunk whose bytes (empty for a zero chunk) are `buf`.
    pub(crate) fn ticket(self: &Arc<Self>, chunk: Chunk, buf: Vec<u8>) -> Arc<Ticket> {
        self.ticket_at(chunk, chunk, buf)
    }

    /// The ticket of what began with `key` (see [`Flight::begin_at`]), to write at `chunk`.
    pub(crate) fn ticket_at(
        self: &Arc<Self>,
        chunk: Chunk,
        key: Chunk,
        buf: Vec<u8>,
    ) -> Arc<Ticket> {
        self.state.lock().unwrap().tickets += 1;
        Arc::new(Ticket {
            flight: Arc::clone(self),
            chunk,
            key,
            buf,
            failed: AtomicBool::new(false),
        })
    }

    /// Fails the job with `e` (the first error wins) and wakes everyone waiting.
    pub(crate) fn fail(&self, e: Error) {
        self.state.lock().unwrap().error.get_or_insert(e);
        self.changed.notify_all();
    }

    /// Tells `progress` what completed since last time.
    pub(crate) fn report(&self, progress: &dyn Progress) {
        let (news, mark) = {
            let mut s = self.state.lock().unwrap();
            (std::mem::take(&mut s.news), s.tracker.watermark())
        };
        if news > 0 {
            progress.advance(news);
            progress.mark(mark);
        }
    }

    /// Waits until no request is in flight, tells `progress` the rest, and returns the
    /// first error, if any.
    pub(crate) fn wait(&self, progress: &dyn Progress) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        while s.tickets > 0 && !s.abandoned {
            s = self.pause(s);
        }
        let error = s.error.take();
        let abandoned = s.abandoned.then_some(s.tickets);
        drop(s);
        self.report(progress);
        match (error, abandoned) {
            (Some(e), Some(requests)) => Err(Error::Abandoned {
                requests,
                cause: Box::new(e),
            }),
            (error, _) => error.map_or(Ok(()), Err),
        }
    }

    /// Waits for a change, a second at most; gives up on the requests in flight when none
    /// completed for too long (see [`Flight::new`]).
    fn pause<'a>(&self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        s.waiting += 1;
        let mut s = self
            .changed
            .wait_timeout(s, Duration::from_secs(1))
            .unwrap()
            .0;
        s.waiting -= 1;
        let quiet = s.last.elapsed();
        let limit = match &s.error {
            // Requests on a connection only a new one can mend never answer.
            Some(e) if e.wants_new_connection() => Duration::ZERO,
            Some(_) => self.stall.min(GRACE),
            None => self.stall,
        };
        if s.tickets > 0 && quiet > limit && !s.abandoned {
            s.abandoned = true;
            let stalled = Error::Stalled {
                what: "write",
                requests: s.tickets,
                secs: quiet.as_secs(),
            };
            s.error.get_or_insert(stalled);
            self.changed.notify_all();
        }
        s
    }

    fn complete(&self, ticket: &mut Ticket) {
        let c = ticket.chunk;
        let mut s = self.state.lock().unwrap();
        s.tickets -= 1;
        s.chunks -= 1;
        s.bytes -= c.data_len();
        s.last = Instant::now();
        if !ticket.failed.load(Ordering::Relaxed) {
            // A failed chunk stays below the watermark: it was not written.
            s.tracker.done(&ticket.key);
            s.news += c.len;
        }
        // Wake a waiting submitter only once a quarter of the window is free, so that it
        // starts requests in batches instead of one per completion (each wake-up is a
        // context switch).
        let wake = s.waiting > 0
            && (s.tickets == 0
                || (s.chunks <= self.max_chunks * 3 / 4 && s.bytes <= self.max_bytes / 4 * 3));
        drop(s);
        if wake {
            self.changed.notify_all();
        }
        if self.recycle {
            self.buffers.give(std::mem::take(&mut ticket.buf));
        }
    }
}

/// Reads started and not yet taken, and those that came back: the hand-over from the
/// threads that start asynchronous reads (and the backend's threads that answer them) to
/// the one that starts their writes.
#[derive(Default)]
pub(crate) struct Reads {
    state: Mutex<Arrivals>,
    changed: Condvar,
}

#[derive(Default)]
struct Arrivals {
    back: VecDeque<(Chunk, Result<()>, Vec<u8>)>,
    /// Started and not back.
    out: usize,
    /// No read will start any more.
    closed: bool,
}

/// What [`Reads::next`] found.
pub(crate) enum Arrival {
    /// A read came back.
    Read(Chunk, Result<()>, Vec<u8>),
    /// Every read came back and no more will start.
    Done,
    /// Reads are out and none came back for too long (see [`Flight::new`]).
    Stalled(Error),
}

impl Reads {
    /// Counts a read about to start.
    pub(crate) fn start(&self) {
        self.state.lock().unwrap().out += 1;
    }

    /// Hands over a read that came back.
    pub(crate) fn arrive(&self, chunk: Chunk, result: Result<()>, buf: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        s.out -= 1;
        s.back.push_back((chunk, result, buf));
        drop(s);
        self.changed.notify_one();
    }

    /// Says that no read will start any more.
    pub(crate) fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_one();
    }

    /// Waits for the next read to come back, `stall` at most while some are out (or
    /// [`GRACE`] once `failed` says the job failed).
    pub(crate) fn next(&self, stall: Duration, failed: impl Fn() -> bool) -> Arrival {
        let mut s = self.state.lock().unwrap();
        let mut last = Instant::now();
        loop {
            if let Some((chunk, result, buf)) = s.back.pop_front() {
                return Arrival::Read(chunk, result, buf);
            }
            if s.closed && s.out == 0 {
                return Arrival::Done;
            }
            let limit = if failed() { stall.min(GRACE) } else { stall };
            if s.out > 0 && last.elapsed() > limit {
                return Arrival::Stalled(Error::Stalled {
                    what: "read",
                    requests: s.out,
                    secs: last.elapsed().as_secs(),
                });
            }
            if s.out == 0 {
                last = Instant::now();
            }
            s = self
                .changed
                .wait_timeout(s, Duration::from_secs(1))
                .unwrap()
                .0;
        }
    }
}

/// A chunk in the window with its bytes. It completes (leaves the window) when the last
/// reference goes: when every request started for it has called back.
pub(crate) struct Ticket {
    flight: Arc<Flight>,
    chunk: Chunk,
    /// What the watermark counts: the chunk itself, or a record's range in a stream.
    key: Chunk,
    buf: Vec<u8>,
    failed: AtomicBool,
}

impl Ticket {
    /// The chunk's bytes from `range`, to hand to a sink.
    fn block(self: &Arc<Self>, range: Range<usize>) -> Block {
        Block {
            ticket: Arc::clone(self),
            range,
        }
    }

    /// What a request for this chunk calls when it is done: an error fails the chunk and
    /// the job. A request dropped without an answer fails them too: it never counts as
    /// landed.
    fn done(self: &Arc<Self>) -> Done {
        let mut answer = Answer(Some(Arc::clone(self)));
        Box::new(move |result| {
            let ticket = answer.0.take().expect("answered once");
            if let Err(e) = result {
                ticket.fail(e);
            }
        })
    }

    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        self.flight.fail(e);
    }
}

/// A request's hold on its ticket until it is answered.
struct Answer(Option<Arc<Ticket>>);

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(ticket) = self.0.take() {
            let c = ticket.chunk;
            ticket.fail(Error::Unsupported(format!(
                "a write of {} bytes at offset {} was dropped without an answer",
                c.len, c.offset
            )));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let flight = Arc::clone(&self.flight);
        flight.complete(self);
    }
}

/// Bytes of one chunk on their way to a sink, held until the write has landed. A clone
/// holds them too (a retry keeps one to send them again).
#[derive(Clone)]
pub struct Block {
    ticket: Arc<Ticket>,
    range: Range<usize>,
}

impl Deref for Block {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.ticket.buf[self.range.clone()]
    }
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Starts writing a ticket's chunk to `dst`: its data runs as writes, its long zero runs
/// (or the whole chunk, when it has no bytes) as zeroing. The ticket completes when all
/// of them have landed.
pub(crate) fn submit(dst: &dyn ImageSink, ticket: Arc<Ticket>, counts: &Counts) {
    let c = ticket.chunk;
    if ticket.buf.is_empty() {
        counts.zero.fetch_add(c.len, Ordering::Relaxed);
        dst.zero_async(c.offset, c.len, ticket.done());
        return;
    }
    let started = each_run(c.offset, &ticket.buf, counts, |at, data, len| {
        match data {
            Some(range) => dst.write_async(at, ticket.block(range), ticket.done()),
            None => dst.zero_async(at, len, ticket.done()),
        }
        Ok(()) // Errors arrive through `done`.
    });
    debug_assert!(started.is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Silent;

    fn chunk(offset: u64, len: u64) -> Chunk {
        Chunk {
            offset,
            len,
            data: true,
        }
    }

    #[test]
    fn the_window_holds_back_what_does_not_fit() {
        let flight = Flight::new(10, 8, &Arc::default(), 0, Duration::from_secs(60), true);
        flight.begin(&chunk(0, 6), 0).unwrap();
        let first = flight.ticket(chunk(0, 6), vec![1; 6]);
        let entered = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                flight.begin(&chunk(6, 6), 0).unwrap();
                entered.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!entered.load(Ordering::SeqCst), "6 + 6 bytes went past 10");
            drop(first);
        });
        assert!(entered.load(Ordering::SeqCst));
    }

    #[test]
    fn a_read_counts_double_until_it_is_back() {
        let flight = Flight::new(10, 8, &Arc::default(), 0, Duration::from_secs(60), true);
        flight.begin(&chunk(0, 4), 4).unwrap();
        let entered = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                flight.begin(&chunk(4, 4), 4).unwrap();
                entered.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!entered.load(Ordering::SeqCst), "8 + 8 bytes went past 10");
            // The first read is back: its chunk holds 4 bytes, and 4 + 8 still pass 10.
            flight.settle(4);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!entered.load(Ordering::SeqCst), "4 + 8 bytes went past 10");
            drop(flight.ticket(chunk(0, 4), vec![1; 4]));
        });
        assert!(entered.load(Ordering::SeqCst));
    }

    #[test]
    fn buffers_out_and_spare_stay_within_the_budget() {
        let buffers = Buffers::new(8 << 20);
        // Chunks of 1 MiB fill the spare pile...
        let small: Vec<_> = (0..8).map(|_| buffers.take(1 << 20)).collect();
        small.into_iter().for_each(|b| buffers.give(b));
        // ...then 4 MiB ones come: the small ones are freed to make room, not kept beside.
        let big = [buffers.take(4 << 20), buffers.take(4 << 20)];
        let s = buffers.spare.lock().unwrap();
        assert_eq!(s.out, 8 << 20);
        assert_eq!(s.kept, 0, "{} spare bytes beside 8 MiB out", s.kept);
        drop(s);
        big.into_iter().for_each(|b| buffers.give(b));
        // Given back, the big ones are kept and reused.
        let again = buffers.take(3 << 20);
        assert_eq!(again.capacity(), 4 << 20);
        let s = buffers.spare.lock().unwrap();
        assert_eq!((s.kept, s.out), (4 << 20, 4 << 20));
    }

    #[test]
    fn a_request_dropped_unanswered_fails_its_chunk() {
        let flight = Flight::new(100, 8, &Arc::default(), 0, Duration::from_secs(60), true);
        let a = chunk(0, 10);
        flight.begin(&a, 0).unwrap();
        flight.drained(10);
        let ticket = flight.ticket(a, vec![1; 10]);
        drop(ticket.done());
        drop(ticket);
        assert_eq!(flight.watermark(), 0, "it did not land");
        let err = flight.wait(&Silent).unwrap_err();
        assert!(
            err.to_string().contains("dropped without an answer"),
            "{err}"
        );
    }

    #[test]
    fn writes_that_never_answer_are_abandoned() {
        let flight = Flight::new(100, 8, &Arc::default(), 0, Duration::from_millis(100), true);
        let a = chunk(0, 10);
        flight.begin(&a, 0).unwrap();
        let ticket = flight.ticket(a, vec![1; 10]);
        // A request the sink never answers holds its block.
        let held = ticket.block(0..10);
        drop(ticket);
        let err = flight.wait(&Silent).unwrap_err();
        assert!(err.abandoned(), "{err}");
        assert!(
            err.to_string().contains("1 write(s) got no answer"),
            "{err}"
        );
        assert!(flight.abandoned());
        assert_eq!(flight.watermark(), 0, "nothing counts as landed");
        drop(held);
    }

    #[test]
    fn a_failed_chunk_stays_below_the_watermark() {
        let flight = Flight::new(100, 8, &Arc::default(), 0, Duration::from_secs(60), true);
        let (a, b) = (chunk(0, 10), chunk(10, 10));
        flight.begin(&a, 0).unwrap();
        flight.begin(&b, 0).unwrap();
        flight.drained(20);
        let (ta, tb) = (flight.ticket(a, vec![1; 10]), flight.ticket(b, vec![2; 10]));
        (tb.done())(Ok(()));
        (ta.done())(Err(Error::Unsupported("lost".into())));
        drop((ta, tb));
        assert_eq!(flight.state.lock().unwrap().tracker.watermark(), 0);
        let err = flight.wait(&Silent).unwrap_err();
        assert_eq!(err.to_string(), "lost");
    }
}
