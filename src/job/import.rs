//! The import-diff job: applies an `rbd export-diff` v1 stream to an image, many writes in
//! flight, resumably: from a file it resumes at the recorded stream offset; from standard
//! input it reads the stream again and skips, without writing, what was applied.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::record::{earlier, provenance, Record, Saver};
use super::{Context, Outcome};
use crate::backend::sidecar::Sidecar;
use crate::backend::stream::{open_stream, window_crc, Marks};
use crate::backend::SinkOptions;
use crate::engine::{self, Hook, Options, APPLY_JOBS};
use crate::error::{Error, Result};
use crate::location::Location;

/// What to apply where.
#[derive(Debug, Clone)]
pub struct Import {
    /// The stream: a file or `-`.
    pub input: Location,
    /// The image to update.
    pub dst: Location,
    /// A crc sidecar to check every data record against.
    pub crc: Option<PathBuf>,
    /// Writes in flight (`None`: [`APPLY_JOBS`]).
    pub jobs: Option<usize>,
}

/// Runs `job`. From a file, an attempt that failed for want of a new connection is made
/// again on one, resuming at the recorded offset; standard input cannot be read again.
pub fn import(job: &Import, ctx: &Context) -> Result<Outcome> {
    match job.input {
        Location::Path(_) => ctx.reconnecting(|| once(job, ctx)),
        _ => once(job, ctx),
    }
}

/// One attempt at `job`.
fn once(job: &Import, ctx: &Context) -> Result<Outcome> {
    let sidecar = job.crc.as_deref().map(Sidecar::load).transpose()?;
    let ((header, pieces), prepared) =
        ctx.prepare(&job.dst, || open_stream(&job.input, sidecar))?;
    let identity = vec![
        (
            "stream from".to_owned(),
            header.from.clone().unwrap_or_default(),
        ),
        (
            "stream to".to_owned(),
            header.to.clone().unwrap_or_default(),
        ),
        ("image size".to_owned(), header.size.to_string()),
    ];
    let sink_opts = SinkOptions {
        // A diff updates the image it names, as `rbd import-diff` does; so does a full
        // stream onto an existing image.
        update: true,
        restart: ctx.restart,
        provenance: Some(provenance(identity.clone())),
        base: header.from.clone(),
        snap: header.to.clone(),
        size: header.size,
        access: ctx.access.clone(),
        ..SinkOptions::default()
    };
    let Some(super::Opened { dest, sink, store }) = ctx.open(prepared, &sink_opts)? else {
        return Ok(Outcome {
            complete: true,
            ..Outcome::default()
        });
    };
    let label = job.dst.to_string();
    let marks = Marks::default();
    let mut pieces = pieces
        .reuse(Arc::clone(&ctx.buffers))
        .marks(Arc::clone(&marks));
    let mut record = Record::new("import-diff", identity, Vec::new());
    let had = earlier(dest.found, store.as_ref(), &record, &label)?;
    let recorded = had.is_some();
    if let Some(had) = had {
        if had.mark > 0 {
            let crc = had.crc.unwrap_or_default();
            if let (Location::Path(path), Some(want)) = (&job.input, had.window) {
                let same = std::fs::metadata(path).is_ok_and(|m| m.len() >= had.mark)
                    && window_crc(path, had.mark)? == want;
                if !same {
                    return Err(Error::Refused {
                        image: label,
                        reason: format!(
                            "{} is not the stream the progress record was made for: its bytes before offset {} differ (run with --restart to apply it from the start)",
                            job.input, had.mark
                        ),
                    });
                }
            }
            pieces.resume_at(had.mark, crc, header.size, had.bytes_done)?;
            marks
                .lock()
                .unwrap()
                .insert(had.mark, (crc, had.bytes_done));
        }
        record.mark = had.mark;
        record.bytes_done = had.bytes_done;
        record.crc = had.crc;
        record.window = had.window;
    }
    let start = record.mark;
    let skipped_before = record.bytes_done;
    let saver = Arc::new(Saver {
        sink: Arc::clone(&sink),
        store: Arc::clone(&store),
        record: Mutex::new(record),
        saved: AtomicBool::new(recorded),
        hold: dest.hold(),
        stream: Some((marks, job.input.clone())),
    });
    // No record before the first checkpoint, as for a copy.
    let opts = Options {
        jobs: job.jobs.unwrap_or(APPLY_JOBS),
        cancel: Some(Arc::clone(&ctx.cancel)),
        buffers: Arc::clone(&ctx.buffers),
        start,
        checkpoint: Some(Hook(Arc::clone(&saver) as _)),
        checkpoint_every: ctx.checkpoint_every,
        stall: ctx.stall(),
        ..Options::default()
    };
    let bar = (ctx.bars)("import-diff");
    let mut report = engine::apply(
        pieces,
        header.size,
        sink.as_ref(),
        &opts,
        &ctx.throttle,
        bar.as_ref(),
    )
    .and_then(|r| saver.clear().map(|()| r))
    .map_err(|e| ctx.failed(e, &dest).kept(&label))?;
    if start > 0 {
        report.bytes_skipped = skipped_before;
    }
    Ok(Outcome {
        report,
        ..Outcome::default()
    })
}
