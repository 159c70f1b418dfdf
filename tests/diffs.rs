//! `rbdcp export-diff` and `import-diff` on local files: round trips, standard input and
//! output, bad streams that change nothing, and the crc sidecar.

use std::process::{Command, Stdio};

mod util;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_file_goes_through_a_stream_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(
        &d.join("a.img"),
        64 * M + 512,
        &[(0, 5 * M as usize), (30 * M + 4096, 100_000), (64 * M, 512)],
    );
    expect(
        rbdcp(d).args(["export-diff", "a.img", "a.diff", "--crc", "a.crc"]),
        0,
    );
    let head = std::fs::read(d.join("a.diff")).unwrap();
    assert!(
        head.starts_with(b"rbd diff v1\ns"),
        "a full stream has no f or t record"
    );
    expect(
        rbdcp(d).args(["import-diff", "a.diff", "b.img", "--crc", "a.crc"]),
        0,
    );
    assert!(util::same_bytes(&d.join("a.img"), &d.join("b.img")));
    assert!(
        util::allocated(&d.join("b.img")) < 7 * M,
        "holes stay holes"
    );
    // The same through a pipe: standard output into standard input.
    let mut export = Command::new(env!("CARGO_BIN_EXE_rbdcp"))
        .current_dir(d)
        .args(["export-diff", "a.img", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = export.stdout.take().unwrap();
    let import = rbdcp(d)
        .args(["import-diff", "-", "c.img"])
        .stdin(pipe)
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(export.wait().unwrap().success());
    assert!(util::same_bytes(&d.join("a.img"), &d.join("c.img")));
}

#[test]
fn an_incremental_stream_updates_a_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("old.img"), 16 * M, &[(0, 8 * M as usize)]);
    std::fs::copy(d.join("old.img"), d.join("copy.img")).unwrap();
    // A stream from "s1" to "s2": 4 KiB of data at 1 MiB, 1 MiB of zeroes at 4 MiB, and growth.
    let mut w = rbdcp::stream::Writer::start(Vec::new(), Some("s1"), Some("s2"), 20 * M).unwrap();
    w.write(M, &util::noise(9, 4096)).unwrap();
    w.zero(4 * M, M).unwrap();
    std::fs::write(d.join("inc.diff"), w.end().unwrap()).unwrap();
    expect(rbdcp(d).args(["import-diff", "inc.diff", "copy.img"]), 0);
    let got = std::fs::read(d.join("copy.img")).unwrap();
    let mut want = std::fs::read(d.join("old.img")).unwrap();
    want.resize(20 * M as usize, 0);
    want[M as usize..M as usize + 4096].copy_from_slice(&util::noise(9, 4096));
    want[4 * M as usize..5 * M as usize].fill(0);
    assert!(got == want, "the update differs");
    // A stream with a from-snap needs an image that holds it: here, one that exists.
    let out = expect(rbdcp(d).args(["import-diff", "inc.diff", "missing.img"]), 2);
    assert!(
        stderr(&out).contains("missing.img does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_stream_changes_nothing_and_names_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 8 * M, &[(0, 6 * M as usize)]);
    expect(
        rbdcp(d).args(["export-diff", "a.img", "a.diff", "--chunk-size", "1M"]),
        0,
    );
    let good = std::fs::read(d.join("a.diff")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "banner",
            [b"rbd diff v2\n", &good[12..]].concat(),
            "at byte 0: expected the banner",
        ),
        (
            "tag",
            [&good[..21], b"x", &good[22..]].concat(),
            "at byte 21: expected a header record",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "found the end of the input (truncated stream)",
        ),
    ];
    for (what, bytes, message) in cases {
        std::fs::write(d.join("bad.diff"), bytes).unwrap();
        let out = expect(rbdcp(d).args(["import-diff", "bad.diff", "b.img"]), 1);
        assert!(stderr(&out).contains(message), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("diff stream bad.diff"),
            "{what}: {}",
            stderr(&out)
        );
        assert!(!d.join("b.img").exists(), "{what}: a bad stream made b.img");
        // A stream cut short leaves what it applied staged, for the whole stream to
        // resume; `discard` drops it.
        expect(rbdcp(d).args(["discard", "b.img"]), 0);
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !left.iter().any(|n| n.to_string_lossy().contains("b.img")),
            "{what}: {left:?}"
        );
    }
}

#[test]
fn a_record_that_fails_its_crc_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), 8 * M, &[(0, 8 * M as usize)]);
    std::fs::write(d.join("b.img"), vec![0x55; 8 * M as usize]).unwrap();
    // An incremental stream, so it is applied in place to b.img.
    let mut w = rbdcp::stream::Writer::start(Vec::new(), Some("s1"), Some("s2"), 8 * M).unwrap();
    let data = util::noise(3, M as usize);
    for i in 0..4 {
        w.write(i * 2 * M, &data).unwrap();
    }
    let good = w.end().unwrap();
    std::fs::write(d.join("inc.diff"), &good).unwrap();
    let crc = format!("{:08x}", crc32fast::hash(&data));
    let sidecar: String = (0..4)
        .map(|i| format!("{} {} {crc}\n", i * 2 * M, M))
        .collect();
    std::fs::write(d.join("inc.crc"), format!("rbdcp-crc32 v1\n{sidecar}")).unwrap();
    // Flip one bit in the third record's data.
    let mut bad = good.clone();
    let third = 12 + 7 + 7 + 9 + 2 * (17 + M as usize) + 17; // banner, f "s1", t "s2", s, two records
    bad[third + 1000] ^= 1;
    std::fs::write(d.join("bad.diff"), bad).unwrap();
    let out = expect(
        rbdcp(d).args([
            "import-diff",
            "bad.diff",
            "b.img",
            "--crc",
            "inc.crc",
            "-j",
            "1",
        ]),
        1,
    );
    assert!(
        stderr(&out).contains(&format!(
            "at byte {}: expected a w record at {} of {M} bytes with crc32 {crc}",
            third - 17,
            4 * M
        )),
        "{}",
        stderr(&out)
    );
    let after = std::fs::read(d.join("b.img")).unwrap();
    assert!(
        after[4 * M as usize..5 * M as usize]
            .iter()
            .all(|&b| b == 0x55),
        "the bad record was written"
    );
    expect(
        rbdcp(d).args(["import-diff", "inc.diff", "b.img", "--crc", "inc.crc"]),
        0,
    );
}

#[test]
fn export_diff_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::sparse_file(&d.join("a.img"), M, &[(0, 4096)]);
    let out = expect(rbdcp(d).args(["export-diff", "a.img", "-", "--json"]), 2);
    assert!(
        stderr(&out).contains("--json would mix with the stream"),
        "{}",
        stderr(&out)
    );
    let out = expect(
        rbdcp(d).args(["export-diff", "a.img", "x.diff", "--from-snap", "s1"]),
        2,
    );
    assert!(
        stderr(&out).contains("a local image has no snapshots"),
        "{}",
        stderr(&out)
    );
    std::fs::write(d.join("x.diff"), b"keep").unwrap();
    let out = expect(rbdcp(d).args(["export-diff", "a.img", "x.diff"]), 1);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("x.diff")).unwrap(), b"keep");
}
