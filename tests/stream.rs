//! The diff stream reader and writer: round trips, seeds from `rbd export-diff`, bad streams,
//! and a fuzz-style property: any bytes give `Ok` or `Err`, never a panic.

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rbdcp::stream::{Reader, Record, Writer};
use rbdcp::Error;

/// The corpus: small streams written by Debian's `rbd export-diff`, and the format's worked example.
const SEEDS: [&str; 3] = ["rbd-full.diff", "rbd-incremental.diff", "example.diff"];

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(Path::new("tests/data/streams").join(name)).unwrap()
}

/// A stream's records, each with its data.
type Records = Vec<(Record, Vec<u8>)>;

/// Reads a whole stream: header, records and their data.
fn read_all(bytes: &[u8]) -> rbdcp::Result<(rbdcp::stream::Header, Records)> {
    let (mut r, header, mut next) = Reader::open(Cursor::new(bytes), "test")?;
    let mut out = Vec::new();
    while let Some(record) = next {
        let mut data = Vec::new();
        if let Record::Write { .. } = record {
            data = r.data_vec()?;
        }
        out.push((record, data));
        next = r.next_record()?;
    }
    Ok((header, out))
}

fn stream_error(bytes: &[u8]) -> (u64, String) {
    match read_all(bytes).unwrap_err() {
        Error::Stream {
            offset,
            expected,
            found,
            ..
        } => (offset, format!("expected {expected}, found {found}")),
        other => panic!("not a stream error: {other}"),
    }
}

#[test]
fn seeds_from_rbd_export_diff_read_and_round_trip() {
    for name in SEEDS {
        let bytes = seed(name);
        let (header, records) = read_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!records.is_empty(), "{name}");
        let mut w = Writer::start(
            Vec::new(),
            header.from.as_deref(),
            header.to.as_deref(),
            header.size,
        )
        .unwrap();
        for (record, data) in &records {
            match *record {
                Record::Write { offset, .. } => w.write(offset, data).unwrap(),
                Record::Zero { offset, len } => w.zero(offset, len).unwrap(),
            }
        }
        assert_eq!(
            w.end().unwrap(),
            bytes,
            "{name}: rewriting the records gives other bytes"
        );
    }
    let (header, records) = read_all(&seed("example.diff")).unwrap();
    assert_eq!(
        (header.from.as_deref(), header.to.as_deref(), header.size),
        (Some("a"), Some("b"), 8 << 20)
    );
    assert_eq!(
        records[1].0,
        Record::Zero {
            offset: 4 << 20,
            len: 1 << 20
        }
    );
}

#[test]
fn bad_streams_name_the_byte_and_what_was_expected() {
    let good = seed("example.diff");
    let mut banner = good.clone();
    banner[4] = b'X';
    assert_eq!(stream_error(&banner).0, 0);
    assert!(stream_error(&banner).1.starts_with("expected the banner"));

    // The w record's tag sits after banner (12), f (6), t (6) and s (9): byte 33.
    let mut tag = good.clone();
    tag[33] = b'q';
    let unknown =
        "expected a header record ('f', 't' or 's', each once) or data, found tag 'q' (0x71)";
    assert_eq!(stream_error(&tag), (33, unknown.into()));
    // After a data record, only data or the end may follow: the z record's tag is at 33 + 17 + 4096.
    let mut late = good.clone();
    late[33 + 17 + 4096] = b's';
    let late_err = "expected a data record ('w' or 'z') or the end ('e'), found tag 's' (0x73)";
    assert_eq!(stream_error(&late), (33 + 17 + 4096, late_err.into()));

    let truncated = &good[..100];
    assert_eq!(
        stream_error(truncated),
        (
            100,
            "expected the record's data, found the end of the input (truncated stream)".into()
        )
    );

    let mut past = good.clone();
    past[34..42].copy_from_slice(&(8u64 << 20).to_le_bytes()); // the w record's offset: at the end
    let (offset, what) = stream_error(&past);
    assert_eq!(offset, 33);
    assert!(what.contains("past the image size 8388608"), "{what}");

    let no_end = &good[..good.len() - 1];
    let (offset, what) = stream_error(no_end);
    assert_eq!(offset, good.len() as u64 - 1);
    assert!(
        what.starts_with("expected a record tag or the end record 'e'"),
        "{what}"
    );

    let mut backwards = Writer::start(Vec::new(), None, None, 1 << 20).unwrap();
    backwards.zero(8192, 4096).unwrap();
    backwards.zero(4096, 4096).unwrap();
    let (offset, what) = stream_error(&backwards.end().unwrap());
    assert_eq!(offset, 12 + 9 + 17);
    assert!(what.contains("records in offset order"), "{what}");

    let no_size = b"rbd diff v1\nz\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0e";
    assert!(stream_error(no_size)
        .1
        .starts_with("expected a size record"));
}

fn mutate(bytes: &mut [u8], edits: &[(usize, u8)]) {
    for &(at, b) in edits {
        let i = at % bytes.len();
        bytes[i] = b;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/stream.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Any bytes: the reader returns Ok or Err and never panics or hangs.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), banner in any::<bool>()) {
        let mut input = if banner { b"rbd diff v1\n".to_vec() } else { Vec::new() };
        input.extend(bytes);
        let _ = read_all(&input);
    }

    /// Seeds with a few bytes changed, cut short, or both: Ok or Err, never a panic.
    #[test]
    fn mutated_seeds_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut bytes = seed(SEEDS[which]);
        mutate(&mut bytes, &edits);
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let _ = read_all(&bytes);
    }
}
