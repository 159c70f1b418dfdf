//! rbdcp: fast, parallel, rate-limited copies of Ceph RBD images and raw block images.
//!
//! The layers, from the bottom: [`engine`] plans extents into chunks and runs them on a
//! worker pool behind the [`ImageSource`]/[`ImageSink`] traits; [`backend`] implements those
//! traits for local files and devices (and, in memory, for tests); [`location`] parses the
//! command line's image names. The `rbdcp` binary is a thin layer over this library.

pub mod backend;
pub mod engine;
pub mod error;
pub mod fault;
pub mod job;
pub mod location;
#[allow(unsafe_code)]
pub mod rbd;
pub mod size;
pub mod stream;

pub use engine::{Extent, ImageSink, ImageSource};
pub use error::{Error, Result};
pub use location::{Location, RbdSpec};
