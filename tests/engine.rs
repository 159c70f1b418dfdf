//! The copy engine's laws, on the in-memory backend: a copy equals its source byte for byte,
//! keeps holes, stops at the first error, and ends with the watermark at the image size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rbdcp::backend::mem::{MemImage, BLOCK};
use rbdcp::engine::{check_sums, compare, copy, Options, Progress, Silent, Throttle};
use rbdcp::{Error, ImageSource};

mod util;

/// A source of `size` bytes with data at the given blocks; some blocks hold only zeroes.
fn source(size: u64, blocks: &[(u64, u8)]) -> MemImage {
    let img = MemImage::new("src", size);
    for &(b, kind) in blocks {
        let offset = (b * BLOCK).min(size.saturating_sub(1));
        let len = (BLOCK.min(size - offset)) as usize;
        let data = if kind == 0 {
            vec![0; len]
        } else {
            util::noise(b * 31 + u64::from(kind), len)
        };
        img.put(offset, &data);
    }
    img
}

fn opts(jobs: usize, chunk: u64) -> Options {
    Options {
        jobs,
        chunk_size: chunk,
        preallocate: true,
        cancel: None,
        keep_sums: true,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/engine.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// A copy equals its source, byte for byte, and holes stay holes.
    #[test]
    fn copy_equals_source_and_keeps_holes(
        blocks in prop::collection::vec((0u64..256, 0u8..4), 0..40),
        size_blocks in 1u64..256,
        tail in 0u64..BLOCK,
        chunk_blocks in 1u64..40,
        jobs in 1usize..9,
        dirty in any::<bool>(),
        deferred in any::<bool>(),
        async_reads in any::<bool>(),
    ) {
        let size = size_blocks * BLOCK + tail;
        let src = source(size, &blocks);
        // Asynchronous reads come back out of order, through the read-ahead path.
        let src = if async_reads { src.deferred() } else { src };
        let dst = if dirty { MemImage::filled("dst", size + tail, 0xAB) } else { MemImage::new("dst", 0) };
        // Deferred: the writes land out of order, through the asynchronous path.
        let dst = if deferred { dst.deferred() } else { dst };
        let report = copy(&src, &dst, &opts(jobs, chunk_blocks * BLOCK), &Throttle::new(Default::default()), &Silent).unwrap();
        prop_assert!(dst.finished());
        prop_assert_eq!(dst.bytes(), src.bytes());
        let (bytes, nblocks, chunk) = (src.bytes(), size.div_ceil(BLOCK), chunk_blocks * BLOCK);
        let nonzero = |from: u64, to: u64| bytes[from as usize..to.min(size) as usize].iter().any(|&x| x != 0);
        for b in 0..nblocks {
            if nonzero(b * BLOCK, (b + 1) * BLOCK) {
                prop_assert!(dst.allocated(b), "block {} lost its data", b);
            } else if !dirty && dst.allocated(b) {
                // Only a block the source had, inside a chunk that holds data, may be written.
                let start = b * BLOCK / chunk * chunk;
                prop_assert!(src.allocated(b) && nonzero(start, start + chunk), "block {} of zeroes was written", b);
            }
        }
        prop_assert_eq!(report.bytes_read, src.extents().unwrap().iter().map(|e| e.len).sum::<u64>());
        let check = check_sums(&dst, &report.sums, jobs, &Silent).unwrap();
        prop_assert!(check.identical());
        let cmp = compare(&src, &dst, jobs, chunk_blocks * BLOCK, &Silent).unwrap();
        prop_assert!(cmp.identical());
    }
}

#[test]
fn a_source_error_stops_the_copy_and_nothing_is_finished() {
    let size = 64 * BLOCK;
    let src =
        || source(size, &(0..64).map(|b| (b, 1)).collect::<Vec<_>>()).failing_at(40 * BLOCK + 7);
    // Blocking reads into a blocking sink; asynchronous reads into an asynchronous sink.
    source_error(src(), MemImage::new("dst", 0));
    source_error(src().deferred(), MemImage::new("dst", 0).deferred());
}

fn source_error(src: MemImage, dst: MemImage) {
    let marks = std::sync::Arc::new(Marks::default());
    let mut o = opts(4, 4 * BLOCK);
    o.checkpoint = Some(rbdcp::engine::Hook(marks.clone()));
    o.checkpoint_every = std::time::Duration::from_micros(50);
    let err = copy(&src, &dst, &o, &Throttle::new(Default::default()), &Silent).unwrap_err();
    let marks = marks.0.lock().unwrap().clone();
    assert!(
        marks.iter().all(|&m| m <= 40 * BLOCK),
        "a mark passed the chunk that was never read: {marks:?}"
    );
    assert!(
        matches!(err, Error::Io { op: "read", offset, .. } if offset == 40 * BLOCK),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("read on src at offset {}: injected failure", 40 * BLOCK)
    );
    assert!(!dst.finished());
}

/// A sink that writes at once, and one that says so later (the asynchronous path).
fn both(dst: impl Fn() -> MemImage) -> [MemImage; 2] {
    [dst(), dst().deferred()]
}

#[test]
fn a_sink_error_names_the_write_and_its_offset() {
    let src = || source(16 * BLOCK, &(0..16).map(|b| (b, 1)).collect::<Vec<_>>());
    for dst in both(|| MemImage::new("dst", 0).failing_at(9 * BLOCK)) {
        sink_error(&src(), dst);
    }
    let dst = MemImage::new("dst", 0).failing_at(9 * BLOCK).deferred();
    sink_error(&src().deferred(), dst);
}

fn sink_error(src: &MemImage, dst: MemImage) {
    let err = copy(
        src,
        &dst,
        &opts(2, BLOCK),
        &Throttle::new(Default::default()),
        &Silent,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("write on dst at offset {}: injected failure", 9 * BLOCK)
    );
    assert!(!dst.finished());
}

#[derive(Default)]
struct Record {
    total: AtomicU64,
    done: AtomicU64,
    marks: Mutex<Vec<u64>>,
}

impl Progress for Record {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn mark(&self, offset: u64) {
        self.marks.lock().unwrap().push(offset);
    }
}

#[test]
fn progress_covers_the_plan_and_the_watermark_reaches_the_end() {
    let size = 300 * BLOCK;
    let src = source(size, &[(3, 1), (100, 1), (101, 1), (250, 2)]);
    for dst in both(|| MemImage::filled("dst", size, 0xCD)) {
        progress_covers(&src, dst, size);
    }
}

fn progress_covers(src: &MemImage, dst: MemImage, size: u64) {
    let rec = Record::default();
    let report = copy(
        src,
        &dst,
        &opts(8, 8 * BLOCK),
        &Throttle::new(Default::default()),
        &rec,
    )
    .unwrap();
    // A dirty destination gets the holes zeroed too, so the whole image is covered.
    assert_eq!(rec.total.load(Ordering::Relaxed), size);
    assert_eq!(rec.done.load(Ordering::Relaxed), size);
    assert_eq!(report.bytes_read + report.bytes_zero, size);
    assert_eq!(rec.marks.lock().unwrap().iter().max(), Some(&size));
}

#[test]
fn chunks_follow_the_object_size() {
    let size = 64 * BLOCK;
    let src =
        source(size, &(0..64).map(|b| (b, 1)).collect::<Vec<_>>()).with_object_size(16 * BLOCK);
    let dst = MemImage::new("dst", 0);
    // 3 blocks neither divides nor is a multiple of 16: the chunk becomes 16 blocks.
    let report = copy(
        &src,
        &dst,
        &opts(2, 3 * BLOCK),
        &Throttle::new(Default::default()),
        &Silent,
    )
    .unwrap();
    assert_eq!(report.chunks, 4);
    assert_eq!(dst.bytes(), src.bytes());
}

#[test]
fn apply_writes_every_piece_and_resizes() {
    for dst in both(|| MemImage::filled("dst", 40 * BLOCK, 0xEE)) {
        apply_every_piece(dst);
    }
}

fn apply_every_piece(dst: MemImage) {
    use rbdcp::engine::{apply, Chunk, Piece};
    let data = util::noise(4, 3 * BLOCK as usize);
    let pieces = vec![
        Ok(Piece {
            chunk: Chunk {
                offset: BLOCK,
                len: 3 * BLOCK,
                data: true,
            },
            data: Some(data.clone()),
            span: (BLOCK, 4 * BLOCK),
        }),
        Ok(Piece {
            chunk: Chunk {
                offset: 10 * BLOCK,
                len: 5 * BLOCK,
                data: false,
            },
            data: None,
            span: (10 * BLOCK, 15 * BLOCK),
        }),
    ];
    let report = apply(
        pieces.into_iter(),
        48 * BLOCK,
        &dst,
        &opts(4, BLOCK),
        &Throttle::new(Default::default()),
        &Silent,
    )
    .unwrap();
    assert!(dst.finished());
    let bytes = dst.bytes();
    assert_eq!(bytes.len() as u64, 48 * BLOCK);
    assert_eq!(&bytes[BLOCK as usize..4 * BLOCK as usize], &data[..]);
    assert!(bytes[10 * BLOCK as usize..15 * BLOCK as usize]
        .iter()
        .all(|&b| b == 0));
    assert!(bytes[15 * BLOCK as usize..40 * BLOCK as usize]
        .iter()
        .all(|&b| b == 0xEE));
    assert_eq!(
        (report.bytes_read, report.bytes_zero),
        (3 * BLOCK, 5 * BLOCK)
    );
}

#[test]
fn apply_stops_at_a_bad_piece_and_does_not_finish() {
    for dst in both(|| MemImage::new("dst", 0)) {
        apply_stops(dst);
    }
}

fn apply_stops(dst: MemImage) {
    use rbdcp::engine::{apply, Chunk, Piece};
    let pieces = (0..100u64).map(|i| match i {
        60 => Err(Error::Unsupported("bad record".into())),
        i => Ok(Piece {
            chunk: Chunk {
                offset: i * BLOCK,
                len: BLOCK,
                data: true,
            },
            data: Some(vec![1; BLOCK as usize]),
            span: (i * BLOCK, (i + 1) * BLOCK),
        }),
    });
    let err = apply(
        pieces,
        100 * BLOCK,
        &dst,
        &opts(4, BLOCK),
        &Throttle::new(Default::default()),
        &Silent,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "bad record");
    assert!(!dst.finished());
    assert!(
        !dst.allocated(60) && !dst.allocated(61),
        "nothing at or after the bad piece was written"
    );
}

/// Records every checkpoint's mark.
#[derive(Default)]
struct Marks(Mutex<Vec<u64>>);

impl rbdcp::engine::Checkpoint for Marks {
    fn save(&self, mark: u64) -> rbdcp::Result<()> {
        self.0.lock().unwrap().push(mark);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/engine.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Checkpoints rise, fall on chunk boundaries and end at the image size; a copy resumed
    /// from any of them writes nothing below it and ends equal to its source.
    #[test]
    fn checkpoints_rise_and_a_resume_from_one_completes_the_copy(
        blocks in prop::collection::vec((0u64..128, 1u8..4), 1..40),
        chunk_blocks in 1u64..8,
        jobs in 1usize..5,
        deferred in any::<bool>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let size = 128 * BLOCK;
        let src = source(size, &blocks);
        let src = if deferred { src.deferred() } else { src };
        let chunk = chunk_blocks * BLOCK;
        let marks = std::sync::Arc::new(Marks::default());
        let mut o = opts(jobs, chunk);
        o.checkpoint = Some(rbdcp::engine::Hook(marks.clone()));
        o.checkpoint_every = std::time::Duration::from_micros(50);
        let first = if deferred { MemImage::new("a", size).deferred() } else { MemImage::new("a", size) };
        copy(&src, &first, &o, &Throttle::new(Default::default()), &Silent).unwrap();
        let marks = marks.0.lock().unwrap().clone();
        // A copy shorter than one interval records nothing (there is nothing to resume);
        // else the last mark is the end.
        if let Some(&last) = marks.last() {
            prop_assert_eq!(last, size);
        }
        prop_assert!(marks.windows(2).all(|w| w[0] < w[1]), "{:?}", marks);
        // Every mark is where a chunk of the plan starts or ends, so a resume from it
        // skips whole chunks.
        let plan = rbdcp::engine::Plan::new(src.extents().unwrap(), size, chunk, false);
        let bounds: std::collections::BTreeSet<u64> =
            plan.chunks().flat_map(|c| [c.offset, c.end()]).chain([size]).collect();
        prop_assert!(marks.iter().all(|m| bounds.contains(m)), "{:?}", marks);

        // Resume into a destination that holds garbage below the mark: it stays untouched.
        let start = match marks.len() {
            0 => 0,
            n => marks[pick.index(n)],
        };
        let second = MemImage::new("b", size);
        second.put(0, &vec![0xEE; start as usize]);
        o.start = start;
        o.checkpoint = None;
        let r = copy(&src, &second, &o, &Throttle::new(Default::default()), &Silent).unwrap();
        prop_assert_eq!(r.resumed_from, (start > 0).then_some(start));
        let (want, got) = (src.bytes(), second.bytes());
        prop_assert!(got[..start as usize].iter().all(|&b| b == 0xEE), "written below the mark");
        prop_assert!(got[start as usize..] == want[start as usize..], "differs above the mark");
        let data_below: u64 = (0..start / BLOCK)
            .filter(|b| want[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize].iter().any(|&x| x != 0))
            .count() as u64 * BLOCK;
        prop_assert!(r.bytes_skipped <= start && r.bytes_skipped >= data_below.min(start), "{} skipped, {} data below", r.bytes_skipped, data_below);
    }
}
