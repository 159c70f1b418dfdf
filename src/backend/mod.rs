//! Backends: what the engine reads from and writes to, and [`open_source`]/[`open_sink`],
//! which map a [`Location`] to one of them.

pub mod file;
pub mod mem;
pub mod rbd;
pub mod sidecar;
pub mod stream;

use crate::engine::{ImageSink, ImageSource, Layout};
use crate::error::{Error, Result};
use crate::location::Location;
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
}

/// How to open a destination.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Replace an existing image instead of refusing.
    pub overwrite: bool,
    /// The snapshot an incremental copy starts from: the destination must hold it.
    pub base: Option<String>,
    /// The snapshot to create on an RBD destination once every write succeeded.
    pub snap: Option<String>,
    /// The size of a new image.
    pub size: u64,
    /// The shape of a new image.
    pub layout: Layout,
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

/// Opens `loc` for writing, creating it when missing.
pub fn open_sink(loc: &Location, opts: &SinkOptions) -> Result<Box<dyn ImageSink>> {
    match loc {
        Location::Path(path) => Ok(Box::new(file::FileSink::create(path, opts)?)),
        Location::Rbd(spec) => Ok(Box::new(rbd::RbdSink::open(spec, opts)?)),
        Location::Stdio => Err(no_stream()),
    }
}

fn no_stream() -> Error {
    Error::Unsupported("`-` (a stream) cannot be read or written at random offsets; name an image file, a device or an rbd: image".into())
}
