//! RBD images as sources (read-only, at a snapshot, optionally since a base snapshot) and
//! sinks (a new image under a temporary name, renamed at the end; or an existing one in place).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use librbd_sys as sys;

use super::{SinkOptions, SourceOptions};
use crate::engine::{Block, Done, Extent, ImageSink, ImageSource, Layout};
use crate::error::{Error, Result};
use crate::location::RbdSpec;
use crate::rbd::{Access, Cluster, CreateOptions, Image, Pool, Stat};

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
    }
}

/// Connections alive in this process, by how they were reached: a source and a sink in one
/// cluster share one (one set of messenger threads and sockets, one handshake).
static CLUSTERS: Mutex<Vec<(Access, Weak<Cluster>)>> = Mutex::new(Vec::new());

fn cluster(access: &Access) -> Result<Arc<Cluster>> {
    let mut known = CLUSTERS.lock().unwrap();
    known.retain(|(_, c)| c.strong_count() > 0);
    if let Some(cluster) = known
        .iter()
        .find(|(a, _)| a == access)
        .and_then(|(_, c)| c.upgrade())
    {
        return Ok(cluster);
    }
    let cluster = Cluster::connect(access)?;
    known.push((access.clone(), Arc::downgrade(&cluster)));
    Ok(cluster)
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
    whole_object: bool,
}

impl RbdSource {
    /// Opens `spec` for reading; with `opts.base`, its extents are those changed since that snapshot.
    pub fn open(spec: &RbdSpec, opts: &SourceOptions) -> Result<RbdSource> {
        let label = spec.to_string();
        let pool = pool(spec, &opts.access)?;
        let image = match Image::open_read_only(&pool, &spec.image, spec.snap.as_deref(), &label) {
            Err(Error::Open { err, .. }) if err.raw_os_error() == Some(2) => {
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
        let whole_object = opts.whole_object && stat.fast_diff();
        Ok(RbdSource {
            image,
            label,
            stat,
            base: opts.base.clone(),
            whole_object,
        })
    }

    /// The extents as librbd reports them, one per callback (what `rbd diff` prints).
    pub fn diff(&self) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        self.image.diff(
            self.base.as_deref(),
            self.stat.size,
            self.whole_object,
            |offset, len, data| {
                out.push(Extent { offset, len, data });
            },
        )?;
        Ok(out)
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
        self.diff()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.image.read(offset, buf)
    }
}

/// An RBD image being written: a new one under a temporary name, renamed into place by
/// `finish` (and removed on drop if never finished), or an existing one written in place.
#[derive(Debug)]
pub struct RbdSink {
    /// `None` only while being dropped.
    image: Option<Image>,
    pool: Arc<Pool>,
    spec: RbdSpec,
    label: String,
    /// The temporary name of a new image, renamed to `spec.image` by `finish`.
    temp: Option<String>,
    /// The snapshot `finish` creates.
    snap: Option<String>,
    object_size: u64,
    finished: AtomicBool,
}

impl RbdSink {
    /// Opens or creates `spec` as `opts` says. Everything that can be checked is checked
    /// here, before a byte is written: the base snapshot for an incremental copy, a snapshot
    /// that already exists, an image that exists without `--overwrite`.
    pub fn open(spec: &RbdSpec, opts: &SinkOptions) -> Result<RbdSink> {
        let spec = spec.head();
        let label = spec.to_string();
        let pool = pool(&spec, &opts.access)?;
        let existing = match Image::open(&pool, &spec.image, &label) {
            Ok(image) => Some(image),
            Err(Error::Open { err, .. }) if err.raw_os_error() == Some(2) => None,
            Err(e) => return Err(e),
        };
        let (image, temp) = match (existing, &opts.base) {
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
                (image, None)
            }
            (Some(_), None) if !opts.overwrite => return Err(Error::Exists { image: label }),
            (Some(image), None) => (image, None),
            (None, None) => {
                let temp = format!("{}.rbdcp-partial.{}", spec.image, std::process::id());
                create(&pool, &temp, opts, &label)?;
                let image = Image::open(&pool, &temp, &label)?;
                (image, Some(temp))
            }
        };
        let mut sink = RbdSink {
            object_size: 0,
            image: Some(image),
            pool,
            spec,
            label,
            temp,
            snap: opts.snap.clone(),
            finished: AtomicBool::new(false),
        };
        if let Some(snap) = &sink.snap {
            if sink.image().snap_exists(snap)? {
                return Err(Error::SnapExists {
                    image: sink.label.clone(),
                    snap: snap.clone(),
                });
            }
        }
        sink.object_size = sink.image().stat()?.object_size;
        Ok(sink)
    }

    fn image(&self) -> &Image {
        self.image.as_ref().expect("the image is open until drop")
    }
}

/// Creates `name` like the source: its size, object size, striping and features where the
/// cluster takes them, else the cluster's default features.
fn create(pool: &Arc<Pool>, name: &str, opts: &SinkOptions, label: &str) -> Result<()> {
    let layout = &opts.layout;
    let order = layout
        .object_size
        .filter(|s| s.is_power_of_two())
        .map(|s| u64::from(s.trailing_zeros()));
    let mut create = CreateOptions {
        order,
        features: layout.features.map(|f| f & COPYABLE),
        stripe: layout.stripe,
    };
    match Image::create(pool, name, opts.size, &create, label) {
        Err(Error::Open { err, .. })
            if create.features.is_some() && matches!(err.raw_os_error(), Some(22 | 38 | 95)) =>
        {
            create.features = None;
            Image::create(pool, name, opts.size, &create, label)
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
        if self.image().stat()?.size != size {
            self.image().resize(size)?;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.image().write(offset, data)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        // A new image reads as zeroes wherever it was not written, and each chunk is
        // written once.
        if self.zeroed() {
            return Ok(());
        }
        self.image().write_zeroes(offset, len)
    }

    fn asynchronous(&self) -> bool {
        true
    }

    fn write_async(&self, offset: u64, data: Block, done: Done) {
        self.image().write_async(offset, data, move |result, data| {
            done(result);
            drop(data);
        });
    }

    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        if self.zeroed() {
            return done(Ok(()));
        }
        self.image().zero_async(offset, len, done);
    }

    fn flush(&self) -> Result<()> {
        self.image().flush()
    }

    fn finish(&self) -> Result<()> {
        self.flush()?;
        if let Some(temp) = &self.temp {
            Image::rename(&self.pool, temp, &self.spec.image, &self.label).map_err(
                |e| match e {
                    Error::Open { err, .. } if err.raw_os_error() == Some(17) => Error::Exists {
                        image: self.label.clone(),
                    },
                    e => e,
                },
            )?;
        }
        self.finished.store(true, Ordering::Relaxed);
        if let Some(snap) = &self.snap {
            self.image().snap_create(snap)?;
        }
        Ok(())
    }
}

impl Drop for RbdSink {
    fn drop(&mut self) {
        drop(self.image.take());
        if let (Some(temp), false) = (&self.temp, self.finished.load(Ordering::Relaxed)) {
            // Best effort: a failed copy leaves no partial image behind. If this fails too,
            // the temporary name says what it is.
            let _ = Image::remove(&self.pool, temp, &self.label);
        }
    }
}
