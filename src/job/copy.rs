//! The copy job: an image, or what changed between two snapshots, from any source to any
//! destination, resumable, with the destination snapshot made at the end.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::record::{earlier, is_copy_of, provenance, Record, Saver};
use super::{Context, Outcome};
use crate::backend::{open_source, SinkOptions, SourceOptions};
use crate::engine::{
    self, check_sums, chunk_size, default_jobs, Carries, Hook, ImageSource, Options, Parent,
};
use crate::error::{Error, Result};
use crate::location::{Location, RbdSpec};

/// What to copy where.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The image to read.
    pub src: Location,
    /// The image to write.
    pub dst: Location,
    /// Copy only what changed since this snapshot of the source.
    pub from_snap: Option<String>,
    /// Create the source's snapshot on an RBD destination at the end.
    pub dst_snap: bool,
    /// List changes by whole objects.
    pub whole_object: bool,
    /// Re-read the destination afterwards and compare every chunk copied with the source's.
    pub verify: bool,
    /// Replace an existing destination.
    pub overwrite: bool,
    /// Reserve space before writing, where the destination can.
    pub preallocate: bool,
    /// Workers (`None`: enough for the default bytes in flight).
    pub jobs: Option<usize>,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// A progress record made for another source is dropped and the copy starts over,
    /// instead of refusing: a backup sets it, since a killed backup's record is for its
    /// own snapshot, whose changes the next one's include.
    pub supersede: bool,
    /// Fields added to the provenance record of the destination's new snapshot (a
    /// backup's time).
    pub note: Vec<(String, String)>,
    /// The pool of a new RBD destination's data (`--data-pool`).
    pub data_pool: Option<String>,
    /// A source that is a clone becomes a clone on the destination too, of rbdcp's copy
    /// of its parent snapshot, and only its own data is copied (`--keep-parent`).
    pub keep_parent: bool,
    /// Where to look for that copy (`--parent-pool`; default: the destination's pool).
    pub parent_pool: Option<String>,
}

impl Copy {
    /// A copy of `src` to `dst` with the defaults.
    pub fn new(src: Location, dst: Location) -> Copy {
        Copy {
            src,
            dst,
            from_snap: None,
            dst_snap: true,
            whole_object: false,
            verify: false,
            overwrite: false,
            preallocate: true,
            jobs: None,
            chunk_size: engine::DEFAULT_CHUNK,
            supersede: false,
            note: Vec::new(),
            data_pool: None,
            keep_parent: false,
            parent_pool: None,
        }
    }

    fn check(&self) -> Result<Option<String>> {
        if self.src == self.dst {
            return Err(Error::Unsupported(format!(
                "source and destination are the same image: {}",
                self.src
            )));
        }
        let src_snap = match &self.src {
            Location::Rbd(spec) => spec.snap.clone(),
            _ => None,
        };
        if self.keep_parent && !matches!(self.dst, Location::Rbd(_)) {
            return Err(Error::Unsupported(format!(
                "--keep-parent makes the destination a clone: {} is not an RBD image",
                self.dst
            )));
        }
        if self.keep_parent && self.overwrite {
            // An existing image written in place is no clone: the parent's data would be
            // missing from it.
            return Err(Error::Unsupported(format!(
                "--keep-parent creates {} as a clone, and --overwrite writes an existing image in place: remove it first",
                self.dst
            )));
        }
        if self.from_snap.is_some() && self.from_snap == src_snap {
            return Err(Error::Unsupported(format!(
                "--from-snap names the source's own snapshot: {}",
                self.src
            )));
        }
        Ok(src_snap)
    }
}

/// Runs `job`: opens both sides, resumes from the destination's record where one matches,
/// copies, finishes (rename, snapshot) and drops the record; then verifies, if asked.
pub fn copy(job: &Copy, ctx: &Context) -> Result<Outcome> {
    let mut outcome = match ctx.reconnecting(|| once(job, ctx, ctx.restart)) {
        Err(e) if job.supersede && !ctx.restart && matches!(e.root(), Error::Refused { .. }) => {
            ctx.reconnecting(|| once(job, ctx, true))?
        }
        other => other?,
    };
    if job.verify {
        let jobs = job.jobs.unwrap_or_else(|| default_jobs(job.chunk_size));
        let mismatch = verify(job, ctx, &outcome.report, jobs)?;
        outcome.verified = Some(mismatch.is_none());
        outcome.mismatch = mismatch;
    }
    Ok(outcome)
}

/// One attempt at `job`'s copy; `restart` drops what an earlier run left.
fn once(job: &Copy, ctx: &Context, restart: bool) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let src_snap = job.check()?;
    let src_opts = SourceOptions {
        base: job.from_snap.clone(),
        whole_object: job.whole_object,
        own_data: job.keep_parent,
        access: ctx.access.clone(),
        list: true,
    };
    // An RBD destination gets what the source carries: its image-meta when it is new,
    // and its snapshot's protection.
    let to_rbd = matches!(job.dst, Location::Rbd(_));
    let ((src, carries), prepared) = ctx.prepare(&job.dst, || {
        let src = open_source(&job.src, &src_opts)?;
        let carries = if to_rbd {
            src.carries()?
        } else {
            Carries::default()
        };
        Ok((src, carries))
    })?;
    let src = ctx.retried_source(src);
    let snap = src_snap.filter(|_| job.dst_snap);
    let clone_of = match (&carries.parent, &job.dst) {
        (Some(parent), Location::Rbd(dst)) if job.keep_parent && job.from_snap.is_none() => {
            Some((parent_copy(job, ctx, dst, parent)?, parent.overlap))
        }
        _ => None,
    };
    // An incremental copy writes into the destination as it was made.
    let link = match &carries.parent {
        Some(p) if job.from_snap.is_none() => Some(super::Link {
            parent: p.label.clone(),
            kept: clone_of.as_ref().map(|(spec, _)| spec.to_string()),
        }),
        _ => None,
    };
    let sink_opts = SinkOptions {
        overwrite: job.overwrite,
        restart,
        provenance: snap
            .as_ref()
            .map(|_| provenance(src.identity().into_iter().chain(job.note.clone()).collect())),
        base: job.from_snap.clone(),
        protect: carries.protected && snap.is_some(),
        meta: if job.from_snap.is_none() {
            carries.meta
        } else {
            Vec::new()
        },
        data_pool: job.data_pool.clone(),
        clone_of: clone_of.clone(),
        snap,
        size: src.size(),
        layout: src.layout(),
        access: ctx.access.clone(),
        ..SinkOptions::default()
    };
    let Some(super::Opened { dest, sink, store }) = ctx.open(prepared, &sink_opts, None)? else {
        return Ok(Outcome {
            complete: true,
            report: engine::Report {
                size: src.size(),
                ..Default::default()
            },
            diff_mode: src.diff_mode(),
            link,
            ..Outcome::default()
        });
    };
    let setup_seconds = started.elapsed().as_secs_f64();
    let label = job.dst.to_string();
    let chunk = chunk_size(job.chunk_size, src.object_size().or(sink.object_size()));
    let mut plan = vec![
        ("chunk size".into(), chunk.to_string()),
        ("whole object".into(), job.whole_object.to_string()),
    ];
    if let Some(base) = &job.from_snap {
        plan.push(("base snapshot".into(), base.clone()));
    }
    if let Some((parent, _)) = &clone_of {
        plan.push(("clone of".into(), parent.to_string()));
    }
    let mut record = Record::new("copy", src.identity(), plan);
    let had = earlier(dest.found, store.as_ref(), &record, &label)?;
    if let Some(had) = &had {
        record.mark = had.mark;
    }
    let saver = Arc::new(Saver {
        sink: Arc::clone(&sink),
        store: Arc::clone(&store),
        record: Mutex::new(record),
        saved: AtomicBool::new(had.is_some()),
        hold: dest.hold(),
        stream: None,
    });
    // A new image gets no record before the first checkpoint: a staged image without one
    // is removed by a rerun (one round trip fewer per job). An incremental copy writes in
    // place, so its record comes first: writes without one would read as someone else's.
    if job.from_snap.is_some() {
        saver.begin()?;
    }
    let jobs = job.jobs.unwrap_or_else(|| default_jobs(job.chunk_size));
    let start = saver.record.lock().unwrap().mark;
    let opts = Options {
        jobs,
        chunk_size: job.chunk_size,
        preallocate: job.preallocate,
        cancel: Some(Arc::clone(&ctx.cancel)),
        keep_sums: job.verify,
        buffers: Arc::clone(&ctx.buffers),
        start,
        checkpoint: Some(Hook(Arc::clone(&saver) as _)),
        checkpoint_every: ctx.checkpoint_every,
        stall: ctx.stall(),
    };
    let bar = (ctx.bars)("copy");
    let report = engine::copy(&src, sink.as_ref(), &opts, &ctx.throttle, bar.as_ref())
        .map_err(|e| ctx.failed(e, &dest).kept(&label))?;
    drop(opts);
    super::wrap_up(saver, (sink, store, dest)).map_err(|e| e.kept(&label))?;
    Ok(Outcome {
        report,
        diff_mode: src.diff_mode(),
        setup_seconds,
        link,
        ..Outcome::default()
    })
}

/// rbdcp's copy of the clone source's `parent` snapshot on `dst`'s cluster, to clone the
/// destination from; refuses (exit 3) when there is none.
fn parent_copy(job: &Copy, ctx: &Context, dst: &RbdSpec, parent: &Parent) -> Result<RbdSpec> {
    let made = |record: &str| is_copy_of(record, &parent.image, parent.snap_id);
    let pool = job.parent_pool.as_deref();
    match crate::backend::rbd::find_copy(dst, pool, &parent.name, made, &ctx.access)? {
        Some(found) => Ok(found),
        None => Err(Error::Refused {
            image: dst.to_string(),
            reason: format!(
                "--keep-parent: {} is a clone of {}, and no image in pool {} holds rbdcp's copy of that snapshot. Copy the parent first (`rbdcp copy rbd:{} ...` keeps its snapshot), name the pool that holds it with --parent-pool, or copy flattened without --keep-parent",
                job.src,
                parent.label,
                pool.unwrap_or(&dst.pool),
                parent.label
            ),
        }),
    }
}

/// Re-reads the chunks a copy wrote; returns what differs, if anything.
fn verify(
    job: &Copy,
    ctx: &Context,
    report: &engine::Report,
    jobs: usize,
) -> Result<Option<String>> {
    let dst = &job.dst;
    let opts = SourceOptions {
        access: ctx.access.clone(),
        ..SourceOptions::default()
    };
    let image = ctx.retried_source(open_source(dst, &opts)?);
    let bar = (ctx.bars)("verify");
    let jobs = ctx.buffers.workers(jobs, job.chunk_size);
    let c = check_sums(&image, &report.sums, jobs, bar.as_ref())?;
    if image.size() != report.size {
        return Ok(Some(format!(
            "{dst} holds {} bytes, not {}",
            image.size(),
            report.size
        )));
    }
    Ok(c.first.first().map(|(offset, _)| {
        format!(
            "{} chunk(s) of {dst} differ, the first at offset {offset}",
            c.differing
        )
    }))
}
