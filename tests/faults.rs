//! Fault tests against the real local clusters: rbdcp killed (SIGKILL, from outside and at
//! test-only fault points) at many moments of copies and imports, then run again; a source
//! changed between a kill and the rerun; two runs on one destination; a full file system.
//! Every rerun must resume (`resumed_from > 0` once a checkpoint was written), end
//! byte-identical to the source, and leave the destination snapshot present exactly once.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// Flags that make an import slow enough to be killed in its middle (about 3 s for the
/// 24 MiB of data), with frequent records.
const SLOW: [&str; 8] = [
    "--bps-limit",
    "8M",
    "-j",
    "2",
    "--checkpoint-interval",
    "0.05",
    "--op-timeout",
    "20",
];

/// The same for a copy, in chunks of 1 MiB: 24 of them, so a mark moves 24 times, in
/// about 3 s.
const SLOW_COPY: [&str; 10] = [
    "--bps-limit",
    "8M",
    "-j",
    "2",
    "--checkpoint-interval",
    "0.05",
    "--op-timeout",
    "20",
    "--chunk-size",
    "1M",
];

/// An image of 32 MiB in objects of 1 MiB (so streams have records of at most 1 MiB),
/// data at 0..20 MiB and 28..32 MiB, with snapshot `s1`.
fn image(conf: &Path, img: &str) {
    create_1m_with_s1(
        conf,
        img,
        32 * M,
        &[(0, 20 * M as usize), (28 * M, 4 * M as usize)],
    );
}

/// Runs rbdcp with `args`; it must kill itself at fault point `point`.
fn killed_at(d: &Path, args: &[&str], point: &str) {
    let out = rbdcp(d)
        .args(args)
        .env("RBDCP_FAULT", point)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{args:?} did not die at {point}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs rbdcp with `args` (standard input from `input`, if given) and kills it with
/// SIGKILL once `ready` holds (polled), or at the latest after 60 s.
fn killed_when(d: &Path, args: &[&str], input: Option<&Path>, ready: impl Fn() -> bool) {
    let mut cmd = rbdcp(d);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(path) = input {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?} ended before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{args:?}: never ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{args:?}: {status:?}");
}

/// The progress record rbdcp keeps in `image`'s image-meta, if any.
fn rbd_record(conf: &Path, image: &str) -> Option<Value> {
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(["image-meta", "get", &format!("rbd/{image}"), "rbdcp.resume"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Whether a record with a mark above 0 is in `image`'s image-meta.
fn rbd_marked(conf: &Path, image: &str) -> bool {
    rbd_record(conf, image).is_some_and(|r| r["mark"].as_u64() > Some(0))
}

/// Runs the rerun: it must succeed and report JSON.
fn rerun(d: &Path, args: &[&str], input: Option<&Path>) -> Value {
    let mut cmd = rbdcp(d);
    cmd.args(args).arg("--json");
    if let Some(path) = input {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    json(&expect(&mut cmd, 0))
}

/// Checks that a rerun resumed: from above 0 and below the end, having skipped data.
fn resumed(v: &Value) {
    let from = v["resumed_from"].as_u64();
    assert!(from.is_some_and(|f| f > 0), "no resume: {v}");
    assert!(
        v["bytes_skipped"].as_u64() > Some(0),
        "nothing skipped: {v}"
    );
}

fn dst_images(conf: &Path, img: &str) -> Vec<String> {
    images(conf)
        .into_iter()
        .filter(|i| i.starts_with(img))
        .collect()
}

#[test]
fn a_full_cross_cluster_copy_resumes_after_kills() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-full");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let mut args = vec!["copy", &src, &dst];
    args.extend(SLOW_COPY);
    let staged = format!("{img}.rbdcp-partial");
    // Killed twice: at its first checkpoint, then (resumed) at its third (a loaded machine
    // may run the first one far before its first checkpoint lands).
    killed_at(d, &args, "checkpoint:1");
    assert_eq!(dst_images(&c2, &img), std::slice::from_ref(&staged));
    let first = rbd_record(&c2, &staged).expect("a record")["mark"]
        .as_u64()
        .unwrap();
    assert!(first > 0);
    killed_at(d, &args, "checkpoint:3");
    let second = rbd_record(&c2, &staged).unwrap()["mark"].as_u64().unwrap();
    assert!(second > first, "{second} after {first}");
    let v = rerun(d, &args, None);
    resumed(&v);
    assert!(v["resumed_from"].as_u64() >= Some(second), "{v}");
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s1")),
        export(&c1, &format!("rbd/{img}@s1"))
    );
    assert_eq!(snaps(&c2, &img), ["s1"]);
    assert_eq!(dst_images(&c2, &img), std::slice::from_ref(&img));
    assert_eq!(rbd_record(&c2, &img), None, "the record is gone");
    // Run again: the job is complete, nothing is copied.
    let v = rerun(d, &args, None);
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["bytes_read"], 0, "{v}");
}

#[test]
fn an_incremental_copy_resumes_after_kills() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-inc");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dst = loc(&c2, &format!("rbd/{img}"));
    expect(
        rbdcp(d).args(["copy", &loc(&c1, &format!("rbd/{img}@s1")), &dst]),
        0,
    );
    for i in 0..12 {
        write(&c1, &img, i * 2 * M + 4096, M as usize, 40 + i);
    }
    zero(&c1, &img, 28 * M, 2 * M);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s2")]);
    let src = loc(&c1, &format!("rbd/{img}@s2"));
    let mut args = vec!["copy", &src, &dst, "--from-snap", "s1"];
    args.extend(SLOW_COPY);
    killed_at(d, &args, "checkpoint:1");
    assert!(rbd_marked(&c2, &img), "the record is in the image itself");
    // Killed from outside, at whatever moment the next record lands.
    let before = rbd_record(&c2, &img).unwrap()["mark"].as_u64();
    killed_when(d, &args, None, || {
        rbd_record(&c2, &img).is_some_and(|r| r["mark"].as_u64() > before)
    });
    let v = rerun(d, &args, None);
    resumed(&v);
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s2")),
        export(&c1, &format!("rbd/{img}@s2"))
    );
    assert_eq!(snaps(&c2, &img), ["s1", "s2"]);
}

#[test]
fn file_to_rbd_and_rbd_to_file_resume_after_kills() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-files");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("src.img");
    std::fs::write(&file, export(&c1, &format!("rbd/{img}@s1"))).unwrap();

    // File to RBD: killed at its second record, then from outside after its next one.
    let dst = loc(&c2, &format!("rbd/{img}"));
    let mut args = vec!["copy", "src.img", &dst];
    args.extend(SLOW_COPY);
    let staged = format!("{img}.rbdcp-partial");
    killed_at(d, &args, "checkpoint:2");
    let before = rbd_record(&c2, &staged).unwrap()["mark"].as_u64();
    killed_when(d, &args, None, || {
        rbd_record(&c2, &staged).is_some_and(|r| r["mark"].as_u64() > before)
    });
    resumed(&rerun(d, &args, None));
    assert_eq!(
        export(&c2, &format!("rbd/{img}")),
        std::fs::read(&file).unwrap()
    );
    assert_eq!(
        snaps(&c2, &img),
        Vec::<String>::new(),
        "a file has no snapshot"
    );

    // RBD to a file: killed at its first and third records.
    let src = loc(&c1, &format!("rbd/{img}@s1"));
    let mut args = vec!["copy", &src, "out.img"];
    args.extend(SLOW_COPY);
    killed_at(d, &args, "checkpoint:1");
    assert!(d.join(".out.img.rbdcp-partial").exists());
    assert!(d.join(".out.img.rbdcp-partial.resume").exists());
    killed_at(d, &args, "checkpoint:3");
    resumed(&rerun(d, &args, None));
    assert!(util::same_bytes(&file, &d.join("out.img")));
    assert!(!d.join(".out.img.rbdcp-partial.resume").exists());
    assert!(!d.join(".out.img.rbdcp-lock").exists());
}

#[test]
fn imports_resume_from_a_file_and_from_standard_input() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-import");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stream = d.join("s1.diff");
    rbd(
        &c1,
        &[
            "export-diff",
            "--no-progress",
            &format!("rbd/{img}@s1"),
            stream.to_str().unwrap(),
        ],
    );
    let want = export(&c1, &format!("rbd/{img}@s1"));

    // From a file: killed at its first and third records; the rerun seeks.
    let dst = loc(&c2, &format!("rbd/{img}"));
    let mut args = vec!["import-diff", stream.to_str().unwrap(), &dst];
    args.extend(SLOW);
    killed_at(d, &args, "checkpoint:1");
    killed_at(d, &args, "checkpoint:3");
    let v = rerun(d, &args, None);
    resumed(&v);
    assert_eq!(
        v["bytes_read"].as_u64().unwrap() + v["bytes_skipped"].as_u64().unwrap(),
        24 * M,
        "{v}"
    );
    assert_eq!(export(&c2, &format!("rbd/{img}@s1")), want);
    assert_eq!(snaps(&c2, &img), ["s1"]);

    // From standard input into a file: killed at its first and second records; the
    // rerun reads the stream again and skips what was applied.
    let mut args = vec!["import-diff", "-", "out.img"];
    args.extend(SLOW);
    for point in ["checkpoint:1", "checkpoint:2"] {
        let out = rbdcp(d)
            .args(&args)
            .env("RBDCP_FAULT", point)
            .stdin(std::fs::File::open(&stream).unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "{point}: {out:?}");
    }
    let v = rerun(d, &args, Some(&stream));
    resumed(&v);
    assert_eq!(std::fs::read(d.join("out.img")).unwrap(), want);

    // The same record and a stream whose bytes before the mark differ: refused.
    let mut args = vec!["import-diff", "-", "other.img"];
    args.extend(SLOW);
    let out = rbdcp(d)
        .args(&args)
        .env("RBDCP_FAULT", "checkpoint:2")
        .stdin(std::fs::File::open(&stream).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    let mut changed = std::fs::read(&stream).unwrap();
    // In the first record's data (1 MiB): the first mark may be where that record starts,
    // the second is past its end.
    changed[200] ^= 1;
    std::fs::write(d.join("changed.diff"), &changed).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rbdcp"))
        .current_dir(d)
        .args(["import-diff", "-", "other.img"])
        .stdin(std::fs::File::open(d.join("changed.diff")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("differ"),
        "{out:?}"
    );

    // A record made reading a file (which a resume finds by its bytes before the offset,
    // keeping no crc32 of the whole stream) is refused from standard input; from the file
    // it resumes.
    let mut args = vec!["import-diff", stream.to_str().unwrap(), "filed.img"];
    args.extend(SLOW);
    killed_at(d, &args, "checkpoint:2");
    let out = Command::new(env!("CARGO_BIN_EXE_rbdcp"))
        .current_dir(d)
        .args(["import-diff", "-", "filed.img"])
        .stdin(std::fs::File::open(&stream).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resume check"),
        "{out:?}"
    );
    resumed(&rerun(d, &args, None));
    assert_eq!(std::fs::read(d.join("filed.img")).unwrap(), want);
}

#[test]
fn a_kill_at_each_step_of_the_end_is_completed_by_the_rerun() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-end");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = loc(&c1, &format!("rbd/{img}@s1"));
    let want = export(&c1, &format!("rbd/{img}@s1"));
    // A job that recorded its progress records its end too: the rerun only finishes it.
    // One shorter than a checkpoint interval records nothing (saving the round trips):
    // its rerun copies again, at most that interval's work.
    for (point, slow) in [
        ("after-write", true),
        ("rename-id", true),
        ("rename-directory", true),
        ("after-rename", true),
        ("after-snap", true),
        ("after-write", false),
    ] {
        let target = format!("{img}-{point}-{slow}");
        let dst = loc(&c2, &format!("rbd/{target}"));
        let mut args = vec!["copy", &src, &dst];
        if slow {
            args.extend(SLOW_COPY);
        }
        killed_at(d, &args, point);
        let v = rerun(d, &args, None);
        match slow {
            true => assert_eq!(v["bytes_read"], 0, "{point}: only the end was left: {v}"),
            false => assert_eq!(v["complete"], false, "{point}: {v}"),
        }
        assert_eq!(export(&c2, &format!("rbd/{target}@s1")), want, "{point}");
        assert_eq!(snaps(&c2, &target), ["s1"], "{point}");
        assert_eq!(
            dst_images(&c2, &target),
            std::slice::from_ref(&target),
            "{point}"
        );
        assert_eq!(rbd_record(&c2, &target), None, "{point}");
        // Nor is an id object of the staged name left behind.
        let objects = Command::new("rados")
            .args(["-c", c2.to_str().unwrap(), "-p", "rbd", "ls"])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&objects.stdout)
            .lines()
            .filter(|o| o.starts_with(&format!("rbd_id.{target}")))
            .map(str::to_owned)
            .collect();
        assert_eq!(ids, [format!("rbd_id.{target}")], "{point}");
    }
    // A name another image took while the copy was stopped: the rename refuses it and
    // both images stay as they are.
    let target = format!("{img}-taken");
    let dst = loc(&c2, &format!("rbd/{target}"));
    let mut args = vec!["copy", &src, &dst];
    args.extend(SLOW_COPY);
    killed_at(d, &args, "after-write");
    rbd(&c2, &["create", "--size", "1M", &format!("rbd/{target}")]);
    let out = expect(rbdcp(d).args(&args), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{out:?}"
    );
    let staged = format!("{target}.rbdcp-partial");
    assert_eq!(dst_images(&c2, &target), [target.clone(), staged.clone()]);
    let info: Value = serde_json::from_slice(&rbd(
        &c2,
        &["info", "--format", "json", &format!("rbd/{target}")],
    ))
    .unwrap();
    assert_eq!(info["size"], 1 << 20, "{info}");
    assert_eq!(export(&c2, &format!("rbd/{staged}")), want);
    // `rbdcp discard` drops the staged copy (other tests look for none left).
    expect(rbdcp(d).args(["discard", &dst]), 0);
    assert_eq!(dst_images(&c2, &target), std::slice::from_ref(&target));
    for point in ["after-write", "after-rename"] {
        let out = format!("{point}.img");
        let mut args = vec!["copy", &src, &out];
        args.extend(SLOW_COPY);
        killed_at(d, &args, point);
        let v = rerun(d, &args, None);
        assert_eq!(v["bytes_read"], 0, "{point}: {v}");
        assert_eq!(std::fs::read(d.join(&out)).unwrap(), want, "{point}");
        let left: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(point))
            .collect();
        assert_eq!(left, std::slice::from_ref(&out), "{point}");
    }
}

#[test]
fn a_recreated_source_snapshot_is_refused_until_restart() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("kill-recreated");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let mut args = vec!["copy", &src, &dst];
    args.extend(SLOW_COPY);
    killed_at(d, &args, "checkpoint:1");
    rbd(
        &c1,
        &["snap", "rm", "--no-progress", &format!("rbd/{img}@s1")],
    );
    write(&c1, &img, 0, 4096, 99);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s1")]);
    let out = expect(rbdcp(d).args(&args), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("snapshot id changed"), "{err}");
    let v = rerun(d, &[&args[..], &["--restart"]].concat(), None);
    assert_eq!(v["resumed_from"], Value::Null, "{v}");
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s1")),
        export(&c1, &format!("rbd/{img}@s1"))
    );
}

#[test]
fn a_second_run_on_one_destination_is_busy() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("busy");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (src, dst) = (
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c2, &format!("rbd/{img}")),
    );
    let slow = ["copy", &src, &dst, "--bps-limit", "8M", "--json"];
    for (first, second) in [
        (slow.to_vec(), vec!["copy", &src, &dst]),
        (
            vec!["copy", &src, "f.img", "--bps-limit", "8M", "--json"],
            vec!["copy", &src, "f.img"],
        ),
    ] {
        let child = rbdcp(d)
            .args(&first)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first holds the destination once its staged copy exists.
        let started = Instant::now();
        while !(images(&c2).contains(&format!("{img}.rbdcp-partial"))
            || d.join(".f.img.rbdcp-partial").exists())
        {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        let out = expect(rbdcp(d).args(&second), 4);
        assert!(t.elapsed() < Duration::from_secs(10), "refused at once");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("busy") && err.contains(&format!("process {}", child.id())),
            "{err}"
        );
        let first_out: Output = child.wait_with_output().unwrap();
        assert!(first_out.status.success(), "{first_out:?}");
        // A rerun after the first finished: nothing to do or already there.
        let _ = rbdcp(d).args(&second).output();
    }
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s1")),
        export(&c1, &format!("rbd/{img}@s1"))
    );
    assert_eq!(
        std::fs::read(d.join("f.img")).unwrap(),
        export(&c1, &format!("rbd/{img}@s1"))
    );
}

#[test]
fn a_full_file_system_is_a_clear_error_naming_the_file() {
    let Some((c1, _)) = clusters() else { return };
    let img = name("enospc");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting a small tmpfs needs root (as in CI)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let src = loc(&c1, &format!("rbd/{img}@s1"));
    for extra in [&[][..], &["--no-preallocate"][..]] {
        let out = expect(
            rbdcp(&mnt).args([&["copy", &src, "full.img"][..], extra].concat()),
            1,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left on device"), "{extra:?}: {err}");
        assert!(err.contains("full.img"), "{extra:?}: {err}");
        assert!(!mnt.join("full.img").exists(), "{extra:?}");
        expect(rbdcp(&mnt).args(["discard", "full.img"]), 0);
    }
}

#[test]
fn a_destination_another_client_keeps_locked_is_refused_and_left_as_it_was() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("locked");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (s1, dst) = (
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c2, &format!("rbd/{img}")),
    );
    expect(rbdcp(d).args(["copy", &s1, &dst]), 0);
    write(&c1, &img, 4 * M, 4096, 7);
    rbd(&c1, &["snap", "create", &format!("rbd/{img}@s2")]);
    // Another client takes the destination's exclusive lock and keeps it (librbd's
    // explicit lock, which it does not hand over on request).
    use rbdcp::rbd::{Access, Cluster, Image, Pool};
    let access = Access {
        conf: Some(c2.clone()),
        ..Access::default()
    };
    let pool = Pool::open(&Cluster::connect(&access).unwrap(), "rbd", None).unwrap();
    let holder = Image::open(&pool, &img, "holder").unwrap();
    holder.lock_acquire().unwrap();
    let s2 = loc(&c1, &format!("rbd/{img}@s2"));
    let incremental = ["copy", &s2, &dst, "--from-snap", "s1"];
    let t = Instant::now();
    let out = expect(rbdcp(d).args(incremental), 1);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "refused, not waited out"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("rbd/{img}")) && err.contains("lock"),
        "{err}"
    );
    // Nothing of the run is left: no record (the run saved one while the lock was being
    // taken), no provenance, no snapshot.
    let meta = String::from_utf8_lossy(&rbd(&c2, &["image-meta", "list", &format!("rbd/{img}")]))
        .into_owned();
    assert!(
        !meta.contains("rbdcp.resume") && !meta.contains("rbdcp.snap.s2"),
        "{meta}"
    );
    assert_eq!(snaps(&c2, &img), ["s1"]);
    drop(holder);
    let out = expect(rbdcp(d).args(incremental).arg("--json"), 0);
    assert_eq!(json(&out)["resumed_from"], Value::Null);
    assert_eq!(
        export(&c2, &format!("rbd/{img}@s2")),
        export(&c1, &format!("rbd/{img}@s2"))
    );
}
