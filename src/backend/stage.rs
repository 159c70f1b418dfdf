//! Staging beside a local destination: the deterministic names of a staged file, its
//! progress record and its lock, the `flock` that keeps two runs apart, and atomic
//! replacement of small files. See issue 11.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::Store;
use crate::error::{Error, Result};
use crate::rbd::Holder;

/// The names that belong to destination `path`.
#[derive(Debug, Clone)]
pub struct Names {
    /// The destination itself.
    pub target: PathBuf,
    /// `.NAME.rbdcp-partial`: the staged file, renamed to `target` at the end.
    pub staged: PathBuf,
    /// `.NAME.rbdcp-partial.resume`: the progress record.
    pub record: PathBuf,
    /// `.NAME.rbdcp-lock`: what a run holds locked while it writes.
    pub lock: PathBuf,
}

impl Names {
    /// The names for destination `path`.
    pub fn of(path: &Path) -> Names {
        let dir = dir_of(path);
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Names {
            target: path.to_owned(),
            staged: dir.join(format!(".{base}.rbdcp-partial")),
            record: dir.join(format!(".{base}.rbdcp-partial.resume")),
            lock: dir.join(format!(".{base}.rbdcp-lock")),
        }
    }
}

/// The directory `path` is in.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs the directory `path` is in, so a rename or removal in it is durable.
pub fn sync_dir(path: &Path, name: &str) -> Result<()> {
    File::open(dir_of(path))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::open("fsync the directory of", name, e))
}

/// An exclusive `flock` on a destination's lock file, released when dropped (or when the
/// process dies, which is what lets a rerun after a kill go on at once).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of `names`, or fails with [`Error::Busy`] naming the holder.
    pub fn take(names: &Names, label: &str) -> Result<Lock> {
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&names.lock)
                .map_err(|e| Error::open("create the lock file of", label, e))?;
            if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
                if e != rustix::io::Errno::WOULDBLOCK {
                    return Err(Error::open("lock", label, e.into()));
                }
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another rbdcp run".to_owned(),
                    h => h.to_owned(),
                };
                return Err(Error::Busy {
                    image: label.to_owned(),
                    holder,
                });
            }
            // The holder before us may have removed the file after we opened it: the lock
            // counts only on the file that is at the path now.
            let same = fs::metadata(&names.lock)
                .ok()
                .zip(file.metadata().ok())
                .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            file.set_len(0)
                .and_then(|()| write!(file, "{}", Holder::me()))
                .map_err(|e| Error::open("write the lock file of", label, e))?;
            return Ok(Lock {
                file,
                path: names.lock.clone(),
            });
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can hold a lock on a removed file
        // (it checks, after locking, that the file is still there).
        let _ = fs::remove_file(&self.path);
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

/// Replaces `path` with `text` atomically and durably: a temporary file, fsync, rename,
/// fsync of the directory.
pub fn replace(path: &Path, text: &str, label: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::open("write the progress record of", label, e))?;
    sync_dir(path, label)
}

/// Removes `path`; a file that is not there is no error.
pub fn remove(path: &Path, label: &str) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::open("remove", label, e)),
    }
}

/// A progress record in a file beside the destination.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    label: String,
}

impl FileStore {
    /// The record of `names`' destination.
    pub fn new(names: &Names, label: &str) -> FileStore {
        FileStore {
            path: names.record.clone(),
            label: label.to_owned(),
        }
    }
}

impl Store for FileStore {
    fn load(&self) -> Result<Option<String>> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::open("read the progress record of", &self.label, e)),
        }
    }

    fn save(&self, record: &str) -> Result<()> {
        replace(&self.path, record, &self.label)
    }

    fn clear(&self) -> Result<()> {
        if remove(&self.path, &self.label)? {
            sync_dir(&self.path, &self.label)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sit_beside_the_destination() {
        let n = Names::of(Path::new("/backups/vm.img"));
        assert_eq!(n.staged, Path::new("/backups/.vm.img.rbdcp-partial"));
        assert_eq!(n.record, Path::new("/backups/.vm.img.rbdcp-partial.resume"));
        assert_eq!(n.lock, Path::new("/backups/.vm.img.rbdcp-lock"));
        assert_eq!(
            Names::of(Path::new("x")).staged,
            Path::new("./.x.rbdcp-partial")
        );
    }

    #[test]
    fn a_second_lock_is_busy_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let names = Names::of(&dir.path().join("d.img"));
        let lock = Lock::take(&names, "d.img").unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts.
        let err = Lock::take(&names, "d.img").unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err}");
        let me = std::process::id().to_string();
        assert!(err.to_string().contains(&me), "{err}");
        drop(lock);
        assert!(!names.lock.exists(), "the lock file goes with the lock");
        Lock::take(&names, "d.img").unwrap();
    }

    #[test]
    fn records_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let names = Names::of(&dir.path().join("d.img"));
        let store = FileStore::new(&names, "d.img");
        assert_eq!(store.load().unwrap(), None);
        store.save("one").unwrap();
        store.save("two").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("two"));
        store.clear().unwrap();
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
