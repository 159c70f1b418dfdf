//! Reads diff streams (v1, and the v2 diffs of an `--export-format 2` image stream, whose
//! image header it reads too) strictly: anything unexpected is an error naming the byte
//! offset and what was expected, never a panic.

use std::io::{self, Read};

use super::{image, tag, BANNER, BANNER_V2, MAX_NAME};
use crate::error::{Error, Result};

/// What comes before the data records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// The snapshot the diff starts from (`None`: from an empty image).
    pub from: Option<String>,
    /// The snapshot the diff leads to (`None`: a head, not a snapshot).
    pub to: Option<String>,
    /// The image size at the end.
    pub size: u64,
    /// The snapshot it leads to is protected (v2 only).
    pub protected: bool,
}

/// The header of an `--export-format 2` image stream: what a new image is created with,
/// and how many diffs follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageHeader {
    /// Object size as a power of two.
    pub order: Option<u64>,
    /// `RBD_FEATURE_*` bits.
    pub features: Option<u64>,
    /// Stripe unit in bytes.
    pub stripe_unit: Option<u64>,
    /// Stripe count.
    pub stripe_count: Option<u64>,
    /// Image-meta key/values, in stream order.
    pub meta: Vec<(String, String)>,
    /// The diffs that follow: one per snapshot, and one for the head.
    pub diffs: u64,
}

/// A data record; a `Write` record's bytes follow and are read with [`Reader::data_vec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// `len` bytes of data at `offset`.
    Write {
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `len` bytes of zeroes at `offset`.
    Zero {
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// A diff stream being read.
pub struct Reader<R> {
    inner: R,
    name: String,
    pos: u64,
    size: u64,
    /// Data bytes of the current `w` record not read yet.
    left: u64,
    /// End of the last data record: records must not go backwards or overlap.
    covered: u64,
    /// Where the last record returned starts.
    last: u64,
    ended: bool,
    /// Records carry their payload's length (a v2 diff).
    v2: bool,
    /// crc32 of every byte read so far: what a resume checks the stream against.
    crc: crc32fast::Hasher,
    /// Whether `crc` is kept (see [`Reader::untracked`]).
    track: bool,
    /// crc32 of the bytes before the last record returned.
    last_crc: u32,
}

impl<R: Read> Reader<R> {
    /// Reads the banner and the header records of a v1 stream; `name` names the stream in
    /// errors.
    pub fn open(inner: R, name: &str) -> Result<(Reader<R>, Header, Option<Record>)> {
        let mut r = Reader::at(inner, name, 0, 0);
        let (header, first) = r.diff(false)?;
        Ok((r, header, first))
    }

    /// A reader at byte `pos` of a stream whose bytes before it have crc32 `crc`, with
    /// nothing read yet.
    pub fn at(inner: R, name: &str, pos: u64, crc: u32) -> Reader<R> {
        Reader {
            inner,
            name: name.to_owned(),
            pos,
            size: 0,
            left: 0,
            covered: 0,
            last: pos,
            ended: false,
            v2: false,
            crc: crc32fast::Hasher::new_with_initial_len(crc, pos),
            track: true,
            last_crc: crc,
        }
    }

    /// Reads the next diff's banner and header records (`v2`: an `rbd diff v2` one).
    pub fn diff(&mut self, v2: bool) -> Result<(Header, Option<Record>)> {
        self.v2 = v2;
        self.size = 0;
        self.left = 0;
        self.covered = 0;
        self.ended = false;
        let (banner, text) = if v2 {
            (BANNER_V2, "the banner \"rbd diff v2\\n\"")
        } else {
            (BANNER, "the banner \"rbd diff v1\\n\"")
        };
        self.expect(banner, text)?;
        let mut header = Header::default();
        let mut have_size = false;
        loop {
            let at = self.pos;
            let t = self.tag()?;
            let len = match t {
                tag::END => 0,
                _ if v2 => self.u64("the record's length")?,
                _ => 0,
            };
            match t {
                tag::FROM if header.from.is_none() => {
                    header.from = Some(self.name_field(v2.then_some(len))?)
                }
                tag::TO if header.to.is_none() => {
                    header.to = Some(self.name_field(v2.then_some(len))?)
                }
                tag::PROTECT if v2 => {
                    // One byte follows, whatever the length says: Ceph 16 (Debian 12's
                    // rbd) writes 8 there, later releases 1.
                    if len != 1 && len != 8 {
                        self.length(at, len, 1)?;
                    }
                    let mut b = [0u8];
                    self.fill(&mut b, "the snapshot's protection")?;
                    header.protected = b[0] != 0;
                }
                tag::SIZE if !have_size => {
                    if v2 {
                        self.length(at, len, 8)?;
                    }
                    header.size = self.u64("the image size")?;
                    self.size = header.size;
                    have_size = true;
                }
                t @ (tag::WRITE | tag::ZERO | tag::END) => {
                    if !have_size {
                        return Err(self.bad(
                            at,
                            "a size record ('s') before the data",
                            &describe(t),
                        ));
                    }
                    let first = self.extent(t, at, len)?;
                    return Ok((header, first));
                }
                t if v2 && ![tag::FROM, tag::TO, tag::SIZE].contains(&t) => {
                    self.skip(len, "an unknown record's payload")?
                }
                t => {
                    return Err(self.bad(
                        at,
                        "a header record ('f', 't' or 's', each once) or data",
                        &describe(t),
                    ))
                }
            }
        }
    }

    /// Reads the header of an `--export-format 2` image stream, up to and with the number
    /// of diffs.
    pub fn image_header(&mut self) -> Result<ImageHeader> {
        self.expect(image::BANNER, "the banner \"rbd image v2\\n\"")?;
        let mut h = ImageHeader::default();
        loop {
            let at = self.pos;
            let t = self.tag()?;
            if t == image::END {
                break;
            }
            let len = self.u64("the record's length")?;
            let field = match t {
                image::ORDER => &mut h.order,
                image::FEATURES => &mut h.features,
                image::STRIPE_UNIT => &mut h.stripe_unit,
                image::STRIPE_COUNT => &mut h.stripe_count,
                image::META => {
                    let key = self.string("an image-meta key")?;
                    let value = self.string("an image-meta value")?;
                    let want = 8 + key.len() as u64 + value.len() as u64;
                    if len != want {
                        let found = format!("length {len} for a pair of {want} bytes");
                        return Err(self.bad(at, "an image-meta record's true length", &found));
                    }
                    h.meta.push((key, value));
                    continue;
                }
                _ => {
                    self.skip(len, "an unknown record's payload")?;
                    continue;
                }
            };
            self.length(at, len, 8)?;
            *field = Some(self.u64("the field's value")?);
        }
        if h.order.is_some_and(|o| !(12..=26).contains(&o)) {
            let found = format!("order {}", h.order.unwrap_or_default());
            return Err(self.bad(self.pos, "an object size order of 12 to 26", &found));
        }
        self.expect(image::DIFFS, "the banner \"rbd image diffs v2\\n\"")?;
        let at = self.pos;
        h.diffs = self.u64("the number of diffs")?;
        if h.diffs == 0 {
            return Err(self.bad(at, "at least one diff (the head's)", "0"));
        }
        Ok(h)
    }

    /// Reads on from byte `pos` of a stream whose header said `size`, where `inner` now
    /// is; `crc` is the crc32 of the bytes before `pos`, which must be where a record
    /// starts. For a resume that skipped the stream's first `pos` bytes.
    /// `v2`: the stream is a v2 diff.
    pub fn resume(inner: R, name: &str, size: u64, pos: u64, crc: u32, v2: bool) -> Reader<R> {
        let mut r = Reader::at(inner, name, pos, crc);
        r.size = size;
        r.v2 = v2;
        r
    }

    /// The stream's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the diff being read is a v2 one.
    pub fn v2(&self) -> bool {
        self.v2
    }

    /// The reader the records come from.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The byte offset reached in the stream.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The same reader without the crc32 of the stream (then [`Reader::crc`] means
    /// nothing): a stream file that a resume identifies by the bytes before its offset
    /// needs none, and it costs a pass over every byte.
    pub fn untracked(mut self) -> Self {
        self.track = false;
        self
    }

    /// Whether it keeps the crc32 of the stream.
    pub fn tracks(&self) -> bool {
        self.track
    }

    /// The crc32 of the bytes read so far.
    pub fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// The crc32 of the bytes before the last record returned.
    pub fn record_crc(&self) -> u32 {
        self.last_crc
    }

    /// The byte offset of the last record returned (its tag).
    pub fn record_offset(&self) -> u64 {
        self.last
    }

    /// The next data record, or `None` at the end record `e`. Any data of the previous
    /// `w` record must have been read.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        assert_eq!(
            self.left, 0,
            "read all of a w record before the next record"
        );
        let at = self.pos;
        let t = self.tag()?;
        let len = match t {
            tag::END => 0,
            _ if self.v2 => self.u64("the record's length")?,
            _ => 0,
        };
        self.extent(t, at, len)
    }

    /// Reads and drops the current `w` record's data.
    pub fn data_skip(&mut self) -> Result<()> {
        let left = std::mem::take(&mut self.left);
        self.skip(left, "the record's data")
    }

    /// Reads all of the current `w` record's data into a new buffer, without first filling
    /// it with zeroes (a copy's worth of memory traffic saved per record).
    pub fn data_vec(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.data_into(&mut buf)?;
        Ok(buf)
    }

    /// Reads the current `w` record's data into `buf`, replacing what it held (its spare
    /// capacity is reused).
    pub fn data_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let len = self.left;
        buf.clear();
        let start = buf.len();
        // The length comes from the stream: reserve at most 64 MiB up front, grow as data comes.
        buf.reserve(len.min(64 << 20) as usize);
        let got = (&mut self.inner)
            .take(len)
            .read_to_end(buf)
            .map_err(|e| Error::io("read", &self.name, self.pos, e))?;
        if self.track {
            self.crc.update(&buf[start..]);
        }
        self.pos += got as u64;
        self.left -= got as u64;
        if self.left > 0 {
            return Err(self.bad(
                self.pos,
                "the record's data",
                "the end of the input (truncated stream)",
            ));
        }
        Ok(())
    }

    /// A data record of tag `t` at `at`; `len` is a v2 record's payload length.
    fn extent(&mut self, t: u8, at: u64, payload: u64) -> Result<Option<Record>> {
        self.last = at;
        if self.v2 && !matches!(t, tag::WRITE | tag::ZERO | tag::END) {
            // A v2 record this reader does not know: its length says how far to skip.
            self.skip(payload, "an unknown record's payload")?;
            return self.next_record();
        }
        let record = match t {
            tag::END => {
                self.ended = true;
                return Ok(None);
            }
            tag::WRITE | tag::ZERO => {
                let offset = self.u64("the record's offset")?;
                let len = self.u64("the record's length")?;
                let end = offset.checked_add(len).filter(|&e| e <= self.size);
                let Some(end) = end else {
                    let what = format!(
                        "offset {offset} + length {len}, past the image size {}",
                        self.size
                    );
                    return Err(self.bad(at, "a record inside the image", &what));
                };
                if offset < self.covered {
                    let what = format!(
                        "offset {offset}, before the end of the previous record ({})",
                        self.covered
                    );
                    return Err(self.bad(at, "records in offset order, not overlapping", &what));
                }
                self.covered = end;
                let want = if t == tag::WRITE {
                    len.checked_add(16)
                } else {
                    Some(16)
                };
                if self.v2 && want != Some(payload) {
                    let found =
                        format!("payload length {payload} for offset {offset}, length {len}");
                    return Err(self.bad(at, "a record whose payload length matches it", &found));
                }
                if t == tag::WRITE {
                    self.left = len;
                    Record::Write { offset, len }
                } else {
                    Record::Zero { offset, len }
                }
            }
            t => {
                return Err(self.bad(
                    at,
                    "a data record ('w' or 'z') or the end ('e')",
                    &describe(t),
                ))
            }
        };
        Ok(Some(record))
    }

    fn tag(&mut self) -> Result<u8> {
        self.last_crc = self.crc();
        let mut t = [0u8];
        self.fill(&mut t, "a record tag or the end record 'e'")?;
        Ok(t[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A snapshot name; `payload` is its v2 record's length, which must match.
    fn name_field(&mut self, payload: Option<u64>) -> Result<String> {
        let at = self.pos;
        let mut b = [0u8; 4];
        self.fill(&mut b, "a snapshot name's length")?;
        let len = u32::from_le_bytes(b);
        if len == 0 || len > MAX_NAME {
            return Err(self.bad(
                at,
                "a snapshot name of 1 to 4096 bytes",
                &format!("length {len}"),
            ));
        }
        if let Some(payload) = payload.filter(|&p| p != 4 + u64::from(len)) {
            let found = format!("payload length {payload} for a name of {len} bytes");
            return Err(self.bad(at, "a name record whose payload length matches it", &found));
        }
        let mut name = vec![0u8; len as usize];
        self.fill(&mut name, "a snapshot name")?;
        String::from_utf8(name)
            .map_err(|_| self.bad(at + 4, "a UTF-8 snapshot name", "other bytes"))
    }

    /// An image-meta string: a le32 length (at most 64 KiB) and its bytes.
    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        let len = u32::from_le_bytes(b);
        if len > 64 << 10 {
            let found = format!("length {len}");
            return Err(self.bad(at, &format!("{what} of at most 64 KiB"), &found));
        }
        let mut text = vec![0u8; len as usize];
        self.fill(&mut text, what)?;
        String::from_utf8(text).map_err(|_| self.bad(at + 4, "UTF-8 text", "other bytes"))
    }

    /// Reads `want` and fails unless the stream holds exactly it.
    fn expect(&mut self, want: &[u8], what: &str) -> Result<()> {
        let at = self.pos;
        let mut got = vec![0u8; want.len()];
        self.fill(&mut got, what)?;
        if got != want {
            let found = format!("{:?}", String::from_utf8_lossy(&got));
            return Err(self.bad(at, what, &found));
        }
        Ok(())
    }

    /// Fails unless the payload length of the record at `at` is `want`.
    fn length(&self, at: u64, len: u64, want: u64) -> Result<()> {
        if len == want {
            return Ok(());
        }
        let found = format!("payload length {len}");
        Err(self.bad(at, &format!("payload length {want}"), &found))
    }

    /// Reads and drops `len` bytes.
    fn skip(&mut self, len: u64, what: &str) -> Result<()> {
        let mut left = len;
        let mut buf = [0u8; 8192];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..n], what)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Fills `buf` or fails naming what was being read.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    let at = self.pos + done as u64;
                    return Err(self.bad(at, what, "the end of the input (truncated stream)"));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", &self.name, self.pos + done as u64, e)),
            }
        }
        if self.track {
            self.crc.update(buf);
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn bad(&self, offset: u64, expected: &str, found: &str) -> Error {
        Error::stream(&self.name, offset, expected, found)
    }
}

fn describe(t: u8) -> String {
    if t.is_ascii_graphic() {
        format!("tag '{}' (0x{t:02x})", t as char)
    } else {
        format!("tag 0x{t:02x}")
    }
}
