//! RBD images as sources (read-only, at a snapshot, optionally since a base snapshot) and
//! sinks (a new image under a temporary name, renamed at the end; or an existing one in place).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use librbd_sys as sys;

use super::{Dest, Found, SinkOptions, SourceOptions, Store};
use crate::engine::{Block, Done, Extent, Filled, ImageSink, ImageSource, Layout};
use crate::error::{Error, Result};
use crate::fault;
use crate::location::RbdSpec;
use crate::rbd::{Access, Cluster, CreateOptions, Header, Image, Lease, Pool, Stat};

/// Features a new image may copy from its source; the rest need set-up the destination
/// cluster may lack (journaling, a data pool) or describe state, not shape.
const COPYABLE: u64 = sys::RBD_FEATURE_LAYERING
    | sys::RBD_FEATURE_STRIPINGV2
    | sys::RBD_FEATURE_EXCLUSIVE_LOCK
    | sys::RBD_FEATURE_OBJECT_MAP
    | sys::RBD_FEATURE_FAST_DIFF
    | sys::RBD_FEATURE_DEEP_FLATTEN;

/// `spec`'s own conf, user and keyring, or else the command line's.
fn access(spec: &RbdSpec, defaults: &Access) -> Access {
    Access {
        conf: spec.conf.clone().or_else(|| defaults.conf.clone()),
        id: spec.id.clone().unwrap_or_else(|| defaults.id.clone()),
        keyring: spec.keyring.clone().or_else(|| defaults.keyring.clone()),
        timeout_secs: defaults.timeout_secs,
        op_timeout_secs: defaults.op_timeout_secs,
    }
}

/// Connections alive in this process, by how they were reached: a source and a sink in one
/// cluster share one (one set of messenger threads and sockets, one handshake). Each way of
/// reaching a cluster has a slot of its own, locked while it connects: a source and a sink
/// in two clusters connect at the same time (the two handshakes had taken turns, 40 ms of
/// a small copy), in one cluster they wait for one connection.
static CLUSTERS: Mutex<Vec<(Access, Slot)>> = Mutex::new(Vec::new());

type Slot = Arc<Mutex<Weak<Cluster>>>;

fn cluster(access: &Access) -> Result<Arc<Cluster>> {
    let slot = {
        let mut known = CLUSTERS.lock().unwrap();
        // A slot in use is locked, or held by a thread about to lock it; a slot locked now
        // is never waited for here, so one connection's handshake holds up no other.
        known.retain(|(_, slot)| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |c| c.strong_count() > 0)
        });
        match known.iter().find(|(a, _)| a == access) {
            Some((_, slot)) => Arc::clone(slot),
            None => {
                let slot = Slot::default();
                known.push((access.clone(), Arc::clone(&slot)));
                slot
            }
        }
    };
    let mut held = slot.lock().unwrap();
    if let Some(cluster) = held.upgrade() {
        return Ok(cluster);
    }
    let cluster = Cluster::connect(access)?;
    *held = Arc::downgrade(&cluster);
    Ok(cluster)
}

/// The connection to `spec`'s cluster (this process's, or a new one): a job of many steps
/// holds it, so that each step does not connect again. A retired connection is not found
/// by later opens even while it is held.
pub fn connection(spec: &RbdSpec, defaults: &Access) -> Result<Arc<Cluster>> {
    cluster(&access(spec, defaults))
}

/// Forgets connection `cluster`: later opens connect afresh.
fn retire(cluster: &Arc<Cluster>) {
    let mut known = CLUSTERS.lock().unwrap();
    known.retain(|(_, slot)| {
        slot.try_lock()
            .map_or(true, |c| !std::ptr::eq(c.as_ptr(), Arc::as_ptr(cluster)))
    });
}

impl super::Hold for Lease {
    fn retire(&self) {
        Lease::retire(self);
        retire(self.pool().cluster());
    }
    fn check(&self) -> Result<()> {
        Lease::check(self)
    }
    fn release(&self) {
        Lease::release(self);
    }
}

fn pool(spec: &RbdSpec, defaults: &Access) -> Result<Arc<Pool>> {
    let cluster = cluster(&access(spec, defaults))?;
    Pool::open(&cluster, &spec.pool, spec.namespace.as_deref())
}

/// Which of image and snapshot is missing, after an open failed with ENOENT.
fn missing(pool: &Arc<Pool>, spec: &RbdSpec) -> Error {
    let head = spec.head().to_string();
    match (
        &spec.snap,
        Image::open_read_only(pool, &spec.image, None, &head),
    ) {
        (Some(snap), Ok(_)) => Error::NoSnap {
            image: head,
            snap: snap.clone(),
        },
        _ => Error::Open {
            op: "open",
            image: head,
            err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such image"),
        },
    }
}

/// An RBD image opened read-only, at its snapshot if the spec names one.
#[derive(Debug)]
pub struct RbdSource {
    image: Image,
    label: String,
    stat: Stat,
    base: Option<String>,
    mode: Mode,
    identity: Vec<(String, String)>,
    /// Extents listed while opening, handed to the first caller of `extents`.
    listed: Mutex<Option<Vec<Extent>>>,
    /// The snapshot it is open at.
    snap: Option<String>,
    /// The snapshot it is a clone of, if it is one.
    parent: Option<crate::rbd::Parent>,
}

/// How a source lists what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Changed objects from the fast-diff map, then the exact extents inside each: the
    /// extents of `rbd diff`, at a cost that follows the changes, not the image size.
    FastExact,
    /// `rbd diff`'s own listing, which visits every object (no valid fast-diff map, or
    /// fancy striping, where an object is not one range of the image).
    Exact,
    /// Whole changed objects, from the fast-diff map (`--whole-object`).
    WholeObject,
    /// A clone's own objects, whole: the data it holds itself, not its parent's.
    Own,
}

/// Threads that list the exact extents of changed objects at once: each listing is a round
/// trip to an OSD.
const LISTERS: usize = 16;

impl RbdSource {
    /// Opens `spec` for reading; with `opts.base`, its extents are those changed since that snapshot.
    pub fn open(spec: &RbdSpec, opts: &SourceOptions) -> Result<RbdSource> {
        let label = spec.to_string();
        let pool = pool(spec, &opts.access)?;
        let image = match Image::open_read_only(&pool, &spec.image, spec.snap.as_deref(), &label) {
            Err(Error::Open { err, .. }) if err.raw_os_error() == Some(libc::ENOENT) => {
                return Err(missing(&pool, spec));
            }
            other => other?,
        };
        let stat = image.stat()?;
        if let Some(base) = &opts.base {
            if !image.snap_exists(base)? {
                return Err(Error::NoSnap {
                    image: spec.head().to_string(),
                    snap: base.clone(),
                });
            }
        }
        // Whole-object mode is exact only with a valid fast-diff map; without one librbd
        // would scan every object anyway, so exact extents cost no more.
        let parent = image.parent()?;
        let mode = match (stat.fast_diff(), opts.whole_object) {
            _ if opts.own_data && parent.is_some() && opts.base.is_none() => Mode::Own,
            (true, true) => Mode::WholeObject,
            (true, false) if stat.plain() => Mode::FastExact,
            _ => Mode::Exact,
        };
        let mut identity = vec![
            ("cluster fsid".to_owned(), pool.cluster().fsid()?),
            ("pool id".to_owned(), pool.id().to_string()),
            ("image id".to_owned(), image.id()?),
        ];
        if let Some(snap) = &spec.snap {
            identity.push(("snapshot id".into(), image.snap_id(snap)?.to_string()));
        }
        if let Some(base) = &opts.base {
            identity.push(("base snapshot id".into(), image.snap_id(base)?.to_string()));
        }
        identity.push(("size".into(), stat.size.to_string()));
        let source = RbdSource {
            image,
            label,
            stat,
            base: opts.base.clone(),
            mode,
            identity,
            listed: Mutex::new(None),
            snap: spec.snap.clone(),
            parent,
        };
        if opts.list {
            *source.listed.lock().unwrap() = Some(source.diff()?);
        }
        Ok(source)
    }

    /// The extents as librbd reports them, one per callback (what `rbd diff` prints, or
    /// `rbd diff --whole-object`).
    pub fn diff(&self) -> Result<Vec<Extent>> {
        let all = (0, self.stat.size);
        match self.mode {
            Mode::Exact => self.listing(all, false),
            Mode::WholeObject => self.listing(all, true),
            Mode::Own => {
                // Whole objects: a clone's object, once it exists, hides the parent's
                // entirely, zeroes included, and so must its copy's. Fancy striping spreads
                // an object over its object set.
                let s = &self.stat;
                let period = s.object_size * if s.plain() { 1 } else { s.stripe_count };
                let mut own = Vec::new();
                self.image
                    .diff(None, all, (s.fast_diff(), false), |offset, len, _| {
                        let start = offset / period * period;
                        let end = (offset + len).div_ceil(period) * period;
                        own.push(Extent::data(start, end.min(s.size) - start));
                    })?;
                Ok(own)
            }
            Mode::FastExact => {
                let objects = self.listing(all, true)?;
                let next = std::sync::atomic::AtomicUsize::new(0);
                let found = Mutex::new(vec![Vec::new(); objects.len()]);
                let failed = Mutex::new(None);
                std::thread::scope(|s| {
                    for _ in 0..objects.len().min(LISTERS) {
                        s.spawn(|| loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(o) = objects.get(i) else { return };
                            if failed.lock().unwrap().is_some() {
                                return;
                            }
                            match self.listing((o.offset, o.len), false) {
                                Ok(exact) => found.lock().unwrap()[i] = exact,
                                Err(e) => *failed.lock().unwrap() = Some(e),
                            }
                        });
                    }
                });
                if let Some(e) = failed.into_inner().unwrap() {
                    return Err(e);
                }
                Ok(found.into_inner().unwrap().into_iter().flatten().collect())
            }
        }
    }

    /// The extents in `range`, exact or by whole objects.
    fn listing(&self, range: (u64, u64), whole_object: bool) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        self.image.diff(
            self.base.as_deref(),
            range,
            (whole_object, true),
            |offset, len, data| {
                out.push(Extent { offset, len, data });
            },
        )?;
        Ok(out)
    }
}

impl RbdSource {
    /// The image's snapshots, oldest first.
    pub fn snaps(&self) -> Result<Vec<crate::rbd::Snap>> {
        self.image.snaps()
    }

    /// Its user snapshots, oldest first, and the others with their namespace (see
    /// [`crate::rbd::Image::all_snaps`]).
    pub fn all_snaps(&self) -> Result<crate::rbd::AllSnaps> {
        self.image.all_snaps()
    }

    /// What identifies the image itself: its cluster's fsid, its pool's id and its own id
    /// (the fields of a provenance record that name an image).
    pub fn image_identity(&self) -> Vec<(String, String)> {
        self.identity[..3].to_vec()
    }
}

impl ImageSource for RbdSource {
    fn name(&self) -> &str {
        &self.label
    }

    fn size(&self) -> u64 {
        self.stat.size
    }

    fn object_size(&self) -> Option<u64> {
        Some(self.stat.object_size)
    }

    fn layout(&self) -> Layout {
        let s = &self.stat;
        let striped = s.features & sys::RBD_FEATURE_STRIPINGV2 != 0;
        Layout {
            object_size: Some(s.object_size),
            stripe: striped.then_some((s.stripe_unit, s.stripe_count)),
            features: Some(s.features),
        }
    }

    fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    fn extents(&self) -> Result<Vec<Extent>> {
        match self.listed.lock().unwrap().take() {
            Some(listed) => Ok(listed),
            None => self.diff(),
        }
    }

    fn diff_mode(&self) -> Option<&'static str> {
        Some(match self.mode {
            Mode::FastExact => "fast-diff+exact",
            Mode::Exact => "exact",
            Mode::WholeObject | Mode::Own => "whole-object",
        })
    }

    fn identity(&self) -> Vec<(String, String)> {
        self.identity.clone()
    }

    fn carries(&self) -> Result<crate::engine::Carries> {
        let meta = self.image.meta_list("")?;
        Ok(crate::engine::Carries {
            meta: meta
                .into_iter()
                .filter(|(k, _)| !k.starts_with("rbdcp."))
                .collect(),
            protected: match &self.snap {
                Some(snap) => self.image.snap_protected(snap)?,
                None => false,
            },
            parent: self.parent.as_ref().map(|p| crate::engine::Parent {
                label: match p.namespace.as_str() {
                    "" => format!("{}/{}@{}", p.pool, p.image, p.snap),
                    ns => format!("{}/{ns}/{}@{}", p.pool, p.image, p.snap),
                },
                name: p.image.clone(),
                image: vec![
                    self.identity[0].clone(), // the cluster's fsid
                    ("pool id".to_owned(), p.pool_id.to_string()),
                    ("image id".to_owned(), p.image_id.clone()),
                ],
                snap_id: p.snap_id,
                overlap: p.overlap,
            }),
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.image.read(offset, buf)
    }

    fn reads_async(&self) -> bool {
        true
    }

    fn read_async(&self, offset: u64, len: usize, buf: Vec<u8>, done: Filled) {
        self.image.read_async(offset, len, buf, done);
    }
}

/// The suffix of a staged image's name.
const STAGED: &str = ".rbdcp-partial";
/// The image-meta key of a job's progress record.
const RECORD_KEY: &str = "rbdcp.resume";

/// The image-meta key of the provenance of snapshot `snap`.
fn provenance_key(snap: &str) -> String {
    format!("rbdcp.snap.{snap}")
}

/// Opens `spec` for a job: takes its lease, finds what an earlier run left (a staged
/// `IMAGE.rbdcp-partial` with its record, a record in the image itself, or the finished
/// snapshot), and opens or creates the image to write as `opts` says.
pub fn open_dest(spec: &RbdSpec, opts: &SinkOptions) -> Result<Dest> {
    prepare(spec, &opts.access)?.open(opts)
}

/// A destination whose lease is taken and whose images (staged and final) are open: what
/// needs no word from the source, so a job does it while it opens the source.
pub struct Prepared {
    spec: RbdSpec,
    label: String,
    pool: Arc<Pool>,
    lease: Held,
    staged: Option<Image>,
    target: Option<Arc<Image>>,
    /// `target`'s exclusive lock, being taken.
    locking: Option<Locking>,
}

/// Takes `spec`'s lease and opens its staged and final images, if they exist.
fn take(
    pool: &Arc<Pool>,
    spec: &RbdSpec,
    label: &str,
) -> Result<(Lease, Option<Image>, Option<Image>)> {
    let staged_name = format!("{}{STAGED}", spec.image);
    // The lease and both opens at once: each is one or several round trips, and opening
    // changes nothing, so it need not wait for the lease.
    let (lease, staged, target) = std::thread::scope(|s| {
        let lease = s.spawn(|| Lease::take(pool, &spec.image, label));
        let staged = s.spawn(|| open_existing(pool, &staged_name, label));
        let target = open_existing(pool, &spec.image, label);
        let lease = lease.join().expect("taking a lease does not panic");
        (
            lease,
            staged.join().expect("an open does not panic"),
            target,
        )
    });
    Ok((lease?, staged?, target?))
}

/// Takes `spec`'s lease and opens what is there (see [`Prepared`]).
pub fn prepare(spec: &RbdSpec, access: &Access) -> Result<Prepared> {
    let spec = spec.head();
    let label = spec.to_string();
    let pool = pool(&spec, access)?;
    let (lease, staged, target) = match kept(&pool, &spec) {
        // Held since an earlier job of this run: no other job can have staged an image.
        Some((lease, image)) => {
            let target = match image {
                Some(image) => Some(image),
                None => open_existing(&pool, &spec.image, &label)?.map(Arc::new),
            };
            (Held::Kept(lease), None, target)
        }
        None => {
            let (lease, staged, target) = take(&pool, &spec, &label)?;
            for image in staged.iter().chain(&target) {
                release_dead(image, &lease)?;
            }
            (
                keep_lease(&pool, &spec, lease),
                staged,
                target.map(Arc::new),
            )
        }
    };
    // An existing image is written in place (an incremental copy, or a resumed one): its
    // lock is taken from now on, while the job reads and writes its record, not by the
    // first write (a kept image holds it already, and librbd answers at once).
    let locking = target.as_ref().map(Locking::start);
    Ok(Prepared {
        spec,
        label,
        pool,
        lease,
        staged,
        target,
        locking,
    })
}

impl Prepared {
    /// Finds what an earlier run left and opens or creates the image to write, as `opts`
    /// says.
    pub fn open(self, opts: &SinkOptions) -> Result<Dest> {
        let Prepared {
            spec,
            label,
            pool,
            lease,
            mut staged,
            mut target,
            locking,
        } = self;
        let staged_name = format!("{}{STAGED}", spec.image);
        if opts.restart {
            if staged.take().is_some() {
                Image::remove(&pool, &staged_name, &label)?;
            }
            if let Some(image) = &target {
                image.meta_drop(RECORD_KEY)?;
            }
        }
        if let Some(image) = staged.take() {
            if image.meta_get(RECORD_KEY)?.is_some() {
                let sink = RbdSink::new(Arc::new(image), &spec, Some(staged_name), opts, None)?;
                return dest(sink, Found::Staged, lease);
            }
            // Created by a run killed before its first record: nothing in it counts.
            drop(image);
            Image::remove(&pool, &staged_name, &label)?;
        }
        if let (Some(image), Some(snap)) = (&target, &opts.snap) {
            if image.snap_exists(snap)? {
                let made = image.meta_get(&provenance_key(snap))?;
                if made.is_some() && made == opts.provenance {
                    let image = target.take().expect("checked above");
                    let sink = RbdSink::new(image, &spec, None, opts, locking)?;
                    return dest(sink, Found::Complete, lease);
                }
                return Err(Error::SnapExists {
                    image: label,
                    snap: snap.clone(),
                });
            }
        }
        let recorded = match &target {
            Some(image) => image.meta_get(RECORD_KEY)?.is_some(),
            None => false,
        };
        let (image, temp, found) = match (target, &opts.base) {
            (Some(image), _) if recorded => (image, None, Found::Recorded),
            (None, Some(base)) => {
                return Err(Error::Unsupported(format!(
                    "{label} does not exist; an incremental copy (--from-snap {base}) needs it to hold snapshot {base:?}"
                )));
            }
            (Some(image), Some(base)) => {
                if !image.snap_exists(base)? {
                    return Err(Error::NoSnap {
                        image: label,
                        snap: base.clone(),
                    });
                }
                (image, None, Found::Fresh)
            }
            (Some(_), None) if !opts.overwrite && !opts.update => {
                return Err(Error::Exists { image: label })
            }
            (Some(image), None) => (image, None, Found::Fresh),
            (None, None) => {
                let image = create(&pool, &staged_name, opts, &label)?;
                if !opts.meta.is_empty() {
                    image.meta_put_all(&opts.meta)?;
                }
                (Arc::new(image), Some(staged_name), Found::Fresh)
            }
        };
        let sink = RbdSink::new(image, &spec, temp, opts, locking)?;
        dest(sink, found, lease)
    }
}

/// Breaks the image lock a dead rbdcp (whose lease `lease` broke) left on `image`, so
/// that writing does not wait for its watch to time out. The image lock's owner is named
/// by its client address, which the lease's locker shows too.
fn release_dead(image: &Image, lease: &Lease) -> Result<()> {
    if lease.dead.is_empty() {
        return Ok(());
    }
    for owner in image.lock_owners()? {
        if lease
            .dead
            .iter()
            .any(|d| d == crate::rbd::lease::bare(&owner))
        {
            image.lock_break(&owner)?;
        }
    }
    Ok(())
}

fn dest(sink: RbdSink, found: Found, lease: Held) -> Result<Dest> {
    let store = RbdStore {
        header: sink.image.header()?,
        shared: Arc::clone(&sink.shared),
    };
    Ok(Dest::new(
        Arc::new(sink),
        Arc::new(store),
        found,
        lease.hold(),
    ))
}

/// An image's exclusive lock, taken on a thread of its own (four round trips) while the
/// job goes on; [`Locking::wait`] waits for it.
#[derive(Debug)]
struct Locking(Mutex<LockState>);

#[derive(Debug)]
enum LockState {
    Taking(std::thread::JoinHandle<Result<()>>),
    Held,
    /// Taking it failed, with this errno.
    Failed(i32),
}

impl Locking {
    fn start(image: &Arc<Image>) -> Locking {
        let image = Arc::clone(image);
        let taking = std::thread::spawn(move || image.lock_acquire());
        Locking(Mutex::new(LockState::Taking(taking)))
    }

    /// Waits until the lock is taken; its error, if taking it failed (every caller).
    fn wait(&self, label: &str) -> Result<()> {
        let mut state = self.0.lock().unwrap();
        if let LockState::Taking(_) = &*state {
            let LockState::Taking(taking) = std::mem::replace(&mut *state, LockState::Held) else {
                unreachable!("matched above")
            };
            if let Err(e) = taking.join().expect("taking a lock does not panic") {
                *state = LockState::Failed(e.errno().unwrap_or(libc::EIO));
                return Err(e);
            }
        }
        match *state {
            LockState::Failed(errno) => Err(Error::open(
                "rbd_lock_acquire",
                label,
                std::io::Error::from_raw_os_error(errno),
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for Locking {
    fn drop(&mut self) {
        // The image closes only once the lock is taken or refused: no lock is left to a
        // thread the process may not wait for.
        if let LockState::Taking(taking) =
            std::mem::replace(self.0.get_mut().unwrap(), LockState::Held)
        {
            let _ = taking.join();
        }
    }
}

/// While a `Keep` lives, the destinations of a run's jobs stay leased, and an image a
/// job wrote in place and finished stays open with its lock held, for the next job to
/// write: the steps of a history take the lease, open and lock the destination once, not
/// once each (that is 20 round trips, 150 ms 5 ms away). Dropping it closes and releases
/// what it kept.
pub struct Keep(());

/// What a [`Keep`] keeps (`None`: no `Keep` lives).
static KEPT: Mutex<Option<Vec<Kept>>> = Mutex::new(None);

/// A destination kept: the connection, and the spec, it was opened with.
struct Kept {
    cluster: Arc<Cluster>,
    spec: RbdSpec,
    lease: Arc<Lease>,
    image: Option<Open>,
}

impl Kept {
    /// Whether this is `spec`, kept in `pool`'s connection (a connection retired since
    /// is not used again).
    fn is(&self, pool: &Pool, spec: &RbdSpec) -> bool {
        Arc::ptr_eq(&self.cluster, pool.cluster()) && self.spec == *spec
    }
}

/// An image kept open.
struct Open {
    image: Arc<Image>,
    /// Re-reads the image's header, which the snapshot just made changed: the next job's
    /// first call on it would wait for that (six round trips); this overlaps them with
    /// the end of one job and the start of the next.
    refresh: std::thread::JoinHandle<()>,
}

impl Open {
    fn new(image: &Arc<Image>) -> Open {
        let fresh = Arc::clone(image);
        Open {
            image: Arc::clone(image),
            refresh: std::thread::spawn(move || drop(fresh.stat())),
        }
    }

    fn take(self) -> Arc<Image> {
        let _ = self.refresh.join();
        self.image
    }
}

impl Keep {
    /// Keeps destinations until the `Keep` drops (one `Keep` at a time).
    pub fn new() -> Keep {
        KEPT.lock().unwrap().get_or_insert_with(Vec::new);
        Keep(())
    }
}

impl Default for Keep {
    fn default() -> Keep {
        Keep::new()
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        let kept = KEPT.lock().unwrap().take();
        for k in kept.into_iter().flatten() {
            // The image closes (and gives up its lock) before the lease goes.
            drop(k.image.map(Open::take));
            k.lease.release();
        }
    }
}

/// How a job holds its destination's lease: for itself, or for a [`Keep`].
enum Held {
    Own(Lease),
    Kept(Arc<Lease>),
}

impl Held {
    fn hold(self) -> Arc<dyn super::Hold> {
        match self {
            Held::Own(lease) => Arc::new(lease),
            Held::Kept(lease) => Arc::new(KeptLease(lease)),
        }
    }
}

/// A lease a [`Keep`] keeps: the job that holds it does not release it.
struct KeptLease(Arc<Lease>);

impl super::Hold for KeptLease {
    fn retire(&self) {
        super::Hold::retire(self.0.as_ref());
        if let Some(kept) = KEPT.lock().unwrap().as_mut() {
            kept.retain(|k| !Arc::ptr_eq(&k.lease, &self.0));
        }
    }
    fn check(&self) -> Result<()> {
        self.0.check()
    }
}

/// `lease`, kept if a [`Keep`] lives.
fn keep_lease(pool: &Pool, spec: &RbdSpec, lease: Lease) -> Held {
    let mut kept = KEPT.lock().unwrap();
    let Some(kept) = kept.as_mut() else {
        return Held::Own(lease);
    };
    let lease = Arc::new(lease);
    kept.push(Kept {
        cluster: Arc::clone(pool.cluster()),
        spec: spec.clone(),
        lease: Arc::clone(&lease),
        image: None,
    });
    Held::Kept(lease)
}

/// Keeps `image`, written as `spec`, open if its lease is kept.
fn keep(pool: &Pool, spec: &RbdSpec, image: &Arc<Image>) {
    let mut kept = KEPT.lock().unwrap();
    let found = kept
        .as_mut()
        .and_then(|kept| kept.iter_mut().find(|k| k.is(pool, spec)));
    if let Some(k) = found {
        k.image = Some(Open::new(image));
    }
}

/// The kept lease of `spec` in `pool`'s connection, and its image if it is kept open.
fn kept(pool: &Pool, spec: &RbdSpec) -> Option<(Arc<Lease>, Option<Arc<Image>>)> {
    let (lease, open) = {
        let mut kept = KEPT.lock().unwrap();
        let k = kept.as_mut()?.iter_mut().find(|k| k.is(pool, spec))?;
        (Arc::clone(&k.lease), k.image.take())
    };
    // Joined outside the lock: the refresh may take six round trips.
    Some((lease, open.map(Open::take)))
}

/// Opens `name` for writing, or `None` when there is no such image.
fn open_existing(pool: &Arc<Pool>, name: &str, label: &str) -> Result<Option<Image>> {
    match Image::open(pool, name, label) {
        Ok(image) => Ok(Some(image)),
        Err(Error::Open { err, .. }) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the staged image of `spec` and the progress record in `spec` itself.
pub fn discard(spec: &RbdSpec, access: &Access) -> Result<bool> {
    let spec = spec.head();
    let label = spec.to_string();
    let pool = pool(&spec, access)?;
    let _lease = Lease::take(&pool, &spec.image, &label)?;
    let staged_name = format!("{}{STAGED}", spec.image);
    let mut any = false;
    if open_existing(&pool, &staged_name, &label)?.is_some() {
        Image::remove(&pool, &staged_name, &label)?;
        any = true;
    }
    if let Some(image) = open_existing(&pool, &spec.image, &label)? {
        if image.meta_get(RECORD_KEY)?.is_some() {
            image.meta_drop(RECORD_KEY)?;
            any = true;
        }
    }
    Ok(any)
}

/// A progress record in the destination image's own image-meta, read and written through
/// its header object, not the image handle: it is saved while the image takes its lock,
/// and cleared while it closes.
struct RbdStore {
    header: Header,
    shared: Arc<Shared>,
}

/// What the sink and the store of one destination share.
#[derive(Debug, Default)]
struct Shared {
    /// The provenance record of the snapshot [`RbdSink::finish`] makes, saved along with
    /// the first progress record, so that `finish` need not write it (a round trip fewer at
    /// the end of a job, where nothing else runs). Provenance without its snapshot means
    /// nothing: a job that finds one makes the snapshot, or fails.
    provenance: Option<(String, String)>,
    /// This run saved a progress record (with the provenance).
    saved: AtomicBool,
    /// The image's lock was refused: nothing was written, so no record is kept (not even
    /// the one a failed job leaves at its end).
    refused: AtomicBool,
}

impl Store for RbdStore {
    fn load(&self) -> Result<Option<String>> {
        self.header.get(RECORD_KEY)
    }

    fn save(&self, record: &str) -> Result<()> {
        if self.shared.refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut entries = vec![(RECORD_KEY.to_owned(), record.to_owned())];
        if !self.shared.saved.load(Ordering::Relaxed) {
            entries.extend(self.shared.provenance.clone());
        }
        self.header.put_all(&entries)?;
        self.shared.saved.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        self.header.remove(RECORD_KEY)
    }
}

/// An RBD image being written: a new one under its staged name, renamed into place by
/// `finish`, or an existing one written in place. A failed or killed run leaves the
/// staged image for a rerun to resume.
#[derive(Debug)]
pub struct RbdSink {
    image: Arc<Image>,
    spec: RbdSpec,
    label: String,
    /// The staged name of a new image, renamed to `spec.image` by `finish`.
    temp: Option<String>,
    /// The snapshot `finish` creates, and what to record with it.
    snap: Option<String>,
    provenance: Option<String>,
    /// Protect the snapshot once made.
    protect: bool,
    object_size: u64,
    /// A new image that reads as zeroes wherever it was not written (not a clone).
    blank: bool,
    /// The exclusive lock of an image written in place, being taken.
    locking: Option<Locking>,
    /// What it shares with its store.
    shared: Arc<Shared>,
    /// `finish` is done: an image written in place may be kept open (see [`Keep`]).
    finished: AtomicBool,
}

impl Drop for RbdSink {
    fn drop(&mut self) {
        if self.temp.is_none() && self.finished.load(Ordering::Relaxed) {
            keep(self.image.pool(), &self.spec, &self.image);
        }
    }
}

impl RbdSink {
    fn new(
        image: Arc<Image>,
        spec: &RbdSpec,
        temp: Option<String>,
        opts: &SinkOptions,
        locking: Option<Locking>,
    ) -> Result<RbdSink> {
        let object_size = image.stat()?.object_size;
        let blank = temp.is_some() && image.parent()?.is_none();
        let entry = opts.snap.as_ref().zip(opts.provenance.as_ref());
        Ok(RbdSink {
            image,
            spec: spec.clone(),
            label: spec.to_string(),
            temp,
            snap: opts.snap.clone(),
            provenance: opts.provenance.clone(),
            protect: opts.protect,
            object_size,
            blank,
            locking,
            shared: Arc::new(Shared {
                provenance: entry.map(|(snap, made)| (provenance_key(snap), made.clone())),
                saved: AtomicBool::new(false),
                refused: AtomicBool::new(false),
            }),
            finished: AtomicBool::new(false),
        })
    }
}

/// Creates `name` like the source: its size, object size, striping and features where the
/// cluster takes them, else the cluster's default features; a clone of `opts.clone_of`
/// when set, reading through to it no further than the source does. Returns it open.
fn create(pool: &Arc<Pool>, name: &str, opts: &SinkOptions, label: &str) -> Result<Image> {
    make(pool, name, opts, label)?;
    let image = Image::open(pool, name, label)?;
    if let Some((_, overlap)) = &opts.clone_of {
        // A clone starts at its parent's size; shrinking it to the source's overlap hides
        // what the source's parent link does not reach (growing it back reads as zeroes).
        if *overlap < image.stat()?.size {
            image.resize(*overlap)?;
        }
    }
    Ok(image)
}

fn make(pool: &Arc<Pool>, name: &str, opts: &SinkOptions, label: &str) -> Result<()> {
    let layout = &opts.layout;
    let order = layout
        .object_size
        .filter(|s| s.is_power_of_two())
        .map(|s| u64::from(s.trailing_zeros()));
    let mut create = CreateOptions {
        order,
        features: layout.features.map(|f| f & COPYABLE),
        stripe: layout.stripe,
        data_pool: opts.data_pool.clone(),
    };
    let run = |create: &CreateOptions| match &opts.clone_of {
        None => Image::create(pool, name, opts.size, create, label),
        Some((parent, _)) => {
            let from = self::pool(parent, &opts.access)?;
            let snap = parent
                .snap
                .as_deref()
                .expect("a clone's parent is a snapshot");
            Image::clone_of((&from, &parent.image, snap), pool, name, create, label)
        }
    };
    match run(&create) {
        Err(Error::Open { err, .. })
            if create.features.is_some()
                && matches!(
                    err.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
        {
            create.features = None;
            run(&create)
        }
        other => other,
    }
}

impl ImageSink for RbdSink {
    fn name(&self) -> &str {
        &self.label
    }

    fn object_size(&self) -> Option<u64> {
        Some(self.object_size)
    }

    fn zeroed(&self) -> bool {
        self.temp.is_some()
    }

    fn resize(&self, size: u64) -> Result<()> {
        if self.image.stat()?.size != size {
            self.image.resize(size)?;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.image.write(offset, data)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        // A new image reads as zeroes wherever it was not written, and each chunk is
        // written once; a clone reads as its parent there.
        if self.blank {
            return Ok(());
        }
        self.image.write_zeroes(offset, len)
    }

    fn asynchronous(&self) -> bool {
        true
    }

    fn durable_when_landed(&self) -> bool {
        // rbd_cache is off (see Cluster::configure): a write calls back once committed.
        true
    }

    fn write_async(&self, offset: u64, data: Block, done: Done) {
        self.image.write_async(offset, data, move |result, data| {
            done(result);
            drop(data);
        });
    }

    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        if self.blank {
            return done(Ok(()));
        }
        self.image.zero_async(offset, len, done);
    }

    fn ready(&self) -> Result<()> {
        let Some(locking) = &self.locking else {
            return Ok(());
        };
        let locked = locking.wait(&self.label);
        if locked.is_err() {
            self.shared.refused.store(true, Ordering::Relaxed);
            // The record this run saved while the lock was being taken goes again: with
            // nothing written, it would only stand in the way of another job. Best effort:
            // the lock's error is the one to tell.
            if self.shared.saved.swap(false, Ordering::Relaxed) {
                let _ = self.image.meta_drop(RECORD_KEY);
                if let Some((key, _)) = &self.shared.provenance {
                    let _ = self.image.meta_drop(key);
                }
            }
        }
        locked
    }

    fn flush(&self) -> Result<()> {
        self.image.flush()
    }

    fn finish(&self) -> Result<()> {
        self.flush()?;
        fault::point("after-write");
        if let Some(temp) = &self.temp {
            self.image.rename_to(temp, &self.spec.image)?;
            fault::point("after-rename");
        }
        if let Some(snap) = &self.snap {
            if let Some(made) = &self.provenance {
                if !self.shared.saved.load(Ordering::Relaxed) {
                    self.image.meta_put(&provenance_key(snap), made)?;
                }
                fault::point("after-provenance");
            }
            self.image.snap_create(snap)?;
            if self.protect {
                self.image.snap_protect(snap)?;
            }
            fault::point("after-snap");
        }
        self.finished.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// The image-meta key prefix of snapshot provenance records (see [`Managed::provenance`]).
pub const PROVENANCE: &str = "rbdcp.snap.";
/// The image-meta key prefix of the marks `rbdcp protect` sets on snapshots.
pub const PROTECTED: &str = "rbdcp.protect.";

/// An RBD image opened to manage its snapshots and rbdcp's records of them (`backup`):
/// the head, read and written by librbd itself, never by a copy.
pub struct Managed {
    image: Image,
    pool: Arc<Pool>,
    spec: RbdSpec,
}

impl Managed {
    /// Opens the head of `spec`; `None` when there is no such image.
    pub fn open(spec: &RbdSpec, access: &Access) -> Result<Option<Managed>> {
        let spec = spec.head();
        let pool = pool(&spec, access)?;
        let label = spec.to_string();
        Ok(open_existing(&pool, &spec.image, &label)?.map(|image| Managed { image, pool, spec }))
    }

    /// Opens the head of `spec`, which must exist.
    pub fn existing(spec: &RbdSpec, access: &Access) -> Result<Managed> {
        Managed::open(spec, access)?.ok_or_else(|| Error::Open {
            op: "open",
            image: spec.head().to_string(),
            err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such image"),
        })
    }

    /// The image as the user named it.
    pub fn label(&self) -> String {
        self.spec.to_string()
    }

    /// What identifies the image: its cluster's fsid, its pool's id and its own id (the
    /// fields of a provenance record).
    pub fn identity(&self) -> Result<Vec<(String, String)>> {
        Ok(vec![
            ("cluster fsid".to_owned(), self.pool.cluster().fsid()?),
            ("pool id".to_owned(), self.pool.id().to_string()),
            ("image id".to_owned(), self.image.id()?),
        ])
    }

    /// Its user snapshots, oldest first.
    pub fn snaps(&self) -> Result<Vec<crate::rbd::Snap>> {
        self.image.snaps()
    }

    /// Its user snapshots, oldest first, and the others with their namespace (see
    /// [`crate::rbd::Image::all_snaps`]).
    pub fn all_snaps(&self) -> Result<crate::rbd::AllSnaps> {
        self.image.all_snaps()
    }

    /// Creates snapshot `snap` (librbd asks the image's lock owner to, if another client
    /// holds it).
    pub fn snap_create(&self, snap: &str) -> Result<()> {
        self.image.snap_create(snap)
    }

    /// Removes snapshot `snap` and rbdcp's records of it.
    pub fn snap_remove(&self, snap: &str) -> Result<()> {
        self.image.snap_remove(snap)?;
        self.image.meta_drop(&provenance_key(snap))?;
        self.image.meta_drop(&format!("{PROTECTED}{snap}"))
    }

    /// The provenance records of its snapshots, by snapshot name: the JSON object each
    /// snapshot rbdcp made here got (the source's fsid, pool, image and snapshot ids, ...).
    pub fn provenance(&self) -> Result<Vec<(String, String)>> {
        let all = self.image.meta_list(PROVENANCE)?;
        Ok(all
            .into_iter()
            .map(|(k, v)| (k[PROVENANCE.len()..].to_owned(), v))
            .collect())
    }

    /// The snapshots marked by `rbdcp protect`.
    pub fn protected(&self) -> Result<Vec<String>> {
        let all = self.image.meta_list(PROTECTED)?;
        Ok(all
            .into_iter()
            .map(|(k, _)| k[PROTECTED.len()..].to_owned())
            .collect())
    }

    /// Marks snapshot `snap` as protected from retention, or (`on == false`) unmarks it.
    pub fn protect(&self, snap: &str, on: bool) -> Result<()> {
        if !self.image.snap_exists(snap)? {
            return Err(Error::NoSnap {
                image: self.label(),
                snap: snap.to_owned(),
            });
        }
        let key = format!("{PROTECTED}{snap}");
        match on {
            true => self.image.meta_put(&key, "1"),
            false => self.image.meta_drop(&key),
        }
    }

    /// Whether a job left a progress record in the image (an interrupted in-place copy).
    pub fn recorded(&self) -> Result<bool> {
        Ok(self.image.meta_get(RECORD_KEY)?.is_some())
    }

    /// Renames the image to `name` in its pool (closing it first).
    pub fn rename(self, name: &str) -> Result<()> {
        let Managed { image, pool, spec } = self;
        drop(image);
        Image::rename(&pool, &spec.image, name, &spec.to_string())
    }
}

/// Takes the lease of a backup of `spec` (beside the lease each copy takes on the image):
/// a second backup of the same destination fails at once with [`Error::Busy`], before it
/// touches either side.
pub fn backup_lease(spec: &RbdSpec, access: &Access) -> Result<Lease> {
    let spec = spec.head();
    let pool = pool(&spec, access)?;
    Lease::take(&pool, &format!("{}@backup", spec.image), &spec.to_string())
}

/// The progress record an interrupted job left for `spec`: in its staged image (a copy to
/// a new image) or in the image itself (one written in place).
pub fn leftover(spec: &RbdSpec, access: &Access) -> Result<Option<String>> {
    let spec = spec.head();
    let pool = pool(&spec, access)?;
    let label = spec.to_string();
    for name in [format!("{}{STAGED}", spec.image), spec.image.clone()] {
        if let Some(image) = open_existing(&pool, &name, &label)? {
            if let Some(record) = image.meta_get(RECORD_KEY)? {
                return Ok(Some(record));
            }
        }
    }
    Ok(None)
}

/// Finds the snapshot rbdcp made on `dst`'s cluster whose provenance record `made`
/// accepts (a copy of a clone's parent snapshot, say), on any image of `pool` (default:
/// `dst`'s pool and namespace) whatever its name; the image named `first` is looked at
/// first.
pub fn find_copy(
    dst: &RbdSpec,
    pool_name: Option<&str>,
    first: &str,
    made: impl Fn(&str) -> bool,
    access: &Access,
) -> Result<Option<RbdSpec>> {
    let mut spec = dst.head();
    if let Some(p) = pool_name {
        spec.pool = p.to_owned();
        spec.namespace = None;
    }
    let label = format!("pool {}", spec.pool);
    let pool = pool(&spec, access)?;
    let mut names = Image::list(&pool, &label)?;
    names.retain(|n| !n.ends_with(STAGED));
    names.sort_by_key(|n| n != first);
    for name in names {
        let image = match Image::open_read_only(&pool, &name, None, &label) {
            Err(Error::Open { err, .. }) if err.raw_os_error() == Some(libc::ENOENT) => {
                continue; // removed since listed
            }
            other => other?,
        };
        for (key, record) in image.meta_list(PROVENANCE)? {
            let snap = &key[PROVENANCE.len()..];
            if made(&record) && image.snap_exists(snap)? {
                spec.image = name;
                spec.snap = Some(snap.to_owned());
                return Ok(Some(spec));
            }
        }
    }
    Ok(None)
}
