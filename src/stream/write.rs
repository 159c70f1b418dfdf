//! Writes diff streams, record by record (v1, and the v2 diffs of an image stream), and
//! an image stream's header; only tags `rbd import-diff` and `rbd import` know.

use std::io::Write;

use super::{image, tag, ImageHeader, BANNER, BANNER_V2};

/// A diff stream being written to `W`.
pub struct Writer<W> {
    inner: W,
    /// Records carry their payload's length.
    v2: bool,
}

impl<W: Write> Writer<W> {
    /// Writes the banner and the header records of a v1 diff.
    pub fn start(
        inner: W,
        from: Option<&str>,
        to: Option<&str>,
        size: u64,
    ) -> std::io::Result<Writer<W>> {
        Writer::begin(inner, false, from, to.map(|t| (t, false)), size)
    }

    /// Writes the banner and the header records of a diff (`v2`: a v2 one, which says
    /// whether the to-snap is protected).
    pub fn begin(
        mut inner: W,
        v2: bool,
        from: Option<&str>,
        to: Option<(&str, bool)>,
        size: u64,
    ) -> std::io::Result<Writer<W>> {
        inner.write_all(if v2 { BANNER_V2 } else { BANNER })?;
        let mut w = Writer { inner, v2 };
        if let Some(from) = from {
            w.name(tag::FROM, from)?;
        }
        if let Some((to, protected)) = to {
            w.name(tag::TO, to)?;
            if v2 {
                w.head(tag::PROTECT, 1)?;
                w.inner.write_all(&[u8::from(protected)])?;
            }
        }
        w.head(tag::SIZE, 8)?;
        w.inner.write_all(&size.to_le_bytes())?;
        Ok(w)
    }

    /// A record's tag, and in v2 its payload length.
    fn head(&mut self, t: u8, payload: u64) -> std::io::Result<()> {
        self.inner.write_all(&[t])?;
        if self.v2 {
            self.inner.write_all(&payload.to_le_bytes())?;
        }
        Ok(())
    }

    fn name(&mut self, t: u8, name: &str) -> std::io::Result<()> {
        self.head(t, 4 + name.len() as u64)?;
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
        let payload = if t == tag::WRITE { 16 + len } else { 16 };
        self.head(t, payload)?;
        let mut fields = [0u8; 16];
        fields[..8].copy_from_slice(&offset.to_le_bytes());
        fields[8..].copy_from_slice(&len.to_le_bytes());
        self.inner.write_all(&fields)
    }

    /// The end record; returns the writer, flushed.
    pub fn end(mut self) -> std::io::Result<W> {
        self.inner.write_all(&[tag::END])?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Writes an image stream's header, up to and with the number of diffs, as
/// `rbd export --export-format 2` does (every field present, image-meta in key order).
pub fn image_header(out: &mut impl Write, h: &ImageHeader) -> std::io::Result<()> {
    out.write_all(image::BANNER)?;
    let fields = [
        (image::ORDER, h.order),
        (image::FEATURES, h.features),
        (image::STRIPE_UNIT, h.stripe_unit),
        (image::STRIPE_COUNT, h.stripe_count),
    ];
    for (t, value) in fields {
        if let Some(v) = value {
            out.write_all(&[t])?;
            out.write_all(&8u64.to_le_bytes())?;
            out.write_all(&v.to_le_bytes())?;
        }
    }
    for (key, value) in &h.meta {
        out.write_all(&[image::META])?;
        out.write_all(&(8 + key.len() as u64 + value.len() as u64).to_le_bytes())?;
        for s in [key, value] {
            out.write_all(&(s.len() as u32).to_le_bytes())?;
            out.write_all(s.as_bytes())?;
        }
    }
    out.write_all(&[image::END])?;
    out.write_all(image::DIFFS)?;
    out.write_all(&h.diffs.to_le_bytes())
}
