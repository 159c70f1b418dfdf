//! `rbdcp copy --snapshots` against real clusters: an image's snapshot history copied
//! across clusters, byte for byte at every snapshot, resumed after kills, continued with
//! `since:BASE`, and refused into an image holding another history.

use std::os::unix::process::ExitStatusExt;

use serde::Deserialize;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `rbdcp copy --snapshots --json`, typed.
#[derive(Debug, Deserialize)]
struct Report {
    snapshots: Vec<String>,
    held: Vec<String>,
    skipped: Vec<Skipped>,
    bytes_written: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Skipped {
    name: String,
    namespace: String,
}

/// An image on cluster 1 with snapshots s1..s5: data written, overwritten and discarded
/// between them.
fn history(conf: &std::path::Path, img: &str) -> Vec<String> {
    create(
        conf,
        img,
        12 * M,
        &[(0, 2 * M as usize), (8 * M, M as usize)],
    );
    five_snapshots(conf, img)
}

fn same(c1: &std::path::Path, c2: &std::path::Path, img: &str, snaps: &[String]) {
    for s in snaps {
        let (a, b) = (
            export(c1, &format!("rbd/{img}@{s}")),
            export(c2, &format!("rbd/{img}@{s}")),
        );
        assert!(a == b, "{img}@{s} differs");
    }
}

fn run(args: &[&str], code: i32) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    expect(rbdcp(dir.path()).args(args), code)
}

fn report(out: &std::process::Output) -> Report {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_snapshot_is_copied_in_order_and_a_rerun_continues() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("history");
    let names = history(&c1, &img);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    // What the image carries besides its bytes: image-meta, and a protected snapshot.
    let spec = format!("rbd/{img}");
    rbd(&c1, &["image-meta", "set", &spec, "app.setting", "42"]);
    rbd(
        &c1,
        &["image-meta", "set", &spec, "conf_rbd_cache", "false"],
    );
    rbd(&c1, &["snap", "protect", &format!("{spec}@s2")]);

    // Up to s3 first: SRC@SNAP ends the history there.
    let upto = loc(&c1, &format!("rbd/{img}@s3"));
    let r = report(&run(
        &["copy", &upto, &dst, "--snapshots", "all", "--json"],
        0,
    ));
    assert_eq!(r.snapshots, names[..3]);
    assert_eq!(snaps(&c2, &img), names[..3]);
    same(&c1, &c2, &img, &names[..3]);
    let meta: serde_json::Value = serde_json::from_slice(&rbd(
        &c2,
        &["image-meta", "list", "--format", "json", &spec],
    ))
    .unwrap();
    assert_eq!(meta["app.setting"], "42", "{meta}");
    assert_eq!(meta["conf_rbd_cache"], "false", "{meta}");
    assert!(meta.get("rbdcp.resume").is_none(), "{meta}");
    assert_eq!(protected(&c2, &img), ["s2"]);
    // The steps wrote the destination through one open image and one lease, kept from
    // step to step: all of it is given up at the end, no lock, lease or watch left.
    let locks: serde_json::Value =
        serde_json::from_slice(&rbd(&c2, &["lock", "ls", "--format", "json", &spec])).unwrap();
    assert!(locks.as_array().is_some_and(Vec::is_empty), "{locks}");
    let status: serde_json::Value =
        serde_json::from_slice(&rbd(&c2, &["status", "--format", "json", &spec])).unwrap();
    assert!(
        status["watchers"].as_array().is_some_and(Vec::is_empty),
        "{status}"
    );
    let lease = lease(&c2, &img);
    assert!(
        lease["lockers"].as_array().is_some_and(Vec::is_empty),
        "{lease}"
    );

    // `all` again continues the history the destination holds: nothing to copy up to s3.
    let r = report(&run(
        &["copy", &upto, &dst, "--snapshots", "all", "--json"],
        0,
    ));
    assert!(r.snapshots.is_empty() && r.held == names[..3], "{r:?}");

    // since:s3 copies s4 and s5, each only as what changed since the one before.
    let r = report(&run(
        &["copy", &src, &dst, "--snapshots", "since:s3", "--json"],
        0,
    ));
    assert_eq!(r.snapshots, names[3..]);
    assert!(
        r.bytes_written < 2 * M,
        "{} bytes for two small changes",
        r.bytes_written
    );
    assert_eq!(snaps(&c2, &img), names);
    same(&c1, &c2, &img, &names);

    // A destination holding another history is refused.
    let other = name("history-other");
    create(&c2, &other, 12 * M, &[(0, M as usize)]);
    rbd(&c2, &["snap", "create", &format!("rbd/{other}@x")]);
    let out = run(
        &[
            "copy",
            &src,
            &loc(&c2, &format!("rbd/{other}")),
            "--snapshots",
            "all",
        ],
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds snapshot x"),
        "{out:?}"
    );
    // since: a snapshot the destination does not hold.
    run(
        &[
            "copy",
            &src,
            &loc(&c2, &format!("rbd/{other}")),
            "--snapshots",
            "since:s2",
        ],
        3,
    );

    // --data-pool: the data goes to cluster 2's second pool, the header stays in rbd.
    let pooled = format!("{img}-pooled");
    let from = loc(&c1, &format!("{spec}@s5"));
    let to = loc(&c2, &format!("rbd/{pooled}"));
    run(&["copy", &from, &to, "--data-pool", "backup"], 0);
    let info: serde_json::Value = serde_json::from_slice(&rbd(
        &c2,
        &["info", "--format", "json", &format!("rbd/{pooled}")],
    ))
    .unwrap();
    assert_eq!(info["data_pool"], "backup", "{info}");
    assert!(export(&c2, &format!("rbd/{pooled}@s5")) == export(&c1, &format!("{spec}@s5")));
    rbd(&c1, &["snap", "unprotect", &format!("{spec}@s2")]);
    rbd(&c1, &["snap", "purge", &spec]);
}

#[test]
fn a_history_killed_in_its_middle_resumes_at_the_snapshot_and_offset_it_reached() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("history-killed");
    let names = history(&c1, &img);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let dir = tempfile::tempdir().unwrap();
    let slow = [
        "--checkpoint-interval",
        "0.05",
        "--bps-limit",
        "2M",
        "--chunk-size",
        "4M",
    ];
    // Killed after the second snapshot was made, then in the middle of a later step.
    for point in ["after-snap", "checkpoint:2"] {
        let out = rbdcp(dir.path())
            .env("RBDCP_FAULT", point)
            .args(["copy", &src, &dst, "--snapshots", "all", "--no-progress"])
            .args(slow)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
        let made = snaps(&c2, &img);
        assert!(made.len() < names.len(), "{point}: {made:?}");
        assert_eq!(made, names[..made.len()], "{point}: out of order");
    }
    let before = snaps(&c2, &img);
    assert!(!before.is_empty(), "no snapshot survived the kills");
    let r = report(&run(
        &["copy", &src, &dst, "--snapshots", "all", "--json"],
        0,
    ));
    assert_eq!(r.held, before);
    assert_eq!(r.snapshots, names[before.len()..]);
    assert_eq!(snaps(&c2, &img), names);
    same(&c1, &c2, &img, &names);
    rbd(&c1, &["snap", "purge", &format!("rbd/{img}")]);
}

#[test]
fn snapshots_in_the_trash_or_owned_by_mirroring_are_skipped_and_reported() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("history-namespaces");
    let spec = format!("rbd/{img}");
    create(&c1, &img, 4 * M, &[(0, M as usize)]);
    rbd(&c1, &["snap", "create", &format!("{spec}@u1")]);
    // A snapshot removed while a (v2) clone depends on it goes to the trash namespace.
    rbd(&c1, &["snap", "create", &format!("{spec}@t")]);
    let kid = format!("rbd/{img}-kid");
    rbd(
        &c1,
        &[
            "clone",
            "--rbd-default-clone-format",
            "2",
            &format!("{spec}@t"),
            &kid,
        ],
    );
    rbd(&c1, &["snap", "rm", "--no-progress", &format!("{spec}@t")]);
    write(&c1, &img, 2 * M, 10_000, 1);
    rbd(&c1, &["snap", "create", &format!("{spec}@u2")]);
    // Snapshot-based mirroring makes a snapshot of its own.
    rbd(&c1, &["mirror", "pool", "enable", "rbd", "image"]);
    rbd(&c1, &["mirror", "image", "enable", &spec, "snapshot"]);
    let r = report(&run(
        &[
            "copy",
            &loc(&c1, &spec),
            &loc(&c2, &spec),
            "--snapshots",
            "all",
            "--json",
        ],
        0,
    ));
    assert_eq!(r.snapshots, ["u1", "u2"]);
    let kinds: Vec<&str> = r.skipped.iter().map(|s| s.namespace.as_str()).collect();
    assert_eq!(kinds, ["trash", "mirror"], "{r:?}");
    assert!(r.skipped[1].name.starts_with(".mirror.primary."), "{r:?}");
    assert_eq!(snaps(&c2, &img), ["u1", "u2"]);
    same(&c1, &c2, &img, &r.snapshots);
    rbd(&c1, &["mirror", "image", "disable", &spec]);
    rbd(&c1, &["mirror", "pool", "disable", "rbd"]);
    rbd(&c1, &["rm", "--no-progress", &kid]);
    rbd(&c1, &["snap", "purge", "--no-progress", &spec]);
    rbd(&c2, &["snap", "purge", "--no-progress", &spec]);
}

/// `rbd du`'s bytes used by `spec` (an image or a snapshot).
fn used(conf: &std::path::Path, spec: &str) -> u64 {
    let du: serde_json::Value =
        serde_json::from_slice(&rbd(conf, &["du", "--format", "json", spec])).unwrap();
    du["images"][0]["used_size"].as_u64().unwrap()
}

/// The parent of `rbd/image` as `rbd info` shows it (`POOL/IMAGE@SNAP`), if any.
fn parent(conf: &std::path::Path, image: &str) -> Option<String> {
    let info: serde_json::Value = serde_json::from_slice(&rbd(
        conf,
        &["info", "--format", "json", &format!("rbd/{image}")],
    ))
    .unwrap();
    let p = info.get("parent")?;
    Some(format!(
        "{}/{}@{}",
        p["pool"].as_str()?,
        p["image"].as_str()?,
        p["snapshot"].as_str()?
    ))
}

#[test]
fn a_clone_keeps_its_parent_link_and_copies_only_its_own_data() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("golden");
    // In objects of 1 MiB, so that its clones' objects can be as small (a clone's objects
    // are no smaller than its parent's).
    let data = [(0, 2 * M as usize), (8 * M, M as usize)];
    create_1m_with_s1(&c1, &img, 12 * M, &data);
    rbd(
        &c1,
        &["snap", "rm", "--no-progress", &format!("rbd/{img}@s1")],
    );
    five_snapshots(&c1, &img);
    rbd(&c1, &["snap", "protect", &format!("rbd/{img}@s3")]);
    // The parent's history, under another name: the copy is found by its provenance.
    let copied = format!("{img}-copied");
    run(
        &[
            "copy",
            &loc(&c1, &format!("rbd/{img}")),
            &loc(&c2, &format!("rbd/{copied}")),
            "--snapshots",
            "all",
        ],
        0,
    );
    assert_eq!(protected(&c2, &copied), ["s3"]);
    // Two clones of s3 in objects of 1 MiB: one with fast-diff (its own objects come from
    // the object map), one without (from the exact listing). Each writes a little, zeroes
    // parent data (which must not show through on the copy), grows and writes beyond the
    // parent, with a snapshot after each change.
    for (kid, features) in [
        ("fast", "layering,exclusive-lock,object-map,fast-diff"),
        ("plain", "layering"),
    ] {
        let kid = format!("{img}-{kid}");
        rbd(
            &c1,
            &[
                "clone",
                "--object-size",
                "1M",
                "--image-feature",
                features,
                &format!("rbd/{img}@s3"),
                &format!("rbd/{kid}"),
            ],
        );
        write(&c1, &kid, 8 * M + 4096, 5000, 21);
        rbd(&c1, &["snap", "create", &format!("rbd/{kid}@c1")]);
        zero(&c1, &kid, M + 4096, 8192);
        write(&c1, &kid, 2 * M, 3000, 22);
        rbd(&c1, &["snap", "create", &format!("rbd/{kid}@c2")]);
        rbd(
            &c1,
            &[
                "resize",
                "--no-progress",
                "--size",
                "16M",
                &format!("rbd/{kid}"),
            ],
        );
        write(&c1, &kid, 14 * M, 6000, 23);
        rbd(&c1, &["snap", "create", &format!("rbd/{kid}@c3")]);
        let kids = ["c1".to_owned(), "c2".to_owned(), "c3".to_owned()];
        rbd(
            &c1,
            &["image-meta", "set", &format!("rbd/{kid}"), "app.kind", "vm"],
        );

        // Read with the read-only user: a source is only read, its parent through it.
        let keyring = c1.parent().unwrap().join("ro.keyring");
        let src = format!(
            "rbd:rbd/{kid}:conf={}:id=ro:keyring={}",
            c1.display(),
            keyring.display()
        );
        let dst = loc(&c2, &format!("rbd/{kid}"));
        let out = run(
            &[
                "copy",
                &src,
                &dst,
                "--snapshots",
                "all",
                "--keep-parent",
                "--json",
            ],
            0,
        );
        let r = json(&out);
        assert_eq!(r["clone_of"]["parent"], format!("rbd/{img}@s3"), "{r}");
        assert_eq!(r["clone_of"]["flattened"], false, "{r}");
        assert_eq!(snaps(&c2, &kid), kids);
        same(&c1, &c2, &kid, &kids);
        assert_eq!(parent(&c2, &kid), Some(format!("rbd/{copied}@s3")));
        let meta = rbd(
            &c2,
            &["image-meta", "get", &format!("rbd/{kid}"), "app.kind"],
        );
        assert_eq!(String::from_utf8_lossy(&meta).trim(), "vm");
        // Only the clone's own objects were written: 4 of 1 MiB (at 1, 2, 8 and 14 MiB),
        // not the parent's 12 MiB.
        let (have, got) = (
            used(&c1, &format!("rbd/{kid}@c3")),
            used(&c2, &format!("rbd/{kid}@c3")),
        );
        assert!(
            got <= have && got <= 4 * M,
            "{kid}: {got} bytes used on the copy, {have} on the source"
        );
        assert!(
            r["bytes_read"].as_u64().unwrap() <= 4 * M,
            "{kid}: read {r}"
        );

        // Without --keep-parent a clone is copied flattened, and the report says so.
        let flat = format!("{kid}-flat");
        let r = json(&run(
            &[
                "copy",
                &loc(&c1, &format!("rbd/{kid}@c2")),
                &loc(&c2, &format!("rbd/{flat}")),
                "--json",
            ],
            0,
        ));
        assert_eq!(r["clone_of"]["flattened"], true, "{r}");
        assert_eq!(parent(&c2, &flat), None);
        assert!(export(&c2, &format!("rbd/{flat}@c2")) == export(&c1, &format!("rbd/{kid}@c2")));
    }
    // No copy of the parent where --keep-parent looks: refused, nothing made.
    let kid = format!("{img}-fast");
    let lost = format!("{img}-lost");
    let out = run(
        &[
            "copy",
            &loc(&c1, &format!("rbd/{kid}@c1")),
            &loc(&c2, &format!("rbd/{lost}")),
            "--keep-parent",
            "--parent-pool",
            "backup",
        ],
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no image in pool backup holds rbdcp's copy"),
        "{out:?}"
    );
    assert!(!images(&c2).iter().any(|i| i.starts_with(&lost)));
    for kid in ["fast", "plain"] {
        rbd(
            &c1,
            &[
                "snap",
                "purge",
                "--no-progress",
                &format!("rbd/{img}-{kid}"),
            ],
        );
        rbd(&c1, &["rm", "--no-progress", &format!("rbd/{img}-{kid}")]);
    }
    rbd(&c1, &["snap", "unprotect", &format!("rbd/{img}@s3")]);
    rbd(
        &c1,
        &["snap", "purge", "--no-progress", &format!("rbd/{img}")],
    );
}

#[test]
fn a_history_goes_into_an_erasure_coded_data_pool() {
    let Some((c1, c4)) = cluster4() else { return };
    let img = name("history-ec");
    let names = history(&c1, &img);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c4, &format!("rbd/{img}")),
    );
    // Partial overwrites of EC stripes (4 KiB writes into 4 MiB objects of 2+1 chunks) in
    // every step after the first.
    let r = report(&run(
        &[
            "copy",
            &src,
            &dst,
            "--snapshots",
            "all",
            "--data-pool",
            "ec",
            "--json",
        ],
        0,
    ));
    assert_eq!(r.snapshots, names);
    let info: serde_json::Value = serde_json::from_slice(&rbd(
        &c4,
        &["info", "--format", "json", &format!("rbd/{img}")],
    ))
    .unwrap();
    assert_eq!(info["data_pool"], "ec", "{info}");
    // The data objects are in the EC pool, and the pool is erasure-coded.
    let objects = std::process::Command::new("rados")
        .args(["-c", c4.to_str().unwrap(), "-p", "ec", "ls"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&objects.stdout);
    assert!(
        listed.lines().any(|o| o.starts_with("rbd_data.")),
        "{objects:?}"
    );
    let kind = ceph(&c4, &["osd", "pool", "get", "ec", "erasure_code_profile"]);
    assert!(kind.contains("ec21"), "{kind}");
    same(&c1, &c4, &img, &names);
    rbd(
        &c1,
        &["snap", "purge", "--no-progress", &format!("rbd/{img}")],
    );
}
