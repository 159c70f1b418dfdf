//! The progress record of a job: what is being copied (the source's identity and the plan)
//! and how far the destination durably holds it. It lives with the destination and is
//! replaced whole at each checkpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::backend::stream::{window_crc, Marks};
use crate::backend::{Found, Hold, Store};
use crate::engine::{Checkpoint, ImageSink};
use crate::error::{Error, Result};
use crate::fault;
use crate::location::Location;
use crate::rbd::Holder;

/// The version of the record format.
const VERSION: u32 = 1;

/// A job's progress record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The format's version.
    pub version: u32,
    /// The job: `copy` or `import-diff`.
    pub job: String,
    /// What identifies the source (for RBD: cluster fsid, pool, image and snapshot ids).
    pub source: BTreeMap<String, String>,
    /// What the plan depends on (chunk size, listing mode, base and target snapshots).
    pub plan: BTreeMap<String, String>,
    /// Everything below this offset (of the image; for a stream, of the stream) is
    /// durable on the destination.
    pub mark: u64,
    /// Data bytes below `mark` (for a stream: of the records before it).
    pub bytes_done: u64,
    /// For a stream: the crc32 of its bytes before `mark`.
    pub crc: Option<u32>,
    /// For a stream file: the crc32 of the bytes just before `mark` (see
    /// [`crate::backend::stream::WINDOW`]), which identifies it without reading it all.
    pub window: Option<u32>,
    /// Who saved it, for messages: host and process.
    pub holder: String,
}

impl Record {
    /// A fresh record of `job` from `source` with `plan`, at offset 0.
    pub fn new(job: &str, source: Vec<(String, String)>, plan: Vec<(String, String)>) -> Record {
        Record {
            version: VERSION,
            job: job.to_owned(),
            source: source.into_iter().collect(),
            plan: plan.into_iter().collect(),
            mark: 0,
            bytes_done: 0,
            crc: None,
            window: None,
            holder: Holder::me().to_string(),
        }
    }

    /// Parses a record read from `dst`.
    pub fn parse(text: &str, dst: &str) -> Result<Record> {
        serde_json::from_str(text).map_err(|e| Error::Refused {
            image: dst.to_owned(),
            reason: format!(
                "its progress record cannot be read ({e}); run with --restart to start over, or `rbdcp discard`"
            ),
        })
    }

    /// Checks that `self`, found at `dst`, was made for the same job as `want`; the error
    /// names what changed.
    pub fn matches(&self, want: &Record, dst: &str) -> Result<()> {
        let refuse = |what: String| {
            Error::Refused {
            image: dst.to_owned(),
            reason: format!(
                "{what}; its progress record (saved by {}) was made for another source or plan. Run with --restart to start over, or `rbdcp discard {dst}` to drop what was staged",
                self.holder
            ),
        }
        };
        if self.version != want.version || self.job != want.job {
            return Err(refuse(format!(
                "the record is of a {} job (version {}), this is {} (version {})",
                self.job, self.version, want.job, want.version
            )));
        }
        for (part, have, need) in [
            ("source", &self.source, &want.source),
            ("plan", &self.plan, &want.plan),
        ] {
            let keys: std::collections::BTreeSet<_> = have.keys().chain(need.keys()).collect();
            for key in keys {
                let (h, n) = (have.get(key), need.get(key));
                if h != n {
                    let show = |v: Option<&String>| v.map_or("none".to_owned(), |v| v.clone());
                    return Err(refuse(format!(
                        "the {part}'s {key} changed: recorded {}, now {}",
                        show(h),
                        show(n)
                    )));
                }
            }
        }
        Ok(())
    }

    /// The record as saved.
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a record serializes")
    }
}

/// The record an earlier run left at `dst`, checked against `want`: `None` when the
/// destination was `found` fresh; an error (exit 3) when it was made for another job.
pub fn earlier(
    found: Found,
    store: &dyn Store,
    want: &Record,
    dst: &str,
) -> Result<Option<Record>> {
    if found == Found::Fresh {
        return Ok(None);
    }
    let text = store.load()?.ok_or_else(|| Error::Refused {
        image: dst.to_owned(),
        reason: "its progress record vanished while it was being opened".into(),
    })?;
    let had = Record::parse(&text, dst)?;
    had.matches(want, dst)?;
    Ok(Some(had))
}

/// What a destination records with a snapshot made from a source identified by `fields`.
pub fn provenance(fields: Vec<(String, String)>) -> String {
    let map: BTreeMap<_, _> = fields.into_iter().collect();
    serde_json::to_string(&map).expect("a map serializes")
}

/// Whether provenance record `made` (as [`provenance`] writes it) says its snapshot is
/// snapshot `snap_id` of the image `image` identifies (its cluster fsid, pool id and image
/// id, as [`crate::backend::rbd::Managed::identity`] gives them).
pub fn is_copy_of(made: &str, image: &[(String, String)], snap_id: u64) -> bool {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(made) else {
        return false;
    };
    image.iter().all(|(k, v)| map.get(k) == Some(v))
        && map.get("snapshot id") == Some(&snap_id.to_string())
}

/// Field `key` of provenance record `made`.
pub fn provenance_field(made: &str, key: &str) -> Option<String> {
    serde_json::from_str::<BTreeMap<String, String>>(made)
        .ok()?
        .remove(key)
}

/// The [`Checkpoint`] of a job: makes what landed durable, then saves its record with the
/// new mark to the destination.
pub struct Saver {
    /// The destination.
    pub sink: Arc<dyn ImageSink>,
    /// Where the record goes.
    pub store: Arc<dyn Store>,
    /// The record, as last saved.
    pub record: Mutex<Record>,
    /// For a stream: the crc32s at record boundaries, and its file.
    pub stream: Option<(Marks, Location)>,
    /// A record of this job is on the destination: this run saved one, or an earlier
    /// run's was found.
    pub saved: AtomicBool,
    /// The destination's lock or lease, checked before each record.
    pub hold: Arc<dyn Hold>,
}

impl Saver {
    /// Drops the job's record at its end, if there is one (no round trip otherwise).
    pub fn clear(&self) -> Result<()> {
        match self.saved.load(Ordering::Relaxed) {
            true => self.store.clear(),
            false => Ok(()),
        }
    }
}

impl Saver {
    /// Saves the record before the first write of a job that writes in place, unless one
    /// is there: a run killed before its first checkpoint then leaves a record of its
    /// writes, by which a backup tells them from someone else's.
    pub fn begin(&self) -> Result<()> {
        if self.saved.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.hold.check()?;
        self.store.save(&self.record.lock().unwrap().text())?;
        self.saved.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Checkpoint for Saver {
    fn save(&self, mark: u64) -> Result<()> {
        self.hold.check()?;
        if !self.sink.durable_when_landed() {
            self.sink.flush()?;
        }
        let mut record = self.record.lock().unwrap().clone();
        record.mark = mark;
        if let Some((marks, input)) = &self.stream {
            let (crc, data) = {
                let mut marks = marks.lock().unwrap();
                let at = marks.get(&mark).copied();
                // What is below the mark is never asked for again.
                *marks = marks.split_off(&mark);
                at.ok_or_else(|| {
                    Error::Unsupported(format!("no record boundary at stream offset {mark}"))
                })?
            };
            record.crc = Some(crc);
            record.bytes_done = data;
            if let Location::Path(path) = input {
                record.window = Some(window_crc(path, mark)?);
            }
        }
        self.store.save(&record.text())?;
        self.saved.store(true, Ordering::Relaxed);
        *self.record.lock().unwrap() = record;
        fault::checkpoint();
        Ok(())
    }

    fn check(&self) -> Result<()> {
        self.hold.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record::new(
            "copy",
            vec![
                ("image id".into(), "1234".into()),
                ("snapshot id".into(), "4".into()),
            ],
            vec![("chunk size".into(), "4194304".into())],
        )
    }

    #[test]
    fn a_record_round_trips() {
        let mut r = record();
        r.mark = 8 << 20;
        let back = Record::parse(&r.text(), "d").unwrap();
        assert_eq!(back, r);
        assert!(
            back.matches(&record(), "d").is_ok(),
            "the mark does not count"
        );
    }

    #[test]
    fn a_changed_source_or_plan_is_named() {
        let r = record();
        let mut other = record();
        other.source.insert("snapshot id".into(), "7".into());
        let err = r.matches(&other, "rbd:rbd/d").unwrap_err();
        assert_eq!(err.exit().code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("the source's snapshot id changed: recorded 4, now 7"),
            "{text}"
        );
        let mut plan = record();
        plan.plan.insert("chunk size".into(), "8388608".into());
        let text = r.matches(&plan, "d").unwrap_err().to_string();
        assert!(text.contains("the plan's chunk size changed"), "{text}");
        let mut job = record();
        job.job = "import-diff".into();
        assert!(r.matches(&job, "d").is_err());
        assert!(Record::parse("{not json", "d").is_err());
    }
}
