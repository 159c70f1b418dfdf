//! The binary's glue: turns parsed arguments into library calls, output and an exit code.

pub mod args;
mod progress;
mod report;
mod streams;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use rbdcp::backend::{open_sink, open_source, Access, SinkOptions, SourceOptions};
use rbdcp::engine::{self, check_sums, compare, default_jobs, Limits, Options, Report, Throttle};
use rbdcp::size::human;
use rbdcp::Location;

use args::{
    ClusterArgs, Command, CopyArgs, DiffArgs, Format, LimitArgs, OutputArgs, VerifyArgs, Workers,
};
use report::{CopyJson, ErrorJson, ExtentJson, VerifyJson};

/// A mistake in how rbdcp was called: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The job ran and found a difference: exit status 1, message already printed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Differ(pub String);

/// Runs one subcommand.
pub fn run(command: Command, cluster: &ClusterArgs) -> Result<ExitCode> {
    let access = access(cluster);
    match command {
        Command::Copy(a) => copy(a, &access),
        Command::Diff(a) => diff(a, &access),
        Command::Verify(a) => verify(a, &access),
        Command::ExportDiff(a) => streams::export_diff(a, &access),
        Command::ImportDiff(a) => streams::import_diff(a, &access),
    }
}

fn access(c: &ClusterArgs) -> Access {
    let defaults = Access::default();
    Access {
        conf: c.conf.clone(),
        id: c.id.as_deref().map_or(defaults.id, |id| {
            id.strip_prefix("client.").unwrap_or(id).to_owned()
        }),
        keyring: c.keyring.clone(),
        timeout_secs: c.connect_timeout,
    }
}

fn source_opts(access: &Access) -> SourceOptions {
    SourceOptions {
        access: access.clone(),
        ..SourceOptions::default()
    }
}

/// Whether the failing command asked for a JSON report.
pub fn wants_json(command: &Command) -> bool {
    match command {
        Command::Copy(a) => a.output.json,
        Command::Verify(a) => a.output.json,
        Command::Diff(a) => a.format == Format::Json,
        Command::ExportDiff(a) => a.output.json,
        Command::ImportDiff(a) => a.output.json,
    }
}

/// A flag that turns true on the first SIGINT or SIGTERM, so a copy stops cleanly: running
/// chunks finish and a partial destination is removed. A second signal exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let handler = move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("rbdcp: stopping: finishing the chunks in flight (again to quit at once)");
    };
    // Without a handler (one already set) signals keep their default action.
    let _ = ctrlc::set_handler(handler);
    flag
}

/// Prints `{"error": ...}` on standard output.
pub fn print_json_error(message: &str) {
    let _ = print_json(&ErrorJson {
        error: message.to_owned(),
    });
}

fn location(text: &str) -> Result<Location> {
    text.parse::<Location>()
        .map_err(|e| Usage(e.to_string()).into())
}

fn throttle(l: &LimitArgs) -> Throttle {
    Throttle::new(Limits {
        bytes_per_second: l.bps_limit,
        ops_per_second: l.iops_limit,
    })
}

/// Ends a job that moved data: its JSON report with `--json`, else one line on standard
/// error when a progress bar was shown ("copied A to B: ...").
fn finish_report(
    out: &OutputArgs,
    (done, to_word): (&str, &str),
    from: &Location,
    to: &Location,
    r: &Report,
    verified: Option<bool>,
) -> Result<()> {
    let (from, to) = (from.to_string(), to.to_string());
    if out.json {
        print_json(&CopyJson::new(&from, &to, r, verified))?;
    } else if progress::shown(!out.no_progress) {
        eprintln!(
            "{done} {from} {to_word} {to}: {} read, {} written, {} zeroed in {:.1} s ({}/s)",
            human(r.bytes_read),
            human(r.bytes_written),
            human(r.bytes_zero),
            r.seconds,
            human(r.bytes_per_second() as u64),
        );
    }
    Ok(())
}

fn jobs(w: &Workers) -> usize {
    w.jobs
        .map_or_else(|| default_jobs(w.chunk_size), usize::from)
}

fn copy(a: CopyArgs, access: &Access) -> Result<ExitCode> {
    let (src_loc, dst_loc) = (location(&a.src)?, location(&a.dst)?);
    if src_loc == dst_loc {
        return Err(Usage(format!(
            "source and destination are the same image: {src_loc}"
        ))
        .into());
    }
    let src_snap = match &src_loc {
        Location::Rbd(spec) => spec.snap.clone(),
        _ => None,
    };
    if a.from_snap.is_some() && a.from_snap == src_snap {
        return Err(Usage(format!(
            "--from-snap names the source's own snapshot: {src_loc}"
        ))
        .into());
    }
    let base = a.from_snap.clone();
    let src_opts = SourceOptions {
        base: base.clone(),
        whole_object: a.whole_object,
        ..source_opts(access)
    };
    let src = open_source(&src_loc, &src_opts)?;
    let sink_opts = SinkOptions {
        overwrite: a.overwrite,
        base,
        snap: src_snap.filter(|_| !a.no_dst_snap),
        size: src.size(),
        layout: src.layout(),
        access: access.clone(),
    };
    let dst = open_sink(&dst_loc, &sink_opts)?;
    let jobs = jobs(&a.workers);
    let opts = Options {
        jobs,
        chunk_size: a.workers.chunk_size,
        preallocate: !a.no_preallocate,
        cancel: Some(interrupt_flag()),
        keep_sums: a.verify,
        ..Options::default()
    };
    let throttle = throttle(&a.limits);
    let bar = progress::pick(!a.output.no_progress, "copy");
    let report = engine::copy(src.as_ref(), dst.as_ref(), &opts, &throttle, bar.as_ref())
        .with_context(|| format!("copying {src_loc} to {dst_loc}"))?;
    drop(dst);
    let mismatch = match a.verify {
        true => check_copy(&dst_loc, &report, jobs, access, !a.output.no_progress)?,
        false => None,
    };
    let verified = a.verify.then_some(mismatch.is_none());
    finish_report(
        &a.output,
        ("copied", "to"),
        &src_loc,
        &dst_loc,
        &report,
        verified,
    )?;
    match mismatch {
        Some(msg) => Err(Differ(format!("verification failed: {msg} (source {src_loc})")).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Re-reads the chunks a copy wrote; returns what differs, if anything.
fn check_copy(
    dst: &Location,
    report: &Report,
    jobs: usize,
    access: &Access,
    bar: bool,
) -> Result<Option<String>> {
    let image = open_source(dst, &source_opts(access))?;
    let bar = progress::pick(bar, "verify");
    let c = check_sums(image.as_ref(), &report.sums, jobs, bar.as_ref())
        .with_context(|| format!("verifying {dst}"))?;
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

fn diff(a: DiffArgs, access: &Access) -> Result<ExitCode> {
    let loc = location(&a.src)?;
    let opts = SourceOptions {
        base: a.from_snap.clone(),
        whole_object: a.whole_object,
        ..source_opts(access)
    };
    let src = open_source(&loc, &opts)?;
    let extents = src
        .extents()
        .with_context(|| format!("listing the extents of {loc}"))?;
    match a.format {
        Format::Json => {
            let list: Vec<ExtentJson> = extents
                .iter()
                .map(|e| ExtentJson {
                    offset: e.offset,
                    length: e.len,
                    exists: if e.data { "true" } else { "false" },
                })
                .collect();
            print_json(&list)?;
        }
        Format::Plain => {
            let rows: Vec<[String; 3]> = extents
                .iter()
                .map(|e| {
                    [
                        e.offset.to_string(),
                        e.len.to_string(),
                        (if e.data { "data" } else { "zero" }).to_owned(),
                    ]
                })
                .collect();
            print_table(["Offset", "Length", "Type"], &rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs, access: &Access) -> Result<ExitCode> {
    let (a_loc, b_loc) = (location(&a.a)?, location(&a.b)?);
    let opts = source_opts(access);
    let (left, right) = (open_source(&a_loc, &opts)?, open_source(&b_loc, &opts)?);
    let bar = progress::pick(!a.output.no_progress, "verify");
    let c = compare(
        left.as_ref(),
        right.as_ref(),
        jobs(&a.workers),
        a.workers.chunk_size,
        bar.as_ref(),
    )
    .with_context(|| format!("comparing {a_loc} with {b_loc}"))?;
    if a.output.json {
        print_json(&VerifyJson::new(&a_loc.to_string(), &b_loc.to_string(), &c))?;
    }
    if c.identical() {
        if !a.output.json {
            write_out(&format!(
                "identical: {} bytes, {} compared\n",
                c.size_a, c.bytes_compared
            ))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !a.output.json {
        let mut text = String::new();
        if c.size_a != c.size_b {
            text.push_str(&format!(
                "sizes differ: {a_loc} holds {} bytes, {b_loc} {}\n",
                c.size_a, c.size_b
            ));
        }
        for (offset, len) in &c.first {
            text.push_str(&format!("differ at offset {offset} length {len}\n"));
        }
        write_out(&text)?;
    }
    let what = if c.differing > 0 {
        format!("{} chunk(s) differ", c.differing)
    } else {
        "sizes differ".to_owned()
    };
    Err(Differ(format!("{a_loc} and {b_loc} differ: {what}")).into())
}

/// Left-aligned columns two spaces apart, as Ceph's TextTable prints them.
fn print_table(head: [&str; 3], rows: &[[String; 3]]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 3]| {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    };
    line(head);
    for row in rows {
        line([&row[0], &row[1], &row[2]]);
    }
    write_out(&out)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    write_out(&text)
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn write_out(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
