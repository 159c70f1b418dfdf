//! Test-only fault points. With `RBDCP_FAULT` set to a comma-separated list of points, the
//! process kills itself with SIGKILL on reaching one of them, as a crash or the OOM killer
//! would: the fault tests use it to stop a job at an exact step of its end. Unset (as it is
//! outside those tests) a point costs one environment lookup.
//!
//! Points: `after-write` (the data is durable, nothing renamed), `rename-id` and
//! `rename-directory` (a staged RBD image's rename half done: its id object under the new
//! name written; then its directory entry moved too, the old id object still there),
//! `after-rename`,
//! `after-provenance` (the new snapshot's provenance record is written, the snapshot not
//! yet made), `after-snap` (the destination snapshot exists, the record not yet removed),
//! `checkpoint:N` (just after the N-th progress record was saved), and for a backup
//! `after-source-snap` (the source snapshot is made, nothing copied) and `retention`
//! (after each destination snapshot retention removed).

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that names the points.
pub const VAR: &str = "RBDCP_FAULT";

/// Kills the process if point `name` is named in [`VAR`].
pub fn point(name: &str) {
    if let Ok(points) = std::env::var(VAR) {
        if points.split(',').any(|p| p == name) {
            die(name);
        }
    }
}

/// Counts a checkpoint; kills the process if `checkpoint:N` is named for this count.
pub fn checkpoint() {
    static SAVED: AtomicU64 = AtomicU64::new(0);
    let n = SAVED.fetch_add(1, Ordering::Relaxed) + 1;
    if std::env::var_os(VAR).is_some() {
        point(&format!("checkpoint:{n}"));
    }
}

fn die(name: &str) {
    eprintln!("rbdcp: {VAR}: killed at {name}");
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::process::abort();
}
