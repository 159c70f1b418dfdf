//! Outage tests against the real local clusters: an OSD paused for 10 s and one killed
//! and started again in the middle of a copy, the client blocklisted, and a destination
//! pool that reaches its quota. The copy completes (connecting again where it must), or,
//! after the OSD was killed or the pool filled, fails cleanly with its progress kept and
//! resumes to an identical result. The paused and killed OSDs are checked for
//! placement groups stuck "waiting for readable" afterwards (`ceph-local.sh unstick`).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod util;
use util::ceph::*;
use util::{expect, rbdcp};

const M: u64 = 1 << 20;

/// A 24 MiB image in objects of 1 MiB, 20 MiB of data, with snapshot `s1`.
fn image(conf: &Path, img: &str) {
    create_1m_with_s1(conf, img, 24 * M, &[(0, 20 * M as usize)]);
}

/// Copy flags: slow (`rate` per second), in chunks of 1 MiB, records every 0.1 s, op
/// time-outs of `op` seconds and quick retries.
fn slow(rate: &str, op: &str) -> Vec<String> {
    [
        "--bps-limit",
        rate,
        "-j",
        "2",
        "--chunk-size",
        "1M",
        "--checkpoint-interval",
        "0.1",
        "--op-timeout",
        op,
        "--retries",
        "3",
        "--retry-max-wait",
        "4",
        "--json",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(d: &Path, args: &[String]) -> Child {
    rbdcp(d)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a slow copy (op time-outs of `op` seconds) of cluster `c1`'s `rbd/img@s1` to
/// `rbd/dst` of cluster `to`, and waits for its first progress record. Returns its
/// arguments, to run it again, and the process.
fn copying(
    d: &Path,
    (c1, to): (&Path, &Path),
    img: &str,
    dst: &str,
    op: &str,
) -> (Vec<String>, Child) {
    let mut args = vec![
        "copy".to_owned(),
        loc(c1, &format!("rbd/{img}@s1")),
        loc(to, &format!("rbd/{dst}")),
    ];
    args.extend(slow("8M", op));
    let mut child = start(d, &args);
    wait_for_progress(to, "rbd", &format!("{dst}.rbdcp-partial"), &mut child);
    (args, child)
}

/// Takes `cluster`'s OSD down (`ceph-local.sh STOP`) for `secs`, brings it back (`AGAIN`)
/// and clears any placement group the outage left stuck.
fn outage(cluster: &str, (stop, again): (&str, &str), secs: u64) {
    ceph_local(&[stop, cluster]);
    std::thread::sleep(Duration::from_secs(secs)); // the outage itself, not a synchronization
    ceph_local(&[again, cluster]);
    eprintln!("{}", ceph_local(&["unstick", cluster]));
}

/// Waits until the progress record in `pool/image`'s image-meta has a mark above 0.
fn wait_for_progress(conf: &Path, pool: &str, image: &str, child: &mut Child) {
    let started = Instant::now();
    loop {
        let out = std::process::Command::new("rbd")
            .arg("-c")
            .arg(conf)
            .args([
                "image-meta",
                "get",
                &format!("{pool}/{image}"),
                "rbdcp.resume",
            ])
            .output()
            .unwrap();
        let mark = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["mark"].as_u64());
        if mark > Some(0) {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the copy ended early");
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 3 minutes) for `child`; returns its exit code and JSON report.
fn finish(mut child: Child) -> (Option<i32>, Value, String) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(180) {
            child.kill().unwrap();
            panic!("the copy hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ends an interrupted copy: done (exit 0), or failed cleanly (exit 1) and then resumed
/// by a rerun to the end. Returns the report that finished it.
fn completed(d: &Path, args: &[String], outcome: (Option<i32>, Value, String)) -> Value {
    match outcome {
        (Some(0), v, err) => {
            eprintln!("done: {v}\n{err}");
            v
        }
        (Some(1), _, err) => {
            assert!(
                err.contains("run the same command again to resume"),
                "{err}"
            );
            eprintln!("failed cleanly: {err}");
            let v = util::ceph::json(&expect(rbdcp(d).args(args), 0));
            eprintln!("resumed: {v}");
            assert!(v["resumed_from"].as_u64() > Some(0), "{v}");
            v
        }
        other => panic!("neither done nor failed cleanly: {other:?}"),
    }
}

fn same(c1: &Path, c2: &Path, pool: &str, img: &str) {
    assert_eq!(
        export(c2, &format!("{pool}/{img}@s1")),
        export(c1, &format!("rbd/{img}@s1")),
        "{pool}/{img} differs from its source"
    );
}

#[test]
fn a_paused_osd() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("paused");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The destination's OSD paused for about 10 s in the middle of the copy, longer than
    // the op time-out: the record's writes time out and are retried, the data writes wait
    // (librbd sets no time-out on them) and go on. Now and then librbd never answers them
    // after such a pause: then rbdcp fences that client, connects again and resumes.
    let (_, child) = copying(d, (&c1, &c2), &img, &img, "5");
    outage("c2", ("osd-pause", "osd-resume"), 10);
    let (code, v, err) = finish(child);
    assert_eq!(code, Some(0), "the copy completes: {err}");
    eprintln!("retries: {}, reconnects: {}", v["retries"], v["reconnects"]);
    assert!(v["retries"].as_u64().is_some(), "retries are counted: {v}");
    assert!(
        v["seconds"].as_f64() > Some(10.0),
        "the copy spanned the pause: {v}"
    );
    same(&c1, &c2, "rbd", &img);
}

#[test]
fn a_blocklisted_client() {
    let Some((c1, c2)) = clusters() else { return };
    let img = name("blocklisted");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The client blocklisted in the middle of a copy.
    let other = format!("{img}-b");
    let (_, child) = copying(d, (&c1, &c2), &img, &other, "3");
    let lease = lease(&c2, &other);
    let addr = lease["lockers"][0]["addr"]
        .as_str()
        .expect("the lease names its client")
        .to_owned();
    ceph(&c2, &["osd", "blocklist", "add", &addr]);
    let (code, v, err) = finish(child);
    ceph(&c2, &["osd", "blocklist", "rm", &addr]);
    // rbdcp connects again, breaks its old lease and resumes.
    eprintln!("{v}\n{err}");
    assert_eq!(code, Some(0), "the copy completes: {err}");
    assert!(v["reconnects"].as_u64() >= Some(1), "{v}");
    assert!(v["resumed_from"].as_u64() > Some(0), "{v}");
    // Seen here: right after such a rerun, `rbd export` of the new snapshot may fail for
    // a moment with ENOENT (while `rbd info` of it works); then it exports, identical.
    let seen = Instant::now();
    let got = loop {
        let out = std::process::Command::new("rbd")
            .arg("-c")
            .arg(&c2)
            .args(["export", "--no-progress", &format!("rbd/{other}@s1"), "-"])
            .output()
            .unwrap();
        if out.status.success() {
            break out.stdout;
        }
        assert!(seen.elapsed() < Duration::from_secs(30), "{out:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("exported after {:?}", seen.elapsed());
    assert!(
        got == export(&c1, &format!("rbd/{img}@s1")),
        "the copy differs"
    );
}

#[test]
fn a_killed_osd_and_a_full_pool() {
    let Some((c1, c3)) = cluster3() else { return };
    let img = name("osdkill");
    image(&c1, &img);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The destination's OSD (bluestore, so it keeps its data) killed and started again.
    let (args, child) = copying(d, (&c1, &c3), &img, &img, "3");
    outage("c3", ("osd-kill", "osd-start"), 2);
    let outcome = finish(child);
    completed(d, &args, outcome);
    same(&c1, &c3, "rbd", &img);

    // A pool whose quota is smaller than the copy: "pool full", then resumed once lifted.
    let pool = name("quota");
    ceph(
        &c3,
        &["osd", "pool", "create", &pool, "8", "8", "replicated"],
    );
    rbd(&c3, &["pool", "init", &pool]);
    let quota = (4 * M).to_string();
    ceph(
        &c3,
        &["osd", "pool", "set-quota", &pool, "max_bytes", &quota],
    );
    let mut args = vec![
        "copy".to_owned(),
        loc(&c1, &format!("rbd/{img}@s1")),
        loc(&c3, &format!("{pool}/{img}")),
    ];
    args.extend(slow("4M", "3"));
    let started = Instant::now();
    let (code, _, err) = finish(start(d, &args));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("pool full: rbd:{pool}/")), "{err}");
    assert!(err.contains("Disk quota exceeded"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    ceph(&c3, &["osd", "pool", "set-quota", &pool, "max_bytes", "0"]);
    let lifted = Instant::now();
    while ceph(&c3, &["osd", "pool", "ls", "detail"])
        .lines()
        .any(|l| l.contains(&format!("'{pool}'")) && l.contains("full"))
    {
        assert!(
            lifted.elapsed() < Duration::from_secs(60),
            "the pool stays full"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = util::ceph::json(&expect(rbdcp(d).args(&args), 0));
    assert!(v["resumed_from"].as_u64() > Some(0), "{v}");
    same(&c1, &c3, &pool, &img);
}
