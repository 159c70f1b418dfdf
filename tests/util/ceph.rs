//! Helpers for tests against the local Ceph clusters of `scripts/with-clusters.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const M: u64 = 1 << 20;

/// Whether the clusters were meant to be there: in CI, and under `with-clusters.sh`.
fn meant() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("RBDCP_CLUSTERS").is_ok_and(|v| v == "1")
}

/// The two clusters' conf files, or `None` (after saying why) outside `make test`.
pub fn clusters() -> Option<(PathBuf, PathBuf)> {
    match (
        std::env::var_os("RBDCP_CONF1"),
        std::env::var_os("RBDCP_CONF2"),
    ) {
        (Some(a), Some(b)) => Some((a.into(), b.into())),
        _ if meant() => {
            panic!(
                "CI=true or RBDCP_CLUSTERS=1 but RBDCP_CONF1/RBDCP_CONF2 are not set: run the suite with `make test`"
            )
        }
        _ => {
            eprintln!(
                "no Ceph clusters (RBDCP_CONF1/2 unset): run `make test` to test against real ones"
            );
            None
        }
    }
}

/// The third cluster's conf (bluestore, with a mgr: for OSD kills and pool quotas), with
/// the first one's, or `None` (after saying why) outside `make test` or with RBDCP_C3=0.
pub fn cluster3() -> Option<(PathBuf, PathBuf)> {
    let (c1, _) = clusters()?;
    match std::env::var_os("RBDCP_CONF3") {
        Some(c3) => Some((c1, c3.into())),
        None if meant() && std::env::var("RBDCP_C3").map_or(true, |v| v != "0") => {
            panic!("the clusters are up but RBDCP_CONF3 is not set: run the suite with `make test`")
        }
        None => {
            eprintln!("no third cluster (RBDCP_CONF3 unset; RBDCP_C3=0?)");
            None
        }
    }
}

/// The fourth cluster's conf (three bluestore OSDs and pool `ec`, erasure-coded with
/// overwrites allowed: an RBD data pool), with the first one's, or `None` (after saying
/// why) outside `make test` or with RBDCP_C4=0.
pub fn cluster4() -> Option<(PathBuf, PathBuf)> {
    let (c1, _) = clusters()?;
    match std::env::var_os("RBDCP_CONF4") {
        Some(c4) => Some((c1, c4.into())),
        None if meant() && std::env::var("RBDCP_C4").map_or(true, |v| v != "0") => {
            panic!("the clusters are up but RBDCP_CONF4 is not set: run the suite with `make test`")
        }
        None => {
            eprintln!("no fourth cluster (RBDCP_CONF4 unset; RBDCP_C4=0?)");
            None
        }
    }
}

/// Runs `cmd`, named `what` in the failure message; it must succeed. Returns its standard
/// output.
fn checked(mut cmd: Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `scripts/ceph-local.sh ARGS...` on the clusters of this run; it must succeed.
pub fn ceph_local(args: &[&str]) -> String {
    let mut cmd = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/ceph-local.sh"
    ));
    cmd.args(args);
    let out = checked(cmd, &format!("ceph-local.sh {args:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// `ceph -c CONF ARGS...` (bounded in time), which must succeed; returns its output.
pub fn ceph(conf: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg("ceph").arg("-c").arg(conf).args(args);
    let out = checked(cmd, &format!("ceph {args:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// A name no other test uses.
pub fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// `rbd -c CONF ARGS...`, which must succeed; returns its standard output.
pub fn rbd(conf: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new("rbd");
    cmd.arg("-c").arg(conf).args(args);
    checked(cmd, &format!("rbd {args:?}"))
}

/// rbdcp's lease on `rbd/image` (`rados lock info` of its lease object, as JSON): its
/// `lockers` are the clients holding it.
pub fn lease(conf: &Path, image: &str) -> Value {
    let out = Command::new("rados")
        .arg("-c")
        .arg(conf)
        .args([
            "-p",
            "rbd",
            "lock",
            "info",
            &format!("rbdcp.lock.{image}"),
            "rbdcp",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The bytes of `spec` (`pool/image[@snap]`), as `rbd export` writes them.
pub fn export(conf: &Path, spec: &str) -> Vec<u8> {
    rbd(conf, &["export", "--no-progress", spec, "-"])
}

/// Creates `rbd/image` with noise at `extents`, through `rbd import` of a sparse file.
pub fn create(conf: &Path, image: &str, size: u64, extents: &[(u64, usize)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("img");
    super::sparse_file(&file, size, extents);
    rbd(
        conf,
        &[
            "import",
            "--no-progress",
            file.to_str().unwrap(),
            &format!("rbd/{image}"),
        ],
    );
}

/// Creates `rbd/image` in objects of 1 MiB (so streams have records of at most 1 MiB),
/// with noise at `extents`, and snapshot `s1` of it.
pub fn create_1m_with_s1(conf: &Path, image: &str, size: u64, extents: &[(u64, usize)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("img");
    super::sparse_file(&file, size, extents);
    rbd(
        conf,
        &[
            "import",
            "--no-progress",
            "--object-size",
            "1M",
            file.to_str().unwrap(),
            &format!("rbd/{image}"),
        ],
    );
    rbd(conf, &["snap", "create", &format!("rbd/{image}@s1")]);
}

/// Overwrites `len` bytes at `offset` of `rbd/image` with noise: `rbd import-diff` of a
/// one-record v1 diff (the stock tool, so the test does not check rbdcp with itself).
pub fn write(conf: &Path, image: &str, offset: u64, len: usize, seed: u64) {
    record(
        conf,
        image,
        b'w',
        offset,
        len as u64,
        &super::noise(seed, len),
    );
}

/// Zeroes (discards) `len` bytes at `offset` of `rbd/image`.
pub fn zero(conf: &Path, image: &str, offset: u64, len: u64) {
    record(conf, image, b'z', offset, len, &[]);
}

pub fn record(conf: &Path, image: &str, tag: u8, offset: u64, len: u64, data: &[u8]) {
    let info: Value = serde_json::from_slice(&rbd(
        conf,
        &["info", "--format", "json", &format!("rbd/{image}")],
    ))
    .unwrap();
    let size = info["size"].as_u64().unwrap();
    let mut diff = b"rbd diff v1\n".to_vec();
    diff.push(b's');
    diff.extend(size.to_le_bytes());
    diff.push(tag);
    diff.extend(offset.to_le_bytes());
    diff.extend(len.to_le_bytes());
    diff.extend(data);
    diff.push(b'e');
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diff");
    std::fs::write(&path, diff).unwrap();
    rbd(
        conf,
        &[
            "import-diff",
            "--no-progress",
            path.to_str().unwrap(),
            &format!("rbd/{image}"),
        ],
    );
}

/// Snapshots s1..s5 of `rbd/image`, with data written, overwritten and discarded between
/// them (the image holds at least 12 MiB); their names, oldest first.
pub fn five_snapshots(conf: &Path, image: &str) -> Vec<String> {
    let mut names = Vec::new();
    for i in 1..=5u64 {
        match i {
            1 => {}
            3 => zero(conf, image, 0, M),
            _ => write(conf, image, i * M + 4096, 300_000, i),
        }
        write(conf, image, (i * 2 + 1) * 512 * 1024, 100_000, 10 + i);
        let name = format!("s{i}");
        rbd(conf, &["snap", "create", &format!("rbd/{image}@{name}")]);
        names.push(name);
    }
    names
}

/// The protected snapshots of `rbd/image`, as `rbd snap ls` lists them.
pub fn protected(conf: &Path, image: &str) -> Vec<String> {
    let v: Value = serde_json::from_slice(&rbd(
        conf,
        &["snap", "ls", "--format", "json", &format!("rbd/{image}")],
    ))
    .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["protected"].as_str() == Some("true"))
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn loc(conf: &Path, spec: &str) -> String {
    format!("rbd:{spec}:conf={}", conf.display())
}

pub fn snaps(conf: &Path, image: &str) -> Vec<String> {
    let out = String::from_utf8(rbd(
        conf,
        &["snap", "ls", "--format", "json", &format!("rbd/{image}")],
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn images(conf: &Path) -> Vec<String> {
    String::from_utf8(rbd(conf, &["ls", "rbd"]))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}
