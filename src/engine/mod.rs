//! The copy engine: it sees images only through [`ImageSource`] and [`ImageSink`], plans
//! their extents into chunks and runs the chunks on a pool of workers under a throttle.

mod apply;
mod checkpoint;
mod copy;
mod flight;
mod gate;
mod plan;
mod progress;
mod run;
mod throttle;
mod verify;

pub use apply::{apply, Piece, APPLY_JOBS};
pub use checkpoint::{Checkpoint, Hook, DEFAULT_EVERY};
pub use copy::{
    copy, default_jobs, Options, Report, Sum, DEFAULT_CHUNK, DEFAULT_IN_FLIGHT, DEFAULT_STALL,
};
pub use flight::{Block, Buffers, Done};
pub use plan::{chunk_size, is_zero, sparse_runs, Chunk, Plan, SPARSE_BLOCK, SPARSE_GAP};
pub use progress::{Progress, Silent};
pub use run::Tracker;
pub use throttle::{Limits, Pace, Throttle};
pub use verify::{check_sums, compare, compare_with, Comparison, Sample, Scan};

use crate::error::Result;

/// A run of bytes in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Where it starts, in bytes.
    pub offset: u64,
    /// How long it is, in bytes.
    pub len: u64,
    /// `true`: it holds data to read. `false`: it is known to read as zeroes (a discarded
    /// range in a diff), so the destination gets zeroes without a read.
    pub data: bool,
}

impl Extent {
    /// An extent holding data.
    pub fn data(offset: u64, len: u64) -> Self {
        Extent {
            offset,
            len,
            data: true,
        }
    }

    /// An extent known to read as zeroes.
    pub fn zero(offset: u64, len: u64) -> Self {
        Extent {
            offset,
            len,
            data: false,
        }
    }

    /// The offset just past its end.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// How an image is laid out, so that a new copy can be made like it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Object size in bytes.
    pub object_size: Option<u64>,
    /// Stripe unit and count, when not the default (one object at a time).
    pub stripe: Option<(u64, u64)>,
    /// RBD feature bits.
    pub features: Option<u64>,
}

/// What an image carries besides its bytes (RBD): what a new copy of it gets too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carries {
    /// Its key/value metadata (RBD image-meta, rbdcp's own records left out).
    pub meta: Vec<(String, String)>,
    /// Its snapshot is protected.
    pub protected: bool,
    /// The image it is a clone of, if it is one.
    pub parent: Option<Parent>,
}

/// The snapshot a clone (RBD) reads through to where it holds no data of its own, as a
/// copy needs it: to say the copy is flattened, or to find the parent's copy on the
/// destination side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// `POOL/IMAGE@SNAP`, for messages.
    pub label: String,
    /// The parent image's name.
    pub name: String,
    /// What identifies the parent image: its cluster fsid, pool id and image id.
    pub image: Vec<(String, String)>,
    /// The parent snapshot's id.
    pub snap_id: u64,
    /// The bytes of the clone, from its start, that read through to the parent.
    pub overlap: u64,
}

/// An image the engine reads from.
pub trait ImageSource: Send + Sync {
    /// The image as the user named it, for messages.
    fn name(&self) -> &str;

    /// Its size in bytes.
    fn size(&self) -> u64;

    /// Its object size, where it has one: chunks are aligned to it.
    fn object_size(&self) -> Option<u64> {
        None
    }

    /// Its layout, for creating a destination like it.
    fn layout(&self) -> Layout {
        Layout {
            object_size: self.object_size(),
            ..Layout::default()
        }
    }

    /// The snapshot the extents are relative to: `None` means they are relative to an
    /// empty image (a full copy), `Some(base)` that the destination must already hold `base`.
    fn base(&self) -> Option<&str> {
        None
    }

    /// What identifies the bytes it holds, as (what, value) pairs: a resumed job checks
    /// that none changed since its progress record was made.
    fn identity(&self) -> Vec<(String, String)> {
        vec![
            ("name".into(), self.name().to_owned()),
            ("size".into(), self.size().to_string()),
        ]
    }

    /// The extents that may differ from the base, in offset order: data to read, and
    /// ranges known to be zero. Anything else reads as the base does (zeroes for a full copy).
    fn extents(&self) -> Result<Vec<Extent>>;

    /// What it carries besides its bytes, for a new copy of it.
    fn carries(&self) -> Result<Carries> {
        Ok(Carries::default())
    }

    /// How [`ImageSource::extents`] finds them, for reports (`fast-diff+exact`, `exact`,
    /// `whole-object`); `None` where there is no such choice.
    fn diff_mode(&self) -> Option<&'static str> {
        None
    }

    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// `true` when [`ImageSource::read_async`] returns before the read is done, so that a
    /// few threads keep many reads in flight.
    fn reads_async(&self) -> bool {
        false
    }

    /// Starts reading `len` bytes at `offset` into `buf` (what it held is replaced, its
    /// room reused); calls `done` with the result and the buffer, `len` bytes long after a
    /// success, on any thread. The default reads at once.
    fn read_async(&self, offset: u64, len: usize, mut buf: Vec<u8>, done: Filled) {
        buf.truncate(len);
        buf.resize(len, 0);
        let result = self.read_at(offset, &mut buf);
        done(result, buf);
    }
}

/// Called once with the outcome of an asynchronous read and the buffer it read into.
pub type Filled = Box<dyn FnOnce(Result<()>, Vec<u8>) + Send>;

/// An image the engine writes to. Nothing it writes is visible under its final name
/// (or as its final snapshot) until [`ImageSink::finish`] succeeds.
pub trait ImageSink: Send + Sync {
    /// The image as the user named it, for messages.
    fn name(&self) -> &str;

    /// Its object size, where it has one.
    fn object_size(&self) -> Option<u64> {
        None
    }

    /// `true` when writes must arrive in offset order (a stream): chunks are still read in
    /// parallel, but each waits for the ones before it to be written.
    fn ordered(&self) -> bool {
        false
    }

    /// `true` when every byte not written already reads as the source's holes do (a new
    /// image reads as zeroes, a new clone as the parent it shares with the source), so
    /// full copies can skip them.
    fn zeroed(&self) -> bool;

    /// Makes the image `size` bytes long.
    fn resize(&self, size: u64) -> Result<()>;

    /// Reserves space for a range about to be written, where the backend can.
    fn allocate(&self, _offset: u64, _len: u64) -> Result<()> {
        Ok(())
    }

    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// Makes `len` bytes at `offset` read as zeroes, as a hole where the backend can.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()>;

    /// `true` when [`ImageSink::write_async`] returns before the write lands, so that a few
    /// threads keep many writes in flight.
    fn asynchronous(&self) -> bool {
        false
    }

    /// Starts writing `data` at `offset`; calls `done` with the result once it has landed,
    /// on any thread, and only then drops `data`. The default writes at once.
    fn write_async(&self, offset: u64, data: Block, done: Done) {
        done(self.write_at(offset, &data));
    }

    /// Starts making `len` bytes at `offset` read as zeroes; calls `done` as
    /// [`ImageSink::write_async`] does. The default zeroes at once.
    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        done(self.write_zeroes(offset, len));
    }

    /// Waits until the image takes writes: an RBD image written in place takes its
    /// exclusive lock meanwhile, while the job saves its progress record and the copy
    /// starts its first reads. The engine calls it before its first write or resize.
    fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;

    /// `true` when a write is durable once it has landed (called back), so a checkpoint
    /// need not [`ImageSink::flush`] first: RBD with librbd's cache off, where a write
    /// completes once the OSDs committed it.
    fn durable_when_landed(&self) -> bool {
        false
    }

    /// Makes the result durable and visible; called once, after every write succeeded.
    fn finish(&self) -> Result<()>;
}
