//! `rbdcp verify`: byte changes made behind rbdcp's back, samples and their seeds, the JSON
//! report; on local files, and on RBD images copied across two real clusters.
//!
//! The cluster test needs `RBDCP_CONF1`/`RBDCP_CONF2` (`make test`); without them it says so
//! and passes locally, and under CI (`CI=true`) it fails.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Output;

use serde::Deserialize;

mod util;
use util::ceph::{clusters, create, export, loc, name, rbd, record};
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `rbdcp verify --json`, as src/cli/report.rs documents it: nothing more, nothing less.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    a: String,
    b: String,
    size_a: u64,
    size_b: u64,
    identical: bool,
    differing_chunks: u64,
    first_differences: Vec<Range>,
    bytes_compared: u64,
    sample_percent: Option<f64>,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    offset: u64,
    length: u64,
}

fn report(out: &Output) -> Report {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `differ at offset O length L` lines of plain output, as (O, L); nothing else is allowed.
fn ranges(out: &Output) -> Vec<(u64, u64)> {
    stdout(out)
        .lines()
        .map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
            ["differ", "at", "offset", o, "length", l] => (o.parse().unwrap(), l.parse().unwrap()),
            _ => panic!("not a difference: {line:?}"),
        })
        .collect()
}

/// Whether one of `ranges` holds the byte at `at`.
fn holds(ranges: &[(u64, u64)], at: u64) -> bool {
    ranges.iter().any(|&(o, l)| o <= at && at < o + l)
}

/// Changes the byte at `offset` of the file at `path`, as a disk fault would.
fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, offset).unwrap();
    f.write_all_at(&[byte[0] ^ 0xFF], offset).unwrap();
}

#[test]
fn a_byte_changed_in_a_copy_is_found_with_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let extents = [
        (0, 10 * M as usize),
        (30 * M + 4096, 100_000),
        (63 * M, M as usize),
    ];
    util::sparse_file(&d.join("a.img"), 64 * M, &extents);
    expect(rbdcp(d).args(["copy", "a.img", "b.img"]), 0);
    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]), 0);
    assert!(
        stdout(&out).starts_with("identical: 67108864 bytes, "),
        "{}",
        stdout(&out)
    );

    let (in_data, in_hole) = (30 * M + 4096 + 77_777, 45 * M + 3);
    flip(&d.join("b.img"), in_data);
    flip(&d.join("b.img"), in_hole); // a hole of both: only b's extents say it is data now
    for extra in [&[][..], &["--sample", "100"][..]] {
        let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]).args(extra), 1);
        let got = ranges(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(holds(&got, in_data) && holds(&got, in_hole), "{got:?}");
        assert!(
            got.iter().all(|&(_, l)| l <= 4 * M),
            "at most a chunk: {got:?}"
        );
        assert!(
            stderr(&out).contains("a.img and b.img differ: 2 chunk(s) differ"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_sample_compares_its_share_and_reports_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let size = 64 * M;
    util::sparse_file(&d.join("a.img"), size, &[(0, size as usize)]);
    util::sparse_file(&d.join("b.img"), size, &[(0, size as usize)]);

    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img", "--json"]), 0);
    let r = report(&out);
    assert!(r.identical);
    assert_eq!((&r.a[..], &r.b[..]), ("a.img", "b.img"));
    assert_eq!((r.sample_percent, r.seed), (None, None));
    assert_eq!((r.size_a, r.size_b, r.bytes_compared), (size, size, size));

    let args = [
        "verify", "a.img", "b.img", "--json", "--sample", "50", "--seed", "7",
    ];
    let r = report(&expect(rbdcp(d).args(args), 0));
    assert!(r.identical && r.differing_chunks == 0 && r.first_differences.is_empty());
    assert_eq!((r.sample_percent, r.seed), (Some(50.0), Some(7)));
    assert_eq!(r.bytes_compared, size / 2, "8 of the 16 chunks of 4 MiB");

    // Under limits too (their pacing is tested in the engine, on a fake clock).
    let limits = [
        "--bps-limit",
        "10G",
        "--iops-limit",
        "10000",
        "--sample",
        "25%",
    ];
    let out = expect(rbdcp(d).args(["verify", "a.img", "b.img"]).args(limits), 0);
    let seed = printed_seed(&out, "25");
    assert_eq!(
        stdout(&out),
        format!(
            "identical in a 25% sample of chunks (seed {seed}): {size} bytes, {} compared\n",
            size / 4
        )
    );

    // Every chunk differs now: the seed printed picks the same chunks again.
    for i in 0..16 {
        flip(&d.join("b.img"), i * 4 * M + i * 1000);
    }
    let out = expect(
        rbdcp(d).args(["verify", "a.img", "b.img", "--sample", "50"]),
        1,
    );
    let seed = printed_seed(&out, "50");
    let got = ranges(&out);
    assert_eq!(got.len(), 8, "{got:?}");
    let again = ["--sample", "50", "--seed", &seed.to_string(), "--json"];
    let r = report(&expect(
        rbdcp(d).args(["verify", "a.img", "b.img"]).args(again),
        1,
    ));
    assert!(!r.identical);
    assert_eq!((r.differing_chunks, r.seed), (8, Some(seed)));
    let listed: Vec<(u64, u64)> = r
        .first_differences
        .iter()
        .map(|r| (r.offset, r.length))
        .collect();
    assert_eq!(listed, got);
}

/// The seed of the `rbdcp: sampling P% of chunks, seed N` line on standard error.
fn printed_seed(out: &Output, percent: &str) -> u64 {
    let err = stderr(out);
    let prefix = format!("rbdcp: sampling {percent}% of chunks, seed ");
    let line = err.lines().find_map(|l| l.strip_prefix(&prefix[..]));
    line.unwrap_or_else(|| panic!("no seed printed: {err}"))
        .parse()
        .unwrap()
}

#[test]
fn sample_and_seed_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), M, &[]);
    for bad in [
        &["--seed", "7"][..],
        &["--sample", "0"],
        &["--sample", "100.5"],
        &["--sample", "half"],
    ] {
        expect(rbdcp(d).args(["verify", "a.img", "a.img"]).args(bad), 2);
    }
}

#[test]
fn a_byte_changed_in_an_rbd_copy_across_clusters_is_found() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("verify");
    create(
        &c1,
        &img,
        32 * M,
        &[(0, 5 * M as usize), (20 * M + 4096, 100_000)],
    );
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s1")]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c2, &format!("rbd/{img}")),
    );
    expect(rbdcp(d).args(["copy", &src, &dst]), 0);
    let out = expect(rbdcp(d).args(["verify", &src, &dst]), 0);
    assert!(
        stdout(&out).starts_with("identical: 33554432 bytes"),
        "{}",
        stdout(&out)
    );

    // One byte in data and one in a hole of both, changed with the stock `rbd import-diff`.
    let (in_data, in_hole) = (3 * M + 7, 12 * M + 1);
    let bytes = export(&c2, &format!("rbd/{img}"));
    for at in [in_data, in_hole] {
        record(&c2, &img, b'w', at, 1, &[bytes[at as usize] ^ 0xFF]);
    }
    for extra in [&[][..], &["--sample", "100"][..]] {
        let out = expect(rbdcp(d).args(["verify", &src, &dst]).args(extra), 1);
        let got = ranges(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(holds(&got, in_data) && holds(&got, in_hole), "{got:?}");
    }
    let r = report(&expect(rbdcp(d).args(["verify", &src, &dst, "--json"]), 1));
    assert_eq!((r.identical, r.differing_chunks), (false, 2));

    // The snapshot the copy made on the destination was not touched: identical.
    let dst_snap = loc(&c2, &format!("rbd/{img}@s1"));
    let out = expect(rbdcp(d).args(["verify", &src, &dst_snap]), 0);
    assert!(
        stdout(&out).starts_with("identical: 33554432 bytes"),
        "{}",
        stdout(&out)
    );
    let args = [
        "verify", &src, &dst_snap, "--json", "--sample", "50", "--seed", "3",
    ];
    let r = report(&expect(rbdcp(d).args(args), 0));
    assert!(r.identical && r.bytes_compared > 0, "{r:?}");
    assert_eq!((r.sample_percent, r.seed), (Some(50.0), Some(3)));
}
