//! `rbdcp export-diff` and `rbdcp import-diff`: `rbd export-diff` v1 streams.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use rbdcp::backend::sidecar::Sidecar;
use rbdcp::backend::stream::{open_stream, StreamSink};
use rbdcp::backend::{open_sink, open_source, Access, SinkOptions, SourceOptions};
use rbdcp::engine::{self, Buffers, Options, APPLY_JOBS};
use rbdcp::Location;

use super::args::{ExportDiffArgs, ImportDiffArgs};
use super::{
    finish_report, interrupt_flag, jobs, location, progress, source_opts, throttle, Usage,
};

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
    let src = open_source(&src_loc, &opts)?;
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
        cancel: Some(interrupt_flag()),
        keep_sums: false,
        ..Options::default()
    };
    let bar = progress::pick(!a.output.no_progress, "export-diff");
    let report = engine::copy(
        src.as_ref(),
        &sink,
        &opts,
        &throttle(&a.limits),
        bar.as_ref(),
    )
    .with_context(|| format!("exporting {src_loc} to {out_loc}"))?;
    finish_report(
        &a.output,
        ("exported", "to"),
        &src_loc,
        &out_loc,
        &report,
        None,
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
    let sidecar = a.crc.as_deref().map(Sidecar::load).transpose()?;
    let (header, pieces) = open_stream(&in_loc, sidecar)?;
    let sink_opts = SinkOptions {
        // A diff updates the image it names; a full stream onto an existing image overwrites it.
        overwrite: true,
        base: header.from.clone(),
        snap: header.to.clone(),
        size: header.size,
        access: access.clone(),
        ..SinkOptions::default()
    };
    let dst = open_sink(&dst_loc, &sink_opts)?;
    let buffers = Arc::new(Buffers::default());
    let pieces = pieces.reuse(Arc::clone(&buffers));
    let opts = Options {
        jobs: a.jobs.map_or(APPLY_JOBS, usize::from),
        cancel: Some(interrupt_flag()),
        buffers,
        ..Options::default()
    };
    let bar = progress::pick(!a.output.no_progress, "import-diff");
    let report = engine::apply(
        pieces,
        header.size,
        dst.as_ref(),
        &opts,
        &throttle(&a.limits),
        bar.as_ref(),
    )
    .with_context(|| format!("importing {in_loc} into {dst_loc} (nothing was snapshotted)"))?;
    finish_report(
        &a.output,
        ("imported", "into"),
        &in_loc,
        &dst_loc,
        &report,
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}
