//! Retries transient errors (time-outs, dropped connections, EAGAIN, EBUSY) with
//! exponential backoff and jitter: one wrapper around any source, sink or record store,
//! not a flag inside each backend. Permanent errors pass at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Store;
use crate::engine::{Block, Done, Extent, Filled, ImageSink, ImageSource, Layout};
use crate::error::{Error, Result};

/// How to retry.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Retries after the first attempt; 0 disables retrying.
    pub retries: u32,
    /// The first wait; each next one doubles, up to `max_wait`.
    pub first_wait: Duration,
    /// The longest wait between two attempts.
    pub max_wait: Duration,
    /// Retries made, by every wrapper sharing this policy.
    pub count: Arc<AtomicU64>,
    /// Turned true from outside: waiting stops and the last error is returned.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retries: 5,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            count: Arc::default(),
            cancel: None,
        }
    }
}

impl Policy {
    /// The wait before attempt `attempt + 1`: doubling from `first_wait`, at most
    /// `max_wait`, and a random half of it taken off so that many clients do not retry in
    /// step.
    pub fn wait(&self, attempt: u32) -> Duration {
        let full = self
            .first_wait
            .saturating_mul(1 << (attempt - 1).min(20))
            .min(self.max_wait);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Sleeps `wait`, or less if cancelled meanwhile.
    pub(crate) fn sleep(&self, wait: Duration) {
        let end = Instant::now() + wait;
        while !self.cancelled() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// Whether `e`, from attempt `attempt`, deserves another one.
    fn again(&self, e: &Error, attempt: u32) -> bool {
        e.is_transient() && attempt <= self.retries && !self.cancelled()
    }

    /// The error to report after `attempts` attempts ended with `e`.
    fn give_up(e: Error, attempts: u32) -> Error {
        match attempts {
            1 => e,
            _ => Error::Retried {
                attempts,
                last: Box::new(e),
            },
        }
    }

    /// Calls `f` until it succeeds, fails for good, or the retries are spent.
    pub fn call<R>(&self, f: impl FnMut() -> Result<R>) -> Result<R> {
        self.call_from(1, f)
    }

    /// [`Policy::call`] from attempt `attempt`: the ones before failed elsewhere.
    fn call_from<R>(&self, mut attempt: u32, mut f: impl FnMut() -> Result<R>) -> Result<R> {
        loop {
            match f() {
                Err(e) if self.again(&e, attempt) => {
                    self.count.fetch_add(1, Ordering::Relaxed);
                    self.sleep(self.wait(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(Policy::give_up(e, attempt)),
                ok => return ok,
            }
        }
    }
}

/// A source, sink or store whose calls are retried as its [`Policy`] says.
pub struct Retry<T: ?Sized> {
    inner: Arc<T>,
    policy: Policy,
}

impl<T: ?Sized> Retry<T> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<T>, policy: Policy) -> Retry<T> {
        Retry { inner, policy }
    }
}

impl ImageSource for Retry<dyn ImageSource> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn object_size(&self) -> Option<u64> {
        self.inner.object_size()
    }
    fn layout(&self) -> Layout {
        self.inner.layout()
    }
    fn base(&self) -> Option<&str> {
        self.inner.base()
    }
    fn identity(&self) -> Vec<(String, String)> {
        self.inner.identity()
    }
    fn extents(&self) -> Result<Vec<Extent>> {
        self.policy.call(|| self.inner.extents())
    }
    fn diff_mode(&self) -> Option<&'static str> {
        self.inner.diff_mode()
    }
    fn carries(&self) -> Result<crate::engine::Carries> {
        self.policy.call(|| self.inner.carries())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.policy.call(|| self.inner.read_at(offset, buf))
    }
    fn reads_async(&self) -> bool {
        self.inner.reads_async()
    }
    fn read_async(&self, offset: u64, len: usize, buf: Vec<u8>, done: Filled) {
        let (inner, policy) = (Arc::clone(&self.inner), self.policy.clone());
        let again = Box::new(move |result: Result<()>, mut buf: Vec<u8>| match result {
            Err(e) if policy.again(&e, 1) => {
                policy.count.fetch_add(1, Ordering::Relaxed);
                // The next attempts block: on a thread of their own, since this is the
                // backend's callback thread. A failed read is rare; its retries need no speed.
                aside(
                    done,
                    move |done: Filled| {
                        policy.sleep(policy.wait(1));
                        buf.truncate(len);
                        buf.resize(len, 0);
                        let result = policy.call_from(2, || inner.read_at(offset, &mut buf));
                        done(result, buf);
                    },
                    |done| done(Err(e), Vec::new()),
                );
            }
            result => done(result, buf),
        });
        self.inner.read_async(offset, len, buf, again);
    }
}

/// Runs `work(done)` on a thread of its own (the backend's callback thread must not sleep),
/// or `failed(done)` here if no thread starts: `done` is called whatever happens, since a
/// request dropped unanswered would count as landed. It is kept here until the thread runs.
fn aside<D: Send + 'static>(
    done: D,
    work: impl FnOnce(D) + Send + 'static,
    failed: impl FnOnce(D),
) {
    let slot = Arc::new(Mutex::new(Some(done)));
    let taken = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("rbdcp-retry".into())
        .spawn(move || {
            let done = taken.lock().unwrap().take().expect("taken once");
            work(done);
        });
    if spawned.is_err() {
        if let Some(done) = slot.lock().unwrap().take() {
            failed(done);
        }
    }
}

/// An asynchronous request, sent again after a transient failure.
enum Request {
    Write(u64, Block),
    Zero(u64, u64),
}

impl Request {
    /// Sends the request to `sink`; on a transient failure, waits (on a thread of its own:
    /// `done` runs on the backend's callback thread, which must not sleep) and sends it
    /// again, up to the policy's retries; then calls `done`.
    fn send(self, sink: Arc<dyn ImageSink>, policy: Policy, attempt: u32, done: Done) {
        let again = {
            let (sink, policy) = (Arc::clone(&sink), policy.clone());
            let request = match &self {
                Request::Write(at, block) => Request::Write(*at, block.clone()),
                Request::Zero(at, len) => Request::Zero(*at, *len),
            };
            Box::new(move |result: Result<()>| match result {
                Err(e) if policy.again(&e, attempt) => {
                    policy.count.fetch_add(1, Ordering::Relaxed);
                    let wait = policy.wait(attempt);
                    aside(
                        done,
                        move |done| {
                            policy.sleep(wait);
                            request.send(sink, policy, attempt + 1, done);
                        },
                        |done| done(Err(Policy::give_up(e, attempt))),
                    );
                }
                Err(e) => done(Err(Policy::give_up(e, attempt))),
                ok => done(ok),
            }) as Done
        };
        match self {
            Request::Write(at, block) => sink.write_async(at, block, again),
            Request::Zero(at, len) => sink.zero_async(at, len, again),
        }
    }
}

impl ImageSink for Retry<dyn ImageSink> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn object_size(&self) -> Option<u64> {
        self.inner.object_size()
    }
    fn ordered(&self) -> bool {
        self.inner.ordered()
    }
    fn zeroed(&self) -> bool {
        self.inner.zeroed()
    }
    fn resize(&self, size: u64) -> Result<()> {
        self.policy.call(|| self.inner.resize(size))
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.policy.call(|| self.inner.allocate(offset, len))
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.policy.call(|| self.inner.write_at(offset, data))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.policy.call(|| self.inner.write_zeroes(offset, len))
    }
    fn asynchronous(&self) -> bool {
        self.inner.asynchronous()
    }
    fn durable_when_landed(&self) -> bool {
        self.inner.durable_when_landed()
    }
    fn write_async(&self, offset: u64, data: Block, done: Done) {
        let request = Request::Write(offset, data);
        request.send(Arc::clone(&self.inner), self.policy.clone(), 1, done);
    }
    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        let request = Request::Zero(offset, len);
        request.send(Arc::clone(&self.inner), self.policy.clone(), 1, done);
    }
    fn ready(&self) -> Result<()> {
        // Taking a lock is not retried, as it was not when it was taken before the job.
        self.inner.ready()
    }
    fn flush(&self) -> Result<()> {
        self.policy.call(|| self.inner.flush())
    }
    fn finish(&self) -> Result<()> {
        // The steps of the end (a rename, a snapshot) are not simply repeatable; a run that
        // fails in them leaves its record, and a rerun completes them.
        self.flush()?;
        self.inner.finish()
    }
}

impl Store for Retry<dyn Store> {
    fn load(&self) -> Result<Option<String>> {
        self.policy.call(|| self.inner.load())
    }
    fn save(&self, record: &str) -> Result<()> {
        self.policy.call(|| self.inner.save(record))
    }
    fn clear(&self) -> Result<()> {
        self.policy.call(|| self.inner.clear())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::AtomicU32;

    fn quick(retries: u32) -> Policy {
        Policy {
            retries,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(2),
            ..Policy::default()
        }
    }

    fn timeout() -> Error {
        Error::io("write", "img", 4096, io::ErrorKind::TimedOut.into())
    }

    #[test]
    fn transient_errors_are_retried_until_they_pass() {
        let p = quick(5);
        let calls = AtomicU32::new(0);
        let r = p.call(|| match calls.fetch_add(1, Ordering::Relaxed) {
            0..=2 => Err(timeout()),
            _ => Ok(7),
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(p.count.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn spent_retries_name_the_attempts() {
        let p = quick(2);
        let err = p.call(|| -> Result<()> { Err(timeout()) }).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("write on img at offset 4096"), "{text}");
        assert!(text.ends_with("(failed 3 times)"), "{text}");
        assert_eq!(p.count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn permanent_errors_fail_at_once() {
        let p = quick(5);
        let calls = AtomicU32::new(0);
        let err = p
            .call(|| -> Result<()> {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Error::io(
                    "write",
                    "img",
                    0,
                    io::Error::from_raw_os_error(libc::ENOSPC),
                ))
            })
            .unwrap_err();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(!err.to_string().contains("failed"), "{err}");
        let none = quick(0);
        assert!(none.call(|| -> Result<()> { Err(timeout()) }).is_err());
        assert_eq!(none.count.load(Ordering::Relaxed), 0);
    }

    /// A sink whose asynchronous zeroing times out `flaky` times, then works.
    struct Flaky {
        flaky: AtomicU32,
        calls: AtomicU32,
    }

    impl ImageSink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn zeroed(&self) -> bool {
            false
        }
        fn resize(&self, _: u64) -> Result<()> {
            Ok(())
        }
        fn write_at(&self, _: u64, _: &[u8]) -> Result<()> {
            Ok(())
        }
        fn write_zeroes(&self, _: u64, _: u64) -> Result<()> {
            Ok(())
        }
        fn zero_async(&self, _: u64, _: u64, done: Done) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.flaky.load(Ordering::SeqCst);
            if left > 0 {
                self.flaky.store(left - 1, Ordering::SeqCst);
                // As librbd does: the callback comes from another thread.
                std::thread::spawn(move || done(Err(timeout())));
            } else {
                done(Ok(()));
            }
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn finish(&self) -> Result<()> {
            Ok(())
        }
    }

    /// A source whose asynchronous reads time out (from another thread, as librbd's) and
    /// whose blocking reads time out `flaky` times, then read 7s.
    struct FlakySource {
        flaky: AtomicU32,
    }

    impl ImageSource for FlakySource {
        fn name(&self) -> &str {
            "flaky"
        }
        fn size(&self) -> u64 {
            1 << 20
        }
        fn extents(&self) -> Result<Vec<Extent>> {
            Ok(Vec::new())
        }
        fn read_at(&self, _: u64, buf: &mut [u8]) -> Result<()> {
            let left = self.flaky.load(Ordering::SeqCst);
            if left > 0 {
                self.flaky.store(left - 1, Ordering::SeqCst);
                return Err(timeout());
            }
            buf.fill(7);
            Ok(())
        }
        fn reads_async(&self) -> bool {
            true
        }
        fn read_async(&self, _: u64, _: usize, buf: Vec<u8>, done: Filled) {
            std::thread::spawn(move || done(Err(timeout()), buf));
        }
    }

    #[test]
    fn a_failed_asynchronous_read_is_read_again() {
        for (flaky, retries, ok) in [(1, 5, true), (5, 3, false)] {
            let policy = quick(retries);
            let src = Arc::new(FlakySource {
                flaky: AtomicU32::new(flaky),
            });
            let retry = Retry::new(src as Arc<dyn ImageSource>, policy.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            retry.read_async(
                0,
                4096,
                Vec::new(),
                Box::new(move |r, b| tx.send((r, b)).unwrap()),
            );
            let (result, buf) = rx.recv().unwrap();
            assert!(rx.recv().is_err(), "done is called once");
            if ok {
                assert!(result.is_ok(), "{result:?}");
                assert_eq!(buf, vec![7; 4096]);
                // The asynchronous attempt, the blocking one that failed, the one that read.
                assert_eq!(policy.count.load(Ordering::Relaxed), 2);
            } else {
                let text = result.unwrap_err().to_string();
                assert!(
                    text.ends_with(&format!("(failed {} times)", retries + 1)),
                    "{text}"
                );
            }
        }
    }

    /// Zeroes through `Retry` with `retries` over a sink failing `flaky` times; returns the
    /// result `done` got (exactly once), the calls made and the retries counted.
    fn zero_through(flaky: u32, retries: u32) -> (Result<()>, u32, u64) {
        let sink = Arc::new(Flaky {
            flaky: AtomicU32::new(flaky),
            calls: AtomicU32::new(0),
        });
        let policy = quick(retries);
        let retry = Retry::new(sink.clone() as Arc<dyn ImageSink>, policy.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        retry.zero_async(0, 4096, Box::new(move |r| tx.send(r).unwrap()));
        let result = rx.recv().unwrap();
        assert!(rx.recv().is_err(), "done is called once");
        let count = policy.count.load(Ordering::Relaxed);
        (result, sink.calls.load(Ordering::SeqCst), count)
    }

    #[test]
    fn asynchronous_requests_are_sent_again() {
        let (r, calls, retries) = zero_through(2, 5);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!((calls, retries), (3, 2));
        let (r, calls, retries) = zero_through(9, 2);
        let err = r.unwrap_err();
        assert!(err.to_string().ends_with("(failed 3 times)"), "{err}");
        assert_eq!((calls, retries), (3, 2));
    }

    #[test]
    fn waits_double_up_to_the_most() {
        let p = Policy {
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            ..Policy::default()
        };
        for (attempt, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)] {
            let w = p.wait(attempt).as_secs_f64();
            assert!(w >= full / 2.0 && w <= full, "attempt {attempt}: {w}");
        }
    }
}
