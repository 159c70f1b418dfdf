//! Copies against real local Ceph clusters, started by `scripts/with-clusters.sh` (`make test`).
//!
//! The clusters' confs come from `RBDCP_CONF1` and `RBDCP_CONF2`. Without them the tests
//! say so and pass locally; under CI (`CI=true`) they fail.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use rbdcp::backend::mem::MemImage;
use rbdcp::backend::{discard, open_dest, Access, SinkOptions};
use rbdcp::engine::{copy, Options, Silent, Throttle};
use rbdcp::Location;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

#[test]
fn full_copy_within_one_cluster_and_across_two() {
    let Some((c1, c2)) = clusters() else { return };
    let src = name("full");
    create(
        &c1,
        &src,
        64 * M,
        &[
            (0, 3 * M as usize),
            (20 * M + 4096, 100_000),
            (63 * M, M as usize),
        ],
    );
    rbd(&c1, &["snap", "create", &format!("rbd/{src}@s1")]);
    let dir = tempfile::tempdir().unwrap();
    for (conf, dst) in [(&c1, format!("{src}-copy")), (&c2, src.clone())] {
        let out = expect(
            rbdcp(dir.path()).args([
                "copy",
                &loc(&c1, &format!("rbd/{src}@s1")),
                &loc(conf, &format!("rbd/{dst}")),
                "--json",
            ]),
            0,
        );
        let v = json(&out);
        assert_eq!(v["size"], 64 * M);
        assert!(v["bytes_read"].as_u64().unwrap() >= 4 * M + 100_000, "{v}");
        assert_eq!(
            export(conf, &format!("rbd/{dst}@s1")),
            export(&c1, &format!("rbd/{src}@s1"))
        );
        assert_eq!(snaps(conf, &dst), ["s1"]);
        assert!(
            !images(conf).iter().any(|i| i.contains("rbdcp-partial")),
            "{:?}",
            images(conf)
        );
    }
}

#[test]
fn an_incremental_chain_across_clusters_matches_rbd_export() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("chain");
    create(
        &c1,
        &img,
        48 * M,
        &[(0, 8 * M as usize), (30 * M, 2 * M as usize)],
    );
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s1")]);
    write(&c1, &img, 5 * M, 300_000, 7);
    zero(&c1, &img, 0, 4 * M); // a discarded whole object
    zero(&c1, &img, 30 * M + 4096, 65536); // a discarded range inside an object
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s2")]);
    write(&c1, &img, 40 * M, 4096, 8);
    rbd(&c1, &["resize", "--size", "56M", &format!("rbd/{img}")]);
    write(&c1, &img, 50 * M, 2 * M as usize, 9);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s3")]);

    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (
        |s: &str| loc(&c1, &format!("rbd/{img}@{s}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    expect(rbdcp(dir.path()).args(["copy", &src("s1"), &dst]), 0);
    let out = expect(
        rbdcp(dir.path()).args([
            "copy",
            &src("s2"),
            &dst,
            "--from-snap",
            "s1",
            "--json",
            "--verify",
        ]),
        0,
    );
    let v = json(&out);
    assert_eq!(v["verified"], true);
    assert!(
        v["bytes_read"].as_u64().unwrap() < 8 * M,
        "an incremental copy reads only the changes: {v}"
    );
    expect(
        rbdcp(dir.path()).args(["copy", &src("s3"), &dst, "--from-snap", "s2"]),
        0,
    );

    assert_eq!(snaps(&c2, &img), ["s1", "s2", "s3"]);
    for s in ["s1", "s2", "s3"] {
        let (a, b) = (
            export(&c1, &format!("rbd/{img}@{s}")),
            export(&c2, &format!("rbd/{img}@{s}")),
        );
        assert!(a == b, "{img}@{s} differs between the clusters");
        expect(
            rbdcp(dir.path()).args(["verify", &src(s), &loc(&c2, &format!("rbd/{img}@{s}"))]),
            0,
        );
    }
    let s2 = export(&c2, &format!("rbd/{img}@s2"));
    assert!(
        s2[..4 * M as usize].iter().all(|&b| b == 0),
        "the discarded object reads as zeroes"
    );
    assert!(s2[30 * M as usize + 4096..30 * M as usize + 4096 + 65536]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(export(&c2, &format!("rbd/{img}@s3")).len() as u64, 56 * M);
}

#[test]
fn rbdcp_diff_prints_what_rbd_diff_prints() {
    let Some((c1, _)) = clusters() else { return };
    let img = name("diff");
    create(&c1, &img, 32 * M, &[(M, 5 * M as usize), (20 * M, 8192)]);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@a")]);
    write(&c1, &img, 9 * M, 10_000, 1);
    zero(&c1, &img, 4 * M, 4 * M);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@b")]);
    let dir = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--from-snap", "a"][..], &["--whole-object"][..]] {
        for format in ["plain", "json"] {
            let spec = format!("rbd/{img}@b");
            let mut args = vec!["diff", &spec, "--format", format];
            args.extend(extra);
            let want = rbd(&c1, &args);
            let out = expect(
                rbdcp(dir.path())
                    .args(["diff", &loc(&c1, &spec), "--format", format])
                    .args(extra),
                0,
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&want),
                "{args:?}"
            );
        }
    }
}

#[test]
fn files_to_rbd_and_back() {
    let Some((c1, _)) = clusters() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = name("file");
    util::sparse_file(
        &d.join("in.img"),
        40 * M + 512,
        &[(M, 2 * M as usize), (40 * M, 512)],
    );
    expect(
        rbdcp(d).args(["copy", "in.img", &loc(&c1, &format!("rbd/{img}"))]),
        0,
    );
    let back = export(&c1, &format!("rbd/{img}"));
    assert_eq!(back, std::fs::read(d.join("in.img")).unwrap());
    expect(
        rbdcp(d).args(["copy", &loc(&c1, &format!("rbd/{img}")), "out.img"]),
        0,
    );
    assert!(util::same_bytes(&d.join("in.img"), &d.join("out.img")));
    assert!(
        util::allocated(&d.join("out.img")) < 4 * M,
        "holes stay holes"
    );
}

#[test]
fn a_read_only_user_can_be_the_source() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("ro");
    create(&c1, &img, 16 * M, &[(0, M as usize)]);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s")]);
    let keyring = c1.parent().unwrap().join("ro.keyring");
    let src = format!(
        "rbd:rbd/{img}@s:conf={}:id=ro:keyring={}",
        c1.display(),
        keyring.display()
    );
    let dir = tempfile::tempdir().unwrap();
    expect(
        rbdcp(dir.path()).args(["copy", &src, &loc(&c2, &format!("rbd/{img}"))]),
        0,
    );
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s")),
        export(&c1, &format!("rbd/{img}@s"))
    );
    // The same user cannot write.
    let out = expect(
        rbdcp(dir.path()).args([
            "copy",
            &loc(&c2, &format!("rbd/{img}@s")),
            &src.replace("@s", "-w"),
        ]),
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
}

#[test]
fn refusals_leave_the_destination_untouched() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("refuse");
    create(&c1, &img, 16 * M, &[(0, 2 * M as usize)]);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s1")]);
    write(&c1, &img, 0, 4096, 3);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s2")]);
    create(&c2, &img, 16 * M, &[(8 * M, M as usize)]);
    let before = export(&c2, &format!("rbd/{img}"));
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}@s2")),
        loc(&c2, &format!("rbd/{img}")),
    );

    let out = expect(rbdcp(dir.path()).args(["copy", &src, &dst]), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists (add --overwrite"),
        "{out:?}"
    );
    let out = expect(
        rbdcp(dir.path()).args(["copy", &src, &dst, "--from-snap", "s1"]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("snapshot \"s1\" not found on rbd:rbd/{img}")),
        "{out:?}"
    );
    let out = expect(
        rbdcp(dir.path()).args(["copy", &src, &dst, "--from-snap", "nope"]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot \"nope\" not found"),
        "{out:?}"
    );
    assert_eq!(export(&c2, &format!("rbd/{img}")), before);
    assert!(snaps(&c2, &img).is_empty());

    // With --overwrite the head is replaced in place, holes of the source included.
    expect(
        rbdcp(dir.path()).args(["copy", &src, &dst, "--overwrite"]),
        0,
    );
    assert_eq!(
        export(&c2, &format!("rbd/{img}")),
        export(&c1, &format!("rbd/{img}@s2"))
    );
}

#[test]
fn bad_credentials_and_dead_monitors_fail_fast_without_leaking_keys() {
    let Some((c1, _)) = clusters() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = String::from_utf8(
        Command::new("ceph-authtool")
            .arg("--gen-print-key")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let key = key.trim();
    std::fs::write(
        d.join("bad.keyring"),
        format!("[client.admin]\n\tkey = {key}\n"),
    )
    .unwrap();
    let src = format!(
        "rbd:rbd/x:conf={}:keyring={}",
        c1.display(),
        d.join("bad.keyring").display()
    );
    let start = Instant::now();
    let out = expect(rbdcp(d).args(["copy", &src, "out.img"]), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("Permission denied"),
        "{err}"
    );
    assert!(!err.contains(key), "the key leaked: {err}");
    assert!(start.elapsed().as_secs() < 10);

    // A monitor port where nobody listens.
    std::fs::write(d.join("dead.conf"), "[global]\nmon_host = v2:127.0.0.1:1\n").unwrap();
    let keyring = c1.parent().unwrap().join("keyring");
    let src = format!(
        "rbd:rbd/x:conf={}:keyring={}",
        d.join("dead.conf").display(),
        keyring.display()
    );
    let start = Instant::now();
    let out = expect(
        rbdcp(d).args(["copy", &src, "out.img", "--connect-timeout", "3"]),
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out") && err.contains("--connect-timeout"),
        "{err}"
    );
    let secs = start.elapsed().as_secs_f64();
    assert!((2.5..15.0).contains(&secs), "gave up after {secs} s");
    assert!(!d.join("out.img").exists());
}

#[test]
fn a_failed_copy_keeps_its_staged_image_until_discarded() {
    let Some((c1, _)) = clusters() else { return };
    let img = name("partial");
    let spec: Location = loc(&c1, &format!("rbd/{img}")).parse().unwrap();
    let src = MemImage::new("mem", 32 * M).failing_at(20 * M);
    src.put(0, &util::noise(5, 32 * M as usize));
    let opts = SinkOptions {
        size: 32 * M,
        ..SinkOptions::default()
    };
    let staged = format!("{img}.rbdcp-partial");
    let dest = open_dest(&spec, &opts).unwrap();
    assert!(images(&c1).contains(&staged), "{:?}", images(&c1));
    let err = copy(
        &src,
        dest.sink.as_ref(),
        &Options::default(),
        &Throttle::new(Default::default()),
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("at offset 20971520"), "{err}");
    drop(dest);
    assert!(images(&c1).contains(&staged), "kept for a resume");
    let access = Access::default();
    assert!(discard(&spec, &access).unwrap(), "something was staged");
    assert!(
        !images(&c1).iter().any(|i| i.starts_with(&img)),
        "{:?}",
        images(&c1)
    );
    assert!(!discard(&spec, &access).unwrap(), "nothing is left");
}

/// The exact extents an RBD source lists (from its fast-diff map where valid, else by
/// visiting every object) are `rbd diff`'s, with fast-diff on and off, with writes and
/// discards across snapshots; a copy reads exactly the data bytes they name.
#[test]
fn listings_are_rbd_diffs_with_fast_diff_on_and_off() {
    let Some((c1, c2)) = clusters() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (n, features, mode) in [
        (0, None, "fast-diff+exact"),
        (1, Some("layering,exclusive-lock"), "exact"),
    ] {
        let img = name(&format!("modes{n}"));
        let spec = format!("rbd/{img}");
        let mut create = vec!["create", "--size", "64M", &spec];
        if let Some(f) = features {
            create.extend(["--image-feature", f]);
        }
        rbd(&c1, &create);
        let mut rng = fastrand::Rng::with_seed(7);
        for (i, snap) in ["a", "b", "c"].iter().enumerate() {
            for _ in 0..6 {
                let len = rng.u64(1..3 * 1024) * 512;
                let at = rng.u64(0..(64 * M - len) / 512) * 512;
                match rng.u8(0..3) {
                    0 => zero(&c1, &img, at, len),
                    _ => write(&c1, &img, at, len as usize, rng.u64(..)),
                }
            }
            if i == 1 {
                zero(&c1, &img, 8 * M, 4 * M); // a whole object discarded
            }
            rbd(&c1, &["snap", "create", &format!("{spec}@{snap}")]);
        }
        let c = format!("{spec}@c");
        let b = format!("{spec}@b");
        for (at, from) in [
            (&c, None),
            (&c, Some("a")),
            (&c, Some("b")),
            (&b, Some("a")),
            (&spec, None),
        ] {
            let mut args = vec!["diff", at.as_str(), "--format", "json"];
            if let Some(f) = from {
                args.extend(["--from-snap", f]);
            }
            let want = rbd(&c1, &args);
            let src = loc(&c1, at);
            args[1] = &src;
            let got = expect(rbdcp(d).args(&args), 0).stdout;
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{mode}: {at} from {from:?}"
            );
        }
        let listed: Value =
            serde_json::from_slice(&rbd(&c1, &["diff", &c, "--format", "json"])).unwrap();
        let data: u64 = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["exists"] == "true")
            .map(|e| e["length"].as_u64().unwrap())
            .sum();
        let dst = format!("rbd/{img}");
        let v = json(&expect(
            rbdcp(d).args(["copy", &loc(&c1, &c), &loc(&c2, &dst), "--json"]),
            0,
        ));
        assert_eq!(v["diff_mode"], mode, "{v}");
        assert_eq!(v["bytes_read"].as_u64(), Some(data), "{v}");
        assert_eq!(export(&c2, &format!("{dst}@c")), export(&c1, &c));
        let v = json(&expect(
            rbdcp(d).args([
                "copy",
                &loc(&c1, &c),
                &loc(&c2, &format!("{dst}-w")),
                "--whole-object",
                "--json",
            ]),
            0,
        ));
        let whole = if features.is_none() {
            "whole-object"
        } else {
            "exact"
        };
        assert_eq!(v["diff_mode"], whole, "{v}");
    }
}
