//! Local raw images: regular files (sparse, via SEEK_DATA/SEEK_HOLE) and block devices.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rustix::fs::{
    fadvise, fallocate, renameat_with, seek, Advice, FallocateFlags, RenameFlags, CWD,
};

use super::stage::{self, Names};
use super::{Found, SinkOptions};
use crate::engine::{Extent, ImageSink, ImageSource};
use crate::error::{Error, Result};
use crate::fault;

/// Zeroes written where a file system cannot punch holes.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A raw image file or block device, read with `pread`.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    name: String,
    size: u64,
    device: bool,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<FileSource> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| Error::open("open", &name, e))?;
        let meta = file.metadata().map_err(|e| Error::open("stat", &name, e))?;
        let device = meta.file_type().is_block_device();
        if meta.is_dir() {
            return Err(Error::Unsupported(format!(
                "{name} is a directory, not an image"
            )));
        }
        let size = if device {
            device_size(&file, &name)?
        } else {
            meta.len()
        };
        Ok(FileSource {
            file,
            name,
            size,
            device,
        })
    }
}

fn device_size(file: &File, name: &str) -> Result<u64> {
    let mut f = file;
    f.seek(SeekFrom::End(0))
        .map_err(|e| Error::open("size of", name, e))
}

impl ImageSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn identity(&self) -> Vec<(String, String)> {
        let meta = self.file.metadata().ok();
        let field = |f: fn(&fs::Metadata) -> i64| meta.as_ref().map_or(-1, f).to_string();
        vec![
            ("path".into(), self.name.clone()),
            ("size".into(), self.size.to_string()),
            ("inode".into(), field(|m| m.ino() as i64)),
            (
                "modification time".into(),
                field(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec()),
            ),
        ]
    }

    fn extents(&self) -> Result<Vec<Extent>> {
        if self.device {
            return Ok(vec![Extent::data(0, self.size)]);
        }
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < self.size {
            let start = match seek(&self.file, rustix::fs::SeekFrom::Data(pos)) {
                Ok(start) => start,
                Err(rustix::io::Errno::NXIO) => break,
                // A file system without SEEK_DATA: all of it is data.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) if pos == 0 => {
                    return Ok(vec![Extent::data(0, self.size)]);
                }
                Err(e) => return Err(Error::io("seek data", &self.name, pos, e.into())),
            };
            let end = seek(&self.file, rustix::fs::SeekFrom::Hole(start))
                .map_err(|e| Error::io("seek hole", &self.name, start, e.into()))?
                .min(self.size);
            if end > start {
                out.push(Extent::data(start, end - start));
            }
            pos = end.max(start + 1);
        }
        Ok(out)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("read", &self.name, offset, e))
    }
}

/// A raw image file written under its staged name (`.NAME.rbdcp-partial`) and renamed into
/// place by `finish`; or, written in place, a block device or a file an incremental copy
/// updates. A failed or killed run leaves the staged file for a rerun to resume.
#[derive(Debug)]
pub struct FileSink {
    file: File,
    name: String,
    target: PathBuf,
    /// The staged file, renamed to `target` by `finish`.
    staged: Mutex<Option<PathBuf>>,
    /// A new file: it reads as zeroes wherever it was not written.
    fresh: bool,
    device: bool,
    overwrite: bool,
    /// Taken around each write to a regular file.
    writing: Mutex<()>,
    can_punch: AtomicBool,
    can_allocate: AtomicBool,
}

impl FileSink {
    /// Prepares to write `path`, holding `names`' lock already. An existing image is
    /// refused unless `opts.overwrite` or `opts.update`; a block device is written in
    /// place. With `opts.base` (an incremental copy) the file must exist, holding that
    /// base, and is updated in place. A staged file with a record is resumed; one without
    /// is garbage of a run killed before its first record, and goes.
    pub fn create(path: &Path, opts: &SinkOptions) -> Result<FileSink> {
        Ok(FileSink::open(path, &Names::of(path), opts)?.0)
    }

    /// As [`FileSink::create`], telling also what was found.
    pub fn open(path: &Path, names: &Names, opts: &SinkOptions) -> Result<(FileSink, Found)> {
        let name = path.display().to_string();
        if opts.restart {
            stage::remove(&names.staged, &name)?;
            stage::remove(&names.record, &name)?;
        }
        let recorded = names.record.exists();
        if names.staged.exists() {
            if recorded {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&names.staged)
                    .map_err(|e| Error::open("open the staged file of", &name, e))?;
                let sink = FileSink::new(
                    file,
                    name,
                    path,
                    Some(names.staged.clone()),
                    false,
                    opts.overwrite,
                );
                return Ok((sink, Found::Staged));
            }
            stage::remove(&names.staged, &name)?;
        }
        let meta = match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::Unsupported(format!(
                    "{name} is a directory, not an image"
                )));
            }
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::open("stat", &name, e)),
        };
        let device = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        let sink = match (&meta, &opts.base) {
            (Some(_), _) if recorded => {
                let sink = FileSink::in_place(path, name, device, opts)?;
                return Ok((sink, Found::Recorded));
            }
            (None, Some(base)) => Err(Error::Unsupported(format!(
                "{name} does not exist; an incremental copy (from {base:?}) updates an image that holds {base:?}"
            ))),
            (Some(_), Some(_)) => FileSink::in_place(path, name, device, opts),
            (Some(_), None) if !opts.overwrite && !opts.update => Err(Error::Exists { image: name }),
            (Some(_), None) if opts.update || device => FileSink::in_place(path, name, device, opts),
            (meta, None) => {
                let mode = meta.as_ref().map_or(Permissions::from_mode(0o644), |m| m.permissions());
                FileSink::staged(path, name, &names.staged, mode, opts)
            }
        }?;
        Ok((sink, Found::Fresh))
    }

    fn in_place(path: &Path, name: String, device: bool, opts: &SinkOptions) -> Result<FileSink> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::open("open", &name, e))?;
        Ok(FileSink::new(
            file,
            name,
            path,
            None,
            device,
            opts.overwrite,
        ))
    }

    fn staged(
        path: &Path,
        name: String,
        staged: &Path,
        mode: Permissions,
        opts: &SinkOptions,
    ) -> Result<FileSink> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staged)
            .and_then(|f| f.set_permissions(mode).map(|()| f))
            .map_err(|e| Error::open("create the staged file of", &name, e))?;
        Ok(FileSink::new(
            file,
            name,
            path,
            Some(staged.to_owned()),
            false,
            opts.overwrite,
        ))
    }

    fn new(
        file: File,
        name: String,
        target: &Path,
        staged: Option<PathBuf>,
        device: bool,
        overwrite: bool,
    ) -> Self {
        FileSink {
            file,
            name,
            target: target.to_owned(),
            fresh: staged.is_some(),
            staged: Mutex::new(staged),
            device,
            overwrite,
            writing: Mutex::new(()),
            can_punch: AtomicBool::new(true),
            can_allocate: AtomicBool::new(!device),
        }
    }

    fn write_zero_bytes(&self, offset: u64, len: u64) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64) as usize;
            self.write_at(offset + done, &ZEROS[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

fn unsupported(e: rustix::io::Errno) -> bool {
    matches!(
        e,
        rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL
    )
}

impl ImageSink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn zeroed(&self) -> bool {
        self.fresh
    }

    fn resize(&self, size: u64) -> Result<()> {
        if self.device {
            let have = device_size(&self.file, &self.name)?;
            if have < size {
                return Err(Error::TooSmall {
                    image: self.name.clone(),
                    have,
                    need: size,
                });
            }
            return Ok(());
        }
        self.file
            .set_len(size)
            .map_err(|e| Error::io("resize", &self.name, size, e))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        if !self.can_allocate.load(Ordering::Relaxed) {
            return Ok(());
        }
        match fallocate(&self.file, FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if unsupported(e) => {
                self.can_allocate.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(Error::io("preallocate", &self.name, offset, e.into())),
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        {
            // The kernel serializes buffered writes to one file on its inode lock and spins
            // while it waits, burning the CPU the readers need: queue here instead.
            let _turn = (!self.device).then(|| self.writing.lock().unwrap());
            self.file
                .write_all_at(data, offset)
                .map_err(|e| Error::io("write", &self.name, offset, e))?;
        }
        // Start writing the chunk back now, so the disk works while the copy goes on and the
        // final fsync has little left to do; the pages leave the cache once clean. Advice
        // only: a failure here loses nothing.
        let _ = fadvise(
            &self.file,
            offset,
            NonZeroU64::new(data.len() as u64),
            Advice::DontNeed,
        );
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        if self.can_punch.load(Ordering::Relaxed) {
            let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            match fallocate(&self.file, flags, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if unsupported(e) => self.can_punch.store(false, Ordering::Relaxed),
                Err(e) => return Err(Error::io("punch hole", &self.name, offset, e.into())),
            }
        }
        self.write_zero_bytes(offset, len)
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::open("fsync", &self.name, e))
    }

    fn finish(&self) -> Result<()> {
        self.flush()?;
        let Some(staged) = self.staged.lock().unwrap().take() else {
            return Ok(());
        };
        fault::point("after-write");
        let flags = if self.overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        renameat_with(CWD, &staged, CWD, &self.target, flags).map_err(|e| match e {
            rustix::io::Errno::EXIST => Error::Exists {
                image: self.name.clone(),
            },
            e => Error::open("rename into place", &self.name, e.into()),
        })?;
        stage::sync_dir(&self.target, &self.name)?;
        fault::point("after-rename");
        Ok(())
    }
}
