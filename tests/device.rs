//! A block device as the destination, through a loop device: written in place, holes zeroed.
//!
//! Needs root and loop devices (`losetup`). Without them the test says so and passes
//! locally; under CI (`CI=true`) it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbdcp::backend::file::FileSource;
use rbdcp::Error;

mod util;

const M: u64 = 1 << 20;

/// A loop device over a file, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                Some(Loop(String::from_utf8(out.stdout).unwrap().trim().into()))
            }
            other if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but no loop device could be attached: {other:?}")
            }
            other => {
                eprintln!("no loop device (needs root and losetup): {other:?}");
                None
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn run(src: &Path, dst: &Path, overwrite: bool) -> rbdcp::Result<rbdcp::engine::Report> {
    util::copy_to_file(&FileSource::open(src)?, dst, overwrite)
}

#[test]
fn a_device_is_written_in_place_with_the_holes_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0xAB; 64 * M as usize]).unwrap();
    let Some(dev) = Loop::attach(&backing) else {
        return;
    };
    let src = dir.path().join("src.img");
    util::sparse_file(&src, 48 * M, &[(M, 3 * M as usize), (40 * M + 4096, 5000)]);

    let err = run(&src, &dev.0, false).unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");

    let report = run(&src, &dev.0, true).unwrap();
    assert_eq!(
        report.bytes_read + report.bytes_zero,
        48 * M,
        "holes are zeroed on a device"
    );
    let mut got = vec![0u8; 48 * M as usize];
    use std::os::unix::fs::FileExt;
    std::fs::File::open(&dev.0)
        .unwrap()
        .read_exact_at(&mut got, 0)
        .unwrap();
    assert!(
        got == std::fs::read(&src).unwrap(),
        "the device does not hold the source"
    );
    // Past the source's size the device keeps what it had.
    let mut tail = vec![0u8; 4096];
    std::fs::File::open(&dev.0)
        .unwrap()
        .read_exact_at(&mut tail, 60 * M)
        .unwrap();
    assert!(tail.iter().all(|&b| b == 0xAB));

    let big = dir.path().join("big.img");
    util::sparse_file(&big, 128 * M, &[(0, 4096)]);
    let err = run(&big, &dev.0, true).unwrap_err();
    assert!(
        matches!(err, Error::TooSmall { have, need, .. } if have == 64 * M && need == 128 * M),
        "{err}"
    );
}
