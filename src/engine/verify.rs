//! Compares images chunk by chunk, in parallel: a copy against the crc32s taken while
//! copying ([`check_sums`]), or two images against each other byte for byte ([`compare`]),
//! all their chunks or a seeded sample of them, under the job's throttle.

mod sample;
mod sums;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::plan::{chunk_size, Chunk, Plan};
use super::progress::Progress;
use super::run::run;
use super::throttle::{Limits, Pace, Throttle};
use super::{Extent, ImageSource};
use crate::error::Result;

pub use sample::Sample;
pub use sums::check_sums;

/// How many differing ranges a comparison keeps (the lowest offsets).
const KEEP: usize = 16;

/// The outcome of comparing two images.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// The first image's size.
    pub size_a: u64,
    /// The second image's size.
    pub size_b: u64,
    /// How many chunks differ.
    pub differing: u64,
    /// The lowest differing chunks, as (offset, length), in offset order.
    pub first: Vec<(u64, u64)>,
    /// Bytes compared (holes in both images are equal without a read).
    pub bytes_compared: u64,
    /// The sample compared, when not every chunk was.
    pub sample: Option<Sample>,
}

impl Comparison {
    /// Whether the images are identical: with a sample, whether they are in the sample.
    pub fn identical(&self) -> bool {
        self.size_a == self.size_b && self.differing == 0
    }
}

/// Differing ranges, keeping a count and the lowest few.
#[derive(Default)]
struct Diffs {
    count: u64,
    lowest: BTreeSet<(u64, u64)>,
}

impl Diffs {
    fn add(&mut self, c: &Chunk) {
        self.count += 1;
        self.lowest.insert((c.offset, c.len));
        if self.lowest.len() > KEEP {
            self.lowest.pop_last();
        }
    }
}

/// How [`compare_with`] reads two images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scan {
    /// Workers, each comparing one chunk at a time (as many as `budget` holds: each holds a
    /// chunk of both images).
    pub jobs: usize,
    /// Bytes in flight at most.
    pub budget: u64,
    /// The chunk size asked for, rounded as [`chunk_size`] does.
    pub chunk: u64,
    /// Compare only a seeded share of the chunks; `None`: every one.
    pub sample: Option<Sample>,
}

/// Compares every chunk of `a` and `b`, `jobs` at a time, with no limits.
pub fn compare(
    a: &dyn ImageSource,
    b: &dyn ImageSource,
    jobs: usize,
    chunk: u64,
    progress: &dyn Progress,
) -> Result<Comparison> {
    let scan = Scan {
        jobs,
        budget: super::DEFAULT_IN_FLIGHT,
        chunk,
        sample: None,
    };
    let unlimited = Throttle::new(Limits::default());
    compare_with(a, b, &scan, &unlimited, progress)
}

/// Compares `a` and `b` byte for byte over the union of their extents, as `scan` says.
///
/// Each chunk compared takes one operation of its length from `throttle`, so each image is
/// read at most at the byte limit, and at most at the operation limit.
pub fn compare_with<C: Pace>(
    a: &dyn ImageSource,
    b: &dyn ImageSource,
    scan: &Scan,
    throttle: &Throttle<C>,
    progress: &dyn Progress,
) -> Result<Comparison> {
    let size = a.size().min(b.size());
    let mut extents: Vec<Extent> = a.extents()?;
    extents.extend(b.extents()?);
    // Zero extents are read too: what matters is what the images hold, not how they say it.
    let extents = union(extents);
    let chunk = chunk_size(scan.chunk, a.object_size().or(b.object_size()));
    let plan = Plan::new(extents, size, chunk, false);
    let diffs = Mutex::new(Diffs::default());
    let bytes = AtomicU64::new(0);
    progress.start(sample::pick(&plan, scan.sample).map(|c| c.len).sum());
    let result = run(
        scan.jobs
            .clamp(1, (scan.budget / (2 * chunk).max(1)).max(1) as usize),
        size,
        sample::pick(&plan, scan.sample).map(Ok),
        None,
        progress,
        |c, buf, _| {
            throttle.take(c.len);
            let (left, right) = split(buf, c.len as usize);
            a.read_at(c.offset, left)?;
            b.read_at(c.offset, right)?;
            bytes.fetch_add(c.len, Ordering::Relaxed);
            if left != right {
                diffs.lock().unwrap().add(&c);
            }
            Ok(())
        },
    );
    progress.finish();
    result?;
    let diffs = diffs.into_inner().unwrap();
    Ok(Comparison {
        size_a: a.size(),
        size_b: b.size(),
        differing: diffs.count,
        first: diffs.lowest.into_iter().collect(),
        bytes_compared: bytes.into_inner(),
        sample: scan.sample,
    })
}

/// Merges extents of any kind into sorted, non-overlapping data extents.
fn union(mut extents: Vec<Extent>) -> Vec<Extent> {
    extents.sort_by_key(|e| e.offset);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(last) if e.offset <= last.end() => last.len = last.len.max(e.end() - last.offset),
            _ => out.push(Extent::data(e.offset, e.len)),
        }
    }
    out
}

/// Two `len`-byte halves of a worker's buffer.
fn split(buf: &mut Vec<u8>, len: usize) -> (&mut [u8], &mut [u8]) {
    if buf.len() < 2 * len {
        buf.resize(2 * len, 0);
    }
    let (left, right) = buf.split_at_mut(len);
    (left, &mut right[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemImage;
    use crate::engine::Silent;
    use governor::clock::{Clock, FakeRelativeClock, Reference};
    use std::time::Duration;

    const K: u64 = 1024;

    /// An image of `size` bytes holding noise at each `(offset, len)`, holes elsewhere.
    fn image(size: u64, data: &[(u64, u64)]) -> MemImage {
        let img = MemImage::new("a", size);
        for &(offset, len) in data {
            let noise =
                (offset..offset + len).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8);
            img.put(offset, &noise.collect::<Vec<u8>>());
        }
        img
    }

    /// A copy of `img`, same extents and bytes.
    fn twin(img: &MemImage) -> MemImage {
        let copy = MemImage::new("b", img.size());
        let bytes = img.bytes();
        for e in img.extents().unwrap() {
            copy.put(e.offset, &bytes[e.offset as usize..e.end() as usize]);
        }
        copy
    }

    /// Flips the byte at `offset` of `img`.
    fn flip(img: &MemImage, offset: u64) {
        img.put(offset, &[img.bytes()[offset as usize] ^ 0x5A]);
    }

    fn scan(chunk: u64, sample: Option<(f64, u64)>) -> Scan {
        Scan {
            jobs: 4,
            budget: 64 << 20,
            chunk,
            sample: sample.map(|(percent, seed)| Sample { percent, seed }),
        }
    }

    /// Compares `a` with `b` in chunks of `chunk`, with no limits.
    fn cmp(a: &MemImage, b: &MemImage, chunk: u64, sample: Option<(f64, u64)>) -> Comparison {
        let unlimited = Throttle::new(Limits::default());
        compare_with(a, b, &scan(chunk, sample), &unlimited, &Silent).unwrap()
    }

    #[test]
    fn one_changed_byte_is_found_with_its_chunk() {
        let a = image(4096 * K, &[(0, 1000 * K), (2048 * K, 64 * K)]);
        let b = twin(&a);
        let same = cmp(&a, &b, 256 * K, None);
        assert!(same.identical(), "{same:?}");
        assert_eq!(same.bytes_compared, 1064 * K);

        flip(&b, 700 * K + 3);
        b.put(3000 * K + 1, b"x"); // in a hole of a
        let c = cmp(&a, &b, 256 * K, None);
        assert!(!c.identical());
        assert_eq!(c.differing, 2);
        // The chunk 512K..768K, and the 4 KiB block that b allocated (in the chunk at 2816K).
        assert_eq!(c.first, [(512 * K, 256 * K), (3000 * K, 4 * K)]);
        assert_eq!(c.bytes_compared, 1068 * K);
    }

    /// A change that crc32 cannot see: crc32 is affine over GF(2), so some 33 bits of any
    /// buffer of `len` bytes can be flipped together without changing it.
    fn crc32_blind_change(len: usize) -> Vec<u8> {
        let zero = crc32fast::hash(&vec![0; len]);
        let unit = |bit: usize| {
            let mut v = vec![0u8; len];
            v[bit / 8] |= 1 << (bit % 8);
            v
        };
        // By highest bit: (what flipping these bits does to the crc, which bits).
        let mut basis: [Option<(u32, u64)>; 32] = [None; 32];
        for bit in 0..33 {
            let (mut crc, mut bits) = (crc32fast::hash(&unit(bit)) ^ zero, 1u64 << bit);
            for h in (0..32).rev() {
                if crc >> h & 1 == 0 {
                    continue;
                }
                match basis[h] {
                    Some((c, b)) => (crc, bits) = (crc ^ c, bits ^ b),
                    None => {
                        basis[h] = Some((crc, bits));
                        break;
                    }
                }
            }
            if crc == 0 {
                let mut delta = vec![0u8; len];
                for i in (0..=bit).filter(|i| bits >> i & 1 == 1) {
                    delta[i / 8] |= 1 << (i % 8);
                }
                return delta;
            }
        }
        unreachable!("33 vectors of 32 bits are dependent")
    }

    #[test]
    fn a_change_crc32_cannot_see_is_found() {
        let chunk = 64 * K;
        let a = image(4 * chunk, &[(0, 4 * chunk)]);
        let b = twin(&a);
        let delta = crc32_blind_change(chunk as usize);
        let at = 2 * chunk as usize;
        let old = &a.bytes()[at..at + chunk as usize];
        let new: Vec<u8> = old.iter().zip(&delta).map(|(x, d)| x ^ d).collect();
        assert_ne!(old, &new[..]);
        assert_eq!(crc32fast::hash(old), crc32fast::hash(&new), "same crc32");
        b.put(at as u64, &new);
        assert_eq!(cmp(&a, &b, chunk, None).first, [(2 * chunk, chunk)]);
    }

    /// `a` and a copy differing in every chunk of 4 KiB, of which there are `n`.
    fn differing_everywhere(n: u64) -> (MemImage, MemImage) {
        let a = image(n * 4 * K, &[(0, n * 4 * K)]);
        let b = twin(&a);
        for i in 0..n {
            flip(&b, i * 4 * K + i % 4096);
        }
        (a, b)
    }

    #[test]
    fn a_sample_is_the_same_for_a_seed_and_covers_its_share() {
        let (a, b) = differing_everywhere(1000);
        let run = |seed| cmp(&a, &b, 4 * K, Some((10.0, seed)));
        let c = run(7);
        assert_eq!(c.differing, 100, "every chunk compared differs");
        assert_eq!(c.bytes_compared, 100 * 4 * K);
        assert!(!c.identical());
        assert_eq!(
            c.sample,
            Some(Sample {
                percent: 10.0,
                seed: 7
            })
        );
        assert_eq!(run(7), c, "the same seed compares the same chunks");
        assert_ne!(run(8).first, c.first, "another seed compares others");
        // Not the first chunks: the lowest 16 of 100 picked spread far past chunk 16.
        assert!(c.first.last().unwrap().0 > 64 * 4 * K, "{:?}", c.first);
    }

    #[test]
    fn a_hundred_percent_sample_covers_everything() {
        let (a, b) = differing_everywhere(300);
        let c = cmp(&a, &b, 4 * K, Some((100.0, 3)));
        assert_eq!(c.differing, 300);
        assert_eq!(c.bytes_compared, a.size());

        let a = image(1024 * K, &[(0, 1024 * K)]);
        let b = twin(&a);
        flip(&b, 1023 * K);
        let c = cmp(&a, &b, 4 * K, Some((100.0, 3)));
        assert_eq!((c.differing, c.first), (1, vec![(1020 * K, 4 * K)]));
    }

    #[test]
    fn the_throttle_paces_a_comparison() {
        let a = image(8 * 1024 * K, &[(0, 8 * 1024 * K)]);
        let b = twin(&a);
        let seconds = |limits: Limits, sample: Option<(f64, u64)>| {
            let clock = FakeRelativeClock::default();
            let throttle = Throttle::with_clock(limits, clock.clone());
            let start = clock.now();
            compare_with(&a, &b, &scan(64 * K, sample), &throttle, &Silent).unwrap();
            Duration::from(clock.now().duration_since(start)).as_secs_f64()
        };
        let bytes = Limits {
            bytes_per_second: Some(1024 * K),
            ..Limits::default()
        };
        // 8 MiB at 1 MiB/s, less the tenth of a second of burst; half of it with a sample.
        let s = seconds(bytes, None);
        assert!((7.85..=8.05).contains(&s), "took {s} s");
        let s = seconds(bytes, Some((50.0, 1)));
        assert!((3.85..=4.05).contains(&s), "took {s} s");
        // 128 chunks at 32 per second.
        let ops = Limits {
            ops_per_second: Some(32),
            ..Limits::default()
        };
        let s = seconds(ops, None);
        assert!((3.85..=4.05).contains(&s), "took {s} s");
    }

    #[test]
    fn union_merges_overlaps_of_both_kinds() {
        let got = union(vec![
            Extent::data(10, 10),
            Extent::zero(0, 5),
            Extent::data(15, 20),
            Extent::zero(40, 1),
        ]);
        assert_eq!(
            got,
            vec![
                Extent::data(0, 5),
                Extent::data(10, 25),
                Extent::data(40, 1)
            ]
        );
    }

    #[test]
    fn diffs_keep_the_lowest() {
        let mut d = Diffs::default();
        for i in (0..100).rev() {
            d.add(&Chunk {
                offset: i * 10,
                len: 10,
                data: true,
            });
        }
        assert_eq!(d.count, 100);
        assert_eq!(d.lowest.len(), KEEP);
        assert_eq!(d.lowest.first(), Some(&(0, 10)));
        assert_eq!(d.lowest.last(), Some(&(150, 10)));
    }
}
