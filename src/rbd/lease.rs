//! A lease on a destination: a RADOS exclusive lock with an expiry, renewed while the run
//! lives, on a small object named after the destination image.
//!
//! The lock's cookie names its holder (`HOST:PID:GID:NONCE`, GID its client's global id), so
//! a second run can say who holds the destination, break the lock of a holder on this host
//! whose process is gone (and the image lock that holder's client left), and wait for the
//! lease of a holder elsewhere to expire. See issue 11.

use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ceph::rados;

use super::{check, cstr, Pool};
use crate::error::{Error, Result};

/// The lock's name on the object.
const NAME: &std::ffi::CStr = c"rbdcp";
/// How long a lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the holder renews it.
const RENEW: Duration = Duration::from_secs(10);
/// `LIBRADOS_LOCK_FLAG_RENEW`: renew a lock this cookie holds.
const FLAG_RENEW: u8 = 1;

/// The object that carries the lease of destination `image`.
pub fn object(image: &str) -> String {
    format!("rbdcp.lock.{image}")
}

/// The cookies of the leases this process holds: a lease of this process whose cookie is
/// not here was dropped or retired, and is broken like a dead process's.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live(cookie: &str) -> bool {
    LIVE.lock().unwrap().iter().any(|c| c == cookie)
}

/// A lease held until dropped.
pub struct Lease {
    /// The client addresses of dead holders whose leases this one broke.
    pub dead: Vec<String>,
    pool: Arc<Pool>,
    oid: CString,
    cookie: CString,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Mutex<Option<JoinHandle<()>>>,
    renewal: Arc<Mutex<Renewal>>,
    retired: AtomicBool,
    label: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("oid", &self.oid).finish()
    }
}

/// Who holds a lock, from its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// Its client's global id on the cluster, where known.
    pub gid: Option<u64>,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            gid: None,
        }
    }

    /// Parses `HOST:PID:GID:NONCE`.
    pub fn parse(cookie: &str) -> Option<Holder> {
        let mut parts = cookie.rsplitn(4, ':');
        let _nonce = parts.next()?;
        let gid = parts.next()?.parse().ok();
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        Some(Holder { host, pid, gid })
    }

    /// Whether it is known to be gone: on this host, with no such process.
    pub fn is_dead(&self) -> bool {
        self.host == hostname() && !process_alive(self.pid)
    }

    /// Whether it is this process.
    pub fn is_me(&self) -> bool {
        self.host == hostname() && self.pid == std::process::id()
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rbdcp on host {}, process {}", self.host, self.pid)
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname writes at most that many bytes.
    let ret = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if ret != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether process `pid` exists on this host (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

impl Lease {
    /// Takes the lease of destination `image` (named `label` in messages). A live holder on
    /// this host is refused at once ([`Error::Busy`]); a dead one on this host (or a lease
    /// of this process it dropped or retired) is broken at once; a holder on another host is waited for until its lease expires ([`LEASE`] and a
    /// little more), and refused if it is still held then.
    pub fn take(pool: &Arc<Pool>, image: &str, label: &str) -> Result<Lease> {
        let oid = cstr(&object(image), "object name")?;
        let me = Holder::me();
        let gid = pool.cluster().instance_id();
        let cookie = cstr(
            &format!("{}:{}:{gid}:{:016x}", me.host, me.pid, fastrand::u64(..)),
            "cookie",
        )?;
        let mut dead = Vec::new();
        let deadline = Instant::now() + LEASE + Duration::from_secs(5);
        loop {
            let ret = lock(pool, &oid, &cookie, 0);
            if ret == 0 {
                break;
            }
            if ret != -libc::EBUSY && ret != -libc::EEXIST {
                check(ret.into(), "rados_lock_exclusive", label)?;
            }
            let lockers = lockers(pool, &oid, label)?;
            let mut waiting_for = None;
            for (client, cookie, addr) in &lockers {
                match Holder::parse(cookie) {
                    Some(h) if h.is_dead() || (h.is_me() && !live(cookie)) => {
                        break_lock(pool, &oid, client, cookie, label)?;
                        dead.push(bare(addr).to_owned());
                    }
                    Some(h) if h.host == me.host || Instant::now() >= deadline => {
                        return Err(Error::Busy {
                            image: label.to_owned(),
                            holder: h.to_string(),
                        })
                    }
                    Some(h) => waiting_for = Some(h),
                    None => {
                        return Err(Error::Busy {
                            image: label.to_owned(),
                            holder: format!("{client} (lock cookie {cookie:?})"),
                        })
                    }
                }
            }
            if let Some(h) = waiting_for {
                if Instant::now() >= deadline {
                    return Err(Error::Busy {
                        image: label.to_owned(),
                        holder: h.to_string(),
                    });
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renewal = Arc::new(Mutex::new(Renewal {
            last: Instant::now(),
            blocklisted: false,
        }));
        let renewer = {
            let (pool, oid, cookie, stop, renewal) = (
                Arc::clone(pool),
                oid.clone(),
                cookie.clone(),
                Arc::clone(&stop),
                Arc::clone(&renewal),
            );
            std::thread::Builder::new()
                .name("rbdcp-lease".into())
                .spawn(move || renew(&pool, &oid, &cookie, &stop, &renewal))
                .map_err(|e| Error::open("start the lease renewer for", label, e))?
        };
        LIVE.lock()
            .unwrap()
            .push(cookie.to_string_lossy().into_owned());
        Ok(Lease {
            dead,
            pool: Arc::clone(pool),
            oid,
            cookie,
            stop,
            renewer: Mutex::new(Some(renewer)),
            renewal,
            retired: AtomicBool::new(false),
            label: label.to_owned(),
        })
    }

    /// Whether the lease still holds: not when a renewal found the client blocklisted, nor
    /// when it went unrenewed for [`LEASE`], after which another run may take it.
    pub fn check(&self) -> Result<()> {
        let r = self.renewal.lock().unwrap();
        if r.blocklisted {
            return Err(Error::open(
                "renew the lease on",
                &self.label,
                std::io::Error::from_raw_os_error(libc::ESHUTDOWN),
            ));
        }
        let age = r.last.elapsed();
        if age > LEASE {
            return Err(Error::LeaseLost {
                image: self.label.clone(),
                secs: age.as_secs(),
            });
        }
        Ok(())
    }

    /// Gives the lease up without unlocking it, once its connection is no longer trusted
    /// (its client blocklisted, or its writes unanswered): a later [`Lease::take`] in this
    /// process breaks it, and so learns the client address whose image lock it must break
    /// too, which fences the old connection's writes still in flight.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let cookie = self.cookie.to_string_lossy();
        LIVE.lock().unwrap().retain(|c| *c != cookie);
    }

    /// The pool the lease was taken in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

/// A client address without its messenger prefix (`v1:`, `v2:`, `any:`), as librbd names
/// a lock owner.
pub fn bare(addr: &str) -> &str {
    ["v1:", "v2:", "any:"]
        .iter()
        .find_map(|p| addr.strip_prefix(p))
        .unwrap_or(addr)
}

/// How the renewals went.
struct Renewal {
    /// When the lease was last taken or renewed.
    last: Instant,
    /// A renewal found this client blocklisted.
    blocklisted: bool,
}

/// Renews the lease every [`RENEW`] until told to stop. A renewal that fails (an OSD that
/// stalls) is tried again at the next tick: the lease lasts three ticks.
fn renew(
    pool: &Pool,
    oid: &CString,
    cookie: &CString,
    stop: &(Mutex<bool>, Condvar),
    renewal: &Mutex<Renewal>,
) {
    let (stopped, wake) = stop;
    let mut s = stopped.lock().unwrap();
    loop {
        let (guard, _) = wake.wait_timeout(s, RENEW).unwrap();
        s = guard;
        if *s {
            return;
        }
        match lock(pool, oid, cookie, FLAG_RENEW) {
            0 => renewal.lock().unwrap().last = Instant::now(),
            r if r == -libc::ESHUTDOWN => renewal.lock().unwrap().blocklisted = true,
            _ => {}
        }
    }
}

fn lock(pool: &Pool, oid: &CString, cookie: &CString, flags: u8) -> i32 {
    let mut duration = libc::timeval {
        tv_sec: LEASE.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let (name, desc) = (NAME, c"rbdcp run");
    // SAFETY: the ioctx is valid; the strings and duration outlive the call.
    unsafe {
        rados::rados_lock_exclusive(
            pool.raw(),
            oid.as_ptr(),
            name.as_ptr(),
            cookie.as_ptr(),
            desc.as_ptr(),
            &mut duration,
            flags,
        )
    }
}

/// The (client, cookie, address) of each holder of the lock.
fn lockers(pool: &Pool, oid: &CString, label: &str) -> Result<Vec<(String, String, String)>> {
    let mut size = 1024;
    loop {
        let (mut tag, mut clients, mut cookies, mut addrs) = (
            vec![0u8; size],
            vec![0u8; size],
            vec![0u8; size],
            vec![0u8; size],
        );
        let (mut tag_len, mut clients_len, mut cookies_len, mut addrs_len) =
            (size, size, size, size);
        let mut exclusive = 0;
        // SAFETY: the ioctx is valid; every buffer is valid for the length passed with it,
        // and each length is a valid in/out-pointer.
        let ret = unsafe {
            rados::rados_list_lockers(
                pool.raw(),
                oid.as_ptr(),
                NAME.as_ptr(),
                &mut exclusive,
                tag.as_mut_ptr().cast::<c_char>(),
                &mut tag_len,
                clients.as_mut_ptr().cast::<c_char>(),
                &mut clients_len,
                cookies.as_mut_ptr().cast::<c_char>(),
                &mut cookies_len,
                addrs.as_mut_ptr().cast::<c_char>(),
                &mut addrs_len,
            )
        } as i64;
        if ret == -i64::from(libc::ERANGE) && size < 1 << 20 {
            size *= 8;
            continue;
        }
        if ret == -i64::from(libc::ENOENT) {
            return Ok(Vec::new());
        }
        let n = check(ret, "rados_list_lockers", label)? as usize;
        let split = |buf: &[u8]| -> Vec<String> {
            buf.split(|&b| b == 0)
                .take(n)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        let _ = tag;
        let (clients, cookies, addrs) = (split(&clients), split(&cookies), split(&addrs));
        return Ok(clients
            .into_iter()
            .zip(cookies)
            .zip(addrs)
            .map(|((c, k), a)| (c, k, a))
            .collect());
    }
}

fn break_lock(pool: &Pool, oid: &CString, client: &str, cookie: &str, label: &str) -> Result<()> {
    let (c, k) = (cstr(client, "client")?, cstr(cookie, "cookie")?);
    // SAFETY: the ioctx is valid; the strings outlive the call.
    let ret = unsafe {
        rados::rados_break_lock(
            pool.raw(),
            oid.as_ptr(),
            NAME.as_ptr(),
            c.as_ptr(),
            k.as_ptr(),
        )
    };
    match ret {
        r if r == -libc::ENOENT => Ok(()),
        r => check(r.into(), "rados_break_lock", label).map(drop),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}

impl Lease {
    /// Gives the lease up now rather than when it drops (a job whose record is gone has
    /// nothing left to guard while its image closes); once only.
    pub fn release(&self) {
        let Some(renewer) = self.renewer.lock().unwrap().take() else {
            return;
        };
        {
            let (stopped, wake) = &*self.stop;
            *stopped.lock().unwrap() = true;
            wake.notify_all();
        }
        let _ = renewer.join();
        let cookie = self.cookie.to_string_lossy();
        LIVE.lock().unwrap().retain(|c| *c != cookie);
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: the ioctx is valid; the strings outlive the call. Best effort: a lease
        // left behind expires by itself.
        unsafe {
            rados::rados_unlock(
                self.pool.raw(),
                self.oid.as_ptr(),
                NAME.as_ptr(),
                self.cookie.as_ptr(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_names_its_holder() {
        let h = Holder::parse("node-1:a:b:4242:4100:00ff").unwrap();
        assert_eq!(h.host, "node-1:a:b");
        assert_eq!(h.pid, 4242);
        assert_eq!(h.gid, Some(4100));
        assert!(Holder::parse("nonsense").is_none());
        assert_eq!(bare("v1:127.0.0.1:0/26700"), "127.0.0.1:0/26700");
        assert_eq!(bare("127.0.0.1:0/26700"), "127.0.0.1:0/26700");
        assert!(!Holder::me().is_dead());
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }
}
