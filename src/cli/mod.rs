//! The binary's glue: turns parsed arguments into library calls, output and an exit code.

pub mod args;
mod backup;
mod migrate;
mod plan;
mod progress;
mod report;
mod streams;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use rbdcp::backend::retry::{Policy, Retry};
use rbdcp::backend::{open_source, Access, SourceOptions};
use rbdcp::engine::{
    compare_with, default_jobs, Buffers, Comparison, ImageSource, Limits, Sample, Scan, Throttle,
    DEFAULT_EVERY,
};
use rbdcp::job::{self, Context, Outcome};
use rbdcp::size::human;
use rbdcp::Location;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use signal_hook::iterator::Signals;

use args::{
    ClusterArgs, Command, CopyArgs, DiffArgs, DiscardArgs, Format, LimitArgs, OutputArgs,
    ResumeArgs, RetryArgs, VerifyArgs, Workers,
};
use report::{CopyJson, DiscardJson, ErrorJson, ExtentJson, VerifyJson};

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
        Command::Export(a) => streams::export(a, &access),
        Command::Import(a) => streams::import(a, &access),
        Command::Discard(a) => discard(a, &access),
        Command::Backup(a) => backup::backup(a, &access),
        Command::Migrate(a) => migrate::migrate(a, &access),
        Command::Plan(a) => plan::plan(a, &access),
        Command::BackupList(a) => backup::backup_list(a, &access),
        Command::Protect(a) => backup::protect(a, true, &access),
        Command::Unprotect(a) => backup::protect(a, false, &access),
        Command::Completions(a) => {
            let mut cmd = args::Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "rbdcp", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => man(&a.dir),
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
        op_timeout_secs: c.op_timeout,
    }
}

fn source_opts(access: &Access) -> SourceOptions {
    SourceOptions {
        access: access.clone(),
        ..SourceOptions::default()
    }
}

/// How `out` asks for progress; `retries` counts the run's retries.
fn shown(out: &OutputArgs, retries: &Arc<std::sync::atomic::AtomicU64>) -> progress::Shown {
    progress::Shown::new(
        out.progress,
        out.no_progress,
        out.progress_interval,
        Arc::clone(retries),
    )
}

/// Writes rbdcp(1) and one page per command into `dir`, from the same definition as
/// `--help`.
fn man(dir: &std::path::Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = args::Cli::command().version(env!("CARGO_PKG_VERSION"));
    let mut pages = vec![("rbdcp".to_owned(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("rbdcp-{}", sub.get_name());
        let page = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        pages.push((name, page.version(env!("CARGO_PKG_VERSION"))));
    }
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// For a local path that does not exist but reads like `POOL/IMAGE[@SNAP]` (the `rbd`
/// command's habit), what the user probably meant.
pub fn rbd_hint(err: &anyhow::Error) -> Option<String> {
    let Some(rbdcp::Error::Open { image, err, .. }) =
        err.downcast_ref::<rbdcp::Error>().map(|e| e.root())
    else {
        return None;
    };
    if err.kind() != std::io::ErrorKind::NotFound || std::path::Path::new(image).exists() {
        return None;
    }
    let (pool, rest) = image.split_once('/')?;
    let name = rest.split('@').next().unwrap_or_default();
    let plain = |s: &str| !s.is_empty() && s != "." && s != "..";
    (plain(pool) && plain(name) && !rest.contains('/')).then(|| {
        format!(" (an RBD image is written rbd:{image}, as in `rbdcp copy rbd:{image} ...`)")
    })
}

/// Whether the failing command asked for a JSON report.
pub fn wants_json(command: &Command) -> bool {
    match command {
        Command::Copy(a) => a.output.json,
        Command::Verify(a) => a.output.json,
        Command::Diff(a) => a.format == Format::Json,
        Command::ExportDiff(a) => a.output.json,
        Command::ImportDiff(a) => a.output.json,
        Command::Export(a) => a.output.json,
        Command::Import(a) => a.output.json,
        Command::Discard(a) => a.output.json,
        Command::Backup(a) => a.output.json,
        Command::Migrate(a) => a.output.json,
        Command::Plan(a) => a.output.json,
        Command::BackupList(a) => a.json,
        Command::Protect(_) | Command::Unprotect(_) => false,
        Command::Completions(_) | Command::Man(_) => false,
    }
}

/// The number of the signal that stopped the run; 0 while none did.
fn signalled() -> &'static Arc<AtomicUsize> {
    static SIGNALLED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    SIGNALLED.get_or_init(Arc::default)
}

/// The exit status of a run that a signal stopped: 130 for SIGINT, 143 for SIGTERM.
pub fn signal_exit() -> Option<u8> {
    match signalled().load(Ordering::SeqCst) {
        0 => None,
        n => Some(128 + n as u8),
    }
}

/// A flag that turns true on the first SIGINT or SIGTERM, so a job stops cleanly: running
/// chunks finish, the progress is recorded and the staged destination kept. A second
/// signal exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // In this order: the second signal finds the flag set and exits; the first sets it
        // and says which signal it was. Without handlers, signals keep their default action.
        let _ = flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&flag));
        let _ = flag::register_usize(signal, Arc::clone(signalled()), signal as usize);
        let _ = flag::register(signal, Arc::clone(&flag));
    }
    if let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("rbdcp: stopping: finishing the chunks in flight and recording the progress (again to quit at once)");
            }
        });
    }
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

/// The context of a job run from the command line.
fn context(
    access: &Access,
    limits: &LimitArgs,
    retry: &RetryArgs,
    resume: Option<&ResumeArgs>,
    out: &OutputArgs,
) -> Context {
    let cancel = interrupt_flag();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let shown = shown(out, &count);
    Context {
        access: access.clone(),
        throttle: throttle(limits),
        retry: Policy {
            retries: retry.retries,
            max_wait: Duration::from_secs(retry.retry_max_wait),
            cancel: Some(Arc::clone(&cancel)),
            count,
            ..Policy::default()
        },
        cancel,
        buffers: Arc::new(Buffers::new(limits.max_in_flight)),
        bars: Box::new(move |label| shown.pick(label)),
        checkpoint_every: resume.map_or(DEFAULT_EVERY, |r| {
            Duration::from_secs_f64(r.checkpoint_interval)
        }),
        restart: resume.is_some_and(|r| r.restart),
    }
}

/// Ends a job that moved data: its JSON report with `--json`, else one line on standard
/// error when a progress bar was shown ("copied A to B: ...").
fn finish_report(
    out: &OutputArgs,
    (done, to_word): (&str, &str),
    from: &Location,
    to: &Location,
    outcome: &Outcome,
    retries: u64,
) -> Result<()> {
    let (from, to) = (from.to_string(), to.to_string());
    let r = &outcome.report;
    if out.json {
        print_json(&CopyJson::new(&from, &to, outcome, retries))?;
        return Ok(());
    }
    if let Some(link) = &outcome.link {
        say_link(&from, &to, link);
    }
    if outcome.complete {
        eprintln!("rbdcp: {to} already holds this {done} job's result: nothing to do");
    } else if shown(out, &Arc::default()).bar() {
        let resumed = match r.resumed_from {
            Some(at) => format!(
                " (resumed at {at}, {} not copied again)",
                human(r.bytes_skipped)
            ),
            None => String::new(),
        };
        eprintln!(
            "{done} {from} {to_word} {to}: {} read, {} written, {} zeroed in {:.1} s ({}/s){resumed}",
            human(r.bytes_read),
            human(r.bytes_written),
            human(r.bytes_zero),
            r.seconds,
            human(r.bytes_per_second() as u64),
        );
    }
    Ok(())
}

/// Says on standard error what a copy of a clone did with its parent.
fn say_link(from: &str, to: &str, link: &rbdcp::job::Link) {
    match &link.kept {
        Some(kept) => eprintln!(
            "rbdcp: {to} is a clone of {kept}, rbdcp's copy of {from}'s parent {}: only {from}'s own data was copied",
            link.parent
        ),
        None => eprintln!(
            "rbdcp: {from} is a clone of {}: copied flattened, its parent's data included (--keep-parent links the copy to the parent's copy instead)",
            link.parent
        ),
    }
}

fn jobs(w: &Workers) -> usize {
    w.jobs
        .map_or_else(|| default_jobs(w.chunk_size), usize::from)
}

fn copy(a: CopyArgs, access: &Access) -> Result<ExitCode> {
    if a.snapshots.is_some() {
        return history(a, access);
    }
    let (src, dst) = (location(&a.src)?, location(&a.dst)?);
    let job = job::copy::Copy {
        src: src.clone(),
        dst: dst.clone(),
        from_snap: a.from_snap.clone(),
        dst_snap: !a.no_dst_snap,
        whole_object: a.whole_object,
        verify: a.verify,
        overwrite: a.overwrite,
        preallocate: !a.no_preallocate,
        jobs: a.workers.jobs.map(usize::from),
        chunk_size: a.workers.chunk_size,
        supersede: false,
        note: Vec::new(),
        data_pool: a.data_pool.clone(),
        keep_parent: a.parent.keep_parent,
        parent_pool: a.parent.parent_pool.clone(),
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let outcome =
        job::copy::copy(&job, &ctx).map_err(|e| failed(e, &format!("copying {src} to {dst}")))?;
    finish_report(
        &a.output,
        ("copied", "to"),
        &src,
        &dst,
        &outcome,
        ctx.retries(),
    )?;
    match outcome.mismatch {
        Some(msg) => Err(Differ(format!("verification failed: {msg} (source {src})")).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `copy --snapshots`: the source's snapshot history, step by step.
fn history(a: CopyArgs, access: &Access) -> Result<ExitCode> {
    let (Location::Rbd(src), Location::Rbd(dst)) = (location(&a.src)?, location(&a.dst)?) else {
        return Err(Usage("--snapshots copies an RBD image's snapshots to an RBD image (rbd:POOL/IMAGE[@SNAP] to rbd:POOL/IMAGE)".into()).into());
    };
    if dst.snap.is_some() {
        return Err(Usage(format!("{dst}: name the destination image, not a snapshot")).into());
    }
    let job = job::history::History {
        src: src.clone(),
        dst: dst.clone(),
        from: match a.snapshots.clone().expect("checked by the caller") {
            args::Snapshots::All => job::history::From::All,
            args::Snapshots::Since(base) => job::history::From::Since(base),
        },
        copy: job::copy::Copy {
            whole_object: a.whole_object,
            verify: a.verify,
            preallocate: !a.no_preallocate,
            jobs: a.workers.jobs.map(usize::from),
            chunk_size: a.workers.chunk_size,
            data_pool: a.data_pool.clone(),
            keep_parent: a.parent.keep_parent,
            parent_pool: a.parent.parent_pool.clone(),
            ..job::copy::Copy::new(Location::Rbd(src.clone()), Location::Rbd(dst.clone()))
        },
    };
    let ctx = context(access, &a.limits, &a.retry, Some(&a.resume), &a.output);
    let done = job::history::copy_history(&job, &ctx)
        .map_err(|e| failed(e, &format!("copying the snapshots of {src} to {dst}")))?;
    let sum =
        |f: fn(&rbdcp::engine::Report) -> u64| done.steps.iter().map(|o| f(&o.report)).sum::<u64>();
    let seconds: f64 = done.steps.iter().map(|o| o.report.seconds).sum();
    if a.output.json {
        print_json(&report::HistoryJson {
            source: src.to_string(),
            destination: dst.to_string(),
            snapshots: &done.snapshots,
            held: &done.held,
            skipped: done
                .skipped
                .iter()
                .map(|(name, namespace)| report::Skipped { name, namespace })
                .collect(),
            bytes_read: sum(|r| r.bytes_read),
            bytes_written: sum(|r| r.bytes_written),
            bytes_zero: sum(|r| r.bytes_zero),
            seconds,
            retries: ctx.retries(),
            clone_of: done
                .steps
                .iter()
                .find_map(|o| o.link.as_ref())
                .map(report::LinkJson::new),
        })?;
    } else {
        if let Some(link) = done.steps.iter().find_map(|o| o.link.as_ref()) {
            say_link(&src.to_string(), &dst.to_string(), link);
        }
        for (name, namespace) in &done.skipped {
            eprintln!("rbdcp: skipped {src}'s snapshot {name} ({namespace} namespace, not a user snapshot)");
        }
        eprintln!(
            "rbdcp: copied {} snapshot(s) of {src} to {dst} ({} held already): {} written, {} zeroed in {seconds:.1} s",
            done.snapshots.len(),
            done.held.len(),
            human(sum(|r| r.bytes_written)),
            human(sum(|r| r.bytes_zero)),
        );
    }
    match done.steps.iter().find_map(|o| o.mismatch.as_ref()) {
        Some(msg) => Err(Differ(format!("verification failed: {msg} (source {src})")).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The error of a failed job: what it was doing, when it failed in its data phase.
pub(super) fn failed(e: rbdcp::Error, doing: &str) -> anyhow::Error {
    match e {
        e @ rbdcp::Error::Resumable { .. } => anyhow::Error::new(e).context(doing.to_owned()),
        e => e.into(),
    }
}

fn discard(a: DiscardArgs, access: &Access) -> Result<ExitCode> {
    let dst = location(&a.dst)?;
    let any = rbdcp::backend::discard(&dst, access)
        .with_context(|| format!("discarding what was staged for {dst}"))?;
    if a.output.json {
        print_json(&DiscardJson {
            destination: dst.to_string(),
            discarded: any,
        })?;
    } else if any {
        eprintln!("rbdcp: discarded the staged copy and progress record of {dst}");
    } else {
        eprintln!("rbdcp: nothing was staged for {dst}");
    }
    Ok(ExitCode::SUCCESS)
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
    let policy = Policy {
        retries: a.retry.retries,
        max_wait: Duration::from_secs(a.retry.retry_max_wait),
        ..Policy::default()
    };
    let open = |loc: &Location| -> Result<Retry<dyn ImageSource>> {
        Ok(Retry::new(
            Arc::from(open_source(loc, &opts)?),
            policy.clone(),
        ))
    };
    let (left, right) = (open(&a_loc)?, open(&b_loc)?);
    let sample = a.sample.map(|percent| Sample {
        percent,
        seed: a.seed.unwrap_or_else(|| fastrand::u64(..)),
    });
    if let Some(s) = sample.filter(|_| !a.output.json) {
        eprintln!("rbdcp: sampling {}% of chunks, seed {}", s.percent, s.seed);
    }
    let scan = Scan {
        jobs: jobs(&a.workers),
        budget: a.limits.max_in_flight,
        chunk: a.workers.chunk_size,
        sample,
    };
    let bar = shown(&a.output, &policy.count).pick("verify");
    let c = compare_with(&left, &right, &scan, &throttle(&a.limits), bar.as_ref())
        .with_context(|| format!("comparing {a_loc} with {b_loc}"))?;
    let (a_name, b_name) = (a_loc.to_string(), b_loc.to_string());
    if a.output.json {
        print_json(&VerifyJson::new(&a_name, &b_name, &c))?;
    } else {
        write_out(&comparison_text(&a_name, &b_name, &c))?;
    }
    if c.identical() {
        return Ok(ExitCode::SUCCESS);
    }
    let what = match (c.differing, c.sample) {
        (0, _) => "sizes differ".to_owned(),
        (n, None) => format!("{n} chunk(s) differ"),
        (n, Some(s)) => format!("{n} chunk(s) differ in a {}% sample", s.percent),
    };
    Err(Differ(format!("{a_loc} and {b_loc} differ: {what}")).into())
}

/// What `rbdcp verify` prints without `--json`: one line when identical (in the sample),
/// else the sizes when they differ and one `differ at offset O length L` line per range.
fn comparison_text(a: &str, b: &str, c: &Comparison) -> String {
    if c.identical() {
        let scope = match c.sample {
            Some(s) => format!(" in a {}% sample of chunks (seed {})", s.percent, s.seed),
            None => String::new(),
        };
        return format!(
            "identical{scope}: {} bytes, {} compared\n",
            c.size_a, c.bytes_compared
        );
    }
    let mut text = String::new();
    if c.size_a != c.size_b {
        text.push_str(&format!(
            "sizes differ: {a} holds {} bytes, {b} {}\n",
            c.size_a, c.size_b
        ));
    }
    for (offset, len) in &c.first {
        text.push_str(&format!("differ at offset {offset} length {len}\n"));
    }
    text
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
