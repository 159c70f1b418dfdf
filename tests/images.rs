//! `rbdcp export` and `rbdcp import` with `--export-format 2` against real clusters and
//! Debian's `rbd`: an image with snapshots, a protected one, image-meta and holes carried
//! both ways (files and pipes), an import killed in its middle and resumed, and bad
//! streams refused with their byte offset.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `--json` of export and import, typed.
#[derive(Debug, Deserialize)]
struct Report {
    size: u64,
    bytes_written: u64,
    resumed_from: Option<u64>,
}

/// An image on `conf` of 16 MiB with holes, snapshots s1..s5 (data written, overwritten
/// and discarded between them), s2 protected, and two image-meta keys.
fn image(conf: &Path, img: &str) -> Vec<String> {
    create(
        conf,
        img,
        16 * M,
        &[(0, 2 * M as usize), (9 * M, M as usize)],
    );
    let spec = format!("rbd/{img}");
    rbd(conf, &["image-meta", "set", &spec, "app.setting", "42"]);
    rbd(
        conf,
        &["image-meta", "set", &spec, "conf_rbd_cache", "false"],
    );
    let names = five_snapshots(conf, img);
    rbd(conf, &["snap", "protect", &format!("{spec}@s2")]);
    // The head differs from the last snapshot.
    write(conf, img, 12 * M, 50_000, 99);
    names
}

/// Every snapshot and the head of `a` on `ca` equal `b`'s on `cb`, and so do their
/// protection and image-meta (rbdcp's own records left out).
fn same(ca: &Path, a: &str, cb: &Path, b: &str, names: &[String]) {
    assert_eq!(snaps(cb, b), names, "{b}'s snapshots");
    for s in names.iter().map(|s| format!("@{s}")).chain([String::new()]) {
        let (x, y) = (
            export(ca, &format!("rbd/{a}{s}")),
            export(cb, &format!("rbd/{b}{s}")),
        );
        assert!(x == y, "{b}{s} differs from {a}{s}");
    }
    assert_eq!(protected(cb, b), protected(ca, a), "protection of {b}");
    assert_eq!(meta(cb, b), meta(ca, a), "image-meta of {b}");
}

fn meta(conf: &Path, img: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&rbd(
        conf,
        &[
            "image-meta",
            "list",
            "--format",
            "json",
            &format!("rbd/{img}"),
        ],
    ))
    .unwrap();
    let mut pairs: Vec<_> = v
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("rbdcp."))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    pairs.sort();
    pairs
}

fn clean(conf: &Path, img: &str) {
    let spec = format!("rbd/{img}");
    rbd(conf, &["snap", "unprotect", &format!("{spec}@s2")]);
    rbd(conf, &["snap", "purge", &spec]);
    rbd(conf, &["rm", "--no-progress", &spec]);
}

fn report(out: &std::process::Output) -> Report {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn streams_round_trip_with_debian_rbd_both_ways() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("ef2");
    let names = image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let theirs = d.join("theirs.rbd2");
    let ours = d.join("ours.rbd2");

    // rbd's stream into rbdcp, across clusters.
    rbd(
        &c1,
        &[
            "export",
            "--no-progress",
            "--export-format",
            "2",
            &format!("rbd/{img}"),
            theirs.to_str().unwrap(),
        ],
    );
    let got = format!("{img}-a");
    let r = report(&expect(
        rbdcp(d).args([
            "import",
            "--export-format",
            "2",
            theirs.to_str().unwrap(),
            &loc(&c2, &format!("rbd/{got}")),
            "--json",
        ]),
        0,
    ));
    assert_eq!(r.size, 16 * M);
    assert!(r.bytes_written > 3 * M, "{r:?}");
    same(&c1, &img, &c2, &got, &names);
    // The new image has the source's shape.
    let info = |c: &Path, i: &str| -> serde_json::Value {
        serde_json::from_slice(&rbd(c, &["info", "--format", "json", &format!("rbd/{i}")])).unwrap()
    };
    let (a, b) = (info(&c1, &img), info(&c2, &got));
    for k in ["order", "features", "stripe_unit", "stripe_count"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    // Imported again: it holds the stream already, nothing is written.
    let again = report(&expect(
        rbdcp(d).args([
            "import",
            "--export-format",
            "2",
            theirs.to_str().unwrap(),
            &loc(&c2, &format!("rbd/{got}")),
            "--json",
        ]),
        0,
    ));
    assert!(
        again.bytes_written < 100_000,
        "only the head's diff again: {again:?}"
    );

    // rbdcp's stream into rbd, from a file (exported by a user with read-only caps) and
    // through a pipe.
    let keyring = c1.parent().unwrap().join("ro.keyring");
    let read_only = format!(
        "rbd:rbd/{img}:conf={}:id=ro:keyring={}",
        c1.display(),
        keyring.display()
    );
    expect(
        rbdcp(d).args([
            "export",
            "--export-format",
            "2",
            &read_only,
            ours.to_str().unwrap(),
        ]),
        0,
    );
    let filed = format!("{img}-b");
    rbd(
        &c2,
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            ours.to_str().unwrap(),
            &format!("rbd/{filed}"),
        ],
    );
    same(&c1, &img, &c2, &filed, &names);
    let piped = format!("{img}-c");
    let mut export = rbdcp(d)
        .args([
            "export",
            "--export-format",
            "2",
            &loc(&c1, &format!("rbd/{img}")),
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let import = Command::new("rbd")
        .arg("-c")
        .arg(&c2)
        .args(["import", "--no-progress", "--export-format", "2", "-"])
        .arg(format!("rbd/{piped}"))
        .stdin(export.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(export.wait().unwrap().success() && import.success());
    same(&c1, &img, &c2, &piped, &names);

    // rbd's stream into rbdcp through standard input.
    let stdin = format!("{img}-d");
    let mut child = rbdcp(d)
        .args(["import", "--export-format", "2", "-"])
        .arg(loc(&c2, &format!("rbd/{stdin}")))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(
        &mut std::fs::File::open(&theirs).unwrap(),
        &mut child.stdin.take().unwrap(),
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    same(&c1, &img, &c2, &stdin, &names);

    // An export that ends at a snapshot: its head is that snapshot.
    let upto = d.join("upto.rbd2");
    expect(
        rbdcp(d).args([
            "export",
            "--export-format",
            "2",
            &loc(&c1, &format!("rbd/{img}@s3")),
            upto.to_str().unwrap(),
        ]),
        0,
    );
    let cut = format!("{img}-e");
    rbd(
        &c2,
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            upto.to_str().unwrap(),
            &format!("rbd/{cut}"),
        ],
    );
    assert_eq!(snaps(&c2, &cut), names[..3]);
    assert!(export_eq(
        &c1,
        &format!("rbd/{img}@s3"),
        &c2,
        &format!("rbd/{cut}")
    ));

    for i in [&got, &filed, &piped, &stdin] {
        clean(&c2, i);
    }
    rbd(&c2, &["snap", "unprotect", &format!("rbd/{cut}@s2")]);
    rbd(&c2, &["snap", "purge", &format!("rbd/{cut}")]);
    clean(&c1, &img);
}

fn export_eq(ca: &Path, a: &str, cb: &Path, b: &str) -> bool {
    export(ca, a) == export(cb, b)
}

#[test]
fn an_import_killed_in_its_middle_resumes_and_bad_streams_are_refused() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("ef2-killed");
    let names = image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("img.rbd2");
    rbd(
        &c1,
        &[
            "export",
            "--no-progress",
            "--export-format",
            "2",
            &format!("rbd/{img}"),
            file.to_str().unwrap(),
        ],
    );
    let dst = loc(&c2, &format!("rbd/{img}"));
    let import = |fault: Option<&str>| {
        let mut cmd = rbdcp(d);
        cmd.args([
            "import",
            "--export-format",
            "2",
            file.to_str().unwrap(),
            &dst,
        ])
        .args([
            "--checkpoint-interval",
            "0.05",
            "--bps-limit",
            "2M",
            "--json",
        ]);
        if let Some(point) = fault {
            cmd.env("RBDCP_FAULT", point);
        }
        cmd.output().unwrap()
    };
    // Killed after its second snapshot, then in the middle of a later diff.
    for point in ["after-snap", "checkpoint:2"] {
        let out = import(Some(point));
        assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
        let made = snaps(&c2, &img);
        assert!(made.len() < names.len(), "{point}: {made:?}");
        assert_eq!(made, names[..made.len()], "{point}: out of order");
    }
    let out = import(None);
    assert!(out.status.success(), "{out:?}");
    let r = report(&out);
    assert!(
        r.resumed_from > Some(0),
        "it resumed in the middle of a diff: {r:?}"
    );
    same(&c1, &img, &c2, &img, &names);

    // Bad streams: each fails naming the byte offset, and creates nothing.
    let bytes = std::fs::read(&file).unwrap();
    let bad = d.join("bad.rbd2");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "banner",
            [b"rbd image v3\n", &bytes[13..]].concat(),
            "at byte 0",
        ),
        (
            "truncated",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated stream",
        ),
        (
            "count",
            {
                // One diff more than the stream holds.
                let at = find(&bytes, b"rbd image diffs v2\n") + 19;
                let mut b = bytes.clone();
                b[at] += 1;
                b
            },
            "found a diff from \"s5\" to \"the head\"",
        ),
    ];
    for (what, data, says) in cases {
        std::fs::write(&bad, data).unwrap();
        let target = format!("{img}-{what}");
        let out = expect(
            rbdcp(d).args([
                "import",
                "--export-format",
                "2",
                bad.to_str().unwrap(),
                &loc(&c2, &format!("rbd/{target}")),
            ]),
            1,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("at byte") && err.contains(says),
            "{what}: {err}"
        );
        let left: Vec<String> = images(&c2)
            .into_iter()
            .filter(|i| i.starts_with(&target))
            .collect();
        if what == "banner" {
            assert!(left.is_empty(), "{what}: {left:?}");
        } else {
            // The diffs before the bad one are applied, each ending in its snapshot, and
            // the failure says how to go on.
            assert!(
                err.contains("run the same command again to resume"),
                "{what}: {err}"
            );
        }
        for i in left {
            let spec = format!("rbd/{i}");
            let _ = Command::new("rbd")
                .arg("-c")
                .arg(&c2)
                .args(["snap", "unprotect", &format!("{spec}@s2")])
                .output();
            rbd(&c2, &["snap", "purge", &spec]);
            rbd(&c2, &["rm", "--no-progress", &spec]);
        }
    }
    clean(&c2, &img);
    clean(&c1, &img);
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the stream holds it")
}
