//! Reads a v1 diff stream strictly: anything unexpected is an error naming the byte offset
//! and what was expected, never a panic.

use std::io::{self, Read};

use super::{tag, BANNER, MAX_NAME};
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
    /// crc32 of every byte read so far: what a resume checks the stream against.
    crc: crc32fast::Hasher,
    /// crc32 of the bytes before the last record returned.
    last_crc: u32,
}

impl<R: Read> Reader<R> {
    /// Reads the banner and the header records; `name` names the stream in errors.
    pub fn open(inner: R, name: &str) -> Result<(Reader<R>, Header, Option<Record>)> {
        let mut r = Reader {
            inner,
            name: name.to_owned(),
            pos: 0,
            size: 0,
            left: 0,
            covered: 0,
            last: 0,
            ended: false,
            crc: crc32fast::Hasher::new(),
            last_crc: 0,
        };
        let mut banner = [0u8; 12];
        r.fill(&mut banner, "the banner \"rbd diff v1\\n\"")?;
        if &banner != BANNER {
            return Err(r.bad(
                0,
                "the banner \"rbd diff v1\\n\"",
                &format!("{:?}", String::from_utf8_lossy(&banner)),
            ));
        }
        let mut header = Header::default();
        let mut have_size = false;
        loop {
            let at = r.pos;
            match r.tag()? {
                tag::FROM if header.from.is_none() => header.from = Some(r.name_field()?),
                tag::TO if header.to.is_none() => header.to = Some(r.name_field()?),
                tag::SIZE if !have_size => {
                    header.size = r.u64("the image size")?;
                    r.size = header.size;
                    have_size = true;
                }
                t @ (tag::WRITE | tag::ZERO | tag::END) => {
                    if !have_size {
                        return Err(r.bad(at, "a size record ('s') before the data", &describe(t)));
                    }
                    let first = r.record(t, at)?;
                    return Ok((r, header, first));
                }
                t => {
                    return Err(r.bad(
                        at,
                        "a header record ('f', 't' or 's', each once) or data",
                        &describe(t),
                    ))
                }
            }
        }
    }

    /// Reads on from byte `pos` of a stream whose header said `size`, where `inner` now
    /// is; `crc` is the crc32 of the bytes before `pos`, which must be where a record
    /// starts. For a resume that skipped the stream's first `pos` bytes.
    pub fn resume(inner: R, name: &str, size: u64, pos: u64, crc: u32) -> Reader<R> {
        Reader {
            inner,
            name: name.to_owned(),
            pos,
            size,
            left: 0,
            covered: 0,
            last: pos,
            ended: false,
            crc: crc32fast::Hasher::new_with_initial_len(crc, pos),
            last_crc: crc,
        }
    }

    /// The byte offset reached in the stream.
    pub fn position(&self) -> u64 {
        self.pos
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
        self.record(t, at)
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
        self.crc.update(&buf[start..]);
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

    fn record(&mut self, t: u8, at: u64) -> Result<Option<Record>> {
        self.last = at;
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

    fn name_field(&mut self) -> Result<String> {
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
        let mut name = vec![0u8; len as usize];
        self.fill(&mut name, "a snapshot name")?;
        String::from_utf8(name)
            .map_err(|_| self.bad(at + 4, "a UTF-8 snapshot name", "other bytes"))
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
        self.crc.update(buf);
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
