//! `export-diff` and `import-diff` against real clusters, both ways with Debian's `rbd`:
//! full and incremental streams, pipes, and bad streams that create no snapshot.

use std::process::{Command, Stdio};

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// An image on cluster 1 with snapshots s1 and s2 (data written, and a range discarded, between them).
fn source(conf: &std::path::Path, img: &str) {
    create(
        conf,
        img,
        40 * M,
        &[(0, 6 * M as usize), (20 * M + 512, 300_000)],
    );
    rbd(conf, &["snap", "create", &format!("rbd/{img}@s1")]);
    write(conf, img, 9 * M, 200_000, 11);
    zero(conf, img, 0, 4 * M);
    write(conf, img, 39 * M, M as usize, 12);
    rbd(conf, &["snap", "create", &format!("rbd/{img}@s2")]);
}

fn same_snapshots(c1: &std::path::Path, a: &str, c2: &std::path::Path, b: &str) {
    assert_eq!(snaps(c2, b), ["s1", "s2"]);
    for s in ["s1", "s2"] {
        let (x, y) = (
            export(c1, &format!("rbd/{a}@{s}")),
            export(c2, &format!("rbd/{b}@{s}")),
        );
        assert!(x == y, "{a}@{s} and {b}@{s} differ");
    }
}

#[test]
fn streams_from_rbd_export_diff_import_in_parallel() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("rbd2rbdcp");
    source(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (full, inc) = (d.join("full.diff"), d.join("inc.diff"));
    rbd(
        &c1,
        &[
            "export-diff",
            "--no-progress",
            &format!("rbd/{img}@s1"),
            full.to_str().unwrap(),
        ],
    );
    rbd(
        &c1,
        &[
            "export-diff",
            "--no-progress",
            "--from-snap",
            "s1",
            &format!("rbd/{img}@s2"),
            inc.to_str().unwrap(),
        ],
    );
    let dst = loc(&c2, &format!("rbd/{img}"));
    expect(
        rbdcp(d).args(["import-diff", full.to_str().unwrap(), &dst]),
        0,
    );
    // The incremental one through standard input.
    let input = std::fs::File::open(&inc).unwrap();
    expect(rbdcp(d).args(["import-diff", "-", &dst]).stdin(input), 0);
    same_snapshots(&c1, &img, &c2, &img);
}

#[test]
fn streams_from_rbdcp_export_diff_import_with_rbd() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("rbdcp2rbd");
    source(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = d.join("full.diff");
    expect(
        rbdcp(d).args([
            "export-diff",
            &loc(&c1, &format!("rbd/{img}@s1")),
            full.to_str().unwrap(),
        ]),
        0,
    );
    rbd(&c2, &["create", "--size", "1M", &format!("rbd/{img}")]);
    rbd(
        &c2,
        &[
            "import-diff",
            "--no-progress",
            full.to_str().unwrap(),
            &format!("rbd/{img}"),
        ],
    );
    // The incremental one through a pipe: rbdcp's standard output into rbd's standard input.
    let mut export = Command::new(env!("CARGO_BIN_EXE_rbdcp"))
        .args([
            "export-diff",
            &loc(&c1, &format!("rbd/{img}@s2")),
            "--from-snap",
            "s1",
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = export.stdout.take().unwrap();
    let import = Command::new("rbd")
        .arg("-c")
        .arg(&c2)
        .args(["import-diff", "--no-progress", "-", &format!("rbd/{img}")])
        .stdin(pipe)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(export.wait().unwrap().success());
    same_snapshots(&c1, &img, &c2, &img);
}

#[test]
fn bad_streams_create_no_snapshot() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("badstream");
    source(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dst = loc(&c2, &format!("rbd/{img}"));
    expect(
        rbdcp(d).args(["copy", &loc(&c1, &format!("rbd/{img}@s1")), &dst]),
        0,
    );
    let inc = d.join("inc.diff");
    expect(
        rbdcp(d).args([
            "export-diff",
            &loc(&c1, &format!("rbd/{img}@s2")),
            "--from-snap",
            "s1",
            inc.to_str().unwrap(),
        ]),
        0,
    );
    let good = std::fs::read(&inc).unwrap();

    let cut = d.join("cut.diff");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let out = expect(
        rbdcp(d).args(["import-diff", cut.to_str().unwrap(), &dst]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("truncated stream"),
        "{out:?}"
    );
    assert_eq!(
        snaps(&c2, &img),
        ["s1"],
        "a failed import created the to-snap"
    );
    // What the cut stream applied is recorded: another stream is refused until discarded.
    let mut other_stream =
        rbdcp::stream::Writer::start(Vec::new(), Some("s1"), Some("s8"), 40 * M).unwrap();
    other_stream.write(0, &[2; 4096]).unwrap();
    std::fs::write(d.join("s8.diff"), other_stream.end().unwrap()).unwrap();
    let out = expect(
        rbdcp(d).args(["import-diff", d.join("s8.diff").to_str().unwrap(), &dst]),
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stream to changed: recorded s2, now s8"),
        "{out:?}"
    );
    expect(rbdcp(d).args(["discard", &dst]), 0);

    // A stream whose from-snap the destination lacks is refused before anything is written.
    let before = export(&c2, &format!("rbd/{img}"));
    let other = d.join("other.diff");
    let mut w = rbdcp::stream::Writer::start(Vec::new(), Some("nope"), Some("s9"), 40 * M).unwrap();
    w.write(0, &[1; 4096]).unwrap();
    std::fs::write(&other, w.end().unwrap()).unwrap();
    let out = expect(
        rbdcp(d).args(["import-diff", other.to_str().unwrap(), &dst]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot \"nope\" not found"),
        "{out:?}"
    );
    assert_eq!(export(&c2, &format!("rbd/{img}")), before);

    // The good stream still applies; a second time it is complete already (rbdcp made s2
    // from this stream); a snapshot s2 made otherwise is refused.
    expect(
        rbdcp(d).args(["import-diff", inc.to_str().unwrap(), &dst]),
        0,
    );
    same_snapshots(&c1, &img, &c2, &img);
    let out = expect(
        rbdcp(d).args(["import-diff", inc.to_str().unwrap(), &dst, "--json"]),
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["bytes_written"], 0, "{v}");
    rbd(
        &c2,
        &[
            "image-meta",
            "remove",
            &format!("rbd/{img}"),
            "rbdcp.snap.s2",
        ],
    );
    let out = expect(
        rbdcp(d).args(["import-diff", inc.to_str().unwrap(), &dst]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has a snapshot \"s2\""),
        "{out:?}"
    );
}

#[test]
fn a_bps_limit_holds_for_an_import_into_rbd() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("limited");
    source(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.diff");
    let spec = format!("rbd/{img}@s1");
    rbd(
        &c1,
        &[
            "export-diff",
            "--no-progress",
            &spec,
            full.to_str().unwrap(),
        ],
    );
    // About 6.3 MiB of records at 2 MiB/s: three seconds, with every write asynchronous.
    let dst = loc(&c2, &format!("rbd/{img}"));
    let out = expect(
        rbdcp(dir.path()).args([
            "import-diff",
            full.to_str().unwrap(),
            &dst,
            "--bps-limit",
            "2M",
            "--json",
        ]),
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rate = v["bytes_read"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
    let ratio = rate / (2 * M) as f64;
    // The limit bounds the rate from above; a loaded machine can only make the job
    // slower, so the lower bound is generous (the engine's own tests use a fake clock).
    assert!(
        (0.5..=1.1).contains(&ratio),
        "measured {rate:.0} B/s, {ratio:.3} of the limit"
    );
    assert_eq!(export(&c1, &spec), export(&c2, &format!("rbd/{img}@s1")));
}
