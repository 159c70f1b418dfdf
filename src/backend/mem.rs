//! An in-memory image for fast unit and property tests: sparse in 4 KiB blocks, usable as
//! a source and a sink, with an optional injected failure.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use crate::engine::{Block, Done, Extent, Filled, ImageSink, ImageSource};
use crate::error::{Error, Result};

/// The allocation unit of a [`MemImage`].
pub const BLOCK: u64 = 4096;

/// A sparse image held in memory.
#[derive(Debug)]
pub struct MemImage {
    name: String,
    state: RwLock<State>,
    zeroed: bool,
    object_size: Option<u64>,
    fail_at: Option<u64>,
    deferred: bool,
    finished: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    bytes: Vec<u8>,
    /// Indexes of allocated blocks; the rest are holes.
    blocks: BTreeSet<u64>,
}

impl MemImage {
    /// A new, empty (all-hole) image of `size` bytes.
    pub fn new(name: &str, size: u64) -> MemImage {
        let state = State {
            bytes: vec![0; size as usize],
            blocks: BTreeSet::new(),
        };
        MemImage {
            name: name.to_owned(),
            state: RwLock::new(state),
            zeroed: true,
            object_size: None,
            fail_at: None,
            deferred: false,
            finished: AtomicBool::new(false),
        }
    }

    /// An image of `size` bytes, all allocated and holding `byte`: a used device, written in place.
    pub fn filled(name: &str, size: u64, byte: u8) -> MemImage {
        let mut img = MemImage::new(name, size);
        img.zeroed = false;
        img.put(0, &vec![byte; size as usize]);
        img
    }

    /// The same image, with an object size.
    pub fn with_object_size(mut self, size: u64) -> Self {
        self.object_size = Some(size);
        self
    }

    /// The same image, failing any read or write that touches `offset`.
    pub fn failing_at(mut self, offset: u64) -> Self {
        self.fail_at = Some(offset);
        self
    }

    /// The same image as an asynchronous sink: each write lands at once, but says so later,
    /// from another thread, so completions come back out of order as librbd's do.
    pub fn deferred(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// Calls `done` with `result` later, from another thread, then drops `data`.
    fn later<D: Send + 'static>(offset: u64, result: Result<()>, data: D, done: Done) {
        std::thread::spawn(move || {
            // Some later writes overtake earlier ones.
            std::thread::sleep(std::time::Duration::from_micros(offset % 7 * 50));
            done(result);
            drop(data);
        });
    }

    /// Writes `data` at `offset` outside any job, allocating the blocks it touches.
    pub fn put(&self, offset: u64, data: &[u8]) {
        let mut s = self.state.write().unwrap();
        let end = offset + data.len() as u64;
        s.bytes[offset as usize..end as usize].copy_from_slice(data);
        s.blocks.extend(offset / BLOCK..end.div_ceil(BLOCK));
    }

    /// A copy of all its bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.state.read().unwrap().bytes.clone()
    }

    /// Whether block `index` is allocated.
    pub fn allocated(&self, index: u64) -> bool {
        self.state.read().unwrap().blocks.contains(&index)
    }

    /// Whether `finish` was called.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    fn check(&self, op: &'static str, offset: u64, len: u64) -> Result<()> {
        let size = self.state.read().unwrap().bytes.len() as u64;
        if offset + len > size {
            return Err(Error::io(
                op,
                &self.name,
                offset,
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        match self.fail_at {
            Some(at) if (offset..offset + len).contains(&at) => Err(Error::io(
                op,
                &self.name,
                offset,
                io::Error::other("injected failure"),
            )),
            _ => Ok(()),
        }
    }
}

impl ImageSource for MemImage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.state.read().unwrap().bytes.len() as u64
    }

    fn object_size(&self) -> Option<u64> {
        self.object_size
    }

    fn extents(&self) -> Result<Vec<Extent>> {
        let s = self.state.read().unwrap();
        let size = s.bytes.len() as u64;
        let mut out: Vec<Extent> = Vec::new();
        for &b in &s.blocks {
            let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(size));
            match out.last_mut() {
                Some(last) if last.end() == start => last.len = end - last.offset,
                _ => out.push(Extent::data(start, end - start)),
            }
        }
        Ok(out)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check("read", offset, buf.len() as u64)?;
        let s = self.state.read().unwrap();
        buf.copy_from_slice(&s.bytes[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn reads_async(&self) -> bool {
        self.deferred
    }

    fn read_async(&self, offset: u64, len: usize, mut buf: Vec<u8>, done: Filled) {
        buf.clear();
        buf.resize(len, 0);
        let result = self.read_at(offset, &mut buf);
        if !self.deferred {
            return done(result, buf);
        }
        std::thread::spawn(move || {
            // Some later reads overtake earlier ones.
            std::thread::sleep(std::time::Duration::from_micros(offset % 5 * 60));
            done(result, buf);
        });
    }
}

impl ImageSink for MemImage {
    fn name(&self) -> &str {
        &self.name
    }

    fn object_size(&self) -> Option<u64> {
        self.object_size
    }

    fn zeroed(&self) -> bool {
        self.zeroed
    }

    fn resize(&self, size: u64) -> Result<()> {
        let mut s = self.state.write().unwrap();
        s.bytes.resize(size as usize, 0);
        s.blocks.retain(|&b| b * BLOCK < size);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check("write", offset, data.len() as u64)?;
        self.put(offset, data);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check("write zeroes", offset, len)?;
        let mut s = self.state.write().unwrap();
        s.bytes[offset as usize..(offset + len) as usize].fill(0);
        // Blocks wholly inside the range become holes, as a punched file's would.
        let (size, end) = (s.bytes.len() as u64, offset + len);
        s.blocks
            .retain(|&b| !(b * BLOCK >= offset && ((b + 1) * BLOCK).min(size) <= end));
        Ok(())
    }

    fn asynchronous(&self) -> bool {
        self.deferred
    }

    fn write_async(&self, offset: u64, data: Block, done: Done) {
        let result = self.write_at(offset, &data);
        MemImage::later(offset, result, data, done);
    }

    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        MemImage::later(offset, self.write_zeroes(offset, len), (), done);
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        self.finished.store(true, Ordering::Relaxed);
        Ok(())
    }
}
