//! An open RBD image (`rbd_image_t`): I/O, size, snapshots and diff iteration.

use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use librbd_sys as sys;

use super::{check, cstr, io_error, Pool};
use crate::error::{Error, Result};

/// Read flags: bulk, sequential, not worth caching (as `rbd export` reads).
const READ_FLAGS: c_int =
    sys::LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL | sys::LIBRADOS_OP_FLAG_FADVISE_NOCACHE;
/// Write flags: not read back soon (as `rbd cp` writes).
const WRITE_FLAGS: c_int = sys::LIBRADOS_OP_FLAG_FADVISE_DONTNEED;
/// Returned from the diff callback to stop librbd after a panic (-ECANCELED).
const STOP: c_int = -125;

/// The shape of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Object size in bytes.
    pub object_size: u64,
    /// `RBD_FEATURE_*` bits.
    pub features: u64,
    /// `RBD_FLAG_*` bits.
    pub flags: u64,
    /// Stripe unit in bytes.
    pub stripe_unit: u64,
    /// Stripe count.
    pub stripe_count: u64,
}

impl Stat {
    /// Whether each object is one range of the image (no fancy striping).
    pub fn plain(&self) -> bool {
        self.stripe_count <= 1 || self.stripe_unit == self.object_size
    }

    /// Whether fast-diff is on and its map is valid, so whole-object diffs are cheap and right.
    pub fn fast_diff(&self) -> bool {
        self.features & sys::RBD_FEATURE_FAST_DIFF != 0
            && self.flags & (sys::RBD_FLAG_FAST_DIFF_INVALID | sys::RBD_FLAG_OBJECT_MAP_INVALID)
                == 0
    }
}

/// How to create an image; `None` leaves a value to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Object size as a power of two.
    pub order: Option<u64>,
    /// `RBD_FEATURE_*` bits.
    pub features: Option<u64>,
    /// Stripe unit and count.
    pub stripe: Option<(u64, u64)>,
    /// The pool that holds the data objects (the image's pool holds its header), as
    /// `rbd create --data-pool` sets it: an erasure-coded pool at most sites.
    pub data_pool: Option<String>,
}

impl CreateOptions {
    /// The librbd options of a new image (format 2) shaped as `self` says.
    fn options(&self, label: &str) -> Result<Options> {
        let o = Options::new();
        o.set(sys::RBD_IMAGE_OPTION_FORMAT, 2, label)?;
        if let Some(order) = self.order {
            o.set(sys::RBD_IMAGE_OPTION_ORDER, order, label)?;
        }
        if let Some(features) = self.features {
            o.set(sys::RBD_IMAGE_OPTION_FEATURES, features, label)?;
        }
        if let Some((unit, count)) = self.stripe {
            o.set(sys::RBD_IMAGE_OPTION_STRIPE_UNIT, unit, label)?;
            o.set(sys::RBD_IMAGE_OPTION_STRIPE_COUNT, count, label)?;
        }
        if let Some(pool) = &self.data_pool {
            o.set_str(sys::RBD_IMAGE_OPTION_DATA_POOL, pool, label)?;
        }
        Ok(o)
    }
}

/// An open image, closed on drop. Holds its pool (and so its cluster) alive.
#[derive(Debug)]
pub struct Image {
    handle: sys::rbd_image_t,
    name: String,
    pool: Arc<Pool>,
}

// SAFETY: librbd's image handle may be used from many threads at once: ImageCtx guards its
// state with its own locks, and QEMU issues I/O on one handle from all its I/O threads.
unsafe impl Send for Image {}
// SAFETY: as for Send.
unsafe impl Sync for Image {}

/// Options for creating an image, destroyed on drop.
struct Options(sys::rbd_image_options_t);

impl Options {
    fn new() -> Options {
        let mut opts = ptr::null_mut();
        // SAFETY: opts is a valid out-pointer.
        unsafe { sys::rbd_image_options_create(&mut opts) };
        Options(opts)
    }

    fn set(&self, option: c_int, value: u64, image: &str) -> Result<()> {
        // SAFETY: self.0 came from rbd_image_options_create and is alive.
        let ret = unsafe { sys::rbd_image_options_set_uint64(self.0, option, value) };
        check(ret.into(), "rbd_image_options_set_uint64", image).map(drop)
    }

    fn set_str(&self, option: c_int, value: &str, image: &str) -> Result<()> {
        let v = cstr(value, "option")?;
        // SAFETY: self.0 came from rbd_image_options_create and is alive; librbd copies v.
        let ret = unsafe { sys::rbd_image_options_set_string(self.0, option, v.as_ptr()) };
        check(ret.into(), "rbd_image_options_set_string", image).map(drop)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: self.0 came from rbd_image_options_create and is freed once, here.
        unsafe { sys::rbd_image_options_destroy(self.0) }
    }
}

impl Image {
    /// Opens `image` read-only, at `snap` if given (needs only read caps). `label` names it in errors.
    pub fn open_read_only(
        pool: &Arc<Pool>,
        image: &str,
        snap: Option<&str>,
        label: &str,
    ) -> Result<Image> {
        Image::open_with(pool, image, snap, label, true)
    }

    /// Opens `image` for writing at its head.
    pub fn open(pool: &Arc<Pool>, image: &str, label: &str) -> Result<Image> {
        Image::open_with(pool, image, None, label, false)
    }

    fn open_with(
        pool: &Arc<Pool>,
        image: &str,
        snap: Option<&str>,
        label: &str,
        read_only: bool,
    ) -> Result<Image> {
        let name = cstr(image, "image name")?;
        let snap = snap.map(|s| cstr(s, "snapshot name")).transpose()?;
        let snap_ptr = snap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut handle = ptr::null_mut();
        // SAFETY: the ioctx is alive (we hold its Arc); handle is a valid out-pointer; the
        // strings outlive the call.
        let ret = unsafe {
            if read_only {
                sys::rbd_open_read_only(pool.raw(), name.as_ptr(), &mut handle, snap_ptr)
            } else {
                sys::rbd_open(pool.raw(), name.as_ptr(), &mut handle, snap_ptr)
            }
        };
        check(
            ret.into(),
            if read_only {
                "rbd_open_read_only"
            } else {
                "rbd_open"
            },
            label,
        )?;
        Ok(Image {
            handle,
            name: label.to_owned(),
            pool: Arc::clone(pool),
        })
    }

    /// Creates `image` of `size` bytes.
    pub fn create(
        pool: &Arc<Pool>,
        image: &str,
        size: u64,
        opts: &CreateOptions,
        label: &str,
    ) -> Result<()> {
        let name = cstr(image, "image name")?;
        let o = opts.options(label)?;
        // SAFETY: the ioctx is alive; name and the options outlive the call.
        let ret = unsafe { sys::rbd_create4(pool.raw(), name.as_ptr(), size, o.0) };
        check(ret.into(), "rbd_create4", label).map(drop)
    }

    /// Creates `image` in `pool` as a clone of `parent`'s snapshot `snap` (in
    /// `parent_pool`, of the same cluster), shaped as `opts` says. An unprotected snapshot
    /// gets a clone of format 2, which needs no protection.
    pub fn clone_of(
        (parent_pool, parent, snap): (&Arc<Pool>, &str, &str),
        pool: &Arc<Pool>,
        image: &str,
        opts: &CreateOptions,
        label: &str,
    ) -> Result<()> {
        let (p, s, name) = (
            cstr(parent, "image name")?,
            cstr(snap, "snapshot name")?,
            cstr(image, "image name")?,
        );
        let o = opts.options(label)?;
        let held = Image::open_read_only(parent_pool, parent, Some(snap), label)?;
        if !held.snap_protected(snap)? {
            o.set(sys::RBD_IMAGE_OPTION_CLONE_FORMAT, 2, label)?;
        }
        drop(held);
        // SAFETY: both ioctxs are alive; the names and the options outlive the call.
        let ret = unsafe {
            sys::rbd_clone3(
                parent_pool.raw(),
                p.as_ptr(),
                s.as_ptr(),
                pool.raw(),
                name.as_ptr(),
                o.0,
            )
        };
        check(ret.into(), "rbd_clone3", label).map(drop)
    }

    /// The names of the images in `pool` (not those in its trash).
    pub fn list(pool: &Arc<Pool>, label: &str) -> Result<Vec<String>> {
        let mut max: usize = 64;
        loop {
            let mut specs = vec![
                sys::rbd_image_spec_t {
                    id: ptr::null_mut(),
                    name: ptr::null_mut(),
                };
                max
            ];
            // SAFETY: specs holds max entries; librbd fills at most max and says how many.
            let ret = unsafe { sys::rbd_list2(pool.raw(), specs.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue; // max now holds the count needed
            }
            check(ret.into(), "rbd_list2", label)?;
            let name = |s: &sys::rbd_image_spec_t| {
                // SAFETY: librbd set each name to a NUL-terminated string it owns until
                // rbd_image_spec_list_cleanup, which runs below, after the copy.
                let name = unsafe { CStr::from_ptr(s.name) };
                name.to_string_lossy().into_owned()
            };
            let names = specs[..max].iter().map(name).collect();
            // SAFETY: the first max entries were filled by rbd_list2 and are freed once.
            unsafe { sys::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), max) };
            return Ok(names);
        }
    }

    /// Removes `image`; it must have no snapshots and not be open.
    pub fn remove(pool: &Arc<Pool>, image: &str, label: &str) -> Result<()> {
        let name = cstr(image, "image name")?;
        // SAFETY: the ioctx is alive; name outlives the call.
        let ret = unsafe { sys::rbd_remove(pool.raw(), name.as_ptr()) };
        check(ret.into(), "rbd_remove", label).map(drop)
    }

    /// Renames `from` to `to` within the pool.
    pub fn rename(pool: &Arc<Pool>, from: &str, to: &str, label: &str) -> Result<()> {
        let (f, t) = (cstr(from, "image name")?, cstr(to, "image name")?);
        // SAFETY: the ioctx is alive; both names outlive the call.
        let ret = unsafe { sys::rbd_rename(pool.raw(), f.as_ptr(), t.as_ptr()) };
        check(ret.into(), "rbd_rename", label).map(drop)
    }

    /// The pool it is open in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Renames this image, open under `from`, to `to` in its pool, as librbd's rename
    /// does it (the id object under the new name, the directory entry, the old id object
    /// removed), but with this handle: `rbd_rename` opens the image again and re-registers
    /// and notifies its watch, a dozen round trips (225 ms of a copy 5 ms away, against 30
    /// for these three). Running it again after a kill between the steps finishes it; a
    /// `to` that names another image is [`Error::Exists`].
    pub fn rename_to(&self, from: &str, to: &str) -> Result<()> {
        let id = self.id()?;
        let content = encoded(&id);
        let (src, dst) = (
            cstr(&format!("rbd_id.{from}"), "object name")?,
            cstr(&format!("rbd_id.{to}"), "object name")?,
        );
        let exists = || Error::Exists {
            image: self.name.clone(),
        };
        let io = self.pool.raw().cast::<c_void>();
        // SAFETY: rados_create_write_op returns a new op, freed below; the ioctx is open
        // while the image holds its pool; the name and the bytes outlive the call.
        let ret = unsafe {
            let op = sys::rados_create_write_op();
            sys::rados_write_op_create(op, sys::LIBRADOS_CREATE_EXCLUSIVE, ptr::null());
            sys::rados_write_op_write_full(op, content.as_ptr().cast(), content.len());
            let ret = sys::rados_write_op_operate(op, io, dst.as_ptr(), ptr::null_mut(), 0);
            sys::rados_release_write_op(op);
            ret
        };
        if ret == -libc::EEXIST && self.read_object(&dst)? != content {
            return Err(exists());
        } else if ret != -libc::EEXIST {
            check(ret.into(), "rename: write id object", &self.name)?;
        }
        crate::fault::point("rename-id");
        let mut input = encoded(from);
        input.extend(encoded(to));
        input.extend(encoded(&id));
        match self.exec(c"rbd_directory", c"dir_rename_image", &input, "rename") {
            // A killed run renamed the entry already (ENOENT: no `from`), or `to` is taken
            // (EEXIST): the directory's entry for `to` tells which.
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::EEXIST)) => {
                let named = self.exec_out(c"rbd_directory", c"dir_get_id", &encoded(to))?;
                if named != content {
                    return Err(exists());
                }
            }
            other => other?,
        }
        crate::fault::point("rename-directory");
        // SAFETY: the ioctx is open; the name outlives the call. As librbd does, a failure
        // to remove the old id object leaves only a stale object: the directory has moved.
        unsafe { sys::rados_remove(io, src.as_ptr()) };
        Ok(())
    }

    /// The bytes of object `oid` in the image's pool (an id object: a few dozen bytes).
    fn read_object(&self, oid: &CStr) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: the ioctx is open; buf is valid for its length; oid outlives the call.
        let ret = unsafe {
            sys::rados_read(
                self.pool.raw().cast(),
                oid.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        buf.truncate(check(ret.into(), "rados_read", &self.name)? as usize);
        Ok(buf)
    }

    /// The image as named in errors.
    pub fn label(&self) -> &str {
        &self.name
    }

    /// Size, object size, features, flags and striping.
    pub fn stat(&self) -> Result<Stat> {
        // SAFETY: rbd_image_info_t is plain data; all zeroes is a valid value.
        let mut info: sys::rbd_image_info_t = unsafe { std::mem::zeroed() };
        let mut s = Stat::default();
        // SAFETY: the handle is open; every out-pointer is valid and sized for its value.
        let rets = unsafe {
            [
                (
                    "rbd_stat",
                    sys::rbd_stat(self.handle, &mut info, std::mem::size_of_val(&info)),
                ),
                (
                    "rbd_get_features",
                    sys::rbd_get_features(self.handle, &mut s.features),
                ),
                (
                    "rbd_get_flags",
                    sys::rbd_get_flags(self.handle, &mut s.flags),
                ),
                (
                    "rbd_get_stripe_unit",
                    sys::rbd_get_stripe_unit(self.handle, &mut s.stripe_unit),
                ),
                (
                    "rbd_get_stripe_count",
                    sys::rbd_get_stripe_count(self.handle, &mut s.stripe_count),
                ),
            ]
        };
        for (op, ret) in rets {
            check(ret.into(), op, &self.name)?;
        }
        s.size = info.size;
        s.object_size = info.obj_size;
        Ok(s)
    }

    /// Fills `buf` from `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        // SAFETY: the handle is open; buf is valid for buf.len() bytes for the whole call.
        let ret = unsafe {
            sys::rbd_read2(
                self.handle,
                offset,
                buf.len(),
                buf.as_mut_ptr().cast::<c_char>(),
                READ_FLAGS,
            )
        };
        self.done(ret as i64, "read", offset, buf.len())
    }

    /// Writes `data` at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        // SAFETY: the handle is open; data is valid for data.len() bytes for the whole call.
        let ret = unsafe {
            sys::rbd_write2(
                self.handle,
                offset,
                data.len(),
                data.as_ptr().cast::<c_char>(),
                WRITE_FLAGS,
            )
        };
        self.done(ret as i64, "write", offset, data.len())
    }

    /// Makes `len` bytes at `offset` read as zeroes (whole objects are removed).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let len = usize::try_from(len).expect("chunks fit in memory");
        // SAFETY: the handle is open; no buffer is passed.
        let ret = unsafe { sys::rbd_write_zeroes(self.handle, offset, len, 0, WRITE_FLAGS) };
        self.done(ret as i64, "write zeroes", offset, len)
    }

    /// Discards `len` bytes at `offset`. Beware: librbd may skip the unaligned parts of a
    /// partial-object discard (`rbd_skip_partial_discard`), leaving old data there; zero with
    /// [`Image::write_zeroes`] when the range must read as zeroes.
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        // SAFETY: the handle is open; no buffer is passed.
        let ret = unsafe { sys::rbd_discard(self.handle, offset, len) };
        check(ret.into(), "rbd_discard", &self.name).map(drop)
    }

    /// Starts writing `data` at `offset` and returns at once; `done` gets the result and
    /// `data` back, on a librbd thread, once the write has landed. With zero-copy writes on
    /// (see [`super::Cluster`]) librbd sends `data` itself, without copying it, so
    /// a few threads keep many writes in flight.
    pub fn write_async<B, F>(&self, offset: u64, data: B, done: F)
    where
        B: AsRef<[u8]> + Send + 'static,
        F: FnOnce(Result<()>, B) + Send + 'static,
    {
        let len = data.as_ref().len();
        let request = Box::new(Request {
            op: "write",
            image: self.name.clone(),
            offset,
            want: None,
            data,
            done,
        });
        let ptr = request.data.as_ref().as_ptr();
        self.start(request, |c| {
            // SAFETY: the handle is open; ptr points into the request's data, which the
            // completion owns and frees only after librbd calls back, when librbd holds
            // no reference to it any more (UserBufferDeleter delays the callback until then).
            unsafe { sys::rbd_aio_write2(self.handle, offset, len, ptr.cast(), c, WRITE_FLAGS) }
        });
    }

    /// Starts reading `len` bytes at `offset` into `buf` (what it held is dropped, its room
    /// reused) and returns at once; `done` gets the result and the buffer, `len` bytes long
    /// after a success, on a librbd thread. The bytes are not zeroed first: librbd fills
    /// all of them or fails.
    pub fn read_async<F>(&self, offset: u64, len: usize, mut buf: Vec<u8>, done: F)
    where
        F: FnOnce(Result<()>, Vec<u8>) + Send + 'static,
    {
        buf.clear();
        buf.reserve_exact(len);
        let ptr = buf.as_mut_ptr();
        let request = Box::new(Request {
            op: "read",
            image: self.name.clone(),
            offset,
            want: Some(len),
            data: buf,
            done: move |result: Result<()>, mut buf: Vec<u8>| {
                if result.is_ok() {
                    // SAFETY: the read succeeded with `len` bytes (Request::finish checks
                    // the count), which librbd wrote into the first `len` bytes of the
                    // room reserved above.
                    unsafe { buf.set_len(len) };
                }
                done(result, buf);
            },
        });
        self.start(request, |c| {
            // SAFETY: the handle is open; ptr points to `len` bytes of room in the request's
            // buffer, which the completion owns and frees only after librbd called back,
            // when librbd no longer writes to it. A Vec's bytes do not move with the Vec.
            unsafe { sys::rbd_aio_read2(self.handle, offset, len, ptr.cast(), c, READ_FLAGS) }
        });
    }

    /// Starts zeroing `len` bytes at `offset`; `done` gets the result, as for
    /// [`Image::write_async`].
    pub fn zero_async<F>(&self, offset: u64, len: u64, done: F)
    where
        F: FnOnce(Result<()>) + Send + 'static,
    {
        let len = usize::try_from(len).expect("chunks fit in memory");
        let request = Box::new(Request {
            op: "write zeroes",
            image: self.name.clone(),
            offset,
            want: None,
            data: (),
            done: move |r, ()| done(r),
        });
        self.start(request, |c| {
            // SAFETY: the handle is open; no buffer is passed.
            unsafe { sys::rbd_aio_write_zeroes(self.handle, offset, len, c, 0, WRITE_FLAGS) }
        });
    }

    /// Gives `request` to a new completion and submits it with `submit`; if either fails,
    /// `done` is called here with the error.
    fn start<B, F>(
        &self,
        request: Box<Request<B, F>>,
        submit: impl FnOnce(sys::rbd_completion_t) -> c_int,
    ) where
        B: Send + 'static,
        F: FnOnce(Result<()>, B) + Send + 'static,
    {
        let arg = Box::into_raw(request);
        let mut c = ptr::null_mut();
        // SAFETY: c is a valid out-pointer; the callback is a plain fn that never unwinds
        // into C; arg stays valid until the callback takes it back.
        let mut ret =
            unsafe { sys::rbd_aio_create_completion(arg.cast(), Some(completed::<B, F>), &mut c) };
        if ret == 0 {
            ret = submit(c);
            if ret < 0 {
                // SAFETY: the submission failed, so librbd never calls back on c.
                unsafe { sys::rbd_aio_release(c) };
            }
        }
        if ret < 0 {
            // SAFETY: no callback will run for this request, so this is its only owner.
            let request = unsafe { Box::from_raw(arg) };
            request.finish(ret.into());
        }
    }

    fn done(&self, ret: i64, op: &'static str, offset: u64, len: usize) -> Result<()> {
        match ret {
            r if r < 0 => Err(io_error(r, op, &self.name, offset)),
            r if r as usize != len => Err(Error::io(
                op,
                &self.name,
                offset,
                io::ErrorKind::UnexpectedEof.into(),
            )),
            _ => Ok(()),
        }
    }

    /// Waits until every write is on the OSDs.
    pub fn flush(&self) -> Result<()> {
        // SAFETY: the handle is open.
        let ret = unsafe { sys::rbd_flush(self.handle) };
        check(ret.into(), "rbd_flush", &self.name).map(drop)
    }

    /// Changes the size (growing or shrinking).
    pub fn resize(&self, size: u64) -> Result<()> {
        // SAFETY: the handle is open.
        let ret = unsafe { sys::rbd_resize(self.handle, size) };
        check(ret.into(), "rbd_resize", &self.name).map(drop)
    }

    /// Creates snapshot `snap` of the head, without asking the image's other users to
    /// quiesce first: a destination rbdcp writes has no others (and the quiesce notify and
    /// its answers are two round trips of the cluster's watchers).
    pub fn snap_create(&self, snap: &str) -> Result<()> {
        let s = cstr(snap, "snapshot name")?;
        // SAFETY: the handle is open; s outlives the call; no progress callback is given,
        // so the null data pointer is never used.
        let ret = unsafe {
            sys::rbd_snap_create2(
                self.handle,
                s.as_ptr(),
                sys::RBD_SNAP_CREATE_SKIP_QUIESCE,
                None,
                std::ptr::null_mut(),
            )
        };
        check(ret.into(), "rbd_snap_create2", &self.name).map(drop)
    }

    /// Whether snapshot `snap` exists.
    pub fn snap_exists(&self, snap: &str) -> Result<bool> {
        let s = cstr(snap, "snapshot name")?;
        let mut exists = false;
        // SAFETY: the handle is open; s outlives the call; exists is a valid out-pointer.
        let ret = unsafe { sys::rbd_snap_exists(self.handle, s.as_ptr(), &mut exists) };
        check(ret.into(), "rbd_snap_exists", &self.name)?;
        Ok(exists)
    }

    /// The image's id, which stays the same across renames.
    pub fn id(&self) -> Result<String> {
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: the handle is open; buf is valid for buf.len() bytes.
            let ret = unsafe { sys::rbd_get_id(self.handle, buf.as_mut_ptr().cast(), buf.len()) };
            if ret == -libc::ERANGE && buf.len() < 4096 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            check(ret.into(), "rbd_get_id", &self.name)?;
            return Ok(c_string(&buf));
        }
    }

    /// The id of snapshot `snap`.
    pub fn snap_id(&self, snap: &str) -> Result<u64> {
        let s = cstr(snap, "snapshot name")?;
        let mut id = 0;
        // SAFETY: the handle is open; s outlives the call; id is a valid out-pointer.
        let ret = unsafe { sys::rbd_snap_get_id(self.handle, s.as_ptr(), &mut id) };
        match ret {
            r if r == -libc::ENOENT => Err(Error::NoSnap {
                image: self.name.clone(),
                snap: snap.to_owned(),
            }),
            r => check(r.into(), "rbd_snap_get_id", &self.name).map(|_| id),
        }
    }

    /// The parent of a clone (at the snapshot the image is open at), `None` for an image
    /// that is not one (or no longer: flattened).
    pub fn parent(&self) -> Result<Option<Parent>> {
        // SAFETY: both specs are plain data (pointers and numbers); zeroes are valid.
        let (mut image, mut snap): (sys::rbd_linked_image_spec_t, sys::rbd_snap_spec_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: the handle is open; librbd fills both specs, allocating their strings.
        let ret = unsafe { sys::rbd_get_parent(self.handle, &mut image, &mut snap) };
        if ret == -libc::ENOENT {
            return Ok(None);
        }
        check(ret.into(), "rbd_get_parent", &self.name)?;
        let text = |p: *mut c_char| {
            // SAFETY: librbd set p to null or a NUL-terminated string, freed below after
            // this copy.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        };
        let parent = Parent {
            pool_id: image.pool_id,
            pool: text(image.pool_name).unwrap_or_default(),
            namespace: text(image.pool_namespace).unwrap_or_default(),
            image_id: text(image.image_id).unwrap_or_default(),
            image: text(image.image_name).unwrap_or_default(),
            snap_id: snap.id,
            snap: text(snap.name).unwrap_or_default(),
            overlap: 0,
        };
        // SAFETY: both specs were filled by rbd_get_parent and are freed once, here.
        unsafe {
            sys::rbd_linked_image_spec_cleanup(&mut image);
            sys::rbd_snap_spec_cleanup(&mut snap);
        }
        let mut overlap = 0;
        // SAFETY: the handle is open; overlap is a valid out-pointer.
        let ret = unsafe { sys::rbd_get_overlap(self.handle, &mut overlap) };
        check(ret.into(), "rbd_get_overlap", &self.name)?;
        Ok(Some(Parent { overlap, ..parent }))
    }

    /// The owners of the image's managed (exclusive) lock, by client address.
    pub fn lock_owners(&self) -> Result<Vec<String>> {
        let mut room = 4;
        loop {
            let mut owners: Vec<*mut c_char> = vec![ptr::null_mut(); room];
            let (mut mode, mut n) = (sys::RBD_LOCK_MODE_EXCLUSIVE, room);
            // SAFETY: the handle is open; owners has room for n pointers, which librbd
            // fills with strings it allocates, freed below by the cleanup call.
            let ret = unsafe {
                sys::rbd_lock_get_owners(self.handle, &mut mode, owners.as_mut_ptr(), &mut n)
            };
            match ret {
                // No owner, or no exclusive-lock feature.
                r if r == -libc::ENOENT || r == -libc::EINVAL => return Ok(Vec::new()),
                r if r == -libc::ERANGE && n > room => room = n,
                r => {
                    check(r.into(), "rbd_lock_get_owners", &self.name)?;
                    let names = owners[..n]
                        .iter()
                        // SAFETY: librbd set the first n entries to NUL-terminated strings.
                        .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                        .collect();
                    // SAFETY: the n strings came from rbd_lock_get_owners and are freed once.
                    unsafe { sys::rbd_lock_get_owners_cleanup(owners.as_mut_ptr(), n) };
                    return Ok(names);
                }
            }
        }
    }

    /// Breaks `owner`'s exclusive lock (librbd blocklists the owner first): for an owner
    /// known to be dead, whose lock would otherwise hold writers back until its watch
    /// times out (30 s).
    pub fn lock_break(&self, owner: &str) -> Result<()> {
        let o = cstr(owner, "lock owner")?;
        // SAFETY: the handle is open; o outlives the call.
        let ret =
            unsafe { sys::rbd_lock_break(self.handle, sys::RBD_LOCK_MODE_EXCLUSIVE, o.as_ptr()) };
        match ret {
            r if r == -libc::ENOENT => Ok(()),
            r => check(r.into(), "rbd_lock_break", &self.name).map(drop),
        }
    }

    /// The value of image-meta `key`, or `None` when it is not set (read as
    /// [`Header::get`] reads it).
    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.header()?.get(key)
    }

    /// Sets image-meta `key` to `value` (one atomic update of the image header).
    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (cstr(key, "metadata key")?, cstr(value, "metadata value")?);
        // SAFETY: the handle is open; both strings outlive the call.
        let ret = unsafe { sys::rbd_metadata_set(self.handle, k.as_ptr(), v.as_ptr()) };
        check(ret.into(), "rbd_metadata_set", &self.name).map(drop)
    }

    /// Removes image-meta `key`; a key that is not set is no error.
    pub fn meta_remove(&self, key: &str) -> Result<()> {
        let k = cstr(key, "metadata key")?;
        // SAFETY: the handle is open; k outlives the call.
        let ret = unsafe { sys::rbd_metadata_remove(self.handle, k.as_ptr()) };
        match ret {
            r if r == -libc::ENOENT => Ok(()),
            r => check(r.into(), "rbd_metadata_remove", &self.name).map(drop),
        }
    }

    /// Protects snapshot `snap` (from removal; clones need it).
    pub fn snap_protect(&self, snap: &str) -> Result<()> {
        let s = cstr(snap, "snapshot name")?;
        // SAFETY: the handle is open; s outlives the call.
        let ret = unsafe { sys::rbd_snap_protect(self.handle, s.as_ptr()) };
        match ret {
            r if r == -libc::EBUSY => Ok(()), // protected already
            r => check(r.into(), "rbd_snap_protect", &self.name).map(drop),
        }
    }

    /// Whether snapshot `snap` is protected.
    pub fn snap_protected(&self, snap: &str) -> Result<bool> {
        let s = cstr(snap, "snapshot name")?;
        let mut on: c_int = 0;
        // SAFETY: the handle is open; s outlives the call; on is a valid out-pointer.
        let ret = unsafe { sys::rbd_snap_is_protected(self.handle, s.as_ptr(), &mut on) };
        check(ret.into(), "rbd_snap_is_protected", &self.name)?;
        Ok(on != 0)
    }

    /// Removes snapshot `snap`.
    pub fn snap_remove(&self, snap: &str) -> Result<()> {
        let s = cstr(snap, "snapshot name")?;
        // SAFETY: the handle is open; s outlives the call.
        let ret = unsafe { sys::rbd_snap_remove(self.handle, s.as_ptr()) };
        check(ret.into(), "rbd_snap_remove", &self.name).map(drop)
    }

    /// The image-meta entries whose keys start with `prefix`, in key order.
    pub fn meta_list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut start = cstr(prefix, "metadata key")?;
        let mut out = Vec::new();
        loop {
            let (mut keys, mut vals) = (vec![0u8; 64 << 10], vec![0u8; 256 << 10]);
            let page = loop {
                let (mut klen, mut vlen) = (keys.len(), vals.len());
                // SAFETY: the handle is open; start outlives the call; both buffers are
                // valid for the lengths given, which are valid in/out-pointers.
                let ret = unsafe {
                    sys::rbd_metadata_list(
                        self.handle,
                        start.as_ptr(),
                        PAGE,
                        keys.as_mut_ptr().cast(),
                        &mut klen,
                        vals.as_mut_ptr().cast(),
                        &mut vlen,
                    )
                };
                if ret == -libc::ERANGE {
                    keys.resize(klen.max(keys.len()), 0);
                    vals.resize(vlen.max(vals.len()), 0);
                    continue;
                }
                check(ret.into(), "rbd_metadata_list", &self.name)?;
                let split = |b: &[u8], len: usize| -> Vec<String> {
                    b[..len.min(b.len())]
                        .split(|&c| c == 0)
                        .filter(|k| !k.is_empty())
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect()
                };
                break split(&keys, klen)
                    .into_iter()
                    .zip(split(&vals, vlen))
                    .collect::<Vec<_>>();
            };
            let full = page.len() as u64 == PAGE;
            let last = page.last().map(|(k, _)| k.clone());
            out.extend(page.into_iter().filter(|(k, _)| k.starts_with(prefix)));
            match last {
                // Keys sort, so once one is past the prefix, so are the rest.
                Some(k) if full && k.starts_with(prefix) => start = cstr(&k, "metadata key")?,
                _ => return Ok(out),
            }
        }
    }

    /// Sets image-meta `key` to `value` as [`Header::put_all`] does.
    pub fn meta_put(&self, key: &str, value: &str) -> Result<()> {
        self.header()?
            .put_all(&[(key.to_owned(), value.to_owned())])
    }

    /// Sets every `(key, value)` of `entries` as [`Header::put_all`] does.
    pub fn meta_put_all(&self, entries: &[(String, String)]) -> Result<()> {
        self.header()?.put_all(entries)
    }

    /// Removes image-meta `key` as [`Header::remove`] does.
    pub fn meta_drop(&self, key: &str) -> Result<()> {
        self.header()?.remove(key)
    }

    /// The image's header object, for rbdcp's own image-meta entries.
    pub fn header(&self) -> Result<Header> {
        Ok(Header {
            pool: Arc::clone(&self.pool),
            oid: cstr(&format!("rbd_header.{}", self.id()?), "header object")?,
            name: self.name.clone(),
        })
    }

    /// Runs method `method` of object class `rbd` on object `oid` of the image's pool.
    fn exec(&self, oid: &CStr, method: &CStr, input: &[u8], op: &'static str) -> Result<()> {
        call(&self.pool, oid, method, input, 64, op, &self.name).map(drop)
    }

    /// As [`Image::exec`], returning the method's output (at most 4 KiB).
    fn exec_out(&self, oid: &CStr, method: &CStr, input: &[u8]) -> Result<Vec<u8>> {
        call(
            &self.pool,
            oid,
            method,
            input,
            4096,
            "rados_exec",
            &self.name,
        )
    }

    /// Takes the image's exclusive lock now, and keeps it until the image is closed, instead
    /// of when the first write needs it; an image without the exclusive-lock feature has
    /// none to take.
    pub fn lock_acquire(&self) -> Result<()> {
        // SAFETY: the handle is open.
        let ret = unsafe { sys::rbd_lock_acquire(self.handle, sys::RBD_LOCK_MODE_EXCLUSIVE) };
        match ret {
            r if r == -libc::EINVAL => Ok(()),
            r => check(r.into(), "rbd_lock_acquire", &self.name).map(drop),
        }
    }

    /// The snapshots' names, oldest first.
    pub fn snap_list(&self) -> Result<Vec<String>> {
        Ok(self.snaps()?.into_iter().map(|s| s.name).collect())
    }

    /// The user snapshots (`rbd snap create`'s), oldest first.
    pub fn snaps(&self) -> Result<Vec<Snap>> {
        Ok(self.all_snaps()?.0)
    }

    /// The user snapshots, oldest first, and the others (in the trash while clones
    /// depend on them, owned by mirroring or by a group) with their namespace's name.
    pub fn all_snaps(&self) -> Result<AllSnaps> {
        let (mut user, mut other) = (Vec::new(), Vec::new());
        for snap in self.list_snaps()? {
            let mut kind: sys::rbd_snap_namespace_type_t = 0;
            // SAFETY: the handle is open; librbd writes one value into `kind`.
            let ret = unsafe { sys::rbd_snap_get_namespace_type(self.handle, snap.id, &mut kind) };
            check(ret.into(), "rbd_snap_get_namespace_type", &self.name)?;
            match kind {
                sys::RBD_SNAP_NAMESPACE_TYPE_USER => user.push(snap),
                sys::RBD_SNAP_NAMESPACE_TYPE_TRASH => other.push((snap, "trash")),
                sys::RBD_SNAP_NAMESPACE_TYPE_MIRROR => other.push((snap, "mirror")),
                sys::RBD_SNAP_NAMESPACE_TYPE_GROUP => other.push((snap, "group")),
                _ => other.push((snap, "unknown")),
            }
        }
        Ok((user, other))
    }

    /// Every snapshot `rbd_snap_list` gives, of every namespace, oldest first.
    fn list_snaps(&self) -> Result<Vec<Snap>> {
        let mut max: c_int = 16;
        loop {
            // SAFETY: rbd_snap_info_t is plain data; all zeroes is a valid value.
            let mut snaps: Vec<sys::rbd_snap_info_t> =
                vec![unsafe { std::mem::zeroed() }; max as usize];
            // SAFETY: snaps holds max entries; librbd fills at most max and says how many.
            let ret = unsafe { sys::rbd_snap_list(self.handle, snaps.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue; // ERANGE: max now holds the count needed
            }
            let n = check(ret.into(), "rbd_snap_list", &self.name)? as usize;
            let snap = |s: &sys::rbd_snap_info_t| {
                // SAFETY: librbd set each name to a NUL-terminated string it owns until
                // rbd_snap_list_end, which runs below, after the copy.
                let name = unsafe { CStr::from_ptr(s.name) };
                Snap {
                    id: s.id,
                    size: s.size,
                    name: name.to_string_lossy().into_owned(),
                }
            };
            let names = snaps[..n].iter().map(snap).collect();
            // SAFETY: the array was filled by rbd_snap_list and is released once.
            unsafe { sys::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(names);
        }
    }

    /// Calls `f(offset, len, exists)` for each extent in `offset..offset + len` that changed
    /// since `from` (or since creation), up to the snapshot the image is open at. Extents
    /// come in offset order; `exists == false` means the range now reads as zeroes. With
    /// `whole_object`, extents are whole objects (fast only with a valid fast-diff map).
    /// Without `parent`, a clone's extents are only those it holds itself (when `from` is
    /// `None`; a diff between snapshots never reaches the parent). Calls on one image may
    /// run from several threads at once.
    pub fn diff(
        &self,
        from: Option<&str>,
        (offset, len): (u64, u64),
        (whole_object, parent): (bool, bool),
        mut f: impl FnMut(u64, u64, bool),
    ) -> Result<()> {
        struct Ctx<'a> {
            f: &'a mut dyn FnMut(u64, u64, bool),
            panic: Option<Box<dyn Any + Send>>,
        }
        extern "C" fn callback(offset: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: arg is the Ctx below, alive for the whole rbd_diff_iterate2 call; librbd
            // calls back one extent at a time, in order, so no other reference is live.
            let ctx = unsafe { &mut *arg.cast::<Ctx>() };
            match panic::catch_unwind(AssertUnwindSafe(|| {
                (ctx.f)(offset, len as u64, exists != 0)
            })) {
                Ok(()) => 0,
                Err(payload) => {
                    ctx.panic = Some(payload);
                    STOP
                }
            }
        }
        let from = from.map(|s| cstr(s, "snapshot name")).transpose()?;
        let from_ptr = from.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut ctx = Ctx {
            f: &mut f,
            panic: None,
        };
        // SAFETY: the handle is open; from outlives the call; ctx outlives the call and is
        // only reached through arg; the callback never unwinds into C.
        let ret = unsafe {
            sys::rbd_diff_iterate2(
                self.handle,
                from_ptr,
                offset,
                len,
                u8::from(parent),
                u8::from(whole_object),
                Some(callback),
                (&mut ctx as *mut Ctx).cast::<c_void>(),
            )
        };
        if let Some(payload) = ctx.panic {
            panic::resume_unwind(payload);
        }
        check(ret.into(), "rbd_diff_iterate2", &self.name).map(drop)
    }
}

/// The text of a NUL-terminated string in `buf` (all of `buf` if it holds no NUL).
fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// An asynchronous request: what to report and what to hand back when librbd calls back.
struct Request<B, F> {
    op: &'static str,
    image: String,
    offset: u64,
    /// The bytes a read must return; `None` for a write.
    want: Option<usize>,
    data: B,
    done: F,
}

impl<B, F: FnOnce(Result<()>, B)> Request<B, F> {
    /// Calls `done` with the outcome of a request that returned `ret`.
    fn finish(self, ret: i64) {
        let result = match ret {
            r if r < 0 => Err(io_error(r, self.op, &self.image, self.offset)),
            r if self.want.is_some_and(|want| r as usize != want) => Err(Error::io(
                self.op,
                &self.image,
                self.offset,
                io::ErrorKind::UnexpectedEof.into(),
            )),
            _ => Ok(()),
        };
        (self.done)(result, self.data);
    }
}

/// librbd's completion callback for a [`Request`]: takes it back and finishes it.
extern "C" fn completed<B, F>(c: sys::rbd_completion_t, arg: *mut c_void)
where
    F: FnOnce(Result<()>, B),
{
    // SAFETY: c is the completion librbd is completing; its return value is ready.
    let ret = unsafe { sys::rbd_aio_get_return_value(c) };
    // SAFETY: c is released once, here, after its result was read (as `rbd bench` does).
    unsafe { sys::rbd_aio_release(c) };
    // SAFETY: arg is the Box<Request> given to rbd_aio_create_completion; librbd calls back
    // exactly once, so this is its only owner.
    let request = unsafe { Box::from_raw(arg.cast::<Request<B, F>>()) };
    // A panic must not unwind into librbd's thread; abort rather than lose a completion.
    if panic::catch_unwind(AssertUnwindSafe(|| request.finish(ret as i64))).is_err() {
        std::process::abort();
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the handle came from rbd_open* and is closed once, here; nothing else
        // holds it, since Image is not Clone.
        unsafe { sys::rbd_close(self.handle) };
    }
}

/// An image's header object, for rbdcp's own image-meta entries (progress and provenance
/// records): read and written by calls on the object itself, without librbd's image
/// handle, so they run while the image is opening, taking its lock or closing. No librbd
/// client keeps these entries in memory, so none needs librbd's header-update notice,
/// which would make every open handle, this one included, reread the whole header before
/// its next operation (six round trips).
#[derive(Debug)]
pub struct Header {
    pool: Arc<Pool>,
    oid: CString,
    name: String,
}

impl Header {
    /// The value of image-meta `key`, or `None` when it is not set.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        // metadata_get takes the key and answers the value, each as a string: a 32-bit
        // little-endian length, then the bytes.
        let mut room = 64 << 10;
        loop {
            match call(
                &self.pool,
                &self.oid,
                c"metadata_get",
                &encoded(key),
                room,
                "metadata_get",
                &self.name,
            ) {
                Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
                Err(e) if e.errno() == Some(libc::ERANGE) && room < 64 << 20 => room *= 4,
                Err(e) => return Err(e),
                Ok(out) => return decoded(&out, &self.name).map(Some),
            }
        }
    }

    /// Sets every `(key, value)` of `entries` in one atomic update of the header.
    pub fn put_all(&self, entries: &[(String, String)]) -> Result<()> {
        // cls_rbd's metadata_set takes a map<string, bufferlist>: a count, then each key
        // and value as a 32-bit little-endian length and the bytes.
        let mut input = len32(entries.len(), "metadata")?.to_le_bytes().to_vec();
        for (key, value) in entries {
            for bytes in [key.as_bytes(), value.as_bytes()] {
                input.extend_from_slice(&len32(bytes.len(), "metadata")?.to_le_bytes());
                input.extend_from_slice(bytes);
            }
        }
        self.exec(c"metadata_set", &input, "metadata_set")
    }

    /// Removes image-meta `key`; a key that is not set is no error.
    pub fn remove(&self, key: &str) -> Result<()> {
        len32(key.len(), "metadata key")?;
        match self.exec(c"metadata_remove", &encoded(key), "metadata_remove") {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    fn exec(&self, method: &CStr, input: &[u8], op: &'static str) -> Result<()> {
        call(&self.pool, &self.oid, method, input, 64, op, &self.name).map(drop)
    }
}

/// Runs method `method` of object class `rbd` on object `oid` of `pool`, with room for
/// `room` bytes of output; `name` names the image in errors.
fn call(
    pool: &Pool,
    oid: &CStr,
    method: &CStr,
    input: &[u8],
    room: usize,
    op: &'static str,
    name: &str,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; room];
    // SAFETY: the pool's ioctx is open while `pool` is borrowed; the strings and both
    // buffers outlive the call, with the lengths given.
    let ret = unsafe {
        sys::rados_exec(
            pool.raw().cast(),
            oid.as_ptr(),
            c"rbd".as_ptr(),
            method.as_ptr(),
            input.as_ptr().cast(),
            input.len(),
            out.as_mut_ptr().cast(),
            out.len(),
        )
    };
    out.truncate(check(ret.into(), op, name)? as usize);
    Ok(out)
}

/// Entries per page of [`Image::meta_list`].
const PAGE: u64 = 256;

/// A snapshot of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// Its id, which no other snapshot of the image ever gets.
    pub id: u64,
    /// The image's size at the snapshot, in bytes.
    pub size: u64,
    /// Its name.
    pub name: String,
}

/// The image and snapshot a clone reads through to where it holds no data of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The parent's pool id.
    pub pool_id: i64,
    /// The parent's pool.
    pub pool: String,
    /// The parent's namespace in its pool ("" for none).
    pub namespace: String,
    /// The parent image's id.
    pub image_id: String,
    /// The parent image's name.
    pub image: String,
    /// The parent snapshot's id.
    pub snap_id: u64,
    /// The parent snapshot's name.
    pub snap: String,
    /// The bytes of the clone, from its start, that read through to the parent.
    pub overlap: u64,
}

/// An image's user snapshots, and its others with their namespace's name (see
/// [`Image::all_snaps`]).
pub type AllSnaps = (Vec<Snap>, Vec<(Snap, &'static str)>);

/// `text` as Ceph encodes a string: its length (32 bits, little-endian), then its bytes.
fn encoded(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// The string Ceph encoded as `bytes` (see [`encoded`]).
fn decoded(bytes: &[u8], name: &str) -> Result<String> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    match len.and_then(|len| bytes.get(4..4 + len)) {
        Some(text) => Ok(String::from_utf8_lossy(text).into_owned()),
        None => Err(Error::open(
            "decode the image-meta value of",
            name,
            io::Error::from_raw_os_error(libc::EBADMSG),
        )),
    }
}

/// `len` as the 32-bit length of Ceph's encoding.
fn len32(len: usize, what: &str) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::Unsupported(format!("{what} of {len} bytes is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_decodes_as_ceph_encoded_it() {
        let bytes = encoded("rbdcp.resume");
        assert_eq!(&bytes[..4], &12u32.to_le_bytes());
        assert_eq!(decoded(&bytes, "img").unwrap(), "rbdcp.resume");
        let cut = decoded(&bytes[..8], "img").unwrap_err().to_string();
        assert!(cut.contains("img"), "{cut}");
        assert!(decoded(&[1, 0], "img").is_err());
    }
}
