//! Compares images chunk by chunk by crc32, in parallel: a copy against the sums taken
//! while copying, or two images against each other.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::copy::Sum;
use super::plan::{chunk_size, is_zero, Chunk, Plan};
use super::progress::Progress;
use super::run::run;
use super::{Extent, ImageSource};
use crate::error::Result;

/// How many differing ranges a comparison keeps (the lowest offsets).
const KEEP: usize = 16;

/// The outcome of comparing two images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl Comparison {
    /// Whether the images are identical.
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

/// Re-reads the chunks in `sums` from `image` and counts the ones whose crc32 differs
/// (or, for a chunk without a crc, that do not read as zeroes).
pub fn check_sums(
    image: &dyn ImageSource,
    sums: &[Sum],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Comparison> {
    let diffs = Mutex::new(Diffs::default());
    let bytes = AtomicU64::new(0);
    let chunks = sums.iter().map(|s| Chunk {
        offset: s.offset,
        len: s.len,
        data: true,
    });
    progress.start(sums.iter().map(|s| s.len).sum());
    let result = run(
        jobs,
        image.size(),
        chunks.map(Ok),
        None,
        progress,
        |c, buf, _| {
            let len = c.len as usize;
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let buf = &mut buf[..len];
            image.read_at(c.offset, buf)?;
            bytes.fetch_add(c.len, Ordering::Relaxed);
            let sum = sums
                .binary_search_by_key(&c.offset, |s| s.offset)
                .map(|i| sums[i].crc);
            let good = match sum {
                Ok(Some(crc)) => crc32fast::hash(buf) == crc,
                Ok(None) => is_zero(buf),
                Err(_) => unreachable!("every chunk comes from sums"),
            };
            if !good {
                diffs.lock().unwrap().add(&c);
            }
            Ok(())
        },
    );
    progress.finish();
    result?;
    let diffs = diffs.into_inner().unwrap();
    Ok(Comparison {
        size_a: image.size(),
        size_b: image.size(),
        differing: diffs.count,
        first: diffs.lowest.into_iter().collect(),
        bytes_compared: bytes.into_inner(),
    })
}

/// Compares `a` and `b` over the union of their extents, `jobs` chunks at a time.
pub fn compare(
    a: &dyn ImageSource,
    b: &dyn ImageSource,
    jobs: usize,
    chunk: u64,
    progress: &dyn Progress,
) -> Result<Comparison> {
    let size = a.size().min(b.size());
    let mut extents: Vec<Extent> = a.extents()?;
    extents.extend(b.extents()?);
    // Zero extents are read too: what matters is what the images hold, not how they say it.
    let extents = union(extents);
    let chunk = chunk_size(chunk, a.object_size().or(b.object_size()));
    let plan = Plan::new(extents, size, chunk, false);
    let diffs = Mutex::new(Diffs::default());
    let bytes = AtomicU64::new(0);
    progress.start(plan.totals().0);
    let result = run(
        jobs,
        size,
        plan.chunks().map(Ok),
        None,
        progress,
        |c, buf, _| {
            let (left, right) = split(buf, c.len as usize);
            let crc_a = read_crc_into(a, &c, left)?;
            let crc_b = read_crc_into(b, &c, right)?;
            bytes.fetch_add(c.len, Ordering::Relaxed);
            if crc_a != crc_b {
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

fn read_crc_into(image: &dyn ImageSource, c: &Chunk, buf: &mut [u8]) -> Result<u32> {
    image.read_at(c.offset, buf)?;
    Ok(crc32fast::hash(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

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
