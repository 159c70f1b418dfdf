//! The `rbd diff v1` stream that `rbd export-diff` writes and `rbd import-diff` reads:
//! a banner, then `f`/`t`/`s` records, `w`/`z` records in offset order, and `e`.
//!
//! Layout (Ceph's `doc/dev/rbd-diff.rst`, `src/tools/rbd/action/Export.cc`): every number
//! is little-endian; a name is a le32 length and its bytes.
//! `f` from-snap name, `t` to-snap name, `s` le64 image size, `w` le64 offset, le64
//! length and the data, `z` le64 offset and le64 length, `e` the end.

mod read;
mod write;

pub use read::{Header, Reader, Record};
pub use write::Writer;

/// The first 12 bytes of every v1 diff stream.
pub const BANNER: &[u8; 12] = b"rbd diff v1\n";

/// The longest snapshot name `rbd import-diff` accepts.
pub const MAX_NAME: u32 = 4096;

/// Record tags.
pub mod tag {
    /// From snapshot.
    pub const FROM: u8 = b'f';
    /// To snapshot.
    pub const TO: u8 = b't';
    /// Image size.
    pub const SIZE: u8 = b's';
    /// Data.
    pub const WRITE: u8 = b'w';
    /// Zeroes.
    pub const ZERO: u8 = b'z';
    /// End.
    pub const END: u8 = b'e';
}
