//! Local raw images through the library: sparse reads, temporary names, holes, refusals.

use std::path::Path;

use rbdcp::backend::file::FileSource;
use rbdcp::backend::mem::MemImage;
use rbdcp::{Error, ImageSource};

mod util;

const M: u64 = 1 << 20;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_1_tib_sparse_file_copies_only_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("big.img"), dir.path().join("copy.img"));
    let extents = [
        (0, 3 * M as usize),
        (300 << 30, 2 * M as usize),
        ((1 << 40) - M, M as usize),
    ];
    util::sparse_file(&src, 1 << 40, &extents);
    let source = FileSource::open(&src).unwrap();
    let found = source.extents().unwrap();
    assert_eq!(found.iter().map(|e| e.len).sum::<u64>(), 6 * M, "{found:?}");
    let report = util::copy_to_file(&source, &dst, false).unwrap();
    // The work follows the data, not the 1 TiB size.
    assert_eq!(report.bytes_read, 6 * M);
    assert_eq!(report.bytes_written, 6 * M);
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 1 << 40);
    assert!(
        util::allocated(&dst) <= 8 * M,
        "{} bytes allocated",
        util::allocated(&dst)
    );
    for &(offset, len) in &extents {
        let (mut a, mut b) = (vec![0; len], vec![0; len]);
        source.read_at(offset, &mut a).unwrap();
        FileSource::open(&dst)
            .unwrap()
            .read_at(offset, &mut b)
            .unwrap();
        assert!(a == b, "data at {offset} differs");
    }
}

#[test]
fn zero_chunks_become_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("a.img"), dir.path().join("b.img"));
    util::sparse_file(&src, 64 * M, &[(0, 4 * M as usize)]);
    util::put(&src, 16 * M, &vec![0; 8 * M as usize]); // allocated, but all zeroes
    let source = FileSource::open(&src).unwrap();
    assert_eq!(
        source.extents().unwrap().iter().map(|e| e.len).sum::<u64>(),
        12 * M
    );
    let report = util::copy_to_file(&source, &dst, false).unwrap();
    assert_eq!(
        (report.bytes_read, report.bytes_written, report.bytes_zero),
        (12 * M, 4 * M, 8 * M)
    );
    assert!(util::same_bytes(&src, &dst));
    assert!(
        util::allocated(&dst) <= 5 * M,
        "{} bytes allocated",
        util::allocated(&dst)
    );
}

#[test]
fn a_failed_copy_leaves_only_its_staged_file() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("out.img");
    let src = MemImage::new("mem", 64 * M).failing_at(40 * M);
    src.put(0, &util::noise(1, 64 * M as usize));
    let err = util::copy_to_file(&src, &dst, false).unwrap_err();
    assert!(matches!(err, Error::Io { op: "read", .. }), "{err}");
    // Without a progress record (the engine alone keeps none) the next run removes it.
    assert_eq!(entries(dir.path()), [".out.img.rbdcp-partial"]);
    let src = MemImage::new("mem", 64 * M);
    src.put(0, &util::noise(2, 64 * M as usize));
    util::copy_to_file(&src, &dst, false).unwrap();
    assert_eq!(entries(dir.path()), ["out.img"]);
}

#[test]
fn an_existing_destination_is_kept_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("a.img"), dir.path().join("b.img"));
    util::sparse_file(&src, 8 * M, &[(M, 1000)]);
    std::fs::write(&dst, b"precious").unwrap();
    let source = FileSource::open(&src).unwrap();
    let err = util::copy_to_file(&source, &dst, false).unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"precious");
    util::copy_to_file(&source, &dst, true).unwrap();
    assert!(util::same_bytes(&src, &dst));
    assert_eq!(entries(dir.path()), ["a.img", "b.img"]);
}

#[test]
fn a_missing_source_is_named_in_the_error() {
    let err = FileSource::open(Path::new("/nonexistent/x.img")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "open /nonexistent/x.img: No such file or directory (os error 2)"
    );
}
