//! Backends: what the engine reads from and writes to, and [`open_source`]/[`open_dest`],
//! which map a [`Location`] to one of them.

pub mod file;
pub mod mem;
pub mod rbd;
pub mod retry;
pub mod sidecar;
pub mod stage;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{ImageSink, ImageSource, Layout};
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};
pub use crate::rbd::Access;

/// How to open a source.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Only the extents changed since this snapshot (an incremental copy).
    pub base: Option<String>,
    /// Ask librbd for whole changed objects instead of exact extents: much faster to list
    /// on big thin images, but every changed object is then copied whole. Honoured only
    /// where fast-diff is on and its map valid.
    pub whole_object: bool,
    /// How to reach a cluster when the location does not say.
    pub access: Access,
    /// Of a clone, only the data it holds itself (its objects, whole), not what it reads
    /// through from its parent: for a copy onto a clone of the parent's copy.
    pub own_data: bool,
    /// List the extents while opening, for the first call of
    /// [`crate::engine::ImageSource::extents`]: a job opens its source while the
    /// destination opens, so the listing's round trips overlap the destination's.
    pub list: bool,
}

/// How to open a destination.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Replace an existing image instead of refusing.
    pub overwrite: bool,
    /// Update an existing image in place (as `rbd import-diff` does), instead of refusing
    /// or replacing it.
    pub update: bool,
    /// Throw away what an earlier run staged and recorded, and start over.
    pub restart: bool,
    /// What to record with the snapshot `finish` creates (where it came from); a
    /// destination that already holds that snapshot with this very record is complete.
    pub provenance: Option<String>,
    /// The snapshot an incremental copy starts from: the destination must hold it.
    pub base: Option<String>,
    /// The snapshot to create on an RBD destination once every write succeeded.
    pub snap: Option<String>,
    /// The size of a new image.
    pub size: u64,
    /// The shape of a new image.
    pub layout: Layout,
    /// The key/values a new RBD image gets in its image-meta.
    pub meta: Vec<(String, String)>,
    /// The pool of a new RBD image's data (`rbd create --data-pool`).
    pub data_pool: Option<String>,
    /// Create a new RBD image as a clone of this snapshot (on the destination's cluster),
    /// reading through to it for the first `overlap` bytes.
    pub clone_of: Option<(RbdSpec, u64)>,
    /// Protect the snapshot made at the end.
    pub protect: bool,
    /// How to reach a cluster when the location does not say.
    pub access: Access,
}

/// Opens `loc` for reading.
pub fn open_source(loc: &Location, opts: &SourceOptions) -> Result<Box<dyn ImageSource>> {
    match loc {
        Location::Path(path) if opts.base.is_some() => Err(Error::Unsupported(format!(
            "{}: a local image has no snapshots; --from-snap needs an rbd: source",
            path.display()
        ))),
        Location::Path(path) => Ok(Box::new(file::FileSource::open(path)?)),
        Location::Rbd(spec) => Ok(Box::new(rbd::RbdSource::open(spec, opts)?)),
        Location::Stdio => Err(no_stream()),
    }
}

/// Where a job's progress record lives: with its destination.
pub trait Store: Send + Sync {
    /// The record, if one was saved.
    fn load(&self) -> Result<Option<String>>;
    /// Replaces the record, atomically and durably.
    fn save(&self, record: &str) -> Result<()>;
    /// Removes the record; none is no error.
    fn clear(&self) -> Result<()>;
}

/// What an earlier run left at a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing: a fresh start.
    Fresh,
    /// A staged image or file and its record.
    Staged,
    /// The destination itself holds a record: an in-place job, or a staged one killed
    /// after its rename.
    Recorded,
    /// The destination already holds the job's result: its snapshot, with the provenance
    /// asked for.
    Complete,
}

/// A destination opened for a job: held against other runs until dropped.
pub struct Dest {
    /// Where the data goes.
    pub sink: Arc<dyn ImageSink>,
    /// Where the progress record goes.
    pub store: Arc<dyn Store>,
    /// What an earlier run left.
    pub found: Found,
    /// The lock or lease; dropped after the sink.
    hold: Arc<dyn Hold>,
}

/// What holds a destination against other runs: a lock or a lease.
pub trait Hold: Send + Sync {
    /// Gives up the connection it was taken on (its client was blocklisted, or stopped
    /// answering): the next open in this process connects afresh and breaks this hold
    /// (and fences its client), rather than waiting for it.
    fn retire(&self) {}

    /// Whether it still holds (a lease can be lost: its client blocklisted, its renewals
    /// failing); a job checks before each progress record.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Gives it up now, before it drops: a job whose record is gone is done with its
    /// destination, even while the destination still closes.
    fn release(&self) {}
}

impl Hold for stage::Lock {}

impl Dest {
    /// A destination of `sink`, its record in `store`, held by `hold` until dropped.
    pub fn new(
        sink: Arc<dyn ImageSink>,
        store: Arc<dyn Store>,
        found: Found,
        hold: Arc<dyn Hold>,
    ) -> Dest {
        Dest {
            sink,
            store,
            found,
            hold,
        }
    }

    /// What holds the destination.
    pub fn hold(&self) -> Arc<dyn Hold> {
        Arc::clone(&self.hold)
    }

    /// Gives up the connection this destination was opened on; see [`Hold::retire`].
    pub fn retire(&self) {
        self.hold.retire();
    }
}

/// Opens `loc` for a job: takes its lock or lease (or fails with [`Error::Busy`]), finds
/// what an earlier run left there, and opens or creates it as `opts` says.
pub fn open_dest(loc: &Location, opts: &SinkOptions) -> Result<Dest> {
    prepare_dest(loc, &opts.access)?.open(opts)
}

/// A destination held for a job (its lock or lease taken, an RBD image's staged and
/// final images open), before the source says how to write it: a job prepares it while
/// it opens the source.
pub enum Prepared {
    /// A file or device, its lock taken.
    Path(PathBuf, stage::Names, stage::Lock),
    /// An RBD image.
    Rbd(Box<rbd::Prepared>),
}

/// Takes `loc`'s lock or lease (or fails with [`Error::Busy`]) and opens what is there.
pub fn prepare_dest(loc: &Location, access: &Access) -> Result<Prepared> {
    match loc {
        Location::Path(path) => {
            let label = path.display().to_string();
            let names = stage::Names::of(path);
            let lock = stage::Lock::take(&names, &label)?;
            Ok(Prepared::Path(path.clone(), names, lock))
        }
        Location::Rbd(spec) => Ok(Prepared::Rbd(Box::new(rbd::prepare(spec, access)?))),
        Location::Stdio => Err(no_stream()),
    }
}

impl Prepared {
    /// Finds what an earlier run left and opens or creates the destination as `opts` says.
    pub fn open(self, opts: &SinkOptions) -> Result<Dest> {
        match self {
            Prepared::Path(path, names, lock) => {
                let label = path.display().to_string();
                let (sink, found) = file::FileSink::open(&path, &names, opts)?;
                let store = stage::FileStore::new(&names, &label);
                Ok(Dest::new(
                    Arc::new(sink),
                    Arc::new(store),
                    found,
                    Arc::new(lock),
                ))
            }
            Prepared::Rbd(p) => p.open(opts),
        }
    }
}

/// Removes what a run staged for destination `loc` (a staged image or file) and its
/// progress record, and nothing else. Returns whether there was anything; fails with
/// [`Error::Busy`] while a live run holds it.
pub fn discard(loc: &Location, access: &Access) -> Result<bool> {
    match loc {
        Location::Path(path) => {
            let label = path.display().to_string();
            let names = stage::Names::of(path);
            let _lock = stage::Lock::take(&names, &label)?;
            let staged = stage::remove(&names.staged, &label)?;
            let record = stage::remove(&names.record, &label)?;
            if staged || record {
                stage::sync_dir(path, &label)?;
            }
            Ok(staged || record)
        }
        Location::Rbd(spec) => rbd::discard(spec, access),
        Location::Stdio => Err(no_stream()),
    }
}

fn no_stream() -> Error {
    Error::Unsupported("`-` (a stream) cannot be read or written at random offsets; name an image file, a device or an rbd: image".into())
}
