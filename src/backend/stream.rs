//! Diff streams as destinations (`export-diff`: records written in offset order to a file or
//! standard output) and as sources of tasks (`import-diff`: records read one by one).

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tempfile::TempPath;

use super::sidecar::Sidecar;
use crate::engine::{Chunk, ImageSink, Piece};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::stream::{Header, ImageHeader, Reader, Record, Writer};

/// Bytes buffered between the workers and the output.
const BUFFER: usize = 1 << 20;

/// Bytes buffered from an input file: enough for the small header fields, while a record's
/// data longer than this is read straight into its own buffer, with no copy through ours.
const IN_BUFFER: usize = 64 << 10;

/// A file written under a temporary name and renamed into place by [`Output::persist`].
struct Staged {
    temp: TempPath,
    /// The same file, to fsync it after the writer is gone.
    file: File,
    target: PathBuf,
    overwrite: bool,
}

/// Where a stream goes: standard output, or a file renamed into place at the end.
pub struct Output {
    name: String,
    staged: Option<Staged>,
}

impl Output {
    /// Opens `loc` (`-` or a path) for writing; an existing file is refused unless `overwrite`.
    pub fn create(loc: &Location, overwrite: bool) -> Result<(Output, Box<dyn Write + Send>)> {
        match loc {
            Location::Stdio => Ok((
                Output {
                    name: "-".into(),
                    staged: None,
                },
                Box::new(io::stdout()),
            )),
            Location::Path(path) => {
                let name = path.display().to_string();
                if path.exists() && !overwrite {
                    return Err(Error::Exists { image: name });
                }
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let temp = tempfile::Builder::new()
                    .prefix(".rbdcp-")
                    .suffix(".partial")
                    .permissions(Permissions::from_mode(0o644))
                    .tempfile_in(dir)
                    .map_err(|e| Error::open("create a temporary file for", &name, e))?;
                let (file, temp) = temp.into_parts();
                let sync = file
                    .try_clone()
                    .map_err(|e| Error::open("open", &name, e))?;
                let staged = Staged {
                    temp,
                    file: sync,
                    target: path.clone(),
                    overwrite,
                };
                Ok((
                    Output {
                        name,
                        staged: Some(staged),
                    },
                    Box::new(file),
                ))
            }
            Location::Rbd(spec) => Err(Error::Unsupported(format!(
                "{spec} is an image, not a stream file"
            ))),
        }
    }

    /// Makes the file durable and gives it its final name; call it after the writer
    /// `create` returned is flushed and dropped.
    pub fn persist(self) -> Result<()> {
        let Some(staged) = self.staged else {
            return Ok(());
        };
        staged
            .file
            .sync_all()
            .map_err(|e| Error::open("fsync", &self.name, e))?;
        let done = if staged.overwrite {
            staged.temp.persist(&staged.target)
        } else {
            staged.temp.persist_noclobber(&staged.target)
        };
        done.map_err(|e| Error::open("rename into place", &self.name, e.error))?;
        Ok(())
    }
}

struct Out {
    writer: Option<Writer<BufWriter<Box<dyn Write + Send>>>>,
    /// Kept until the header is written.
    raw: Option<BufWriter<Box<dyn Write + Send>>>,
    sums: Sidecar,
}

/// Where the diffs of an image stream are written, one after the other: the writer a
/// [`StreamSink::part`] takes, and gives back once its diff ended.
pub type Slot = Arc<Mutex<Option<BufWriter<Box<dyn Write + Send>>>>>;

/// A new [`Slot`] writing to `w`.
pub fn slot(w: Box<dyn Write + Send>) -> Slot {
    Arc::new(Mutex::new(Some(BufWriter::with_capacity(BUFFER, w))))
}

/// An `export-diff` destination: a v1 stream, written in offset order; or one v2 diff of
/// an image stream.
pub struct StreamSink {
    name: String,
    v2: bool,
    from: Option<String>,
    /// The to-snap, and whether it is protected.
    to: Option<(String, bool)>,
    out: Mutex<Out>,
    output: Mutex<Option<Output>>,
    sidecar: Option<(PathBuf, bool)>,
    /// For a part of an image stream: where the writer goes back.
    slot: Option<Slot>,
}

impl StreamSink {
    /// A stream to `loc` from snapshot `from` to `to`; with `sidecar`, the crc32s go there too.
    pub fn create(
        loc: &Location,
        from: Option<String>,
        to: Option<String>,
        overwrite: bool,
        sidecar: Option<PathBuf>,
    ) -> Result<StreamSink> {
        if let Some(path) = sidecar.as_deref().filter(|p| p.exists() && !overwrite) {
            return Err(Error::Exists {
                image: path.display().to_string(),
            });
        }
        let (output, w) = Output::create(loc, overwrite)?;
        let out = Out {
            writer: None,
            raw: Some(BufWriter::with_capacity(BUFFER, w)),
            sums: Sidecar::default(),
        };
        Ok(StreamSink {
            name: loc.to_string(),
            v2: false,
            from,
            to: to.map(|t| (t, false)),
            out: Mutex::new(out),
            output: Mutex::new(Some(output)),
            sidecar: sidecar.map(|p| (p, overwrite)),
            slot: None,
        })
    }

    /// The next v2 diff of the image stream `name` that `slot` writes: from snapshot
    /// `from` to `to` (with its protection), or to the head.
    pub fn part(
        name: &str,
        slot: &Slot,
        from: Option<String>,
        to: Option<(String, bool)>,
    ) -> StreamSink {
        let raw = slot.lock().unwrap().take();
        StreamSink {
            name: name.to_owned(),
            v2: true,
            from,
            to,
            out: Mutex::new(Out {
                writer: None,
                raw: Some(raw.expect("the diff before this one ended")),
                sums: Sidecar::default(),
            }),
            output: Mutex::new(None),
            sidecar: None,
            slot: Some(Arc::clone(slot)),
        }
    }

    fn with<T>(
        &self,
        offset: u64,
        f: impl FnOnce(&mut Writer<BufWriter<Box<dyn Write + Send>>>, &mut Sidecar) -> io::Result<T>,
    ) -> Result<T> {
        let mut out = self.out.lock().unwrap();
        let out = &mut *out;
        let writer = out
            .writer
            .as_mut()
            .expect("resize writes the header before any record");
        f(writer, &mut out.sums).map_err(|e| Error::io("write", &self.name, offset, e))
    }
}

impl ImageSink for StreamSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn ordered(&self) -> bool {
        true
    }

    fn zeroed(&self) -> bool {
        true
    }

    /// Writes the header: banner, from and to snapshots, and `size`.
    fn resize(&self, size: u64) -> Result<()> {
        let mut out = self.out.lock().unwrap();
        let raw = out.raw.take().expect("the header is written once");
        let to = self.to.as_ref().map(|(t, p)| (t.as_str(), *p));
        let w = Writer::begin(raw, self.v2, self.from.as_deref(), to, size)
            .map_err(|e| Error::io("write", &self.name, 0, e))?;
        out.writer = Some(w);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.with(offset, |w, sums| {
            if self.sidecar.is_some() {
                sums.records
                    .push((offset, data.len() as u64, crc32fast::hash(data)));
            }
            w.write(offset, data)
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.with(offset, |w, _| w.zero(offset, len))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        let (writer, sums) = {
            let mut out = self.out.lock().unwrap();
            (
                out.writer.take().expect("the header was written"),
                std::mem::take(&mut out.sums),
            )
        };
        let buffered = writer
            .end()
            .map_err(|e| Error::io("write", &self.name, 0, e))?;
        if let Some(slot) = &self.slot {
            *slot.lock().unwrap() = Some(buffered);
            return Ok(());
        }
        let inner = buffered
            .into_inner()
            .map_err(|e| Error::io("write", &self.name, 0, e.into_error()))?;
        drop(inner);
        let output = self
            .output
            .lock()
            .unwrap()
            .take()
            .expect("finish runs once");
        output.persist()?;
        if let Some((path, overwrite)) = &self.sidecar {
            sums.save(path, *overwrite)?;
        }
        Ok(())
    }
}

/// The longest `w` record read into memory: `rbd export-diff` writes at most one stripe
/// period (an object, 4 MiB by default) per record.
pub const MAX_RECORD: u64 = 256 << 20;

/// An `import-diff` source: the stream's header, then its records as [`Piece`]s.
pub struct Pieces<R> {
    reader: Reader<R>,
    first: Option<Record>,
    /// The sidecar's records and how many were matched.
    sums: Option<(Sidecar, usize)>,
    name: String,
    /// The stream file, for a resume to seek in.
    file: Option<File>,
    /// The crc32 of the stream up to each record boundary read, for checkpoints to take.
    marks: Option<Marks>,
    /// A resume that reads the stream from the start: the offset it resumes at and the
    /// crc32 the bytes before it must have.
    expect: Option<(u64, u32)>,
    /// After a seek, sidecar entries before the first record read are skipped.
    seeked: bool,
    /// Data bytes of the records read so far (of the stream's, after a seek).
    data: u64,
}

/// At each record boundary read and not yet taken: the crc32 of the stream's bytes before
/// it, and the data bytes of the records before it.
pub type Marks = Arc<Mutex<std::collections::BTreeMap<u64, (u32, u64)>>>;

/// Bytes before a resume offset whose crc32 identifies a stream file (with its header
/// and length) without reading all of it again.
pub const WINDOW: u64 = 64 << 10;

/// The crc32 of the (up to) [`WINDOW`] bytes of `path` before `offset`.
pub fn window_crc(path: &Path, offset: u64) -> Result<u32> {
    use std::os::unix::fs::FileExt;
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::open("open", &name, e))?;
    let start = offset.saturating_sub(WINDOW);
    let mut buf = vec![0; (offset - start) as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(|e| Error::io("read", &name, start, e))?;
    Ok(crc32fast::hash(&buf))
}

/// Opens `loc` (`-` or a path) for reading: the input, buffered, its name, and for a file
/// the file again, to seek in.
fn open_input(loc: &Location) -> Result<(Box<dyn Read + Send>, String, Option<File>)> {
    match loc {
        Location::Stdio => Ok((Box::new(io::stdin()), "-".into(), None)),
        Location::Path(path) => {
            let name = path.display().to_string();
            let file = File::open(path).map_err(|e| Error::open("open", &name, e))?;
            let seekable = file
                .try_clone()
                .map_err(|e| Error::open("open", &name, e))?;
            Ok((
                Box::new(io::BufReader::with_capacity(IN_BUFFER, file)),
                name,
                Some(seekable),
            ))
        }
        Location::Rbd(spec) => Err(Error::Unsupported(format!(
            "{spec} is an image, not a stream"
        ))),
    }
}

/// Opens the stream at `loc` (`-` or a path) and reads its header.
pub fn open_stream(
    loc: &Location,
    sums: Option<Sidecar>,
) -> Result<(Header, Pieces<Box<dyn Read + Send>>)> {
    let (input, name, file) = open_input(loc)?;
    let mut reader = Reader::at(input, &name, 0, 0);
    if file.is_some() {
        // A resume finds a file's offset by the bytes before it (see `window_crc`).
        reader = reader.untracked();
    }
    let (header, first) = reader.diff(false)?;
    let mut pieces = Pieces::new(reader, first, file);
    pieces.sums = sums.map(|s| (s, 0));
    Ok((header, pieces))
}

/// An image stream (`rbd export --export-format 2`) opened and its header read: the
/// reader stands at its first diff.
pub struct ImageStream {
    /// The header.
    pub header: ImageHeader,
    /// The stream, at the next diff.
    pub reader: Reader<Box<dyn Read + Send>>,
    /// The stream file, if it is one.
    pub file: Option<File>,
}

/// Opens the image stream at `loc` (`-` or a path) and reads its header.
pub fn open_image_stream(loc: &Location) -> Result<ImageStream> {
    let (input, name, file) = open_input(loc)?;
    let mut reader = Reader::at(input, &name, 0, 0);
    let header = reader.image_header()?;
    Ok(ImageStream {
        header,
        reader,
        file,
    })
}

impl ImageStream {
    /// Reads the next diff's header: the diff's records follow as pieces, and
    /// [`Pieces::into_reader`] gives the stream back for the diff after.
    pub fn diff(
        mut reader: Reader<Box<dyn Read + Send>>,
        file: Option<&File>,
    ) -> Result<(Header, Pieces<Box<dyn Read + Send>>)> {
        let (header, first) = reader.diff(true)?;
        let file = file.map(File::try_clone).transpose();
        let file = file.map_err(|e| Error::open("open", reader.name(), e))?;
        Ok((header, Pieces::new(reader, first, file)))
    }
}

impl Pieces<Box<dyn Read + Send>> {
    /// Whether the stream's crc32 is kept (see [`Reader::untracked`]).
    pub fn tracks(&self) -> bool {
        self.reader.tracks()
    }

    /// Resumes at stream offset `offset` (a record boundary a checkpoint recorded), whose
    /// preceding bytes have crc32 `crc`: a file is read on from there; standard input is
    /// read from where it is, its records before `offset` skipped by the engine (see
    /// `Options::start`), and the stream is refused if its bytes up to `offset` differ.
    pub fn resume_at(&mut self, offset: u64, crc: u32, size: u64, data: u64) -> Result<()> {
        let Some(file) = &self.file else {
            self.expect = Some((offset, crc));
            return Ok(());
        };
        use std::io::Seek;
        let mut file = file
            .try_clone()
            .map_err(|e| Error::open("open", &self.name, e))?;
        file.seek(io::SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &self.name, offset, e))?;
        let input: Box<dyn Read + Send> = Box::new(io::BufReader::with_capacity(IN_BUFFER, file));
        let (v2, track) = (self.reader.v2(), self.reader.tracks());
        let reader = Reader::resume(input, &self.name, size, offset, crc, v2);
        self.reader = if track { reader } else { reader.untracked() };
        self.first = None;
        self.seeked = true;
        self.data = data;
        Ok(())
    }
}

impl<R: Read> Pieces<R> {
    /// The records of the diff `reader` stands in, from `first`; `file` is the stream
    /// file, for a resume to seek in.
    fn new(reader: Reader<R>, first: Option<Record>, file: Option<File>) -> Pieces<R> {
        let name = reader.name().to_owned();
        Pieces {
            reader,
            first,
            sums: None,
            name,
            file,
            marks: None,
            expect: None,
            seeked: false,
            data: 0,
        }
    }

    /// The stream, after the end of this diff (every record must have been read).
    pub fn into_reader(self) -> Reader<R> {
        self.reader
    }

    /// Reads the rest of the diff without applying it (a diff the destination holds).
    pub fn skip_rest(&mut self) -> Result<()> {
        if let Some(Record::Write { .. }) = self.first.take() {
            self.reader.data_skip()?;
        }
        while let Some(record) = self.reader.next_record()? {
            if let Record::Write { .. } = record {
                self.reader.data_skip()?;
            }
        }
        Ok(())
    }

    /// The same pieces, publishing the stream's crc32 at each record boundary to `marks`.
    pub fn marks(&mut self, marks: Marks) {
        self.marks = Some(marks);
    }

    /// Publishes the crc32 of the stream before the record just read and after it; checks
    /// them where a resume expects one.
    fn boundaries(&mut self, data: u64) -> Result<()> {
        let start = (self.reader.record_offset(), self.reader.record_crc());
        let end = (self.reader.position(), self.reader.crc());
        if let Some(marks) = &self.marks {
            let mut marks = marks.lock().unwrap();
            marks.insert(start.0, (start.1, self.data - data));
            marks.insert(end.0, (end.1, self.data));
        }
        let Some((at, want)) = self.expect else {
            return Ok(());
        };
        match [start, end].into_iter().find(|&(pos, _)| pos == at) {
            Some((_, crc)) if crc == want => {
                self.expect = None;
                Ok(())
            }
            Some(_) => Err(self.changed(at)),
            None if end.0 > at => Err(self.changed(at)),
            None => Ok(()),
        }
    }

    fn changed(&self, at: u64) -> Error {
        Error::Refused {
            image: self.name.clone(),
            reason: format!(
                "the stream is not the one the progress record was made for: its first {at} bytes differ (run with --restart to apply it from the start)"
            ),
        }
    }

    fn piece(&mut self, record: Record) -> Result<Piece> {
        let at = self.reader.record_offset();
        let piece = self.read_piece(record, at)?;
        let data = piece.data.as_ref().map_or(0, |d| d.len() as u64);
        self.data += data;
        self.boundaries(data)?;
        Ok(piece)
    }

    fn read_piece(&mut self, record: Record, at: u64) -> Result<Piece> {
        match record {
            Record::Zero { offset, len } => Ok(Piece {
                chunk: Chunk {
                    offset,
                    len,
                    data: false,
                },
                data: None,
                span: (at, self.reader.position()),
            }),
            Record::Write { offset, len } => {
                if len > MAX_RECORD {
                    let found = format!("a record of {len} bytes");
                    return Err(self.bad(
                        at,
                        &format!("a w record of at most {MAX_RECORD} bytes"),
                        &found,
                    ));
                }
                // A buffer of its own, of its size: pieces come in every size (see
                // `Flight::new`).
                let mut data = Vec::new();
                self.reader.data_into(&mut data)?;
                self.check(at, offset, &data)?;
                Ok(Piece {
                    chunk: Chunk {
                        offset,
                        len,
                        data: true,
                    },
                    data: Some(data),
                    span: (at, self.reader.position()),
                })
            }
        }
    }

    /// Checks a `w` record against the next sidecar entry, before any of it is written.
    fn check(&mut self, at: u64, offset: u64, data: &[u8]) -> Result<()> {
        let Some((sums, next)) = &mut self.sums else {
            return Ok(());
        };
        if std::mem::take(&mut self.seeked) {
            // Resumed in the middle: the entries of the records before are not checked.
            while sums.records.get(*next).is_some_and(|&(o, _, _)| o < offset) {
                *next += 1;
            }
        }
        let want = sums.records.get(*next).copied();
        *next += 1;
        let crc = crc32fast::hash(data);
        match want {
            Some((o, l, c)) if o == offset && l == data.len() as u64 && c == crc => Ok(()),
            Some((o, l, c)) => {
                let (expected, found) = (
                    format!("a w record at {o} of {l} bytes with crc32 {c:08x} (the sidecar)"),
                    format!("offset {offset}, {} bytes, crc32 {crc:08x}", data.len()),
                );
                Err(self.bad(at, &expected, &found))
            }
            None => Err(self.bad(
                at,
                "no more w records (the sidecar ends here)",
                "another w record",
            )),
        }
    }

    fn bad(&self, offset: u64, expected: &str, found: &str) -> Error {
        Error::stream(&self.name, offset, expected, found)
    }
}

impl<R: Read> Iterator for Pieces<R> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        loop {
            let record = match self
                .first
                .take()
                .map(Ok)
                .or_else(|| self.reader.next_record().transpose())
            {
                Some(Ok(record)) => record,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    let at = self.reader.position();
                    return match &self.sums {
                        Some((sums, next)) if *next < sums.records.len() => Some(Err(self.bad(
                            at,
                            "as many w records as the sidecar lists",
                            "the end record",
                        ))),
                        _ => None,
                    };
                }
            };
            let (Record::Write { len, .. } | Record::Zero { len, .. }) = record;
            if len > 0 {
                return Some(self.piece(record));
            }
        }
    }
}
