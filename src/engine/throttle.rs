//! Token buckets for bytes/s and ops/s, shared by all workers (governor's GCRA).
//!
//! Bytes are counted in KiB cells. A request larger than a bucket's burst is taken in
//! burst-sized pieces, never refused. Bursts hold a tenth of a second of traffic, and GCRA
//! refills continuously, so I/O is paced smoothly rather than once a second.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Bytes per cell of the bytes bucket.
const CELL: u64 = 1024;

/// How much traffic a bucket lets through at once, as a share of a second.
const BURST_DIVISOR: u64 = 10;

/// The limits of a job; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per second.
    pub bytes_per_second: Option<u64>,
    /// Chunk operations per second: one read with its write, or one zeroing.
    pub ops_per_second: Option<u64>,
}

/// A clock the throttle can wait on.
pub trait Pace: Clock + Clone + Send + Sync {
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration);
}

impl Pace for MonotonicClock {
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A fake clock for tests: waiting advances it, so no test sleeps.
impl Pace for FakeRelativeClock {
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Bucket<C: Pace> {
    limiter: Limiter<C>,
    burst: NonZeroU32,
}

impl<C: Pace> Bucket<C> {
    /// A bucket passing `per_second` cells a second.
    fn new(per_second: u64, clock: &C) -> Bucket<C> {
        let per_second = per_second.max(1);
        let period = Duration::from_nanos((1_000_000_000 / per_second).max(1));
        let burst = (per_second / BURST_DIVISOR).clamp(1, u64::from(u32::MAX)) as u32;
        let burst = NonZeroU32::new(burst).expect("burst is at least one");
        let quota = Quota::with_period(period)
            .expect("period is above zero")
            .allow_burst(burst);
        Bucket {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            burst,
        }
    }

    /// Waits until `cells` cells have passed, a burst at a time.
    fn take(&self, mut cells: u64, clock: &C) {
        while cells > 0 {
            let n = cells.min(u64::from(self.burst.get())) as u32;
            let n = NonZeroU32::new(n).expect("n is at least one");
            loop {
                match self.limiter.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => clock.sleep(not_until.wait_time_from(clock.now())),
                    Err(_) => unreachable!("n never exceeds the burst"),
                }
            }
            cells -= u64::from(n.get());
        }
    }
}

/// The shared limiter of a job.
pub struct Throttle<C: Pace = MonotonicClock> {
    bytes: Option<Bucket<C>>,
    ops: Option<Bucket<C>>,
    clock: C,
}

impl Throttle {
    /// A throttle on the real clock.
    pub fn new(limits: Limits) -> Throttle {
        Throttle::with_clock(limits, MonotonicClock)
    }
}

impl<C: Pace> Throttle<C> {
    /// A throttle on the given clock.
    pub fn with_clock(limits: Limits, clock: C) -> Throttle<C> {
        let bytes = limits
            .bytes_per_second
            .map(|b| Bucket::new(b.div_ceil(CELL), &clock));
        let ops = limits.ops_per_second.map(|n| Bucket::new(n, &clock));
        Throttle { bytes, ops, clock }
    }

    /// Waits until one operation of `len` bytes may go.
    pub fn take(&self, len: u64) {
        if let Some(ops) = &self.ops {
            ops.take(1, &self.clock);
        }
        if let Some(bytes) = &self.bytes {
            bytes.take(len.div_ceil(CELL), &self.clock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::Reference;

    const M: u64 = 1 << 20;

    fn elapsed(clock: &FakeRelativeClock, start: governor::nanos::Nanos) -> f64 {
        Duration::from(clock.now().duration_since(start)).as_secs_f64()
    }

    #[test]
    fn bytes_are_paced_to_the_rate() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(
            Limits {
                bytes_per_second: Some(10 * M),
                ..Limits::default()
            },
            clock.clone(),
        );
        let start = clock.now();
        // 100 MiB at 10 MiB/s: 10 s, less the one burst (0.1 s) allowed at once.
        for _ in 0..25 {
            t.take(4 * M);
        }
        let secs = elapsed(&clock, start);
        assert!((9.85..=10.05).contains(&secs), "took {secs} s");
    }

    #[test]
    fn a_request_bigger_than_the_burst_is_split_not_refused() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(
            Limits {
                bytes_per_second: Some(M),
                ..Limits::default()
            },
            clock.clone(),
        );
        let start = clock.now();
        t.take(64 * M); // the burst is about 100 KiB
        let secs = elapsed(&clock, start);
        assert!((63.8..=64.05).contains(&secs), "took {secs} s");
    }

    #[test]
    fn ops_are_paced_smoothly() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(
            Limits {
                ops_per_second: Some(100),
                ..Limits::default()
            },
            clock.clone(),
        );
        let start = clock.now();
        let mut stamps = Vec::new();
        for _ in 0..300 {
            t.take(0);
            stamps.push(elapsed(&clock, start));
        }
        let secs = elapsed(&clock, start);
        assert!((2.85..=3.0).contains(&secs), "took {secs} s");
        // No second lets much more than its share through: refills are continuous.
        for w in 0..2 {
            let lo = w as f64 + 0.5;
            let n = stamps.iter().filter(|&&s| s >= lo && s < lo + 1.0).count();
            assert!(
                (95..=105).contains(&n),
                "{n} ops in the second after {lo} s"
            );
        }
    }

    #[test]
    fn both_limits_apply_and_the_stricter_wins() {
        let clock = FakeRelativeClock::default();
        let limits = Limits {
            bytes_per_second: Some(100 * M),
            ops_per_second: Some(10),
        };
        let t = Throttle::with_clock(limits, clock.clone());
        let start = clock.now();
        for _ in 0..50 {
            t.take(4096);
        }
        let secs = elapsed(&clock, start);
        assert!((4.8..=5.0).contains(&secs), "took {secs} s");
    }

    #[test]
    fn no_limits_never_wait() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(Limits::default(), clock.clone());
        let start = clock.now();
        t.take(1 << 40);
        assert_eq!(elapsed(&clock, start), 0.0);
    }
}
