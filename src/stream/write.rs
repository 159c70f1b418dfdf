//! Writes a v1 diff stream, record by record; only tags `rbd import-diff` knows.

use std::io::Write;

use super::{tag, BANNER};

/// A diff stream being written to `W`.
pub struct Writer<W> {
    inner: W,
}

impl<W: Write> Writer<W> {
    /// Writes the banner and the header records.
    pub fn start(
        mut inner: W,
        from: Option<&str>,
        to: Option<&str>,
        size: u64,
    ) -> std::io::Result<Writer<W>> {
        inner.write_all(BANNER)?;
        let mut w = Writer { inner };
        if let Some(from) = from {
            w.name(tag::FROM, from)?;
        }
        if let Some(to) = to {
            w.name(tag::TO, to)?;
        }
        w.inner.write_all(&[tag::SIZE])?;
        w.inner.write_all(&size.to_le_bytes())?;
        Ok(w)
    }

    fn name(&mut self, t: u8, name: &str) -> std::io::Result<()> {
        self.inner.write_all(&[t])?;
        self.inner.write_all(&(name.len() as u32).to_le_bytes())?;
        self.inner.write_all(name.as_bytes())
    }

    /// A `w` record: `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.extent(tag::WRITE, offset, data.len() as u64)?;
        self.inner.write_all(data)
    }

    /// A `z` record: `len` zeroes at `offset`.
    pub fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        self.extent(tag::ZERO, offset, len)
    }

    fn extent(&mut self, t: u8, offset: u64, len: u64) -> std::io::Result<()> {
        let mut head = [0u8; 17];
        head[0] = t;
        head[1..9].copy_from_slice(&offset.to_le_bytes());
        head[9..].copy_from_slice(&len.to_le_bytes());
        self.inner.write_all(&head)
    }

    /// The end record; returns the writer, flushed.
    pub fn end(mut self) -> std::io::Result<W> {
        self.inner.write_all(&[tag::END])?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}
