//! A connection to a Ceph cluster (`rados_t`) and an I/O context on one of its pools.

use std::ffi::c_char;
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;

use ceph::rados::{self, rados_ioctx_t, rados_t};

use super::{check, cstr, errno};
use crate::error::{Error, Result};

/// How to reach a cluster: the conf file, the user and its keyring (as `rbd -c --id --keyring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The conf file; `None` searches Ceph's default places (`$CEPH_CONF`, `/etc/ceph/ceph.conf`, ...).
    pub conf: Option<PathBuf>,
    /// The user, without `client.`.
    pub id: String,
    /// The keyring file; `None` takes it from the conf.
    pub keyring: Option<PathBuf>,
    /// Seconds to wait for the monitors before giving up.
    pub timeout_secs: u64,
    /// Seconds an OSD or monitor operation may take before it fails with ETIMEDOUT (and
    /// is retried), instead of waiting forever on a dead OSD.
    pub op_timeout_secs: u64,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            conf: None,
            id: "admin".into(),
            keyring: None,
            timeout_secs: 30,
            op_timeout_secs: 60,
        }
    }
}

impl Access {
    /// Names the cluster in messages: its conf file.
    pub fn describe(&self) -> String {
        let conf = self
            .conf
            .as_deref()
            .map_or("the default ceph.conf".into(), |p| p.display().to_string());
        format!("the cluster of {conf} as client.{}", self.id)
    }
}

/// A connected cluster handle, shut down on drop.
#[derive(Debug)]
pub struct Cluster {
    handle: rados_t,
}

// SAFETY: librados documents its cluster handle as thread-safe ("librados is thread safe"):
// calls on one rados_t from many threads are serialized internally.
unsafe impl Send for Cluster {}
// SAFETY: as for Send: every use of the handle after connect goes through librados' own locks.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Connects as `access` says, waiting at most `access.timeout_secs` for the monitors.
    pub fn connect(access: &Access) -> Result<Arc<Cluster>> {
        let who = access.describe();
        let name = cstr(&format!("client.{}", access.id), "user")?;
        let mut handle: rados_t = ptr::null_mut();
        // SAFETY: handle is a valid out-pointer; the strings outlive the call.
        let ret = unsafe { rados::rados_create2(&mut handle, c"ceph".as_ptr(), name.as_ptr(), 0) };
        check(ret.into(), "rados_create2", &who)?;
        // From here on, Drop shuts the handle down, also when a step below fails.
        let cluster = Cluster { handle };
        cluster.configure(access, &who)?;
        // SAFETY: the handle was created above and is configured, not yet connected.
        let ret = unsafe { rados::rados_connect(cluster.handle) };
        if ret < 0 {
            return Err(Error::Connect {
                cluster: who,
                err: errno(ret.into()),
            });
        }
        Ok(Arc::new(cluster))
    }

    fn configure(&self, access: &Access, who: &str) -> Result<()> {
        match &access.conf {
            Some(conf) => {
                let path = cstr(&conf.display().to_string(), "conf path")?;
                self.read_conf(path.as_ptr(), who)?;
            }
            // No conf named: Ceph's search path, and no complaint if nothing is there,
            // as the rbd command does; connect reports what is missing.
            None => {
                let _ = self.read_conf(ptr::null(), who);
            }
        }
        // SAFETY: the handle is valid; a null variable name means CEPH_ARGS.
        let ret = unsafe { rados::rados_conf_parse_env(self.handle, ptr::null()) };
        check(ret.into(), "rados_conf_parse_env", who)?;
        if let Some(keyring) = &access.keyring {
            self.set("keyring", &keyring.display().to_string(), who)?;
        }
        let secs = access.timeout_secs.max(1).to_string();
        self.set("client_mount_timeout", &secs, who)?;
        let op = access.op_timeout_secs.max(1).to_string();
        self.set("rados_mon_op_timeout", &op, who)?;
        self.set("rados_osd_op_timeout", &op, who)?;
        // Writes go straight to the OSDs, many at a time: librbd's cache would only
        // acknowledge early and hold up to 24 MiB back.
        self.set("rbd_cache", "false", who)?;
        // rbd_write2 blocks until the write is done, so librbd may send the caller's buffer
        // as it is instead of copying it first.
        self.set("rbd_disable_zero_copy_writes", "false", who)
    }

    fn read_conf(&self, path: *const c_char, who: &str) -> Result<()> {
        // SAFETY: the handle is valid; path is null or a NUL-terminated string that outlives the call.
        let ret = unsafe { rados::rados_conf_read_file(self.handle, path) };
        check(ret.into(), "rados_conf_read_file", who).map(drop)
    }

    /// This client's global id on the cluster (the `GID` of `client.GID`).
    pub fn instance_id(&self) -> u64 {
        // SAFETY: the handle is connected.
        unsafe { rados::rados_get_instance_id(self.handle) }
    }

    /// The cluster's fsid.
    pub fn fsid(&self) -> Result<String> {
        let mut buf = [0u8; 64];
        // SAFETY: the handle is connected; buf is valid for its length.
        let ret =
            unsafe { rados::rados_cluster_fsid(self.handle, buf.as_mut_ptr().cast(), buf.len()) };
        check(ret.into(), "rados_cluster_fsid", "the cluster")?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// Sets a configuration option.
    pub fn set(&self, option: &str, value: &str, who: &str) -> Result<()> {
        let (o, v) = (cstr(option, "option")?, cstr(value, "option value")?);
        // SAFETY: the handle is valid; both strings outlive the call, which copies them.
        let ret = unsafe { rados::rados_conf_set(self.handle, o.as_ptr(), v.as_ptr()) };
        check(ret.into(), "rados_conf_set", who).map(drop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and every Pool holding an Arc of this
        // cluster is gone, so nothing uses it after this.
        unsafe { rados::rados_shutdown(self.handle) }
    }
}

/// An I/O context on a pool (and namespace), destroyed on drop.
#[derive(Debug)]
pub struct Pool {
    handle: rados_ioctx_t,
    cluster: Arc<Cluster>,
}

// SAFETY: librados' IoCtx may be used from many threads once set up; the namespace is set
// before the Pool is shared and never changed after.
unsafe impl Send for Pool {}
// SAFETY: as for Send.
unsafe impl Sync for Pool {}

impl Pool {
    /// Opens `pool`, in `namespace` if given.
    pub fn open(cluster: &Arc<Cluster>, pool: &str, namespace: Option<&str>) -> Result<Arc<Pool>> {
        let name = cstr(pool, "pool")?;
        let mut handle: rados_ioctx_t = ptr::null_mut();
        // SAFETY: the cluster is connected; handle is a valid out-pointer; name outlives the call.
        let ret = unsafe { rados::rados_ioctx_create(cluster.handle, name.as_ptr(), &mut handle) };
        check(ret.into(), "rados_ioctx_create", &format!("pool {pool}"))?;
        let io = Pool {
            handle,
            cluster: Arc::clone(cluster),
        };
        if let Some(ns) = namespace {
            let ns = cstr(ns, "namespace")?;
            // SAFETY: the ioctx is valid and not shared yet; the string is copied.
            unsafe { rados::rados_ioctx_set_namespace(io.handle, ns.as_ptr()) };
        }
        // A full pool (its quota reached, or the cluster full) then fails writes with
        // EDQUOT or ENOSPC at once instead of holding them until the op timeout.
        // SAFETY: the ioctx is valid and not shared yet.
        unsafe { librbd_sys::rados_set_pool_full_try(io.handle) };
        Ok(Arc::new(io))
    }

    /// The pool's id.
    pub fn id(&self) -> i64 {
        // SAFETY: the ioctx is valid.
        unsafe { rados::rados_ioctx_get_id(self.handle) }
    }

    /// The cluster this pool is in.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The raw handle, for librbd calls.
    pub(super) fn raw(&self) -> rados_ioctx_t {
        self.handle
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_ioctx_create, and every Image holding an Arc
        // of this pool is closed.
        unsafe { rados::rados_ioctx_destroy(self.handle) }
    }
}
