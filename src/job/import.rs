//! The import jobs: applies an `rbd export-diff` v1 stream to an image, or creates an image
//! with its snapshots from an `rbd export --export-format 2` stream (one diff after the
//! other, each ending in its snapshot), many writes in flight, resumably: from a file it
//! resumes at the recorded stream offset; from standard input it reads the stream again
//! and skips, without writing, what was applied.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::record::{earlier, provenance, Record, Saver};
use super::{Context, Outcome};
use crate::backend::sidecar::Sidecar;
use crate::backend::stream::{
    open_image_stream, open_stream, window_crc, ImageStream, Marks, Pieces,
};
use crate::backend::{prepare_dest, Prepared, SinkOptions};
use crate::engine::{self, Hook, Layout, Options, Report, APPLY_JOBS};
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
    /// The stream is an image stream (`--export-format 2`), which creates `dst`.
    pub image: bool,
    /// The pool of the new image's data (`--data-pool`), for an image stream.
    pub data_pool: Option<String>,
}

/// What an image stream's first diff creates: a new image of this shape.
struct New {
    layout: Layout,
    meta: Vec<(String, String)>,
}

/// Runs `job`. From a file, an attempt that failed for want of a new connection is made
/// again on one, resuming at the recorded offset; standard input cannot be read again.
pub fn import(job: &Import, ctx: &Context) -> Result<Outcome> {
    let attempt = || match job.image {
        true => image(job, ctx),
        false => once(job, ctx),
    };
    match job.input {
        Location::Path(_) => ctx.reconnecting(attempt),
        _ => attempt(),
    }
}

/// One attempt at `job`.
fn once(job: &Import, ctx: &Context) -> Result<Outcome> {
    let sidecar = job.crc.as_deref().map(Sidecar::load).transpose()?;
    let ((header, mut pieces), prepared) =
        ctx.prepare(&job.dst, || open_stream(&job.input, sidecar))?;
    step(job, ctx, &header, &mut pieces, prepared, None, Vec::new())
}

/// One attempt at `job`, an image stream: each diff is a step, and a step whose snapshot
/// the destination holds (with the record of this very diff) is skipped.
fn image(job: &Import, ctx: &Context) -> Result<Outcome> {
    if job.crc.is_some() {
        return Err(Error::Config(
            "--crc checks a diff stream; an image stream has no sidecar".into(),
        ));
    }
    let (stream, prepared) = ctx.prepare(&job.dst, || open_image_stream(&job.input))?;
    let ImageStream {
        header: h,
        mut reader,
        file,
    } = stream;
    let object = h.order.map(|o| 1u64 << o);
    let stripe = match (h.stripe_unit, h.stripe_count) {
        (Some(unit), Some(count)) if count > 1 || Some(unit) != object => Some((unit, count)),
        _ => None,
    };
    let mut new = Some(New {
        layout: Layout {
            object_size: object,
            stripe,
            features: h.features,
        },
        meta: h.meta.clone(),
    });
    let mut prepared = Some(prepared);
    let mut total = Outcome::default();
    let mut from: Option<String> = None;
    let label = job.dst.to_string();
    for i in 0..h.diffs {
        // Past the first diff the destination holds what the diffs before made.
        let kept = |e: Error| if i > 0 { e.kept(&label) } else { e };
        let (at, crc) = (reader.position(), reader.crc());
        let (header, mut pieces) = ImageStream::diff(reader, file.as_ref()).map_err(kept)?;
        let last = i + 1 == h.diffs;
        if header.from != from || header.to.is_none() != last {
            let found = format!(
                "a diff from {:?} to {:?}",
                header.from.as_deref().unwrap_or("nothing"),
                header.to.as_deref().unwrap_or("the head")
            );
            let expected = match (&from, last) {
                (None, _) => "the first diff, from nothing".to_owned(),
                (Some(f), true) => format!("the head's diff, from {f:?}"),
                (Some(f), false) => format!("a snapshot's diff, from {f:?}"),
            };
            return Err(kept(Error::stream(
                &job.input.to_string(),
                at,
                &expected,
                &found,
            )));
        }
        let prepared = match prepared.take() {
            Some(p) => p,
            None => prepare_dest(&job.dst, &ctx.access).map_err(kept)?,
        };
        // A snapshot made from this diff is this stream's: the crc32 of every byte before
        // the diff names it (and so the stream up to there).
        let part = vec![("stream crc".to_owned(), format!("{crc:08x}"))];
        let outcome = step(job, ctx, &header, &mut pieces, prepared, new.take(), part)?;
        if outcome.complete {
            pieces.skip_rest().map_err(kept)?;
        }
        total.report.add(&outcome.report);
        total.complete = outcome.complete && (total.complete || i == 0);
        reader = pieces.into_reader();
        from = header.to;
    }
    Ok(total)
}

/// Applies one diff, `header` and then `pieces`, to `dst`, which `prepared` holds;
/// `new`: it creates the image; `part`: what identifies the diff besides its header.
fn step(
    job: &Import,
    ctx: &Context,
    header: &crate::stream::Header,
    pieces: &mut Pieces<Box<dyn std::io::Read + Send>>,
    prepared: Prepared,
    new: Option<New>,
    part: Vec<(String, String)>,
) -> Result<Outcome> {
    let mut identity = vec![
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
    identity.extend(part);
    let creates = new.is_some();
    let new = new.unwrap_or(New {
        layout: Layout::default(),
        meta: Vec::new(),
    });
    let sink_opts = SinkOptions {
        // A diff updates the image it names, as `rbd import-diff` does; so does a full
        // stream onto an existing image. An image stream's first diff creates it.
        update: !creates,
        restart: ctx.restart,
        provenance: Some(provenance(identity.clone())),
        base: header.from.clone(),
        snap: header.to.clone(),
        protect: header.protected && header.to.is_some(),
        size: header.size,
        layout: new.layout,
        meta: new.meta,
        data_pool: job.data_pool.clone().filter(|_| creates),
        access: ctx.access.clone(),
        ..SinkOptions::default()
    };
    let what = match (job.image, &header.to) {
        (false, _) => "import-diff".to_owned(),
        (true, Some(snap)) => format!("import {snap}"),
        (true, None) => "import head".to_owned(),
    };
    // How a resume knows the stream again: a file by its bytes before the offset (its
    // crc32 is not kept), standard input by the crc32 of every byte before it.
    let check = match pieces.tracks() {
        true => "crc32 of the stream",
        false => "the bytes before the offset",
    };
    let plan = vec![("resume check".to_owned(), check.to_owned())];
    let mut record = Record::new("import-diff", identity, plan);
    let own = job.image.then_some(&record);
    let Some(super::Opened { dest, sink, store }) = ctx.open(prepared, &sink_opts, own)? else {
        return Ok(Outcome {
            complete: true,
            report: Report {
                size: header.size,
                ..Report::default()
            },
            ..Outcome::default()
        });
    };
    let label = job.dst.to_string();
    let marks = Marks::default();
    pieces.marks(Arc::clone(&marks));
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
    let bar = (ctx.bars)(&what);
    let mut report = engine::apply(
        &mut *pieces,
        header.size,
        sink.as_ref(),
        &opts,
        &ctx.throttle,
        bar.as_ref(),
    )
    .map_err(|e| ctx.failed(e, &dest).kept(&label))?;
    drop(opts);
    super::wrap_up(saver, (sink, store, dest)).map_err(|e| e.kept(&label))?;
    if start > 0 {
        report.bytes_skipped = skipped_before;
    }
    Ok(Outcome {
        report,
        ..Outcome::default()
    })
}
