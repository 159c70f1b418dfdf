//! The crc sidecar of a diff stream: `export-diff --crc` writes it, `import-diff --crc`
//! checks every `w` record against it before writing the record.

use std::io::Write;
use std::path::Path;

use super::stream::Output;
use crate::error::{Error, Result};
use crate::location::Location;

/// The crc32 of every `w` record of a stream: the sidecar `export-diff --crc` writes and
/// `import-diff --crc` checks. Text, one line per record: `OFFSET LENGTH CRC32` (hex crc),
/// after the line `rbdcp-crc32 v1`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// (offset, length, crc32), in stream order.
    pub records: Vec<(u64, u64, u32)>,
}

const SIDECAR_HEAD: &str = "rbdcp-crc32 v1";

impl Sidecar {
    /// Writes it to `path` (under a temporary name first).
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        let (out, mut w) = Output::create(&Location::Path(path.to_owned()), overwrite)?;
        let name = path.display().to_string();
        let mut text = format!("{SIDECAR_HEAD}\n");
        for (offset, len, crc) in &self.records {
            text.push_str(&format!("{offset} {len} {crc:08x}\n"));
        }
        w.write_all(text.as_bytes())
            .map_err(|e| Error::io("write", &name, 0, e))?;
        drop(w);
        out.persist()
    }

    /// Reads one from `path`.
    pub fn load(path: &Path) -> Result<Sidecar> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::open("read", &name, e))?;
        let mut lines = text.lines();
        let bad =
            |line: usize, what: &str| Error::Unsupported(format!("{name}: line {line}: {what}"));
        if lines.next() != Some(SIDECAR_HEAD) {
            return Err(bad(1, &format!("expected {SIDECAR_HEAD:?}")));
        }
        let mut records = Vec::new();
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(' ').collect();
            let parsed = match f.as_slice() {
                [o, l, c] => o
                    .parse()
                    .ok()
                    .zip(l.parse().ok())
                    .zip(u32::from_str_radix(c, 16).ok()),
                _ => None,
            };
            let Some(((offset, len), crc)) = parsed else {
                return Err(bad(i + 2, "expected OFFSET LENGTH CRC32"));
            };
            records.push((offset, len, crc));
        }
        Ok(Sidecar { records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_round_trips_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.crc");
        let sums = Sidecar {
            records: vec![(0, 4096, 0xdeadbeef), (1 << 30, 1, 7)],
        };
        sums.save(&path, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "rbdcp-crc32 v1\n0 4096 deadbeef\n1073741824 1 00000007\n"
        );
        assert_eq!(Sidecar::load(&path).unwrap(), sums);
        assert!(matches!(sums.save(&path, false), Err(Error::Exists { .. })));
        std::fs::write(&path, "rbdcp-crc32 v1\n0 4096 deadbeef\n12 x 0\n").unwrap();
        let err = Sidecar::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("line 3: expected OFFSET LENGTH CRC32"),
            "{err}"
        );
    }
}
