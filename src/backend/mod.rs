//! Backends: what the engine reads from and writes to, and [`open_source`]/[`open_sink`],
//! which map a [`Location`] to one of them.

pub mod file;
pub mod mem;

use crate::engine::{ImageSink, ImageSource};
use crate::error::{Error, Result};
use crate::location::Location;

/// How to open a destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkOptions {
    /// Replace an existing image instead of refusing.
    pub overwrite: bool,
}

/// Opens `loc` for reading.
pub fn open_source(loc: &Location) -> Result<Box<dyn ImageSource>> {
    match loc {
        Location::Path(path) => Ok(Box::new(file::FileSource::open(path)?)),
        Location::Rbd(spec) => Err(Error::Unsupported(format!(
            "{spec}: this build has no RBD backend yet; only local images can be read"
        ))),
        Location::Stdio => Err(no_stream()),
    }
}

/// Opens `loc` for writing, creating it when missing.
pub fn open_sink(loc: &Location, opts: &SinkOptions) -> Result<Box<dyn ImageSink>> {
    match loc {
        Location::Path(path) => Ok(Box::new(file::FileSink::create(path, opts)?)),
        Location::Rbd(spec) => Err(Error::Unsupported(format!(
            "{spec}: this build has no RBD backend yet; only local images can be written"
        ))),
        Location::Stdio => Err(no_stream()),
    }
}

fn no_stream() -> Error {
    Error::Unsupported("`-` (a stream) cannot be read or written at random offsets; name an image file, a device or an rbd: image".into())
}
