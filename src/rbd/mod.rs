//! Safe wrappers over librados and librbd: the only place besides `ffi/` with `unsafe`.
//!
//! One owning type per C handle, freed in `Drop`: [`Cluster`] (a `rados_t`), [`Pool`] (a
//! `rados_ioctx_t`, holding an `Arc` of its cluster) and [`Image`] (an `rbd_image_t`,
//! holding an `Arc` of its pool). Every negative return becomes an [`Error`] naming the
//! call and the image.

mod cluster;
mod image;
pub mod lease;

pub use cluster::{Access, Cluster, Pool};
pub use image::{AllSnaps, CreateOptions, Header, Image, Parent, Snap, Stat};
pub use lease::{Holder, Lease};

use std::ffi::CString;

use librbd_sys as sys;
use std::io;

use crate::error::{Error, Result};

/// Turns a negative librbd/librados return into an error naming the call and the image.
fn check(ret: i64, op: &'static str, image: &str) -> Result<u64> {
    if ret < 0 {
        Err(full(ret, image).unwrap_or_else(|| Error::open(op, image, errno(ret))))
    } else {
        Ok(ret as u64)
    }
}

/// The error of a write at `offset` that returned `ret`.
fn io_error(ret: i64, op: &'static str, image: &str, offset: u64) -> Error {
    full(ret, image).unwrap_or_else(|| Error::io(op, image, offset, errno(ret)))
}

/// [`Error::PoolFull`] for EDQUOT (the pool's quota) and ENOSPC (the cluster): with the
/// pool's full-try flag set, the OSDs answer those instead of holding writes back.
fn full(ret: i64, image: &str) -> Option<Error> {
    let e = -ret as i32;
    (e == libc::EDQUOT || e == libc::ENOSPC).then(|| Error::PoolFull {
        image: image.to_owned(),
        err: io::Error::from_raw_os_error(e),
    })
}

/// The `io::Error` of a negative errno return.
fn errno(ret: i64) -> io::Error {
    io::Error::from_raw_os_error(ret.unsigned_abs().min(i32::MAX as u64) as i32)
}

/// The versions of the librbd and librados this process runs against, as
/// `MAJOR.MINOR.EXTRA` each.
pub fn versions() -> (String, String) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: the three pointers are valid for writes for the call.
    unsafe { sys::rbd_version(&mut a, &mut b, &mut c) };
    let rbd = format!("{a}.{b}.{c}");
    // SAFETY: as above.
    unsafe { ceph::rados::rados_version(&mut a, &mut b, &mut c) };
    (rbd, format!("{a}.{b}.{c}"))
}

/// A C string of a name; a name with a NUL byte cannot exist in Ceph.
fn cstr(text: &str, what: &str) -> Result<CString> {
    CString::new(text)
        .map_err(|_| Error::Unsupported(format!("{what} {text:?} contains a NUL byte")))
}
