//! Re-reads a copy and checks each chunk against the crc32 taken while copying it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Comparison, Diffs};
use crate::engine::plan::{is_zero, Chunk};
use crate::engine::progress::Progress;
use crate::engine::run::run;
use crate::engine::{ImageSource, Sum};
use crate::error::Result;

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
        sample: None,
    })
}
