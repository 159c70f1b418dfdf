//! Raw `extern "C"` declarations for librbd 1.16: constants, `#[repr(C)]` structs, no logic.
//!
//! Every item is copied from `rbd/librbd.h`, `rbd/features.h` and `rados/librados.h`
//! (Ceph 16.2). `tests/header.rs` parses this file and compiles its items against the
//! installed header, so keep to one plain form per item: `pub type`, `pub const` with a
//! literal or `1 << n`, `#[repr(C)] pub struct` and `pub fn` inside the `extern "C"` block.
//! Macro constants take the Rust type of the parameter they are passed in.
#![no_std]
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_uint, c_void};

/// Major version of the librbd headers these declarations mirror.
pub const LIBRBD_VER_MAJOR: c_int = 1;
/// Minor version of the librbd headers these declarations mirror.
pub const LIBRBD_VER_MINOR: c_int = 16;
/// Extra (patch) version of the librbd headers these declarations mirror.
pub const LIBRBD_VER_EXTRA: c_int = 0;

/// Exclusive-lock mode: one owner at a time.
pub const RBD_LOCK_MODE_EXCLUSIVE: rbd_lock_mode_t = 0;
/// A snapshot a user made (`rbd snap create`).
pub const RBD_SNAP_NAMESPACE_TYPE_USER: rbd_snap_namespace_type_t = 0;
/// A snapshot of a group snapshot.
pub const RBD_SNAP_NAMESPACE_TYPE_GROUP: rbd_snap_namespace_type_t = 1;
/// A removed snapshot kept while clones depend on it.
pub const RBD_SNAP_NAMESPACE_TYPE_TRASH: rbd_snap_namespace_type_t = 2;
/// A snapshot owned by snapshot-based mirroring.
pub const RBD_SNAP_NAMESPACE_TYPE_MIRROR: rbd_snap_namespace_type_t = 3;

/// Image supports copy-on-write clones of its snapshots.
pub const RBD_FEATURE_LAYERING: u64 = 1 << 0;
/// Image uses a custom stripe unit and stripe count.
pub const RBD_FEATURE_STRIPINGV2: u64 = 1 << 1;
/// Only one client at a time may write to the image.
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
/// Image tracks which objects exist in an object map.
pub const RBD_FEATURE_OBJECT_MAP: u64 = 1 << 3;
/// Object map also records which objects changed since each snapshot.
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
/// Flattening a clone also copies its snapshots' data.
pub const RBD_FEATURE_DEEP_FLATTEN: u64 = 1 << 5;
/// Image changes are written to a journal first.
pub const RBD_FEATURE_JOURNALING: u64 = 1 << 6;
/// Image data lives in a separate data pool.
pub const RBD_FEATURE_DATA_POOL: u64 = 1 << 7;
/// Image has operation features (clone v2, groups, snapshot trash).
pub const RBD_FEATURE_OPERATIONS: u64 = 1 << 8;
/// Image is being migrated.
pub const RBD_FEATURE_MIGRATING: u64 = 1 << 9;
/// Image is a non-primary mirror (snapshot-based mirroring).
pub const RBD_FEATURE_NON_PRIMARY: u64 = 1 << 10;
/// Image has a persistent write-back cache that may hold unflushed data.
pub const RBD_FEATURE_DIRTY_CACHE: u64 = 1 << 11;

/// `rbd_get_flags` bit: the object map is invalid and must be rebuilt.
pub const RBD_FLAG_OBJECT_MAP_INVALID: u64 = 1 << 0;
/// `rbd_get_flags` bit: the fast-diff data is invalid, so diffs fall back to the slow path.
pub const RBD_FLAG_FAST_DIFF_INVALID: u64 = 1 << 1;

/// Length of `rbd_image_info_t::parent_name`.
pub const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;
/// Length of `rbd_image_info_t::block_name_prefix`.
pub const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;

/// Image option (uint64): image format, 1 or 2.
pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;
/// Image option (uint64): `RBD_FEATURE_*` bits to create the image with.
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
/// Image option (uint64): object size as a power of two.
pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;
/// Image option (uint64): stripe unit in bytes.
pub const RBD_IMAGE_OPTION_STRIPE_UNIT: c_int = 3;
/// Image option (uint64): number of objects in a stripe.
pub const RBD_IMAGE_OPTION_STRIPE_COUNT: c_int = 4;
/// Image option (uint64): journal object size as a power of two.
pub const RBD_IMAGE_OPTION_JOURNAL_ORDER: c_int = 5;
/// Image option (uint64): number of active journal objects.
pub const RBD_IMAGE_OPTION_JOURNAL_SPLAY_WIDTH: c_int = 6;
/// Image option (string): pool for the journal objects.
pub const RBD_IMAGE_OPTION_JOURNAL_POOL: c_int = 7;
/// Image option (uint64): feature bits to add to the defaults.
pub const RBD_IMAGE_OPTION_FEATURES_SET: c_int = 8;
/// Image option (uint64): feature bits to remove from the defaults.
pub const RBD_IMAGE_OPTION_FEATURES_CLEAR: c_int = 9;
/// Image option (string): pool for the data objects.
pub const RBD_IMAGE_OPTION_DATA_POOL: c_int = 10;
/// Image option (uint64): flatten the destination of a copy or migration.
pub const RBD_IMAGE_OPTION_FLATTEN: c_int = 11;
/// Image option (uint64): clone format, 1 or 2.
pub const RBD_IMAGE_OPTION_CLONE_FORMAT: c_int = 12;
/// Image option (uint64): mirror image mode.
pub const RBD_IMAGE_OPTION_MIRROR_IMAGE_MODE: c_int = 13;

/// `rados_write_op_create` flag: fail with `-EEXIST` if the object exists.
pub const LIBRADOS_CREATE_EXCLUSIVE: c_int = 1;

/// `rbd_snap_create2` flag: do not ask the image's users to quiesce first.
pub const RBD_SNAP_CREATE_SKIP_QUIESCE: u32 = 1 << 0;
/// `rbd_snap_create2` flag: take the snapshot even if quiescing fails.
pub const RBD_SNAP_CREATE_IGNORE_QUIESCE_ERROR: u32 = 1 << 1;

/// `zero_flags` bit: allocate the zeroed extent instead of leaving a hole.
pub const RBD_WRITE_ZEROES_FLAG_THICK_PROVISION: c_int = 1 << 0;

/// `op_flags` bit: the IO is random access.
pub const LIBRADOS_OP_FLAG_FADVISE_RANDOM: c_int = 0x4;
/// `op_flags` bit: the IO is sequential.
pub const LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL: c_int = 0x8;
/// `op_flags` bit: the data will be accessed again soon (by someone).
pub const LIBRADOS_OP_FLAG_FADVISE_WILLNEED: c_int = 0x10;
/// `op_flags` bit: the data will not be accessed again soon (by anyone).
pub const LIBRADOS_OP_FLAG_FADVISE_DONTNEED: c_int = 0x20;
/// `op_flags` bit: the data will not be accessed again by this client.
pub const LIBRADOS_OP_FLAG_FADVISE_NOCACHE: c_int = 0x40;
/// `op_flags` bit: force unit access on writes, where supported.
pub const LIBRADOS_OP_FLAG_FADVISE_FUA: c_int = 0x80;

/// A librados IO context (one pool and namespace), from `rados_ioctx_create`.
pub type rados_ioctx_t = *mut c_void;
/// A compound write to one object, from `rados_create_write_op`.
pub type rados_write_op_t = *mut c_void;
/// Seconds since the epoch (C's `time_t`).
pub type time_t = i64;
/// An open image, from `rbd_open` or `rbd_open_read_only`.
pub type rbd_image_t = *mut c_void;
/// The mode of an image's managed lock (an enum in C).
pub type rbd_lock_mode_t = c_uint;
/// The namespace of a snapshot (an enum in C): user, group, trash or mirror.
pub type rbd_snap_namespace_type_t = c_uint;
/// Options for image creation, from `rbd_image_options_create`.
pub type rbd_image_options_t = *mut c_void;
/// An AIO completion, from `rbd_aio_create_completion`.
pub type rbd_completion_t = *mut c_void;
/// Called on a librbd thread when an AIO request completes.
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;
/// Progress callback: `offset` of `total` done; a negative return cancels.
pub type librbd_progress_fn_t =
    Option<unsafe extern "C" fn(offset: u64, total: u64, ptr: *mut c_void) -> c_int>;

/// Image information filled in by `rbd_stat`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_info_t {
    /// Image size in bytes.
    pub size: u64,
    /// Object size in bytes (`1 << order`).
    pub obj_size: u64,
    /// Number of objects the image spans.
    pub num_objs: u64,
    /// Object size as a power of two.
    pub order: c_int,
    /// Object name prefix (deprecated).
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    /// Parent pool id (deprecated).
    pub parent_pool: i64,
    /// Parent image name (deprecated).
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

/// One snapshot, as listed by `rbd_snap_list`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_snap_info_t {
    /// Snapshot id.
    pub id: u64,
    /// Image size at the snapshot, in bytes.
    pub size: u64,
    /// Snapshot name, owned by librbd until `rbd_snap_list_end`.
    pub name: *const c_char,
}

/// An image named by id and name, as listed by `rbd_list2`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_spec_t {
    /// Image id, owned by librbd until `rbd_image_spec_list_cleanup`.
    pub id: *mut c_char,
    /// Image name, owned by librbd until `rbd_image_spec_list_cleanup`.
    pub name: *mut c_char,
}

/// An image another one links to (a clone's parent), from `rbd_get_parent`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_linked_image_spec_t {
    /// Pool id.
    pub pool_id: i64,
    /// Pool name, owned by librbd until `rbd_linked_image_spec_cleanup`.
    pub pool_name: *mut c_char,
    /// Pool namespace ("" for none).
    pub pool_namespace: *mut c_char,
    /// Image id.
    pub image_id: *mut c_char,
    /// Image name.
    pub image_name: *mut c_char,
    /// Whether the image is in the trash.
    pub trash: bool,
}

/// A snapshot named by id, namespace and name, from `rbd_get_parent`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_snap_spec_t {
    /// Snapshot id.
    pub id: u64,
    /// Its namespace.
    pub namespace_type: rbd_snap_namespace_type_t,
    /// Snapshot name, owned by librbd until `rbd_snap_spec_cleanup`.
    pub name: *mut c_char,
}

extern "C" {
    /// Reports the version of the loaded librbd.
    pub fn rbd_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);

    /// Opens image `name`, at snapshot `snap_name` or at HEAD when it is null.
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    /// Opens image `name` read-only, without a watch on its header object.
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    /// Closes an image and frees its handle.
    pub fn rbd_close(image: rbd_image_t) -> c_int;

    /// Fills `info`; `infosize` is `size_of::<rbd_image_info_t>()`.
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: usize) -> c_int;
    /// Gets the image size in bytes, at the snapshot set on the handle.
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    /// Gets the image's `RBD_FEATURE_*` bits.
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    /// Gets the image's `RBD_FLAG_*` bits.
    pub fn rbd_get_flags(image: rbd_image_t, flags: *mut u64) -> c_int;
    /// Gets the stripe unit in bytes.
    pub fn rbd_get_stripe_unit(image: rbd_image_t, stripe_unit: *mut u64) -> c_int;
    /// Gets the number of objects in a stripe.
    pub fn rbd_get_stripe_count(image: rbd_image_t, stripe_count: *mut u64) -> c_int;

    /// Resizes the image to `size` bytes.
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    /// Resizes the image, refusing to shrink unless `allow_shrink`, reporting progress.
    pub fn rbd_resize2(
        image: rbd_image_t,
        size: u64,
        allow_shrink: bool,
        cb: librbd_progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;

    /// Creates image `name` of `size` bytes with the given options.
    pub fn rbd_create4(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        opts: rbd_image_options_t,
    ) -> c_int;
    /// Allocates an empty set of image options.
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    /// Frees a set of image options.
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    /// Sets a numeric `RBD_IMAGE_OPTION_*`.
    pub fn rbd_image_options_set_uint64(
        opts: rbd_image_options_t,
        optname: c_int,
        optval: u64,
    ) -> c_int;
    /// Sets a string `RBD_IMAGE_OPTION_*`; the string is copied.
    pub fn rbd_image_options_set_string(
        opts: rbd_image_options_t,
        optname: c_int,
        optval: *const c_char,
    ) -> c_int;
    /// Removes image `name`; it must have no snapshots.
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    /// Renames image `srcname` to `destname` within one pool.
    pub fn rbd_rename(
        src_io_ctx: rados_ioctx_t,
        srcname: *const c_char,
        destname: *const c_char,
    ) -> c_int;

    /// Creates snapshot `snapname`.
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    /// Creates a snapshot with `RBD_SNAP_CREATE_*` flags, reporting quiesce progress.
    pub fn rbd_snap_create2(
        image: rbd_image_t,
        snap_name: *const c_char,
        flags: u32,
        cb: librbd_progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;
    /// Reads from snapshot `snapname` from now on, or from HEAD when it is null.
    pub fn rbd_snap_set(image: rbd_image_t, snapname: *const c_char) -> c_int;
    /// Sets `exists` to whether snapshot `snapname` exists.
    pub fn rbd_snap_exists(image: rbd_image_t, snapname: *const c_char, exists: *mut bool)
        -> c_int;
    /// Lists snapshots into `snaps` (room for `*max_snaps`); returns the count, or
    /// `-ERANGE` with `*max_snaps` set to the room needed.
    pub fn rbd_snap_list(
        image: rbd_image_t,
        snaps: *mut rbd_snap_info_t,
        max_snaps: *mut c_int,
    ) -> c_int;
    /// Frees the names filled in by `rbd_snap_list`.
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    /// Removes snapshot `snapname`.
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    /// Copies the image's id (NUL-terminated) into `id`, of `id_len` bytes; `-ERANGE` if
    /// it does not fit.
    pub fn rbd_get_id(image: rbd_image_t, id: *mut c_char, id_len: usize) -> c_int;
    /// Copies the value of image-meta `key` into `value`; `-ERANGE`, with `*val_len` set to
    /// the room needed, if it does not fit; `-ENOENT` if the key is not set.
    pub fn rbd_metadata_get(
        image: rbd_image_t,
        key: *const c_char,
        value: *mut c_char,
        val_len: *mut usize,
    ) -> c_int;
    /// Sets image-meta `key` to `value`.
    pub fn rbd_metadata_set(image: rbd_image_t, key: *const c_char, value: *const c_char) -> c_int;
    /// Lists up to `max` image-meta entries (0: all) whose keys sort after `start`: the keys,
    /// each NUL-terminated, into `keys` (room for `*key_len`) and the values likewise into
    /// `values`; `-ERANGE` with the room needed in both lengths if either is too small.
    pub fn rbd_metadata_list(
        image: rbd_image_t,
        start: *const c_char,
        max: u64,
        keys: *mut c_char,
        key_len: *mut usize,
        values: *mut c_char,
        vals_len: *mut usize,
    ) -> c_int;
    /// Removes image-meta `key`; `-ENOENT` if it is not set.
    pub fn rbd_metadata_remove(image: rbd_image_t, key: *const c_char) -> c_int;
    /// Lists the owners of the image's managed lock (client addresses) into `lock_owners`
    /// (room for `*max_lock_owners`); `-ERANGE` with the count needed if it is too small.
    pub fn rbd_lock_get_owners(
        image: rbd_image_t,
        lock_mode: *mut rbd_lock_mode_t,
        lock_owners: *mut *mut c_char,
        max_lock_owners: *mut usize,
    ) -> c_int;
    /// Frees the names `rbd_lock_get_owners` filled in.
    pub fn rbd_lock_get_owners_cleanup(lock_owners: *mut *mut c_char, lock_owner_count: usize);
    /// Breaks `lock_owner`'s managed lock (blocklisting it first, by default).
    pub fn rbd_lock_break(
        image: rbd_image_t,
        lock_mode: rbd_lock_mode_t,
        lock_owner: *const c_char,
    ) -> c_int;
    /// Takes the image's managed lock in `lock_mode` and keeps it until released or closed
    /// (not handed over when another client asks); `-EINVAL` without the exclusive-lock
    /// feature.
    pub fn rbd_lock_acquire(image: rbd_image_t, lock_mode: rbd_lock_mode_t) -> c_int;
    /// Protects snapshot `snap_name` (a clone's parent must be protected, with clone v1).
    pub fn rbd_snap_protect(image: rbd_image_t, snap_name: *const c_char) -> c_int;
    /// Sets `*is_protected` to 1 if snapshot `snap_name` is protected, else 0.
    pub fn rbd_snap_is_protected(
        image: rbd_image_t,
        snap_name: *const c_char,
        is_protected: *mut c_int,
    ) -> c_int;
    /// Lists the images of a pool; `-ERANGE` with `max_images` set when the array is short.
    pub fn rbd_list2(
        io: rados_ioctx_t,
        images: *mut rbd_image_spec_t,
        max_images: *mut usize,
    ) -> c_int;
    /// Frees the strings of `num_images` specs filled by `rbd_list2`.
    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num_images: usize);
    /// Creates `c_name` in `c_ioctx` as a clone of `p_name@p_snapname` in `p_ioctx`.
    pub fn rbd_clone3(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        c_opts: rbd_image_options_t,
    ) -> c_int;
    /// Gets the parent image and snapshot of a clone (at the handle's snapshot); `-ENOENT`
    /// when it has none.
    pub fn rbd_get_parent(
        image: rbd_image_t,
        parent_image: *mut rbd_linked_image_spec_t,
        parent_snap: *mut rbd_snap_spec_t,
    ) -> c_int;
    /// Frees the strings of a spec filled by `rbd_get_parent`.
    pub fn rbd_linked_image_spec_cleanup(image: *mut rbd_linked_image_spec_t);
    /// Frees the name of a spec filled by `rbd_get_parent`.
    pub fn rbd_snap_spec_cleanup(snap: *mut rbd_snap_spec_t);
    /// Gets how many bytes of a clone still read through to its parent.
    pub fn rbd_get_overlap(image: rbd_image_t, overlap: *mut u64) -> c_int;
    /// Gets the namespace of snapshot `snap_id`.
    pub fn rbd_snap_get_namespace_type(
        image: rbd_image_t,
        snap_id: u64,
        namespace_type: *mut rbd_snap_namespace_type_t,
    ) -> c_int;
    /// Gets the id of snapshot `snapname`.
    pub fn rbd_snap_get_id(image: rbd_image_t, snapname: *const c_char, snap_id: *mut u64)
        -> c_int;

    /// Calls `cb(offset, len, exists, arg)` for each extent of `[ofs, ofs + len)` that
    /// changed between `fromsnapname` (null: beginning of time) and the handle's snapshot
    /// or HEAD; `exists == 0` means the extent reads as zeros. A negative `cb` return stops.
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: Option<unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int>,
        arg: *mut c_void,
    ) -> c_int;

    /// Reads `len` bytes at `ofs` into `buf`; returns the bytes read or `-errno`.
    pub fn rbd_read2(
        image: rbd_image_t,
        ofs: u64,
        len: usize,
        buf: *mut c_char,
        op_flags: c_int,
    ) -> isize;
    /// Writes `len` bytes from `buf` at `ofs`; returns the bytes written or `-errno`.
    pub fn rbd_write2(
        image: rbd_image_t,
        ofs: u64,
        len: usize,
        buf: *const c_char,
        op_flags: c_int,
    ) -> isize;
    /// Discards `[ofs, ofs + len)`; partial objects may be left unchanged.
    pub fn rbd_discard(image: rbd_image_t, ofs: u64, len: u64) -> c_int;
    /// Zeroes `[ofs, ofs + len)`; returns the bytes zeroed or `-errno`.
    pub fn rbd_write_zeroes(
        image: rbd_image_t,
        ofs: u64,
        len: usize,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> isize;
    /// Waits until all writes so far are persistent.
    pub fn rbd_flush(image: rbd_image_t) -> c_int;

    /// Allocates a completion that calls `complete_cb(c, cb_arg)` when done.
    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    /// Starts reading `len` bytes at `off` into `buf`, which must outlive `c`.
    pub fn rbd_aio_read2(
        image: rbd_image_t,
        off: u64,
        len: usize,
        buf: *mut c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    /// Starts writing `len` bytes from `buf` at `off`; `buf` must outlive `c`.
    pub fn rbd_aio_write2(
        image: rbd_image_t,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: rbd_completion_t,
        op_flags: c_int,
    ) -> c_int;
    /// Starts discarding `[off, off + len)`.
    pub fn rbd_aio_discard(image: rbd_image_t, off: u64, len: u64, c: rbd_completion_t) -> c_int;
    /// Starts zeroing `[off, off + len)`; the completion comes before the flags.
    pub fn rbd_aio_write_zeroes(
        image: rbd_image_t,
        off: u64,
        len: usize,
        c: rbd_completion_t,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    /// Starts a flush of all writes so far.
    pub fn rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int;
    /// Blocks until the request on `c` completes.
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    /// Gets the result of a completed request: bytes or `-errno`.
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> isize;
    /// Frees a completion.
    pub fn rbd_aio_release(c: rbd_completion_t);

    /// Marks writes through `io` to try even when the pool is full, so that the OSD answers
    /// ENOSPC or EDQUOT instead of the client holding them back until the pool has room.
    pub fn rados_set_pool_full_try(io: rados_ioctx_t);

    /// Runs object class method `cls`.`method` on object `oid` with input `in_buf`, its
    /// output into `buf` (room for `out_len`); the method's result or `-errno`.
    pub fn rados_exec(
        io: rados_ioctx_t,
        oid: *const c_char,
        cls: *const c_char,
        method: *const c_char,
        in_buf: *const c_char,
        in_len: usize,
        buf: *mut c_char,
        out_len: usize,
    ) -> c_int;

    /// Reads up to `len` bytes of object `oid` at `off` into `buf`; the bytes read or
    /// `-errno`.
    pub fn rados_read(
        io: rados_ioctx_t,
        oid: *const c_char,
        buf: *mut c_char,
        len: usize,
        off: u64,
    ) -> c_int;
    /// Removes object `oid`.
    pub fn rados_remove(io: rados_ioctx_t, oid: *const c_char) -> c_int;
    /// A new, empty compound write.
    pub fn rados_create_write_op() -> rados_write_op_t;
    /// Frees a compound write.
    pub fn rados_release_write_op(write_op: rados_write_op_t);
    /// Adds: create the object (with `LIBRADOS_CREATE_EXCLUSIVE`, fail if it exists).
    pub fn rados_write_op_create(
        write_op: rados_write_op_t,
        exclusive: c_int,
        category: *const c_char,
    );
    /// Adds: replace the object's data with `len` bytes of `buffer`.
    pub fn rados_write_op_write_full(write_op: rados_write_op_t, buffer: *const c_char, len: usize);
    /// Runs a compound write on object `oid`, atomically; 0 or `-errno`.
    pub fn rados_write_op_operate(
        write_op: rados_write_op_t,
        io: rados_ioctx_t,
        oid: *const c_char,
        mtime: *mut time_t,
        flags: c_int,
    ) -> c_int;

    /// Drops the image's client-side cache.
    pub fn rbd_invalidate_cache(image: rbd_image_t) -> c_int;
}
