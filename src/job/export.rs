//! The image export job: an RBD image with its snapshots as the stream of
//! `rbd export --export-format 2` (a header with the image's shape and image-meta, then
//! one v2 diff per snapshot, oldest first, and one for the head), to a file or standard
//! output. Each diff is a copy from the snapshot before; a file is renamed into place
//! only once complete.

use std::sync::Arc;

use super::{Context, Outcome};
use crate::backend::rbd::RbdSource;
use crate::backend::stream::{slot, Output, StreamSink};
use crate::backend::{open_source, SourceOptions};
use crate::engine::{self, default_jobs, ImageSink, ImageSource, Options, Report};
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};
use crate::stream::{image_header, ImageHeader};

/// What to export where.
#[derive(Debug, Clone)]
pub struct Export {
    /// The image; with a snapshot, the export ends there (its head is that snapshot).
    pub src: RbdSpec,
    /// A file or `-`.
    pub out: Location,
    /// Replace an existing file.
    pub overwrite: bool,
    /// Reads in flight (`None`: enough for the default bytes in flight).
    pub jobs: Option<usize>,
    /// Bytes per chunk.
    pub chunk_size: u64,
}

/// Runs `job`; the report sums every diff's.
pub fn export_image(job: &Export, ctx: &Context) -> Result<Outcome> {
    let opts = SourceOptions {
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    // Opened read-only, as every source is: read-only caps do.
    let head = RbdSource::open(&job.src, &opts)?;
    let mut snaps = head.snaps()?;
    super::history::end_at(&mut snaps, &job.src)?;
    let layout = head.layout();
    let object = layout.object_size.unwrap_or(4 << 20);
    let (unit, count) = layout.stripe.unwrap_or((object, 1));
    let header = ImageHeader {
        order: Some(u64::from(object.trailing_zeros())),
        features: layout.features,
        stripe_unit: Some(unit),
        stripe_count: Some(count),
        meta: head.carries()?.meta,
        diffs: snaps.len() as u64 + 1,
    };
    let size = head.size();
    drop(head);
    let name = job.out.to_string();
    let (output, w) = Output::create(&job.out, job.overwrite)?;
    let slot = slot(w);
    {
        let mut w = slot.lock().unwrap();
        let w = w.as_mut().expect("nothing took it yet");
        image_header(w, &header).map_err(|e| Error::io("write", &name, 0, e))?;
    }
    let mut total = Report::default();
    let mut from: Option<String> = None;
    for snap in &snaps {
        let mut spec = job.src.head();
        spec.snap = Some(snap.name.clone());
        let src = open_source(
            &Location::Rbd(spec),
            &SourceOptions {
                base: from.clone(),
                ..opts.clone()
            },
        )?;
        let protected = src.carries()?.protected;
        let sink = StreamSink::part(
            &name,
            &slot,
            from.clone(),
            Some((snap.name.clone(), protected)),
        );
        total.add(&diff(job, ctx, src, &sink, &snap.name)?);
        from = Some(snap.name.clone());
    }
    let sink = StreamSink::part(&name, &slot, from.clone(), None);
    if job.src.snap.is_some() {
        // The head is the last snapshot: its diff is empty.
        sink.resize(size)?;
        sink.finish()?;
    } else {
        let src = open_source(
            &Location::Rbd(job.src.clone()),
            &SourceOptions { base: from, ..opts },
        )?;
        total.add(&diff(job, ctx, src, &sink, "head")?);
    }
    let w = slot.lock().unwrap().take().expect("the last diff ended");
    drop(
        w.into_inner()
            .map_err(|e| Error::io("write", &name, 0, e.into_error()))?,
    );
    output.persist()?;
    total.size = size;
    Ok(Outcome {
        report: total,
        ..Outcome::default()
    })
}

/// Writes one diff: what `src` holds since its base, into `sink`.
fn diff(
    job: &Export,
    ctx: &Context,
    src: Box<dyn ImageSource>,
    sink: &StreamSink,
    what: &str,
) -> Result<Report> {
    let src = ctx.retried_source(src);
    let opts = Options {
        jobs: job.jobs.unwrap_or_else(|| default_jobs(job.chunk_size)),
        chunk_size: job.chunk_size,
        preallocate: false,
        cancel: Some(Arc::clone(&ctx.cancel)),
        buffers: Arc::clone(&ctx.buffers),
        ..Options::default()
    };
    let bar = (ctx.bars)(&format!("export {what}"));
    engine::copy(&src, sink, &opts, &ctx.throttle, bar.as_ref())
}
