//! `rbdcp export-diff` and `rbdcp import-diff` (`rbd export-diff` v1 streams), and
//! `rbdcp export` and `rbdcp import` (`rbd export --export-format 2` image streams).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use anyhow::Result;
use rbdcp::backend::retry::Retry;
use rbdcp::backend::stream::StreamSink;
use rbdcp::backend::{open_source, Access, SourceOptions};
use rbdcp::engine::{self, ImageSource, Options};
use rbdcp::job;
use rbdcp::job::export::{export_image, Export};
use rbdcp::job::import::Import;
use rbdcp::job::Outcome;
use rbdcp::Location;

use super::args::{ExportArgs, ExportDiffArgs, ImportArgs, ImportDiffArgs, OutputArgs};
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

/// Refuses `--json` when the stream goes to standard output, where the report would mix
/// with it.
fn report_apart(out: &Location, output: &OutputArgs) -> Result<()> {
    if *out == Location::Stdio && output.json {
        return Err(Usage(
            "--json would mix with the stream on standard output; write the stream to a file"
                .into(),
        )
        .into());
    }
    Ok(())
}

pub(super) fn export_diff(a: ExportDiffArgs, access: &Access) -> Result<ExitCode> {
    let src_loc = location(&a.src)?;
    let out_loc = stream_location(&a.out)?;
    report_apart(&out_loc, &a.output)?;
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
        image: false,
        data_pool: None,
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let outcome = job::import::import(&job, &ctx).map_err(|e| {
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

/// Format 1 is a raw image, which `copy` writes and reads; to or from a file only.
fn raw_only(stream: &Location) -> Result<()> {
    if *stream == Location::Stdio {
        return Err(Usage(
            "--export-format 1 (raw bytes) goes to or from a file; for standard input or output use --export-format 2".into(),
        )
        .into());
    }
    Ok(())
}

pub(super) fn export(a: ExportArgs, access: &Access) -> Result<ExitCode> {
    let src_loc = location(&a.src)?;
    let out_loc = stream_location(&a.out)?;
    let Location::Rbd(src) = &src_loc else {
        return Err(Usage(format!("{src_loc}: export reads an image (rbd:POOL/IMAGE)")).into());
    };
    report_apart(&out_loc, &a.output)?;
    let ctx = context(access, &a.limits, &a.retry, None, &a.output);
    let doing = format!("exporting {src_loc} to {out_loc}");
    let outcome = if a.export_format == 1 {
        raw_only(&out_loc)?;
        let job = job::copy::Copy {
            overwrite: a.overwrite,
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
            ..job::copy::Copy::new(src_loc.clone(), out_loc.clone())
        };
        job::copy::copy(&job, &ctx).map_err(|e| failed(e, &doing))?
    } else {
        let job = Export {
            src: src.clone(),
            out: out_loc.clone(),
            overwrite: a.overwrite,
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
        };
        export_image(&job, &ctx).with_context(|| doing)?
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

pub(super) fn import(a: ImportArgs, access: &Access) -> Result<ExitCode> {
    let in_loc = stream_location(&a.input)?;
    let dst_loc = location(&a.dst)?;
    match &dst_loc {
        Location::Rbd(spec) if spec.snap.is_none() => {}
        _ => {
            return Err(Usage(format!(
                "{dst_loc}: import creates an image; name it as rbd:POOL/IMAGE"
            ))
            .into())
        }
    }
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let doing = format!("importing {in_loc} into {dst_loc}");
    let outcome = if a.export_format == 1 {
        raw_only(&in_loc)?;
        let job = job::copy::Copy {
            jobs: a.jobs.map(usize::from),
            data_pool: a.data_pool.clone(),
            ..job::copy::Copy::new(in_loc.clone(), dst_loc.clone())
        };
        job::copy::copy(&job, &ctx).map_err(|e| failed(e, &doing))?
    } else {
        let job = Import {
            input: in_loc.clone(),
            dst: dst_loc.clone(),
            crc: None,
            jobs: a.jobs.map(usize::from),
            image: true,
            data_pool: a.data_pool.clone(),
        };
        job::import::import(&job, &ctx).map_err(|e| failed(e, &doing))?
    };
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
