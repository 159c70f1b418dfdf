//! `rbdcp backup` against real clusters: a chain of backups driven by `RBDCP_NOW` across
//! hours, days and months with retention worked out by hand, restores, broken chains, and
//! a backup within one cluster.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// `rbdcp backup --json`, typed.
#[derive(Debug, Deserialize)]
struct Report {
    snapshot: String,
    base: Option<String>,
    mode: String,
    broken_chain: Option<Broken>,
    removed: Removed,
    bytes_written: u64,
}

#[derive(Debug, Deserialize)]
struct Broken {
    reason: String,
    renamed_to: String,
}

#[derive(Debug, Deserialize)]
struct Removed {
    source: Vec<String>,
    destination: Vec<String>,
}

/// Runs `rbdcp backup SRC DST ARGS --json` at `now`, expecting exit `code`.
fn backup(src: &str, dst: &str, now: &str, args: &[&str], code: i32) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    expect(
        rbdcp(dir.path())
            .env("RBDCP_NOW", now)
            .args(["backup", src, dst, "--json", "--no-progress"])
            .args(args),
        code,
    )
}

fn report(out: &std::process::Output) -> Report {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The snapshot name of a backup at `now` (`2026-01-30T10:00:00Z`).
fn snap_of(now: &str) -> String {
    format!("rbdcp-{}", now.replace(['-', ':'], ""))
}

const RULES: &[&str] = &[
    "--keep-hourly",
    "2",
    "--keep-daily",
    "2",
    "--keep-monthly",
    "2",
];

/// Twelve backups across hours, days and months, with retention
/// `--keep-hourly 2 --keep-daily 2 --keep-monthly 2` (UTC) applied after each. Worked by
/// hand, run by run (the chain newest first; `h` hourly, `d` daily, `m` monthly keeps):
///  1 01-30 10:00  [1h]
///  2 01-30 10:30  [2h] 1 shares 2's hour: removed
///  3 01-30 11:00  [3h 2h]
///  4 01-31 09:00  [4h 3h] 2: hourly full; its day and month already kept: removed
///  5 02-01 08:00  [5h 4h 3d]
///  6 02-01 08:45  [6h 4h 3d] 5 shares 6's hour: removed
///  7 02-10 12:00  [7h 6h 4d 3d]
///  8 02-28 23:00  [8h 7h 6d 4d] 3: daily full, January kept by 4: removed
///  9 03-01 01:00  [9h 8h 7d 6d 4m]
/// 10 03-01 01:30  [10h 8h 7d 6d 4m] 9 shares 10's hour: removed
/// 11 03-01 02:00  [11h 10h 8d 7d 4m] 6: daily full, February kept by 8: removed
/// 12 03-02 00:00  [12h 11h 8d 7d 4m] 10: its day and month kept by 11: removed
const RUNS: &[(&str, &[usize])] = &[
    ("2026-01-30T10:00:00Z", &[]),
    ("2026-01-30T10:30:00Z", &[1]),
    ("2026-01-30T11:00:00Z", &[]),
    ("2026-01-31T09:00:00Z", &[2]),
    ("2026-02-01T08:00:00Z", &[]),
    ("2026-02-01T08:45:00Z", &[5]),
    ("2026-02-10T12:00:00Z", &[]),
    ("2026-02-28T23:00:00Z", &[3]),
    ("2026-03-01T01:00:00Z", &[]),
    ("2026-03-01T01:30:00Z", &[9]),
    ("2026-03-01T02:00:00Z", &[6]),
    ("2026-03-02T00:00:00Z", &[10]),
];

#[test]
fn a_chain_of_backups_keeps_what_retention_says_byte_for_byte() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("chain");
    create(&c1, &img, 6 * M, &[(0, M as usize), (4 * M, 300_000)]);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let mut held: HashMap<String, Vec<u8>> = HashMap::new();
    let names: Vec<String> = RUNS.iter().map(|(now, _)| snap_of(now)).collect();
    for (i, (now, removed)) in RUNS.iter().enumerate() {
        // Writes between backups: new data, overwrites, a discard.
        write(
            &c1,
            &img,
            (i as u64 % 5) * M + 4096 * i as u64,
            70_000,
            i as u64,
        );
        if i == 6 {
            zero(&c1, &img, 0, M);
        }
        let r = report(&backup(&src, &dst, now, RULES, 0));
        assert_eq!(r.snapshot, names[i]);
        if i == 0 {
            assert_eq!((r.mode.as_str(), r.base.as_deref()), ("full", None));
        } else {
            assert_eq!(r.mode, "incremental", "run {}", i + 1);
            assert_eq!(
                r.base.as_deref(),
                Some(names[i - 1].as_str()),
                "run {}",
                i + 1
            );
            assert_eq!(r.removed.source, [names[i - 1].clone()], "run {}", i + 1);
            assert!(
                r.bytes_written < 3 * M,
                "run {} copied {} bytes",
                i + 1,
                r.bytes_written
            );
        }
        let want: Vec<String> = removed.iter().map(|n| names[n - 1].clone()).collect();
        assert_eq!(r.removed.destination, want, "run {}", i + 1);
        held.insert(
            r.snapshot.clone(),
            export(&c1, &format!("rbd/{img}@{}", r.snapshot)),
        );
        // The newest common base stays on both sides: the source keeps it alone.
        assert!(snaps(&c2, &img).contains(&names[i]), "run {}", i + 1);
        assert_eq!(snaps(&c1, &img), [names[i].clone()], "run {}", i + 1);
    }
    let kept: Vec<String> = [4, 7, 8, 11, 12]
        .iter()
        .map(|n| names[n - 1].clone())
        .collect();
    assert_eq!(snaps(&c2, &img), kept);
    for s in &kept {
        let got = export(&c2, &format!("rbd/{img}@{s}"));
        assert!(
            got == held[s],
            "{img}@{s} differs from the source snapshot it came from"
        );
    }

    // A rerun at the same time finds its snapshot made: nothing to do. Its metrics say so.
    let metrics = tempfile::tempdir().unwrap();
    let dir_arg = metrics.path().to_str().unwrap();
    let mut args = RULES.to_vec();
    args.extend(["--metrics-textfile", dir_arg]);
    let r = report(&backup(&src, &dst, RUNS[11].0, &args, 0));
    assert_eq!((r.mode.as_str(), r.bytes_written), ("none", 0));
    let prom = std::fs::read_to_string(
        metrics
            .path()
            .join(format!("rbdcp_backup_rbd_{}.prom", img.replace('-', "_"))),
    )
    .unwrap();
    let label = format!("{{image=\"rbd:rbd/{img}\"}}");
    for line in [
        format!("rbdcp_backup_last_run_success{label} 1"),
        format!("rbdcp_backup_last_run_timestamp_seconds{label} 1772409600"),
        format!("rbdcp_backup_full_copies_total{label} 0"),
        format!("rbdcp_backup_snapshots{{image=\"rbd:rbd/{img}\",side=\"destination\"}} 5"),
        format!("rbdcp_backup_snapshots{{image=\"rbd:rbd/{img}\",side=\"source\"}} 1"),
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} not in:\n{prom}");
    }
    // A failed run (the source is gone) keeps the last success's time.
    let gone = loc(&c1, "rbd/no-such-image");
    backup(&gone, &dst, RUNS[11].0, &args, 1);
    let prom2 = std::fs::read_to_string(
        metrics
            .path()
            .join(format!("rbdcp_backup_rbd_{}.prom", img.replace('-', "_"))),
    )
    .unwrap();
    assert!(
        prom2.contains(&format!("rbdcp_backup_last_run_success{label} 0")),
        "{prom2}"
    );
    let success = |p: &str| {
        p.lines()
            .find(|l| l.starts_with("rbdcp_backup_last_success_timestamp_seconds"))
            .map(str::to_owned)
    };
    assert_eq!(success(&prom2), success(&prom));

    // A dry run names every snapshot, this run's too, and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let out = expect(
        rbdcp(dir.path())
            .env("RBDCP_NOW", "2026-03-02T00:20:00Z")
            .args(["backup", &src, &dst, "--dry-run", "--keep-last", "2"]),
        0,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "rbdcp-20260302T002000Z keep keep-last".to_owned(),
            format!("{} keep keep-last", names[11]),
            format!("{} remove none", names[10]),
            format!("{} remove none", names[7]),
            format!("{} remove none", names[6]),
            format!("{} remove none", names[3]),
        ]
    );
    assert_eq!(snaps(&c2, &img), kept);
    assert_eq!(snaps(&c1, &img), [names[11].clone()]);

    // Restore: a copy from a backup snapshot.
    let restored = format!("{img}-restored");
    let from = loc(&c2, &format!("rbd/{img}@{}", kept[0]));
    expect(
        rbdcp(dir.path()).args(["copy", &from, &loc(&c1, &format!("rbd/{restored}"))]),
        0,
    );
    assert!(export(&c1, &format!("rbd/{restored}")) == held[&kept[0]]);

    // backup-list shows the chain, the source's snapshots and the common base.
    let out = expect(
        rbdcp(dir.path()).args(["backup-list", &dst, "--source", &src, "--json"]),
        0,
    );
    let v = json(&out);
    let listed: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(listed, kept.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["common_base"], names[11].as_str());
}

#[test]
fn broken_chains_refuse_with_exit_3_and_full_starts_a_new_one() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("broken");
    create(&c1, &img, 4 * M, &[(0, M as usize)]);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let t1 = "2026-03-01T02:00:00Z";
    backup(&src, &dst, t1, &[], 0);

    // Someone wrote to the backup: refused, naming both newest snapshots; nothing changed.
    write(&c2, &img, 2 * M, 4096, 7);
    let out = backup(&src, &dst, "2026-03-01T03:00:00Z", &[], 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written since its newest snapshot"), "{err}");
    assert!(err.contains(&snap_of(t1)), "{err}");
    assert_eq!(snaps(&c2, &img), [snap_of(t1)]);
    assert_eq!(
        snaps(&c1, &img),
        [snap_of(t1)],
        "no source snapshot was made"
    );

    // --on-broken-chain full: the old destination goes aside, a new chain starts.
    let t2 = "2026-03-01T04:00:00Z";
    let r = report(&backup(&src, &dst, t2, &["--on-broken-chain", "full"], 0));
    assert_eq!(r.mode, "fresh-chain");
    let broken = r.broken_chain.unwrap();
    assert!(broken.reason.contains("written since"), "{}", broken.reason);
    assert_eq!(broken.renamed_to, format!("{img}-broken-20260301T040000Z"));
    assert_eq!(snaps(&c2, &broken.renamed_to), [snap_of(t1)]);
    assert_eq!(snaps(&c2, &img), [snap_of(t2)]);
    assert!(
        export(&c2, &format!("rbd/{img}@{}", snap_of(t2)))
            == export(&c1, &format!("rbd/{img}@{}", snap_of(t2)))
    );

    // The base deleted on one side: refused.
    rbd(&c1, &["snap", "rm", &format!("rbd/{img}@{}", snap_of(t2))]);
    let out = backup(&src, &dst, "2026-03-01T05:00:00Z", &[], 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot of"), "{err}");

    // Another source image into this destination: refused, even with a snapshot of the
    // same name on both sides.
    let other = name("broken-other");
    create(&c1, &other, 4 * M, &[(0, M as usize)]);
    rbd(
        &c1,
        &["snap", "create", &format!("rbd/{other}@{}", snap_of(t2))],
    );
    let out = backup(
        &loc(&c1, &format!("rbd/{other}")),
        &dst,
        "2026-03-01T06:00:00Z",
        &[],
        3,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another source image"), "{err}");
    assert_eq!(snaps(&c2, &img), [snap_of(t2)]);

    // The base deleted on the destination: refused, naming both sides' newest snapshots.
    let third = name("broken-dst");
    create(&c1, &third, 4 * M, &[(0, M as usize)]);
    let (src3, dst3) = (
        loc(&c1, &format!("rbd/{third}")),
        loc(&c2, &format!("rbd/{third}")),
    );
    backup(&src3, &dst3, t1, &[], 0);
    rbd(
        &c2,
        &["snap", "rm", &format!("rbd/{third}@{}", snap_of(t1))],
    );
    let out = backup(&src3, &dst3, "2026-03-01T07:00:00Z", &[], 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no rbdcp- snapshot"), "{err}");
    assert!(
        err.contains(&format!(
            "newest snapshots: rbd:rbd/{third}: {}",
            snap_of(t1)
        )),
        "{err}"
    );
    for i in [&img, &other, &third] {
        rbd(&c1, &["snap", "purge", &format!("rbd/{i}")]);
    }
}

#[test]
fn a_backup_within_one_cluster_pool_to_pool_and_protected_snapshots_stay() {
    let Some((c1, _)) = clusters() else { return };
    // The second pool scripts/ceph-local.sh makes.
    let pool = "backup";
    let img = name("pools");
    create(&c1, &img, 4 * M, &[(M, M as usize)]);
    let src = loc(&c1, &format!("rbd/{img}"));
    let dst = loc(&c1, &format!("{pool}/{img}"));
    let times = [
        "2026-05-01T00:00:00Z",
        "2026-05-02T00:00:00Z",
        "2026-05-03T00:00:00Z",
    ];
    backup(&src, &dst, times[0], &["--keep-last", "1"], 0);
    let dir = tempfile::tempdir().unwrap();
    let first = format!("{pool}/{img}@{}", snap_of(times[0]));
    expect(rbdcp(dir.path()).args(["protect", &loc(&c1, &first)]), 0);
    write(&c1, &img, 0, 8192, 3);
    let r = report(&backup(&src, &dst, times[1], &["--keep-last", "1"], 0));
    assert_eq!(
        (r.mode.as_str(), r.removed.destination.len()),
        ("incremental", 0)
    );
    write(&c1, &img, 3 * M, 8192, 4);
    let r = report(&backup(&src, &dst, times[2], &["--keep-last", "1"], 0));
    // keep-last 1 keeps the newest; the protected first one stays; the middle one goes.
    assert_eq!(r.removed.destination, [snap_of(times[1])]);
    let held = |c: &Path, spec: String| export(c, &spec);
    assert_eq!(
        snaps_in(&c1, pool, &img),
        [snap_of(times[0]), snap_of(times[2])]
    );
    assert!(
        held(&c1, format!("{pool}/{img}@{}", snap_of(times[2])))
            == held(&c1, format!("rbd/{img}@{}", snap_of(times[2])))
    );
    expect(rbdcp(dir.path()).args(["unprotect", &loc(&c1, &first)]), 0);
}

fn snaps_in(conf: &Path, pool: &str, image: &str) -> Vec<String> {
    let out = rbd(
        conf,
        &["snap", "ls", "--format", "json", &format!("{pool}/{image}")],
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_second_backup_at_once_exits_4_touching_nothing() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("busy");
    create(&c1, &img, 8 * M, &[(0, 6 * M as usize)]);
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let dir = tempfile::tempdir().unwrap();
    // A slow first run: 6 MiB at 2 MiB/s.
    let mut first = rbdcp(dir.path())
        .env("RBDCP_NOW", "2026-04-01T00:00:00Z")
        .args(["backup", &src, &dst, "--no-progress", "--bps-limit", "2M"])
        .spawn()
        .unwrap();
    // Its source snapshot shows that it holds the destination's backup lease.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while snaps(&c1, &img).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run made no snapshot"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = backup(&src, &dst, "2026-04-01T00:05:00Z", &[], 4);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("busy") || err.contains("held by"), "{err}");
    assert_eq!(
        snaps(&c1, &img),
        ["rbdcp-20260401T000000Z"],
        "the second run made a snapshot"
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(snaps(&c2, &img), ["rbdcp-20260401T000000Z"]);
}

/// Runs `rbdcp backup` at `now` with fault point `point`, which must kill it.
fn killed(src: &str, dst: &str, now: &str, point: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = rbdcp(dir.path())
        .env("RBDCP_NOW", now)
        .env("RBDCP_FAULT", point)
        .args(["backup", src, dst, "--no-progress"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "{point}: not killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_backup_killed_at_any_step_leaves_the_base_and_the_next_run_completes_the_chain() {
    let Some((c1, c2)) = clusters() else { return };
    // During the copy (after its first progress record), after the new snapshot's
    // provenance record, after the destination snapshot, during retention, and after the
    // source snapshot.
    let points = [
        "checkpoint:1",
        "after-provenance",
        "after-snap",
        "retention",
        "after-source-snap",
    ];
    for (k, point) in points.iter().enumerate() {
        let img = name(&format!("killed{k}"));
        create(&c1, &img, 16 * M, &[(0, 4 * M as usize)]);
        let (src, dst) = (
            loc(&c1, &format!("rbd/{img}")),
            loc(&c2, &format!("rbd/{img}")),
        );
        let times = [
            "2026-06-01T00:00:00Z",
            "2026-06-01T01:00:00Z",
            "2026-06-01T02:00:00Z",
            "2026-06-01T03:00:00Z",
        ];
        let keep = ["--keep-last", "2"];
        let mut held = HashMap::new();
        for now in &times[..2] {
            write(&c1, &img, 5 * M, 100_000, held.len() as u64);
            let r = report(&backup(&src, &dst, now, &keep, 0));
            held.insert(
                r.snapshot.clone(),
                export(&c1, &format!("rbd/{img}@{}", r.snapshot)),
            );
        }
        let base = snap_of(times[1]);
        // A change in four objects (four chunks), to outlast a few progress records at 4 MiB/s.
        for o in 0..4 {
            write(&c1, &img, o * 4 * M, M as usize, 99 + o);
        }
        let slow = [
            "--keep-last",
            "2",
            "--checkpoint-interval",
            "0.05",
            "--bps-limit",
            "4M",
        ];
        killed(&src, &dst, times[2], point, &slow);
        // The old base is intact on both sides.
        assert!(
            snaps(&c1, &img).contains(&base),
            "{point}: the source lost the base"
        );
        assert!(
            snaps(&c2, &img).contains(&base),
            "{point}: the destination lost the base"
        );
        assert!(
            export(&c2, &format!("rbd/{img}@{base}")) == held[&base],
            "{point}: the base changed"
        );
        // No half-made backup is visible as a snapshot: the destination shows the killed
        // run's snapshot only once its data is complete.
        let third = snap_of(times[2]);
        if snaps(&c2, &img).contains(&third) {
            assert!(
                matches!(*point, "after-snap" | "retention"),
                "{point}: {third} is visible"
            );
        }
        held.insert(third.clone(), export(&c1, &format!("rbd/{img}@{third}")));
        // The next run completes the chain, incrementally.
        write(&c1, &img, 7 * M, 50_000, 100);
        let r = report(&backup(&src, &dst, times[3], &keep, 0));
        assert_eq!(r.mode, "incremental", "{point}");
        // What the killed run copied is not copied again; a run killed before it copied
        // anything leaves this one its changes too.
        let most = if *point == "after-source-snap" {
            5 * M
        } else {
            M
        };
        assert!(
            r.bytes_written < most,
            "{point}: {} bytes copied",
            r.bytes_written
        );
        let fourth = snap_of(times[3]);
        held.insert(fourth.clone(), export(&c1, &format!("rbd/{img}@{fourth}")));
        let kept = snaps(&c2, &img);
        assert_eq!(kept.last(), Some(&fourth), "{point}: {kept:?}");
        assert!(kept.len() <= 2, "{point}: retention kept {kept:?}");
        for s in &kept {
            assert!(
                export(&c2, &format!("rbd/{img}@{s}")) == held[s],
                "{point}: {img}@{s} differs from its source snapshot"
            );
        }
        assert_eq!(snaps(&c1, &img), [fourth], "{point}: source retention");
    }
}
