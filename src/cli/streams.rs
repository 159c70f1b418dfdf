//! `rbdcp export-diff` and `rbdcp import-diff`: `rbd export-diff` v1 streams.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use anyhow::Result;
use rbdcp::backend::retry::Retry;
use rbdcp::backend::stream::StreamSink;
use rbdcp::backend::{open_source, Access, SourceOptions};
use rbdcp::engine::{self, ImageSource, Options};
use rbdcp::job::import::{import, Import};
use rbdcp::job::Outcome;
use rbdcp::Location;

use super::args::{ExportDiffArgs, ImportDiffArgs};
use super::{context, failed, finish_report, jobs, location, source_opts, Usage};

/// A stream location: a path or `-`, never an image.
fn stream_location(text: &str) -> Result<Location> {
    match location(text)? {
        Location::Rbd(spec) => {
            Err(Usage(format!("{spec} is an image; a diff stream is a file or -")).into())
        }
        loc => Ok(loc),
    }
}

pub(super) fn export_diff(a: ExportDiffArgs, access: &Access) -> Result<ExitCode> {
    let src_loc = location(&a.src)?;
    let out_loc = stream_location(&a.out)?;
    if out_loc == Location::Stdio && a.output.json {
        return Err(Usage(
            "--json would mix with the stream on standard output; write the stream to a file"
                .into(),
        )
        .into());
    }
    let to = match &src_loc {
        Location::Rbd(spec) => spec.snap.clone(),
        _ => None,
    };
    let opts = SourceOptions {
        base: a.from_snap.clone(),
        whole_object: a.whole_object,
        ..source_opts(access)
    };
    let ctx = context(access, &a.limits, &a.retry, None, &a.output);
    let src = Retry::new(Arc::from(open_source(&src_loc, &opts)?), ctx.retry.clone());
    let sink = StreamSink::create(
        &out_loc,
        a.from_snap.clone(),
        to,
        a.overwrite,
        a.crc.clone(),
    )?;
    let opts = Options {
        jobs: jobs(&a.workers),
        chunk_size: a.workers.chunk_size,
        preallocate: false,
        cancel: Some(Arc::clone(&ctx.cancel)),
        buffers: Arc::clone(&ctx.buffers),
        ..Options::default()
    };
    let bar = (ctx.bars)("export-diff");
    let report = engine::copy(&src, &sink, &opts, &ctx.throttle, bar.as_ref())
        .with_context(|| format!("exporting {src_loc} to {out_loc}"))?;
    let outcome = Outcome {
        report,
        diff_mode: src.diff_mode(),
        ..Outcome::default()
    };
    finish_report(
        &a.output,
        ("exported", "to"),
        &src_loc,
        &out_loc,
        &outcome,
        ctx.retries(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn import_diff(a: ImportDiffArgs, access: &Access) -> Result<ExitCode> {
    let in_loc = stream_location(&a.input)?;
    let dst_loc = location(&a.dst)?;
    if dst_loc == Location::Stdio {
        return Err(
            Usage("import-diff writes to an image: name an rbd: image or a file".into()).into(),
        );
    }
    let job = Import {
        input: in_loc.clone(),
        dst: dst_loc.clone(),
        crc: a.crc.clone(),
        jobs: a.jobs.map(usize::from),
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let outcome = import(&job, &ctx).map_err(|e| {
        failed(
            e,
            &format!("importing {in_loc} into {dst_loc} (nothing was snapshotted)"),
        )
    })?;
    finish_report(
        &a.output,
        ("imported", "into"),
        &in_loc,
        &dst_loc,
        &outcome,
        ctx.retries(),
    )?;
    Ok(ExitCode::SUCCESS)
}
