//! The `--json` reports: one JSON object on standard output at the end of a run.
//!
//! `rbdcp copy --json` (and `export-diff`, `import-diff`) prints
//! `{"complete", "resumed_from", "bytes_skipped", "retries", "reconnects", "diff_mode",
//! "setup_seconds", "source", "destination", "size",
//! "bytes_read", "bytes_written", "bytes_zero", "extents", "chunks", "seconds",
//! "bytes_per_second", "verified"}`: whether the destination held the result already
//! (nothing copied); where a resumed job started (an image offset, for import-diff a stream
//! offset; `null` when nothing was skipped) and the data bytes it did not copy again;
//! transient errors retried; times the job connected again and resumed (after that, the
//! byte counts are the last attempt's and `resumed_from` is where it started); how an RBD
//! source listed what changed (`fast-diff+exact`: changed objects from its fast-diff map,
//! then the exact extents in each; `exact`: every object visited; `whole-object`; `null`
//! for other sources); the seconds until both sides were open and checked (copy only,
//! else 0); bytes read from the source, written as data, and made zero
//! (holes or write-zeroes); extents and chunks in the plan; wall seconds; bytes covered per
//! second; and `verified` (`true` or `false` after `--verify`, else `null`).
//! A source that is a clone adds `"clone_of": {"parent", "flattened", "linked_to"}`: its
//! parent snapshot, whether the copy holds the parent's data too (the default), and with
//! `--keep-parent` the snapshot the destination is a clone of; `null` for other sources.
//! `rbdcp copy --snapshots --json` prints `{"source", "destination", "snapshots", "held",
//! "skipped", "bytes_read", "bytes_written", "bytes_zero", "seconds", "retries",
//! "clone_of"}`: the snapshots this run copied, in order, those the destination held
//! already, the non-user snapshots skipped, the totals of every step, and the first
//! step's `clone_of`.
//! `rbdcp backup --json` is described in `backup.rs`.
//! `rbdcp discard --json` prints `{"destination", "discarded"}`. `rbdcp verify --json` prints `{"a", "b", "size_a", "size_b", "identical",
//! "differing_chunks", "first_differences": [{"offset", "length"}], "bytes_compared",
//! "sample_percent", "seed"}`: the first differing chunks (at most 16, lowest first) and the
//! bytes compared (each read from both images); with `--sample`, the share of chunks compared
//! and the seed that picked them (else both `null`), and then `identical` and the differences
//! are the sample's: `identical` means no difference in the chunks compared.
//! A run that fails prints `{"error": "..."}` instead, and exits 1.

use rbdcp::engine::Comparison;
use rbdcp::job::Outcome;
use serde::Serialize;

/// The report of `rbdcp copy --snapshots`: the snapshots copied by this run in order, those
/// the destination held already, and the totals of all steps.
#[derive(Debug, Serialize)]
pub struct HistoryJson<'a> {
    pub source: String,
    pub destination: String,
    pub snapshots: &'a [String],
    pub held: &'a [String],
    /// Snapshots that are not user snapshots: `{"name", "namespace"}`.
    pub skipped: Vec<Skipped<'a>>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub bytes_zero: u64,
    pub seconds: f64,
    pub retries: u64,
    /// A source that is a clone (at its oldest snapshot copied): its parent, and whether
    /// the copy kept the link.
    pub clone_of: Option<LinkJson>,
}

/// A snapshot `copy --snapshots` skipped.
#[derive(Debug, Serialize)]
pub struct Skipped<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// The report of `rbdcp copy`.
#[derive(Debug, Serialize)]
pub struct CopyJson<'a> {
    /// The destination held the job's result already; nothing was copied.
    pub complete: bool,
    /// Where a resumed job started (an image offset; for import-diff, a stream offset).
    pub resumed_from: Option<u64>,
    /// Data bytes a resumed job did not copy again.
    pub bytes_skipped: u64,
    /// Transient errors retried.
    pub retries: u64,
    /// Times the job connected again and resumed.
    pub reconnects: u32,
    /// How an RBD source listed what changed.
    pub diff_mode: Option<&'static str>,
    /// Seconds until both sides were open and checked.
    pub setup_seconds: f64,
    pub source: &'a str,
    pub destination: &'a str,
    pub size: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub bytes_zero: u64,
    pub extents: u64,
    pub chunks: u64,
    pub seconds: f64,
    pub bytes_per_second: f64,
    pub verified: Option<bool>,
    /// A source that is a clone: its parent, and whether the copy kept the link.
    pub clone_of: Option<LinkJson>,
}

/// What a copy of a clone did with its parent: `{"parent", "flattened", "linked_to"}`.
#[derive(Debug, Serialize)]
pub struct LinkJson {
    /// The source's parent snapshot.
    pub parent: String,
    /// The copy holds its parent's data too (no `--keep-parent`).
    pub flattened: bool,
    /// The snapshot the destination is a clone of, rbdcp's copy of `parent`.
    pub linked_to: Option<String>,
}

impl LinkJson {
    pub fn new(link: &rbdcp::job::Link) -> Self {
        LinkJson {
            parent: link.parent.clone(),
            flattened: link.kept.is_none(),
            linked_to: link.kept.clone(),
        }
    }
}

impl<'a> CopyJson<'a> {
    pub fn new(source: &'a str, destination: &'a str, outcome: &Outcome, retries: u64) -> Self {
        let r = &outcome.report;
        let verified = outcome.verified;
        CopyJson {
            complete: outcome.complete,
            resumed_from: r.resumed_from,
            bytes_skipped: r.bytes_skipped,
            retries,
            reconnects: outcome.reconnects,
            diff_mode: outcome.diff_mode,
            setup_seconds: outcome.setup_seconds,
            source,
            destination,
            size: r.size,
            bytes_read: r.bytes_read,
            bytes_written: r.bytes_written,
            bytes_zero: r.bytes_zero,
            extents: r.extents,
            chunks: r.chunks,
            seconds: r.seconds,
            bytes_per_second: r.bytes_per_second(),
            verified,
            clone_of: outcome.link.as_ref().map(LinkJson::new),
        }
    }
}

/// One differing range.
#[derive(Debug, Serialize)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

/// The report of `rbdcp verify`.
#[derive(Debug, Serialize)]
pub struct VerifyJson<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub size_a: u64,
    pub size_b: u64,
    pub identical: bool,
    pub differing_chunks: u64,
    pub first_differences: Vec<Range>,
    pub bytes_compared: u64,
    /// The share of chunks compared, in percent, with `--sample`.
    pub sample_percent: Option<f64>,
    /// The seed that picked them, with `--sample`.
    pub seed: Option<u64>,
}

impl<'a> VerifyJson<'a> {
    pub fn new(a: &'a str, b: &'a str, c: &Comparison) -> Self {
        VerifyJson {
            a,
            b,
            size_a: c.size_a,
            size_b: c.size_b,
            identical: c.identical(),
            differing_chunks: c.differing,
            first_differences: c
                .first
                .iter()
                .map(|&(offset, length)| Range { offset, length })
                .collect(),
            bytes_compared: c.bytes_compared,
            sample_percent: c.sample.map(|s| s.percent),
            seed: c.sample.map(|s| s.seed),
        }
    }
}

/// One extent of `rbdcp diff --format json`; `exists` is a string, as `rbd diff` prints it.
#[derive(Debug, Serialize)]
pub struct ExtentJson {
    pub offset: u64,
    pub length: u64,
    pub exists: &'static str,
}

/// The report of `rbdcp discard`.
#[derive(Debug, Serialize)]
pub struct DiscardJson {
    pub destination: String,
    pub discarded: bool,
}

/// The failure report.
#[derive(Debug, Serialize)]
pub struct ErrorJson {
    pub error: String,
}
