//! Helpers shared by the integration tests: run the built binary, make sparse images.
#![allow(dead_code)]

pub mod ceph;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output};

/// The built `rbdcp` binary, run in `dir`.
pub fn rbdcp(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbdcp"));
    cmd.current_dir(dir);
    cmd
}

/// Runs `cmd` and checks its exit code, showing its output when it is not `code`.
pub fn expect(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().expect("rbdcp runs");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies `src` to the file `dst` through the library, with the default options.
pub fn copy_to_file(
    src: &dyn rbdcp::ImageSource,
    dst: &Path,
    overwrite: bool,
) -> rbdcp::Result<rbdcp::engine::Report> {
    use rbdcp::backend::{file::FileSink, SinkOptions};
    use rbdcp::engine::{copy, Options, Silent, Throttle};
    let sink = FileSink::create(
        dst,
        &SinkOptions {
            overwrite,
            ..SinkOptions::default()
        },
    )?;
    copy(
        src,
        &sink,
        &Options::default(),
        &Throttle::new(Default::default()),
        &Silent,
    )
}

/// Deterministic, incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A sparse file of `size` bytes with noise at each `(offset, len)`.
pub fn sparse_file(path: &Path, size: u64, extents: &[(u64, usize)]) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(offset, len)) in extents.iter().enumerate() {
        f.write_all_at(&noise(i as u64 + 1, len), offset).unwrap();
    }
}

/// Writes `data` at `offset` into an existing file.
pub fn put(path: &Path, offset: u64, data: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(data, offset)
        .unwrap();
}

/// Bytes the file occupies on disk.
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Whether two files hold the same bytes (read in 1 MiB steps, holes included).
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (la, lb) = (fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    if la != lb {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0;
    while off < la {
        let n = (la - off).min(1 << 20) as usize;
        fa.read_exact_at(&mut ba[..n], off).unwrap();
        fb.read_exact_at(&mut bb[..n], off).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
        off += n as u64;
    }
    true
}
